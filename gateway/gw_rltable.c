/* Token buckets per client in a striped, set-associative table; see gw_rltable.h. */
#include "gw_rltable.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "cm_alloc.h"

#define WAYS 8
#define MAX_STRIPES 64
#define HASH_KEY_LEN 16

typedef struct {
    uint64_t tag; /* keyed hash of the client; 0 = free */
    int64_t last_us;
    int64_t units[GW_RL_NBUDGETS];
} entry_t;

typedef struct {
    pthread_mutex_t mu;
    int64_t epoch; /* key period of the entries; older ones are dropped on first use */
    entry_t *sets; /* not owned: a slice of the table's array, nsets * WAYS entries */
} stripe_t;

struct gw_rltable {
    gw_rl_rate_t rate[GW_RL_NBUDGETS];
    int64_t rotate_us;
    size_t nstripes, sets_per_stripe;
    entry_t *entries;       /* owned */
    stripe_t *stripes;      /* owned */
    EVP_MAC *siphash;       /* owned */
    pthread_mutex_t key_mu; /* guards key and key_epoch */
    int64_t key_epoch;
    uint8_t key[HASH_KEY_LEN];
};

const char *gw_rl_budget_name(gw_rl_budget_t b)
{
    switch (b) {
    case GW_RL_WRITE:
        return "write";
    case GW_RL_FAILURE:
        return "failure";
    default:
        return "unknown";
    }
}

/* ---- bucket math --------------------------------------------------------------------------- */

int64_t gw_rl_refill(int64_t units, int64_t elapsed_us, const gw_rl_rate_t *r)
{
    int64_t cap = r->burst * GW_RL_UNIT;
    if (units >= cap)
        return cap;
    if (elapsed_us <= 0 || r->per_min <= 0)
        return units;
    /* compare before multiplying: a long idle time must not overflow */
    if (elapsed_us >= (cap - units) / r->per_min + 1)
        return cap;
    int64_t v = units + elapsed_us * r->per_min;
    return v > cap ? cap : v;
}

int64_t gw_rl_wait_s(int64_t units, const gw_rl_rate_t *r)
{
    int64_t need = GW_RL_UNIT - units;
    if (need <= 0 || r->per_min <= 0)
        return 1;
    int64_t us = (need + r->per_min - 1) / r->per_min;
    int64_t s = (us + 999999) / 1000000;
    return s < 1 ? 1 : s;
}

/* ---- table --------------------------------------------------------------------------------- */

int gw_rltable_new(size_t entries, int64_t rotate_us, const gw_rl_rate_t rates[GW_RL_NBUDGETS],
                   gw_rltable_t **out)
{
    *out = NULL;
    if (rotate_us <= 0)
        return -1;
    for (int b = 0; b < GW_RL_NBUDGETS; b++)
        if (rates[b].per_min < 0 || rates[b].per_min > GW_RL_MAX_RATE || rates[b].burst < 1 ||
            rates[b].burst > GW_RL_MAX_RATE)
            return -1;
    size_t nsets = entries / WAYS;
    if (nsets == 0)
        nsets = 1;
    gw_rltable_t *t = cm_xcalloc(1, sizeof(*t));
    memcpy(t->rate, rates, sizeof(t->rate));
    t->rotate_us = rotate_us;
    t->nstripes = nsets < MAX_STRIPES ? nsets : MAX_STRIPES;
    t->sets_per_stripe = nsets / t->nstripes;
    t->key_epoch = -1;
    pthread_mutex_init(&t->key_mu, NULL);
    t->entries = cm_xcalloc(t->nstripes * t->sets_per_stripe * WAYS, sizeof(entry_t));
    t->stripes = cm_xcalloc(t->nstripes, sizeof(stripe_t));
    t->siphash = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    if (!t->siphash)
        goto fail;
    for (size_t i = 0; i < t->nstripes; i++) {
        pthread_mutex_init(&t->stripes[i].mu, NULL);
        t->stripes[i].epoch = -1;
        t->stripes[i].sets = t->entries + i * t->sets_per_stripe * WAYS;
    }
    *out = t;
    return 0;
fail:
    gw_rltable_free(t);
    return -1;
}

