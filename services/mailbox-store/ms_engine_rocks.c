#include "ms_engine_rocks.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cm_alloc.h"
#include "cm_time.h"
#include "cm_log.h"
#include "cm_rocksdb.h"
#include "ms_keys.h"
#include "ms_record.h"

/* Record values: this byte, the expiry, the blob. Values written before the engine boundary are
 * a bare version-1 mailbox record (first byte 1) and are still read. */
#define REC_FORMAT 0x52 /* 'R' */
#define REC_HEAD (1 + 8)
#define OUT_HEAD (1 + MS_ID_LEN)
#define RESCAN_MS 1000

typedef struct {
    ms_engine_t base;              /* first: the instance callers hold */
    rocksdb_t *db;                 /* owned */
    rocksdb_options_t *opts;       /* owned */
    rocksdb_writeoptions_t *wo;    /* owned; requests: sync per config */
    rocksdb_writeoptions_t *wo_bg; /* owned; sweeper/outbox acks: never sync (redone if lost) */
    rocksdb_readoptions_t *ro;     /* owned */
    cm_rocksdb_fence_t fence;
    pthread_mutex_t stripes[MS_ROCKS_STRIPES];
    _Atomic uint64_t next_seq;
    _Atomic int64_t outbox_depth;
    /* The forwarder's position: entries below |cursor| were acknowledged (see outbox_claim). */
    pthread_mutex_t cursor_mu;
    uint64_t cursor;
    int64_t last_rescan_ms;
} rk_t;

struct ms_txn {
    rk_t *e;
    const char *id;
    rocksdb_writebatch_t *wb; /* owned by the run */
    int added, removed;       /* outbox entries queued / queued for deletion */
};

static rk_t *rk(ms_engine_t *e)
{
    return (rk_t *)e;
}

static pthread_mutex_t *stripe(rk_t *e, const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < MS_ID_LEN && id[i]; i++)
        h = (h ^ (uint8_t)id[i]) * 16777619u;
    return &e->stripes[h % MS_ROCKS_STRIPES];
}

static uint8_t *dup_bytes(const void *p, size_t n)
{
    uint8_t *b = cm_xmalloc(n);
    if (n)
        memcpy(b, p, n);
    return b;
}

/* Ends a scan: frees the iterator and its read options, and reports an error the iteration
 * hit (an iterator that stops early on an I/O error looks like the end of the range). */
static int iter_close(rocksdb_iterator_t *it, rocksdb_readoptions_t *ro)
{
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (!err)
        return 0;
    CM_ERROR(NULL, "rocksdb iterate: %s", err);
    free(err);
    return -1;
}

/* The raw value of |key|: MS_OK (*v malloc'd), MS_ERR_NOT_FOUND or MS_ERR_UNAVAILABLE. */
static ms_err_t get_raw(rk_t *e, const char *key, size_t kl, char **v, size_t *vl)
{
    char *err = NULL;
    *v = rocksdb_get(e->db, e->ro, key, kl, vl, &err);
    if (err) {
        CM_ERROR(NULL, "rocksdb get: %s", err);
        free(err);
        return MS_ERR_UNAVAILABLE;
    }
    return *v ? MS_OK : MS_ERR_NOT_FOUND;
}

/* Splits a record value into its expiry and blob (pointing into |v|). 0 or -1. */
static int rec_split(const char *v, size_t vl, int64_t *expires, const uint8_t **blob, size_t *len)
{
    const uint8_t *u = (const uint8_t *)v;
    if (vl >= REC_HEAD && u[0] == REC_FORMAT) {
        *expires = (int64_t)ms_be64_get(u + 1);
        *blob = u + REC_HEAD;
        *len = vl - REC_HEAD;
        return 0;
    }
    ms_record_t r; /* written before the engine boundary: the bare record */
    if (ms_record_decode(u, vl, &r) != 0)
        return -1;
    *expires = r.expires_ms;
    *blob = u;
    *len = vl;
    return 0;
}

/* The record of |id|: MS_OK with its expiry (and the blob copied when |blob| is set). */
static ms_err_t load_record(rk_t *e, const char *id, int64_t *expires, uint8_t **blob, size_t *len)
{
    char key[MS_KEY_MAX], *v;
    size_t vl;
    ms_err_t rc = get_raw(e, key, ms_key_record(key, id), &v, &vl);
    if (rc != MS_OK)
        return rc;
    const uint8_t *b;
    size_t bl;
    if (rec_split(v, vl, expires, &b, &bl) != 0) {
        CM_ERROR(NULL, "unreadable mailbox record");
        free(v);
        return MS_ERR_CORRUPT;
    }
    if (blob) {
        *blob = dup_bytes(b, bl);
        *len = bl;
    }
    free(v);
    return MS_OK;
}

