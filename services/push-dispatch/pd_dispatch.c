#include "pd_dispatch.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "cm_alloc.h"
#include "cm_time.h"
#include "cm_log.h"
#include "cm_metrics.h"

struct pd_dispatch {
    pd_dispatch_opts_t o;
    pd_queue_t *q;                   /* not owned */
    pd_provider_t *const *providers; /* not owned */
    size_t nproviders;
    pthread_t *threads; /* owned; o.workers of them */
    int nthreads;
    pthread_t sweeper;
    int sweeper_started;
    pthread_mutex_t lock; /* guards |stop| for the sweeper's timed wait */
    pthread_cond_t cond;
    int stop;
};

int64_t pd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *pd_provider_label(const char *t)
{
    if (strcmp(t, "com.apple.apns") == 0)
        return "apns";
    if (strcmp(t, "com.google.fcm") == 0)
        return "fcm";
    if (strcmp(t, "webhook") == 0)
        return "webhook";
    return "other";
}

static void count(const char *name, const char *help, const char *type, const char *reason)
{
    char labels[128];
    if (reason)
        snprintf(labels, sizeof(labels), "provider=\"%s\",reason=\"%s\"", pd_provider_label(type),
                 reason);
    else
        snprintf(labels, sizeof(labels), "provider=\"%s\"", pd_provider_label(type));
    cm_counter_add(cm_metrics_counter(name, help, labels), 1);
}

void pd_metric_dropped(const char *type, const char *reason)
{
    count("push_dispatch_dropped_total", "Notifications dropped without delivery", type, reason);
}

void pd_metric_queued(const char *type)
{
    count("push_dispatch_queued_total", "Notifications accepted into the queue", type, NULL);
}

static uint64_t rand64(void)
{
    uint64_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = (uint64_t)pd_now_ms() * 6364136223846793005ULL;
    return r;
}

/* Delay before attempt |attempts|+1: base*2^(attempts-1) capped, with "equal jitter" (half
 * fixed, half random) so clients that failed together do not retry together. */
static int64_t backoff_ms(const pd_dispatch_opts_t *o, uint32_t attempts, int64_t retry_after)
{
    int64_t d = o->retry_base_ms;
    for (uint32_t i = 1; i < attempts && d < o->retry_max_ms; i++)
        d *= 2;
    if (d > o->retry_max_ms)
        d = o->retry_max_ms;
    int64_t half = d / 2;
    d = half + (half > 0 ? (int64_t)(rand64() % (uint64_t)(half + 1)) : 0);
    if (retry_after > d)
        d = retry_after < o->retry_max_ms ? retry_after : o->retry_max_ms;
    return d;
}

static pd_provider_t *find_provider(pd_dispatch_t *d, const char *type)
{
    for (size_t i = 0; i < d->nproviders; i++)
        if (strcmp(d->providers[i]->token_type, type) == 0)
            return d->providers[i];
    return NULL;
}

static void deliver(pd_dispatch_t *d, pd_entry_t *e)
{
    int64_t now = pd_now_ms();
    if (e->cancelled) {
        pd_metric_dropped(e->type, "cancelled");
        pd_queue_finish(d->q, e, 0);
        return;
    }
    if (e->expires_ms <= now) {
        pd_metric_dropped(e->type, "expired");
        pd_queue_finish(d->q, e, 0);
        return;
    }
    pd_provider_t *p = find_provider(d, e->type);
    if (!p) {
        /* Providers can be unconfigured in a deployment (e.g. local runs): not an error of the
         * caller, so a warning without the token. */
        CM_WARN(NULL, "notification %s undeliverable: no provider configured for token type %s",
                e->id, pd_provider_label(e->type));
        pd_metric_dropped(e->type, "unsupported");
        pd_queue_finish(d->q, e, 0);
        return;
    }
    pd_result_t r = {.kind = PD_R_RETRY, .retry_after_ms = -1};
    p->send(p->impl, e, &r);
    now = pd_now_ms();
    if (r.kind == PD_R_RETRY && strcmp(r.reason, "shutdown") == 0) {
        /* Cut short by our own SIGTERM: not the provider's failure, costs no attempt. */
        e->next_ms = now;
        pd_queue_finish(d->q, e, 1);
        return;
    }
    e->attempts++;
    switch (r.kind) {
    case PD_R_OK:
        count("push_dispatch_delivered_total", "Notifications accepted by the provider", e->type,
              NULL);
        CM_DEBUG(NULL, "notification %s delivered via %s after %" PRIu32 " attempt(s)", e->id,
                 p->name, e->attempts);
        pd_queue_finish(d->q, e, 0);
        return;
    case PD_R_RETRY: {
        int64_t delay = backoff_ms(&d->o, e->attempts, r.retry_after_ms);
        if (e->attempts >= d->o.max_attempts || now + delay >= e->expires_ms) {
            count("push_dispatch_failed_total", "Notifications given up after retries", e->type,
                  NULL);
            CM_WARN(NULL,
                    "notification %s via %s given up after %" PRIu32 " attempt(s) (last: %d %s)",
                    e->id, p->name, e->attempts, r.http_status, r.reason);
            pd_queue_finish(d->q, e, 0);
            return;
        }
        CM_DEBUG(NULL, "notification %s via %s: %d %s, retry in %" PRId64 " ms", e->id, p->name,
                 r.http_status, r.reason, delay);
        e->next_ms = now + delay;
        char type[sizeof(e->type)];
        memcpy(type, e->type, sizeof(type));
        /* Cancelled while this attempt ran (CancelMailbox, CancelRecipient): no retry. */
        if (pd_queue_finish(d->q, e, 1))
            pd_metric_dropped(type, "cancelled");
        else
            count("push_dispatch_retried_total", "Delivery attempts to be retried", type, NULL);
        return;
    }
    default:
        pd_metric_dropped(e->type, pd_result_kind_name(r.kind));
        CM_INFO(NULL, "notification %s via %s dropped: %s (%d %s)", e->id, p->name,
                pd_result_kind_name(r.kind), r.http_status, r.reason);
        pd_queue_finish(d->q, e, 0);
        return;
    }
}

