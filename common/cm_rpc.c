/* cm_rpc: process helpers, the shared protobuf-c <-> byte buffer codec and the server.
 * The client half lives in cm_rpc_client.c.
 *
 * The rules of gRPC core's C API (1.51) this server follows, each checked against the library:
 *  - A reply is one final batch: SEND_INITIAL_METADATA (mandatory even for an error-only reply:
 *    without it core accepts the batch, sends nothing, and the client waits for its deadline),
 *    SEND_MESSAGE on success, SEND_STATUS_FROM_SERVER and RECV_CLOSE_ON_SERVER. Its ops,
 *    slices and buffers must live until the batch's tag completes.
 *  - Calls to methods nobody registered wait in core until the client's deadline unless a
 *    generic request is posted, so a few always are, and they answer UNIMPLEMENTED.
 *  - With GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER the payload comes with the call: NULL when
 *    the client sent no message, a zero-length buffer for an empty proto3 message.
 *  - Received metadata belongs to the call: copy what is needed before the call is unref'd.
 *  - Methods and completion queues are registered before grpc_server_start.
 *  - Shutdown: grpc_server_shutdown_and_notify, wait for its tag (on timeout cancel all calls
 *    and wait again), grpc_server_destroy, then shut every completion queue down and drain it.
 *    Requests still posted come back with success=0: free them, never re-post.
 *  - On 2 cores one completion queue shared by the workers beats one per worker (fewer
 *    cross-thread wake-ups), and the number of requests kept posted costs nothing measurable. */
#include "cm_alloc.h"
#include "cm_time.h"
#include "cm_rpc.h"
#include "cm_rpc_internal.h"

#include "cm_log.h"
#include "cm_metrics.h"
#include "grpc/health/v1/health.pb-c.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#define HEALTH_CHECK_PATH "/grpc.health.v1.Health/Check"
/* Generic requests kept posted so that unknown methods are answered at once. */
#define GENERIC_PREPOST 4
/* Requests kept posted per method and worker. A call that arrives while no request is posted
 * waits inside core, and core cancels such calls at shutdown (the client sees CANCELLED), so
 * the depth is what lets a burst arriving just before a stop still be served by the drain.
 * Depth costs nothing measurable. */
#define METHOD_PREPOST 8
#define REQUEST_ID_MAX 128

/* ---- process ---------------------------------------------------------------------------- */

static void signal_set(sigset_t *set, int with_pipe)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGUSR1);
    if (with_pipe)
        sigaddset(set, SIGPIPE);
}

void cm_rpc_signals_block(void)
{
    sigset_t set;
    signal_set(&set, 1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int cm_rpc_signals_wait(void (*on_usr1)(void *), void *arg)
{
    sigset_t set;
    signal_set(&set, 0);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGUSR1) {
            if (on_usr1)
                on_usr1(arg);
            continue;
        }
        return sig;
    }
}

/* gRPC core writes its own "E1123 ..." lines to stderr; route them through cm_log so that
 * every line on stderr stays one JSON object. Only ERROR reaches here unless GRPC_VERBOSITY
 * says otherwise. */
static void grpc_log_to_cm(gpr_log_func_args *a)
{
    cm_log_level_t lvl = a->severity == GPR_LOG_SEVERITY_ERROR  ? CM_LOG_ERROR
                         : a->severity == GPR_LOG_SEVERITY_INFO ? CM_LOG_INFO
                                                                : CM_LOG_DEBUG;
    const char *path = a->file ? a->file : "?";
    const char *file = strrchr(path, '/');
    cm_log(lvl, NULL, "grpc: %s (%s:%d)", a->message ? a->message : "", file ? file + 1 : path,
           a->line);
}

void cm_rpc_init(void)
{
    gpr_set_log_function(grpc_log_to_cm);
    grpc_init();
}

void cm_rpc_shutdown(void)
{
    grpc_shutdown();
}

const char *cm_rpc_code_name(grpc_status_code code)
{
    static const char *const names[] = {"OK",
                                        "CANCELLED",
                                        "UNKNOWN",
                                        "INVALID_ARGUMENT",
                                        "DEADLINE_EXCEEDED",
                                        "NOT_FOUND",
                                        "ALREADY_EXISTS",
                                        "PERMISSION_DENIED",
                                        "RESOURCE_EXHAUSTED",
                                        "FAILED_PRECONDITION",
                                        "ABORTED",
                                        "OUT_OF_RANGE",
                                        "UNIMPLEMENTED",
                                        "INTERNAL",
                                        "UNAVAILABLE",
                                        "DATA_LOSS",
                                        "UNAUTHENTICATED"};
    if ((int)code >= 0 && (size_t)code < sizeof(names) / sizeof(names[0]))
        return names[code];
    return "UNKNOWN";
}

