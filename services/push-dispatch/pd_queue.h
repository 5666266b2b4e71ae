/* pd_queue: the durable notification queue (own RocksDB) and its in-memory schedule.
 *
 * Keys (one RocksDB, default column family):
 *   q/<mailbox>/<id>  QueuedNotification  waiting for delivery (token sealed, see cm_seal)
 *   d/<mailbox>/<id>  expiry ms (text)     handled (delivered or dropped): dedups re-sent ids
 *   b/<mailbox>       "count expiry"       notifications accepted so far (the budget)
 *   c/<mailbox>       expiry ms            mailbox cancelled (deleted) until its expiry
 * Markers are swept once past their expiry. Every q/ entry is also in memory, in a min-heap by
 * next attempt time, so delivery threads take the next due entry without touching the disk.
 * Enqueue and CancelMailbox write with sync=true before returning; delivery bookkeeping writes
 * without fsync (a kill -9 keeps it in the page cache; a power loss at worst re-delivers).
 * After a failed write the queue is fenced until restart (see pd_queue_healthy). */
#ifndef PD_QUEUE_H
#define PD_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "cm_seal.h"
#include "pd_provider.h"
#include "tigress/push/v1/push_dispatch.pb-c.h"

typedef struct pd_queue pd_queue_t;

typedef enum {
    PD_ENQ_QUEUED = 0,
    PD_ENQ_DUPLICATE,   /* already queued or already handled */
    PD_ENQ_EXPIRED,     /* mailbox_expires_at_ms is past */
    PD_ENQ_CANCELLED,   /* the mailbox was cancelled */
    PD_ENQ_OVER_BUDGET, /* the mailbox used its budget */
} pd_enq_result_t;

/* Opens (creating) the database in |dir| and loads the queued entries. |budget| is the number
 * of notifications accepted per mailbox. Tokens are stored sealed under |ring| (not owned; must
 * outlive the queue) and opened only in memory. Returns 0 or -1 (logged). */
int pd_queue_open(const char *dir, uint32_t budget, const cm_seal_ring_t *ring, pd_queue_t **out);

/* Closes; no taker may still be running. */
void pd_queue_close(pd_queue_t *q);

/* Decides each of |n| (validated) notifications into |res|, writes the newly queued ones and
 * the budget counts in one synced batch, then makes them available to takers. Returns 0, or -1
 * when the write failed (nothing was queued). */
int pd_queue_enqueue(pd_queue_t *q, Tigress__Push__V1__Notification *const *ns, size_t n,
                     int64_t now_ms, pd_enq_result_t *res);

/* Marks |mailbox| cancelled until |expires_ms| and deletes its queued entries (synced).
 * Entries being delivered right now are flagged so they are not retried. *dropped = how many
 * queued entries were removed. Returns 0 or -1. */
int pd_queue_cancel(pd_queue_t *q, const char *mailbox, int64_t expires_ms, int64_t now_ms,
                    uint32_t *dropped);

/* Drops the queued entries of |mailbox| addressed to token |type| / |token| (a party left the
 * mailbox): deletes them and records their ids as handled (synced); entries of that token
 * being delivered right now are flagged so they are not retried. *dropped = how many queued
 * entries were removed. Returns 0 or -1. */
int pd_queue_cancel_recipient(pd_queue_t *q, const char *mailbox, const char *type,
                              const char *token, uint32_t *dropped);

/* Waits until an entry is due and hands it out (the caller owns it until pd_queue_finish).
 * Returns 0, or -1 once pd_queue_stop was called. */
int pd_queue_take(pd_queue_t *q, pd_entry_t **out);

/* Ends a delivery attempt of |e| (ownership comes back). |retry|: 0 = handled (delete it and
 * remember its id), 1 = keep it for another attempt at e->next_ms with e->attempts updated
 * (unless its mailbox or recipient was cancelled meanwhile, then it is handled and 1 is
 * returned, so the caller counts it as cancelled). Returns 0 otherwise. */
int pd_queue_finish(pd_queue_t *q, pd_entry_t *e, int retry);

/* Wakes every taker; takes then fail. */
void pd_queue_stop(pd_queue_t *q);

/* Deletes markers past their expiry. */
void pd_queue_sweep(pd_queue_t *q, int64_t now_ms);

/* 0 once a write failed (fenced: every later write is refused without reaching RocksDB, until
 * a restart), or while a new RocksDB background error stands (checked with a synced probe
 * write; a refused probe fences too); 1 otherwise. Enqueue and cancel return -1 when fenced;
 * pd_queue_finish then keeps outcomes in memory only. */
int pd_queue_healthy(pd_queue_t *q);

/* Entries waiting (not counting those being delivered). */
size_t pd_queue_depth(pd_queue_t *q);

void pd_entry_free(pd_entry_t *e);

/* 1 when |s| is a usable id: 1..PD_ID_MAX of [A-Za-z0-9._-]. */
int pd_id_valid(const char *s);

#endif