/* Queues deletes of every key of mailbox |id| (expiring at |expires|) into |wb|; *removed
 * counts outbox entries. */
static int wipe(rk_t *e, rocksdb_writebatch_t *wb, const char *id, int64_t expires, int *removed)
{
    char lo[MS_KEY_MAX], hi[MS_KEY_MAX], key[MS_KEY_MAX];
    size_t lol = ms_key_mailbox_prefix(lo, id), hil = ms_key_mailbox_end(hi, id);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, hil);
    rocksdb_iterator_t *it = rocksdb_create_iterator(e->db, ro);
    for (rocksdb_iter_seek(it, lo, lol); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        uint64_t seq;
        rocksdb_writebatch_delete(wb, k, kl);
        if (ms_key_parse_outref(k, kl, &seq) == 0) {
            rocksdb_writebatch_delete(wb, key, ms_key_outbox(key, seq));
            (*removed)++;
        }
    }
    if (iter_close(it, ro) != 0)
        return -1;
    rocksdb_writebatch_delete(wb, key, ms_key_expiry(key, expires, id));
    return 0;
}

/* ---- transactions ---- */

static ms_err_t rk_run(ms_engine_t *eng, const char *id, ms_txn_fn fn, void *arg)
{
    rk_t *e = rk(eng);
    pthread_mutex_t *mu = stripe(e, id);
    ms_err_t rc;
    pthread_mutex_lock(mu);
    for (int tries = 0;; tries++) {
        struct ms_txn t = {.e = e, .id = id, .wb = rocksdb_writebatch_create()};
        rc = fn(&t, arg);
        if (rc == MS_OK && rocksdb_writebatch_count(t.wb) > 0) {
            if (cm_rocksdb_write(&e->fence, e->wo, t.wb, "request") != 0)
                rc = MS_ERR_UNAVAILABLE;
            else
                atomic_fetch_add(&e->outbox_depth, (int64_t)t.added - t.removed);
        }
        rocksdb_writebatch_destroy(t.wb);
        /* Nothing here conflicts under the stripe lock; a callback that still says RETRY is
         * re-run like on any engine, within the same bound. */
        if (rc != MS_ERR_RETRY)
            break;
        if (tries + 1 >= MS_ENGINE_RUN_MAX_TRIES) {
            rc = MS_ERR_UNAVAILABLE;
            break;
        }
    }
    pthread_mutex_unlock(mu);
    return rc;
}

static ms_err_t rk_get_record(ms_txn_t *t, uint8_t **blob, size_t *len)
{
    int64_t expires;
    return load_record(t->e, t->id, &expires, blob, len);
}

static ms_err_t rk_get_idem(ms_txn_t *t, const uint8_t *hash, size_t hash_len, uint8_t **blob,
                            size_t *len)
{
    if (hash_len > MS_KEY_HASH_MAX)
        return MS_ERR_INTERNAL;
    char key[MS_KEY_MAX], *v;
    size_t vl;
    ms_err_t rc = get_raw(t->e, key, ms_key_idem(key, t->id, hash, hash_len), &v, &vl);
    if (rc != MS_OK)
        return rc;
    *blob = (uint8_t *)v;
    *len = vl;
    return MS_OK;
}

static ms_err_t rk_put_record(ms_txn_t *t, int64_t expires_ms, const uint8_t *blob, size_t len)
{
    char key[MS_KEY_MAX];
    uint8_t *v = cm_xmalloc(REC_HEAD + len);
    v[0] = REC_FORMAT;
    ms_be64_put(v + 1, (uint64_t)expires_ms);
    memcpy(v + REC_HEAD, blob, len);
    rocksdb_writebatch_put(t->wb, key, ms_key_record(key, t->id), (const char *)v, REC_HEAD + len);
    rocksdb_writebatch_put(t->wb, key, ms_key_expiry(key, expires_ms, t->id), "", 0);
    free(v);
    return MS_OK;
}

