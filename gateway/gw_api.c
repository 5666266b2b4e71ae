/* The public REST/JSON API v1: routing (one table, ROUTES), the per-client rate limits of the
 * mailbox routes (gw_ratelimit), header and body validation (gw_json), device attestation, the
 * mailbox-store calls (one table, STORE_OPS) and the translation of their results into HTTP
 * answers (gw_err, gw_preview); the published configuration and contract (gw_pubconfig,
 * gw_openapi).
 *
 * Every handler runs on the connection's loop thread and never blocks: a request that needs
 * backends owns an api_ctx_t, and each asynchronous step continues in a callback that
 * gw_backend delivers on the same loop thread. */
#include "gw_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/sha.h>

#include "cm_alloc.h"
#include "cm_log.h"
#include "cm_metrics.h"
#include "cm_uuid.h"
#include "gw_err.h"
#include "gw_json.h"
#include "gw_openapi.h"
#include "gw_preview.h"
#include "gw_pubconfig.h"
#include "gw_ratelimit.h"
#include "tigress/attest/v1/attestation_verifier.pb-c.h"
#include "tigress/mailbox/v1/mailbox_store.pb-c.h"

typedef enum { ATTEST_OFF, ATTEST_IF_PRESENT, ATTEST_REQUIRED } attest_policy_t;

static const char *const POLICY_NAMES[] = {"off", "verify-if-present", "required"};

struct gw_api {
    gw_backend_t *be;   /* not owned */
    gw_rl_t *limiter;   /* not owned; NULL: requests are not limited */
    char base_url[512]; /* public base URL without a trailing '/' */
    attest_policy_t policy;
    int64_t timeout_ms;
    int64_t max_ttl;
    gw_pubconfig_t published; /* what GET /v1/config answers */
};

/* ---- configuration ----------------------------------------------------------------------- */

static int parse_policy(const char *s, attest_policy_t *out)
{
    for (int i = 0; i < 3; i++) {
        if (s && !strcmp(s, POLICY_NAMES[i])) {
            *out = (attest_policy_t)i;
            return 0;
        }
    }
    CM_ERROR(NULL, "gateway: --attestation-policy must be off, verify-if-present or required");
    return -1;
}

/* Keeps scheme://host[:port][/path] without trailing slashes in |api->base_url|. 0 or -1. */
static int set_base_url(gw_api_t *api, const char *u)
{
    u = u ? u : "";
    if (strncasecmp(u, "http://", 7) && strncasecmp(u, "https://", 8)) {
        CM_ERROR(NULL, "gateway: --public-base-url must start with http:// or https://");
        return -1;
    }
    size_t n = strlen(u);
    while (n > 0 && u[n - 1] == '/')
        n--;
    size_t scheme = strncasecmp(u, "https://", 8) ? 7 : 8;
    if (n <= scheme || n >= sizeof(api->base_url) || strpbrk(u, " \t\r\n\"<>")) {
        CM_ERROR(NULL, "gateway: --public-base-url must be scheme://host[:port][/path], at most "
                       "511 characters");
        return -1;
    }
    memcpy(api->base_url, u, n);
    api->base_url[n] = '\0';
    return 0;
}

int gw_api_new(const gw_api_config_t *cfg, gw_backend_t *backend, gw_api_t **out)
{
    gw_api_t *api = cm_xcalloc(1, sizeof(*api));
    api->be = backend;
    if (parse_policy(cfg->attestation_policy, &api->policy) != 0)
        goto fail;
    int have_verifier = gw_backend_configured(backend, GW_BE_ATTEST);
    if (api->policy == ATTEST_REQUIRED && !have_verifier) {
        CM_ERROR(NULL, "gateway: --attestation-policy=required needs --attestation-target");
        goto fail;
    }
    if (api->policy == ATTEST_IF_PRESENT && !have_verifier)
        CM_WARN(NULL, "gateway: no --attestation-target: requests carrying a device attestation "
                      "will get 503 (set --attestation-policy=off to ignore attestations)");
    if (cfg->timeout_ms <= 0 || cfg->max_ttl <= 0) {
        CM_ERROR(NULL, "gateway: --backend-timeout-ms and --max-ttl must be positive");
        goto fail;
    }
    if (set_base_url(api, cfg->public_base_url) != 0)
        goto fail;
    api->timeout_ms = cfg->timeout_ms;
    api->max_ttl = cfg->max_ttl;
    api->limiter = cfg->limiter;
    api->published = (gw_pubconfig_t){
        .max_ttl_s = cfg->max_ttl,
        .attestation_policy = POLICY_NAMES[api->policy],
        .attestation_verifier = have_verifier,
        .backend = backend,
        .limiter = cfg->limiter,
    };
    *out = api;
    return 0;
fail:
    free(api);
    return -1;
}

