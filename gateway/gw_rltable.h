/* gw_rltable: the rate limiter's memory. Token buckets per client, in a fixed-size table that
 * lives only in this process's memory.
 *
 * A client is known only by a keyed hash (SipHash-2-4, OpenSSL) of its address group; the key
 * is random, never leaves the process, and is replaced every |rotate_us|, when every bucket is
 * dropped too. So the table never holds an address, and even a memory dump links hashes to
 * addresses only for the current period.
 *
 * Buckets: a budget of |per_min| tokens a minute and at most |burst| at once; a new client starts
 * full. Memory is bounded: the table is set-associative (8 entries per set) and a new client
 * takes the place of the entry whose buckets are fullest (a full entry is the same as none, so
 * evicting it forgets nothing; clients that used up their budget are evicted last).
 *
 * Thread safety: the table is split into stripes, each with its own mutex; any thread may call
 * any function but gw_rltable_free concurrently. */
#ifndef GW_RLTABLE_H
#define GW_RLTABLE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { GW_RL_WRITE = 0, GW_RL_FAILURE = 1, GW_RL_NBUDGETS } gw_rl_budget_t;

/* "write" / "failure": the metric label and the /v1/config name of a budget. */
const char *gw_rl_budget_name(gw_rl_budget_t b);

typedef struct {
    int64_t per_min; /* tokens added per minute; 0 = this budget is not limited */
    int64_t burst;   /* bucket size, >= 1 */
} gw_rl_rate_t;

/* A bucket level is counted in units of 1/60 000 000 token, so that refilling |per_min| tokens
 * a minute adds exactly |per_min| units per elapsed microsecond: integer math, no drift. */
#define GW_RL_UNIT 60000000LL

/* Largest per_min and burst accepted (keeps every product far from overflow). */
#define GW_RL_MAX_RATE 1000000LL

/* Level |units| after |elapsed_us| more microseconds at |r|, capped at the burst. */
int64_t gw_rl_refill(int64_t units, int64_t elapsed_us, const gw_rl_rate_t *r);

/* Whole seconds until a bucket at |units| holds one token (at least 1): the Retry-After. */
int64_t gw_rl_wait_s(int64_t units, const gw_rl_rate_t *r);

typedef struct gw_rltable gw_rltable_t;

/* A table of about |entries| clients (rounded down to a multiple of 8, at least 8) with the
 * given budget rates (indexed by gw_rl_budget_t), and the key rotation period |rotate_us|
 * (> 0). Returns 0 and *out, or -1 (bad argument or no memory). */
int gw_rltable_new(size_t entries, int64_t rotate_us, const gw_rl_rate_t rates[GW_RL_NBUDGETS],
                   gw_rltable_t **out);
void gw_rltable_free(gw_rltable_t *t);

/* Admission of a request from the client |key| (|klen| bytes, e.g. gw_addr_group_key) at
 * |now_us| (a monotonic clock). Refused when the failure budget has less than one token left
 * (a client that produced too many failed lookups is refused everything that could fail), or
 * when |write| and the write budget is empty; otherwise a write takes its token. Returns -1 when
 * admitted, else the budget that refused, with the Retry-After in *|retry_s|. */
int gw_rltable_admit(gw_rltable_t *t, const uint8_t *key, size_t klen, int write, int64_t now_us,
                     int64_t *retry_s);

/* Takes one token of |b| from |key| (not below zero): the charge for an answer already sent. */
void gw_rltable_charge(gw_rltable_t *t, const uint8_t *key, size_t klen, gw_rl_budget_t b,
                       int64_t now_us);

/* Clients currently held (for tests). */
size_t gw_rltable_count(gw_rltable_t *t, int64_t now_us);

#endif