/* ---- metrics: shared with cm_rpc_client.c ----------------------------------------------- */

/* Codes 0..16; anything else is counted as UNKNOWN (2). */
#define NCODES 17

void cm_rpc__metrics_init(cm_rpc__metrics_t *mx, const char *name, const char *help,
                          const char *method, const char *hist_name, const char *hist_help)
{
    memset(mx, 0, sizeof(*mx));
    mx->name = name;
    mx->help = help;
    /* Method paths are [A-Za-z0-9_./] by gRPC's rules; anything that would break the label
     * syntax is replaced rather than escaped. */
    size_t j = 0;
    for (const char *p = method; *p && j < sizeof(mx->method) - 1; p++)
        mx->method[j++] = (*p == '"' || *p == '\\' || *p == '\n') ? '_' : *p;
    mx->method[j] = '\0';
    if (hist_name) {
        char labels[sizeof(mx->method) + 16];
        snprintf(labels, sizeof(labels), "method=\"%s\"", mx->method);
        mx->duration = cm_metrics_histogram(hist_name, hist_help, labels, NULL, 0);
    }
}

void cm_rpc__metrics_count(cm_rpc__metrics_t *mx, grpc_status_code code, double seconds)
{
    int i = (int)code >= 0 && (int)code < NCODES ? (int)code : (int)GRPC_STATUS_UNKNOWN;
    cm_counter_t *c = atomic_load_explicit(&mx->codes[i], memory_order_acquire);
    if (!c) {
        /* First call with this code: one registry lookup, then cached. Two threads racing here
         * get the same series back from the registry. */
        char labels[sizeof(mx->method) + 48];
        snprintf(labels, sizeof(labels), "method=\"%s\",code=\"%s\"", mx->method,
                 cm_rpc_code_name((grpc_status_code)i));
        c = cm_metrics_counter(mx->name, mx->help, labels);
        atomic_store_explicit(&mx->codes[i], c, memory_order_release);
    }
    cm_counter_add(c, 1);
    if (mx->duration && seconds >= 0)
        cm_histogram_observe(mx->duration, seconds);
}

double cm_rpc__seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

#define SERVER_REQUESTS "rpc_server_requests_total"
#define SERVER_REQUESTS_HELP "gRPC calls served, by method and status code"
#define SERVER_DURATION "rpc_server_duration_seconds"
#define SERVER_DURATION_HELP                                                                       \
    "Time from taking a call to starting its response (handler included), by method"

/* ---- codec ------------------------------------------------------------------------------ */

grpc_byte_buffer *cm_rpc__pack(const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

ProtobufCMessage *cm_rpc__unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return m;
}

/* ---- server: per-call arena --------------------------------------------------------------- */

/* Bump allocator: blocks are chained and freed together once the response is on the wire. */
typedef struct arena_block {
    struct arena_block *next;
    size_t cap, used;
    _Alignas(max_align_t) unsigned char data[];
} arena_block_t;

#define ARENA_BLOCK 4096

