#include "gw_backend.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cm_alloc.h"
#include "cm_log.h"
#include "cm_metrics.h"
#include "cm_shard.h"
#include "cm_time.h"
#include "grpc/health/v1/health.pb-c.h"
#include "tigress/mailbox/v1/mailbox_store.pb-c.h"
#include "tigress/push/v1/push_dispatch.pb-c.h"

#define READY_TTL_MS 1000
#define PUSH_TTL_MS 10000
#define PUSH_FAIL_TTL_MS 1000

static const char *const be_names[GW_BE_COUNT] = {"store", "push", "attest"};

/* A caller waiting for a cache refresh. */
typedef struct waiter {
    struct waiter *next;
    gw_loop_t *loop; /* where |fn| runs */
    void (*fn)(void *);
    void *arg;
} waiter_t;

/* A value refreshed by one backend call at a time; callers that find it stale queue as
 * waiters and are woken on their own loop when the call ends. */
typedef struct {
    pthread_mutex_t mu; /* guards everything below */
    int64_t fresh_until_ms;
    int inflight;
    waiter_t *waiters;  /* owned list */
    int ready;          /* readiness cache: 1 SERVING */
    unsigned push_mask; /* push cache: bit per known token type */
} cache_t;

struct gw_backend {
    gw_backend_config_t cfg; /* strings point into |strs| */
    char *strs[5];           /* owned copies of the configuration's strings */
    /* owned; NULL when not configured. For the store: the only shard without store_shards,
     * else unused (see |store|). */
    cm_rpc_channel_t *ch[GW_BE_COUNT];
    cm_shards_t *shards;      /* owned; NULL without store_shards */
    cm_rpc_channel_t **store; /* owned array of |nstore| channels, one per shard */
    size_t nstore;
    /* readiness refresh in progress: calls outstanding and shards that answered SERVING;
     * guarded by ready.mu */
    size_t ready_left, ready_serving;
    cm_rpc_async_t *async; /* owned */
    cm_histogram_t *latency[GW_BE_COUNT];
    cache_t ready, push;
};

static const char *const push_types[] = {"com.apple.apns", "com.google.fcm", "webhook"};

int64_t gw_backend_now_ms(void)
{
    return cm_time_mono_ms();
}

/* Answers about the request (unknown id, wrong claim, bad field) are the backend working as
 * meant; only the rest says something about the backend's health. */
static int is_backend_failure(int code)
{
    switch ((grpc_status_code)code) {
    case GRPC_STATUS_OK:
    case GRPC_STATUS_NOT_FOUND:
    case GRPC_STATUS_ALREADY_EXISTS:
    case GRPC_STATUS_PERMISSION_DENIED:
    case GRPC_STATUS_UNAUTHENTICATED:
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_OUT_OF_RANGE:
        return 0;
    default:
        return 1;
    }
}

/* Counts one backend failure (outage, deadline, internal error) by gRPC code name. Answers
 * about the request itself (NOT_FOUND, PERMISSION_DENIED, ...) are not failures. */
static void count_error(gw_backend_id_t be, int grpc_code)
{
    char labels[96];
    snprintf(labels, sizeof(labels), "backend=\"%s\",code=\"%s\"", be_names[be],
             cm_rpc_code_name((grpc_status_code)grpc_code));
    cm_counter_t *c =
        cm_metrics_counter("gateway_backend_errors_total",
                           "Failed backend calls by backend and gRPC status code", labels);
    if (c)
        cm_counter_add(c, 1);
}

size_t gw_backend_store_shards(const gw_backend_t *b)
{
    return b->nstore;
}

int gw_backend_configured(const gw_backend_t *b, gw_backend_id_t be)
{
    if (be == GW_BE_STORE)
        return b->nstore > 0;
    return be < GW_BE_COUNT && b->ch[be] != NULL;
}

/* The store shard of |key| (the mailbox id). */
static size_t shard_for(const gw_backend_t *b, const char *key)
{
    if (!b->shards || !key)
        return 0;
    return cm_shards_pick(b->shards, key, strlen(key));
}

