#include "ms_engine_pg.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "cm_alloc.h"
#include "cm_time.h"
#include "cm_log.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
#define MIGRATE_TRIES 20
#define MAX_PARAMS 4
#define MAX_CONN_KEYS 12
#define CLIENT_MARGIN_MS 1000 /* past the statement timeout, before cancelling */
#define CANCEL_GRACE_MS 2000  /* after a cancel, before giving up on the connection */

/* ---- the engine ---------------------------------------------------------------------------- */

typedef struct {
    PGconn *conn; /* owned; NULL when not connected */
    int busy;     /* handed out by acquire */
    int warned;   /* the server sent a WARNING since it was last cleared (notice receiver) */
} slot_t;

typedef struct {
    ms_engine_t base;
    int64_t stmt_timeout_ms;
    /* libpq keywords/values for PQconnectdbParams; the first is dbname = the connection string
     * (expanded by libpq), the rest defaults the string did not set. */
    const char *keys[MAX_CONN_KEYS + 1];
    const char *vals[MAX_CONN_KEYS + 1];
    char *url;          /* owned: the connection string, a secret (wiped at close) */
    char options[1024]; /* "-c statement_timeout=..." (+ the string's own options) */
    char user_timeout[32];
    char idle_timeout[32];

    pthread_mutex_t mu; /* guards slots[].busy, next_connect_ms, backoff_ms */
    pthread_cond_t freed;
    slot_t *slots; /* owned, |nslots| */
    int nslots;
    int64_t next_connect_ms; /* no pool connect before this (back-off after a failure) */
    int64_t backoff_ms;

    pthread_mutex_t schema_mu; /* one migration at a time in this process */
    atomic_int schema_ready;
    atomic_int down; /* last connect failed: log only the transitions */

    PGconn *health; /* owned; used only by healthy() (one caller at a time) */
} pg_engine_t;

struct ms_txn {
    pg_engine_t *e;
    PGconn *conn;
    int *warned; /* the slot's flag: a WARNING arrived */
    const char *mailbox_id;
    int locked;      /* the mailbox row was selected FOR UPDATE */
    int row_in_db;   /* the row exists in the database (within this transaction) */
    int visible;     /* the record as the caller sees it exists (not deleted by this run) */
    int delete_row;  /* delete_mailbox was queued and no put_record followed */
    int wrote;       /* some write was sent */
    uint8_t *record; /* owned: the record as the caller sees it */
    size_t record_len;
    ms_err_t fail; /* first failure; every later call returns it (the txn is aborted) */
};

/* ---- statements ------------------------------------------------------------------------------ */

typedef struct {
    const char *vals[MAX_PARAMS];
    int lens[MAX_PARAMS];
    int fmts[MAX_PARAMS]; /* 0 text, 1 binary (bytea) */
    int n;
    char num[MAX_PARAMS][24]; /* text of integer parameters */
} params_t;

static void p_text(params_t *p, const char *s)
{
    p->vals[p->n] = s;
    p->lens[p->n] = 0;
    p->fmts[p->n] = 0;
    p->n++;
}

static void p_int(params_t *p, int64_t v)
{
    snprintf(p->num[p->n], sizeof(p->num[p->n]), "%lld", (long long)v);
    p_text(p, p->num[p->n]);
}

static void p_bytes(params_t *p, const uint8_t *b, size_t n)
{
    p->vals[p->n] = n ? (const char *)b : "";
    p->lens[p->n] = (int)n;
    p->fmts[p->n] = 1;
    p->n++;
}

static int is_state(const char *state, const char *want)
{
    return state && strcmp(state, want) == 0;
}

/* What a failed statement means: conflicts to re-run are MS_ERR_RETRY, everything else
 * (connection lost, statement timeout, read-only standby, ...) MS_ERR_UNAVAILABLE. Logs the
 * SQLSTATE and the server's primary message, which carry no data values. */
static ms_err_t classify(PGconn *c, const PGresult *r, const char *what)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    /* 42P07/42710: a relation or object another replica created at the same moment (schema
     * migration only). */
    if (PQstatus(c) == CONNECTION_OK &&
        (is_state(state, "40001") || is_state(state, "40P01") || is_state(state, "23505") ||
         is_state(state, "42P07") || is_state(state, "42710"))) {
        CM_DEBUG(NULL, "postgres: %s: conflict %s, re-running", what, state);
        return MS_ERR_RETRY;
    }
    if (PQstatus(c) != CONNECTION_OK || !state) {
        const char *m = PQerrorMessage(c);
        size_t n = strcspn(m, "\n");
        CM_WARN(NULL, "postgres: %s: connection lost: %.*s", what, (int)n, m);
        return MS_ERR_UNAVAILABLE;
    }
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    CM_ERROR(NULL, "postgres: %s: %s %s", what, state, msg ? msg : "");
    return MS_ERR_UNAVAILABLE;
}

/* The next result of the query in flight on |c|, waiting at most until |deadline_ms|
 * (monotonic). Past it the server is asked once to cancel the query (a COMMIT waiting for a
 * synchronous standby is not bound by statement_timeout, only by a cancel) and gets
 * CANCEL_GRACE_MS more. NULL at the end of the results, on a broken connection, or when even
 * the cancel got no answer (*timed_out set; the connection is then still busy and is closed
 * by release()). */
