/* The public REST/JSON API v1 (draft 001 as issue 3 §2 reads it): routing, header and body
 * validation (gw_json), device attestation (issue 5 §2), the mailbox-store calls and the
 * translation of their results into HTTP answers (gw_backend, gw_preview).
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

#include "cm_log.h"
#include "cm_metrics.h"
#include "cm_uuid.h"
#include "gw_backend.h"
#include "gw_http.h"
#include "gw_json.h"
#include "gw_openapi.h"
#include "gw_preview.h"
#include "gw_pubconfig.h"
#include "gw_ratelimit.h"
#include "tigress/attest/v1/attestation_verifier.pb-c.h"
#include "tigress/mailbox/v1/mailbox_store.pb-c.h"

/* ---- configuration ----------------------------------------------------------------------- */

static const char *o_store_target, *o_store_shards, *o_push_target, *o_attest_target,
    *o_public_base_url, *o_attest_policy, *o_lb_policy;
static int64_t o_backend_timeout_ms, o_max_ttl;
static int o_store_batch;

static cm_opt_t api_opts[] = {
    {"store-target", CM_OPT_STR, "127.0.0.1:7001", "mailbox-store gRPC target", &o_store_target},
    {"store-shards", CM_OPT_STR, NULL,
     "comma-separated mailbox-store shard addresses; mailboxes are placed by rendezvous hashing "
     "of their id (cm_shard.h); overrides --store-target",
     &o_store_shards},
    {"push-target", CM_OPT_STR, NULL, "push-dispatch gRPC target; empty: push reported unsupported",
     &o_push_target},
    {"attestation-target", CM_OPT_STR, NULL,
     "attestation-verifier gRPC target; empty: no verifier (a present attestation then gets "
     "503 unless the policy is off)",
     &o_attest_target},
    {"backend-timeout-ms", CM_OPT_INT, "2000", "deadline of every backend call (ms)",
     &o_backend_timeout_ms},
    {"public-base-url", CM_OPT_STR, "http://127.0.0.1:8080",
     "scheme://host[:port] used in urlLink and og:url", &o_public_base_url},
    {"max-ttl", CM_OPT_INT, "172800", "largest mailbox lifetime a client may ask for (s)",
     &o_max_ttl},
    {"attestation-policy", CM_OPT_STR, "verify-if-present",
     "device attestation on Create/Update: off | verify-if-present | required", &o_attest_policy},
    {"lb-policy", CM_OPT_STR, NULL, "gRPC load-balancing policy for backends (round_robin in k8s)",
     &o_lb_policy},
    {"store-batch", CM_OPT_BOOL, "1",
     "send the store reads of one loop iteration as one MailboxStore/Batch call (0: one call "
     "per read, for a store older than Batch)",
     &o_store_batch},
};

cm_opt_t *gw_api_options(size_t *n)
{
    /* the API's table, then the rate limiter's and the published configuration's */
    static cm_opt_t all[sizeof(api_opts) / sizeof(api_opts[0]) + 16];
    size_t na = sizeof(api_opts) / sizeof(api_opts[0]), nrl = 0, npub = 0;
    cm_opt_t *rl = gw_rl_options(&nrl), *pub = gw_pubconfig_options(&npub);
    if (na + nrl + npub > sizeof(all) / sizeof(all[0]))
        abort();
    memcpy(all, api_opts, sizeof(api_opts));
    memcpy(all + na, rl, nrl * sizeof(*rl));
    memcpy(all + na + nrl, pub, npub * sizeof(*pub));
    *n = na + nrl + npub;
    return all;
}

typedef enum { ATTEST_OFF, ATTEST_IF_PRESENT, ATTEST_REQUIRED } attest_policy_t;

static struct {
    char base_url[512]; /* public base URL without a trailing '/' */
    attest_policy_t policy;
    int64_t timeout_ms;
    int64_t max_ttl;
} C;