/* The channel serving |be| for |key| (the mailbox id for the store). */
static cm_rpc_channel_t *channel_for(const gw_backend_t *b, gw_backend_id_t be, const char *key)
{
    if (be != GW_BE_STORE)
        return be < GW_BE_COUNT ? b->ch[be] : NULL;
    if (b->nstore == 0)
        return NULL;
    return b->store[shard_for(b, key)];
}

/* ---- calls ------------------------------------------------------------------------------- */

/* One call in flight, then the hop of its result to the loop. */
typedef struct {
    gw_backend_t *b;
    gw_backend_id_t be;
    gw_loop_t *loop;
    gw_backend_done_fn done;
    void *arg;
    int64_t started_ms;
    cm_rpc_status_t st;
    ProtobufCMessage *resp; /* owned until handed to |done| */
} hop_t;

static void hop_run(void *p)
{
    hop_t *h = p;
    h->done(h->arg, &h->st, h->resp);
    free(h);
}

static void call_done(void *user, const cm_rpc_status_t *st, ProtobufCMessage *resp)
{
    hop_t *h = user;
    h->st = *st;
    h->resp = resp;
    if (h->b->latency[h->be])
        cm_histogram_observe(h->b->latency[h->be],
                             (double)(gw_backend_now_ms() - h->started_ms) / 1e3);
    if (is_backend_failure(st->code))
        count_error(h->be, st->code);
    if (gw_loop_post(h->loop, hop_run, h) != 0) {
        /* the loop is gone (shutdown): nobody can answer this request any more */
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        free(h);
    }
}

/* ---- store read batches ------------------------------------------------------------------- */

#define STORE_PREFIX "/tigress.mailbox.v1.MailboxStore/"
#define BATCH_SLOTS 16

/* One read waiting in, or travelling with, a batch. */
typedef struct {
    char rid[32]; /* x-request-id of the read */
    gw_backend_done_fn done;
    void *arg;
    const ProtobufCMessageDescriptor *resp_desc;
    const char *method; /* static: the name after STORE_PREFIX */
    uint8_t *req;       /* owned packed request; freed once the batch is sent */
    size_t req_len;
    int64_t started_ms;
} bitem_t;

/* The reads of one loop thread for one shard, from one loop iteration. */
typedef struct {
    gw_backend_t *owner; /* not owned */
    gw_loop_t *loop;     /* the loop thread that filled it, where the answers go */
    size_t shard;
    size_t n;
    bitem_t items[GW_BACKEND_BATCH_MAX];
    int64_t deadline_ms;                       /* the earliest of the items' deadlines */
    cm_rpc_status_t st;                        /* of the Batch call */
    Tigress__Mailbox__V1__BatchResponse *resp; /* owned once the call ended */
} batch_t;

/* Per loop thread: the batches being filled in this iteration (owned; NULL between iterations:
 * a sent batch belongs to its call) and whether the flush is already deferred. */
static __thread batch_t *tl_batch[BATCH_SLOTS];
static __thread int tl_flush_deferred;

