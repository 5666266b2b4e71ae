#include "ms_store.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rocksdb/c.h>

#include "cm_log.h"
#include "cm_uuid.h"
#include "ms_claim.h"
#include "ms_record.h"
#include "tigress/push/v1/push_dispatch.pb-c.h"

/* Method tags stored in idempotency records. */
enum {
    M_CREATE = 1,
    M_READ_SECURE = 3,
    M_UPDATE = 4,
    M_DELETE = 5,
    M_RELINQUISH = 6,
};

struct ms_store {
    rocksdb_t *db;                 /* owned */
    rocksdb_options_t *opts;       /* owned */
    rocksdb_writeoptions_t *wo;    /* owned; requests: sync per config */
    rocksdb_writeoptions_t *wo_bg; /* owned; sweeper/outbox acks: never sync (redone if lost) */
    rocksdb_readoptions_t *ro;     /* owned */
    pthread_mutex_t stripes[MS_STORE_STRIPES];
    uint8_t *claim_key; /* owned, cleansed on close */
    size_t claim_key_len;
    int64_t max_ttl_s;
    int64_t (*now_ms)(void *);
    void *now_arg;
    void (*outbox_hook)(void *);
    void *outbox_arg;
    _Atomic uint64_t next_seq;
    _Atomic int64_t outbox_depth;
    /* Set by the first failed write and never cleared: from then on no write reaches RocksDB.
     * RocksDB 7.8 may append to a WAL whose last write failed, and Debian's build then aborts
     * on an assertion (fixed upstream in 9.x, rocksdb#12448); refusing further writes turns a
     * crash into NOT_SERVING + UNAVAILABLE until a restart replays the WAL. */
    _Atomic int write_failed;
    /* "rocksdb.background-errors" only counts up: the count last seen healthy tells a new
     * background error (flush, compaction) from an old, recovered one. */
    _Atomic uint64_t bg_errors_seen;
};

#define S(x) ((x) ? (x) : "")

static int64_t realtime_ms(void *arg)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ms(ms_store_t *st)
{
    return st->now_ms(st->now_arg);
}

static pthread_mutex_t *stripe(ms_store_t *st, const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < MS_ID_LEN; i++)
        h = (h ^ (uint8_t)id[i]) * 16777619u;
    return &st->stripes[h % MS_STORE_STRIPES];
}

static int fail(ms_result_t *res, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(ms_result_t *res, grpc_status_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->msg, sizeof(res->msg), fmt, ap);
    va_end(ap);
    res->code = code;
    free(res->resp);
    res->resp = NULL;
    res->resp_len = 0;
    return -1;
}

void ms_result_free(ms_result_t *r)
{
    free(r->resp);
    r->resp = NULL;
    r->resp_len = 0;
}

static void pack(const ProtobufCMessage *m, uint8_t **out, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        abort();
    protobuf_c_message_pack(m, buf);
    *out = buf;
    *len = n;
}

/* ---- input checks ---- */

static int check_id(const char *in, char id[MS_ID_LEN + 1], ms_result_t *res)
{
    in = S(in);
    if (!cm_uuid_is_v4(in, strlen(in)))
        return fail(res, GRPC_STATUS_INVALID_ARGUMENT, "mailbox_id must be a UUID v4");
    cm_uuid_canonical(in, id);
    return 0;
}

static int check_claim(ms_store_t *st, const char *claim, uint8_t h[MS_HASH_LEN], ms_result_t *res)
{
    size_t n = strlen(S(claim));
    if (n == 0)
        return fail(res, GRPC_STATUS_INVALID_ARGUMENT, "device_claim is required");
    if (n > MS_MAX_CLAIM_LEN)
        return fail(res, GRPC_STATUS_INVALID_ARGUMENT, "device_claim is too long");
    if (ms_claim_hash(st->claim_key, st->claim_key_len, claim, n, h) != 0)
        return fail(res, GRPC_STATUS_INTERNAL, "claim hashing failed");
    return 0;
}

static int check_corr(const char *corr, ms_result_t *res)
{
    if (strlen(S(corr)) > MS_MAX_CORR_LEN)
        return fail(res, GRPC_STATUS_INVALID_ARGUMENT, "correlation_id is too long");
    return 0;
}

/* ---- storage helpers ---- */

/* 1 found (|*raw| malloc'd, |rec| points into it), 0 absent, -1 error. */
static int load(ms_store_t *st, const char *id, char **raw, ms_record_t *rec)
{
    char key[MS_KEY_MAX], *err = NULL;
    size_t klen = ms_key_record(key, id), vlen = 0;
    *raw = rocksdb_get(st->db, st->ro, key, klen, &vlen, &err);
    if (err) {
        CM_ERROR(NULL, "rocksdb get: %s", err);
        rocksdb_free(err);
        return -1;
    }
    if (!*raw)
        return 0;
    if (ms_record_decode((const uint8_t *)*raw, vlen, rec) != 0) {
        CM_ERROR(NULL, "corrupt mailbox record");
        rocksdb_free(*raw);
        *raw = NULL;
        return -1;
    }
    return 1;
}

