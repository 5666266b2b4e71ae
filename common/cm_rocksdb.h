/* cm_rocksdb: durable RocksDB writes behind a write fence, and the background-error probe,
 * shared by every RocksDB user (the mailbox-store's RocksDB engine, push-dispatch's queue).
 *
 * The fence: the first failed write sets it and nothing clears it, so from then on no write
 * reaches RocksDB. RocksDB 7.8 may append to a WAL whose last write failed, and Debian's build
 * then aborts on an assertion (rocksdb#12448, fixed in 9.x); refusing further writes turns that
 * crash into "not serving, writes unavailable" until a restart replays the WAL, so nothing
 * acknowledged is lost.
 *
 * The probe: "rocksdb.background-errors" only counts up, so the count last seen healthy tells
 * a new background error (flush, compaction) from an old, recovered one. While RocksDB holds a
 * background error it refuses writes; a synced probe write tells whether it recovered by
 * itself. A refused probe fences like any failed write (it may have been a WAL write that
 * failed), so the process reports unhealthy until restarted. */
#ifndef CM_ROCKSDB_H
#define CM_ROCKSDB_H

#include <stddef.h>
#include <stdint.h>

#include <rocksdb/c.h>

typedef struct {
    rocksdb_t *db;         /* not owned */
    const char *probe_key; /* not owned (static); a key outside every range in use */
    size_t probe_len;
    _Atomic int write_failed; /* the fence */
    _Atomic uint64_t bg_errors_seen;
} cm_rocksdb_fence_t;

/* Starts watching |db| (open); |probe_key| must outlive the fence. */
void cm_rocksdb_fence_init(cm_rocksdb_fence_t *f, rocksdb_t *db, const char *probe_key,
                           size_t probe_len);

/* Writes |wb| with |wo|. Returns 0, or -1 when the fence is up (nothing written) or the write
 * failed (logged with |what|; the fence goes up). Any thread. */
int cm_rocksdb_write(cm_rocksdb_fence_t *f, rocksdb_writeoptions_t *wo, rocksdb_writebatch_t *wb,
                     const char *what);

/* 1 once a write failed (until restart), else 0. */
int cm_rocksdb_fenced(cm_rocksdb_fence_t *f);

/* 1 when the database can write, else 0: 0 once fenced; after a new background error, a
 * synced probe write decides (success: healthy again; refusal: fenced). Cheap while nothing
 * failed. Meant for one caller at a time (a health thread). */
int cm_rocksdb_healthy(cm_rocksdb_fence_t *f);

#endif