void gw_api_free(gw_api_t *api)
{
    free(api);
}

/* ---- responses --------------------------------------------------------------------------- */

/* Every answer of the API; a failure on a mailbox route is charged to the client's budget. */
static void send_json(const gw_api_t *api, gw_req_t *r, int status, const char *body, size_t len)
{
    gw_rl_observe(api->limiter, r, status);
    gw_req_echo_correlation(r);
    gw_req_add_header(r, "cache-control", "no-store");
    gw_req_add_header(r, "x-content-type-options", "nosniff");
    gw_req_respond(r, status, "application/json", body, len);
}

/* The one way the API answers an error: status and code from |err|, |message| (NULL: the
 * generic text of |err|). */
static void send_error(const gw_api_t *api, gw_req_t *r, gw_err_t err, const char *message)
{
    size_t len = 0;
    char *body = gw_json_error_body(err, message, &len);
    if (!body) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}";
        send_json(api, r, 500, oom, sizeof(oom) - 1);
        return;
    }
    send_json(api, r, gw_err_http_status(err), body, len);
    free(body);
}

static void send_grpc_error(const gw_api_t *api, gw_req_t *r, const cm_rpc_status_t *st)
{
    gw_err_t err = gw_err_from_grpc(st->code);
    if (gw_err_http_status(err) >= 500)
        CM_DEBUG(gw_req_id(r), "gateway: backend answered %s", cm_rpc_code_name(st->code));
    send_error(api, r, err, NULL);
}

static void send_empty_ok(const gw_api_t *api, gw_req_t *r, int duplicate)
{
    send_json(api, r, duplicate ? 201 : 200, "{}", 2);
}

/* ---- request context --------------------------------------------------------------------- */

typedef enum {
    OP_NONE = -1,
    OP_CREATE = 0,
    OP_UPDATE,
    OP_READ_DISPLAY,
    OP_READ_SECURE,
    OP_DELETE,
    OP_RELINQUISH,
    OP_COUNT
} op_t;

typedef struct {
    gw_api_t *api; /* not owned */
    gw_req_t *r;   /* not owned */
    op_t op;
    int64_t deadline_ms;
    char id[CM_UUID_STRLEN + 1];
    char claim[CM_UUID_STRLEN + 1];
    char corr[CM_CORR_ID_MAX + 1];
    gw_create_body_t create; /* owned (OP_CREATE) */
    gw_update_body_t update; /* owned (OP_UPDATE) */
    /* Create: answers once both the store call and the push-support lookup are done */
    int pending;
    cm_rpc_status_t store_st;
    ProtobufCMessage *store_resp; /* owned */
} api_ctx_t;

static api_ctx_t *ctx_new(gw_api_t *api, gw_req_t *r, op_t op)
{
    api_ctx_t *c = cm_xcalloc(1, sizeof(*c));
    c->api = api;
    c->r = r;
    c->op = op;
    c->deadline_ms = gw_backend_now_ms() + api->timeout_ms;
    return c;
}

static void ctx_free(api_ctx_t *c)
{
    if (!c)
        return;
    gw_create_body_free(&c->create);
    gw_update_body_free(&c->update);
    if (c->store_resp)
        protobuf_c_message_free_unpacked(c->store_resp, NULL);
    free(c);
}

static gw_backend_caller_t caller_of(api_ctx_t *c, gw_backend_done_fn done)
{
    return (gw_backend_caller_t){.loop = gw_req_loop(c->r),
                                 .request_id = gw_req_id(c->r),
                                 .deadline_ms = c->deadline_ms,
                                 .done = done,
                                 .arg = c};
}

