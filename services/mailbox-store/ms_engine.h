/* interface frozen: additive changes only */
/* ms_engine: the storage-engine boundary below the mailbox rules (ms_core.h).
 *
 * An engine stores three kinds of rows, each the core's opaque encoded blob plus the columns the
 * engine needs to find it:
 *   mailbox record   key mailbox_id; columns expires_ms; one per mailbox
 *   idempotency rec  key (mailbox_id, claim hash); one per claim that used the mailbox
 *   outbox entry     key seq (engine-assigned); columns mailbox_id, kind; forwarder queue
 * The engine never interprets a blob and never applies a rule: "expired" is decided by the core
 * (records are returned whatever their expiry), except in ms_engine_sweep, whose whole job is
 * expiry.
 *
 * Two implementations: ms_engine_rocks.c (embedded RocksDB: per-mailbox stripe locks, one
 * WriteBatch per transaction) and ms_engine_pg.c (PostgreSQL over libpq: one SQL transaction
 * with SELECT ... FOR UPDATE per run; several store replicas share one database).
 *
 * Error codes (ms_err_t): MS_OK; MS_ERR_NOT_FOUND (lookups only, "no such row");
 * MS_ERR_UNAVAILABLE (storage failed or unreachable; the transaction wrote nothing);
 * MS_ERR_RETRY (retryable conflict, see ms_engine_run); MS_ERR_CORRUPT (unreadable stored data);
 * MS_ERR_INTERNAL. An engine logs its storage errors itself (never a blob's contents).
 *
 * Threads: every function may be called from any thread, concurrently, except where noted.
 *
 * Buffers: blobs passed to the engine are borrowed for the call (the engine copies what it
 * keeps); blobs returned by the engine are malloc'd and owned by the caller, freed with free().
 *
 * Build: ms_engine_pg.c is compiled in when it exists (CMake defines MS_HAVE_POSTGRES and links
 * libpq); without it ms_engine_open refuses MS_ENGINE_POSTGRES with a clear reason.
 *
 * Flags (main.c; each also TIGRESS_<FLAG> in the environment):
 *   --engine rocksdb|postgres            (TIGRESS_ENGINE, default rocksdb)
 *   RocksDB:    --data-dir (RocksDB in <dir>/db), --sync 1
 *   PostgreSQL: --database-url-file      (TIGRESS_DATABASE_URL_FILE; a libpq connection URI
 *                                         or key=value string, a secret; may list several hosts
 *                                         with target_session_attrs=read-write)
 *               --db-pool-size 8         (TIGRESS_DB_POOL_SIZE; connections)
 *               --db-statement-timeout-ms 2000 (TIGRESS_DB_STATEMENT_TIMEOUT_MS)
 *   With postgres, --claim-key-file is required: every replica must hash claims with the same
 *   key (a key generated per data directory would not match across replicas).
 *
 * Tests: tests/mailbox-store/ms_tengine.h is the fixture hook that runs one test source against
 * every engine. */
#ifndef MS_ENGINE_H
#define MS_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "ms_core.h"

#define MS_ENGINE_RUN_MAX_TRIES 16 /* ms_engine_run gives up (MS_ERR_UNAVAILABLE) after this */

/* An outbox entry as the engine hands it to the forwarder. */
typedef struct ms_outbox_entry {
    uint64_t seq;          /* engine-assigned, unique; claims return ascending seq */
    ms_outbox_kind_t kind; /* as given to add_outbox */
    char mailbox_id[MS_ID_LEN + 1];
    uint8_t *blob; /* owned (malloc'd): the core's encoded entry; ms_outbox_entries_free */
    size_t len;
    int64_t engine_tag; /* engine-private (e.g. a lease id); the forwarder passes it back */
} ms_outbox_entry_t;

/* Frees the blobs of |n| entries (not the array). Defined once, in ms_engine.c. */
void ms_outbox_entries_free(ms_outbox_entry_t *e, size_t n);

/* One transaction, engine-defined. Only valid inside the ms_engine_run callback. */
typedef struct ms_txn ms_txn_t;

/* The decision of one transaction: reads through the txn functions, queues writes, returns
 * MS_OK to commit them or an error to discard them (returned by ms_engine_run as it is). It
 * must propagate MS_ERR_RETRY from any txn function. It may be called several times for one
 * ms_engine_run (after a conflict), so it must reset whatever it outputs through |arg| on
 * entry and must have no other side effects. */
