/* cm_rpc: unary gRPC over the gRPC core C API (<grpc/grpc.h>), with protobuf-c messages.
 *
 * Server: methods are registered by full path ("/pkg.Service/Method") with the request and
 * response descriptors and a handler; worker threads serve them from one shared completion
 * queue. Unknown methods get UNIMPLEMENTED at once. grpc.health.v1.Health/Check is built in.
 * Client: channels are reusable and thread-safe; every call has a deadline. A blocking call for
 * services and an asynchronous call whose completion is handed to a callback on the client's
 * poller thread (from where an event loop can be woken).
 *
 * Metrics (cm_metrics.h): rpc_server_requests_total{method,code} and the histogram
 * rpc_server_duration_seconds{method} per registered method (unknown paths count as
 * method="unknown"), rpc_client_requests_total{method,code} per called path.
 *
 * Process start-up order: cm_rpc_signals_block() first (grpc_init starts a dozen threads that
 * inherit the signal mask; a SIGTERM delivered to one of them would kill the process instead
 * of draining it), then cm_rpc_init(), then servers/channels, then cm_rpc_signals_wait() in
 * main. cm_service (cm_service.h) does this for a service's main. Never fork after
 * cm_rpc_init(). */
#ifndef CM_RPC_H
#define CM_RPC_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>

/* ---- process ---------------------------------------------------------------------------- */

/* Blocks SIGINT, SIGTERM, SIGUSR1 and SIGPIPE in the calling thread (and so in every thread it
 * creates later, including gRPC's). Call before cm_rpc_init() and before any thread starts. */
void cm_rpc_signals_block(void);

/* Waits for SIGINT or SIGTERM and returns the signal number. SIGUSR1 calls |on_usr1| (may be
 * NULL) and keeps waiting. */
int cm_rpc_signals_wait(void (*on_usr1)(void *), void *arg);

void cm_rpc_init(void);     /* grpc_init() */
void cm_rpc_shutdown(void); /* grpc_shutdown() */

/* "OK", "NOT_FOUND", ... for logs and error mapping; "UNKNOWN" for codes out of range. */
const char *cm_rpc_code_name(grpc_status_code code);

/* ---- server ----------------------------------------------------------------------------- */

typedef struct cm_rpc_server cm_rpc_server_t;
typedef struct cm_rpc_call cm_rpc_call_t; /* one incoming call; valid during the handler */

/* A handler fills |resp| (already initialised from the response descriptor) and returns
 * GRPC_STATUS_OK, or returns cm_rpc_fail(call, code, ...). Memory for strings, bytes and
 * sub-messages placed in |resp| comes from cm_rpc_alloc()/cm_rpc_strdup(): it lives until the
 * response is sent. |req| is freed by the server after the handler returns. */
typedef grpc_status_code (*cm_rpc_handler_fn)(cm_rpc_call_t *call, void *user,
                                              const ProtobufCMessage *req, ProtobufCMessage *resp);

typedef struct {
    const char *listen;   /* "127.0.0.1:7001"; port 0 picks a free port */
    int workers;          /* handler threads sharing one CQ; <= 0 means 1 */
    int drain_timeout_ms; /* cm_rpc_server_stop: longest wait for in-flight calls; <= 0 means
                             5000 */
} cm_rpc_server_opts_t;

/* Creates a server. Health answers SERVING for "" until told otherwise. Requests with no
 * message or one that does not parse as the method's request type get INVALID_ARGUMENT before
 * the handler runs; unknown methods (also Health/Watch) get UNIMPLEMENTED. The port is bound
 * without SO_REUSEPORT, so a port in use makes cm_rpc_server_start fail. Returns 0 or -1. */
int cm_rpc_server_new(const cm_rpc_server_opts_t *opts, cm_rpc_server_t **out);

/* Registers a unary method. Call before cm_rpc_server_start. Returns 0 or -1. */
int cm_rpc_server_add_method(cm_rpc_server_t *s, const char *path,
                             const ProtobufCMessageDescriptor *req_desc,
                             const ProtobufCMessageDescriptor *resp_desc, cm_rpc_handler_fn fn,
                             void *user);

/* Binds, starts the workers, and stores the bound port in *port (may be NULL). 0 or -1. */
int cm_rpc_server_start(cm_rpc_server_t *s, int *port);

/* Health status per service name ("" is the whole server). Unknown names answer NOT_FOUND.
 * |serving|: 1 SERVING, 0 NOT_SERVING. Thread-safe. */
void cm_rpc_server_set_health(cm_rpc_server_t *s, const char *service, int serving);

/* Marks every service NOT_SERVING, stops accepting, waits for in-flight calls up to the drain
 * timeout, cancels what is left, and joins the workers. Idempotent and thread-safe, but never
 * call it from a handler (it joins the worker running it). A handler still running when the
 * drain timeout passes holds stop until it returns: handlers that may block long should watch
 * cm_rpc_remaining_ms(). */
