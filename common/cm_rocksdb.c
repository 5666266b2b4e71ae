#include "cm_rocksdb.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "cm_log.h"

static uint64_t bg_errors(rocksdb_t *db)
{
    char *v = rocksdb_property_value(db, "rocksdb.background-errors");
    uint64_t n = v ? strtoull(v, NULL, 10) : 0;
    free(v);
    return n;
}

void cm_rocksdb_fence_init(cm_rocksdb_fence_t *f, rocksdb_t *db, const char *probe_key,
                           size_t probe_len)
{
    f->db = db;
    f->probe_key = probe_key;
    f->probe_len = probe_len;
    atomic_store(&f->write_failed, 0);
    atomic_store(&f->bg_errors_seen, bg_errors(db));
}

int cm_rocksdb_write(cm_rocksdb_fence_t *f, rocksdb_writeoptions_t *wo, rocksdb_writebatch_t *wb,
                     const char *what)
{
    if (atomic_load(&f->write_failed))
        return -1;
    char *err = NULL;
    rocksdb_write(f->db, wo, wb, &err);
    if (!err)
        return 0;
    CM_ERROR(NULL, "rocksdb write (%s): %s; refusing writes until restarted", what, err);
    free(err);
    atomic_store(&f->write_failed, 1);
    return -1;
}

int cm_rocksdb_fenced(cm_rocksdb_fence_t *f)
{
    return atomic_load(&f->write_failed) ? 1 : 0;
}

int cm_rocksdb_healthy(cm_rocksdb_fence_t *f)
{
    if (atomic_load(&f->write_failed))
        return 0;
    uint64_t bg = bg_errors(f->db);
    if (bg == atomic_load(&f->bg_errors_seen))
        return 1;
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(wo, 1);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_delete(wb, f->probe_key, f->probe_len);
    int rc = cm_rocksdb_write(f, wo, wb, "background-error probe");
    rocksdb_writebatch_destroy(wb);
    rocksdb_writeoptions_destroy(wo);
    if (rc != 0)
        return 0;
    atomic_store(&f->bg_errors_seen, bg);
    return 1;
}