static int commit(ms_store_t *st, rocksdb_writebatch_t *wb, int background, ms_result_t *res)
{
    char *err = NULL;
    if (atomic_load(&st->write_failed)) {
        if (res)
            return fail(res, GRPC_STATUS_UNAVAILABLE,
                        "storage failed a write earlier; refusing writes until restarted");
        return -1;
    }
    rocksdb_write(st->db, background ? st->wo_bg : st->wo, wb, &err);
    if (err) {
        CM_ERROR(NULL, "rocksdb write: %s", err);
        rocksdb_free(err);
        atomic_store(&st->write_failed, 1);
        if (res)
            return fail(res, GRPC_STATUS_UNAVAILABLE, "storage write failed");
        return -1;
    }
    return 0;
}

/* Serves a duplicate: 1 when (claim, method, corr) matches the stored record, 0 if not, -1 on
 * error. */
static int idem_check(ms_store_t *st, const char *id, const uint8_t h[MS_HASH_LEN], uint8_t method,
                      const char *corr, ms_result_t *res)
{
    size_t cl = strlen(S(corr));
    if (cl == 0)
        return 0;
    char key[MS_KEY_MAX], *err = NULL;
    size_t klen = ms_key_idem(key, id, h), vlen = 0;
    char *v = rocksdb_get(st->db, st->ro, key, klen, &vlen, &err);
    if (err) {
        CM_ERROR(NULL, "rocksdb get: %s", err);
        rocksdb_free(err);
        return fail(res, GRPC_STATUS_UNAVAILABLE, "storage read failed");
    }
    if (!v)
        return 0;
    uint8_t m;
    ms_blob_t c, r;
    int dup = 0;
    if (ms_idem_decode((const uint8_t *)v, vlen, &m, &c, &r) == 0 && m == method && c.n == cl &&
        memcmp(c.p, corr, cl) == 0) {
        res->resp = malloc(r.n ? r.n : 1);
        if (!res->resp)
            abort();
        memcpy(res->resp, r.p, r.n);
        res->resp_len = r.n;
        res->code = GRPC_STATUS_OK;
        dup = 1;
    }
    rocksdb_free(v);
    return dup;
}

/* Stores the idempotency record: |dup_resp| is the response already marked duplicate. */
static void idem_put(rocksdb_writebatch_t *wb, const char *id, const uint8_t h[MS_HASH_LEN],
                     uint8_t method, const char *corr, const ProtobufCMessage *dup_resp)
{
    if (!*S(corr))
        return;
    uint8_t *r, *v;
    size_t rl, vl;
    char key[MS_KEY_MAX];
    pack(dup_resp, &r, &rl);
    ms_idem_encode(method, corr, r, rl, &v, &vl); /* corr length checked on entry */
    rocksdb_writebatch_put(wb, key, ms_key_idem(key, id, h), (const char *)v, vl);
    free(r);
    free(v);
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
    rocksdb_free(err);
    return -1;
}

/* Queues deletes of every key of mailbox |id| into |wb|; *removed counts outbox entries. */
static int wipe(ms_store_t *st, rocksdb_writebatch_t *wb, const char *id, int64_t expires_ms,
                int *removed)
{
    char lo[MS_KEY_MAX], hi[MS_KEY_MAX], key[MS_KEY_MAX];
    size_t lol = ms_key_mailbox_prefix(lo, id), hil = ms_key_mailbox_end(hi, id);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, hil);
    rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, ro);
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
    rocksdb_writebatch_delete(wb, key, ms_key_expiry(key, expires_ms, id));
    return 0;
}