int gw_api_start(int nloops)
{
    (void)nloops; /* one poller serves every loop; completions hop back with gw_req_post */
    if (!strcmp(o_attest_policy ? o_attest_policy : "", "off"))
        C.policy = ATTEST_OFF;
    else if (!strcmp(o_attest_policy ? o_attest_policy : "", "verify-if-present"))
        C.policy = ATTEST_IF_PRESENT;
    else if (!strcmp(o_attest_policy ? o_attest_policy : "", "required"))
        C.policy = ATTEST_REQUIRED;
    else {
        CM_ERROR(NULL, "gateway: --attestation-policy must be off, verify-if-present or required");
        return -1;
    }
    int have_verifier = o_attest_target && *o_attest_target;
    if (C.policy == ATTEST_REQUIRED && !have_verifier) {
        CM_ERROR(NULL, "gateway: --attestation-policy=required needs --attestation-target");
        return -1;
    }
    if (C.policy == ATTEST_IF_PRESENT && !have_verifier)
        CM_WARN(NULL, "gateway: no --attestation-target: requests carrying a device attestation "
                      "will get 503 (set --attestation-policy=off to ignore attestations)");
    if (o_backend_timeout_ms <= 0 || o_max_ttl <= 0) {
        CM_ERROR(NULL, "gateway: --backend-timeout-ms and --max-ttl must be positive");
        return -1;
    }
    const char *u = o_public_base_url ? o_public_base_url : "";
    if (strncasecmp(u, "http://", 7) && strncasecmp(u, "https://", 8)) {
        CM_ERROR(NULL, "gateway: --public-base-url must start with http:// or https://");
        return -1;
    }
    size_t n = strlen(u);
    while (n > 0 && u[n - 1] == '/')
        n--;
    size_t scheme = strncasecmp(u, "https://", 8) ? 7 : 8;
    if (n <= scheme || n >= sizeof(C.base_url) || strpbrk(u, " \t\r\n\"<>")) {
        CM_ERROR(NULL, "gateway: --public-base-url must be scheme://host[:port][/path], at most "
                       "511 characters");
        return -1;
    }
    memcpy(C.base_url, u, n);
    C.base_url[n] = '\0';
    C.timeout_ms = o_backend_timeout_ms;
    C.max_ttl = o_max_ttl;

    gw_backend_config_t bc = {
        .store_target = o_store_target,
        .store_shards = o_store_shards,
        .push_target = o_push_target,
        .attest_target = o_attest_target,
        .lb_policy = o_lb_policy,
        .timeout_ms = o_backend_timeout_ms,
        .store_batch = o_store_batch,
    };
    if (gw_rl_start() != 0)
        return -1;
    if (gw_backend_start(&bc) != 0) {
        gw_rl_stop();
        return -1;
    }
    gw_pubconfig_set_api(&(gw_pubconfig_api_t){
        .max_ttl_s = C.max_ttl,
        .attestation_policy = o_attest_policy,
        .attestation_verifier = have_verifier,
        .push_supported = o_push_target && *o_push_target ? gw_backend_push_supported : NULL,
        .push_supported_now = gw_backend_push_supported_now,
    });
    CM_INFO(NULL,
            "gateway api: store=%s shards=%s push=%s attestation=%s policy=%s "
            "timeout_ms=%lld max_ttl=%lld base_url=%s",
            o_store_target, o_store_shards && *o_store_shards ? o_store_shards : "-",
            o_push_target && *o_push_target ? o_push_target : "-",
            have_verifier ? o_attest_target : "-", o_attest_policy, (long long)C.timeout_ms,
            (long long)C.max_ttl, C.base_url);
    return 0;
}

void gw_api_stop(void)
{
    gw_backend_stop();
    gw_rl_stop();
}

/* ---- responses --------------------------------------------------------------------------- */

/* Echoes the correlation id under the name(s) it came with (001 §5 and later drafts). Invalid
 * values are refused before any answer but that 400, which echoes nothing. */
static void echo_correlation(gw_req_t *r)
{
    static const char *const names[] = {"mailbox-correlation-id", "mailbox-request-id"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = gw_req_header(r, names[i]);
        if (v && gw_correlation_id_valid(v))
            gw_req_add_header(r, names[i], v);
    }
}

