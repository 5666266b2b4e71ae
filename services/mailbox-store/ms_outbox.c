#include "ms_outbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cm_log.h"
#include "cm_metrics.h"
#include "cm_rpc.h"
#include "tigress/push/v1/push_dispatch.pb-c.h"

struct ms_outbox {
    ms_store_t *st;       /* not owned */
    cm_rpc_channel_t *ch; /* owned */
    int64_t timeout_ms;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    int stop;
    int pending; /* set by wake: new entries may be there */
};

static int64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

ms_outbox_t *ms_outbox_new(void)
{
    ms_outbox_t *ob = calloc(1, sizeof(*ob));
    if (!ob)
        abort();
    pthread_mutex_init(&ob->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ob->cond, &ca);
    pthread_condattr_destroy(&ca);
    return ob;
}

void ms_outbox_wake(void *arg)
{
    ms_outbox_t *ob = arg;
    pthread_mutex_lock(&ob->mu);
    ob->pending = 1;
    pthread_cond_signal(&ob->cond);
    pthread_mutex_unlock(&ob->mu);
}

/* Sleeps up to |ms| unless woken (when |wakeable|) or stopped. Returns 1 when stopped. */
static int wait_ms(ms_outbox_t *ob, int64_t ms, int wakeable)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&ob->mu);
    while (!ob->stop && !(wakeable && ob->pending) &&
           pthread_cond_timedwait(&ob->cond, &ob->mu, &ts) != ETIMEDOUT)
        ;
    if (wakeable)
        ob->pending = 0;
    int stop = ob->stop;
    pthread_mutex_unlock(&ob->mu);
    return stop;
}

/* Forwards the head of |e| (n > 0). Returns the number of entries handled (to acknowledge),
 * 0 on a retryable failure. */
static size_t forward(ms_outbox_t *ob, ms_outbox_entry_t *e, size_t n, cm_rpc_status_t *st)
{
    cm_rpc_call_opts_t co = {.timeout_ms = ob->timeout_ms, .request_id = NULL};
    ProtobufCMessage *resp = NULL;
    if (e[0].kind == MS_OUTBOX_CANCEL) {
        Tigress__Push__V1__CancelMailboxRequest rq =
            TIGRESS__PUSH__V1__CANCEL_MAILBOX_REQUEST__INIT;
        rq.mailbox_id = e[0].mailbox_id;
        /* The marker carries the mailbox's expiry: push-dispatch keeps refusing late Enqueues
         * for it exactly that long (0, from an unreadable marker, means its own default). */
        Tigress__Push__V1__Notification *m =
            tigress__push__v1__notification__unpack(NULL, e[0].len, e[0].value);
        if (m) {
            rq.mailbox_expires_at_ms = m->mailbox_expires_at_ms;
            tigress__push__v1__notification__free_unpacked(m, NULL);
        }
        cm_rpc_call(ob->ch, "/tigress.push.v1.PushDispatch/CancelMailbox", &rq.base,
                    &tigress__push__v1__cancel_mailbox_response__descriptor, &co, &resp, st);
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        return st->code == GRPC_STATUS_OK || st->code == GRPC_STATUS_INVALID_ARGUMENT ? 1 : 0;
    }
    size_t k = 0;
    while (k < n && e[k].kind == MS_OUTBOX_NOTIFY)
        k++;
    if (k == 0) { /* unknown kind: written by a newer version? drop it rather than stall */
        CM_ERROR(NULL, "outbox: dropping entry of unknown kind %d", (int)e[0].kind);
        return 1;
    }
    Tigress__Push__V1__Notification *ns[MS_OUTBOX_BATCH];
    size_t live = 0;
    int64_t now = realtime_ms();
    for (size_t i = 0; i < k && i < MS_OUTBOX_BATCH; i++) {
        Tigress__Push__V1__Notification *m =
            tigress__push__v1__notification__unpack(NULL, e[i].len, e[i].value);
        if (m && m->mailbox_expires_at_ms > now)
            ns[live++] = m;
        else if (m)
            tigress__push__v1__notification__free_unpacked(m, NULL);
    }
    st->code = GRPC_STATUS_OK;
    if (live > 0) {
        Tigress__Push__V1__EnqueueRequest rq = TIGRESS__PUSH__V1__ENQUEUE_REQUEST__INIT;
        rq.n_notifications = live;
        rq.notifications = ns;
        cm_rpc_call(ob->ch, "/tigress.push.v1.PushDispatch/Enqueue", &rq.base,
                    &tigress__push__v1__enqueue_response__descriptor, &co, &resp, st);
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
    }
    for (size_t i = 0; i < live; i++)
        tigress__push__v1__notification__free_unpacked(ns[i], NULL);
    if (st->code == GRPC_STATUS_INVALID_ARGUMENT)
        CM_ERROR(NULL, "outbox: push-dispatch rejected %zu notifications: %s", live, st->message);
    return st->code == GRPC_STATUS_OK || st->code == GRPC_STATUS_INVALID_ARGUMENT ? k : 0;
}