/* Queues an outbox entry (and, for notifications, its back-reference under the mailbox). */
static void outbox_put(ms_store_t *st, rocksdb_writebatch_t *wb, ms_outbox_kind_t kind,
                       const char *id, const ms_blob_t *tok_type, const ms_blob_t *tok_data,
                       int64_t expires_ms, int64_t now)
{
    Tigress__Push__V1__Notification n = TIGRESS__PUSH__V1__NOTIFICATION__INIT;
    char nid[CM_UUID_STRLEN + 1], ttype[256] = "", *tdata = NULL, mid[MS_ID_LEN + 1];
    if (cm_uuid_v4(nid) != 0)
        snprintf(nid, sizeof(nid), "%020llu", (unsigned long long)atomic_load(&st->next_seq));
    memcpy(mid, id, MS_ID_LEN + 1);
    n.notification_id = nid;
    n.mailbox_id = mid;
    n.mailbox_expires_at_ms = expires_ms;
    n.created_at_ms = now;
    if (kind == MS_OUTBOX_NOTIFY) {
        snprintf(ttype, sizeof(ttype), "%.*s", (int)tok_type->n, (const char *)tok_type->p);
        tdata = strndup((const char *)tok_data->p, tok_data->n);
        if (!tdata)
            abort();
        n.token_type = ttype;
        n.token_data = tdata;
    }
    size_t pl = protobuf_c_message_get_packed_size(&n.base);
    uint8_t *v = malloc(pl + 1);
    if (!v)
        abort();
    v[0] = (uint8_t)kind;
    protobuf_c_message_pack(&n.base, v + 1);
    uint64_t seq = atomic_fetch_add(&st->next_seq, 1);
    char key[MS_KEY_MAX];
    rocksdb_writebatch_put(wb, key, ms_key_outbox(key, seq), (const char *)v, pl + 1);
    if (kind == MS_OUTBOX_NOTIFY)
        rocksdb_writebatch_put(wb, key, ms_key_outref(key, id, seq), "", 0);
    free(v);
    free(tdata);
}

static void outbox_added(ms_store_t *st, int added, int removed)
{
    atomic_fetch_add(&st->outbox_depth, (int64_t)added - removed);
    if (added > 0 && st->outbox_hook)
        st->outbox_hook(st->outbox_arg);
}

static ms_blob_t blob_str(const char *s)
{
    ms_blob_t b = {(const uint8_t *)S(s), strlen(S(s))};
    return b;
}

/* NUL-terminated copies of record blobs for response messages. */
typedef struct {
    char *p[12];
    int n;
} strpool_t;

static char *dupz(strpool_t *sp, const ms_blob_t *b)
{
    char *s = strndup(b->n ? (const char *)b->p : "", b->n);
    if (!s)
        abort();
    sp->p[sp->n++] = s;
    return s;
}

static void strpool_free(strpool_t *sp)
{
    for (int i = 0; i < sp->n; i++)
        free(sp->p[i]);
    sp->n = 0;
}

static int is_live(ms_store_t *st, const ms_record_t *r)
{
    return r->expires_ms > now_ms(st);
}

/* ---- open / close ---- */

static uint64_t bg_errors(ms_store_t *st)
{
    char *v = rocksdb_property_value(st->db, "rocksdb.background-errors");
    uint64_t n = v ? strtoull(v, NULL, 10) : 0;
    free(v);
    return n;
}

int ms_store_open(const ms_store_opts_t *o, ms_store_t **out, char *errbuf, size_t errcap)
{
    ms_store_t *st = calloc(1, sizeof(*st));
    if (!st)
        abort();
    st->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(st->opts, 1);
    rocksdb_options_increase_parallelism(st->opts, 2);
    /* RocksDB's own LOG file sits on the data volume. In 7.8 its writer aborts the process on
     * an assertion when it writes again after a failed write (a full disk), so a disk-full
     * would crash the store from the error handler's own log line. Only fatal lines are kept
     * (the store logs its storage errors itself), and few old LOG files. */
    rocksdb_options_set_info_log_level(st->opts, 4 /* FATAL_LEVEL */);
    rocksdb_options_set_keep_log_file_num(st->opts, 4);
    /* Create and the idempotency check look up keys that mostly do not exist: a Bloom filter
     * answers those without reading data blocks. The table options are copied into |opts|. */
    rocksdb_block_based_table_options_t *bbo = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_filter_policy(bbo, rocksdb_filterpolicy_create_bloom(10));
    rocksdb_options_set_block_based_table_factory(st->opts, bbo);
    rocksdb_block_based_options_destroy(bbo);
    char *err = NULL;
    st->db = rocksdb_open(st->opts, o->path, &err);
    if (err) {
        snprintf(errbuf, errcap, "rocksdb open %s: %s", o->path, err);
        rocksdb_free(err);
        rocksdb_options_destroy(st->opts);
        free(st);
        return -1;
    }
    st->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(st->wo, o->sync ? 1 : 0);
    st->wo_bg = rocksdb_writeoptions_create();
    st->ro = rocksdb_readoptions_create();
    for (int i = 0; i < MS_STORE_STRIPES; i++)
        pthread_mutex_init(&st->stripes[i], NULL);
    st->claim_key = malloc(o->claim_key_len);
    if (!st->claim_key)
        abort();
    memcpy(st->claim_key, o->claim_key, o->claim_key_len);
    st->claim_key_len = o->claim_key_len;
    st->max_ttl_s = o->max_ttl_s;
    st->now_ms = o->now_ms ? o->now_ms : realtime_ms;
    st->now_arg = o->now_arg;
    st->outbox_hook = o->outbox_hook;
    st->outbox_arg = o->outbox_arg;

    /* Continue the outbox sequence after the last entry and count what is queued. */
    char lo[2] = {'o', '/'}, hi[2] = {'o', '/' + 1};
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, 2);
    rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, ro);
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
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    atomic_store(&st->next_seq, next);
    atomic_store(&st->outbox_depth, depth);
    atomic_store(&st->bg_errors_seen, bg_errors(st));
    *out = st;
    return 0;
}

