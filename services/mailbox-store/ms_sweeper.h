/* ms_sweeper: background thread that deletes expired mailboxes in bounded batches
 * (ms_core_sweep), yielding between batches so requests never queue behind it, publishes the
 * outbox depth, and asks the engine whether it can write (health). */
#ifndef MS_SWEEPER_H
#define MS_SWEEPER_H

#include <stddef.h>
#include <stdint.h>

#include "ms_core.h"

typedef struct ms_sweeper ms_sweeper_t;

typedef struct {
    ms_core_t *core;
    int64_t interval_ms; /* pause between sweeps once nothing is due */
    size_t batch;        /* mailboxes per ms_core_sweep call */
    /* Called on the sweeper thread after every pass with the engine's health (1 can write,
     * 0 not). May be NULL. */
    void (*health)(void *arg, int healthy);
    void *health_arg;
} ms_sweeper_opts_t;

int ms_sweeper_start(const ms_sweeper_opts_t *opts, ms_sweeper_t **out);
/* Stops the thread (finishing at most the current mailbox) and frees. */
void ms_sweeper_stop(ms_sweeper_t *sw);

#endif
