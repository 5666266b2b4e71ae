#include "ms_service.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cm_log.h"
#include "cm_metrics.h"
#include "tigress/mailbox/v1/mailbox_store.pb-c.h"

typedef Tigress__Mailbox__V1__CreateRequest CreateReq;
typedef Tigress__Mailbox__V1__CreateResponse CreateResp;
typedef Tigress__Mailbox__V1__ReadDisplayRequest ReadDisplayReq;
typedef Tigress__Mailbox__V1__ReadDisplayResponse ReadDisplayResp;
typedef Tigress__Mailbox__V1__ReadSecureRequest ReadSecureReq;
typedef Tigress__Mailbox__V1__ReadSecureResponse ReadSecureResp;
typedef Tigress__Mailbox__V1__UpdateRequest UpdateReq;
typedef Tigress__Mailbox__V1__UpdateResponse UpdateResp;
typedef Tigress__Mailbox__V1__DeleteRequest DeleteReq;
typedef Tigress__Mailbox__V1__DeleteResponse DeleteResp;
typedef Tigress__Mailbox__V1__RelinquishRequest RelinquishReq;
typedef Tigress__Mailbox__V1__RelinquishResponse RelinquishResp;
typedef Tigress__Mailbox__V1__DisplayInformation DisplayMsg;
typedef Tigress__Mailbox__V1__Payload PayloadMsg;

/* The one mapping of the store's errors to gRPC status codes. */
static grpc_status_code status_of(ms_err_t e)
{
    switch (e) {
    case MS_OK:
        return GRPC_STATUS_OK;
    case MS_ERR_INVALID:
        return GRPC_STATUS_INVALID_ARGUMENT;
    case MS_ERR_NOT_FOUND:
        return GRPC_STATUS_NOT_FOUND;
    case MS_ERR_EXISTS:
        return GRPC_STATUS_ALREADY_EXISTS;
    case MS_ERR_DENIED:
        return GRPC_STATUS_PERMISSION_DENIED;
    case MS_ERR_PRECONDITION:
        return GRPC_STATUS_FAILED_PRECONDITION;
    case MS_ERR_UNAVAILABLE:
        return GRPC_STATUS_UNAVAILABLE;
    case MS_ERR_RETRY:
        return GRPC_STATUS_ABORTED;
    case MS_ERR_CORRUPT:
    case MS_ERR_INTERNAL:
        return GRPC_STATUS_INTERNAL;
    }
    return GRPC_STATUS_UNKNOWN;
}

/* ---- protobuf <-> domain, one typed wrapper per method ----
 * Each takes the method's request and fills its response (initialised, in call memory). */
typedef ms_err_t (*method_fn)(ms_core_t *c, cm_rpc_call_t *call, const ProtobufCMessage *req,
                              ProtobufCMessage *resp, ms_detail_t *d);

static ms_display_t display_in(const DisplayMsg *m)
{
    ms_display_t d = {NULL, NULL, NULL};
    if (m) {
        d.title = m->title;
        d.description = m->description;
        d.image_url = m->image_url;
    }
    return d;
}

static ms_payload_t payload_in(const PayloadMsg *m)
{
    ms_payload_t p = {NULL, {NULL, 0}};
    if (m) {
        p.type = m->type;
        p.data.p = m->data.data;
        p.data.n = m->data.len;
    }
    return p;
}

static ms_token_t token_in(const Tigress__Mailbox__V1__NotificationToken *m)
{
    ms_token_t t = {NULL, NULL};
    if (m) {
        t.type = m->type;
        t.data = m->token_data;
    }
    return t;
}

static DisplayMsg *display_out(cm_rpc_call_t *call, const ms_display_t *d)
{
    DisplayMsg *m = cm_rpc_alloc(call, sizeof(*m));
    *m = (DisplayMsg)TIGRESS__MAILBOX__V1__DISPLAY_INFORMATION__INIT;
    m->title = cm_rpc_strdup(call, d->title);
    m->description = cm_rpc_strdup(call, d->description);
    m->image_url = cm_rpc_strdup(call, d->image_url);
    return m;
}