void ms_store_close(ms_store_t *st)
{
    if (!st)
        return;
    rocksdb_close(st->db);
    rocksdb_options_destroy(st->opts);
    rocksdb_writeoptions_destroy(st->wo);
    rocksdb_writeoptions_destroy(st->wo_bg);
    rocksdb_readoptions_destroy(st->ro);
    for (int i = 0; i < MS_STORE_STRIPES; i++)
        pthread_mutex_destroy(&st->stripes[i]);
    memset(st->claim_key, 0, st->claim_key_len);
    free(st->claim_key);
    free(st);
}

void *ms_store_db(ms_store_t *st)
{
    return st->db;
}

int ms_store_healthy(ms_store_t *st)
{
    if (atomic_load(&st->write_failed))
        return 0;
    uint64_t bg = bg_errors(st);
    if (bg == atomic_load(&st->bg_errors_seen))
        return 1;
    /* A new background error: RocksDB refuses writes (before the WAL) until it recovered by
     * itself, if it can, so whether a synced write goes through is the answer. The key is
     * outside every key range in use. */
    static const char probe[] = "h/probe";
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(wo, 1);
    char *err = NULL;
    rocksdb_delete(st->db, wo, probe, sizeof(probe) - 1, &err);
    rocksdb_writeoptions_destroy(wo);
    if (err) {
        rocksdb_free(err);
        return 0;
    }
    atomic_store(&st->bg_errors_seen, bg);
    return 1;
}

int64_t ms_store_outbox_depth(ms_store_t *st)
{
    return atomic_load(&st->outbox_depth);
}

/* ---- operations ---- */

int ms_store_create(ms_store_t *st, const Tigress__Mailbox__V1__CreateRequest *req,
                    ms_result_t *res)
{
    memset(res, 0, sizeof(*res));
    char id[MS_ID_LEN + 1];
    uint8_t h[MS_HASH_LEN], rights;
    if (check_id(req->mailbox_id, id, res) || check_claim(st, req->device_claim, h, res) ||
        check_corr(req->correlation_id, res))
        return -1;
    if (req->ttl_seconds < 1 || req->ttl_seconds > st->max_ttl_s)
        return fail(res, GRPC_STATUS_INVALID_ARGUMENT, "ttl_seconds must be 1..%lld",
                    (long long)st->max_ttl_s);
    if (ms_rights_parse(S(req->access_rights), &rights) != 0)
        return fail(res, GRPC_STATUS_INVALID_ARGUMENT,
                    "access_rights must be a non-empty subset of \"RWD\"");
    if (!req->payload || !*S(req->payload->type))
        return fail(res, GRPC_STATUS_INVALID_ARGUMENT, "payload with a type is required");
    const Tigress__Mailbox__V1__NotificationToken *tok = req->notification_token;
    int has_tok = tok && *S(tok->type);
    if (has_tok && !*S(tok->token_data))
        return fail(res, GRPC_STATUS_INVALID_ARGUMENT, "notification token without data");

    pthread_mutex_t *mu = stripe(st, id);
    pthread_mutex_lock(mu);
    char *raw = NULL;
    ms_record_t old, rec;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int removed = 0, rc = -1;
    int found = load(st, id, &raw, &old);
    if (found < 0) {
        fail(res, GRPC_STATUS_UNAVAILABLE, "storage read failed");
        goto out;
    }
    if (found && is_live(st, &old)) {
        int dup = idem_check(st, id, h, M_CREATE, req->correlation_id, res);
        if (dup > 0)
            rc = 0;
        else if (dup == 0)
            fail(res, GRPC_STATUS_ALREADY_EXISTS, "mailbox already exists");
        goto out;
    }
    /* An expired mailbox not yet swept: its keys go in the same write as the new one. */
    if (found && wipe(st, wb, id, old.expires_ms, &removed) != 0) {
        fail(res, GRPC_STATUS_UNAVAILABLE, "storage read failed");
        goto out;
    }
    int64_t now = now_ms(st);
    memset(&rec, 0, sizeof(rec));
    rec.created_ms = now;
    rec.expires_ms = now + req->ttl_seconds * 1000;
    rec.rights = rights;
    memcpy(rec.creator, h, MS_HASH_LEN);
    if (has_tok) {
        rec.creator_tok_type = blob_str(tok->type);
        rec.creator_tok_data = blob_str(tok->token_data);
    }
    if (req->display) {
        rec.title = blob_str(req->display->title);
        rec.description = blob_str(req->display->description);
        rec.image_url = blob_str(req->display->image_url);
    }
    rec.payload_type = blob_str(req->payload->type);
    rec.payload_data.p = req->payload->data.data;
    rec.payload_data.n = req->payload->data.len;
    uint8_t *v;
    size_t vl;
    char key[MS_KEY_MAX];
    ms_record_encode(&rec, &v, &vl);
    rocksdb_writebatch_put(wb, key, ms_key_record(key, id), (const char *)v, vl);
    free(v);
    rocksdb_writebatch_put(wb, key, ms_key_expiry(key, rec.expires_ms, id), "", 0);

    Tigress__Mailbox__V1__CreateResponse resp = TIGRESS__MAILBOX__V1__CREATE_RESPONSE__INIT;
    resp.mailbox_id = id;
    resp.expires_at_ms = rec.expires_ms;
    resp.duplicate = 1;
    idem_put(wb, id, h, M_CREATE, req->correlation_id, &resp.base);
    resp.duplicate = 0;
    if (commit(st, wb, 0, res) != 0)
        goto out;
    outbox_added(st, 0, removed);
    pack(&resp.base, &res->resp, &res->resp_len);
    res->code = GRPC_STATUS_OK;
    rc = 0;
out:
    pthread_mutex_unlock(mu);
    rocksdb_writebatch_destroy(wb);
    rocksdb_free(raw);
    return rc;
}

