#include "pd_queue.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <rocksdb/c.h>

#include "cm_alloc.h"
#include "cm_fs.h"
#include "cm_time.h"
#include "cm_log.h"
#include "cm_rocksdb.h"
#include "cm_seal.h"

struct pd_queue {
    rocksdb_t *db;                 /* owned */
    rocksdb_options_t *opts;       /* owned */
    rocksdb_writeoptions_t *wsync; /* owned; sync=true (Enqueue, CancelMailbox) */
    rocksdb_writeoptions_t *wfast; /* owned; sync=false (delivery bookkeeping) */
    rocksdb_readoptions_t *ropts;  /* owned */
    const cm_seal_ring_t *ring;    /* not owned; seals tokens at rest (outlives the queue) */
    uint32_t budget;
    /* Write fence and background-error probe: every write goes through qwrite (cm_rocksdb). */
    cm_rocksdb_fence_t fence;

    /* Serialises the decide-then-write of Enqueue and CancelMailbox (budget counts are a
     * read-modify-write). Taken before |lock| when both are needed. */
    pthread_mutex_t wlock;

    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t cond;  /* an entry arrived, or stop */
    pd_entry_t **heap;    /* owned array of owned entries; min-heap by next_ms */
    size_t nheap, capheap;
    pd_entry_t **flight; /* owned array of entries handed out (owned by the takers) */
    size_t nflight, capflight;
    int stopped;
};

int pd_id_valid(const char *s)
{
    size_t n = 0;
    if (!s)
        return 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
        if (n >= PD_ID_MAX)
            return 0;
    }
    return n > 0;
}

void pd_entry_free(pd_entry_t *e)
{
    if (!e)
        return;
    free(e->token);
    free(e);
}

/* ---- heap (caller holds q->lock) ---- */

static int before(const pd_entry_t *a, const pd_entry_t *b)
{
    if (a->next_ms != b->next_ms)
        return a->next_ms < b->next_ms;
    return a->created_ms < b->created_ms;
}

static void heap_up(pd_queue_t *q, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(q->heap[i], q->heap[p]))
            break;
        pd_entry_t *t = q->heap[i];
        q->heap[i] = q->heap[p];
        q->heap[p] = t;
        i = p;
    }
}

static void heap_down(pd_queue_t *q, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->nheap && before(q->heap[l], q->heap[m]))
            m = l;
        if (r < q->nheap && before(q->heap[r], q->heap[m]))
            m = r;
        if (m == i)
            break;
        pd_entry_t *t = q->heap[i];
        q->heap[i] = q->heap[m];
        q->heap[m] = t;
        i = m;
    }
}

static void heap_push(pd_queue_t *q, pd_entry_t *e)
{
    if (q->nheap == q->capheap) {
        q->capheap = q->capheap ? q->capheap * 2 : 64;
        q->heap = cm_xreallocarray(q->heap, q->capheap, sizeof(*q->heap));
    }
    q->heap[q->nheap++] = e;
    heap_up(q, q->nheap - 1);
}

static pd_entry_t *heap_pop(pd_queue_t *q)
{
    pd_entry_t *top = q->heap[0];
    q->heap[0] = q->heap[--q->nheap];
    if (q->nheap)
        heap_down(q, 0);
    return top;
}

/* ---- keys and values ---- */

static size_t qkey(char *buf, size_t cap, char kind, const char *mailbox, const char *id)
{
    int n = id ? snprintf(buf, cap, "%c/%s/%s", kind, mailbox, id)
               : snprintf(buf, cap, "%c/%s", kind, mailbox);
    return (size_t)n;
}

static int db_get_str(pd_queue_t *q, const char *key, size_t klen, char *out, size_t cap,
                      int *found)
{
    char *err = NULL;
    size_t vlen = 0;
    char *v = rocksdb_get(q->db, q->ropts, key, klen, &vlen, &err);
    if (err) {
        CM_ERROR(NULL, "rocksdb get: %s", err);
        rocksdb_free(err);
        return -1;
    }
    *found = v != NULL;
    if (v && out) {
        size_t n = vlen < cap - 1 ? vlen : cap - 1;
        memcpy(out, v, n);
        out[n] = '\0';
    }
    if (v)
        rocksdb_free(v);
    return 0;
}