static ms_err_t rk_put_idem(ms_txn_t *t, const uint8_t *hash, size_t hash_len, const uint8_t *blob,
                            size_t len)
{
    if (hash_len > MS_KEY_HASH_MAX)
        return MS_ERR_INTERNAL;
    char key[MS_KEY_MAX];
    rocksdb_writebatch_put(t->wb, key, ms_key_idem(key, t->id, hash, hash_len), (const char *)blob,
                           len);
    return MS_OK;
}

static ms_err_t rk_delete_mailbox(ms_txn_t *t)
{
    int64_t expires;
    ms_err_t rc = load_record(t->e, t->id, &expires, NULL, NULL);
    if (rc == MS_ERR_NOT_FOUND)
        return MS_OK;
    if (rc != MS_OK)
        return rc;
    return wipe(t->e, t->wb, t->id, expires, &t->removed) == 0 ? MS_OK : MS_ERR_UNAVAILABLE;
}

static ms_err_t rk_add_outbox(ms_txn_t *t, ms_outbox_kind_t kind, const uint8_t *blob, size_t len)
{
    uint8_t *v = cm_xmalloc(OUT_HEAD + len);
    v[0] = (uint8_t)kind;
    memcpy(v + 1, t->id, MS_ID_LEN);
    memcpy(v + OUT_HEAD, blob, len);
    uint64_t seq = atomic_fetch_add(&t->e->next_seq, 1);
    char key[MS_KEY_MAX];
    rocksdb_writebatch_put(t->wb, key, ms_key_outbox(key, seq), (const char *)v, OUT_HEAD + len);
    /* Notifications die with their mailbox: the back-reference lets wipe() find them. */
    if (kind == MS_OUTBOX_NOTIFY)
        rocksdb_writebatch_put(t->wb, key, ms_key_outref(key, t->id, seq), "", 0);
    free(v);
    t->added++;
    return MS_OK;
}

static ms_err_t rk_read_record(ms_engine_t *eng, const char *id, uint8_t **blob, size_t *len)
{
    int64_t expires;
    return load_record(rk(eng), id, &expires, blob, len);
}

/* ---- sweeper ---- */

typedef struct {
    int64_t exp;
    char id[MS_ID_LEN + 1];
} due_t;

/* Deletes one due mailbox (or its stale index key) under its stripe lock. 1 deleted, 0 not,
 * -1 error. */
static int sweep_one(rk_t *e, const due_t *d)
{
    pthread_mutex_t *mu = stripe(e, d->id);
    pthread_mutex_lock(mu);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int64_t expires = 0;
    int removed = 0, rc = 0;
    char key[MS_KEY_MAX];
    ms_err_t found = load_record(e, d->id, &expires, NULL, NULL);
    if (found != MS_OK && found != MS_ERR_NOT_FOUND) {
        rc = -1;
    } else if (found == MS_OK && expires == d->exp) {
        rc = wipe(e, wb, d->id, expires, &removed) == 0 ? 1 : -1;
    } else {
        /* The mailbox was deleted or re-created with another lifetime: stale index key. */
        rocksdb_writebatch_delete(wb, key, ms_key_expiry(key, d->exp, d->id));
    }
    if (rc >= 0 && cm_rocksdb_write(&e->fence, e->wo_bg, wb, "sweep") != 0)
        rc = -1;
    else if (rc == 1)
        atomic_fetch_sub(&e->outbox_depth, removed);
    rocksdb_writebatch_destroy(wb);
    pthread_mutex_unlock(mu);
    return rc;
}

static ms_err_t rk_sweep(ms_engine_t *eng, int64_t now, size_t batch, size_t *deleted, int *more)
{
    rk_t *e = rk(eng);
    *deleted = 0;
    *more = 0;
    if (batch == 0)
        return MS_OK;
    due_t *due = cm_xcalloc(batch, sizeof(*due));
    char lo[2] = {'x', '/'}, hi[MS_KEY_MAX];
    size_t hil = ms_key_expiry_upto(hi, now), n = 0;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, hil);
    rocksdb_iterator_t *it = rocksdb_create_iterator(e->db, ro);
    for (rocksdb_iter_seek(it, lo, 2); rocksdb_iter_valid(it) && n < batch; rocksdb_iter_next(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (ms_key_parse_expiry(k, kl, &due[n].exp, due[n].id) == 0)
            n++;
    }
    ms_err_t rc = iter_close(it, ro) != 0 ? MS_ERR_UNAVAILABLE : MS_OK;
    for (size_t i = 0; i < n && rc == MS_OK; i++) {
        int r = sweep_one(e, &due[i]);
        if (r < 0)
            rc = MS_ERR_UNAVAILABLE;
        else
            *deleted += (size_t)r;
    }
    free(due);
    *more = rc == MS_OK && n == batch;
    return rc;
}