static void *arena_alloc(arena_block_t **head, size_t n)
{
    size_t a = _Alignof(max_align_t);
    n = (n + a - 1) & ~(a - 1);
    if (n == 0)
        n = a;
    arena_block_t *b = *head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        b = cm_xmalloc(sizeof(*b) + cap);
        b->cap = cap;
        b->used = 0;
        if (*head && n > ARENA_BLOCK) {
            /* A large one-off block goes behind the current one so its free space stays usable. */
            b->next = (*head)->next;
            (*head)->next = b;
        } else {
            b->next = *head;
            *head = b;
        }
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

static void arena_free(arena_block_t *b)
{
    while (b) {
        arena_block_t *next = b->next;
        free(b);
        b = next;
    }
}

/* ---- server: types ------------------------------------------------------------------------ */

typedef struct method {
    char *path; /* owned */
    const ProtobufCMessageDescriptor *req_desc;
    const ProtobufCMessageDescriptor *resp_desc;
    cm_rpc_handler_fn fn;
    void *user;
    void *handle;         /* grpc_server_register_method; owned by the server */
    cm_rpc__metrics_t mx; /* series looked up here once, so a call only adds atomically */
    struct method *next;
} method_t;

typedef enum { TAG_REGISTERED, TAG_GENERIC, TAG_FINISH } tag_kind_t;

/* One posted request and, once it has matched, the call it became. The same struct is the tag
 * of the request (TAG_REGISTERED / TAG_GENERIC) and then of the final batch (TAG_FINISH). */
struct cm_rpc_call {
    tag_kind_t kind;
    cm_rpc_server_t *srv;
    method_t *method; /* NULL for generic */

    grpc_call *call; /* owned ref once matched */
    gpr_timespec deadline;
    grpc_metadata_array md;    /* owned; its slices belong to the call */
    grpc_call_details details; /* generic only */
    grpc_byte_buffer *payload; /* owned; NULL when the client sent no message */

    arena_block_t *arena; /* owned: response memory, freed after the final batch */
    char request_id[REQUEST_ID_MAX + 1];
    char *status_msg;   /* arena memory, or NULL */
    struct timespec t0; /* CLOCK_MONOTONIC when a worker took the call, for the metrics */

    /* Final batch state; must live until TAG_FINISH completes. */
    grpc_op ops[4];
    grpc_byte_buffer *resp_bb; /* owned */
    grpc_slice details_slice;
    int has_details;
    int cancelled;
};

typedef struct {
    char *name; /* owned */
    int serving;
} health_entry_t;

struct cm_rpc_server {
    char *listen; /* owned */
    int workers;
    int drain_timeout_ms;

    grpc_server *server;         /* owned */
    grpc_completion_queue *cq;   /* owned; shared NEXT CQ of every worker */
    grpc_completion_queue *sdcq; /* owned; receives only the shutdown notification */
    pthread_t *threads;          /* owned; |workers| entries once started */
    int started, stopped;
    pthread_mutex_t stop_mu; /* serialises cm_rpc_server_stop: a second caller waits for it */

    method_t *methods; /* owned list */
    /* Unknown methods share one label ("unknown"): the path comes from the client and must not
     * grow the metrics without bound. */
    cm_rpc__metrics_t unknown_mx;

    /* Guards |accepting|: once cleared, no worker posts a new request, so nothing can reach
     * the server after grpc_server_destroy (stop clears it, then waits for |busy| == 0). */
    pthread_mutex_t post_mu;
    int accepting;
    /* Calls taken by a worker whose final batch has not been started yet. Core's shutdown
     * notification does not wait for them (after cancel_all_calls it arrives while a handler
     * still runs), so stop waits for zero before shutting the CQ down: a batch started on a
     * shut-down CQ aborts the process. Guarded by post_mu; |idle| signals zero. */
    int busy;
    pthread_cond_t idle;

    pthread_mutex_t health_mu;
    health_entry_t *health; /* owned array */
    size_t nhealth;
};

/* ---- server: health ----------------------------------------------------------------------- */

/* Returns 1 serving, 0 not serving, -1 unknown. */
static int health_get(cm_rpc_server_t *s, const char *name)
{
    int r = -1;
    pthread_mutex_lock(&s->health_mu);
    for (size_t i = 0; i < s->nhealth; i++) {
        if (strcmp(s->health[i].name, name) == 0) {
            r = s->health[i].serving;
            break;
        }
    }
    pthread_mutex_unlock(&s->health_mu);
    return r;
}

void cm_rpc_server_set_health(cm_rpc_server_t *s, const char *service, int serving)
{
    if (!service)
        service = "";
    pthread_mutex_lock(&s->health_mu);
    for (size_t i = 0; i < s->nhealth; i++) {
        if (strcmp(s->health[i].name, service) == 0) {
            s->health[i].serving = serving ? 1 : 0;
            pthread_mutex_unlock(&s->health_mu);
            return;
        }
    }
    s->health = cm_xreallocarray(s->health, s->nhealth + 1, sizeof(*s->health));
    char *name = cm_xstrdup(service);
    s->health[s->nhealth].name = name;
    s->health[s->nhealth].serving = serving ? 1 : 0;
    s->nhealth++;
    pthread_mutex_unlock(&s->health_mu);
}

static grpc_status_code health_check(cm_rpc_call_t *call, void *user, const ProtobufCMessage *req,
                                     ProtobufCMessage *resp)
{
    const Grpc__Health__V1__HealthCheckRequest *rq = (const void *)req;
    Grpc__Health__V1__HealthCheckResponse *rs = (void *)resp;
    const char *name = rq->service ? rq->service : "";
    int st = health_get(call->srv, name);
    if (st < 0)
        return cm_rpc_fail(call, GRPC_STATUS_NOT_FOUND, "unknown service");
    rs->status = st ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                    : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    return GRPC_STATUS_OK;
}

/* ---- server: per-call helpers ------------------------------------------------------------- */

void *cm_rpc_alloc(cm_rpc_call_t *call, size_t n)
{
    return arena_alloc(&call->arena, n);
}

char *cm_rpc_strdup(cm_rpc_call_t *call, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *d = arena_alloc(&call->arena, n + 1);
    memcpy(d, s, n);
    return d;
}

void *cm_rpc_memdup(cm_rpc_call_t *call, const void *p, size_t n)
{
    void *d = arena_alloc(&call->arena, n ? n : 1);
    if (n)
        memcpy(d, p, n);
    return d;
}

grpc_status_code cm_rpc_fail(cm_rpc_call_t *call, grpc_status_code code, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    call->status_msg = cm_rpc_strdup(call, buf);
    return code;
}

const char *cm_rpc_request_id(const cm_rpc_call_t *call)
{
    return call->request_id;
}

int64_t cm_rpc_remaining_ms(const cm_rpc_call_t *call)
{
    if (gpr_time_cmp(call->deadline, gpr_inf_future(call->deadline.clock_type)) == 0)
        return INT64_MAX;
    gpr_timespec d = gpr_convert_clock_type(call->deadline, GPR_CLOCK_MONOTONIC);
    gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
    return gpr_time_to_millis(gpr_time_sub(d, now));
}

/* ---- server: requests --------------------------------------------------------------------- */

static void call_free(cm_rpc_call_t *c)
{
    if (c->call)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    if (c->kind == TAG_GENERIC || (c->kind == TAG_FINISH && !c->method))
        grpc_call_details_destroy(&c->details);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    if (c->resp_bb)
        grpc_byte_buffer_destroy(c->resp_bb);
    if (c->has_details)
        grpc_slice_unref(c->details_slice);
    arena_free(c->arena);
    free(c);
}

/* Posts one request for |m| (NULL = generic). Returns 0, or -1 when the server no longer accepts
 * or core refused. Caller holds post_mu. */
static int post_request_locked(cm_rpc_server_t *s, method_t *m)
{
    if (!s->accepting)
        return -1;
    cm_rpc_call_t *c = cm_xcalloc(1, sizeof(*c));
    c->srv = s;
    c->method = m;
    grpc_metadata_array_init(&c->md);
    grpc_call_error e;
    if (m) {
        c->kind = TAG_REGISTERED;
        CM_RPC__TAG_OUT(c); /* after the last write to c: another worker may get it next */
        e = grpc_server_request_registered_call(s->server, m->handle, &c->call, &c->deadline,
                                                &c->md, &c->payload, s->cq, s->cq, c);
    } else {
        c->kind = TAG_GENERIC;
        grpc_call_details_init(&c->details);
        CM_RPC__TAG_OUT(c);
        e = grpc_server_request_call(s->server, &c->call, &c->details, &c->md, s->cq, s->cq, c);
    }
    if (e != GRPC_CALL_OK) {
        CM_ERROR(NULL, "rpc: request_call failed: %s", grpc_call_error_to_string(e));
        call_free(c);
        return -1;
    }
    return 0;
}

static void copy_request_id(cm_rpc_call_t *c)
{
    for (size_t i = 0; i < c->md.count; i++) {
        if (grpc_slice_str_cmp(c->md.metadata[i].key, "x-request-id") != 0)
            continue;
        size_t n = GRPC_SLICE_LENGTH(c->md.metadata[i].value);
        if (n > REQUEST_ID_MAX)
            n = REQUEST_ID_MAX;
        const unsigned char *p = GRPC_SLICE_START_PTR(c->md.metadata[i].value);
        size_t j = 0;
        /* Printable ASCII only: the id ends up in log lines and in replies. */
        for (size_t k = 0; k < n; k++)
            if (p[k] >= 0x20 && p[k] < 0x7f)
                c->request_id[j++] = (char)p[k];
        c->request_id[j] = '\0';
        return;
    }
}

/* Sends the one final batch. On failure to start, frees the call. */
static void finish(cm_rpc_call_t *c, grpc_status_code code)
{
    cm_rpc__metrics_count(c->method ? &c->method->mx : &c->srv->unknown_mx, code,
                          c->method ? cm_rpc__seconds_since(&c->t0) : -1);
    c->kind = TAG_FINISH;
    size_t n = 0;
    memset(c->ops, 0, sizeof(c->ops));
    c->ops[n].op = GRPC_OP_SEND_INITIAL_METADATA; /* mandatory even for errors */
    c->ops[n].data.send_initial_metadata.count = 0;
    n++;
    if (code == GRPC_STATUS_OK && c->resp_bb) {
        c->ops[n].op = GRPC_OP_SEND_MESSAGE;
        c->ops[n].data.send_message.send_message = c->resp_bb;
        n++;
    }
    c->ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    c->ops[n].data.send_status_from_server.status = code;
    if (c->status_msg && *c->status_msg) {
        c->details_slice = grpc_slice_from_copied_string(c->status_msg);
        c->has_details = 1;
        c->ops[n].data.send_status_from_server.status_details = &c->details_slice;
    }
    n++;
    c->ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    c->ops[n].data.recv_close_on_server.cancelled = &c->cancelled;
    n++;
    grpc_call *call = c->call; /* read before the hand-off: c is the other thread's after it */
    CM_RPC__TAG_OUT(c);
    grpc_call_error e = grpc_call_start_batch(call, c->ops, n, c, NULL);
    if (e != GRPC_CALL_OK) {
        CM_ERROR(c->request_id, "rpc: start_batch failed: %s", grpc_call_error_to_string(e));
        call_free(c);
    }
}

static void serve_registered(cm_rpc_call_t *c)
{
    method_t *m = c->method;
    clock_gettime(CLOCK_MONOTONIC, &c->t0);
    copy_request_id(c);
    if (cm_rpc_remaining_ms(c) <= 0) {
        /* Core has already told the client; skip the work. */
        finish(c, GRPC_STATUS_DEADLINE_EXCEEDED);
        return;
    }
    if (!c->payload) {
        cm_rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "missing request message");
        finish(c, GRPC_STATUS_INVALID_ARGUMENT);
        return;
    }
    ProtobufCMessage *req = cm_rpc__unpack(m->req_desc, c->payload);
    if (!req) {
        cm_rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed request message");
        finish(c, GRPC_STATUS_INVALID_ARGUMENT);
        return;
    }
    ProtobufCMessage *resp = cm_rpc_alloc(c, m->resp_desc->sizeof_message);
    protobuf_c_message_init(m->resp_desc, resp);
    grpc_status_code code = m->fn(c, m->user, req, resp);
    protobuf_c_message_free_unpacked(req, NULL);
    if (code == GRPC_STATUS_OK)
        c->resp_bb = cm_rpc__pack(resp);
    CM_DEBUG(c->request_id, "rpc: %s -> %d", m->path, (int)code);
    finish(c, code);
}