typedef ms_err_t (*ms_txn_fn)(ms_txn_t *t, void *arg);

typedef struct {
    const char *name; /* "rocksdb", "postgres" */

    /* Runs |fn| as one transaction scoped to mailbox |mailbox_id| (canonical lowercase UUID):
     * - Isolation: from the first read to the commit, no other transaction on the same mailbox
     *   (in this process or any other replica sharing the storage) interleaves: a read of the
     *   record or of an idempotency record, followed by writes, is atomic (RocksDB: the
     *   mailbox's stripe lock held for the whole run; PostgreSQL: BEGIN, SELECT ... FOR UPDATE
     *   of the record row, ..., COMMIT). A process-local lock alone is not enough for an engine
     *   shared by replicas.
     * - Atomicity: writes queued by |fn| apply in the order queued, all or none, at commit. With
     *   no write queued, nothing is committed (a read-only run).
     * - Durability: when ms_engine_run returns MS_OK after writes, they are durable as the
     *   engine's options promise (RocksDB --sync=1: in the fsynced WAL; PostgreSQL: committed).
     * - Retry: when a txn function or the commit meets a retryable conflict (SQLSTATE 40001,
     *   40P01, a unique violation from a concurrent insert of the same row), the engine rolls
     *   back and calls |fn| again on a fresh transaction (nothing of the discarded attempt
     *   visible). |fn| returning MS_ERR_RETRY itself is treated the same way. |fn| runs at most
     *   MS_ENGINE_RUN_MAX_TRIES times in all; then ms_engine_run returns MS_ERR_UNAVAILABLE.
     *   MS_ERR_RETRY itself is never returned.
     * Returns |fn|'s error (writes discarded), MS_ERR_UNAVAILABLE when storage failed (nothing
     * written), or MS_OK once committed. */
    ms_err_t (*run)(ms_engine_t *e, const char *mailbox_id, ms_txn_fn fn, void *arg);

    /* -- inside run -- */

    /* The mailbox's record, whatever its expiry: MS_OK with *blob (malloc'd, caller frees) and
     * *len, MS_ERR_NOT_FOUND (absent), MS_ERR_RETRY, or MS_ERR_UNAVAILABLE. The first call of a
     * run takes the mailbox's row lock where the engine has one (also when absent: a concurrent
     * insert of the same id must then end in a conflict, i.e. MS_ERR_RETRY for the loser). */
    ms_err_t (*get_record)(ms_txn_t *t, uint8_t **blob, size_t *len);
    /* The idempotency record of claim hash |hash| (|hash_len| <= 64 bytes, opaque) on this
     * mailbox: as get_record. */
    ms_err_t (*get_idem)(ms_txn_t *t, const uint8_t *hash, size_t hash_len, uint8_t **blob,
                         size_t *len);
    /* Queue: insert or replace the record; |expires_ms| is what ms_engine_sweep compares. */
    ms_err_t (*put_record)(ms_txn_t *t, int64_t expires_ms, const uint8_t *blob, size_t len);
    /* Queue: insert or replace the idempotency record of |hash|. */
    ms_err_t (*put_idem)(ms_txn_t *t, const uint8_t *hash, size_t hash_len, const uint8_t *blob,
                         size_t len);
    /* Queue: delete the record, every idempotency record and every pending MS_OUTBOX_NOTIFY
     * entry of this mailbox (MS_OUTBOX_CANCEL entries stay). The core queues it before any put
     * of the same run (Delete, and Create over an expired, unswept mailbox). */
    ms_err_t (*delete_mailbox)(ms_txn_t *t);
    /* Queue: a new outbox entry of this mailbox. The engine assigns its seq at commit or
     * earlier; an entry is claimable only once committed. */
    ms_err_t (*add_outbox)(ms_txn_t *t, ms_outbox_kind_t kind, const uint8_t *blob, size_t len);

    /* -- outside any run -- */

    /* A single consistent read of the record (no lock, for ReadDisplay): as get_record. */
    ms_err_t (*read_record)(ms_engine_t *e, const char *mailbox_id, uint8_t **blob, size_t *len);

    /* Deletes up to |batch| mailboxes with expires_ms <= |now_ms|, each as delete_mailbox does
     * (no cancel marker), each in its own transaction so a request never waits behind a whole
     * batch; a mailbox whose record changed meanwhile (re-created with another lifetime) is
     * left alone. *deleted gets the number removed, *more 1 when more may be due. Several
     * replicas may sweep at once without blocking each other or double-counting (PostgreSQL:
     * FOR UPDATE SKIP LOCKED). Sweep writes need not be synced (they are redone if lost). */
    ms_err_t (*sweep)(ms_engine_t *e, int64_t now_ms, size_t batch, size_t *deleted, int *more);

    /* Hands up to |max| committed outbox entries, ascending seq, to this forwarder: *n entries
     * into |out| (blobs owned by the caller: ms_outbox_entries_free). An entry handed out is not
     * handed to another forwarder (another replica) for |lease_ms|, unless released; after that
     * it may be (delivery is at least once). An engine with one forwarder per storage (RocksDB)
     * may ignore leases and hand out every unacknowledged entry again on the next claim. */
    ms_err_t (*outbox_claim)(ms_engine_t *e, size_t max, int64_t lease_ms, ms_outbox_entry_t *out,
                             size_t *n);
    /* Deletes delivered entries. Entries already gone (the mailbox was deleted or swept
     * meanwhile, or acknowledged twice) are no error and counted once. Need not be synced. */
    ms_err_t (*outbox_ack)(ms_engine_t *e, const ms_outbox_entry_t *entries, size_t n);
    /* Makes claimed, undelivered entries claimable again at once (after a failed call). */
    ms_err_t (*outbox_release)(ms_engine_t *e, const ms_outbox_entry_t *entries, size_t n);
    /* Entries waiting in the outbox (exact or a recent count). */
    ms_err_t (*outbox_depth)(ms_engine_t *e, int64_t *depth);

    /* 1 when the engine can write now, else 0. Called by one thread (the sweeper) once per
     * sweep interval; may do I/O (a probe write, a connection check) and must return within
     * about a statement timeout. RocksDB: 0 forever after a failed write (until restart), 0
     * after a new background error until a synced probe write succeeds. PostgreSQL: 0 while no
     * connection to a writable primary can be made; 1 again once one can. */
    int (*healthy)(ms_engine_t *e);

    /* Frees everything. No call may be in flight. */
    void (*close)(ms_engine_t *e);
} ms_engine_ops_t;