static PGresult *wait_result(PGconn *c, int64_t deadline_ms, int *timed_out)
{
    int cancelled = 0;
    while (PQisBusy(c)) {
        int64_t now = cm_time_mono_ms();
        if (now >= deadline_ms) {
            if (cancelled) {
                *timed_out = 1;
                return NULL;
            }
            PGcancel *k = PQgetCancel(c);
            char ebuf[256];
            if (k) {
                PQcancel(k, ebuf, sizeof(ebuf));
                PQfreeCancel(k);
            }
            cancelled = 1;
            deadline_ms = now + CANCEL_GRACE_MS;
            continue;
        }
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        int rc = poll(&pfd, 1, (int)(deadline_ms - now));
        if ((rc < 0 && errno != EINTR) || (rc > 0 && !PQconsumeInput(c)))
            break; /* broken: PQgetResult reports it */
    }
    return PQgetResult(c);
}

/* Runs |sql| with |p| (may be NULL), binary results, bounded by the statement timeout on the
 * server and by that plus a margin here. MS_OK with *out (PQclear it; may be NULL when not
 * wanted), or the classified error. */
static ms_err_t exec(pg_engine_t *e, PGconn *c, const char *sql, const params_t *p, PGresult **out,
                     const char *what)
{
    int64_t deadline = cm_time_mono_ms() + e->stmt_timeout_ms + CLIENT_MARGIN_MS;
    int timed_out = 0;
    if (!PQsendQueryParams(c, sql, p ? p->n : 0, NULL, p ? p->vals : NULL, p ? p->lens : NULL,
                           p ? p->fmts : NULL, 1))
        return classify(c, NULL, what);
    PGresult *r = wait_result(c, deadline, &timed_out);
    /* One statement: one result, then the end (NULL). */
    for (PGresult *more; !timed_out && (more = wait_result(c, deadline, &timed_out));)
        PQclear(more);
    if (timed_out) {
        PQclear(r);
        CM_WARN(NULL, "postgres: %s: no answer within %lld ms", what,
                (long long)(e->stmt_timeout_ms + CLIENT_MARGIN_MS + CANCEL_GRACE_MS));
        return MS_ERR_UNAVAILABLE;
    }
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        ms_err_t err = classify(c, r, what);
        PQclear(r);
        return err;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return MS_OK;
}

/* Statement without parameters (BEGIN, COMMIT, DDL). */
static ms_err_t exec_simple(pg_engine_t *e, PGconn *c, const char *sql, const char *what)
{
    return exec(e, c, sql, NULL, NULL, what);
}

static int64_t get_int8(const PGresult *r, int row, int col)
{
    const uint8_t *b = (const uint8_t *)PQgetvalue(r, row, col);
    if (PQgetlength(r, row, col) != 8)
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return (int64_t)v;
}

