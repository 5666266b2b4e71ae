#include "ms_service.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cm_log.h"
#include "cm_metrics.h"

typedef int (*op_fn)(ms_store_t *, const void *, ms_result_t *);

typedef struct {
    const char *path;
    const char *label;
    const ProtobufCMessageDescriptor *req;
    const ProtobufCMessageDescriptor *resp;
    op_fn fn;
} method_t;

#define NCODES 17

static const method_t METHODS[] = {
    {"/" MS_SERVICE_NAME "/Create", "create", &tigress__mailbox__v1__create_request__descriptor,
     &tigress__mailbox__v1__create_response__descriptor, (op_fn)ms_store_create},
    {"/" MS_SERVICE_NAME "/ReadDisplay", "read_display",
     &tigress__mailbox__v1__read_display_request__descriptor,
     &tigress__mailbox__v1__read_display_response__descriptor, (op_fn)ms_store_read_display},
    {"/" MS_SERVICE_NAME "/ReadSecure", "read_secure",
     &tigress__mailbox__v1__read_secure_request__descriptor,
     &tigress__mailbox__v1__read_secure_response__descriptor, (op_fn)ms_store_read_secure},
    {"/" MS_SERVICE_NAME "/Update", "update", &tigress__mailbox__v1__update_request__descriptor,
     &tigress__mailbox__v1__update_response__descriptor, (op_fn)ms_store_update},
    {"/" MS_SERVICE_NAME "/Delete", "delete", &tigress__mailbox__v1__delete_request__descriptor,
     &tigress__mailbox__v1__delete_response__descriptor, (op_fn)ms_store_delete},
    {"/" MS_SERVICE_NAME "/Relinquish", "relinquish",
     &tigress__mailbox__v1__relinquish_request__descriptor,
     &tigress__mailbox__v1__relinquish_response__descriptor, (op_fn)ms_store_relinquish},
};
#define NMETHODS (sizeof(METHODS) / sizeof(METHODS[0]))

/* A Batch carries at most this many calls: the gateway sends what one loop iteration produced,
 * far fewer; the cap bounds one handler's run. */
#define MS_BATCH_MAX 256

static const char *CODE_NAMES[NCODES] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

typedef struct {
    ms_store_t *st;
    const method_t *m;
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
        snprintf(labels, sizeof(labels), "method=\"%s\",code=\"%s\"", b->m->label, CODE_NAMES[c]);
        ctr = cm_metrics_counter("tigress_mailbox_store_requests_total",
                                 "MailboxStore requests by method and status code", labels);
        atomic_store(&b->counters[c], ctr);
    }
    cm_counter_add(ctr, 1);
}

static void *call_alloc(void *data, size_t n)
{
    return cm_rpc_alloc(data, n);
}

static void call_free(void *data, void *p)
{
}

static grpc_status_code handle(cm_rpc_call_t *call, void *user, const ProtobufCMessage *req,
                               ProtobufCMessage *resp)
{
    binding_t *b = user;
    ms_result_t res;
    grpc_status_code code;
    b->m->fn(b->st, req, &res);
    if (res.code != GRPC_STATUS_OK) {
        code = cm_rpc_fail(call, res.code, "%s", res.msg);
        CM_DEBUG(cm_rpc_request_id(call), "%s: %s", b->m->label, res.msg);
    } else {
        /* The store hands back the packed response (also what idempotency records keep);
         * unpacking it into call memory makes it the reply. */
        ProtobufCAllocator a = {call_alloc, call_free, call};
        ProtobufCMessage *m = protobuf_c_message_unpack(b->m->resp, &a, res.resp_len, res.resp);
        if (m) {
            memcpy(resp, m, b->m->resp->sizeof_message);
            code = GRPC_STATUS_OK;
        } else {
            code = cm_rpc_fail(call, GRPC_STATUS_INTERNAL, "stored response unreadable");
        }
    }
    ms_result_free(&res);
    count(b, code);
    return code;
}

/* One call of a Batch: the same operation and counting as the unary method, with the packed
 * request and response passed through as bytes (the store keeps responses packed already). */
static void batch_one(cm_rpc_call_t *call, const Tigress__Mailbox__V1__BatchCall *in,
                      Tigress__Mailbox__V1__BatchResult *out)
{
    binding_t *b = NULL;
    for (size_t i = 0; i < NMETHODS; i++) {
        const char *name = strrchr(METHODS[i].path, '/') + 1;
        if (in->method && strcmp(in->method, name) == 0)
            b = &g_bindings[i];
    }
    if (!b) {
        out->code = GRPC_STATUS_UNIMPLEMENTED;
        out->message = "unknown method in batch";
        return;
    }
    ProtobufCAllocator a = {call_alloc, call_free, call};
    ProtobufCMessage *req =
        protobuf_c_message_unpack(b->m->req, &a, in->request.len, in->request.data);
    if (!req) {
        /* not counted, as the unary path rejects it before the handler */
        out->code = GRPC_STATUS_INVALID_ARGUMENT;
        out->message = "malformed request message";
        return;
    }
    ms_result_t res;
    b->m->fn(b->st, req, &res);
    out->code = res.code;
    if (res.code != GRPC_STATUS_OK) {
        out->message = cm_rpc_strdup(call, res.msg);
        CM_DEBUG(in->request_id && *in->request_id ? in->request_id : cm_rpc_request_id(call),
                 "%s: %s", b->m->label, res.msg);
    } else {
        out->response.data = cm_rpc_memdup(call, res.resp, res.resp_len);
        out->response.len = res.resp_len;
    }
    ms_result_free(&res);
    count(b, (grpc_status_code)out->code);
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

int ms_service_register(cm_rpc_server_t *srv, ms_store_t *st)
{
    static const method_t batch = {"/" MS_SERVICE_NAME "/Batch", "batch",
                                   &tigress__mailbox__v1__batch_request__descriptor,
                                   &tigress__mailbox__v1__batch_response__descriptor, NULL};
    g_batch_binding.st = st;
    g_batch_binding.m = &batch;
    if (cm_rpc_server_add_method(srv, batch.path, batch.req, batch.resp, handle_batch,
                                 &g_batch_binding) != 0)
        return -1;
    for (size_t i = 0; i < NMETHODS; i++) {
        g_bindings[i].st = st;
        g_bindings[i].m = &METHODS[i];
        if (cm_rpc_server_add_method(srv, METHODS[i].path, METHODS[i].req, METHODS[i].resp, handle,
                                     &g_bindings[i]) != 0)
            return -1;
    }
    return 0;
}
