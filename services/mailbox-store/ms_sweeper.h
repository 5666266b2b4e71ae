/* ms_sweeper: background thread that deletes expired mailboxes through the expiry index in
 * bounded batches (ms_store_sweep), yielding between batches so requests never queue behind
 * it, and that watches RocksDB for background errors. */
#ifndef MS_SWEEPER_H
#define MS_SWEEPER_H

#include <stddef.h>
#include <stdint.h>

#include "ms_store.h"

typedef struct ms_sweeper ms_sweeper_t;

typedef struct {
    ms_store_t *store;
    int64_t interval_ms; /* pause between sweeps once nothing is due */
    size_t batch;        /* mailboxes per ms_store_sweep call */
    /* Called on the sweeper thread after every pass with 1 healthy / 0 RocksDB background
     * error. May be NULL. */
    void (*health)(void *arg, int healthy);
    void *health_arg;
} ms_sweeper_opts_t;

int ms_sweeper_start(const ms_sweeper_opts_t *opts, ms_sweeper_t **out);
/* Stops the thread (finishing at most the current mailbox) and frees. */
void ms_sweeper_stop(ms_sweeper_t *sw);

#endif