int ms_store_read_display(ms_store_t *st, const Tigress__Mailbox__V1__ReadDisplayRequest *req,
                          ms_result_t *res)
{
    memset(res, 0, sizeof(*res));
    char id[MS_ID_LEN + 1], *raw = NULL;
    ms_record_t rec;
    if (check_id(req->mailbox_id, id, res))
        return -1;
    int found = load(st, id, &raw, &rec);
    if (found < 0)
        return fail(res, GRPC_STATUS_UNAVAILABLE, "storage read failed");
    if (!found || !is_live(st, &rec)) {
        rocksdb_free(raw);
        return fail(res, GRPC_STATUS_NOT_FOUND, "mailbox not found");
    }
    strpool_t sp = {.n = 0};
    Tigress__Mailbox__V1__DisplayInformation d = TIGRESS__MAILBOX__V1__DISPLAY_INFORMATION__INIT;
    d.title = dupz(&sp, &rec.title);
    d.description = dupz(&sp, &rec.description);
    d.image_url = dupz(&sp, &rec.image_url);
    Tigress__Mailbox__V1__ReadDisplayResponse resp =
        TIGRESS__MAILBOX__V1__READ_DISPLAY_RESPONSE__INIT;
    resp.display = &d;
    resp.expires_at_ms = rec.expires_ms;
    pack(&resp.base, &res->resp, &res->resp_len);
    strpool_free(&sp);
    rocksdb_free(raw);
    res->code = GRPC_STATUS_OK;
    return 0;
}

/* Common prologue of the claim-bearing operations on an existing mailbox: validates, locks,
 * loads, and serves duplicates. Returns 1 to proceed (lock held, |raw|/|rec| loaded), 0 when
 * |res| is final (lock released). */
typedef struct {
    char id[MS_ID_LEN + 1];
    uint8_t h[MS_HASH_LEN];
    pthread_mutex_t *mu;
    char *raw;
    ms_record_t rec;
    int is_creator, is_receiver;
} op_t;

static int op_begin(ms_store_t *st, op_t *op, const char *mailbox_id, const char *claim,
                    const char *corr, uint8_t method, ms_result_t *res)
{
    memset(res, 0, sizeof(*res));
    memset(op, 0, sizeof(*op));
    if (check_id(mailbox_id, op->id, res) || check_claim(st, claim, op->h, res) ||
        check_corr(corr, res))
        return 0;
    op->mu = stripe(st, op->id);
    pthread_mutex_lock(op->mu);
    int found = load(st, op->id, &op->raw, &op->rec);
    if (found < 0) {
        fail(res, GRPC_STATUS_UNAVAILABLE, "storage read failed");
        goto done;
    }
    if (!found || !is_live(st, &op->rec)) {
        fail(res, GRPC_STATUS_NOT_FOUND, "mailbox not found");
        goto done;
    }
    int dup = idem_check(st, op->id, op->h, method, corr, res);
    if (dup != 0)
        goto done;
    op->is_creator = ms_claim_equal(op->h, op->rec.creator);
    op->is_receiver = op->rec.has_receiver && ms_claim_equal(op->h, op->rec.receiver);
    return 1;
done:
    pthread_mutex_unlock(op->mu);
    rocksdb_free(op->raw);
    op->raw = NULL;
    return 0;
}

static int op_end(op_t *op, ms_result_t *res)
{
    pthread_mutex_unlock(op->mu);
    rocksdb_free(op->raw);
    op->raw = NULL;
    return res->code == GRPC_STATUS_OK ? 0 : -1;
}