static pd_entry_t *entry_from_notification(const Tigress__Push__V1__Notification *n)
{
    pd_entry_t *e = cm_xcalloc(1, sizeof(*e));
    snprintf(e->id, sizeof(e->id), "%s", n->notification_id);
    snprintf(e->mailbox, sizeof(e->mailbox), "%s", n->mailbox_id);
    snprintf(e->type, sizeof(e->type), "%s", n->token_type);
    e->token = cm_xstrdup(n->token_data ? n->token_data : "");
    e->expires_ms = n->mailbox_expires_at_ms;
    e->created_ms = n->created_at_ms;
    return e;
}

/* Packs |e| as a QueuedNotification with its token sealed (associated data: the mailbox id, so
 * a value moved under another mailbox's key does not open); malloc'd into *out. The token is in
 * clear only in memory. Returns the length, or 0 when sealing failed (logged). */
static size_t pack_entry(const pd_queue_t *q, const pd_entry_t *e, uint8_t **out)
{
    Tigress__Push__V1__Notification n = TIGRESS__PUSH__V1__NOTIFICATION__INIT;
    Tigress__Push__V1__QueuedNotification qn = TIGRESS__PUSH__V1__QUEUED_NOTIFICATION__INIT;
    size_t tl = strlen(e->token);
    uint8_t *sealed = cm_xmalloc(cm_seal_sealed_len(tl));
    *out = NULL;
    cm_seal_err_t se =
        cm_seal_encrypt(q->ring, e->mailbox, strlen(e->mailbox), e->token, tl, sealed);
    if (se != CM_SEAL_OK) {
        CM_ERROR(NULL, "sealing a token failed: %s", cm_seal_err_name(se));
        free(sealed);
        return 0;
    }
    n.notification_id = (char *)e->id;
    n.mailbox_id = (char *)e->mailbox;
    n.token_type = (char *)e->type;
    n.mailbox_expires_at_ms = e->expires_ms;
    n.created_at_ms = e->created_ms;
    qn.notification = &n;
    qn.attempts = e->attempts;
    qn.next_attempt_ms = e->next_ms;
    qn.sealed_token.data = sealed;
    qn.sealed_token.len = cm_seal_sealed_len(tl);
    size_t len = tigress__push__v1__queued_notification__get_packed_size(&qn);
    *out = cm_xmalloc(len);
    tigress__push__v1__queued_notification__pack(&qn, *out);
    free(sealed);
    return len;
}

/* The token of a stored entry, opened into a malloc'd string in *token. *legacy = 1 when it was
 * stored in clear (before sealing existed). Returns CM_SEAL_OK or why it cannot be read. */
static cm_seal_err_t unseal_token(const pd_queue_t *q,
                                  const Tigress__Push__V1__QueuedNotification *qn, char **token,
                                  int *legacy)
{
    const Tigress__Push__V1__Notification *n = qn->notification;
    *legacy = 0;
    if (qn->sealed_token.len == 0) {
        *legacy = 1;
        *token = cm_xstrdup(n->token_data ? n->token_data : "");
        return CM_SEAL_OK;
    }
    size_t len = 0;
    char *t = cm_xmalloc(qn->sealed_token.len + 1);
    cm_seal_err_t rc =
        cm_seal_decrypt(q->ring, n->mailbox_id, strlen(n->mailbox_id), qn->sealed_token.data,
                        qn->sealed_token.len, (uint8_t *)t, &len, NULL);
    if (rc != CM_SEAL_OK || memchr(t, '\0', len)) {
        free(t);
        return rc != CM_SEAL_OK ? rc : CM_SEAL_ERR_FORMAT;
    }
    t[len] = '\0';
    *token = t;
    return CM_SEAL_OK;
}

/* ---- open / close ---- */

/* Every write goes through here (see cm_rocksdb.h). Returns 0, or -1 when fenced or failed. */
static int qwrite(pd_queue_t *q, rocksdb_writeoptions_t *wo, rocksdb_writebatch_t *wb,
                  const char *what)
{
    return cm_rocksdb_write(&q->fence, wo, wb, what);
}

/* The in-memory entry of the stored |qn| (key |k|), its token opened. An entry stored with
 * its token in clear (written before sealing existed) is re-written sealed (*resealed counts
 * them). An entry that cannot be opened is not loaded: deleted once its mailbox has expired,
 * kept otherwise (a key removed from the ring too early can be put back). NULL then. */