static int get_int4(const PGresult *r, int row, int col)
{
    const uint8_t *b = (const uint8_t *)PQgetvalue(r, row, col);
    if (PQgetlength(r, row, col) != 4)
        return 0;
    return (int)(((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3]);
}

/* Copy of a binary column: malloc'd (never NULL), length in *len. */
static uint8_t *dup_col(const PGresult *r, int row, int col, size_t *len)
{
    size_t n = (size_t)PQgetlength(r, row, col);
    uint8_t *b = cm_xmalloc(n);
    memcpy(b, PQgetvalue(r, row, col), n);
    *len = n;
    return b;
}

/* Ends an open transaction after a failure. A connection still busy with a statement that got
 * no answer is left alone: release() closes it. */
static void rollback(pg_engine_t *e, PGconn *c)
{
    PGTransactionStatusType ts = PQtransactionStatus(c);
    if (PQstatus(c) == CONNECTION_OK && (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR))
        exec_simple(e, c, "ROLLBACK", "rollback");
}

/* ---- schema -------------------------------------------------------------------------------- */

/* Migration |i| brings the schema to version i + 1. Append only. */
static const char *const MIGRATIONS[][6] = {
    {
        "CREATE TABLE IF NOT EXISTS ms_mailbox ("
        " mailbox_id text PRIMARY KEY,"
        " expires_ms bigint NOT NULL,"
        " record bytea NOT NULL)",
        "CREATE INDEX IF NOT EXISTS ms_mailbox_expires ON ms_mailbox (expires_ms)",
        "CREATE TABLE IF NOT EXISTS ms_idem ("
        " mailbox_id text NOT NULL,"
        " claim_hash bytea NOT NULL,"
        " record bytea NOT NULL,"
        " PRIMARY KEY (mailbox_id, claim_hash))",
        "CREATE TABLE IF NOT EXISTS ms_outbox ("
        " seq bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
        " mailbox_id text NOT NULL,"
        " kind char(1) NOT NULL,"
        " entry bytea NOT NULL,"
        " lease_until_ms bigint NOT NULL DEFAULT 0)",
        "CREATE INDEX IF NOT EXISTS ms_outbox_mailbox ON ms_outbox (mailbox_id)",
        NULL,
    },
};
_Static_assert(sizeof(MIGRATIONS) / sizeof(MIGRATIONS[0]) == MS_PG_SCHEMA_VERSION,
               "one migration per schema version");

/* One attempt: the whole migration in one transaction. MS_ERR_RETRY when another replica was
 * migrating at the same moment. */
static ms_err_t migrate_once(pg_engine_t *e, PGconn *c, int *found)
{
    PGresult *r = NULL;
    ms_err_t err = exec_simple(e, c, "BEGIN", "migrate");
    if (err != MS_OK)
        return err;
    err = exec_simple(e, c,
                      "CREATE TABLE IF NOT EXISTS ms_schema_version ("
                      " version integer PRIMARY KEY, applied_at_ms bigint NOT NULL)",
                      "migrate");
    if (err == MS_OK)
        err = exec(e, c, "SELECT coalesce(max(version), 0) FROM ms_schema_version", NULL, &r,
                   "migrate");
    if (err != MS_OK)
        goto fail;
    *found = get_int4(r, 0, 0);
    PQclear(r);
    r = NULL;
    if (*found > MS_PG_SCHEMA_VERSION) {
        err = MS_ERR_INTERNAL;
        goto fail;
    }
    for (int v = *found; v < MS_PG_SCHEMA_VERSION && err == MS_OK; v++) {
        for (int i = 0; MIGRATIONS[v][i] && err == MS_OK; i++)
            err = exec_simple(e, c, MIGRATIONS[v][i], "migrate");
        params_t p = {.n = 0};
        p_int(&p, v + 1);
        p_int(&p, cm_time_wall_ms());
        if (err == MS_OK)
            err = exec(e, c,
                       "INSERT INTO ms_schema_version (version, applied_at_ms) VALUES ($1, $2) "
                       "ON CONFLICT DO NOTHING",
                       &p, NULL, "migrate");
    }
    if (err == MS_OK)
        err = exec_simple(e, c, "COMMIT", "migrate");
    if (err == MS_OK)
        return MS_OK;
fail:
    PQclear(r);
    rollback(e, c);
    return err;
}

/* Creates or migrates the schema once per process. MS_OK, MS_ERR_UNAVAILABLE, or
 * MS_ERR_INTERNAL for a database newer than this build. */
static ms_err_t ensure_schema(pg_engine_t *e, PGconn *c)
{
    if (atomic_load(&e->schema_ready))
        return MS_OK;
    pthread_mutex_lock(&e->schema_mu);
    ms_err_t err = MS_OK;
    int found = 0;
    for (int attempt = 0; !atomic_load(&e->schema_ready) && attempt < MIGRATE_TRIES; attempt++) {
        err = migrate_once(e, c, &found);
        if (err == MS_OK) {
            if (found < MS_PG_SCHEMA_VERSION)
                CM_INFO(NULL, "postgres: schema migrated from version %d to %d", found,
                        MS_PG_SCHEMA_VERSION);
            atomic_store(&e->schema_ready, 1);
        } else if (err != MS_ERR_RETRY) {
            break;
        } else {
            usleep((useconds_t)(10000 + rand() % 40000)); /* another replica is migrating */
        }
    }
    pthread_mutex_unlock(&e->schema_mu);
    if (err == MS_ERR_INTERNAL)
        CM_ERROR(NULL, "postgres: the database has schema version %d, newer than this store's %d",
                 found, MS_PG_SCHEMA_VERSION);
    return atomic_load(&e->schema_ready) ? MS_OK
           : err == MS_ERR_INTERNAL      ? MS_ERR_INTERNAL
                                         : MS_ERR_UNAVAILABLE;
}

/* ---- connections ----------------------------------------------------------------------------- */

/* Notices and warnings never go to stderr; a WARNING sets the flag at |arg| (may be NULL). */
static void on_notice(void *arg, const PGresult *r)
{
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (arg && sev && strcmp(sev, "WARNING") == 0)
        *(int *)arg = 1;
}

static PGconn *connect_db(pg_engine_t *e, int *warned)
{
    PGconn *c = PQconnectdbParams(e->keys, e->vals, 1);
    if (c && PQstatus(c) == CONNECTION_OK) {
        PQsetNoticeReceiver(c, on_notice, warned);
        if (atomic_exchange(&e->down, 0))
            CM_INFO(NULL, "postgres: connected again");
        return c;
    }
    if (!atomic_exchange(&e->down, 1)) {
        const char *m = c ? PQerrorMessage(c) : "out of memory";
        size_t n = strcspn(m, "\n");
        CM_WARN(NULL, "postgres: cannot connect (retrying with back-off): %.*s", (int)n, m);
    }
    PQfinish(c);
    return NULL;
}

static void backoff_reset(pg_engine_t *e)
{
    pthread_mutex_lock(&e->mu);
    e->backoff_ms = 0;
    e->next_connect_ms = 0;
    pthread_mutex_unlock(&e->mu);
}

static void release(pg_engine_t *e, slot_t *s);

/* A connection for one call: waits up to one statement timeout for a free slot, connects it
 * when needed (not during a back-off), makes sure the schema exists. *reused says whether the
 * connection was already open (it may have died meanwhile). */
static ms_err_t acquire(pg_engine_t *e, slot_t **out, int *reused)
{
    int64_t until = cm_time_mono_ms() + e->stmt_timeout_ms;
    slot_t *s = NULL;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        /* A free slot with an open connection first: connections are made only when needed. */
        for (int pass = 0; pass < 2 && !s; pass++) {
            for (int i = 0; i < e->nslots && !s; i++) {
                if (!e->slots[i].busy && (pass || e->slots[i].conn))
                    s = &e->slots[i];
            }
        }
        if (s)
            break;
        int64_t left = until - cm_time_mono_ms();
        if (left <= 0 || cm_cond_wait_ms(&e->freed, &e->mu, left) == ETIMEDOUT)
            break;
    }
    if (!s) {
        pthread_mutex_unlock(&e->mu);
        CM_WARN(NULL, "postgres: no free connection within %lld ms", (long long)e->stmt_timeout_ms);
        return MS_ERR_UNAVAILABLE;
    }
    s->busy = 1;
    int may_connect = cm_time_mono_ms() >= e->next_connect_ms;
    pthread_mutex_unlock(&e->mu);
    *reused = s->conn != NULL;
    if (!s->conn && may_connect)
        s->conn = connect_db(e, &s->warned);
    ms_err_t err = MS_ERR_UNAVAILABLE;
    if (s->conn) {
        err = ensure_schema(e, s->conn);
        if (!*reused && err == MS_OK)
            backoff_reset(e);
    } else if (may_connect) {
        pthread_mutex_lock(&e->mu);
        e->backoff_ms = e->backoff_ms ? e->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (e->backoff_ms > BACKOFF_MAX_MS)
            e->backoff_ms = BACKOFF_MAX_MS;
        e->next_connect_ms = cm_time_mono_ms() + e->backoff_ms;
        pthread_mutex_unlock(&e->mu);
    }
    if (err != MS_OK) {
        release(e, s);
        return err;
    }
    *out = s;
    return MS_OK;
}