static void attest_count(const char *result, const char *format)
{
    char fmt[24] = "unknown";
    /* the label takes only a short [a-z0-9-] format name, whatever the verifier sent */
    if (format && *format && strlen(format) < sizeof(fmt) &&
        strspn(format, "abcdefghijklmnopqrstuvwxyz0123456789-") == strlen(format))
        snprintf(fmt, sizeof(fmt), "%s", format);
    char labels[80];
    snprintf(labels, sizeof(labels), "result=\"%s\",format=\"%s\"", result, fmt);
    cm_counter_t *c = cm_metrics_counter(
        "gateway_attestations_total", "Device attestations checked, by result and format", labels);
    if (c)
        cm_counter_add(c, 1);
}

/* ---- the six store operations ------------------------------------------------------------ */

/* The request messages of one store call, built on the caller's stack. */
typedef struct {
    Tigress__Mailbox__V1__Payload payload;
    Tigress__Mailbox__V1__DisplayInformation disp;
    Tigress__Mailbox__V1__NotificationToken tok;
    union {
        Tigress__Mailbox__V1__CreateRequest create;
        Tigress__Mailbox__V1__UpdateRequest update;
        Tigress__Mailbox__V1__ReadDisplayRequest rdisp;
        Tigress__Mailbox__V1__ReadSecureRequest rsec;
        Tigress__Mailbox__V1__DeleteRequest del;
        Tigress__Mailbox__V1__RelinquishRequest rel;
    } m;
} store_msgs_t;

/* One store operation: its gRPC method, how its request is built from the context, and how
 * its successful response becomes the HTTP answer. */
typedef struct {
    const char *method;
    const ProtobufCMessageDescriptor *resp_desc;
    const ProtobufCMessage *(*build)(const api_ctx_t *c, store_msgs_t *m);
    void (*answer)(api_ctx_t *c, const ProtobufCMessage *resp);
} store_op_t;

static void fill_payload(Tigress__Mailbox__V1__Payload *p, const gw_payload_t *src)
{
    *p = (Tigress__Mailbox__V1__Payload)TIGRESS__MAILBOX__V1__PAYLOAD__INIT;
    p->type = (char *)src->type;
    p->data.data = src->data;
    p->data.len = src->data_len;
}

static void fill_token(Tigress__Mailbox__V1__NotificationToken *t, const gw_token_t *src)
{
    *t = (Tigress__Mailbox__V1__NotificationToken)TIGRESS__MAILBOX__V1__NOTIFICATION_TOKEN__INIT;
    t->type = (char *)src->type;
    t->token_data = src->token_data;
}

static const ProtobufCMessage *build_create(const api_ctx_t *c, store_msgs_t *m)
{
    Tigress__Mailbox__V1__CreateRequest *q = &m->m.create;
    *q = (Tigress__Mailbox__V1__CreateRequest)TIGRESS__MAILBOX__V1__CREATE_REQUEST__INIT;
    q->mailbox_id = (char *)c->id;
    q->device_claim = (char *)c->claim;
    q->correlation_id = (char *)c->corr;
    fill_payload(&m->payload, &c->create.payload);
    q->payload = &m->payload;
    m->disp =
        (Tigress__Mailbox__V1__DisplayInformation)TIGRESS__MAILBOX__V1__DISPLAY_INFORMATION__INIT;
    m->disp.title = c->create.title;
    m->disp.description = c->create.description;
    m->disp.image_url = c->create.image_url;
    q->display = &m->disp;
    if (c->create.token.present) {
        fill_token(&m->tok, &c->create.token);
        q->notification_token = &m->tok;
    }
    q->access_rights = (char *)c->create.access_rights;
    q->ttl_seconds = c->create.ttl_seconds;
    return &q->base;
}

static const ProtobufCMessage *build_update(const api_ctx_t *c, store_msgs_t *m)
{
    Tigress__Mailbox__V1__UpdateRequest *q = &m->m.update;
    *q = (Tigress__Mailbox__V1__UpdateRequest)TIGRESS__MAILBOX__V1__UPDATE_REQUEST__INIT;
    q->mailbox_id = (char *)c->id;
    q->device_claim = (char *)c->claim;
    q->correlation_id = (char *)c->corr;
    fill_payload(&m->payload, &c->update.payload);
    q->payload = &m->payload;
    fill_token(&m->tok, &c->update.token);
    q->notification_token = &m->tok;
    return &q->base;
}

static const ProtobufCMessage *build_read_display(const api_ctx_t *c, store_msgs_t *m)
{
    Tigress__Mailbox__V1__ReadDisplayRequest *q = &m->m.rdisp;
    *q = (Tigress__Mailbox__V1__ReadDisplayRequest)TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
    q->mailbox_id = (char *)c->id;
    return &q->base;
}