static pd_entry_t *load_entry(pd_queue_t *q, const Tigress__Push__V1__QueuedNotification *qn,
                              const char *k, size_t klen, size_t *resealed)
{
    char *token = NULL;
    int legacy = 0;
    cm_seal_err_t se = unseal_token(q, qn, &token, &legacy);
    if (se != CM_SEAL_OK) {
        CM_WARN(NULL, "queued notification %s: token cannot be opened (%s)",
                qn->notification->notification_id, cm_seal_err_name(se));
        if (qn->notification->mailbox_expires_at_ms <= pd_now_ms()) {
            rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
            rocksdb_writebatch_delete(wb, k, klen);
            qwrite(q, q->wfast, wb, "load");
            rocksdb_writebatch_destroy(wb);
        }
        return NULL;
    }
    pd_entry_t *e = entry_from_notification(qn->notification);
    free(e->token);
    e->token = token;
    e->attempts = qn->attempts;
    e->next_ms = qn->next_attempt_ms;
    if (legacy) {
        uint8_t *v;
        size_t vl = pack_entry(q, e, &v);
        if (vl) {
            rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
            rocksdb_writebatch_put(wb, k, klen, (const char *)v, vl);
            /* Synced: the clear copy must not outlive this start in the WAL longer than
             * needed. */
            if (qwrite(q, q->wsync, wb, "reseal") == 0)
                (*resealed)++;
            rocksdb_writebatch_destroy(wb);
            free(v);
        }
    }
    return e;
}

static int load(pd_queue_t *q)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator(q->db, q->ropts);
    size_t loaded = 0, skipped = 0, resealed = 0;
    for (rocksdb_iter_seek(it, "q/", 2); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen < 2 || memcmp(k, "q/", 2) != 0)
            break;
        const char *v = rocksdb_iter_value(it, &vlen);
        Tigress__Push__V1__QueuedNotification *qn =
            tigress__push__v1__queued_notification__unpack(NULL, vlen, (const uint8_t *)v);
        if (!qn || !qn->notification || !pd_id_valid(qn->notification->notification_id) ||
            !pd_id_valid(qn->notification->mailbox_id)) {
            skipped++;
            if (qn)
                tigress__push__v1__queued_notification__free_unpacked(qn, NULL);
            continue;
        }
        char ck[PD_ID_MAX + 8];
        int found = 0;
        size_t cl = qkey(ck, sizeof(ck), 'c', qn->notification->mailbox_id, NULL);
        if (db_get_str(q, ck, cl, NULL, 0, &found) == 0 && found) {
            /* Cancelled while a retry was being written: never deliver it. */
            rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
            rocksdb_writebatch_delete(wb, k, klen);
            qwrite(q, q->wfast, wb, "load");
            rocksdb_writebatch_destroy(wb);
            tigress__push__v1__queued_notification__free_unpacked(qn, NULL);
            continue;
        }
        pd_entry_t *e = load_entry(q, qn, k, klen, &resealed);
        tigress__push__v1__queued_notification__free_unpacked(qn, NULL);
        if (!e) {
            skipped++;
            continue;
        }
        heap_push(q, e);
        loaded++;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err) {
        CM_ERROR(NULL, "rocksdb scan: %s", err);
        free(err);
        return -1;
    }
    if (skipped)
        CM_WARN(NULL, "skipped %zu unreadable queue entries", skipped);
    if (resealed) {
        /* Rewrite the table files now, so the old clear copies do not wait for a compaction
         * that may be long in coming. */
        rocksdb_compact_range(q->db, "q/", 2, "q0", 2);
        CM_INFO(NULL, "sealed the tokens of %zu entries stored in clear", resealed);
    }
    CM_INFO(NULL, "queue loaded: %zu notifications waiting", loaded);
    return 0;
}