/* Returns the slot; a connection that broke or is left inside a transaction is closed. When
 * one broke, the idle ones most likely did too (the server went away): they are closed as
 * well, so the next calls connect afresh instead of each failing once on a dead socket. */
static void release(pg_engine_t *e, slot_t *s)
{
    int broke = s->conn && PQstatus(s->conn) != CONNECTION_OK;
    if (s->conn && (broke || PQtransactionStatus(s->conn) != PQTRANS_IDLE)) {
        PQfinish(s->conn);
        s->conn = NULL;
    }
    pthread_mutex_lock(&e->mu);
    for (int i = 0; broke && i < e->nslots; i++) {
        if (!e->slots[i].busy && e->slots[i].conn) {
            PQfinish(e->slots[i].conn);
            e->slots[i].conn = NULL;
        }
    }
    s->busy = 0;
    pthread_cond_signal(&e->freed);
    pthread_mutex_unlock(&e->mu);
}

/* ---- transactions ---------------------------------------------------------------------------- */

static ms_err_t txn_fail(ms_txn_t *t, ms_err_t err)
{
    if (t->fail == MS_OK)
        t->fail = err;
    return err;
}

/* The first call of a run: the mailbox row, locked until the end of the transaction. */
static ms_err_t lock_record(ms_txn_t *t)
{
    if (t->fail != MS_OK)
        return t->fail;
    if (t->locked)
        return MS_OK;
    params_t p = {.n = 0};
    p_text(&p, t->mailbox_id);
    PGresult *r = NULL;
    ms_err_t err =
        exec(t->e, t->conn, "SELECT record FROM ms_mailbox WHERE mailbox_id = $1 FOR UPDATE", &p,
             &r, "lock mailbox");
    if (err != MS_OK)
        return txn_fail(t, err);
    t->locked = 1;
    t->row_in_db = t->visible = PQntuples(r) > 0;
    if (t->visible)
        t->record = dup_col(r, 0, 0, &t->record_len);
    PQclear(r);
    return MS_OK;
}

static ms_err_t txn_get_record(ms_txn_t *t, uint8_t **blob, size_t *len)
{
    ms_err_t err = lock_record(t);
    if (err != MS_OK)
        return err;
    if (!t->visible)
        return MS_ERR_NOT_FOUND;
    *blob = cm_xmalloc(t->record_len);
    memcpy(*blob, t->record, t->record_len);
    *len = t->record_len;
    return MS_OK;
}

static ms_err_t txn_get_idem(ms_txn_t *t, const uint8_t *hash, size_t hash_len, uint8_t **blob,
                             size_t *len)
{
    ms_err_t err = lock_record(t);
    if (err != MS_OK)
        return err;
    if (!t->visible)
        return MS_ERR_NOT_FOUND; /* deleted in this run: its records went with it */
    params_t p = {.n = 0};
    p_text(&p, t->mailbox_id);
    p_bytes(&p, hash, hash_len);
    PGresult *r = NULL;
    err =
        exec(t->e, t->conn, "SELECT record FROM ms_idem WHERE mailbox_id = $1 AND claim_hash = $2",
             &p, &r, "read idempotency record");
    if (err != MS_OK)
        return txn_fail(t, err);
    err = PQntuples(r) > 0 ? MS_OK : MS_ERR_NOT_FOUND;
    if (err == MS_OK)
        *blob = dup_col(r, 0, 0, len);
    PQclear(r);
    return err;
}

static ms_err_t txn_put_record(ms_txn_t *t, int64_t expires_ms, const uint8_t *blob, size_t len)
{
    ms_err_t err = lock_record(t);
    if (err != MS_OK)
        return err;
    params_t p = {.n = 0};
    p_text(&p, t->mailbox_id);
    p_int(&p, expires_ms);
    p_bytes(&p, blob, len);
    /* A new id is a plain INSERT: a concurrent Create of the same id loses on the primary key
     * (unique violation -> re-run -> it then finds this record). */
    err = exec(t->e, t->conn,
               t->row_in_db
                   ? "UPDATE ms_mailbox SET expires_ms = $2, record = $3 WHERE mailbox_id = $1"
                   : "INSERT INTO ms_mailbox (mailbox_id, expires_ms, record) VALUES ($1, $2, $3)",
               &p, NULL, "write mailbox");
    if (err != MS_OK)
        return txn_fail(t, err);
    t->row_in_db = t->visible = t->wrote = 1;
    t->delete_row = 0;
    free(t->record);
    t->record = cm_xmalloc(len);
    memcpy(t->record, blob, len);
    t->record_len = len;
    return MS_OK;
}