/* Answers each read of a finished batch, on the loop thread that filled it. */
static void batch_run(void *p)
{
    batch_t *b = p;
    int64_t now = gw_backend_now_ms();
    int whole_ok = b->st.code == GRPC_STATUS_OK && b->resp && b->resp->n_results == b->n;
    if (b->st.code == GRPC_STATUS_OK && !whole_ok)
        CM_ERROR(NULL, "gateway: store batch answered %zu results for %zu calls",
                 b->resp ? b->resp->n_results : 0, b->n);
    for (size_t i = 0; i < b->n; i++) {
        bitem_t *it = &b->items[i];
        cm_rpc_status_t st = b->st;
        ProtobufCMessage *resp = NULL;
        if (!whole_ok && st.code == GRPC_STATUS_OK) {
            st.code = GRPC_STATUS_INTERNAL;
            snprintf(st.message, sizeof(st.message), "batch answer malformed");
        } else if (whole_ok) {
            const Tigress__Mailbox__V1__BatchResult *res = b->resp->results[i];
            st.code = (grpc_status_code)res->code;
            snprintf(st.message, sizeof(st.message), "%s", res->message ? res->message : "");
            if (st.code == GRPC_STATUS_OK) {
                resp = protobuf_c_message_unpack(it->resp_desc, NULL, res->response.len,
                                                 res->response.data);
                if (!resp) {
                    st.code = GRPC_STATUS_INTERNAL;
                    snprintf(st.message, sizeof(st.message), "response unreadable");
                }
            }
        }
        if (b->owner->latency[GW_BE_STORE])
            cm_histogram_observe(b->owner->latency[GW_BE_STORE],
                                 (double)(now - it->started_ms) / 1e3);
        if (is_backend_failure(st.code))
            count_error(GW_BE_STORE, st.code);
        it->done(it->arg, &st, resp);
    }
    if (b->resp)
        protobuf_c_message_free_unpacked(&b->resp->base, NULL);
    free(b);
}

static void batch_done(void *user, const cm_rpc_status_t *st, ProtobufCMessage *resp)
{
    batch_t *b = user;
    b->st = *st;
    b->resp = (Tigress__Mailbox__V1__BatchResponse *)resp;
    if (gw_loop_post(b->loop, batch_run, b) != 0) {
        /* the loop is gone (shutdown): nobody can answer these requests any more */
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        free(b);
    }
}

/* Sends |b|, which then belongs to its call; when it cannot start, every read gets
 * UNAVAILABLE here, on the loop thread (their gw_backend_call had returned 0). */
static void batch_send(batch_t *b)
{
    Tigress__Mailbox__V1__BatchCall calls[GW_BACKEND_BATCH_MAX], *pcalls[GW_BACKEND_BATCH_MAX];
    for (size_t i = 0; i < b->n; i++) {
        calls[i] = (Tigress__Mailbox__V1__BatchCall)TIGRESS__MAILBOX__V1__BATCH_CALL__INIT;
        calls[i].method = (char *)b->items[i].method;
        calls[i].request.data = b->items[i].req;
        calls[i].request.len = b->items[i].req_len;
        calls[i].request_id = b->items[i].rid;
        pcalls[i] = &calls[i];
    }
    Tigress__Mailbox__V1__BatchRequest breq = TIGRESS__MAILBOX__V1__BATCH_REQUEST__INIT;
    breq.calls = pcalls;
    breq.n_calls = b->n;
    int64_t left = b->deadline_ms - gw_backend_now_ms();
    cm_rpc_call_opts_t opts = {.timeout_ms = left > 0 ? left : 1, .request_id = b->items[0].rid};
    gw_backend_t *be = b->owner;
    cm_rpc_channel_t *ch = b->shard < be->nstore ? be->store[b->shard] : NULL;
    int rc = ch ? cm_rpc_call_async(be->async, ch, STORE_PREFIX "Batch", &breq.base,
                                    &tigress__mailbox__v1__batch_response__descriptor, &opts,
                                    batch_done, b)
                : -1;
    for (size_t i = 0; i < b->n; i++) {
        free(b->items[i].req);
        b->items[i].req = NULL;
    }
    if (rc != 0) {
        b->st.code = GRPC_STATUS_UNAVAILABLE;
        snprintf(b->st.message, sizeof(b->st.message), "store unreachable");
        batch_run(b);
    }
}

/* Deferred to the end of the loop iteration: sends what this thread collected. */
static void batch_flush(void *unused)
{
    (void)unused;
    tl_flush_deferred = 0;
    for (size_t i = 0; i < BATCH_SLOTS; i++) {
        batch_t *b = tl_batch[i];
        tl_batch[i] = NULL;
        if (b)
            batch_send(b);
    }
}