int pd_queue_open(const char *dir, uint32_t budget, const cm_seal_ring_t *ring, pd_queue_t **out)
{
    pd_queue_t *q = cm_xcalloc(1, sizeof(*q));
    char *err = NULL;
    q->budget = budget;
    q->ring = ring;
    pthread_mutex_init(&q->wlock, NULL);
    pthread_mutex_init(&q->lock, NULL);
    cm_cond_init(&q->cond);
    if (cm_fs_mkdir_p(dir, 0700) != 0) {
        CM_ERROR(NULL, "cannot create data dir %s: %s", dir, strerror(errno));
        goto fail;
    }
    q->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(q->opts, 1);
    rocksdb_options_set_max_background_jobs(q->opts, 2);
    rocksdb_options_set_keep_log_file_num(q->opts, 3);
    /* RocksDB's own LOG file sits on the data volume, and its 7.8 writer aborts the process on
     * an assertion when it writes again after a failed write (a full disk): only fatal lines
     * (the queue logs its storage errors itself). */
    rocksdb_options_set_info_log_level(q->opts, 4 /* FATAL_LEVEL */);
    q->db = rocksdb_open(q->opts, dir, &err);
    if (err) {
        CM_ERROR(NULL, "cannot open rocksdb in %s: %s", dir, err);
        free(err);
        goto fail;
    }
    q->wsync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(q->wsync, 1);
    q->wfast = rocksdb_writeoptions_create();
    q->ropts = rocksdb_readoptions_create();
    static const char probe[] = "h/probe"; /* outside every prefix in use */
    cm_rocksdb_fence_init(&q->fence, q->db, probe, sizeof(probe) - 1);
    /* After the fence: loading writes (sealing entries stored in clear, dropping dead ones). */
    if (load(q) != 0)
        goto fail;
    *out = q;
    return 0;
fail:
    pd_queue_close(q);
    return -1;
}

void pd_queue_close(pd_queue_t *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->nheap; i++)
        pd_entry_free(q->heap[i]);
    free(q->heap);
    free(q->flight);
    if (q->db)
        rocksdb_close(q->db);
    if (q->opts)
        rocksdb_options_destroy(q->opts);
    if (q->wsync)
        rocksdb_writeoptions_destroy(q->wsync);
    if (q->wfast)
        rocksdb_writeoptions_destroy(q->wfast);
    if (q->ropts)
        rocksdb_readoptions_destroy(q->ropts);
    pthread_mutex_destroy(&q->wlock);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    free(q);
}

/* ---- enqueue ---- */

/* Budget count of |mailbox| as stored ("count expiry"), 0 when absent. */
static int budget_get(pd_queue_t *q, const char *mailbox, uint32_t *count)
{
    char k[PD_ID_MAX + 8], v[64];
    int found = 0;
    size_t kl = qkey(k, sizeof(k), 'b', mailbox, NULL);
    *count = 0;
    if (db_get_str(q, k, kl, v, sizeof(v), &found) != 0)
        return -1;
    if (found)
        *count = (uint32_t)strtoul(v, NULL, 10);
    return 0;
}