static ms_err_t do_create(ms_core_t *c, cm_rpc_call_t *call, const ProtobufCMessage *in,
                          ProtobufCMessage *out, ms_detail_t *d)
{
    const CreateReq *r = (const CreateReq *)in;
    CreateResp *o = (CreateResp *)out;
    ms_create_req_t q = {.mailbox_id = r->mailbox_id,
                         .device_claim = r->device_claim,
                         .correlation_id = r->correlation_id,
                         .ttl_seconds = r->ttl_seconds,
                         .access_rights = r->access_rights,
                         .display = display_in(r->display),
                         .payload = payload_in(r->payload),
                         .token = token_in(r->notification_token)};
    ms_create_resp_t a;
    ms_err_t rc = ms_core_create(c, &q, &a, d);
    if (rc == MS_OK) {
        o->mailbox_id = cm_rpc_strdup(call, a.mailbox_id);
        o->expires_at_ms = a.expires_at_ms;
        o->duplicate = a.duplicate;
    }
    return rc;
}

static ms_err_t do_read_display(ms_core_t *c, cm_rpc_call_t *call, const ProtobufCMessage *in,
                                ProtobufCMessage *out, ms_detail_t *d)
{
    const ReadDisplayReq *r = (const ReadDisplayReq *)in;
    ReadDisplayResp *o = (ReadDisplayResp *)out;
    ms_read_display_req_t q = {.mailbox_id = r->mailbox_id};
    ms_read_display_resp_t a;
    ms_err_t rc = ms_core_read_display(c, &q, &a, d);
    if (rc == MS_OK) {
        o->display = display_out(call, &a.display);
        o->expires_at_ms = a.expires_at_ms;
        ms_read_display_resp_free(&a);
    }
    return rc;
}

static ms_err_t do_read_secure(ms_core_t *c, cm_rpc_call_t *call, const ProtobufCMessage *in,
                               ProtobufCMessage *out, ms_detail_t *d)
{
    const ReadSecureReq *r = (const ReadSecureReq *)in;
    ReadSecureResp *o = (ReadSecureResp *)out;
    ms_read_secure_req_t q = {r->mailbox_id, r->device_claim, r->correlation_id};
    ms_read_secure_resp_t a;
    ms_err_t rc = ms_core_read_secure(c, &q, &a, d);
    if (rc == MS_OK) {
        PayloadMsg *p = cm_rpc_alloc(call, sizeof(*p));
        *p = (PayloadMsg)TIGRESS__MAILBOX__V1__PAYLOAD__INIT;
        p->type = cm_rpc_strdup(call, a.payload.type);
        p->data.data = cm_rpc_memdup(call, a.payload.data.p, a.payload.data.n);
        p->data.len = a.payload.data.n;
        o->display = display_out(call, &a.display);
        o->payload = p;
        o->expires_at_ms = a.expires_at_ms;
        o->duplicate = a.duplicate;
        ms_read_secure_resp_free(&a);
    }
    return rc;
}

static ms_err_t do_update(ms_core_t *c, cm_rpc_call_t *call, const ProtobufCMessage *in,
                          ProtobufCMessage *out, ms_detail_t *d)
{
    const UpdateReq *r = (const UpdateReq *)in;
    ms_update_req_t q = {.mailbox_id = r->mailbox_id,
                         .device_claim = r->device_claim,
                         .correlation_id = r->correlation_id,
                         .payload = payload_in(r->payload),
                         .token = token_in(r->notification_token)};
    ms_ack_resp_t a;
    ms_err_t rc = ms_core_update(c, &q, &a, d);
    if (rc == MS_OK)
        ((UpdateResp *)out)->duplicate = a.duplicate;
    return rc;
}

static ms_err_t do_delete(ms_core_t *c, cm_rpc_call_t *call, const ProtobufCMessage *in,
                          ProtobufCMessage *out, ms_detail_t *d)
{
    const DeleteReq *r = (const DeleteReq *)in;
    ms_delete_req_t q = {r->mailbox_id, r->device_claim, r->correlation_id};
    ms_ack_resp_t a;
    return ms_core_delete(c, &q, &a, d); /* DeleteResponse has no fields */
}