static ms_err_t txn_put_idem(ms_txn_t *t, const uint8_t *hash, size_t hash_len, const uint8_t *blob,
                             size_t len)
{
    ms_err_t err = lock_record(t);
    if (err != MS_OK)
        return err;
    params_t p = {.n = 0};
    p_text(&p, t->mailbox_id);
    p_bytes(&p, hash, hash_len);
    p_bytes(&p, blob, len);
    err = exec(t->e, t->conn,
               "INSERT INTO ms_idem (mailbox_id, claim_hash, record) VALUES ($1, $2, $3) "
               "ON CONFLICT (mailbox_id, claim_hash) DO UPDATE SET record = EXCLUDED.record",
               &p, NULL, "write idempotency record");
    if (err != MS_OK)
        return txn_fail(t, err);
    t->wrote = 1;
    return MS_OK;
}

static ms_err_t txn_delete_mailbox(ms_txn_t *t)
{
    ms_err_t err = lock_record(t);
    if (err != MS_OK)
        return err;
    params_t p = {.n = 0};
    p_text(&p, t->mailbox_id);
    err = exec(t->e, t->conn, "DELETE FROM ms_idem WHERE mailbox_id = $1", &p, NULL,
               "delete idempotency records");
    if (err == MS_OK)
        err = exec(t->e, t->conn, "DELETE FROM ms_outbox WHERE mailbox_id = $1 AND kind = 'N'", &p,
                   NULL, "delete outbox entries");
    if (err != MS_OK)
        return txn_fail(t, err);
    /* The row itself goes at commit unless a put_record follows (then it is updated in place,
     * so a transaction waiting on its lock sees the new mailbox). */
    t->delete_row = t->row_in_db;
    t->visible = 0;
    t->wrote = 1;
    free(t->record);
    t->record = NULL;
    t->record_len = 0;
    return MS_OK;
}

static ms_err_t txn_add_outbox(ms_txn_t *t, ms_outbox_kind_t kind, const uint8_t *blob, size_t len)
{
    ms_err_t err = lock_record(t);
    if (err != MS_OK)
        return err;
    char k[2] = {(char)kind, '\0'};
    params_t p = {.n = 0};
    p_text(&p, t->mailbox_id);
    p_text(&p, k);
    p_bytes(&p, blob, len);
    err = exec(t->e, t->conn, "INSERT INTO ms_outbox (mailbox_id, kind, entry) VALUES ($1, $2, $3)",
               &p, NULL, "write outbox entry");
    if (err != MS_OK)
        return txn_fail(t, err);
    t->wrote = 1;
    return MS_OK;
}

static ms_err_t txn_commit(ms_txn_t *t)
{
    ms_err_t err = MS_OK;
    if (t->delete_row) {
        params_t p = {.n = 0};
        p_text(&p, t->mailbox_id);
        err = exec(t->e, t->conn, "DELETE FROM ms_mailbox WHERE mailbox_id = $1", &p, NULL,
                   "delete mailbox");
    }
    if (err != MS_OK)
        return err;
    if (!t->wrote)
        return exec_simple(t->e, t->conn, "ROLLBACK", "end read-only transaction");
    *t->warned = 0;
    PGresult *r = NULL;
    err = exec(t->e, t->conn, "COMMIT", NULL, &r, "commit");
    if (err != MS_OK)
        return err;
    /* A COMMIT of a transaction the server already aborted answers "ROLLBACK". */
    int committed = strcmp(PQcmdStatus(r), "COMMIT") == 0;
    PQclear(r);
    if (!committed)
        return MS_ERR_RETRY;
    /* A cancelled wait for the synchronous standby (exec cancels a COMMIT that outlives the
     * statement timeout, e.g. while the standby is unreachable) still answers COMMIT, with a
     * WARNING that the transaction committed locally only. Acknowledging it would promise what
     * a failover could lose: UNAVAILABLE instead (the write may exist; a retry with the same
     * correlation id gets the stored answer). */
    if (*t->warned) {
        CM_WARN(NULL, "postgres: commit not confirmed (server warning, e.g. synchronous standby "
                      "unreachable); answering UNAVAILABLE");
        return MS_ERR_UNAVAILABLE;
    }
    return MS_OK;
}

/* One attempt of a run on |s|. *stale is set when BEGIN failed on a reused connection that
 * had died while idle (nothing was sent: safe to re-run on a new one). */
static ms_err_t run_once(pg_engine_t *e, slot_t *s, int reused, const char *mailbox_id,
                         ms_txn_fn fn, void *arg, int *stale)
{
    ms_txn_t t = {.e = e, .conn = s->conn, .warned = &s->warned, .mailbox_id = mailbox_id};
    ms_err_t err = exec_simple(e, s->conn, "BEGIN", "begin");
    if (err != MS_OK) {
        *stale = reused && PQstatus(s->conn) != CONNECTION_OK;
        return err;
    }
    err = fn(&t, arg);
    if (t.fail != MS_OK)
        err = t.fail; /* the transaction is aborted whatever fn made of it */
    if (err == MS_OK)
        err = txn_commit(&t);
    if (err != MS_OK)
        rollback(e, s->conn);
    free(t.record);
    return err;
}

static ms_err_t pg_run(ms_engine_t *base, const char *mailbox_id, ms_txn_fn fn, void *arg)
{
    pg_engine_t *e = (pg_engine_t *)base;
    int stale_retried = 0;
    for (int attempt = 0; attempt < MS_ENGINE_RUN_MAX_TRIES; attempt++) {
        slot_t *s;
        int reused = 0, stale = 0;
        ms_err_t err = acquire(e, &s, &reused);
        if (err != MS_OK)
            return err;
        err = run_once(e, s, reused, mailbox_id, fn, arg, &stale);
        release(e, s);
        if (stale && !stale_retried++) {
            attempt--;
            continue;
        }
        if (err != MS_ERR_RETRY)
            return err;
        usleep((useconds_t)(1000 + rand() % (2000 * (attempt + 1))));
    }
    CM_WARN(NULL, "postgres: transaction still conflicting after %d tries",
            MS_ENGINE_RUN_MAX_TRIES);
    return MS_ERR_UNAVAILABLE;
}

