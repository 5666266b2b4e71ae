/* gw_backend: the gateway's clients of its internal gRPC services (mailbox-store, push-dispatch,
 * attestation-verifier): one channel each (one per shard for the store), one asynchronous
 * poller, completions handed back to the caller's loop thread with gw_loop_post(), and two
 * small caches the API reads often (mailbox-store readiness for /readyz, about 1 s;
 * push-dispatch's supported token types, about 10 s).
 *
 * A gw_backend_t is an instance: main creates it and hands it to the API, and a test may run
 * several in one process. No thread ever blocks on a backend: every call is asynchronous and
 * carries a deadline. Errors are counted in gateway_backend_errors_total{backend,code}. */
#ifndef GW_BACKEND_H
#define GW_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "cm_rpc.h"
#include "gw_http.h"

typedef enum { GW_BE_STORE = 0, GW_BE_PUSH = 1, GW_BE_ATTEST = 2, GW_BE_COUNT } gw_backend_id_t;

typedef struct {
    const char *store_target;  /* required unless |store_shards| */
    const char *store_shards;  /* "a:7001,b:7001": route by mailbox id (cm_shard); "" or NULL:
                                  the single |store_target| */
    const char *push_target;   /* "" or NULL: no push-dispatch (push never supported) */
    const char *attest_target; /* "" or NULL: no verifier */
    const char *lb_policy;     /* "" or NULL: gRPC default */
    int64_t timeout_ms;        /* deadline of the cache refresh calls */
    int store_batch; /* 1: coalesce store reads per loop iteration (see gw_backend_call) */
} gw_backend_config_t;

typedef struct gw_backend gw_backend_t;

/* Opens the channels and the poller and starts a first push-support refresh. The strings of
 * |cfg| are copied. Returns 0 and the instance in *out, or -1 (logged). */
int gw_backend_new(const gw_backend_config_t *cfg, gw_backend_t **out);
/* Cancels calls in flight (their callbacks are still posted to their loops, which must still
 * run) and frees everything. NULL is ignored. */
void gw_backend_free(gw_backend_t *b);

/* Number of mailbox-store shards (1 without |store_shards|). */
size_t gw_backend_store_shards(const gw_backend_t *b);

/* 1 when |be| has a channel (its target was configured). */
int gw_backend_configured(const gw_backend_t *b, gw_backend_id_t be);

/* Called on the caller's loop thread, exactly once per started call. |resp| is non-NULL only
 * with GRPC_STATUS_OK and belongs to the callee (protobuf_c_message_free_unpacked). */
typedef void (*gw_backend_done_fn)(void *arg, const cm_rpc_status_t *st, ProtobufCMessage *resp);

/* Who calls, and where the answer goes. */
typedef struct {
    gw_loop_t *loop;        /* |done| runs on this loop's thread */
    const char *request_id; /* sent as x-request-id; copied (at most 31 bytes kept); may be NULL */
    int64_t deadline_ms;    /* CLOCK_MONOTONIC milliseconds (gw_backend_now_ms) */
    gw_backend_done_fn done;
    void *arg;
} gw_backend_caller_t;

/* Starts a unary call of |method| ("/pkg.Service/Method") on |be|. |req| may be freed on
 * return. |key| picks the store shard: the canonical lowercase mailbox id (ignored for other
 * backends; may be NULL there). Returns 0 (|caller->done| will run on |caller->loop|), or -1
 * when the call could not start (backend not configured, gateway stopping): |done| never
 * runs.
 *
 * With |store_batch|, the store reads (ReadDisplay, ReadSecure) a loop thread starts during one
 * iteration of its loop are sent together, at the end of that iteration, as one
 * MailboxStore/Batch call per shard (at most GW_BACKEND_BATCH_MAX each): one gRPC call instead
 * of many, the cost that dominates a read (gateway/PERF.md). Nothing waits for a batch to fill;
 * each read keeps its own status, deadline, latency metric and |done|. Must then be called on
 * |caller->loop|'s thread (the API always is). When a full batch cannot be sent, its reads get
 * UNAVAILABLE through |done| before this returns (0). */
#define GW_BACKEND_BATCH_MAX 64
int gw_backend_call(gw_backend_t *b, gw_backend_id_t be, const char *key,
                    const gw_backend_caller_t *caller, const char *method,
                    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc);

/* Monotonic clock in milliseconds. */
int64_t gw_backend_now_ms(void);

/* mailbox-store readiness (grpc.health.v1 Check of its service name is SERVING on at least one
 * shard), cached about 1 s.
 * Returns 1 or 0 from a fresh cache; or -1 when a check is under way: then |fn(arg)| is posted to
 * |loop| when it ends, and gw_backend_ready_now() gives the result. */
int gw_backend_ready(gw_backend_t *b, gw_loop_t *loop, void (*fn)(void *), void *arg);
int gw_backend_ready_now(gw_backend_t *b);

/* Whether push-dispatch can deliver to |token_type| (NULL: to any provider), cached about 10 s
 * (failures about 1 s). Returns 1 or 0 at once, or -1 with |fn(arg)| posted to |loop| once
 * the refresh ends; then ask gw_backend_push_supported_now(). Always 0 without a push target. */
int gw_backend_push_supported(gw_backend_t *b, const char *token_type, gw_loop_t *loop,
                              void (*fn)(void *), void *arg);
int gw_backend_push_supported_now(gw_backend_t *b, const char *token_type);

#endif