/* ---- outbox ---- */

/* One outbox key/value into |o| (blob copied). 0, or -1 for a value of another shape. */
static int entry_from(const char *k, size_t kl, const char *v, size_t vl, ms_outbox_entry_t *o)
{
    memset(o, 0, sizeof(*o));
    if (ms_key_parse_outbox(k, kl, &o->seq) != 0 || vl < OUT_HEAD)
        return -1;
    o->kind = (ms_outbox_kind_t)(uint8_t)v[0];
    memcpy(o->mailbox_id, v + 1, MS_ID_LEN);
    o->mailbox_id[MS_ID_LEN] = '\0';
    o->len = vl - OUT_HEAD;
    o->blob = dup_bytes(v + OUT_HEAD, o->len);
    return 0;
}

static ms_err_t rk_outbox_claim(ms_engine_t *eng, size_t max, int64_t lease_ms,
                                ms_outbox_entry_t *out, size_t *n)
{
    rk_t *e = rk(eng);
    *n = 0;
    pthread_mutex_lock(&e->cursor_mu);
    uint64_t from = e->cursor;
    int64_t now = cm_time_mono_ms();
    if (now - e->last_rescan_ms >= RESCAN_MS) {
        from = 0;
        e->last_rescan_ms = now;
    }
    pthread_mutex_unlock(&e->cursor_mu);
    char lo[MS_KEY_MAX], hi[2] = {'o', '/' + 1};
    size_t lol = ms_key_outbox(lo, from);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, 2);
    rocksdb_iterator_t *it = rocksdb_create_iterator(e->db, ro);
    for (rocksdb_iter_seek(it, lo, lol); rocksdb_iter_valid(it) && *n < max;
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl), *v = rocksdb_iter_value(it, &vl);
        if (entry_from(k, kl, v, vl, &out[*n]) == 0)
            (*n)++;
    }
    if (iter_close(it, ro) != 0) {
        ms_outbox_entries_free(out, *n);
        *n = 0;
        return MS_ERR_UNAVAILABLE;
    }
    return MS_OK;
}

static ms_err_t rk_outbox_ack(ms_engine_t *eng, const ms_outbox_entry_t *en, size_t n)
{
    rk_t *e = rk(eng);
    ms_err_t rc = MS_OK;
    for (size_t i = 0; i < n; i++) {
        /* Under the mailbox lock so a concurrent Delete/sweep and this ack count each entry's
         * removal once. */
        pthread_mutex_t *mu = stripe(e, en[i].mailbox_id);
        pthread_mutex_lock(mu);
        char key[MS_KEY_MAX], *v;
        size_t kl = ms_key_outbox(key, en[i].seq), vl;
        ms_err_t got = get_raw(e, key, kl, &v, &vl);
        if (got == MS_OK) {
            rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
            rocksdb_writebatch_delete(wb, key, kl);
            rocksdb_writebatch_delete(wb, key, ms_key_outref(key, en[i].mailbox_id, en[i].seq));
            if (cm_rocksdb_write(&e->fence, e->wo_bg, wb, "outbox ack") == 0)
                atomic_fetch_sub(&e->outbox_depth, 1);
            else
                rc = MS_ERR_UNAVAILABLE;
            rocksdb_writebatch_destroy(wb);
            free(v);
        } else if (got != MS_ERR_NOT_FOUND) {
            rc = got;
        }
        pthread_mutex_unlock(mu);
    }
    if (n > 0 && rc == MS_OK) {
        pthread_mutex_lock(&e->cursor_mu);
        if (en[n - 1].seq + 1 > e->cursor)
            e->cursor = en[n - 1].seq + 1;
        pthread_mutex_unlock(&e->cursor_mu);
    }
    return rc;
}

static ms_err_t rk_outbox_release(ms_engine_t *eng, const ms_outbox_entry_t *en, size_t n)
{
    return MS_OK; /* the next claim hands out every unacknowledged entry again */
}

static ms_err_t rk_outbox_depth(ms_engine_t *eng, int64_t *depth)
{
    *depth = atomic_load(&rk(eng)->outbox_depth);
    return MS_OK;
}

static int rk_healthy(ms_engine_t *eng)
{
    return cm_rocksdb_healthy(&rk(eng)->fence);
}