static const ProtobufCMessage *build_read_secure(const api_ctx_t *c, store_msgs_t *m)
{
    Tigress__Mailbox__V1__ReadSecureRequest *q = &m->m.rsec;
    *q = (Tigress__Mailbox__V1__ReadSecureRequest)TIGRESS__MAILBOX__V1__READ_SECURE_REQUEST__INIT;
    q->mailbox_id = (char *)c->id;
    q->device_claim = (char *)c->claim;
    q->correlation_id = (char *)c->corr;
    return &q->base;
}

static const ProtobufCMessage *build_delete(const api_ctx_t *c, store_msgs_t *m)
{
    Tigress__Mailbox__V1__DeleteRequest *q = &m->m.del;
    *q = (Tigress__Mailbox__V1__DeleteRequest)TIGRESS__MAILBOX__V1__DELETE_REQUEST__INIT;
    q->mailbox_id = (char *)c->id;
    q->device_claim = (char *)c->claim;
    q->correlation_id = (char *)c->corr;
    return &q->base;
}

static const ProtobufCMessage *build_relinquish(const api_ctx_t *c, store_msgs_t *m)
{
    Tigress__Mailbox__V1__RelinquishRequest *q = &m->m.rel;
    *q = (Tigress__Mailbox__V1__RelinquishRequest)TIGRESS__MAILBOX__V1__RELINQUISH_REQUEST__INIT;
    q->mailbox_id = (char *)c->id;
    q->device_claim = (char *)c->claim;
    q->correlation_id = (char *)c->corr;
    return &q->base;
}

static void answer_create(api_ctx_t *c, const ProtobufCMessage *resp)
{
    const Tigress__Mailbox__V1__CreateResponse *m = (const void *)resp;
    const char *id = m->mailbox_id && *m->mailbox_id ? m->mailbox_id : c->id;
    char url[600];
    snprintf(url, sizeof(url), "%s/v1/m/%s", c->api->base_url, id);
    const char *type = c->create.token.present ? c->create.token.type : NULL;
    int push = gw_backend_push_supported_now(c->api->be, type);
    size_t len;
    char *body = gw_json_create_response(url, push, &len);
    if (!body)
        send_error(c->api, c->r, GW_ERR_INTERNAL, NULL);
    else
        send_json(c->api, c->r, m->duplicate ? 201 : 200, body, len);
    free(body);
}

static void answer_read_display(api_ctx_t *c, const ProtobufCMessage *resp)
{
    const Tigress__Mailbox__V1__ReadDisplayResponse *m = (const void *)resp;
    const Tigress__Mailbox__V1__DisplayInformation *d = m->display;
    char url[600];
    snprintf(url, sizeof(url), "%s/v1/m/%s", c->api->base_url, c->id);
    size_t len = 0;
    char *body = gw_preview_render(d ? d->title : "", d ? d->description : "",
                                   d ? d->image_url : "", url, &len);
    if (!body) {
        send_error(c->api, c->r, GW_ERR_INTERNAL, NULL);
        return;
    }
    gw_req_t *r = c->r;
    gw_req_echo_correlation(r);
    gw_req_add_header(r, "cache-control", "no-store");
    gw_req_add_header(r, "content-security-policy", GW_PREVIEW_CSP);
    gw_req_add_header(r, "x-content-type-options", "nosniff");
    gw_req_add_header(r, "referrer-policy", "no-referrer");
    gw_req_respond(r, 200, "text/html; charset=utf-8", body, len);
    free(body);
}

static void answer_read_secure(api_ctx_t *c, const ProtobufCMessage *resp)
{
    const Tigress__Mailbox__V1__ReadSecureResponse *m = (const void *)resp;
    const Tigress__Mailbox__V1__DisplayInformation *d = m->display;
    const Tigress__Mailbox__V1__Payload *p = m->payload;
    size_t len = 0;
    char *body = gw_json_read_response(
        d ? d->title : "", d ? d->description : "", d ? d->image_url : "", p ? p->type : "",
        p ? p->data.data : NULL, p ? p->data.len : 0, m->expires_at_ms, &len);
    if (!body)
        send_error(c->api, c->r, GW_ERR_INTERNAL, NULL);
    else
        send_json(c->api, c->r, m->duplicate ? 201 : 200, body, len);
    free(body);
}

