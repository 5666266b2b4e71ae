#include "ms_sweeper.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "cm_log.h"
#include "cm_metrics.h"

struct ms_sweeper {
    ms_sweeper_opts_t o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    int stop;
};

static int64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits |ms| or until stopped. Returns 1 when stopped. */
static int pause_ms(ms_sweeper_t *sw, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&sw->mu);
    while (!sw->stop && pthread_cond_timedwait(&sw->cond, &sw->mu, &ts) != ETIMEDOUT)
        ;
    int stop = sw->stop;
    pthread_mutex_unlock(&sw->mu);
    return stop;
}

static int stopped(ms_sweeper_t *sw)
{
    pthread_mutex_lock(&sw->mu);
    int s = sw->stop;
    pthread_mutex_unlock(&sw->mu);
    return s;
}

static void *run(void *arg)
{
    ms_sweeper_t *sw = arg;
    cm_counter_t *swept = cm_metrics_counter("tigress_mailbox_store_swept_total",
                                             "Expired mailboxes deleted by the sweeper", NULL);
    cm_gauge_t *depth = cm_metrics_gauge("tigress_mailbox_store_outbox_depth",
                                         "Notifications and cancels waiting in the outbox", NULL);
    int last_healthy = 1;
    do {
        int rc;
        do {
            size_t n = 0;
            rc = ms_store_sweep(sw->o.store, realtime_ms(), sw->o.batch, &n);
            cm_counter_add(swept, n);
            if (rc == 1)
                sched_yield(); /* let request threads at the stripe locks and the disk */
        } while (rc == 1 && !stopped(sw));
        if (rc < 0)
            CM_WARN(NULL, "sweeper: storage error; retrying next interval");
        cm_gauge_set(depth, ms_store_outbox_depth(sw->o.store));
        int healthy = ms_store_healthy(sw->o.store);
        if (healthy != last_healthy)
            CM_WARN(NULL, healthy ? "storage healthy again" : "RocksDB reports a background error");
        last_healthy = healthy;
        if (sw->o.health)
            sw->o.health(sw->o.health_arg, healthy);
    } while (!pause_ms(sw, sw->o.interval_ms));
    return NULL;
}

int ms_sweeper_start(const ms_sweeper_opts_t *opts, ms_sweeper_t **out)
{
    ms_sweeper_t *sw = calloc(1, sizeof(*sw));
    if (!sw)
        abort();
    sw->o = *opts;
    if (sw->o.batch == 0)
        sw->o.batch = 256;
    if (sw->o.interval_ms <= 0)
        sw->o.interval_ms = 1000;
    pthread_mutex_init(&sw->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sw->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&sw->thread, NULL, run, sw) != 0) {
        pthread_cond_destroy(&sw->cond);
        pthread_mutex_destroy(&sw->mu);
        free(sw);
        return -1;
    }
    *out = sw;
    return 0;
}

void ms_sweeper_stop(ms_sweeper_t *sw)
{
    if (!sw)
        return;
    pthread_mutex_lock(&sw->mu);
    sw->stop = 1;
    pthread_cond_signal(&sw->cond);
    pthread_mutex_unlock(&sw->mu);
    pthread_join(sw->thread, NULL);
    pthread_cond_destroy(&sw->cond);
    pthread_mutex_destroy(&sw->mu);
    free(sw);
}