static void put_record(rocksdb_writebatch_t *wb, const char *id, const ms_record_t *rec)
{
    uint8_t *v;
    size_t vl;
    char key[MS_KEY_MAX];
    ms_record_encode(rec, &v, &vl);
    rocksdb_writebatch_put(wb, key, ms_key_record(key, id), (const char *)v, vl);
    free(v);
}

int ms_store_read_secure(ms_store_t *st, const Tigress__Mailbox__V1__ReadSecureRequest *req,
                         ms_result_t *res)
{
    op_t op;
    if (!op_begin(st, &op, req->mailbox_id, req->device_claim, req->correlation_id, M_READ_SECURE,
                  res))
        return res->code == GRPC_STATUS_OK ? 0 : -1;
    int bind = 0;
    if (!op.is_creator && !op.is_receiver) {
        if (op.rec.has_receiver) {
            fail(res, GRPC_STATUS_PERMISSION_DENIED, "claim is not bound to this mailbox");
            return op_end(&op, res);
        }
        bind = 1;
    }
    if (!(op.rec.rights & MS_RIGHT_R)) {
        fail(res, GRPC_STATUS_PERMISSION_DENIED, "mailbox does not grant read access");
        return op_end(&op, res);
    }
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    if (bind) {
        op.rec.has_receiver = 1;
        memcpy(op.rec.receiver, op.h, MS_HASH_LEN);
        put_record(wb, op.id, &op.rec);
    }
    strpool_t sp = {.n = 0};
    Tigress__Mailbox__V1__DisplayInformation d = TIGRESS__MAILBOX__V1__DISPLAY_INFORMATION__INIT;
    d.title = dupz(&sp, &op.rec.title);
    d.description = dupz(&sp, &op.rec.description);
    d.image_url = dupz(&sp, &op.rec.image_url);
    Tigress__Mailbox__V1__Payload p = TIGRESS__MAILBOX__V1__PAYLOAD__INIT;
    p.type = dupz(&sp, &op.rec.payload_type);
    p.data.data = (uint8_t *)op.rec.payload_data.p;
    p.data.len = op.rec.payload_data.n;
    Tigress__Mailbox__V1__ReadSecureResponse resp =
        TIGRESS__MAILBOX__V1__READ_SECURE_RESPONSE__INIT;
    resp.display = &d;
    resp.payload = &p;
    resp.expires_at_ms = op.rec.expires_ms;
    resp.duplicate = 1;
    idem_put(wb, op.id, op.h, M_READ_SECURE, req->correlation_id, &resp.base);
    resp.duplicate = 0;
    if (rocksdb_writebatch_count(wb) == 0 || commit(st, wb, 0, res) == 0) {
        pack(&resp.base, &res->resp, &res->resp_len);
        res->code = GRPC_STATUS_OK;
    }
    strpool_free(&sp);
    rocksdb_writebatch_destroy(wb);
    return op_end(&op, res);
}

static int require(op_t *op, uint8_t right, const char *what, ms_result_t *res)
{
    if (!op->is_creator && !op->is_receiver)
        return fail(res, GRPC_STATUS_PERMISSION_DENIED, "claim is not bound to this mailbox");
    if (!(op->rec.rights & right))
        return fail(res, GRPC_STATUS_PERMISSION_DENIED, "mailbox does not grant %s access", what);
    return 0;
}

