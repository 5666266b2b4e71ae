#include "ms_engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ms_outbox_entries_free(ms_outbox_entry_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].blob);
        e[i].blob = NULL;
        e[i].len = 0;
    }
}

int ms_engine_kind_parse(const char *name, ms_engine_kind_t *kind)
{
    if (name && strcmp(name, "rocksdb") == 0)
        *kind = MS_ENGINE_ROCKSDB;
    else if (name && strcmp(name, "postgres") == 0)
        *kind = MS_ENGINE_POSTGRES;
    else
        return -1;
    return 0;
}

ms_err_t ms_engine_open(const ms_engine_opts_t *o, ms_engine_t **out, char *err, size_t errcap)
{
    switch (o->kind) {
    case MS_ENGINE_ROCKSDB:
        return ms_engine_rocks_open(&o->rocksdb, out, err, errcap);
    case MS_ENGINE_POSTGRES:
#ifdef MS_HAVE_POSTGRES
        return ms_engine_pg_open(&o->pg, out, err, errcap);
#else
        snprintf(err, errcap,
                 "this mailbox-store was built without the postgres engine "
                 "(libpq and ms_engine_pg.c)");
        return MS_ERR_INVALID;
#endif
    }
    snprintf(err, errcap, "unknown storage engine %d", (int)o->kind);
    return MS_ERR_INVALID;
}