static void answer_update(api_ctx_t *c, const ProtobufCMessage *resp)
{
    send_empty_ok(c->api, c->r, ((const Tigress__Mailbox__V1__UpdateResponse *)resp)->duplicate);
}

static void answer_delete(api_ctx_t *c, const ProtobufCMessage *resp)
{
    send_empty_ok(c->api, c->r, ((const Tigress__Mailbox__V1__DeleteResponse *)resp)->duplicate);
}

static void answer_relinquish(api_ctx_t *c, const ProtobufCMessage *resp)
{
    send_empty_ok(c->api, c->r,
                  ((const Tigress__Mailbox__V1__RelinquishResponse *)resp)->duplicate);
}

#define STORE_METHOD(name) "/tigress.mailbox.v1.MailboxStore/" name
static const store_op_t STORE_OPS[OP_COUNT] = {
    [OP_CREATE] = {STORE_METHOD("Create"), &tigress__mailbox__v1__create_response__descriptor,
                   build_create, answer_create},
    [OP_UPDATE] = {STORE_METHOD("Update"), &tigress__mailbox__v1__update_response__descriptor,
                   build_update, answer_update},
    [OP_READ_DISPLAY] = {STORE_METHOD("ReadDisplay"),
                         &tigress__mailbox__v1__read_display_response__descriptor,
                         build_read_display, answer_read_display},
    [OP_READ_SECURE] = {STORE_METHOD("ReadSecure"),
                        &tigress__mailbox__v1__read_secure_response__descriptor, build_read_secure,
                        answer_read_secure},
    [OP_DELETE] = {STORE_METHOD("Delete"), &tigress__mailbox__v1__delete_response__descriptor,
                   build_delete, answer_delete},
    [OP_RELINQUISH] = {STORE_METHOD("Relinquish"),
                       &tigress__mailbox__v1__relinquish_response__descriptor, build_relinquish,
                       answer_relinquish},
};

/* Answers from the store's status and response (owned by |c| or NULL), then frees |c|. */
static void store_answer(api_ctx_t *c, const cm_rpc_status_t *st, const ProtobufCMessage *resp)
{
    if (st->code != GRPC_STATUS_OK || !resp)
        send_grpc_error(c->api, c->r, st);
    else
        STORE_OPS[c->op].answer(c, resp);
    ctx_free(c);
}

/* Create answers once both the store call and the push-support lookup ended. */
static void create_try_finish(api_ctx_t *c)
{
    if (c->pending > 0)
        return;
    cm_rpc_status_t st = c->store_st;
    store_answer(c, &st, c->store_resp);
}

static void create_push_known(void *arg)
{
    api_ctx_t *c = arg;
    c->pending--;
    create_try_finish(c);
}

static void store_done(void *arg, const cm_rpc_status_t *st, ProtobufCMessage *resp)
{
    api_ctx_t *c = arg;
    if (c->op == OP_CREATE) {
        c->store_st = *st;
        c->store_resp = resp;
        c->pending--;
        create_try_finish(c);
        return;
    }
    store_answer(c, st, resp);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
}

/* Starts the store call of |c|'s operation; on failure to start answers 503 and frees |c|. */
static void store_call(api_ctx_t *c)
{
    const store_op_t *op = &STORE_OPS[c->op];
    store_msgs_t m;
    const ProtobufCMessage *req = op->build(c, &m);
    if (c->op == OP_CREATE) {
        /* the push-support lookup runs alongside the store call */
        c->pending = 1;
        const char *type = c->create.token.present ? c->create.token.type : NULL;
        if (gw_backend_push_supported(c->api->be, type, gw_req_loop(c->r), create_push_known, c) <
            0)
            c->pending++;
    }
    gw_backend_caller_t caller = caller_of(c, store_done);
    if (gw_backend_call(c->api->be, GW_BE_STORE, c->id, &caller, op->method, req, op->resp_desc) ==
        0)
        return;
    cm_rpc_status_t st = {.code = GRPC_STATUS_UNAVAILABLE};
    if (c->op == OP_CREATE) {
        /* the push lookup may still be pending: finish through the same path */
        c->store_st = st;
        c->pending--;
        create_try_finish(c);
        return;
    }
    store_answer(c, &st, NULL);
}

/* ---- attestation ------------------------------------------------------------------------- */