int ms_store_update(ms_store_t *st, const Tigress__Mailbox__V1__UpdateRequest *req,
                    ms_result_t *res)
{
    memset(res, 0, sizeof(*res));
    if (!req->payload || !*S(req->payload->type))
        return fail(res, GRPC_STATUS_INVALID_ARGUMENT, "payload with a type is required");
    const Tigress__Mailbox__V1__NotificationToken *tok = req->notification_token;
    int has_tok = tok && *S(tok->type);
    if (has_tok && !*S(tok->token_data))
        return fail(res, GRPC_STATUS_INVALID_ARGUMENT, "notification token without data");
    op_t op;
    if (!op_begin(st, &op, req->mailbox_id, req->device_claim, req->correlation_id, M_UPDATE, res))
        return res->code == GRPC_STATUS_OK ? 0 : -1;
    if (require(&op, MS_RIGHT_W, "write", res) != 0)
        return op_end(&op, res);
    ms_record_t *r = &op.rec;
    r->payload_type = blob_str(req->payload->type);
    r->payload_data.p = req->payload->data.data;
    r->payload_data.n = req->payload->data.len;
    if (has_tok && op.is_creator) {
        r->creator_tok_type = blob_str(tok->type);
        r->creator_tok_data = blob_str(tok->token_data);
    } else if (has_tok) {
        r->receiver_tok_type = blob_str(tok->type);
        r->receiver_tok_data = blob_str(tok->token_data);
    }
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    put_record(wb, op.id, r);
    /* The other party learns of the update through its own token, in the same atomic write. */
    const ms_blob_t *ot = op.is_creator ? &r->receiver_tok_type : &r->creator_tok_type;
    const ms_blob_t *od = op.is_creator ? &r->receiver_tok_data : &r->creator_tok_data;
    int other_bound = op.is_creator ? r->has_receiver : 1;
    int added = 0;
    if (other_bound && ot->n > 0 && od->n > 0) {
        outbox_put(st, wb, MS_OUTBOX_NOTIFY, op.id, ot, od, r->expires_ms, now_ms(st));
        added = 1;
    }
    Tigress__Mailbox__V1__UpdateResponse resp = TIGRESS__MAILBOX__V1__UPDATE_RESPONSE__INIT;
    resp.duplicate = 1;
    idem_put(wb, op.id, op.h, M_UPDATE, req->correlation_id, &resp.base);
    resp.duplicate = 0;
    if (commit(st, wb, 0, res) == 0) {
        pack(&resp.base, &res->resp, &res->resp_len);
        res->code = GRPC_STATUS_OK;
    }
    rocksdb_writebatch_destroy(wb);
    int rc = op_end(&op, res);
    if (rc == 0)
        outbox_added(st, added, 0);
    return rc;
}

int ms_store_delete(ms_store_t *st, const Tigress__Mailbox__V1__DeleteRequest *req,
                    ms_result_t *res)
{
    op_t op;
    if (!op_begin(st, &op, req->mailbox_id, req->device_claim, req->correlation_id, M_DELETE, res))
        return res->code == GRPC_STATUS_OK ? 0 : -1;
    if (require(&op, MS_RIGHT_D, "delete", res) != 0)
        return op_end(&op, res);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int removed = 0;
    if (wipe(st, wb, op.id, op.rec.expires_ms, &removed) != 0) {
        fail(res, GRPC_STATUS_UNAVAILABLE, "storage read failed");
    } else {
        /* push-dispatch drops what it already queued for this mailbox. */
        outbox_put(st, wb, MS_OUTBOX_CANCEL, op.id, NULL, NULL, op.rec.expires_ms, now_ms(st));
        Tigress__Mailbox__V1__DeleteResponse resp = TIGRESS__MAILBOX__V1__DELETE_RESPONSE__INIT;
        if (commit(st, wb, 0, res) == 0) {
            pack(&resp.base, &res->resp, &res->resp_len);
            res->code = GRPC_STATUS_OK;
        }
    }
    rocksdb_writebatch_destroy(wb);
    int rc = op_end(&op, res);
    if (rc == 0)
        outbox_added(st, 1, removed);
    return rc;
}

int ms_store_relinquish(ms_store_t *st, const Tigress__Mailbox__V1__RelinquishRequest *req,
                        ms_result_t *res)
{
    op_t op;
    if (!op_begin(st, &op, req->mailbox_id, req->device_claim, req->correlation_id, M_RELINQUISH,
                  res))
        return res->code == GRPC_STATUS_OK ? 0 : -1;
    if (op.is_creator) {
        fail(res, GRPC_STATUS_FAILED_PRECONDITION, "the creator cannot relinquish its mailbox");
        return op_end(&op, res);
    }
    if (!op.is_receiver) {
        fail(res, GRPC_STATUS_PERMISSION_DENIED, "claim is not bound to this mailbox");
        return op_end(&op, res);
    }
    op.rec.has_receiver = 0;
    memset(op.rec.receiver, 0, MS_HASH_LEN);
    memset(&op.rec.receiver_tok_type, 0, sizeof(ms_blob_t));
    memset(&op.rec.receiver_tok_data, 0, sizeof(ms_blob_t));
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    put_record(wb, op.id, &op.rec);
    Tigress__Mailbox__V1__RelinquishResponse resp = TIGRESS__MAILBOX__V1__RELINQUISH_RESPONSE__INIT;
    resp.duplicate = 1;
    idem_put(wb, op.id, op.h, M_RELINQUISH, req->correlation_id, &resp.base);
    resp.duplicate = 0;
    if (commit(st, wb, 0, res) == 0) {
        pack(&resp.base, &res->resp, &res->resp_len);
        res->code = GRPC_STATUS_OK;
    }
    rocksdb_writebatch_destroy(wb);
    return op_end(&op, res);
}

/* ---- sweeper ---- */

typedef struct {
    int64_t exp;
    char id[MS_ID_LEN + 1];
} due_t;

