/* ms_store: the mailbox rules of draft 001 §3, §5, §6 (as issue 2 §3 reads them) on RocksDB.
 *
 * Atomicity: every operation on one mailbox runs under that mailbox's stripe lock (ids hash to
 * MS_STORE_STRIPES mutexes) from its first read to the end of its single WriteBatch. So
 * check-then-write sequences such as "receiver unbound -> bind me" cannot interleave: of many
 * concurrent first ReadSecure calls exactly one binds, the others see the bound receiver and get
 * PERMISSION_DENIED. Different mailboxes write concurrently, so with sync on RocksDB's group
 * commit shares one WAL fsync among them.
 *
 * Status codes (grpc_status_code): NOT_FOUND unknown or expired mailbox; ALREADY_EXISTS id taken
 * at Create; PERMISSION_DENIED claim not bound or right missing; FAILED_PRECONDITION the creator
 * tried to Relinquish; INVALID_ARGUMENT malformed field or lifetime out of range; UNAVAILABLE
 * storage failure (nothing was written).
 *
 * Idempotency: a claim-bearing request with a non-empty correlation id that matches the last
 * successful request of the same claim on the same mailbox, for the same method, gets that
 * request's response again, marked duplicate, and changes nothing. Records live under the
 * mailbox and die with it (so a repeated Delete answers NOT_FOUND, as 001 §6.3.3 allows). */
#ifndef MS_STORE_H
#define MS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/status.h>

#include "tigress/mailbox/v1/mailbox_store.pb-c.h"

#include "ms_keys.h"

#define MS_STORE_STRIPES 1024
#define MS_MAX_CLAIM_LEN 1024
#define MS_MAX_CORR_LEN 255

typedef struct ms_store ms_store_t;

typedef struct {
    const char *path;         /* RocksDB directory; created if missing */
    int sync;                 /* 1: every acknowledged write is fsynced (WAL) */
    int64_t max_ttl_s;        /* Create: 1 <= ttl <= max_ttl_s */
    const uint8_t *claim_key; /* HMAC key for claims; copied */
    size_t claim_key_len;
    int64_t (*now_ms)(void *arg); /* clock (Unix ms); NULL = realtime. Tests inject one. */
    void *now_arg;
    /* Called (from a request thread, without locks held) after a write added outbox entries,
     * so a forwarder can wake up. May be NULL. */
    void (*outbox_hook)(void *arg);
    void *outbox_arg;
} ms_store_opts_t;

/* Outcome of one operation. On GRPC_STATUS_OK |resp| holds the packed response message of the
 * method (malloc'd, owned by the result); otherwise |msg| says why. */
typedef struct {
    grpc_status_code code;
    char msg[160];
    uint8_t *resp;
    size_t resp_len;
} ms_result_t;

void ms_result_free(ms_result_t *r);

/* Opens (creating if needed). Returns 0, or -1 with a reason in |err|. */
int ms_store_open(const ms_store_opts_t *opts, ms_store_t **out, char *err, size_t errcap);
void ms_store_close(ms_store_t *st);

/* The operations. Each returns 0 when res->code is OK, else -1. |res| must be freed with
 * ms_result_free in both cases. */
int ms_store_create(ms_store_t *st, const Tigress__Mailbox__V1__CreateRequest *req,
                    ms_result_t *res);
int ms_store_read_display(ms_store_t *st, const Tigress__Mailbox__V1__ReadDisplayRequest *req,
                          ms_result_t *res);
int ms_store_read_secure(ms_store_t *st, const Tigress__Mailbox__V1__ReadSecureRequest *req,
                         ms_result_t *res);
int ms_store_update(ms_store_t *st, const Tigress__Mailbox__V1__UpdateRequest *req,
                    ms_result_t *res);
int ms_store_delete(ms_store_t *st, const Tigress__Mailbox__V1__DeleteRequest *req,
                    ms_result_t *res);
int ms_store_relinquish(ms_store_t *st, const Tigress__Mailbox__V1__RelinquishRequest *req,
                        ms_result_t *res);

/* Sweeper step: deletes up to |batch| mailboxes whose expiry is <= |now_ms|, each with every
 * key it owns (record, idempotency records, outbox entries, expiry index), one mailbox per
 * write so a request never waits behind a whole batch. Returns 1 when more expired entries may
 * remain, 0 when done, -1 on a storage error. *deleted (may be NULL) gets the mailboxes
 * removed. */
int ms_store_sweep(ms_store_t *st, int64_t now_ms, size_t batch, size_t *deleted);

/* ---- outbox ---- */

typedef enum {
    MS_OUTBOX_NOTIFY = 'N', /* value: packed tigress.push.v1.Notification */
    MS_OUTBOX_CANCEL = 'C', /* value: packed Notification with mailbox_id (+ notification_id) */
} ms_outbox_kind_t;

typedef struct {
    uint64_t seq;
    ms_outbox_kind_t kind;
    char mailbox_id[MS_ID_LEN + 1];
    uint8_t *value; /* packed Notification, malloc'd; freed by ms_outbox_entries_free */
    size_t len;
} ms_outbox_entry_t;

/* Reads up to |max| outbox entries with seq >= |from_seq|, in sequence order, into |out|; count
 * in *n. 0 or -1. Sequence numbers are taken before commit, so under concurrency an entry may
 * become visible after a higher one: a reader that continues from a cursor must also rescan
 * from 0 now and then (ms_outbox does when idle and every second). */
int ms_store_outbox_read(ms_store_t *st, uint64_t from_seq, size_t max, ms_outbox_entry_t *out,
                         size_t *n);
void ms_outbox_entries_free(ms_outbox_entry_t *e, size_t n);
/* Deletes delivered entries (and their back-references). 0 or -1. */
int ms_store_outbox_ack(ms_store_t *st, const ms_outbox_entry_t *e, size_t n);
/* Entries currently in the outbox. */
int64_t ms_store_outbox_depth(ms_store_t *st);

/* 1 when the store can write, else 0. After a failed write the store refuses every further
 * write (UNAVAILABLE) and reports 0 until restarted: the restart replays the WAL, so nothing
 * acknowledged is lost. After a new RocksDB background error (flush, compaction) it makes a
 * synced probe write and reports 1 again once one succeeds (RocksDB resumes by itself where
 * it can). Cheap while nothing failed. Meant for one caller at a time (the sweeper). */
int ms_store_healthy(ms_store_t *st);

/* The underlying rocksdb_t*, for tools and tests (scan). */
void *ms_store_db(ms_store_t *st);

#endif