static void attest_done(void *arg, const cm_rpc_status_t *st, ProtobufCMessage *resp)
{
    api_ctx_t *c = arg;
    Tigress__Attest__V1__VerifyResponse *v = (void *)resp;
    if (st->code == GRPC_STATUS_OK && v && v->valid) {
        attest_count("valid", v->format);
        protobuf_c_message_free_unpacked(resp, NULL);
        store_call(c);
        return;
    }
    if (st->code == GRPC_STATUS_OK || st->code == GRPC_STATUS_INVALID_ARGUMENT) {
        /* a verdict, not an outage: the code stays out of logs and answers */
        attest_count("invalid", v ? v->format : NULL);
        send_error(c->api, c->r, GW_ERR_INVALID_ATTESTATION, NULL);
    } else {
        attest_count("error", NULL);
        send_grpc_error(c->api, c->r, st);
    }
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    ctx_free(c);
}

/* Sends the decoded attestation header |h| to the verifier with SHA-256 of the payload bytes
 * as the challenge. 0, or -1 after answering. */
static int attest_verify(api_ctx_t *c, const char *h, const gw_payload_t *payload)
{
    uint8_t *ao = NULL, *cd = NULL;
    size_t aol = 0, cdl = 0;
    if (gw_json_parse_attestation(h, &ao, &aol, &cd, &cdl) != 0) {
        attest_count("invalid", NULL);
        send_error(c->api, c->r, GW_ERR_INVALID_ATTESTATION, NULL);
        return -1;
    }
    uint8_t challenge[SHA256_DIGEST_LENGTH];
    SHA256(payload->data, payload->data_len, challenge);
    Tigress__Attest__V1__VerifyRequest req = TIGRESS__ATTEST__V1__VERIFY_REQUEST__INIT;
    req.attestation_object.data = ao;
    req.attestation_object.len = aol;
    req.client_data_json.data = cd;
    req.client_data_json.len = cdl;
    req.expected_challenge.data = challenge;
    req.expected_challenge.len = sizeof(challenge);
    gw_backend_caller_t caller = caller_of(c, attest_done);
    int rc = gw_backend_call(c->api->be, GW_BE_ATTEST, NULL, &caller,
                             "/tigress.attest.v1.AttestationVerifier/Verify", &req.base,
                             &tigress__attest__v1__verify_response__descriptor);
    free(ao);
    free(cd);
    if (rc != 0) {
        send_error(c->api, c->r, GW_ERR_UNAVAILABLE, NULL);
        return -1;
    }
    return 0;
}

/* Applies the attestation policy to a Create or Update whose body is valid, then continues
 * with the store call. */
static void attest_then_store(api_ctx_t *c, const gw_payload_t *payload)
{
    gw_req_t *r = c->r;
    const gw_api_t *api = c->api;
    attest_policy_t policy = api->policy;
    const char *h = gw_req_header(r, "mailbox-device-attestation");
    if (!h)
        h = gw_req_header(r, "deviceattestation");
    if (policy == ATTEST_OFF || (!h && policy == ATTEST_IF_PRESENT)) {
        store_call(c);
        return;
    }
    if (!h) {
        attest_count("missing", NULL);
        send_error(api, r, GW_ERR_ATTESTATION_REQUIRED, NULL);
    } else if (!gw_backend_configured(api->be, GW_BE_ATTEST)) {
        send_error(api, r, GW_ERR_UNAVAILABLE, "device attestation cannot be verified");
    } else if (attest_verify(c, h, payload) == 0) {
        return;
    }
    ctx_free(c);
}

/* ---- request checks ---------------------------------------------------------------------- */