/* Adds a store read to this thread's batch for |key|'s shard. 0, or -1 (nothing queued). */
static int batch_add(gw_backend_t *be, const char *key, const gw_backend_caller_t *caller,
                     const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *resp_desc)
{
    size_t shard = shard_for(be, key), slot = shard % BATCH_SLOTS;
    batch_t *b = tl_batch[slot];
    if (b && (b->shard != shard || b->owner != be)) {
        /* another shard on this slot (> BATCH_SLOTS shards), or another instance */
        tl_batch[slot] = NULL;
        batch_send(b);
        b = NULL;
    }
    if (!b) {
        b = cm_xcalloc(1, sizeof(*b));
        b->owner = be;
        b->loop = caller->loop;
        b->shard = shard;
        b->deadline_ms = caller->deadline_ms;
    }
    bitem_t *it = &b->items[b->n];
    it->req_len = protobuf_c_message_get_packed_size(req);
    it->req = cm_xmalloc(it->req_len ? it->req_len : 1);
    protobuf_c_message_pack(req, it->req);
    if (!tl_flush_deferred) {
        if (gw_loop_defer(caller->loop, batch_flush, NULL) != 0) {
            free(it->req);
            it->req = NULL;
            if (b->n == 0)
                free(b);
            return -1;
        }
        tl_flush_deferred = 1;
    }
    snprintf(it->rid, sizeof(it->rid), "%s", caller->request_id ? caller->request_id : "");
    it->done = caller->done;
    it->arg = caller->arg;
    it->resp_desc = resp_desc;
    it->method = method + strlen(STORE_PREFIX);
    it->started_ms = gw_backend_now_ms();
    if (caller->deadline_ms < b->deadline_ms)
        b->deadline_ms = caller->deadline_ms;
    b->n++;
    if (b->n == GW_BACKEND_BATCH_MAX) {
        tl_batch[slot] = NULL;
        batch_send(b);
    } else {
        tl_batch[slot] = b;
    }
    return 0;
}

static int is_batched_read(const char *method)
{
    return strcmp(method, STORE_PREFIX "ReadDisplay") == 0 ||
           strcmp(method, STORE_PREFIX "ReadSecure") == 0;
}

int gw_backend_call(gw_backend_t *b, gw_backend_id_t be, const char *key,
                    const gw_backend_caller_t *caller, const char *method,
                    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc)
{
    if (be == GW_BE_STORE && b->cfg.store_batch && is_batched_read(method)) {
        /* the shard (and its channel) is picked when the batch is sent */
        if (b->nstore == 0)
            return -1;
        return batch_add(b, key, caller, method, req, resp_desc);
    }
    cm_rpc_channel_t *ch = channel_for(b, be, key);
    if (!ch)
        return -1;
    hop_t *h = cm_xcalloc(1, sizeof(*h));
    h->b = b;
    h->be = be;
    h->loop = caller->loop;
    h->done = caller->done;
    h->arg = caller->arg;
    h->started_ms = gw_backend_now_ms();
    int64_t left = caller->deadline_ms - h->started_ms;
    cm_rpc_call_opts_t opts = {.timeout_ms = left > 0 ? left : 1, .request_id = caller->request_id};
    if (cm_rpc_call_async(b->async, ch, method, req, resp_desc, &opts, call_done, h) != 0) {
        count_error(be, GRPC_STATUS_UNAVAILABLE);
        free(h);
        return -1;
    }
    return 0;
}

/* ---- caches ------------------------------------------------------------------------------ */

/* Ends a refresh: stores the value under |c->mu| and wakes the waiters on their loops. */
static void cache_finish(cache_t *c, int64_t ttl_ms, int ready, unsigned push_mask)
{
    pthread_mutex_lock(&c->mu);
    c->ready = ready;
    c->push_mask = push_mask;
    c->fresh_until_ms = gw_backend_now_ms() + ttl_ms;
    c->inflight = 0;
    waiter_t *w = c->waiters;
    c->waiters = NULL;
    pthread_mutex_unlock(&c->mu);
    while (w) {
        waiter_t *next = w->next;
        gw_loop_post(w->loop, w->fn, w->arg); /* -1 only when the loop is gone */
        free(w);
        w = next;
    }
}