static void *worker(void *arg)
{
    pd_dispatch_t *d = arg;
    pd_entry_t *e;
    while (pd_queue_take(d->q, &e) == 0)
        deliver(d, e);
    return NULL;
}

static void *sweeper(void *arg)
{
    pd_dispatch_t *d = arg;
    cm_gauge_t *depth =
        cm_metrics_gauge("push_dispatch_queue_depth", "Notifications waiting for delivery", NULL);
    int64_t last_sweep = 0;
    int last_healthy = 1;
    pthread_mutex_lock(&d->lock);
    while (!d->stop) {
        pthread_mutex_unlock(&d->lock);
        int64_t now = pd_now_ms();
        cm_gauge_set(depth, (int64_t)pd_queue_depth(d->q));
        int healthy = pd_queue_healthy(d->q);
        if (healthy != last_healthy)
            CM_WARN(NULL, healthy ? "queue storage healthy again"
                                  : "queue storage unhealthy: NOT_SERVING, Enqueue refused");
        last_healthy = healthy;
        if (d->o.health)
            d->o.health(d->o.health_arg, healthy);
        if (now - last_sweep >= 60000) {
            pd_queue_sweep(d->q, now);
            last_sweep = now;
        }
        pthread_mutex_lock(&d->lock);
        if (!d->stop)
            cm_cond_wait_ms(&d->cond, &d->lock, 1000);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

int pd_dispatch_start(const pd_dispatch_opts_t *o, pd_queue_t *q, pd_provider_t *const *providers,
                      size_t n, pd_dispatch_t **out)
{
    pd_dispatch_t *d = cm_xcalloc(1, sizeof(*d));
    d->o = *o;
    if (d->o.workers < 1)
        d->o.workers = 1;
    if (d->o.max_attempts < 1)
        d->o.max_attempts = 1;
    if (d->o.retry_base_ms < 1)
        d->o.retry_base_ms = 1;
    if (d->o.retry_max_ms < d->o.retry_base_ms)
        d->o.retry_max_ms = d->o.retry_base_ms;
    d->q = q;
    d->providers = providers;
    d->nproviders = n;
    pthread_mutex_init(&d->lock, NULL);
    cm_cond_init(&d->cond);
    d->threads = cm_xcalloc((size_t)d->o.workers, sizeof(*d->threads));
    for (int i = 0; i < d->o.workers; i++) {
        if (pthread_create(&d->threads[i], NULL, worker, d) != 0) {
            CM_ERROR(NULL, "cannot start delivery thread");
            goto fail;
        }
        d->nthreads++;
    }
    if (pthread_create(&d->sweeper, NULL, sweeper, d) != 0)
        goto fail;
    d->sweeper_started = 1;
    *out = d;
    return 0;
fail:
    pd_dispatch_del(d, 0);
    return -1;
}

void pd_dispatch_del(pd_dispatch_t *d, int64_t grace_ms)
{
    if (!d)
        return;
    pd_queue_stop(d->q);
    for (size_t i = 0; i < d->nproviders; i++)
        if (d->providers[i]->shutdown)
            d->providers[i]->shutdown(d->providers[i]->impl, grace_ms);
    for (int i = 0; i < d->nthreads; i++)
        pthread_join(d->threads[i], NULL);
    pthread_mutex_lock(&d->lock);
    d->stop = 1;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    if (d->sweeper_started)
        pthread_join(d->sweeper, NULL);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->cond);
    free(d->threads);
    free(d);
}