/* Common header checks of the mailbox routes. Answers and returns -1 on failure. */
static int check_common(gw_req_t *r, api_ctx_t *c, int need_claim)
{
    const gw_api_t *api = c->api;
    for (size_t i = 0; i < 2; i++) {
        const char *v = gw_req_header(r, gw_correlation_headers[i]);
        if (!v)
            continue;
        if (!cm_corr_id_valid(v)) {
            send_error(api, r, GW_ERR_INVALID_HEADER,
                       "Mailbox-Correlation-ID must be 1..128 visible ASCII characters");
            return -1;
        }
        if (!c->corr[0])
            snprintf(c->corr, sizeof(c->corr), "%s", v);
    }

    size_t blen = 0;
    gw_req_body(r, &blen);
    const char *ct = gw_req_header(r, "content-type");
    if ((blen > 0 || (gw_req_has_body(r) && ct)) && !gw_media_type_is_json(ct)) {
        send_error(api, r, GW_ERR_UNSUPPORTED_MEDIA, NULL);
        return -1;
    }

    if (!need_claim)
        return 0;
    const char *a = gw_req_header(r, "mailbox-device-claim");
    const char *b = gw_req_header(r, "deviceclaim");
    if (a && b && strcasecmp(a, b) != 0) {
        send_error(api, r, GW_ERR_INVALID_HEADER, "deviceClaim and Mailbox-Device-Claim differ");
        return -1;
    }
    const char *claim = a ? a : b;
    if (!claim) {
        send_error(api, r, GW_ERR_MISSING_HEADER, "deviceClaim header is required");
        return -1;
    }
    if (!cm_uuid_valid(claim, strlen(claim))) {
        send_error(api, r, GW_ERR_INVALID_HEADER, "deviceClaim must be a UUID");
        return -1;
    }
    cm_uuid_canonical(claim, c->claim);
    return 0;
}

/* ---- handlers ---------------------------------------------------------------------------- */

typedef struct route route_t;
typedef void (*route_fn)(gw_api_t *api, gw_req_t *r, const route_t *rt, const char *id);

/* One row of the route table: a path (|with_id|: the path prefix of /prefix{id}, one
 * non-empty segment), an HTTP method, labels, and the handler with its store operation. */
struct route {
    const char *path;
    int with_id;
    const char *method;
    const char *label;    /* route label of the access log and metrics */
    const char *resource; /* label of a 405 on this path */
    route_fn handle;
    op_t op; /* store operation of mailbox routes; OP_NONE otherwise */
};

static void handle_healthz(gw_api_t *api, gw_req_t *r, const route_t *rt, const char *id)
{
    static const char ok[] = "{\"status\":\"ok\"}";
    send_json(api, r, 200, ok, sizeof(ok) - 1);
}

static void readyz_answer(const gw_api_t *api, gw_req_t *r, int ready)
{
    static const char ok[] = "{\"status\":\"ready\"}";
    static const char no[] = "{\"status\":\"not ready\"}";
    if (ready)
        send_json(api, r, 200, ok, sizeof(ok) - 1);
    else
        send_json(api, r, 503, no, sizeof(no) - 1);
}

typedef struct {
    gw_api_t *api;
    gw_req_t *r;
} readyz_wait_t;

static void readyz_known(void *arg)
{
    readyz_wait_t *w = arg;
    readyz_answer(w->api, w->r, gw_backend_ready_now(w->api->be));
    free(w);
}

static void handle_readyz(gw_api_t *api, gw_req_t *r, const route_t *rt, const char *id)
{
    readyz_wait_t *w = cm_xmalloc(sizeof(*w));
    *w = (readyz_wait_t){api, r};
    int v = gw_backend_ready(api->be, gw_req_loop(r), readyz_known, w);
    if (v >= 0) {
        free(w);
        readyz_answer(api, r, v);
    }
}

static void handle_create(gw_api_t *api, gw_req_t *r, const route_t *rt, const char *id)
{
    api_ctx_t *c = ctx_new(api, r, OP_CREATE);
    if (check_common(r, c, 1) != 0)
        goto done;
    size_t len = 0;
    const uint8_t *body = gw_req_body(r, &len);
    gw_json_err_t err = {0};
    if (gw_json_parse_create(body, len, (int64_t)time(NULL) * 1000, api->max_ttl, &c->create,
                             &err) != 0) {
        send_error(api, r, err.err, err.message);
        goto done;
    }
    /* A retried Create without mailboxIdentifier must name the same mailbox, or the store's
     * duplicate detection (keyed by mailbox and claim) cannot see the retry and a second
     * mailbox would be made; with shards it must also reach the same shard. So the id is
     * derived from the claim and the correlation id rather than drawn at random. */
    if (c->create.id_generated && c->corr[0])
        gw_derive_mailbox_id(c->claim, c->corr, c->create.mailbox_id);
    memcpy(c->id, c->create.mailbox_id, sizeof(c->id));
    attest_then_store(c, &c->create.payload);
    return;
done:
    ctx_free(c);
}

/* The routes on /v1/m/{id}: header checks, the id, then the store (Update: body and
 * attestation first). */