static void send_json(gw_req_t *r, int status, const char *body, size_t len)
{
    gw_rl_observe(r, status);
    echo_correlation(r);
    gw_req_add_header(r, "cache-control", "no-store");
    gw_req_add_header(r, "x-content-type-options", "nosniff");
    gw_req_respond(r, status, "application/json", body, len);
}

static void send_error(gw_req_t *r, int status, const char *code, const char *message)
{
    size_t len = 0;
    char *body = gw_json_error_body(code, message, &len);
    if (!body) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}";
        send_json(r, 500, oom, sizeof(oom) - 1);
        return;
    }
    send_json(r, status, body, len);
    free(body);
}

static void send_grpc_error(gw_req_t *r, const cm_rpc_status_t *st)
{
    gw_status_map_t m = gw_status_from_grpc(st->code);
    if (m.http_status >= 500)
        CM_DEBUG(gw_req_id(r), "gateway: backend answered %d", (int)st->code);
    send_error(r, m.http_status, m.code, m.message);
}

static void send_empty_ok(gw_req_t *r, int duplicate)
{
    send_json(r, duplicate ? 201 : 200, "{}", 2);
}

/* ---- request context --------------------------------------------------------------------- */

typedef enum {
    OP_CREATE,
    OP_UPDATE,
    OP_READ_DISPLAY,
    OP_READ_SECURE,
    OP_DELETE,
    OP_RELINQUISH
} op_t;

typedef struct {
    gw_req_t *r; /* not owned */
    op_t op;
    int64_t deadline_ms;
    char id[CM_UUID_STRLEN + 1];
    char claim[CM_UUID_STRLEN + 1];
    char corr[GW_CORRELATION_ID_MAX + 1];
    gw_create_body_t create; /* owned (OP_CREATE) */
    gw_update_body_t update; /* owned (OP_UPDATE) */
    /* Create: answers once both the store call and the push-support lookup are done */
    int pending;
    int store_done;
    cm_rpc_status_t store_st;
    ProtobufCMessage *store_resp; /* owned */
} api_ctx_t;