static void serve_generic(cm_rpc_call_t *c)
{
    copy_request_id(c);
    char *path = grpc_slice_to_c_string(c->details.method);
    CM_DEBUG(c->request_id, "rpc: unknown method %s", path);
    cm_rpc_fail(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method %s", path);
    gpr_free(path);
    finish(c, GRPC_STATUS_UNIMPLEMENTED);
}

static void *worker_main(void *arg)
{
    cm_rpc_server_t *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        cm_rpc_call_t *c = ev.tag;
        CM_RPC__TAG_IN(c);
        switch (c->kind) {
        case TAG_REGISTERED:
        case TAG_GENERIC:
            if (!ev.success) {
                /* Failed by shutdown: free and do not re-arm. */
                call_free(c);
                break;
            }
            /* Re-arm first so the next call can match while this one runs. */
            pthread_mutex_lock(&s->post_mu);
            s->busy++;
            post_request_locked(s, c->method);
            pthread_mutex_unlock(&s->post_mu);
            if (c->kind == TAG_REGISTERED)
                serve_registered(c);
            else
                serve_generic(c);
            pthread_mutex_lock(&s->post_mu);
            if (--s->busy == 0)
                pthread_cond_broadcast(&s->idle);
            pthread_mutex_unlock(&s->post_mu);
            break;
        case TAG_FINISH:
            call_free(c);
            break;
        }
    }
    return NULL;
}