/* ---- outside a run --------------------------------------------------------------------------- */

/* Runs one autocommit statement on a pooled connection, again on a new connection when the
 * pooled one had died while idle, and again after a conflict (40001, 40P01, 23505). Every
 * caller's statement may run twice (reads, ack, release; a claim whose answer was lost leaves
 * its entries leased until the lease ends). */
static ms_err_t exec_pooled(pg_engine_t *e, const char *sql, const params_t *p, PGresult **out,
                            const char *what)
{
    int stale_retried = 0;
    for (int attempt = 0; attempt < MS_ENGINE_RUN_MAX_TRIES; attempt++) {
        slot_t *s;
        int reused = 0;
        ms_err_t err = acquire(e, &s, &reused);
        if (err != MS_OK)
            return err;
        err = exec(e, s->conn, sql, p, out, what);
        int stale = err != MS_OK && reused && PQstatus(s->conn) != CONNECTION_OK;
        release(e, s);
        if (stale && !stale_retried++)
            continue;
        if (err != MS_ERR_RETRY)
            return err;
        usleep((useconds_t)(1000 + rand() % (2000 * (attempt + 1))));
    }
    return MS_ERR_UNAVAILABLE;
}

static ms_err_t pg_read_record(ms_engine_t *base, const char *mailbox_id, uint8_t **blob,
                               size_t *len)
{
    pg_engine_t *e = (pg_engine_t *)base;
    params_t p = {.n = 0};
    p_text(&p, mailbox_id);
    PGresult *r = NULL;
    ms_err_t err = exec_pooled(e, "SELECT record FROM ms_mailbox WHERE mailbox_id = $1", &p, &r,
                               "read mailbox");
    if (err != MS_OK)
        return err;
    err = PQntuples(r) > 0 ? MS_OK : MS_ERR_NOT_FOUND;
    if (err == MS_OK)
        *blob = dup_col(r, 0, 0, len);
    PQclear(r);
    return err;
}

/* Deletes mailbox |id| if it is still expired at |now_ms| and nobody holds its row. 1 deleted,
 * 0 left alone, or an error (the transaction is rolled back). */
static int sweep_one(pg_engine_t *e, PGconn *c, const char *id, int64_t now_ms, ms_err_t *err)
{
    params_t p = {.n = 0};
    p_text(&p, id);
    p_int(&p, now_ms);
    params_t pid = {.n = 0};
    p_text(&pid, id);
    PGresult *r = NULL;
    *err = exec_simple(e, c, "BEGIN", "sweep");
    if (*err == MS_OK)
        *err = exec(e, c,
                    "SELECT expires_ms FROM ms_mailbox WHERE mailbox_id = $1 AND expires_ms <= $2 "
                    "FOR UPDATE SKIP LOCKED",
                    &p, &r, "sweep");
    int found = *err == MS_OK && PQntuples(r) > 0;
    PQclear(r);
    if (found) {
        *err = exec(e, c, "DELETE FROM ms_idem WHERE mailbox_id = $1", &pid, NULL, "sweep");
        if (*err == MS_OK)
            *err = exec(e, c, "DELETE FROM ms_outbox WHERE mailbox_id = $1 AND kind = 'N'", &pid,
                        NULL, "sweep");
        if (*err == MS_OK)
            *err = exec(e, c, "DELETE FROM ms_mailbox WHERE mailbox_id = $1", &pid, NULL, "sweep");
    }
    if (*err == MS_OK)
        *err = exec_simple(e, c, found ? "COMMIT" : "ROLLBACK", "sweep");
    if (*err != MS_OK)
        rollback(e, c);
    return *err == MS_OK && found;
}

static ms_err_t pg_sweep(ms_engine_t *base, int64_t now_ms, size_t batch, size_t *deleted,
                         int *more)
{
    pg_engine_t *e = (pg_engine_t *)base;
    *deleted = 0;
    *more = 0;
    slot_t *s;
    int reused = 0;
    ms_err_t err = acquire(e, &s, &reused);
    if (err != MS_OK)
        return err;
    params_t p = {.n = 0};
    p_int(&p, now_ms);
    p_int(&p, (int64_t)batch);
    PGresult *r = NULL;
    err = exec(e, s->conn,
               "SELECT mailbox_id FROM ms_mailbox WHERE expires_ms <= $1 "
               "ORDER BY expires_ms LIMIT $2",
               &p, &r, "sweep scan");
    int n = err == MS_OK ? PQntuples(r) : 0;
    for (int i = 0; i < n && err == MS_OK; i++) {
        char id[MS_ID_LEN + 1];
        snprintf(id, sizeof(id), "%.*s", PQgetlength(r, i, 0), PQgetvalue(r, i, 0));
        *deleted += (size_t)sweep_one(e, s->conn, id, now_ms, &err);
        if (err == MS_ERR_RETRY)
            err = MS_OK; /* someone else is on it: the next sweep sees */
    }
    PQclear(r);
    release(e, s);
    /* A full batch with progress: more may be due. A full batch of rows other replicas hold is
     * left to them. */
    *more = err == MS_OK && (size_t)n == batch && *deleted > 0;
    return err;
}

static int cmp_seq(const void *a, const void *b)
{
    uint64_t x = ((const ms_outbox_entry_t *)a)->seq, y = ((const ms_outbox_entry_t *)b)->seq;
    return x < y ? -1 : x > y;
}

