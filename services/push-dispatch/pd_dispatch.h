/* pd_dispatch: the delivery threads. Each takes the next due entry from pd_queue, hands it to
 * the provider of its token type and books the outcome: delivered, retried later (exponential
 * backoff with full jitter, at least Retry-After), failed (attempts used up, or the next try
 * would fall after the mailbox's expiry), or dropped (dead token, permanent refusal, expired,
 * unsupported provider). Metrics: push_dispatch_{queued,delivered,retried,failed}_total
 * {provider} and push_dispatch_dropped_total{provider,reason}. */
#ifndef PD_DISPATCH_H
#define PD_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "pd_provider.h"
#include "pd_queue.h"

typedef struct {
    int workers;           /* delivery threads (in-flight notifications at most) */
    uint32_t max_attempts; /* give up after this many attempts */
    int64_t retry_base_ms; /* first backoff */
    int64_t retry_max_ms;  /* backoff cap (Retry-After is capped here too) */
    /* Called about every second from the sweeper thread with pd_queue_healthy (may be NULL). */
    void (*health)(void *arg, int healthy);
    void *health_arg;
} pd_dispatch_opts_t;

typedef struct pd_dispatch pd_dispatch_t;

/* Starts the threads. |providers| (|n| of them; configured ones only) stay owned by the
 * caller and must outlive pd_dispatch_del. Returns 0 or -1. */
int pd_dispatch_start(const pd_dispatch_opts_t *o, pd_queue_t *q, pd_provider_t *const *providers,
                      size_t n, pd_dispatch_t **out);

/* Stops taking entries, gives in-flight deliveries |grace_ms| to finish, joins, frees. */
void pd_dispatch_del(pd_dispatch_t *d, int64_t grace_ms);

/* Metric label of a token type ("apns", "fcm", "webhook", "other"). */
const char *pd_provider_label(const char *token_type);

/* Counts a notification dropped before delivery (e.g. at enqueue). */
void pd_metric_dropped(const char *token_type, const char *reason);
void pd_metric_queued(const char *token_type);

#endif