/* Under |c->mu|: 1 when the value is fresh; else queues the waiter (when |loop|) and returns 0,
 * setting *start when the caller must start the refresh. */
static int cache_check(cache_t *c, gw_loop_t *loop, void (*fn)(void *), void *arg, int *start)
{
    *start = 0;
    if (gw_backend_now_ms() < c->fresh_until_ms)
        return 1;
    if (loop) {
        waiter_t *w = cm_xcalloc(1, sizeof(*w));
        w->loop = loop;
        w->fn = fn;
        w->arg = arg;
        w->next = c->waiters;
        c->waiters = w;
    }
    if (!c->inflight) {
        c->inflight = 1;
        *start = 1;
    }
    return 0;
}

/* One shard's health answer. The gateway is ready while at least one shard serves: a dead
 * shard makes only its own mailboxes unavailable, and pulling every gateway out of the load
 * balancer for it would take the healthy shards down too. */
static void ready_one(gw_backend_t *b, int serving)
{
    pthread_mutex_lock(&b->ready.mu);
    b->ready_serving += serving ? 1 : 0;
    int last = --b->ready_left == 0;
    int ready = b->ready_serving > 0;
    pthread_mutex_unlock(&b->ready.mu);
    if (last)
        cache_finish(&b->ready, READY_TTL_MS, ready, 0);
}

static void ready_done(void *user, const cm_rpc_status_t *st, ProtobufCMessage *resp)
{
    int ready = 0;
    if (st->code == GRPC_STATUS_OK && resp) {
        Grpc__Health__V1__HealthCheckResponse *h = (void *)resp;
        ready = h->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    } else {
        count_error(GW_BE_STORE, st->code);
    }
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    ready_one(user, ready);
}

static void ready_refresh(gw_backend_t *b)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = "tigress.mailbox.v1.MailboxStore"; /* not "": another server on the port */
    int64_t t = b->cfg.timeout_ms < READY_TTL_MS ? b->cfg.timeout_ms : READY_TTL_MS;
    cm_rpc_call_opts_t opts = {.timeout_ms = t > 0 ? t : 1};
    size_t n = b->nstore;
    if (n == 0) {
        cache_finish(&b->ready, READY_TTL_MS, 0, 0);
        return;
    }
    pthread_mutex_lock(&b->ready.mu);
    b->ready_left = n;
    b->ready_serving = 0;
    pthread_mutex_unlock(&b->ready.mu);
    for (size_t i = 0; i < n; i++) {
        if (cm_rpc_call_async(b->async, b->store[i], "/grpc.health.v1.Health/Check", &req.base,
                              &grpc__health__v1__health_check_response__descriptor, &opts,
                              ready_done, b) != 0) {
            count_error(GW_BE_STORE, GRPC_STATUS_UNAVAILABLE);
            ready_one(b, 0);
        }
    }
}

int gw_backend_ready(gw_backend_t *b, gw_loop_t *loop, void (*fn)(void *), void *arg)
{
    int start;
    pthread_mutex_lock(&b->ready.mu);
    int fresh = cache_check(&b->ready, loop, fn, arg, &start);
    int v = b->ready.ready;
    pthread_mutex_unlock(&b->ready.mu);
    if (fresh)
        return v;
    if (start)
        ready_refresh(b);
    return -1;
}

int gw_backend_ready_now(gw_backend_t *b)
{
    pthread_mutex_lock(&b->ready.mu);
    int v = b->ready.ready;
    pthread_mutex_unlock(&b->ready.mu);
    return v;
}