static ms_err_t pg_outbox_claim(ms_engine_t *base, size_t max, int64_t lease_ms,
                                ms_outbox_entry_t *out, size_t *n)
{
    pg_engine_t *e = (pg_engine_t *)base;
    *n = 0;
    int64_t now = cm_time_wall_ms(), until = now + (lease_ms > 0 ? lease_ms : 1);
    params_t p = {.n = 0};
    p_int(&p, until);
    p_int(&p, now);
    p_int(&p, (int64_t)max);
    PGresult *r = NULL;
    ms_err_t err = exec_pooled(e,
                               "UPDATE ms_outbox SET lease_until_ms = $1 WHERE seq IN ("
                               " SELECT seq FROM ms_outbox WHERE lease_until_ms <= $2"
                               " ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED)"
                               " RETURNING seq, kind, mailbox_id, entry",
                               &p, &r, "outbox claim");
    if (err != MS_OK)
        return err;
    int rows = PQntuples(r);
    for (int i = 0; i < rows && (size_t)i < max; i++) {
        ms_outbox_entry_t *o = &out[*n];
        memset(o, 0, sizeof(*o));
        o->seq = (uint64_t)get_int8(r, i, 0);
        o->kind =
            PQgetlength(r, i, 1) > 0 ? (ms_outbox_kind_t)PQgetvalue(r, i, 1)[0] : MS_OUTBOX_NOTIFY;
        snprintf(o->mailbox_id, sizeof(o->mailbox_id), "%.*s", PQgetlength(r, i, 2),
                 PQgetvalue(r, i, 2));
        o->blob = dup_col(r, i, 3, &o->len);
        o->engine_tag = until;
        (*n)++;
    }
    PQclear(r);
    qsort(out, *n, sizeof(*out), cmp_seq);
    return MS_OK;
}

/* "{1,2,3}": the seqs of |entries| with engine_tag |tag| (any tag when |all|), for = ANY($1). */
static char *seq_array(const ms_outbox_entry_t *entries, size_t n, int all, int64_t tag)
{
    char *buf = cm_xmalloc(n * 22 + 3);
    size_t k = 0;
    buf[k++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (!all && entries[i].engine_tag != tag)
            continue;
        k += (size_t)sprintf(buf + k, "%s%llu", k > 1 ? "," : "",
                             (unsigned long long)entries[i].seq);
    }
    buf[k++] = '}';
    buf[k] = '\0';
    return buf;
}

static ms_err_t pg_outbox_ack(ms_engine_t *base, const ms_outbox_entry_t *entries, size_t n)
{
    if (n == 0)
        return MS_OK;
    char *arr = seq_array(entries, n, 1, 0);
    params_t p = {.n = 0};
    p_text(&p, arr);
    ms_err_t err =
        exec_pooled((pg_engine_t *)base, "DELETE FROM ms_outbox WHERE seq = ANY($1::bigint[])", &p,
                    NULL, "outbox ack");
    free(arr);
    return err;
}

static ms_err_t pg_outbox_release(ms_engine_t *base, const ms_outbox_entry_t *entries, size_t n)
{
    ms_err_t err = MS_OK;
    /* Per lease: an entry whose lease ran out and that another replica claimed since keeps
     * that replica's lease. */
    for (size_t i = 0; i < n && err == MS_OK; i++) {
        int first = 1;
        for (size_t j = 0; j < i && first; j++)
            first = entries[j].engine_tag != entries[i].engine_tag;
        if (!first)
            continue;
        char *arr = seq_array(entries, n, 0, entries[i].engine_tag);
        params_t p = {.n = 0};
        p_text(&p, arr);
        p_int(&p, entries[i].engine_tag);
        err = exec_pooled((pg_engine_t *)base,
                          "UPDATE ms_outbox SET lease_until_ms = 0 "
                          "WHERE seq = ANY($1::bigint[]) AND lease_until_ms = $2",
                          &p, NULL, "outbox release");
        free(arr);
    }
    return err;
}

static ms_err_t pg_outbox_depth(ms_engine_t *base, int64_t *depth)
{
    PGresult *r = NULL;
    ms_err_t err =
        exec_pooled((pg_engine_t *)base, "SELECT count(*) FROM ms_outbox", NULL, &r, "depth");
    if (err != MS_OK)
        return err;
    *depth = get_int8(r, 0, 0);
    PQclear(r);
    return MS_OK;
}

/* Can a connection to a writable primary be made now (and does the schema exist)? */
static int pg_healthy(ms_engine_t *base)
{
    pg_engine_t *e = (pg_engine_t *)base;
    for (int attempt = 0; attempt < 2; attempt++) {
        int fresh = 0;
        if (!e->health || PQstatus(e->health) != CONNECTION_OK) {
            PQfinish(e->health);
            e->health = connect_db(e, NULL);
            fresh = 1;
        }
        if (!e->health)
            return 0;
        PGresult *r = NULL;
        int ok =
            exec(e, e->health, "SHOW transaction_read_only", NULL, &r, "health check") == MS_OK &&
            PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "off") == 0;
        PQclear(r);
        if (ok && ensure_schema(e, e->health) == MS_OK) {
            backoff_reset(e);
            return 1;
        }
        PQfinish(e->health);
        e->health = NULL;
        if (fresh)
            return 0;
        /* An old connection (to a primary since gone or demoted): try a new one at once. */
    }
    return 0;
}

