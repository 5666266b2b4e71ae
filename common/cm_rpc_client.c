/* cm_rpc client: channels, blocking calls, asynchronous calls and the health check helper.
 * gRPC core's completion-queue rules apply: a call's batches complete on the queue it was bound
 * to; several threads may call next() on one queue, but next and pluck never mix on one queue,
 * and at most 6 threads may pluck one queue at once; nothing is posted to a queue after
 * grpc_completion_queue_shutdown. */
#include "cm_alloc.h"
#include "cm_rpc.h"
#include "cm_rpc_internal.h"

#include "cm_log.h"
#include "grpc/health/v1/health.pb-c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

struct cm_rpc_channel {
    char *target;          /* owned */
    grpc_channel *channel; /* owned */
};

/* ---- channels ----------------------------------------------------------------------------- */

int cm_rpc_channel_new(const char *target, const cm_rpc_channel_opts_t *opts,
                       cm_rpc_channel_t **out)
{
    *out = NULL;
    if (!target || !*target)
        return -1;
    cm_rpc_channel_t *ch = cm_xcalloc(1, sizeof(*ch));
    ch->target = cm_xstrdup(target);

    /* Reconnect fast when a backend comes back (restarts, rolling updates): the default backoff
     * grows to 120 s, during which every call fails with UNAVAILABLE. Keepalive pings notice a
     * peer that vanished without a FIN; the server side allows them (cm_rpc_server_new).
     * GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is deliberately left alone: core uses it as the connect
     * timeout, and 100 ms made connects on a loaded machine fail with UNAVAILABLE. */
    grpc_arg args[9];
    int n = 0;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
    args[n++].value.integer = 100;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    args[n++].value.integer = 1000;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = GRPC_ARG_KEEPALIVE_TIME_MS;
    args[n++].value.integer = 20000;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS;
    args[n++].value.integer = 10000;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS;
    args[n++].value.integer = 1;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA;
    args[n++].value.integer = 0;
    if (opts && opts->lb_policy && *opts->lb_policy) {
        args[n].type = GRPC_ARG_STRING;
        args[n].key = GRPC_ARG_LB_POLICY_NAME;
        args[n++].value.string = (char *)opts->lb_policy;
    }
    if (opts && opts->minimal_stack) {
        /* Without the explicit deadline checks the minimal stack would drop client-side
         * deadlines: a hung backend would then hold a call until the server gave up. */
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = GRPC_ARG_MINIMAL_STACK;
        args[n++].value.integer = 1;
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = GRPC_ARG_ENABLE_DEADLINE_CHECKS;
        args[n++].value.integer = 1;
    }
    grpc_channel_args cargs = {.num_args = (size_t)n, .args = args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    ch->channel = grpc_channel_create(target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    if (!ch->channel)
        goto fail;
    *out = ch;
    return 0;
fail:
    cm_rpc_channel_del(ch);
    return -1;
}

void cm_rpc_channel_del(cm_rpc_channel_t *ch)
{
    if (!ch)
        return;
    if (ch->channel)
        grpc_channel_destroy(ch->channel);
    free(ch->target);
    free(ch);
}

const char *cm_rpc_channel_target(const cm_rpc_channel_t *ch)
{
    return ch->target;
}

/* ---- metrics ------------------------------------------------------------------------------ */

/* rpc_client_requests_total{method,code}. Paths come from code, not from peers, so they are
 * few; each gets its entry once and later calls find it by a lock-free scan (entries are
 * published by the release store of |nclient|, and never change or go away). */
#define CLIENT_PATHS 64
static cm_rpc__metrics_t client_mx[CLIENT_PATHS + 1]; /* the last one: "other" */
static _Atomic size_t nclient;
static pthread_mutex_t client_mu = PTHREAD_MUTEX_INITIALIZER;

#define CLIENT_REQUESTS "rpc_client_requests_total"
#define CLIENT_REQUESTS_HELP "gRPC calls made, by method and final status code"

static cm_rpc__metrics_t *client_metrics(const char *path)
{
    size_t n = atomic_load_explicit(&nclient, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(client_mx[i].method, path) == 0)
            return &client_mx[i];
    pthread_mutex_lock(&client_mu);
    n = atomic_load_explicit(&nclient, memory_order_relaxed);
    cm_rpc__metrics_t *mx = NULL;
    for (size_t i = 0; i < n && !mx; i++)
        if (strcmp(client_mx[i].method, path) == 0)
            mx = &client_mx[i];
    if (!mx && n < CLIENT_PATHS && strlen(path) < sizeof(client_mx[n].method) &&
        !strpbrk(path, "\"\\\n")) {
        mx = &client_mx[n];
        cm_rpc__metrics_init(mx, CLIENT_REQUESTS, CLIENT_REQUESTS_HELP, path, NULL, NULL);
        atomic_store_explicit(&nclient, n + 1, memory_order_release);
    }
    if (!mx) {
        mx = &client_mx[CLIENT_PATHS];
        if (!mx->name)
            cm_rpc__metrics_init(mx, CLIENT_REQUESTS, CLIENT_REQUESTS_HELP, "other", NULL, NULL);
    }
    pthread_mutex_unlock(&client_mu);
    return mx;
}

/* ---- one client call ---------------------------------------------------------------------- */

/* Everything a unary client call needs until its single batch completes. */
typedef struct ccall {
    grpc_call *call; /* owned ref */
    grpc_op ops[6];
    grpc_metadata md[1];
    size_t nmd;
    grpc_byte_buffer *send_bb; /* owned */
    grpc_byte_buffer *recv_bb; /* owned once the batch completes */
    grpc_metadata_array init_md, trail_md;
    grpc_status_code status;
    grpc_slice details;       /* owned once the batch completes */
    const char *error_string; /* owned (gpr_free) once the batch completes */
    const ProtobufCMessageDescriptor *resp_desc;
    cm_rpc__metrics_t *mx; /* static; NULL without a path */

    int local_cancel; /* cancelled by cm_rpc_async_del, not by the server */

    /* async only */
    cm_rpc_async_t *async;
    cm_rpc_done_fn done;
    void *user;
    struct ccall *prev, *next; /* in-flight list of the cm_rpc_async_t */
} ccall_t;

static void status_set(cm_rpc_status_t *st, grpc_status_code code, const char *msg)
{
    if (!st)
        return;
    st->code = code;
    snprintf(st->message, sizeof(st->message), "%s", msg ? msg : "");
}

/* Creates the call on |cq| and starts its one batch with all six client ops. Returns 0, or -1
 * with |st| set and nothing left to clean but what ccall_release frees. */
static int ccall_start(ccall_t *cc, cm_rpc_channel_t *ch, grpc_completion_queue *cq,
                       const char *path, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc, const cm_rpc_call_opts_t *opts,
                       cm_rpc_status_t *st)
{
    grpc_metadata_array_init(&cc->init_md);
    grpc_metadata_array_init(&cc->trail_md);
    cc->details = grpc_empty_slice();
    cc->resp_desc = resp_desc;
    cc->mx = path ? client_metrics(path) : NULL;
    if (!ch || !path || !req || !resp_desc || !opts || opts->timeout_ms <= 0) {
        status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "bad call arguments");
        return -1;
    }
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(opts->timeout_ms, GPR_TIMESPAN));
    /* The method slice only needs to live through create_call. */
    cc->call = grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                        grpc_slice_from_static_string(path), NULL, deadline, NULL);
    if (!cc->call) {
        status_set(st, GRPC_STATUS_INTERNAL, "cannot create call");
        return -1;
    }
    cc->send_bb = cm_rpc__pack(req);
    if (opts->request_id && *opts->request_id) {
        /* Core rejects the whole batch for a header value with control or non-ASCII bytes, so
         * keep only printable ASCII (and at most 128 of them, as the server does). */
        char rid[129];
        size_t j = 0;
        for (const unsigned char *p = (const unsigned char *)opts->request_id;
             *p && j < sizeof(rid) - 1; p++)
            if (*p >= 0x20 && *p < 0x7f)
                rid[j++] = (char)*p;
        rid[j] = '\0';
        if (j > 0) {
            cc->md[0].key = grpc_slice_from_static_string("x-request-id");
            cc->md[0].value = grpc_slice_from_copied_buffer(rid, j);
            cc->nmd = 1;
        }
    }

    grpc_op *op = cc->ops;
    memset(cc->ops, 0, sizeof(cc->ops));
    /* No GRPC_INITIAL_METADATA_WAIT_FOR_READY: a call to a backend that is down fails at once
     * with UNAVAILABLE instead of waiting out its deadline. */
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op->data.send_initial_metadata.count = cc->nmd;
    op->data.send_initial_metadata.metadata = cc->nmd ? cc->md : NULL;
    op++;
    op->op = GRPC_OP_SEND_MESSAGE;
    op->data.send_message.send_message = cc->send_bb;
    op++;
    op->op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    op++;
    op->op = GRPC_OP_RECV_INITIAL_METADATA;
    op->data.recv_initial_metadata.recv_initial_metadata = &cc->init_md;
    op++;
    op->op = GRPC_OP_RECV_MESSAGE;
    op->data.recv_message.recv_message = &cc->recv_bb;
    op++;
    op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op->data.recv_status_on_client.trailing_metadata = &cc->trail_md;
    op->data.recv_status_on_client.status = &cc->status;
    op->data.recv_status_on_client.status_details = &cc->details;
    op->data.recv_status_on_client.error_string = &cc->error_string;
    op++;
    grpc_call *call = cc->call; /* read before the hand-off: cc is the poller's after it */
    CM_RPC__TAG_OUT(cc);
    grpc_call_error e = grpc_call_start_batch(call, cc->ops, (size_t)(op - cc->ops), cc, NULL);
    if (e != GRPC_CALL_OK) {
        status_set(st, GRPC_STATUS_INTERNAL, grpc_call_error_to_string(e));
        return -1;
    }
    return 0;
}