static ms_err_t do_relinquish(ms_core_t *c, cm_rpc_call_t *call, const ProtobufCMessage *in,
                              ProtobufCMessage *out, ms_detail_t *d)
{
    const RelinquishReq *r = (const RelinquishReq *)in;
    ms_relinquish_req_t q = {r->mailbox_id, r->device_claim, r->correlation_id};
    ms_ack_resp_t a;
    ms_err_t rc = ms_core_relinquish(c, &q, &a, d);
    if (rc == MS_OK)
        ((RelinquishResp *)out)->duplicate = a.duplicate;
    return rc;
}

/* ---- the method table ---- */

typedef struct {
    const char *name; /* method name, also in Batch calls */
    const char *label;
    const ProtobufCMessageDescriptor *req;
    const ProtobufCMessageDescriptor *resp;
    method_fn fn;
} method_t;

#define NCODES 17

static const method_t METHODS[] = {
    {"Create", "create", &tigress__mailbox__v1__create_request__descriptor,
     &tigress__mailbox__v1__create_response__descriptor, do_create},
    {"ReadDisplay", "read_display", &tigress__mailbox__v1__read_display_request__descriptor,
     &tigress__mailbox__v1__read_display_response__descriptor, do_read_display},
    {"ReadSecure", "read_secure", &tigress__mailbox__v1__read_secure_request__descriptor,
     &tigress__mailbox__v1__read_secure_response__descriptor, do_read_secure},
    {"Update", "update", &tigress__mailbox__v1__update_request__descriptor,
     &tigress__mailbox__v1__update_response__descriptor, do_update},
    {"Delete", "delete", &tigress__mailbox__v1__delete_request__descriptor,
     &tigress__mailbox__v1__delete_response__descriptor, do_delete},
    {"Relinquish", "relinquish", &tigress__mailbox__v1__relinquish_request__descriptor,
     &tigress__mailbox__v1__relinquish_response__descriptor, do_relinquish},
};
#define NMETHODS (sizeof(METHODS) / sizeof(METHODS[0]))

/* A Batch carries at most this many calls: the gateway sends what one loop iteration produced,
 * far fewer; the cap bounds one handler's run. */
#define MS_BATCH_MAX 256

typedef struct {
    ms_core_t *core;
    const char *label;
    _Atomic(cm_counter_t *) counters[NCODES]; /* registry-owned; looked up on first use */
} binding_t;

/* One per method; the process has one store service. */
static binding_t g_bindings[NMETHODS];
static binding_t g_batch_binding;

static void count(binding_t *b, grpc_status_code code)
{
    int c = code >= 0 && code < NCODES ? (int)code : (int)GRPC_STATUS_UNKNOWN;
    cm_counter_t *ctr = atomic_load(&b->counters[c]);
    if (!ctr) {
        char labels[96];
        snprintf(labels, sizeof(labels), "method=\"%s\",code=\"%s\"", b->label,
                 cm_rpc_code_name((grpc_status_code)c));
        ctr = cm_metrics_counter("tigress_mailbox_store_requests_total",
                                 "MailboxStore requests by method and status code", labels);
        atomic_store(&b->counters[c], ctr);
    }
    cm_counter_add(ctr, 1);
}

static grpc_status_code handle(cm_rpc_call_t *call, void *user, const ProtobufCMessage *req,
                               ProtobufCMessage *resp)
{
    binding_t *b = user;
    const method_t *m = &METHODS[b - g_bindings];
    ms_detail_t d = {""};
    ms_err_t rc = m->fn(b->core, call, req, resp, &d);
    grpc_status_code code = status_of(rc);
    if (rc != MS_OK) {
        cm_rpc_fail(call, code, "%s", d.msg);
        CM_DEBUG(cm_rpc_request_id(call), "%s: %s", m->label, d.msg);
    }
    count(b, code);
    return code;
}

static void *call_alloc(void *data, size_t n)
{
    return cm_rpc_alloc(data, n);
}

static void call_free(void *data, void *p)
{
}

/* One call of a Batch: the same operation and counting as the unary method, with the request
 * and response passed as packed bytes. */