static void pg_close(ms_engine_t *base)
{
    pg_engine_t *e = (pg_engine_t *)base;
    if (!e)
        return;
    for (int i = 0; i < e->nslots; i++)
        PQfinish(e->slots[i].conn);
    free(e->slots);
    PQfinish(e->health);
    if (e->url) {
        explicit_bzero(e->url, strlen(e->url));
        free(e->url);
    }
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->schema_mu);
    pthread_cond_destroy(&e->freed);
    free(e);
}

static const ms_engine_ops_t PG_OPS = {
    .name = "postgres",
    .run = pg_run,
    .get_record = txn_get_record,
    .get_idem = txn_get_idem,
    .put_record = txn_put_record,
    .put_idem = txn_put_idem,
    .delete_mailbox = txn_delete_mailbox,
    .add_outbox = txn_add_outbox,
    .read_record = pg_read_record,
    .sweep = pg_sweep,
    .outbox_claim = pg_outbox_claim,
    .outbox_ack = pg_outbox_ack,
    .outbox_release = pg_outbox_release,
    .outbox_depth = pg_outbox_depth,
    .healthy = pg_healthy,
    .close = pg_close,
};

/* ---- opening --------------------------------------------------------------------------------- */

/* The connection string from |path|, surrounding whitespace removed. malloc'd or NULL. */
static char *read_url(const char *path, char *err, size_t errcap)
{
    FILE *f = path && *path ? fopen(path, "r") : NULL;
    if (!f) {
        snprintf(err, errcap, "--database-url-file: cannot read %s: %s",
                 path && *path ? path : "(not set)", path && *path ? strerror(errno) : "required");
        return NULL;
    }
    char *buf = cm_xcalloc(1, 8192);
    size_t n = fread(buf, 1, 8191, f);
    int more = fgetc(f) != EOF;
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    size_t lead = strspn(buf, " \t\r\n");
    if (n == lead || more) {
        snprintf(err, errcap, "--database-url-file %s: %s", path,
                 more ? "longer than 8 KiB" : "empty");
        explicit_bzero(buf, 8192);
        free(buf);
        return NULL;
    }
    memmove(buf, buf + lead, n - lead + 1);
    return buf;
}

/* Keywords for PQconnectdbParams: the string itself, then defaults for what it leaves unset,
 * and the session settings. 0, or -1 when libpq cannot parse the string. */
static int conn_params(pg_engine_t *e, char *err, size_t errcap)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(e->url, &perr);
    if (!opts) {
        /* libpq's message may quote the string (and its password): say only that it failed. */
        PQfreemem(perr);
        snprintf(err, errcap, "--database-url-file: not a valid libpq connection string");
        return -1;
    }
    const char *user_options = NULL;
    int has[5] = {0};
    static const char *const DEFAULTS[][2] = {
        {"target_session_attrs", "read-write"},
        {"connect_timeout", "2"},
        {"keepalives_idle", "10"},
        {"keepalives_interval", "5"},
        {"keepalives_count", "3"},
    };
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        for (size_t i = 0; i < 5; i++)
            has[i] |= strcmp(o->keyword, DEFAULTS[i][0]) == 0;
        if (strcmp(o->keyword, "options") == 0)
            user_options = o->val;
    }
    int k = 0;
    e->keys[k] = "dbname";
    e->vals[k++] = e->url;
    for (size_t i = 0; i < 5; i++) {
        if (!has[i]) {
            e->keys[k] = DEFAULTS[i][0];
            e->vals[k++] = DEFAULTS[i][1];
        }
    }
    snprintf(e->options, sizeof(e->options),
             "%s%s-c statement_timeout=%lld -c idle_in_transaction_session_timeout=%lld "
             "-c client_min_messages=warning",
             user_options ? user_options : "", user_options ? " " : "",
             (long long)e->stmt_timeout_ms, (long long)e->stmt_timeout_ms * 4);
    e->keys[k] = "options";
    e->vals[k++] = e->options;
    e->keys[k] = "application_name";
    e->vals[k++] = "mailbox-store";
    e->keys[k] = NULL;
    e->vals[k] = NULL;
    PQconninfoFree(opts);
    return 0;
}

ms_err_t ms_engine_pg_open(const ms_pg_opts_t *opts, ms_engine_t **out, char *err, size_t errcap)
{
    if (opts->pool_size < 1 || opts->pool_size > 1000 || opts->statement_timeout_ms < 1) {
        snprintf(err, errcap, "--db-pool-size must be 1..1000, --db-statement-timeout-ms >= 1");
        return MS_ERR_INVALID;
    }
    pg_engine_t *e = cm_xcalloc(1, sizeof(*e));
    e->base.ops = &PG_OPS;
    e->stmt_timeout_ms = opts->statement_timeout_ms;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->schema_mu, NULL);
    cm_cond_init(&e->freed);
    e->nslots = opts->pool_size;
    e->slots = cm_xcalloc((size_t)e->nslots, sizeof(*e->slots));
    e->url = read_url(opts->database_url_file, err, errcap);
    if (!e->url || conn_params(e, err, errcap) != 0)
        goto fail;
    /* Connect and migrate now when the database is there; otherwise start unhealthy and do it
     * on the first connection that succeeds. */
    if (pg_healthy(&e->base) == 0 && atomic_load(&e->down) == 0) {
        snprintf(err, errcap, "postgres: the database schema could not be prepared");
        goto fail;
    }
    if (atomic_load(&e->down))
        CM_WARN(NULL, "postgres: database unreachable at start; serving NOT_SERVING until it is");
    *out = &e->base;
    return MS_OK;
fail:
    pg_close(&e->base);
    return MS_ERR_INVALID;
}