/* Frees everything the call holds (not |cc| itself). */
static void ccall_release(ccall_t *cc)
{
    if (cc->call)
        grpc_call_unref(cc->call);
    cc->call = NULL;
    if (cc->send_bb)
        grpc_byte_buffer_destroy(cc->send_bb);
    cc->send_bb = NULL;
    if (cc->recv_bb)
        grpc_byte_buffer_destroy(cc->recv_bb);
    cc->recv_bb = NULL;
    if (cc->nmd)
        grpc_slice_unref(cc->md[0].value);
    cc->nmd = 0;
    grpc_metadata_array_destroy(&cc->init_md);
    grpc_metadata_array_destroy(&cc->trail_md);
    grpc_slice_unref(cc->details);
    cc->details = grpc_empty_slice();
    if (cc->error_string)
        gpr_free((void *)cc->error_string);
    cc->error_string = NULL;
}

/* Turns a completed batch into status + response. |ok| is the batch's success flag. */
static ProtobufCMessage *ccall_result(ccall_t *cc, int ok, cm_rpc_status_t *st)
{
    if (!ok) {
        /* Only happens when core could not run the batch at all. */
        status_set(st, GRPC_STATUS_INTERNAL, "call batch failed");
        return NULL;
    }
    char msg[sizeof(st->message)];
    size_t n = GRPC_SLICE_LENGTH(cc->details);
    if (n >= sizeof(msg))
        n = sizeof(msg) - 1;
    memcpy(msg, GRPC_SLICE_START_PTR(cc->details), n);
    msg[n] = '\0';
    if (cc->status == GRPC_STATUS_CANCELLED && !cc->local_cancel) {
        /* This layer cancels calls only in cm_rpc_async_del, so this came from the server:
         * core cancels calls that race its shutdown (sent before the client saw GOAWAY) and
         * those still running at the end of the drain. Both mean "server going away". */
        char m[sizeof(st->message)];
        snprintf(m, sizeof(m), "cancelled by the server (stopping?): %.200s", msg);
        status_set(st, GRPC_STATUS_UNAVAILABLE, m);
        return NULL;
    }
    if (cc->status != GRPC_STATUS_OK) {
        status_set(st, cc->status, msg);
        return NULL;
    }
    if (!cc->recv_bb) {
        status_set(st, GRPC_STATUS_INTERNAL, "OK status without a response message");
        return NULL;
    }
    ProtobufCMessage *resp = cm_rpc__unpack(cc->resp_desc, cc->recv_bb);
    if (!resp) {
        status_set(st, GRPC_STATUS_INTERNAL, "malformed response message");
        return NULL;
    }
    status_set(st, GRPC_STATUS_OK, "");
    return resp;
}