static void batch_one(cm_rpc_call_t *call, const Tigress__Mailbox__V1__BatchCall *in,
                      Tigress__Mailbox__V1__BatchResult *out)
{
    size_t i = 0;
    while (i < NMETHODS && !(in->method && strcmp(in->method, METHODS[i].name) == 0))
        i++;
    if (i == NMETHODS) {
        out->code = GRPC_STATUS_UNIMPLEMENTED;
        out->message = "unknown method in batch";
        return;
    }
    const method_t *m = &METHODS[i];
    ProtobufCAllocator a = {call_alloc, call_free, call};
    ProtobufCMessage *req =
        protobuf_c_message_unpack(m->req, &a, in->request.len, in->request.data);
    if (!req) {
        /* not counted, as the unary path rejects it before the handler */
        out->code = GRPC_STATUS_INVALID_ARGUMENT;
        out->message = "malformed request message";
        return;
    }
    ProtobufCMessage *resp = cm_rpc_alloc(call, m->resp->sizeof_message);
    protobuf_c_message_init(m->resp, resp);
    ms_detail_t d = {""};
    ms_err_t rc = m->fn(g_bindings[i].core, call, req, resp, &d);
    out->code = status_of(rc);
    if (rc != MS_OK) {
        out->message = cm_rpc_strdup(call, d.msg);
        CM_DEBUG(in->request_id && *in->request_id ? in->request_id : cm_rpc_request_id(call),
                 "%s: %s", m->label, d.msg);
    } else {
        out->response.len = protobuf_c_message_get_packed_size(resp);
        out->response.data = cm_rpc_alloc(call, out->response.len ? out->response.len : 1);
        protobuf_c_message_pack(resp, out->response.data);
    }
    count(&g_bindings[i], (grpc_status_code)out->code);
}

static grpc_status_code handle_batch(cm_rpc_call_t *call, void *user, const ProtobufCMessage *req,
                                     ProtobufCMessage *resp)
{
    binding_t *bb = user;
    const Tigress__Mailbox__V1__BatchRequest *in = (const void *)req;
    Tigress__Mailbox__V1__BatchResponse *out = (void *)resp;
    if (in->n_calls > MS_BATCH_MAX) {
        count(bb, GRPC_STATUS_INVALID_ARGUMENT);
        return cm_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "more than %d calls in a batch",
                           MS_BATCH_MAX);
    }
    out->n_results = in->n_calls;
    out->results = cm_rpc_alloc(call, (in->n_calls ? in->n_calls : 1) * sizeof(*out->results));
    for (size_t i = 0; i < in->n_calls; i++) {
        Tigress__Mailbox__V1__BatchResult *r = cm_rpc_alloc(call, sizeof(*r));
        *r = (Tigress__Mailbox__V1__BatchResult)TIGRESS__MAILBOX__V1__BATCH_RESULT__INIT;
        if (cm_rpc_remaining_ms(call) <= 0) {
            /* nobody will read the answer: run no further operation for it */
            r->code = GRPC_STATUS_DEADLINE_EXCEEDED;
            r->message = "deadline exceeded";
        } else {
            batch_one(call, in->calls[i], r);
        }
        out->results[i] = r;
    }
    count(bb, GRPC_STATUS_OK);
    return GRPC_STATUS_OK;
}

int ms_service_register(cm_rpc_server_t *srv, ms_core_t *core)
{
    g_batch_binding.core = core;
    g_batch_binding.label = "batch";
    if (cm_rpc_server_add_method(
            srv, "/" MS_SERVICE_NAME "/Batch", &tigress__mailbox__v1__batch_request__descriptor,
            &tigress__mailbox__v1__batch_response__descriptor, handle_batch, &g_batch_binding) != 0)
        return -1;
    for (size_t i = 0; i < NMETHODS; i++) {
        char path[96];
        snprintf(path, sizeof(path), "/" MS_SERVICE_NAME "/%s", METHODS[i].name);
        g_bindings[i].core = core;
        g_bindings[i].label = METHODS[i].label;
        if (cm_rpc_server_add_method(srv, path, METHODS[i].req, METHODS[i].resp, handle,
                                     &g_bindings[i]) != 0)
            return -1;
    }
    return 0;
}