/* ---- server: lifecycle -------------------------------------------------------------------- */

int cm_rpc_server_new(const cm_rpc_server_opts_t *opts, cm_rpc_server_t **out)
{
    *out = NULL;
    if (!opts || !opts->listen || !*opts->listen)
        return -1;
    cm_rpc_server_t *s = cm_xcalloc(1, sizeof(*s));
    s->listen = cm_xstrdup(opts->listen);
    s->workers = opts->workers > 0 ? opts->workers : 1;
    s->drain_timeout_ms = opts->drain_timeout_ms > 0 ? opts->drain_timeout_ms : 5000;
    cm_rpc__metrics_init(&s->unknown_mx, SERVER_REQUESTS, SERVER_REQUESTS_HELP, "unknown", NULL,
                         NULL);
    pthread_mutex_init(&s->post_mu, NULL);
    pthread_mutex_init(&s->stop_mu, NULL);
    cm_cond_init(&s->idle);
    pthread_mutex_init(&s->health_mu, NULL);
    if (!s->listen)
        goto fail;

    /* Accept client keepalive pings (cm_rpc_channel_new sends one every 20 s) without striking
     * the connection down with GOAWAY too_many_pings. */
    grpc_arg args[3];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS;
    args[0].value.integer = 10000;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS;
    args[1].value.integer = 1;
    /* gRPC listens with SO_REUSEPORT by default, which lets a second instance share the port
     * of a running one without an error. A port in use must fail the start instead. */
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[2].value.integer = 0;
    grpc_channel_args cargs = {.num_args = 3, .args = args};
    s->server = grpc_server_create(&cargs, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    s->sdcq = grpc_completion_queue_create_for_next(NULL);
    if (!s->server || !s->cq || !s->sdcq)
        goto fail;
    cm_rpc_server_set_health(s, "", 1);
    if (cm_rpc_server_add_method(
            s, HEALTH_CHECK_PATH, &grpc__health__v1__health_check_request__descriptor,
            &grpc__health__v1__health_check_response__descriptor, health_check, NULL) != 0)
        goto fail;
    *out = s;
    return 0;
fail:
    cm_rpc_server_del(s);
    return -1;
}

int cm_rpc_server_add_method(cm_rpc_server_t *s, const char *path,
                             const ProtobufCMessageDescriptor *req_desc,
                             const ProtobufCMessageDescriptor *resp_desc, cm_rpc_handler_fn fn,
                             void *user)
{
    if (s->started || !path || path[0] != '/' || !req_desc || !resp_desc || !fn)
        return -1;
    for (method_t *m = s->methods; m; m = m->next)
        if (strcmp(m->path, path) == 0)
            return -1;
    method_t *m = cm_xcalloc(1, sizeof(*m));
    m->path = cm_xstrdup(path);
    m->req_desc = req_desc;
    m->resp_desc = resp_desc;
    cm_rpc__metrics_init(&m->mx, SERVER_REQUESTS, SERVER_REQUESTS_HELP, path, SERVER_DURATION,
                         SERVER_DURATION_HELP);
    m->fn = fn;
    m->user = user;
    /* Must happen before grpc_server_start; host NULL matches any authority. */
    m->handle = grpc_server_register_method(s->server, m->path, NULL,
                                            GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    if (!m->handle) {
        free(m->path);
        free(m);
        return -1;
    }
    m->next = s->methods;
    s->methods = m;
    return 0;
}

int cm_rpc_server_start(cm_rpc_server_t *s, int *port)
{
    if (s->started)
        return -1;
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    grpc_server_register_completion_queue(s->server, s->sdcq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int bound = grpc_server_add_http2_port(s->server, s->listen, creds);
    grpc_server_credentials_release(creds);
    if (bound == 0) {
        CM_ERROR(NULL, "rpc: cannot listen on %s", s->listen);
        return -1;
    }
    grpc_server_start(s->server);
    s->started = 1;

    pthread_mutex_lock(&s->post_mu);
    s->accepting = 1;
    for (method_t *m = s->methods; m; m = m->next)
        for (int i = 0; i < s->workers * METHOD_PREPOST; i++)
            post_request_locked(s, m);
    for (int i = 0; i < GENERIC_PREPOST; i++)
        post_request_locked(s, NULL);
    pthread_mutex_unlock(&s->post_mu);

    s->threads = cm_xcalloc((size_t)s->workers, sizeof(pthread_t));
    for (int i = 0; i < s->workers; i++) {
        if (pthread_create(&s->threads[i], NULL, worker_main, s) != 0) {
            CM_ERROR(NULL, "rpc: cannot start worker thread");
            s->workers = i;
            cm_rpc_server_stop(s);
            return -1;
        }
    }
    if (port)
        *port = bound;
    return 0;
}

static void server_stop_locked(cm_rpc_server_t *s);

void cm_rpc_server_stop(cm_rpc_server_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->stop_mu);
    if (s->started && !s->stopped)
        server_stop_locked(s);
    pthread_mutex_unlock(&s->stop_mu);
}

static void server_stop_locked(cm_rpc_server_t *s)
{
    s->stopped = 1;

    pthread_mutex_lock(&s->health_mu);
    for (size_t i = 0; i < s->nhealth; i++)
        s->health[i].serving = 0;
    pthread_mutex_unlock(&s->health_mu);

    /* Shut down, wait for in-flight calls up to the bound, then cancel the rest. Workers
     * keep re-posting requests until |accepting| is cleared just after the shutdown call: core
     * fails those at once, whereas a call left without a request would be cancelled. */
    static int sd_tag;
    grpc_server_shutdown_and_notify(s->server, s->sdcq, &sd_tag);
    pthread_mutex_lock(&s->post_mu);
    s->accepting = 0;
    pthread_mutex_unlock(&s->post_mu);
    gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                      gpr_time_from_millis(s->drain_timeout_ms, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_next(s->sdcq, until, NULL);
    if (ev.type != GRPC_OP_COMPLETE) {
        CM_WARN(NULL, "rpc: drain timeout (%d ms) passed; cancelling in-flight calls",
                s->drain_timeout_ms);
        grpc_server_cancel_all_calls(s->server);
        /* Core cannot be destroyed before the notification, so wait for it, loudly. */
        for (;;) {
            until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                 gpr_time_from_millis(5000, GPR_TIMESPAN));
            ev = grpc_completion_queue_next(s->sdcq, until, NULL);
            if (ev.type == GRPC_OP_COMPLETE)
                break;
            CM_WARN(NULL, "rpc: server shutdown still not complete");
        }
    }
    /* A handler that is still running (blocked past the drain bound) holds us here: its worker
     * must start the final batch before the CQ may shut down. */
    pthread_mutex_lock(&s->post_mu);
    while (s->busy > 0) {
        if (cm_cond_wait_ms(&s->idle, &s->post_mu, 5000) == ETIMEDOUT)
            CM_WARN(NULL, "rpc: stop waits for %d handler(s) still running", s->busy);
    }
    pthread_mutex_unlock(&s->post_mu);
    grpc_server_destroy(s->server);
    s->server = NULL;

    grpc_completion_queue_shutdown(s->cq);
    for (int i = 0; i < s->workers && s->threads; i++)
        pthread_join(s->threads[i], NULL);
    if (!s->threads || s->workers == 0)
        while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
    grpc_completion_queue_shutdown(s->sdcq);
    while (grpc_completion_queue_next(s->sdcq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
}

void cm_rpc_server_del(cm_rpc_server_t *s)
{
    if (!s)
        return;
    if (s->started) {
        cm_rpc_server_stop(s);
    } else if (s->server) {
        /* Never started: nothing is in flight, so an immediate shutdown completes at once. */
        static int sd_tag;
        grpc_server_shutdown_and_notify(s->server, s->sdcq, &sd_tag);
        grpc_completion_queue_next(s->sdcq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        grpc_server_destroy(s->server);
        s->server = NULL;
    }
    if (s->cq) {
        if (!s->started)
            grpc_completion_queue_shutdown(s->cq);
        while (!s->started &&
               grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
                   GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(s->cq);
    }
    if (s->sdcq) {
        if (!s->started) {
            grpc_completion_queue_shutdown(s->sdcq);
            while (grpc_completion_queue_next(s->sdcq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                       .type != GRPC_QUEUE_SHUTDOWN)
                ;
        }
        grpc_completion_queue_destroy(s->sdcq);
    }
    while (s->methods) {
        method_t *m = s->methods;
        s->methods = m->next;
        free(m->path);
        free(m);
    }
    for (size_t i = 0; i < s->nhealth; i++)
        free(s->health[i].name);
    free(s->health);
    free(s->threads);
    free(s->listen);
    pthread_mutex_destroy(&s->post_mu);
    pthread_mutex_destroy(&s->stop_mu);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->health_mu);
    free(s);
}