int ms_store_sweep(ms_store_t *st, int64_t now, size_t batch, size_t *deleted)
{
    if (deleted)
        *deleted = 0;
    if (batch == 0)
        return 0;
    due_t *due = calloc(batch, sizeof(*due));
    if (!due)
        abort();
    char lo[2] = {'x', '/'}, hi[MS_KEY_MAX];
    size_t hil = ms_key_expiry_upto(hi, now), n = 0, gone = 0;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, hil);
    rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, ro);
    for (rocksdb_iter_seek(it, lo, 2); rocksdb_iter_valid(it) && n < batch; rocksdb_iter_next(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (ms_key_parse_expiry(k, kl, &due[n].exp, due[n].id) == 0)
            n++;
    }
    int rc = iter_close(it, ro) != 0 ? -1 : n == batch ? 1 : 0;
    for (size_t i = 0; i < n && rc >= 0; i++) {
        pthread_mutex_t *mu = stripe(st, due[i].id);
        pthread_mutex_lock(mu);
        char *raw = NULL, key[MS_KEY_MAX];
        ms_record_t rec;
        int removed = 0;
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        int found = load(st, due[i].id, &raw, &rec);
        if (found < 0) {
            rc = -1;
        } else if (found && rec.expires_ms == due[i].exp) {
            if (wipe(st, wb, due[i].id, rec.expires_ms, &removed) != 0)
                rc = -1;
        } else {
            /* The mailbox was deleted or re-created with another lifetime: stale index key. */
            rocksdb_writebatch_delete(wb, key, ms_key_expiry(key, due[i].exp, due[i].id));
        }
        if (rc >= 0 && commit(st, wb, 1, NULL) != 0)
            rc = -1;
        else if (rc >= 0 && found > 0 && rec.expires_ms == due[i].exp) {
            gone++;
            outbox_added(st, 0, removed);
        }
        rocksdb_writebatch_destroy(wb);
        rocksdb_free(raw);
        pthread_mutex_unlock(mu);
    }
    free(due);
    if (deleted)
        *deleted = gone;
    return rc;
}

/* ---- outbox ---- */

int ms_store_outbox_read(ms_store_t *st, uint64_t from_seq, size_t max, ms_outbox_entry_t *out,
                         size_t *n)
{
    *n = 0;
    char lo[MS_KEY_MAX], hi[2] = {'o', '/' + 1};
    size_t lol = ms_key_outbox(lo, from_seq);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, 2);
    rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, ro);
    for (rocksdb_iter_seek(it, lo, lol); rocksdb_iter_valid(it) && *n < max;
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        ms_outbox_entry_t *e = &out[*n];
        memset(e, 0, sizeof(*e));
        if (ms_key_parse_outbox(k, kl, &e->seq) != 0 || vl < 1)
            continue;
        e->kind = (ms_outbox_kind_t)(uint8_t)v[0];
        Tigress__Push__V1__Notification *m =
            tigress__push__v1__notification__unpack(NULL, vl - 1, (const uint8_t *)v + 1);
        if (m && strlen(S(m->mailbox_id)) == MS_ID_LEN)
            memcpy(e->mailbox_id, m->mailbox_id, MS_ID_LEN + 1);
        if (m)
            tigress__push__v1__notification__free_unpacked(m, NULL);
        e->len = vl - 1;
        e->value = malloc(e->len ? e->len : 1);
        if (!e->value)
            abort();
        memcpy(e->value, v + 1, e->len);
        (*n)++;
    }
    if (iter_close(it, ro) != 0) {
        ms_outbox_entries_free(out, *n);
        *n = 0;
        return -1;
    }
    return 0;
}

void ms_outbox_entries_free(ms_outbox_entry_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].value);
        e[i].value = NULL;
    }
}

int ms_store_outbox_ack(ms_store_t *st, const ms_outbox_entry_t *e, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        /* Under the mailbox lock so a concurrent Delete/sweep and this ack count each entry's
         * removal once. */
        int has_id = e[i].mailbox_id[0] != '\0';
        pthread_mutex_t *mu = has_id ? stripe(st, e[i].mailbox_id) : NULL;
        if (mu)
            pthread_mutex_lock(mu);
        char key[MS_KEY_MAX], *err = NULL;
        size_t kl = ms_key_outbox(key, e[i].seq), vl;
        char *v = rocksdb_get(st->db, st->ro, key, kl, &vl, &err);
        if (err) {
            rocksdb_free(err);
            rc = -1;
        } else if (v) {
            rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
            rocksdb_writebatch_delete(wb, key, kl);
            if (has_id)
                rocksdb_writebatch_delete(wb, key, ms_key_outref(key, e[i].mailbox_id, e[i].seq));
            if (commit(st, wb, 1, NULL) == 0)
                atomic_fetch_sub(&st->outbox_depth, 1);
            else
                rc = -1;
            rocksdb_writebatch_destroy(wb);
        }
        rocksdb_free(v);
        if (mu)
            pthread_mutex_unlock(mu);
    }
    return rc;
}