static void handle_mailbox(gw_api_t *api, gw_req_t *r, const route_t *rt, const char *id)
{
    api_ctx_t *c = ctx_new(api, r, rt->op);
    if (check_common(r, c, rt->op != OP_READ_DISPLAY) != 0)
        goto done;
    if (!cm_uuid_is_v4(id, strlen(id))) {
        send_error(api, r, GW_ERR_INVALID_MAILBOX_ID, NULL);
        goto done;
    }
    cm_uuid_canonical(id, c->id);
    if (rt->op != OP_UPDATE) {
        store_call(c);
        return;
    }
    size_t len = 0;
    const uint8_t *body = gw_req_body(r, &len);
    gw_json_err_t err = {0};
    if (gw_json_parse_update(body, len, &c->update, &err) != 0) {
        send_error(api, r, err.err, err.message);
        goto done;
    }
    attest_then_store(c, &c->update.payload);
    return;
done:
    ctx_free(c);
}

static void handle_config(gw_api_t *api, gw_req_t *r, const route_t *rt, const char *id)
{
    gw_pubconfig_handle(&api->published, r);
}

static void handle_openapi(gw_api_t *api, gw_req_t *r, const route_t *rt, const char *id)
{
    gw_openapi_handle(r);
}

/* ---- routing ----------------------------------------------------------------------------- */

static const route_t ROUTES[] = {
    {"/healthz", 0, "GET", "healthz", "healthz", handle_healthz, OP_NONE},
    {"/readyz", 0, "GET", "readyz", "readyz", handle_readyz, OP_NONE},
    {"/v1/config", 0, "GET", "config", "config", handle_config, OP_NONE},
    {"/v1/openapi.json", 0, "GET", "openapi", "openapi", handle_openapi, OP_NONE},
    {"/v1/m", 0, "POST", "create", "create", handle_create, OP_CREATE},
    {"/v1/m/", 1, "GET", "read_display", "mailbox", handle_mailbox, OP_READ_DISPLAY},
    {"/v1/m/", 1, "POST", "read_secure", "mailbox", handle_mailbox, OP_READ_SECURE},
    {"/v1/m/", 1, "PUT", "update", "mailbox", handle_mailbox, OP_UPDATE},
    {"/v1/m/", 1, "DELETE", "delete", "mailbox", handle_mailbox, OP_DELETE},
    {"/v1/m/", 1, "PATCH", "relinquish", "mailbox", handle_mailbox, OP_RELINQUISH},
};
#define NROUTES (sizeof(ROUTES) / sizeof(ROUTES[0]))

/* Whether |path| is |rt|'s path; sets *id to the {id} segment of a route with one. */
static int path_matches(const route_t *rt, const char *path, const char **id)
{
    if (!rt->with_id)
        return strcmp(path, rt->path) == 0;
    size_t n = strlen(rt->path);
    if (strncmp(path, rt->path, n) != 0 || !path[n] || strchr(path + n, '/'))
        return 0;
    *id = path + n;
    return 1;
}

void gw_api_handle(void *ctx, gw_req_t *r)
{
    gw_api_t *api = ctx;
    const char *path = gw_req_path(r), *method = gw_req_method(r), *id = NULL;
    const route_t *on_path = NULL;
    char allow[64] = "";
    /* over budget: 429 before anything else is looked at or forwarded (mailbox routes only) */
    if (gw_rl_admit(api->limiter, r) != 0)
        return;
    for (size_t i = 0; i < NROUTES; i++) {
        const route_t *rt = &ROUTES[i];
        if (!path_matches(rt, path, &id))
            continue;
        if (!strcmp(method, rt->method)) {
            gw_req_set_route(r, rt->label);
            rt->handle(api, r, rt, id);
            return;
        }
        if (!on_path)
            on_path = rt;
        size_t n = strlen(allow);
        snprintf(allow + n, sizeof(allow) - n, "%s%s", n ? ", " : "", rt->method);
    }
    if (!on_path) {
        gw_req_set_route(r, "unknown");
        send_error(api, r, GW_ERR_NOT_FOUND, "no such resource");
        return;
    }
    gw_req_set_route(r, on_path->resource);
    gw_req_add_header(r, "allow", allow);
    send_error(api, r, GW_ERR_METHOD_NOT_ALLOWED, NULL);
}