static void push_done(void *user, const cm_rpc_status_t *st, ProtobufCMessage *resp)
{
    gw_backend_t *b = user;
    unsigned mask = 0;
    int64_t ttl = PUSH_FAIL_TTL_MS;
    if (st->code == GRPC_STATUS_OK && resp) {
        Tigress__Push__V1__SupportedResponse *s = (void *)resp;
        for (size_t i = 0; i < s->n_token_types; i++)
            for (size_t k = 0; k < sizeof(push_types) / sizeof(push_types[0]); k++)
                if (s->token_types[i] && strcmp(s->token_types[i], push_types[k]) == 0)
                    mask |= 1u << k;
        ttl = PUSH_TTL_MS;
    } else {
        count_error(GW_BE_PUSH, st->code);
    }
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    cache_finish(&b->push, ttl, 0, mask);
}

static void push_refresh(gw_backend_t *b)
{
    Tigress__Push__V1__SupportedRequest req = TIGRESS__PUSH__V1__SUPPORTED_REQUEST__INIT;
    cm_rpc_call_opts_t opts = {.timeout_ms = b->cfg.timeout_ms > 0 ? b->cfg.timeout_ms : 1};
    if (!b->ch[GW_BE_PUSH] ||
        cm_rpc_call_async(b->async, b->ch[GW_BE_PUSH], "/tigress.push.v1.PushDispatch/Supported",
                          &req.base, &tigress__push__v1__supported_response__descriptor, &opts,
                          push_done, b) != 0)
        cache_finish(&b->push, PUSH_FAIL_TTL_MS, 0, 0);
}

static int mask_has(unsigned mask, const char *type)
{
    if (!type)
        return mask != 0;
    for (size_t k = 0; k < sizeof(push_types) / sizeof(push_types[0]); k++)
        if (strcmp(type, push_types[k]) == 0)
            return (mask >> k) & 1u;
    return 0;
}

int gw_backend_push_supported(gw_backend_t *b, const char *token_type, gw_loop_t *loop,
                              void (*fn)(void *), void *arg)
{
    if (!b->ch[GW_BE_PUSH])
        return 0;
    int start;
    pthread_mutex_lock(&b->push.mu);
    int fresh = cache_check(&b->push, loop, fn, arg, &start);
    unsigned mask = b->push.push_mask;
    pthread_mutex_unlock(&b->push.mu);
    if (fresh)
        return mask_has(mask, token_type);
    if (start)
        push_refresh(b);
    return -1;
}