void gw_rltable_free(gw_rltable_t *t)
{
    if (!t)
        return;
    if (t->stripes)
        for (size_t i = 0; i < t->nstripes; i++)
            pthread_mutex_destroy(&t->stripes[i].mu);
    pthread_mutex_destroy(&t->key_mu);
    EVP_MAC_free(t->siphash);
    OPENSSL_cleanse(t->key, sizeof(t->key));
    free(t->stripes);
    free(t->entries);
    free(t);
}

/* The keyed hash of |key| under the newest key (made when |epoch| is past the current one).
 * Returns 0 with the tag (never 0) and the key's epoch, or -1 (OpenSSL failed). */
static int client_tag(gw_rltable_t *t, const uint8_t *key, size_t klen, int64_t epoch,
                      uint64_t *tag, int64_t *key_epoch)
{
    uint8_t k[HASH_KEY_LEN];
    pthread_mutex_lock(&t->key_mu);
    if (epoch > t->key_epoch) {
        /* the old key is overwritten: nothing links past tags to addresses any more */
        if (RAND_bytes(t->key, sizeof(t->key)) != 1) {
            pthread_mutex_unlock(&t->key_mu);
            return -1;
        }
        t->key_epoch = epoch;
    }
    memcpy(k, t->key, sizeof(k));
    *key_epoch = t->key_epoch;
    pthread_mutex_unlock(&t->key_mu);

    int rc = -1;
    uint8_t mac[16];
    size_t maclen = 0;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(t->siphash);
    if (ctx && EVP_MAC_init(ctx, k, sizeof(k), NULL) == 1 && EVP_MAC_update(ctx, key, klen) == 1 &&
        EVP_MAC_final(ctx, mac, &maclen, sizeof(mac)) == 1 && maclen >= 8) {
        uint64_t v;
        memcpy(&v, mac, sizeof(v));
        *tag = v ? v : 1;
        rc = 0;
    }
    EVP_MAC_CTX_free(ctx);
    OPENSSL_cleanse(k, sizeof(k));
    return rc;
}

/* Locks the stripe of |tag| for |key_epoch| and returns its set, or NULL (nothing locked) when
 * the stripe already moved to a newer key than the one |tag| was made with. */
static entry_t *lock_set(gw_rltable_t *t, uint64_t tag, int64_t key_epoch, stripe_t **sp)
{
    stripe_t *s = &t->stripes[tag % t->nstripes];
    pthread_mutex_lock(&s->mu);
    if (s->epoch < key_epoch) {
        memset(s->sets, 0, t->sets_per_stripe * WAYS * sizeof(entry_t));
        s->epoch = key_epoch;
    } else if (s->epoch > key_epoch) {
        pthread_mutex_unlock(&s->mu);
        return NULL;
    }
    *sp = s;
    return s->sets + ((tag / t->nstripes) % t->sets_per_stripe) * WAYS;
}

static void refill_entry(const gw_rltable_t *t, entry_t *e, int64_t now_us)
{
    int64_t elapsed = now_us - e->last_us;
    for (int b = 0; b < GW_RL_NBUDGETS; b++)
        e->units[b] = gw_rl_refill(e->units[b], elapsed, &t->rate[b]);
    if (elapsed > 0)
        e->last_us = now_us;
}

/* How close to full an entry is (after refilling): the eviction order. */
static int64_t fullness(const gw_rltable_t *t, const entry_t *e)
{
    int64_t score = 0;
    for (int b = 0; b < GW_RL_NBUDGETS; b++)
        score += e->units[b] * 1024 / (t->rate[b].burst * GW_RL_UNIT);
    return score;
}

/* The entry of |tag| in |set|, refilled to |now_us|; with |add|, a new full one (evicting the
 * fullest) when absent, else NULL. */