void cm_rpc_server_stop(cm_rpc_server_t *s);

/* Stops if needed and frees. */
void cm_rpc_server_del(cm_rpc_server_t *s);

/* Per-call helpers, valid inside a handler. */
void *cm_rpc_alloc(cm_rpc_call_t *call, size_t n); /* zeroed; aborts on out of memory */
char *cm_rpc_strdup(cm_rpc_call_t *call, const char *s);
void *cm_rpc_memdup(cm_rpc_call_t *call, const void *p, size_t n);
/* Sets the status message and returns |code| (for "return cm_rpc_fail(...)"). */
grpc_status_code cm_rpc_fail(cm_rpc_call_t *call, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "x-request-id" metadata of the call, or "" when absent. */
const char *cm_rpc_request_id(const cm_rpc_call_t *call);
/* Milliseconds left before the caller's deadline; INT64_MAX without one. */
int64_t cm_rpc_remaining_ms(const cm_rpc_call_t *call);

/* ---- client ----------------------------------------------------------------------------- */

typedef struct cm_rpc_channel cm_rpc_channel_t;

typedef struct {
    const char *lb_policy; /* NULL = gRPC default (pick_first); "round_robin" for headless
                              Services in Kubernetes */
    /* 1: gRPC's minimal client filter stack (no message-size or idle filters) with deadline
     * checks kept on: ~20 % less CPU per call in the gateway (gateway/PERF.md). Deadlines work
     * as before; responses are no longer held to the 4 MiB default receive limit. 0: default. */
    int minimal_stack;
} cm_rpc_channel_opts_t;

typedef struct {
    grpc_status_code code;
    char message[256];
} cm_rpc_status_t;

/* Creates a channel to |target| ("127.0.0.1:7001", "dns:///host:port"). |opts| may be NULL.
 * Returns 0 or -1. Thread-safe once created. */
int cm_rpc_channel_new(const char *target, const cm_rpc_channel_opts_t *opts,
                       cm_rpc_channel_t **out);
void cm_rpc_channel_del(cm_rpc_channel_t *ch);
const char *cm_rpc_channel_target(const cm_rpc_channel_t *ch);

typedef struct {
    int64_t timeout_ms;     /* required, > 0 */
    const char *request_id; /* sent as "x-request-id" (printable ASCII kept, at most 128
                               bytes); may be NULL */
} cm_rpc_call_opts_t;

/* Blocking unary call, safe from any number of threads at once on one channel. On return
 * st->code is the call's status; on GRPC_STATUS_OK *resp holds the response (free with
 * protobuf_c_message_free_unpacked(*resp, NULL)), else *resp is NULL. Statuses worth knowing:
 * - UNAVAILABLE at once when the backend is down (calls do not wait for the channel to become
 *   ready; it reconnects on its own, backoff capped at 1 s), and also for a call the server
 *   cancelled while stopping (core reports that as CANCELLED; CANCELLED stays reserved for
 *   calls cancelled by cm_rpc_async_del). Both are safe to retry with the same request.
 * - DEADLINE_EXCEEDED when the call outlives opts->timeout_ms.
 * - INVALID_ARGUMENT without any call for bad arguments (e.g. timeout_ms <= 0).
 * Returns 0 when st->code is OK, -1 otherwise. */
int cm_rpc_call(cm_rpc_channel_t *ch, const char *path, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_desc, const cm_rpc_call_opts_t *opts,
                ProtobufCMessage **resp, cm_rpc_status_t *st);

/* Asynchronous calls complete on a poller thread owned by a cm_rpc_async_t. */
typedef struct cm_rpc_async cm_rpc_async_t;

/* Called once per call on the poller thread. |resp| is non-NULL only with GRPC_STATUS_OK and
 * belongs to the callback (free with protobuf_c_message_free_unpacked). Keep it short: hand
 * the result to your own loop. */
typedef void (*cm_rpc_done_fn)(void *user, const cm_rpc_status_t *st, ProtobufCMessage *resp);

int cm_rpc_async_new(cm_rpc_async_t **out);
/* Cancels what is in flight (callbacks still run, with CANCELLED), joins the poller. Never
 * call it from a callback; cm_rpc_call_async from a callback is fine. */
void cm_rpc_async_del(cm_rpc_async_t *a);

/* Starts a call; |req| is packed before return, so the caller may free it at once. Returns 0
 * when started (|done| will run exactly once), -1 when it could not start (|done| never
 * runs). */
int cm_rpc_call_async(cm_rpc_async_t *a, cm_rpc_channel_t *ch, const char *path,
                      const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                      const cm_rpc_call_opts_t *opts, cm_rpc_done_fn done, void *user);

/* Health check of |service| on |ch|: 1 SERVING, 0 NOT_SERVING, -1 error/NOT_FOUND. */
int cm_rpc_health_check(cm_rpc_channel_t *ch, const char *service, int64_t timeout_ms);

#endif