int pd_queue_enqueue(pd_queue_t *q, Tigress__Push__V1__Notification *const *ns, size_t n,
                     int64_t now_ms, pd_enq_result_t *res)
{
    int rc = -1;
    if (cm_rocksdb_fenced(&q->fence))
        return -1;
    /* Per distinct mailbox of this batch: its count after the batch. Batches are small (the
     * store forwards a page of its outbox), so a linear table is fine. */
    struct {
        const char *mailbox;
        uint32_t count;
        int64_t expires;
        int dirty;
    } *mb = cm_xcalloc(n, sizeof(*mb));
    size_t nmb = 0;
    pd_entry_t **fresh = cm_xcalloc(n, sizeof(*fresh));
    size_t nfresh = 0;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();

    pthread_mutex_lock(&q->wlock);
    for (size_t i = 0; i < n; i++) {
        const Tigress__Push__V1__Notification *nt = ns[i];
        char k[2 * PD_ID_MAX + 8];
        size_t kl;
        int found = 0;

        /* A re-sent id within this same batch. */
        int dup = 0;
        for (size_t j = 0; j < nfresh; j++)
            if (strcmp(fresh[j]->id, nt->notification_id) == 0 &&
                strcmp(fresh[j]->mailbox, nt->mailbox_id) == 0)
                dup = 1;
        if (dup) {
            res[i] = PD_ENQ_DUPLICATE;
            continue;
        }
        kl = qkey(k, sizeof(k), 'q', nt->mailbox_id, nt->notification_id);
        if (db_get_str(q, k, kl, NULL, 0, &found) != 0)
            goto out;
        if (!found) {
            k[0] = 'd';
            if (db_get_str(q, k, kl, NULL, 0, &found) != 0)
                goto out;
        }
        if (found) {
            res[i] = PD_ENQ_DUPLICATE;
            continue;
        }
        if (nt->mailbox_expires_at_ms <= now_ms) {
            res[i] = PD_ENQ_EXPIRED;
            continue;
        }
        kl = qkey(k, sizeof(k), 'c', nt->mailbox_id, NULL);
        if (db_get_str(q, k, kl, NULL, 0, &found) != 0)
            goto out;
        if (found) {
            res[i] = PD_ENQ_CANCELLED;
            continue;
        }
        size_t m = 0;
        while (m < nmb && strcmp(mb[m].mailbox, nt->mailbox_id) != 0)
            m++;
        if (m == nmb) {
            mb[m].mailbox = nt->mailbox_id;
            if (budget_get(q, nt->mailbox_id, &mb[m].count) != 0)
                goto out;
            nmb++;
        }
        if (mb[m].count >= q->budget) {
            res[i] = PD_ENQ_OVER_BUDGET;
            continue;
        }
        mb[m].count++;
        mb[m].dirty = 1;
        if (nt->mailbox_expires_at_ms > mb[m].expires)
            mb[m].expires = nt->mailbox_expires_at_ms;

        pd_entry_t *e = entry_from_notification(nt);
        e->next_ms = now_ms;
        if (e->created_ms <= 0)
            e->created_ms = now_ms;
        uint8_t *v;
        size_t vl = pack_entry(q, e, &v);
        if (vl == 0) {
            pd_entry_free(e);
            goto out;
        }
        kl = qkey(k, sizeof(k), 'q', e->mailbox, e->id);
        rocksdb_writebatch_put(wb, k, kl, (const char *)v, vl);
        free(v);
        fresh[nfresh++] = e;
        res[i] = PD_ENQ_QUEUED;
    }
    for (size_t m = 0; m < nmb; m++) {
        if (!mb[m].dirty)
            continue;
        char k[PD_ID_MAX + 8], v[64];
        size_t kl = qkey(k, sizeof(k), 'b', mb[m].mailbox, NULL);
        int vl = snprintf(v, sizeof(v), "%" PRIu32 " %" PRId64, mb[m].count, mb[m].expires);
        rocksdb_writebatch_put(wb, k, kl, v, (size_t)vl);
    }
    if ((nfresh || nmb) && qwrite(q, q->wsync, wb, "enqueue") != 0)
        goto out;
    pthread_mutex_lock(&q->lock);
    for (size_t i = 0; i < nfresh; i++)
        heap_push(q, fresh[i]);
    if (nfresh)
        pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    nfresh = 0; /* handed over */
    rc = 0;
out:
    pthread_mutex_unlock(&q->wlock);
    for (size_t i = 0; i < nfresh; i++)
        pd_entry_free(fresh[i]);
    free(fresh);
    free(mb);
    rocksdb_writebatch_destroy(wb);
    return rc;
}

/* ---- cancel ---- */

int pd_queue_cancel(pd_queue_t *q, const char *mailbox, int64_t expires_ms, int64_t now_ms,
                    uint32_t *dropped)
{
    int rc = -1;
    char *err = NULL;
    char k[PD_ID_MAX + 8], v[32], prefix[PD_ID_MAX + 8];
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    *dropped = 0;
    (void)now_ms;
    if (cm_rocksdb_fenced(&q->fence)) {
        rocksdb_writebatch_destroy(wb);
        return -1;
    }

    pthread_mutex_lock(&q->wlock);
    size_t kl = qkey(k, sizeof(k), 'c', mailbox, NULL);
    int vl = snprintf(v, sizeof(v), "%" PRId64, expires_ms);
    rocksdb_writebatch_put(wb, k, kl, v, (size_t)vl);

    size_t pl = (size_t)snprintf(prefix, sizeof(prefix), "q/%s/", mailbox);
    rocksdb_iterator_t *it = rocksdb_create_iterator(q->db, q->ropts);
    for (rocksdb_iter_seek(it, prefix, pl); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t ikl;
        const char *ik = rocksdb_iter_key(it, &ikl);
        if (ikl < pl || memcmp(ik, prefix, pl) != 0)
            break;
        rocksdb_writebatch_delete(wb, ik, ikl);
    }
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err) {
        CM_ERROR(NULL, "rocksdb scan (cancel): %s", err);
        free(err);
        goto out;
    }

    pthread_mutex_lock(&q->lock);
    if (qwrite(q, q->wsync, wb, "cancel") != 0) {
        pthread_mutex_unlock(&q->lock);
        goto out;
    }
    size_t w = 0;
    for (size_t i = 0; i < q->nheap; i++) {
        if (strcmp(q->heap[i]->mailbox, mailbox) == 0) {
            pd_entry_free(q->heap[i]);
            (*dropped)++;
        } else {
            q->heap[w++] = q->heap[i];
        }
    }
    q->nheap = w;
    for (size_t i = q->nheap / 2 + 1; i-- > 0;)
        if (i < q->nheap)
            heap_down(q, i);
    for (size_t i = 0; i < q->nflight; i++)
        if (strcmp(q->flight[i]->mailbox, mailbox) == 0)
            q->flight[i]->cancelled = 1;
    pthread_mutex_unlock(&q->lock);
    rc = 0;
