#include "ms_outbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cm_alloc.h"
#include "cm_time.h"
#include "cm_log.h"
#include "cm_metrics.h"
#include "cm_rpc.h"
#include "ms_engine.h"
#include "tigress/push/v1/push_dispatch.pb-c.h"

struct ms_outbox {
    ms_core_t *core;      /* not owned */
    cm_rpc_channel_t *ch; /* owned */
    int64_t timeout_ms;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* cm_cond_init */
    int stop;
    int pending; /* set by wake: new entries may be there */
};

ms_outbox_t *ms_outbox_new(void)
{
    ms_outbox_t *ob = cm_xcalloc(1, sizeof(*ob));
    pthread_mutex_init(&ob->mu, NULL);
    cm_cond_init(&ob->cond);
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
    int64_t deadline = cm_time_mono_ms() + ms;
    pthread_mutex_lock(&ob->mu);
    while (!ob->stop && !(wakeable && ob->pending)) {
        int64_t left = deadline - cm_time_mono_ms();
        if (left <= 0 || cm_cond_wait_ms(&ob->cond, &ob->mu, left) == ETIMEDOUT)
            break;
    }
    if (wakeable)
        ob->pending = 0;
    int stop = ob->stop;
    pthread_mutex_unlock(&ob->mu);
    return stop;
}

/* Decodes |e| into |n|; 0, or -1 for an entry nobody can read (logged; dropped by the caller
 * rather than stalling the outbox). */
static int decode(ms_outbox_t *ob, const ms_outbox_entry_t *e, ms_notification_t *n)
{
    ms_err_t rc = ms_core_outbox_decode(ob->core, e, n);
    if (rc == MS_OK)
        return 0;
    CM_ERROR(NULL, "outbox: dropping unreadable entry %llu (%s)", (unsigned long long)e->seq,
             ms_err_name(rc));
    ms_notification_free(n);
    return -1;
}

static size_t forward_cancel(ms_outbox_t *ob, const ms_outbox_entry_t *e, cm_rpc_status_t *st)
{
    ms_notification_t n;
    if (decode(ob, e, &n) != 0)
        return 1;
    cm_rpc_call_opts_t co = {.timeout_ms = ob->timeout_ms, .request_id = NULL};
    ProtobufCMessage *resp = NULL;
    if (n.token_data[0]) {
        /* One party left (the receiver relinquished): only its token's notifications go. */
        Tigress__Push__V1__CancelRecipientRequest rr =
            TIGRESS__PUSH__V1__CANCEL_RECIPIENT_REQUEST__INIT;
        rr.mailbox_id = n.mailbox_id;
        rr.token_type = n.token_type;
        rr.token_data = n.token_data;
        cm_rpc_call(ob->ch, "/tigress.push.v1.PushDispatch/CancelRecipient", &rr.base,
                    &tigress__push__v1__cancel_mailbox_response__descriptor, &co, &resp, st);
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        ms_notification_free(&n);
        return st->code == GRPC_STATUS_OK || st->code == GRPC_STATUS_INVALID_ARGUMENT ? 1 : 0;
    }
    Tigress__Push__V1__CancelMailboxRequest rq = TIGRESS__PUSH__V1__CANCEL_MAILBOX_REQUEST__INIT;
    rq.mailbox_id = n.mailbox_id;
    /* The marker carries the mailbox's expiry: push-dispatch keeps refusing late Enqueues for
     * it exactly that long. */
    rq.mailbox_expires_at_ms = n.mailbox_expires_at_ms;
    cm_rpc_call(ob->ch, "/tigress.push.v1.PushDispatch/CancelMailbox", &rq.base,
                &tigress__push__v1__cancel_mailbox_response__descriptor, &co, &resp, st);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    ms_notification_free(&n);
    return st->code == GRPC_STATUS_OK || st->code == GRPC_STATUS_INVALID_ARGUMENT ? 1 : 0;
}

/* Sends the notifications of |n| (live ones not in |skip|) in one Enqueue; |msgs| and |pb| are
 * scratch of at least |n| elements. */
static void enqueue(ms_outbox_t *ob, ms_notification_t *n, const uint8_t *skip, size_t cnt,
                    Tigress__Push__V1__Notification *pb, cm_rpc_status_t *st)
{
    Tigress__Push__V1__Notification *ptrs[MS_OUTBOX_BATCH];
    size_t live = 0;
    int64_t now = cm_time_wall_ms();
    for (size_t i = 0; i < cnt; i++) {
        if (n[i].mailbox_expires_at_ms <= now || skip[i])
            continue;
        Tigress__Push__V1__Notification *m = &pb[live];
        *m = (Tigress__Push__V1__Notification)TIGRESS__PUSH__V1__NOTIFICATION__INIT;
        m->notification_id = n[i].notification_id;
        m->mailbox_id = n[i].mailbox_id;
        m->token_type = n[i].token_type;
        m->token_data = n[i].token_data;
        m->mailbox_expires_at_ms = n[i].mailbox_expires_at_ms;
        m->created_at_ms = n[i].created_at_ms;
        ptrs[live++] = m;
    }
    st->code = GRPC_STATUS_OK;
    if (live == 0)
        return;
    cm_rpc_call_opts_t co = {.timeout_ms = ob->timeout_ms, .request_id = NULL};
    ProtobufCMessage *resp = NULL;
    Tigress__Push__V1__EnqueueRequest rq = TIGRESS__PUSH__V1__ENQUEUE_REQUEST__INIT;
    rq.n_notifications = live;
    rq.notifications = ptrs;
    cm_rpc_call(ob->ch, "/tigress.push.v1.PushDispatch/Enqueue", &rq.base,
                &tigress__push__v1__enqueue_response__descriptor, &co, &resp, st);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    if (st->code == GRPC_STATUS_INVALID_ARGUMENT)
        CM_ERROR(NULL, "outbox: push-dispatch rejected %zu notifications: %s", live, st->message);
}