static void rk_close(ms_engine_t *eng)
{
    rk_t *e = rk(eng);
    rocksdb_close(e->db);
    rocksdb_options_destroy(e->opts);
    rocksdb_writeoptions_destroy(e->wo);
    rocksdb_writeoptions_destroy(e->wo_bg);
    rocksdb_readoptions_destroy(e->ro);
    for (int i = 0; i < MS_ROCKS_STRIPES; i++)
        pthread_mutex_destroy(&e->stripes[i]);
    pthread_mutex_destroy(&e->cursor_mu);
    free(e);
}

static const ms_engine_ops_t RK_OPS = {
    .name = "rocksdb",
    .run = rk_run,
    .get_record = rk_get_record,
    .get_idem = rk_get_idem,
    .put_record = rk_put_record,
    .put_idem = rk_put_idem,
    .delete_mailbox = rk_delete_mailbox,
    .add_outbox = rk_add_outbox,
    .read_record = rk_read_record,
    .sweep = rk_sweep,
    .outbox_claim = rk_outbox_claim,
    .outbox_ack = rk_outbox_ack,
    .outbox_release = rk_outbox_release,
    .outbox_depth = rk_outbox_depth,
    .healthy = rk_healthy,
    .close = rk_close,
};

rocksdb_t *ms_engine_rocks_db(ms_engine_t *e)
{
    return rk(e)->db;
}

static rocksdb_options_t *db_options(void)
{
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_increase_parallelism(o, 2);
    /* RocksDB's own LOG file sits on the data volume. In 7.8 its writer aborts the process on
     * an assertion when it writes again after a failed write (a full disk), so a disk-full
     * would crash the store from the error handler's own log line. Only fatal lines are kept
     * (the engine logs its storage errors itself), and few old LOG files. */
    rocksdb_options_set_info_log_level(o, 4 /* FATAL_LEVEL */);
    rocksdb_options_set_keep_log_file_num(o, 4);
    /* Create and the idempotency check look up keys that mostly do not exist: a Bloom filter
     * answers those without reading data blocks. The table options are copied into |o|. */
    rocksdb_block_based_table_options_t *bbo = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_filter_policy(bbo, rocksdb_filterpolicy_create_bloom(10));
    rocksdb_options_set_block_based_table_factory(o, bbo);
    rocksdb_block_based_options_destroy(bbo);
    return o;
}

/* Continues the outbox sequence after the last entry and counts what is queued. */
static void outbox_scan(rk_t *e)
{
    char lo[2] = {'o', '/'}, hi[2] = {'o', '/' + 1};
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, 2);
    rocksdb_iterator_t *it = rocksdb_create_iterator(e->db, ro);
    uint64_t next = 0;
    int64_t depth = 0;
    for (rocksdb_iter_seek(it, lo, 2); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        uint64_t seq;
        if (ms_key_parse_outbox(k, kl, &seq) == 0) {
            depth++;
            if (seq + 1 > next)
                next = seq + 1;
        }
    }
    iter_close(it, ro);
    atomic_store(&e->next_seq, next);
    atomic_store(&e->outbox_depth, depth);
}

ms_err_t ms_engine_rocks_open(const ms_rocks_opts_t *o, ms_engine_t **out, char *errbuf,
                              size_t errcap)
{
    rk_t *e = cm_xcalloc(1, sizeof(*e));
    e->base.ops = &RK_OPS;
    e->opts = db_options();
    char *err = NULL;
    e->db = rocksdb_open(e->opts, o->path, &err);
    if (err) {
        snprintf(errbuf, errcap, "rocksdb open %s: %s", o->path, err);
        free(err);
        rocksdb_options_destroy(e->opts);
        free(e);
        return MS_ERR_UNAVAILABLE;
    }
    e->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(e->wo, o->sync ? 1 : 0);
    e->wo_bg = rocksdb_writeoptions_create();
    e->ro = rocksdb_readoptions_create();
    for (int i = 0; i < MS_ROCKS_STRIPES; i++)
        pthread_mutex_init(&e->stripes[i], NULL);
    pthread_mutex_init(&e->cursor_mu, NULL);
    e->last_rescan_ms = cm_time_mono_ms();
    static const char probe[] = "h/probe"; /* outside every key range in use */
    cm_rocksdb_fence_init(&e->fence, e->db, probe, sizeof(probe) - 1);
    outbox_scan(e);
    *out = &e->base;
    return MS_OK;
}
