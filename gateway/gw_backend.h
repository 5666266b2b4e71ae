/* gw_backend: the gateway's clients of its internal gRPC services (mailbox-store, push-dispatch,
 * attestation-verifier): one channel each, one asynchronous poller, completions handed back to
 * the request's loop thread with gw_req_post(), and two small caches the API reads often
 * (mailbox-store readiness for /readyz, ~1 s; push-dispatch's supported token types, ~10 s).
 *
 * No thread ever blocks on a backend: every call is asynchronous and carries a deadline. Errors
 * are counted in gateway_backend_errors_total{backend,code}. */
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

/* Opens the channels and the poller and starts a first push-support refresh. 0 or -1. */
int gw_backend_start(const gw_backend_config_t *cfg);
/* Cancels calls in flight (their callbacks still run) and closes everything. Idempotent. */
void gw_backend_stop(void);

/* Number of mailbox-store shards (1 without --store-shards). */
size_t gw_backend_store_shards(void);

/* 1 when |be| has a channel (its target was configured). */
int gw_backend_configured(gw_backend_id_t be);

/* Called on the request's loop thread, exactly once per started call. |resp| is non-NULL only
 * with GRPC_STATUS_OK and belongs to the callee (protobuf_c_message_free_unpacked). */
typedef void (*gw_backend_done_fn)(void *arg, const cm_rpc_status_t *st, ProtobufCMessage *resp);

/* Starts a unary call of |method| ("/pkg.Service/Method") on |be| for request |r|, due at
 * |deadline_ms| (CLOCK_MONOTONIC milliseconds, see gw_backend_now_ms). |req| may be freed on
 * return. |key| picks the store shard: the canonical lowercase mailbox id (ignored for other
 * backends; may be NULL there). Returns 0 (|done| will run on |r|'s loop), or -1 when the call
 * could not start
 * (backend not configured, gateway stopping): |done| never runs.
 *
 * With |store_batch|, the store reads (ReadDisplay, ReadSecure) a loop thread starts during one
 * iteration of its loop are sent together, at the end of that iteration, as one
 * MailboxStore/Batch call per shard (at most GW_BACKEND_BATCH_MAX each): one gRPC call instead
 * of many, the cost that dominates a read (gateway/PERF.md). Nothing waits for a batch to fill;
 * each read keeps its own status, deadline, latency metric and |done|. Must then be called on
 * |r|'s loop thread (the API always is). When a full batch cannot be sent, its reads get
 * UNAVAILABLE through |done| before this returns (0). */
#define GW_BACKEND_BATCH_MAX 64
int gw_backend_call(gw_backend_id_t be, const char *key, gw_req_t *r, const char *method,
                    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                    int64_t deadline_ms, gw_backend_done_fn done, void *arg);

/* Monotonic clock in milliseconds. */
int64_t gw_backend_now_ms(void);

/* mailbox-store readiness (grpc.health.v1 Check of its service name is SERVING on at least one
 * shard), cached about 1 s.
 * Returns 1 or 0 from a fresh cache; or -1 when a check is under way: then |fn(arg)| is posted to
 * |r|'s loop when it ends, and gw_backend_ready_now() gives the result. */
int gw_backend_ready(gw_req_t *r, void (*fn)(void *), void *arg);
int gw_backend_ready_now(void);

/* Whether push-dispatch can deliver to |token_type| (NULL: to any provider), cached about 10 s
 * (failures about 1 s). Returns 1 or 0 at once, or -1 with |fn(arg)| posted to |r|'s loop once
 * the refresh ends; then ask gw_backend_push_supported_now(). Always 0 without --push-target. */
int gw_backend_push_supported(const char *token_type, gw_req_t *r, void (*fn)(void *), void *arg);
int gw_backend_push_supported_now(const char *token_type);

/* Counts one backend failure (outage, deadline, internal error) by gRPC code name. Answers
 * about the request itself (NOT_FOUND, PERMISSION_DENIED, ...) are not failures. */
void gw_backend_count_error(gw_backend_id_t be, int grpc_code);

#endif