/* The instance: implementations embed this as their first member. */
struct ms_engine {
    const ms_engine_ops_t *ops;
};

/* ---- options and opening ---- */

typedef enum {
    MS_ENGINE_ROCKSDB = 0,
    MS_ENGINE_POSTGRES = 1,
} ms_engine_kind_t;

typedef struct {
    const char *path; /* RocksDB directory; created if missing */
    int sync;         /* 1: every acknowledged write is fsynced (WAL) */
} ms_rocks_opts_t;

typedef struct {
    const char *database_url_file; /* file holding the connection string (trailing newline
                                      ignored); read at open */
    int pool_size;                 /* connections, >= 1; default 8 */
    int64_t statement_timeout_ms;  /* every statement; default 2000 */
} ms_pg_opts_t;

typedef struct {
    ms_engine_kind_t kind;
    ms_rocks_opts_t rocksdb;
    ms_pg_opts_t pg;
} ms_engine_opts_t;

/* "rocksdb" / "postgres" -> kind. 0, or -1 for another name. */
int ms_engine_kind_parse(const char *name, ms_engine_kind_t *kind);

/* Opens the engine |opts->kind| names. MS_OK and *out, or an error with a reason in |err|
 * (never holding the connection string's password). */
ms_err_t ms_engine_open(const ms_engine_opts_t *opts, ms_engine_t **out, char *err, size_t errcap);
ms_err_t ms_engine_rocks_open(const ms_rocks_opts_t *opts, ms_engine_t **out, char *err,
                              size_t errcap);
/* Only when built with MS_HAVE_POSTGRES. The PostgreSQL engine creates and migrates its schema
 * at open (safe when several replicas start at once). */
ms_err_t ms_engine_pg_open(const ms_pg_opts_t *opts, ms_engine_t **out, char *err, size_t errcap);

/* ---- call helpers ---- */

static inline void ms_engine_close(ms_engine_t *e)
{
    if (e)
        e->ops->close(e);
}

#endif