out:
    pthread_mutex_unlock(&q->wlock);
    rocksdb_writebatch_destroy(wb);
    return rc;
}

static int same_recipient(const pd_entry_t *e, const char *mailbox, const char *type,
                          const char *token)
{
    return strcmp(e->mailbox, mailbox) == 0 && strcmp(e->type, type) == 0 &&
           strcmp(e->token, token) == 0;
}

int pd_queue_cancel_recipient(pd_queue_t *q, const char *mailbox, const char *type,
                              const char *token, uint32_t *dropped)
{
    int rc = -1;
    char k[2 * PD_ID_MAX + 8], v[32];
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    *dropped = 0;
    pthread_mutex_lock(&q->wlock);
    pthread_mutex_lock(&q->lock);
    /* Every stored entry that could be opened is in the heap or in flight, so the in-memory
     * tokens are enough to find them (the stored ones are sealed). */
    for (size_t i = 0; i < q->nheap; i++) {
        pd_entry_t *e = q->heap[i];
        if (!same_recipient(e, mailbox, type, token))
            continue;
        size_t kl = qkey(k, sizeof(k), 'q', e->mailbox, e->id);
        rocksdb_writebatch_delete(wb, k, kl);
        k[0] = 'd';
        int vl = snprintf(v, sizeof(v), "%" PRId64, e->expires_ms);
        rocksdb_writebatch_put(wb, k, kl, v, (size_t)vl);
    }
    if (rocksdb_writebatch_count(wb) > 0 && qwrite(q, q->wsync, wb, "cancel recipient") != 0)
        goto out;
    size_t w = 0;
    for (size_t i = 0; i < q->nheap; i++) {
        if (same_recipient(q->heap[i], mailbox, type, token)) {
            pd_entry_free(q->heap[i]);
            (*dropped)++;
        } else {
            q->heap[w++] = q->heap[i];
        }
    }
    q->nheap = w;
    for (size_t i = q->nheap / 2 + 1; i-- > 0;)
        if (i < q->nheap)
            heap_down(q, i);
    for (size_t i = 0; i < q->nflight; i++)
        if (same_recipient(q->flight[i], mailbox, type, token))
            q->flight[i]->cancelled = 1;
    rc = 0;
out:
    pthread_mutex_unlock(&q->lock);
    pthread_mutex_unlock(&q->wlock);
    rocksdb_writebatch_destroy(wb);
    return rc;
}

/* ---- take / finish ---- */

int pd_queue_take(pd_queue_t *q, pd_entry_t **out)
{
    pthread_mutex_lock(&q->lock);
    for (;;) {
        if (q->stopped) {
            pthread_mutex_unlock(&q->lock);
            return -1;
        }
        if (q->nheap == 0) {
            pthread_cond_wait(&q->cond, &q->lock);
            continue;
        }
        int64_t now = pd_now_ms();
        if (q->heap[0]->next_ms <= now)
            break;
        /* next_ms is wall-clock (it is stored); the wait itself runs on the monotonic clock,
         * and the loop rechecks against the wall clock. */
        cm_cond_wait_ms(&q->cond, &q->lock, q->heap[0]->next_ms - now);
    }
    pd_entry_t *e = heap_pop(q);
    if (q->nflight == q->capflight) {
        q->capflight = q->capflight ? q->capflight * 2 : 32;
        q->flight = cm_xreallocarray(q->flight, q->capflight, sizeof(*q->flight));
    }
    q->flight[q->nflight++] = e;
    pthread_mutex_unlock(&q->lock);
    *out = e;
    return 0;
}