static entry_t *find(gw_rltable_t *t, entry_t *set, uint64_t tag, int64_t now_us, int add)
{
    entry_t *victim = NULL;
    int64_t vscore = -1;
    for (int i = 0; i < WAYS; i++) {
        entry_t *e = &set[i];
        if (e->tag == tag) {
            refill_entry(t, e, now_us);
            return e;
        }
        if (!add)
            continue;
        int64_t score;
        if (!e->tag) {
            score = INT64_MAX;
        } else {
            refill_entry(t, e, now_us);
            score = fullness(t, e);
        }
        if (score > vscore || (score == vscore && victim && e->last_us < victim->last_us)) {
            victim = e;
            vscore = score;
        }
    }
    if (!victim)
        return NULL;
    victim->tag = tag;
    victim->last_us = now_us;
    for (int b = 0; b < GW_RL_NBUDGETS; b++)
        victim->units[b] = t->rate[b].burst * GW_RL_UNIT;
    return victim;
}

int gw_rltable_admit(gw_rltable_t *t, const uint8_t *key, size_t klen, int write, int64_t now_us,
                     int64_t *retry_s)
{
    int limit_write = write && t->rate[GW_RL_WRITE].per_min > 0;
    int limit_fail = t->rate[GW_RL_FAILURE].per_min > 0;
    if (!limit_write && !limit_fail)
        return -1;
    uint64_t tag;
    int64_t key_epoch;
    if (client_tag(t, key, klen, now_us / t->rotate_us, &tag, &key_epoch) != 0)
        return -1; /* fail open: a crypto failure must not take the relay down */
    stripe_t *s;
    entry_t *set = lock_set(t, tag, key_epoch, &s);
    if (!set)
        return -1;
    int refused = -1;
    /* unknown client: full buckets, nothing to check unless a write must take its token */
    entry_t *e = find(t, set, tag, now_us, limit_write);
    if (e && limit_fail && e->units[GW_RL_FAILURE] < GW_RL_UNIT) {
        refused = GW_RL_FAILURE;
        *retry_s = gw_rl_wait_s(e->units[GW_RL_FAILURE], &t->rate[GW_RL_FAILURE]);
    } else if (e && limit_write) {
        if (e->units[GW_RL_WRITE] < GW_RL_UNIT) {
            refused = GW_RL_WRITE;
            *retry_s = gw_rl_wait_s(e->units[GW_RL_WRITE], &t->rate[GW_RL_WRITE]);
        } else {
            e->units[GW_RL_WRITE] -= GW_RL_UNIT;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return refused;
}

void gw_rltable_charge(gw_rltable_t *t, const uint8_t *key, size_t klen, gw_rl_budget_t b,
                       int64_t now_us)
{
    if ((int)b < 0 || b >= GW_RL_NBUDGETS || t->rate[b].per_min <= 0)
        return;
    uint64_t tag;
    int64_t key_epoch;
    if (client_tag(t, key, klen, now_us / t->rotate_us, &tag, &key_epoch) != 0)
        return;
    stripe_t *s;
    entry_t *set = lock_set(t, tag, key_epoch, &s);
    if (!set)
        return;
    entry_t *e = find(t, set, tag, now_us, 1);
    if (e)
        e->units[b] = e->units[b] > GW_RL_UNIT ? e->units[b] - GW_RL_UNIT : 0;
    pthread_mutex_unlock(&s->mu);
}

size_t gw_rltable_count(gw_rltable_t *t, int64_t now_us)
{
    int64_t epoch = now_us / t->rotate_us;
    size_t n = 0;
    for (size_t i = 0; i < t->nstripes; i++) {
        stripe_t *s = &t->stripes[i];
        pthread_mutex_lock(&s->mu);
        if (s->epoch >= epoch)
            for (size_t j = 0; j < t->sets_per_stripe * WAYS; j++)
                n += s->sets[j].tag != 0;
        pthread_mutex_unlock(&s->mu);
    }
    return n;
}