static api_ctx_t *ctx_new(gw_req_t *r, op_t op)
{
    api_ctx_t *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->r = r;
    c->op = op;
    c->deadline_ms = gw_backend_now_ms() + C.timeout_ms;
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

/* ---- store calls ------------------------------------------------------------------------- */

static void create_try_finish(api_ctx_t *c)
{
    if (c->pending > 0)
        return;
    gw_req_t *r = c->r;
    if (c->store_st.code != GRPC_STATUS_OK) {
        send_grpc_error(r, &c->store_st);
        ctx_free(c);
        return;
    }
    Tigress__Mailbox__V1__CreateResponse *resp = (void *)c->store_resp;
    const char *id = resp->mailbox_id && *resp->mailbox_id ? resp->mailbox_id : c->id;
    char url[600];
    snprintf(url, sizeof(url), "%s/v1/m/%s", C.base_url, id);
    int push = gw_backend_push_supported_now(c->create.token.present ? c->create.token.type : NULL);
    size_t len;
    char *body = gw_json_create_response(url, push, &len);
    if (!body)
        send_error(r, 500, "internal", "internal error");
    else
        send_json(r, resp->duplicate ? 201 : 200, body, len);
    free(body);
    ctx_free(c);
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
    gw_req_t *r = c->r;
    if (c->op == OP_CREATE) {
        c->store_st = *st;
        c->store_resp = resp;
        c->pending--;
        create_try_finish(c);
        return;
    }
    if (st->code != GRPC_STATUS_OK) {
        send_grpc_error(r, st);
        ctx_free(c);
        return;
    }
    size_t len = 0;
    char *body = NULL;
    switch (c->op) {
    case OP_READ_DISPLAY: {
        Tigress__Mailbox__V1__ReadDisplayResponse *m = (void *)resp;
        Tigress__Mailbox__V1__DisplayInformation *d = m->display;
        char url[600];
        snprintf(url, sizeof(url), "%s/v1/m/%s", C.base_url, c->id);
        body = gw_preview_render(d ? d->title : "", d ? d->description : "", d ? d->image_url : "",
                                 url, &len);
        if (!body) {
            send_error(r, 500, "internal", "internal error");
            break;
        }
        echo_correlation(r);
        gw_req_add_header(r, "cache-control", "no-store");
        gw_req_add_header(r, "content-security-policy", GW_PREVIEW_CSP);
        gw_req_add_header(r, "x-content-type-options", "nosniff");
        gw_req_add_header(r, "referrer-policy", "no-referrer");
        gw_req_respond(r, 200, "text/html; charset=utf-8", body, len);
        break;
    }
    case OP_READ_SECURE: {
        Tigress__Mailbox__V1__ReadSecureResponse *m = (void *)resp;
        Tigress__Mailbox__V1__DisplayInformation *d = m->display;
        Tigress__Mailbox__V1__Payload *p = m->payload;
        body = gw_json_read_response(
            d ? d->title : "", d ? d->description : "", d ? d->image_url : "", p ? p->type : "",
            p ? p->data.data : NULL, p ? p->data.len : 0, m->expires_at_ms, &len);
        if (!body)
            send_error(r, 500, "internal", "internal error");
        else
            send_json(r, m->duplicate ? 201 : 200, body, len);
        break;
    }
    case OP_UPDATE:
        send_empty_ok(r, ((Tigress__Mailbox__V1__UpdateResponse *)resp)->duplicate);
        break;
    case OP_DELETE:
        send_empty_ok(r, ((Tigress__Mailbox__V1__DeleteResponse *)resp)->duplicate);
        break;
    case OP_RELINQUISH:
        send_empty_ok(r, ((Tigress__Mailbox__V1__RelinquishResponse *)resp)->duplicate);
        break;
    default:
        send_error(r, 500, "internal", "internal error");
        break;
    }
    free(body);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    ctx_free(c);
}

static void fill_payload(Tigress__Mailbox__V1__Payload *p, const gw_payload_t *src)
{
    p->type = (char *)src->type;
    p->data.data = src->data;
    p->data.len = src->data_len;
}

static void fill_token(Tigress__Mailbox__V1__NotificationToken *t, const gw_token_t *src)
{
    t->type = (char *)src->type;
    t->token_data = src->token_data;
}

/* Starts the store call of |c|'s operation; on failure to start answers 503 and frees |c|. */
static void store_call(api_ctx_t *c)
{
    Tigress__Mailbox__V1__Payload payload = TIGRESS__MAILBOX__V1__PAYLOAD__INIT;
    Tigress__Mailbox__V1__DisplayInformation disp = TIGRESS__MAILBOX__V1__DISPLAY_INFORMATION__INIT;
    Tigress__Mailbox__V1__NotificationToken tok = TIGRESS__MAILBOX__V1__NOTIFICATION_TOKEN__INIT;
    const ProtobufCMessage *req = NULL;
    const ProtobufCMessageDescriptor *rd = NULL;
    const char *method = NULL;
    union {
        Tigress__Mailbox__V1__CreateRequest create;
        Tigress__Mailbox__V1__UpdateRequest update;
        Tigress__Mailbox__V1__ReadDisplayRequest rdisp;
        Tigress__Mailbox__V1__ReadSecureRequest rsec;
        Tigress__Mailbox__V1__DeleteRequest del;
        Tigress__Mailbox__V1__RelinquishRequest rel;
    } m;

    switch (c->op) {
    case OP_CREATE:
        m.create = (Tigress__Mailbox__V1__CreateRequest)TIGRESS__MAILBOX__V1__CREATE_REQUEST__INIT;
        m.create.mailbox_id = c->id;
        m.create.device_claim = c->claim;
        m.create.correlation_id = c->corr;
        fill_payload(&payload, &c->create.payload);
        m.create.payload = &payload;
        disp.title = c->create.title;
        disp.description = c->create.description;
        disp.image_url = c->create.image_url;
        m.create.display = &disp;
        if (c->create.token.present) {
            fill_token(&tok, &c->create.token);
            m.create.notification_token = &tok;
        }
        m.create.access_rights = c->create.access_rights;
        m.create.ttl_seconds = c->create.ttl_seconds;
        req = &m.create.base;
        method = "/tigress.mailbox.v1.MailboxStore/Create";
        rd = &tigress__mailbox__v1__create_response__descriptor;
        break;
    case OP_UPDATE:
        m.update = (Tigress__Mailbox__V1__UpdateRequest)TIGRESS__MAILBOX__V1__UPDATE_REQUEST__INIT;
        m.update.mailbox_id = c->id;
        m.update.device_claim = c->claim;
        m.update.correlation_id = c->corr;
        fill_payload(&payload, &c->update.payload);
        m.update.payload = &payload;
        fill_token(&tok, &c->update.token);
        m.update.notification_token = &tok;
        req = &m.update.base;
        method = "/tigress.mailbox.v1.MailboxStore/Update";
        rd = &tigress__mailbox__v1__update_response__descriptor;
        break;
    case OP_READ_DISPLAY:
        m.rdisp = (Tigress__Mailbox__V1__ReadDisplayRequest)
            TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
        m.rdisp.mailbox_id = c->id;
        req = &m.rdisp.base;
        method = "/tigress.mailbox.v1.MailboxStore/ReadDisplay";
        rd = &tigress__mailbox__v1__read_display_response__descriptor;
        break;
    case OP_READ_SECURE:
        m.rsec = (Tigress__Mailbox__V1__ReadSecureRequest)
            TIGRESS__MAILBOX__V1__READ_SECURE_REQUEST__INIT;
        m.rsec.mailbox_id = c->id;
        m.rsec.device_claim = c->claim;
        m.rsec.correlation_id = c->corr;
        req = &m.rsec.base;
        method = "/tigress.mailbox.v1.MailboxStore/ReadSecure";
        rd = &tigress__mailbox__v1__read_secure_response__descriptor;
        break;
    case OP_DELETE:
        m.del = (Tigress__Mailbox__V1__DeleteRequest)TIGRESS__MAILBOX__V1__DELETE_REQUEST__INIT;
        m.del.mailbox_id = c->id;
        m.del.device_claim = c->claim;
        m.del.correlation_id = c->corr;
        req = &m.del.base;
        method = "/tigress.mailbox.v1.MailboxStore/Delete";
        rd = &tigress__mailbox__v1__delete_response__descriptor;
        break;
    case OP_RELINQUISH:
        m.rel =
            (Tigress__Mailbox__V1__RelinquishRequest)TIGRESS__MAILBOX__V1__RELINQUISH_REQUEST__INIT;
        m.rel.mailbox_id = c->id;
        m.rel.device_claim = c->claim;
        m.rel.correlation_id = c->corr;
        req = &m.rel.base;
        method = "/tigress.mailbox.v1.MailboxStore/Relinquish";
        rd = &tigress__mailbox__v1__relinquish_response__descriptor;
        break;
    }

    if (c->op == OP_CREATE) {
        /* the push-support lookup runs alongside the store call */
        c->pending = 1;
        const char *type = c->create.token.present ? c->create.token.type : NULL;
        if (gw_backend_push_supported(type, c->r, create_push_known, c) < 0)
            c->pending++;
    }
    if (gw_backend_call(GW_BE_STORE, c->id, c->r, method, req, rd, c->deadline_ms, store_done, c) !=
        0) {
        cm_rpc_status_t st = {.code = GRPC_STATUS_UNAVAILABLE};
        if (c->op == OP_CREATE) {
            /* the push lookup may still be pending: finish through the same path */
            c->store_st = st;
            c->pending--;
            create_try_finish(c);
            return;
        }
        send_grpc_error(c->r, &st);
        ctx_free(c);
    }
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
        /* a verdict, not an outage: the code stays out of logs and answers (issue 5 §2) */
        attest_count("invalid", v ? v->format : NULL);
        send_error(c->r, 401, "invalid_attestation", "device attestation not accepted");
    } else {
        attest_count("error", NULL);
        send_grpc_error(c->r, st);
    }
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    ctx_free(c);
}