int gw_backend_push_supported_now(gw_backend_t *b, const char *token_type)
{
    pthread_mutex_lock(&b->push.mu);
    unsigned mask = b->push.push_mask;
    pthread_mutex_unlock(&b->push.mu);
    return mask_has(mask, token_type);
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static void channels_free(gw_backend_t *b)
{
    /* store[0] is ch[GW_BE_STORE] without shards: free it once, below */
    for (size_t i = 0; i < b->nstore; i++)
        if (b->store[i] != b->ch[GW_BE_STORE])
            cm_rpc_channel_del(b->store[i]);
    for (int i = 0; i < GW_BE_COUNT; i++) {
        cm_rpc_channel_del(b->ch[i]);
        b->ch[i] = NULL;
    }
    free(b->store);
    b->store = NULL;
    b->nstore = 0;
    cm_shards_free(b->shards);
    b->shards = NULL;
}

/* Copies the configuration's strings into |b|. */
static void config_copy(gw_backend_t *b, const gw_backend_config_t *cfg)
{
    b->cfg = *cfg;
    const char **fields[5] = {&b->cfg.store_target, &b->cfg.store_shards, &b->cfg.push_target,
                              &b->cfg.attest_target, &b->cfg.lb_policy};
    for (int i = 0; i < 5; i++) {
        if (!*fields[i])
            continue;
        b->strs[i] = cm_xstrdup(*fields[i]);
        *fields[i] = b->strs[i];
    }
}

/* Opens the store's channels: one per shard, or the single target. 0 or -1. */
static int store_open(gw_backend_t *b, const cm_rpc_channel_opts_t *copts)
{
    if (!b->cfg.store_shards || !*b->cfg.store_shards) {
        b->store = cm_xcalloc(1, sizeof(*b->store));
        b->store[0] = b->ch[GW_BE_STORE];
        b->nstore = 1;
        return 0;
    }
    if (cm_shards_parse(b->cfg.store_shards, &b->shards) != 0) {
        CM_ERROR(NULL, "gateway: --store-shards must be a comma-separated list of distinct "
                       "host:port addresses");
        return -1;
    }
    size_t n = cm_shards_count(b->shards);
    b->store = cm_xcalloc(n, sizeof(*b->store));
    for (; b->nstore < n; b->nstore++) {
        const char *addr = cm_shards_addr(b->shards, b->nstore);
        if (cm_rpc_channel_new(addr, copts, &b->store[b->nstore]) != 0) {
            CM_ERROR(NULL, "gateway: cannot create the store channel to %s", addr);
            return -1;
        }
    }
    return 0;
}

int gw_backend_new(const gw_backend_config_t *cfg, gw_backend_t **out)
{
    int sharded = cfg && cfg->store_shards && *cfg->store_shards;
    if (!cfg || (!sharded && (!cfg->store_target || !*cfg->store_target)))
        return -1;
    gw_backend_t *b = cm_xcalloc(1, sizeof(*b));
    pthread_mutex_init(&b->ready.mu, NULL);
    pthread_mutex_init(&b->push.mu, NULL);
    config_copy(b, cfg);
    /* minimal_stack: the client filters beyond deadlines cost about a fifth of the gateway's
     * CPU per request (gateway/PERF.md); tests/gateway-api checks that a hung store still gives
     * 504. */
    cm_rpc_channel_opts_t copts = {.lb_policy =
                                       cfg->lb_policy && *cfg->lb_policy ? b->cfg.lb_policy : NULL,
                                   .minimal_stack = 1};
    const char *targets[GW_BE_COUNT] = {sharded ? NULL : b->cfg.store_target, b->cfg.push_target,
                                        b->cfg.attest_target};
    for (int i = 0; i < GW_BE_COUNT; i++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "backend=\"%s\"", be_names[i]);
        b->latency[i] = cm_metrics_histogram(
            "gateway_backend_call_seconds", "Latency of backend calls by backend", labels, NULL, 0);
        if (!targets[i] || !*targets[i])
            continue;
        if (cm_rpc_channel_new(targets[i], &copts, &b->ch[i]) != 0) {
            CM_ERROR(NULL, "gateway: cannot create the %s channel to %s", be_names[i], targets[i]);
            goto fail;
        }
    }
    if (store_open(b, &copts) != 0)
        goto fail;
    if (cm_rpc_async_new(&b->async) != 0) {
        CM_ERROR(NULL, "gateway: cannot start the backend poller");
        goto fail;
    }
    if (b->ch[GW_BE_PUSH]) {
        /* warm the cache so the first Create already knows the providers */
        int start;
        pthread_mutex_lock(&b->push.mu);
        cache_check(&b->push, NULL, NULL, NULL, &start);
        pthread_mutex_unlock(&b->push.mu);
        if (start)
            push_refresh(b);
    }
    *out = b;
    return 0;
fail:
    gw_backend_free(b);
    return -1;
}

static void cache_clear(cache_t *c)
{
    pthread_mutex_lock(&c->mu);
    waiter_t *w = c->waiters;
    c->waiters = NULL;
    c->inflight = 0;
    c->fresh_until_ms = 0;
    pthread_mutex_unlock(&c->mu);
    while (w) {
        waiter_t *next = w->next;
        free(w);
        w = next;
    }
}

void gw_backend_free(gw_backend_t *b)
{
    if (!b)
        return;
    /* in-flight callbacks run here with CANCELLED and still post to their loops */
    cm_rpc_async_del(b->async);
    b->async = NULL;
    channels_free(b);
    cache_clear(&b->ready);
    cache_clear(&b->push);
    pthread_mutex_destroy(&b->ready.mu);
    pthread_mutex_destroy(&b->push.mu);
    for (int i = 0; i < 5; i++)
        free(b->strs[i]);
    free(b);
}