static void *run(void *arg)
{
    ms_outbox_t *ob = arg;
    cm_counter_t *sent = cm_metrics_counter("tigress_mailbox_store_outbox_forwarded_total",
                                            "Outbox entries handed to push-dispatch", NULL);
    cm_counter_t *fails = cm_metrics_counter("tigress_mailbox_store_outbox_errors_total",
                                             "Failed calls to push-dispatch", NULL);
    int64_t backoff = 0, last_full_ms = 0;
    /* Continuing after the last delivered entry skips the tombstones of everything delivered
     * before; the periodic full rescan picks up entries that committed out of order. */
    uint64_t cursor = 0;
    ms_outbox_entry_t e[MS_OUTBOX_BATCH];
    for (;;) {
        size_t n = 0;
        uint64_t from = cursor;
        int64_t now = realtime_ms();
        if (now - last_full_ms >= 1000) {
            from = 0;
            last_full_ms = now;
        }
        if (ms_store_outbox_read(ob->st, from, MS_OUTBOX_BATCH, e, &n) != 0)
            n = 0;
        if (n == 0) {
            if (wait_ms(ob, 1000, 1))
                break;
            continue;
        }
        cm_rpc_status_t st = {GRPC_STATUS_OK, ""};
        size_t done = forward(ob, e, n, &st);
        if (done > 0) {
            if (ms_store_outbox_ack(ob->st, e, done) != 0)
                CM_WARN(NULL,
                        "outbox: acknowledging delivered entries failed; they will be re-sent");
            cm_counter_add(sent, done);
            cursor = e[done - 1].seq + 1;
            if (backoff)
                CM_INFO(NULL, "outbox: push-dispatch reachable again");
            backoff = 0;
        } else {
            cm_counter_add(fails, 1);
            if (!backoff)
                CM_WARN(NULL, "outbox: push-dispatch call failed (%d: %s); retrying with backoff",
                        (int)st.code, st.message);
            backoff = backoff ? (backoff * 2 > 5000 ? 5000 : backoff * 2) : 100;
        }
        ms_outbox_entries_free(e, n);
        if (backoff && wait_ms(ob, backoff, 0))
            break;
        pthread_mutex_lock(&ob->mu);
        int stop = ob->stop;
        pthread_mutex_unlock(&ob->mu);
        if (stop)
            break;
    }
    return NULL;
}

int ms_outbox_start(ms_outbox_t *ob, ms_store_t *st, const char *target, const char *lb_policy,
                    int64_t call_timeout_ms)
{
    ob->st = st;
    ob->timeout_ms = call_timeout_ms > 0 ? call_timeout_ms : 5000;
    cm_rpc_channel_opts_t co = {.lb_policy = lb_policy && *lb_policy ? lb_policy : NULL};
    if (cm_rpc_channel_new(target, &co, &ob->ch) != 0)
        return -1;
    if (pthread_create(&ob->thread, NULL, run, ob) != 0) {
        cm_rpc_channel_del(ob->ch);
        ob->ch = NULL;
        return -1;
    }
    ob->started = 1;
    return 0;
}

void ms_outbox_del(ms_outbox_t *ob)
{
    if (!ob)
        return;
    if (ob->started) {
        pthread_mutex_lock(&ob->mu);
        ob->stop = 1;
        pthread_cond_signal(&ob->cond);
        pthread_mutex_unlock(&ob->mu);
        pthread_join(ob->thread, NULL);
    }
    if (ob->ch)
        cm_rpc_channel_del(ob->ch);
    pthread_cond_destroy(&ob->cond);
    pthread_mutex_destroy(&ob->mu);
    free(ob);
}