/* Marks in |skip| the notifications of |ns| whose recipient left the mailbox by a marker among
 * the later entries |later| of this claim: no point waking a device for a mailbox it left
 * (the marker itself then cancels what push-dispatch already holds). */
static void skip_left_recipients(ms_outbox_t *ob, const ms_outbox_entry_t *later, size_t nlater,
                                 const ms_notification_t *ns, uint8_t *skip, size_t cnt)
{
    for (size_t j = 0; j < nlater; j++) {
        ms_notification_t m;
        if (later[j].kind != MS_OUTBOX_CANCEL ||
            ms_core_outbox_decode(ob->core, &later[j], &m) != MS_OK) {
            if (later[j].kind == MS_OUTBOX_CANCEL)
                ms_notification_free(&m);
            continue;
        }
        for (size_t i = 0; i < cnt && m.token_data[0]; i++)
            if (strcmp(ns[i].mailbox_id, m.mailbox_id) == 0 &&
                strcmp(ns[i].token_type, m.token_type) == 0 &&
                strcmp(ns[i].token_data, m.token_data) == 0)
                skip[i] = 1;
        ms_notification_free(&m);
    }
}

/* Forwards the head of |e| (n > 0). Returns the number of entries handled (to acknowledge),
 * 0 on a retryable failure. */
static size_t forward(ms_outbox_t *ob, ms_outbox_entry_t *e, size_t n, cm_rpc_status_t *st)
{
    if (e[0].kind == MS_OUTBOX_CANCEL)
        return forward_cancel(ob, &e[0], st);
    size_t k = 0;
    while (k < n && k < MS_OUTBOX_BATCH && e[k].kind == MS_OUTBOX_NOTIFY)
        k++;
    if (k == 0) { /* unknown kind: written by a newer version? drop it rather than stall */
        CM_ERROR(NULL, "outbox: dropping entry of unknown kind %d", (int)e[0].kind);
        return 1;
    }
    ms_notification_t ns[MS_OUTBOX_BATCH];
    Tigress__Push__V1__Notification pb[MS_OUTBOX_BATCH];
    uint8_t skip[MS_OUTBOX_BATCH] = {0};
    size_t cnt = 0;
    for (size_t i = 0; i < k; i++)
        if (decode(ob, &e[i], &ns[cnt]) == 0)
            cnt++;
    skip_left_recipients(ob, e + k, n - k, ns, skip, cnt);
    enqueue(ob, ns, skip, cnt, pb, st);
    for (size_t i = 0; i < cnt; i++)
        ms_notification_free(&ns[i]);
    return st->code == GRPC_STATUS_OK || st->code == GRPC_STATUS_INVALID_ARGUMENT ? k : 0;
}

static void *run(void *arg)
{
    ms_outbox_t *ob = arg;
    ms_engine_t *eng = ms_core_engine(ob->core);
    cm_counter_t *sent = cm_metrics_counter("tigress_mailbox_store_outbox_forwarded_total",
                                            "Outbox entries handed to push-dispatch", NULL);
    cm_counter_t *fails = cm_metrics_counter("tigress_mailbox_store_outbox_errors_total",
                                             "Failed calls to push-dispatch", NULL);
    int64_t backoff = 0;
    /* A claimed entry stays ours this long: well past one call's deadline. */
    int64_t lease_ms = ob->timeout_ms * 4 > 10000 ? ob->timeout_ms * 4 : 10000;
    ms_outbox_entry_t e[MS_OUTBOX_BATCH];
    for (;;) {
        size_t n = 0;
        if (eng->ops->outbox_claim(eng, MS_OUTBOX_BATCH, lease_ms, e, &n) != MS_OK)
            n = 0;
        if (n == 0) {
            if (wait_ms(ob, 1000, 1))
                break;
            continue;
        }
        cm_rpc_status_t st = {GRPC_STATUS_OK, ""};
        size_t done = forward(ob, e, n, &st);
        if (done > 0) {
            if (eng->ops->outbox_ack(eng, e, done) != MS_OK)
                CM_WARN(NULL,
                        "outbox: acknowledging delivered entries failed; they will be re-sent");
            cm_counter_add(sent, done);
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
        /* What was claimed but not delivered goes back for the next claim (here or in another
         * replica). */
        if (done < n)
            eng->ops->outbox_release(eng, e + done, n - done);
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

int ms_outbox_start(ms_outbox_t *ob, ms_core_t *core, const char *target, const char *lb_policy,
                    int64_t call_timeout_ms)
{
    ob->core = core;
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
