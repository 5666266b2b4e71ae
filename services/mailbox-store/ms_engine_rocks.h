/* ms_engine_rocks: the embedded RocksDB engine (ms_engine.h), one process per data directory.
 *
 * Transactions: every ms_engine_run holds its mailbox's stripe lock (ids hash to
 * MS_ROCKS_STRIPES mutexes) from the callback's first read to the end of its single WriteBatch,
 * so a run never conflicts and MS_ERR_RETRY never happens. Different mailboxes write
 * concurrently, so with sync on RocksDB's group commit shares one WAL fsync among them.
 *
 * Layout: ms_keys.h. A record's value is a format byte, its expiry (8 bytes) and the core's
 * blob; an outbox value the kind byte, the mailbox id and the core's blob.
 *
 * Failures: every write goes through cm_rocksdb's fence (the first failed write refuses all
 * further writes until restart) and healthy() runs its background-error probe.
 *
 * Outbox: one forwarder per process. outbox_claim continues after the last acknowledged entry
 * and rescans from the start once a second (sequence numbers are taken before commit, so under
 * concurrency an entry may become visible after a higher one); leases are not needed and
 * outbox_release does nothing. Sweeper and outbox-ack deletes are not synced (redone if lost). */
#ifndef MS_ENGINE_ROCKS_H
#define MS_ENGINE_ROCKS_H

#include <rocksdb/c.h>

#include "ms_engine.h"

#define MS_ROCKS_STRIPES 1024

/* The engine's database, for tools and tests that scan it. |e| must be a RocksDB engine. */
rocksdb_t *ms_engine_rocks_db(ms_engine_t *e);

#endif
