/* cm_shard: which mailbox-store shard owns a mailbox, by rendezvous (highest random weight)
 * hashing of the mailbox id over the configured shard addresses.
 *
 * score(shard, id) = first 8 bytes, big-endian, of SHA-256(shard || 0x00 || id); the shard
 * with the highest score owns the id (ties, which need a 64-bit collision, go to the smaller
 * address by strcmp). The result depends only on the SET of addresses, not their order, so
 * every gateway replica agrees as long as they are given the same shards. Adding a shard moves
 * only the mailboxes the new shard wins (about 1/(N+1) of them), all onto the new shard;
 * removing one moves only that shard's mailboxes.
 *
 * Callers hash the canonical lowercase mailbox id (cm_uuid_canonical), so "ABC..." and
 * "abc..." land on the same shard. Shard addresses must be spelled identically everywhere
 * (e.g. "mailbox-store-0.mailbox-store.tigress.svc.cluster.local:7001"). */
#ifndef CM_SHARD_H
#define CM_SHARD_H

#include <stddef.h>
#include <stdint.h>

typedef struct cm_shards cm_shards_t;

/* Parses a comma-separated address list ("a:7001,b:7001"; blanks around items are ignored).
 * Rejects an empty list, an empty item and duplicates. Returns 0 and *out (free with
 * cm_shards_free), or -1. */
int cm_shards_parse(const char *list, cm_shards_t **out);
void cm_shards_free(cm_shards_t *s);

size_t cm_shards_count(const cm_shards_t *s);
/* The i-th address as given in the list (i < count); owned by |s|. */
const char *cm_shards_addr(const cm_shards_t *s, size_t i);

/* Index (into the parsed list) of the shard owning |id|. */
size_t cm_shards_pick(const cm_shards_t *s, const char *id, size_t idlen);

/* The score above, exposed for tests and for tools that explain a placement. */
uint64_t cm_shard_score(const char *addr, const char *id, size_t idlen);

/* Stateless form over a plain array of |n| >= 1 addresses. */
size_t cm_shard_rendezvous(const char *const *addrs, size_t n, const char *id, size_t idlen);

#endif