/* ---- blocking calls ----------------------------------------------------------------------- */

int cm_rpc_call(cm_rpc_channel_t *ch, const char *path, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_desc, const cm_rpc_call_opts_t *opts,
                ProtobufCMessage **resp, cm_rpc_status_t *st)
{
    cm_rpc_status_t local;
    if (!st)
        st = &local;
    if (resp)
        *resp = NULL;
    /* A CQ per call: any number of threads may block here at once, with exactly one plucker
     * per CQ (core's limit of 6 concurrent pluckers never applies). */
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    ccall_t cc;
    memset(&cc, 0, sizeof(cc));
    ProtobufCMessage *r = NULL;
    if (ccall_start(&cc, ch, cq, path, req, resp_desc, opts, st) == 0) {
        /* Core itself ends the call at its deadline, so waiting without a bound is safe. */
        grpc_event ev;
        do {
            ev = grpc_completion_queue_pluck(cq, &cc, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        } while (ev.type == GRPC_QUEUE_TIMEOUT);
        CM_RPC__TAG_IN(&cc);
        r = ccall_result(&cc, ev.type == GRPC_OP_COMPLETE && ev.success, st);
    }
    ccall_release(&cc);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    if (cc.mx)
        cm_rpc__metrics_count(cc.mx, st->code, -1);
    if (resp)
        *resp = r;
    else if (r)
        protobuf_c_message_free_unpacked(r, NULL);
    return st->code == GRPC_STATUS_OK ? 0 : -1;
}

int cm_rpc_health_check(cm_rpc_channel_t *ch, const char *service, int64_t timeout_ms)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)(service ? service : "");
    cm_rpc_call_opts_t opts = {.timeout_ms = timeout_ms > 0 ? timeout_ms : 1000};
    ProtobufCMessage *resp = NULL;
    cm_rpc_status_t st;
    if (cm_rpc_call(ch, "/grpc.health.v1.Health/Check", &req.base,
                    &grpc__health__v1__health_check_response__descriptor, &opts, &resp, &st) != 0)
        return -1;
    Grpc__Health__V1__HealthCheckResponse *r = (void *)resp;
    int serving = r->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    protobuf_c_message_free_unpacked(resp, NULL);
    return serving ? 1 : 0;
}

