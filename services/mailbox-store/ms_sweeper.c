#include "ms_sweeper.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "cm_alloc.h"
#include "cm_time.h"
#include "cm_log.h"
#include "cm_metrics.h"
#include "ms_engine.h"

struct ms_sweeper {
    ms_sweeper_opts_t o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* cm_cond_init */
    int stop;
};

/* Waits |ms| or until stopped. Returns 1 when stopped. */
static int pause_ms(ms_sweeper_t *sw, int64_t ms)
{
    int64_t deadline = cm_time_mono_ms() + ms;
    pthread_mutex_lock(&sw->mu);
    while (!sw->stop) {
        int64_t left = deadline - cm_time_mono_ms();
        if (left <= 0 || cm_cond_wait_ms(&sw->cond, &sw->mu, left) == ETIMEDOUT)
            break;
    }
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
    ms_engine_t *eng = ms_core_engine(sw->o.core);
    do {
        ms_err_t rc;
        int more = 0;
        do {
            size_t n = 0;
            rc = ms_core_sweep(sw->o.core, sw->o.batch, &n, &more);
            cm_counter_add(swept, n);
            if (more)
                sched_yield(); /* let request threads at the locks and the disk */
        } while (rc == MS_OK && more && !stopped(sw));
        if (rc != MS_OK)
            CM_WARN(NULL, "sweeper: storage error (%s); retrying next interval", ms_err_name(rc));
        int64_t n = 0;
        if (eng->ops->outbox_depth(eng, &n) == MS_OK)
            cm_gauge_set(depth, n);
        int healthy = eng->ops->healthy(eng);
        if (healthy != last_healthy)
            CM_WARN(NULL, healthy ? "storage healthy again" : "storage cannot write");
        last_healthy = healthy;
        if (sw->o.health)
            sw->o.health(sw->o.health_arg, healthy);
    } while (!pause_ms(sw, sw->o.interval_ms));
    return NULL;
}

int ms_sweeper_start(const ms_sweeper_opts_t *opts, ms_sweeper_t **out)
{
    ms_sweeper_t *sw = cm_xcalloc(1, sizeof(*sw));
    sw->o = *opts;
    if (sw->o.batch == 0)
        sw->o.batch = 256;
    if (sw->o.interval_ms <= 0)
        sw->o.interval_ms = 1000;
    pthread_mutex_init(&sw->mu, NULL);
    cm_cond_init(&sw->cond);
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