/* Applies the attestation policy to a Create or Update whose body is valid, then continues
 * with the store call. The challenge is SHA-256 of the decoded payload bytes. */
static void attest_then_store(api_ctx_t *c, const gw_payload_t *payload)
{
    gw_req_t *r = c->r;
    const char *h = gw_req_header(r, "mailbox-device-attestation");
    if (!h)
        h = gw_req_header(r, "deviceattestation");
    if (C.policy == ATTEST_OFF || (!h && C.policy == ATTEST_IF_PRESENT)) {
        store_call(c);
        return;
    }
    if (!h) {
        attest_count("missing", NULL);
        send_error(r, 401, "attestation_required", "device attestation required");
        ctx_free(c);
        return;
    }
    if (!gw_backend_configured(GW_BE_ATTEST)) {
        send_error(r, 503, "unavailable", "device attestation cannot be verified");
        ctx_free(c);
        return;
    }
    uint8_t *ao = NULL, *cd = NULL;
    size_t aol = 0, cdl = 0;
    if (gw_json_parse_attestation(h, &ao, &aol, &cd, &cdl) != 0) {
        attest_count("invalid", NULL);
        send_error(r, 401, "invalid_attestation", "device attestation not accepted");
        ctx_free(c);
        return;
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
    int rc = gw_backend_call(GW_BE_ATTEST, NULL, r, "/tigress.attest.v1.AttestationVerifier/Verify",
                             &req.base, &tigress__attest__v1__verify_response__descriptor,
                             c->deadline_ms, attest_done, c);
    free(ao);
    free(cd);
    if (rc != 0) {
        send_error(r, 503, "unavailable", "service temporarily unavailable");
        ctx_free(c);
    }
}

/* ---- routing and request checks ---------------------------------------------------------- */

/* Common header checks of the mailbox routes. Answers and returns -1 on failure. */
static int check_common(gw_req_t *r, api_ctx_t *c, int need_claim)
{
    static const char *const corr_names[] = {"mailbox-correlation-id", "mailbox-request-id"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = gw_req_header(r, corr_names[i]);
        if (!v)
            continue;
        if (!gw_correlation_id_valid(v)) {
            send_error(r, 400, "invalid_header",
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
        send_error(r, 415, "unsupported_media_type", "request bodies must be application/json");
        return -1;
    }

    if (!need_claim)
        return 0;
    const char *a = gw_req_header(r, "mailbox-device-claim");
    const char *b = gw_req_header(r, "deviceclaim");
    if (a && b && strcasecmp(a, b) != 0) {
        send_error(r, 400, "invalid_header", "deviceClaim and Mailbox-Device-Claim differ");
        return -1;
    }
    const char *claim = a ? a : b;
    if (!claim) {
        send_error(r, 400, "missing_header", "deviceClaim header is required");
        return -1;
    }
    if (!cm_uuid_valid(claim, strlen(claim))) {
        send_error(r, 400, "invalid_header", "deviceClaim must be a UUID");
        return -1;
    }
    cm_uuid_canonical(claim, c->claim);
    return 0;
}

static void handle_create(gw_req_t *r)
{
    api_ctx_t *c = ctx_new(r, OP_CREATE);
    if (check_common(r, c, 1) != 0)
        goto done;
    size_t len = 0;
    const uint8_t *body = gw_req_body(r, &len);
    gw_json_err_t err = {0};
    if (gw_json_parse_create(body, len, (int64_t)time(NULL) * 1000, C.max_ttl, &c->create, &err) !=
        0) {
        send_error(r, err.code && !strcmp(err.code, "internal") ? 500 : 400, err.code, err.message);
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

static void handle_update(gw_req_t *r, api_ctx_t *c)
{
    size_t len = 0;
    const uint8_t *body = gw_req_body(r, &len);
    gw_json_err_t err = {0};
    if (gw_json_parse_update(body, len, &c->update, &err) != 0) {
        send_error(r, 400, err.code, err.message);
        ctx_free(c);
        return;
    }
    attest_then_store(c, &c->update.payload);
}

static void handle_healthz(gw_req_t *r)
{
    static const char ok[] = "{\"status\":\"ok\"}";
    send_json(r, 200, ok, sizeof(ok) - 1);
}

static void readyz_answer(gw_req_t *r, int ready)
{
    static const char ok[] = "{\"status\":\"ready\"}";
    static const char no[] = "{\"status\":\"not ready\"}";
    if (ready)
        send_json(r, 200, ok, sizeof(ok) - 1);
    else
        send_json(r, 503, no, sizeof(no) - 1);
}

static void readyz_known(void *arg)
{
    readyz_answer(arg, gw_backend_ready_now());
}

static void handle_readyz(gw_req_t *r)
{
    int v = gw_backend_ready(r, readyz_known, r);
    if (v >= 0)
        readyz_answer(r, v);
}

static void method_not_allowed(gw_req_t *r, const char *allow)
{
    gw_req_add_header(r, "allow", allow);
    send_error(r, 405, "method_not_allowed", "method not allowed on this resource");
}

void gw_api_handle(gw_req_t *r)
{
    const char *path = gw_req_path(r);
    const char *method = gw_req_method(r);

    if (!strcmp(path, "/healthz") || !strcmp(path, "/readyz")) {
        int h = path[1] == 'h';
        gw_req_set_route(r, h ? "healthz" : "readyz");
        if (strcmp(method, "GET") != 0) {
            method_not_allowed(r, "GET");
            return;
        }
        if (h)
            handle_healthz(r);
        else
            handle_readyz(r);
        return;
    }
    if (!strcmp(path, "/v1/config") || !strcmp(path, "/v1/openapi.json")) {
        if (path[4] == 'c')
            gw_pubconfig_handle(r);
        else
            gw_openapi_handle(r);
        return;
    }
    if (gw_rl_admit(r) != 0)
        return;
    if (!strcmp(path, "/v1/m")) {
        gw_req_set_route(r, "create");
        if (strcmp(method, "POST") != 0) {
            method_not_allowed(r, "POST");
            return;
        }
        handle_create(r);
        return;
    }
    static const char prefix[] = "/v1/m/";
    const char *id = path + sizeof(prefix) - 1;
    if (strncmp(path, prefix, sizeof(prefix) - 1) != 0 || !*id || strchr(id, '/')) {
        gw_req_set_route(r, "unknown");
        send_error(r, 404, "not_found", "no such resource");
        return;
    }

    op_t op;
    const char *route;
    int need_claim = 1;
    if (!strcmp(method, "GET")) {
        op = OP_READ_DISPLAY, route = "read_display", need_claim = 0;
    } else if (!strcmp(method, "POST")) {
        op = OP_READ_SECURE, route = "read_secure";
    } else if (!strcmp(method, "PUT")) {
        op = OP_UPDATE, route = "update";
    } else if (!strcmp(method, "DELETE")) {
        op = OP_DELETE, route = "delete";
    } else if (!strcmp(method, "PATCH")) {
        op = OP_RELINQUISH, route = "relinquish";
    } else {
        gw_req_set_route(r, "mailbox");
        method_not_allowed(r, "GET, POST, PUT, DELETE, PATCH");
        return;
    }
    gw_req_set_route(r, route);

    api_ctx_t *c = ctx_new(r, op);
    if (check_common(r, c, need_claim) != 0) {
        ctx_free(c);
        return;
    }
    size_t idlen = strlen(id);
    if (!cm_uuid_is_v4(id, idlen)) {
        send_error(r, 400, "invalid_mailbox_id", "mailbox identifier must be a version 4 UUID");
        ctx_free(c);
        return;
    }
    cm_uuid_canonical(id, c->id);
    if (op == OP_UPDATE)
        handle_update(r, c);
    else
        store_call(c);
}