/* ---- asynchronous calls ------------------------------------------------------------------- */

struct cm_rpc_async {
    grpc_completion_queue *cq; /* owned NEXT CQ, polled only by |thread| */
    pthread_t thread;
    /* Guards |closing| and the in-flight list. Held across call start so that no batch can be
     * started on |cq| after cm_rpc_async_del shut it down. */
    pthread_mutex_t mu;
    int closing;
    ccall_t *inflight; /* list of calls started and not yet completed; not owned here */
};

static void *poller_main(void *arg)
{
    cm_rpc_async_t *a = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(a->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        ccall_t *cc = ev.tag;
        CM_RPC__TAG_IN(cc);
        pthread_mutex_lock(&a->mu);
        if (cc->prev)
            cc->prev->next = cc->next;
        else
            a->inflight = cc->next;
        if (cc->next)
            cc->next->prev = cc->prev;
        pthread_mutex_unlock(&a->mu);

        cm_rpc_status_t st;
        ProtobufCMessage *resp = ccall_result(cc, ev.success, &st);
        ccall_release(cc);
        if (cc->mx)
            cm_rpc__metrics_count(cc->mx, st.code, -1);
        cc->done(cc->user, &st, resp);
        free(cc);
    }
    return NULL;
}

int cm_rpc_async_new(cm_rpc_async_t **out)
{
    *out = NULL;
    cm_rpc_async_t *a = cm_xcalloc(1, sizeof(*a));
    pthread_mutex_init(&a->mu, NULL);
    a->cq = grpc_completion_queue_create_for_next(NULL);
    if (!a->cq)
        goto fail;
    if (pthread_create(&a->thread, NULL, poller_main, a) != 0)
        goto fail;
    *out = a;
    return 0;
fail:
    if (a->cq) {
        grpc_completion_queue_shutdown(a->cq);
        grpc_completion_queue_destroy(a->cq);
    }
    pthread_mutex_destroy(&a->mu);
    free(a);
    return -1;
}

void cm_rpc_async_del(cm_rpc_async_t *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    a->closing = 1;
    /* Under |mu| no call can be freed by the poller, so every ref here is still valid. */
    for (ccall_t *cc = a->inflight; cc; cc = cc->next) {
        cc->local_cancel = 1;
        grpc_call_cancel(cc->call, NULL);
    }
    pthread_mutex_unlock(&a->mu);
    /* The poller delivers the cancelled completions, then sees QUEUE_SHUTDOWN. */
    grpc_completion_queue_shutdown(a->cq);
    pthread_join(a->thread, NULL);
    grpc_completion_queue_destroy(a->cq);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

int cm_rpc_call_async(cm_rpc_async_t *a, cm_rpc_channel_t *ch, const char *path,
                      const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                      const cm_rpc_call_opts_t *opts, cm_rpc_done_fn done, void *user)
{
    if (!a || !done)
        return -1;
    ccall_t *cc = cm_xcalloc(1, sizeof(*cc));
    cc->async = a;
    cc->done = done;
    cc->user = user;
    cm_rpc_status_t st;
    pthread_mutex_lock(&a->mu);
    if (a->closing) {
        pthread_mutex_unlock(&a->mu);
        free(cc);
        return -1;
    }
    /* Linked before the batch starts: the poller may complete it before start_batch returns,
     * and it unlinks only after taking |mu|, which we hold. */
    cc->next = a->inflight;
    if (cc->next)
        cc->next->prev = cc;
    a->inflight = cc;
    if (ccall_start(cc, ch, a->cq, path, req, resp_desc, opts, &st) != 0) {
        a->inflight = cc->next;
        if (cc->next)
            cc->next->prev = NULL;
        pthread_mutex_unlock(&a->mu);
        CM_DEBUG(opts ? opts->request_id : NULL, "rpc: async call not started: %s", st.message);
        if (cc->mx)
            cm_rpc__metrics_count(cc->mx, st.code, -1);
        ccall_release(cc);
        free(cc);
        return -1;
    }
    pthread_mutex_unlock(&a->mu);
    return 0;
}