int pd_queue_finish(pd_queue_t *q, pd_entry_t *e, int retry)
{
    char k[2 * PD_ID_MAX + 8], v[32];
    int cancelled;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();

    pthread_mutex_lock(&q->lock);
    for (size_t i = 0; i < q->nflight; i++) {
        if (q->flight[i] == e) {
            q->flight[i] = q->flight[--q->nflight];
            break;
        }
    }
    size_t kl = qkey(k, sizeof(k), 'q', e->mailbox, e->id);
    cancelled = retry && e->cancelled;
    if (retry && !e->cancelled) {
        uint8_t *pv;
        size_t pl = pack_entry(q, e, &pv);
        /* Not sealed (cannot happen short of a broken random source): the stored attempt
         * count stays behind, nothing else. */
        if (pl)
            rocksdb_writebatch_put(wb, k, kl, (const char *)pv, pl);
        free(pv);
    } else {
        rocksdb_writebatch_delete(wb, k, kl);
        k[0] = 'd';
        int vl = snprintf(v, sizeof(v), "%" PRId64, e->expires_ms);
        rocksdb_writebatch_put(wb, k, kl, v, (size_t)vl);
    }
    /* Under |lock| so a concurrent cancel cannot be overtaken by this write. Once fenced the
     * outcome is kept in memory only: deliveries go on, and after a restart the entry is
     * delivered again (at least once). */
    qwrite(q, q->wfast, wb, "finish");
    if (retry && !e->cancelled) {
        heap_push(q, e);
        pthread_cond_signal(&q->cond);
        e = NULL;
    }
    pthread_mutex_unlock(&q->lock);
    rocksdb_writebatch_destroy(wb);
    pd_entry_free(e);
    return cancelled;
}

void pd_queue_stop(pd_queue_t *q)
{
    pthread_mutex_lock(&q->lock);
    q->stopped = 1;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

int pd_queue_healthy(pd_queue_t *q)
{
    return cm_rocksdb_healthy(&q->fence);
}

size_t pd_queue_depth(pd_queue_t *q)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->nheap;
    pthread_mutex_unlock(&q->lock);
    return n;
}

/* ---- sweep ---- */

static void sweep_prefix(pd_queue_t *q, const char *prefix, int64_t now_ms, size_t *n)
{
    char *err = NULL;
    size_t pl = strlen(prefix);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator(q->db, q->ropts);
    for (rocksdb_iter_seek(it, prefix, pl); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < pl || memcmp(k, prefix, pl) != 0)
            break;
        const char *v = rocksdb_iter_value(it, &vl);
        char buf[64];
        size_t c = vl < sizeof(buf) - 1 ? vl : sizeof(buf) - 1;
        memcpy(buf, v, c);
        buf[c] = '\0';
        /* b/ values are "count expiry"; the others are just the expiry. */
        const char *exp = prefix[0] == 'b' ? strchr(buf, ' ') : buf;
        int64_t at = exp ? strtoll(exp, NULL, 10) : 0;
        if (at <= now_ms) {
            rocksdb_writebatch_delete(wb, k, kl);
            (*n)++;
        }
    }
    rocksdb_iter_get_error(it, &err);
    free(err);
    err = NULL;
    rocksdb_iter_destroy(it);
    if (rocksdb_writebatch_count(wb) > 0)
        qwrite(q, q->wfast, wb, "sweep");
    rocksdb_writebatch_destroy(wb);
}

void pd_queue_sweep(pd_queue_t *q, int64_t now_ms)
{
    size_t n = 0;
    /* Under |wlock|: an Enqueue must not read a budget count that is being deleted. */
    pthread_mutex_lock(&q->wlock);
    sweep_prefix(q, "b/", now_ms, &n);
    sweep_prefix(q, "c/", now_ms, &n);
    sweep_prefix(q, "d/", now_ms, &n);
    pthread_mutex_unlock(&q->wlock);
    if (n)
        CM_DEBUG(NULL, "swept %zu expired markers", n);
}
