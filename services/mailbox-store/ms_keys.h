/* ms_keys: the key layout of the RocksDB engine (one column family).
 *
 *   m/<id>/r              mailbox record (ms_record encoding)
 *   m/<id>/i/<hash>       idempotency record of one claim (hash = keyed claim hash, binary)
 *   m/<id>/o/<seq8>       back-reference to an outbox entry of this mailbox (empty value)
 *   x/<exp8><id>          expiry index (exp = expiry in Unix ms, big endian; empty value)
 *   o/<seq8>              outbox entry: kind byte, mailbox id (36), the core's encoded entry
 *
 * <id> is the 36-character lowercase canonical UUID. Every key of a mailbox except its expiry
 * index and its outbox entries starts with "m/<id>/", so deleting a mailbox is one prefix scan
 * (plus the keys the back-references name). Big-endian integers make RocksDB's byte order the
 * numeric order, so the sweeper and the outbox forwarder read in time / sequence order. */
#ifndef MS_KEYS_H
#define MS_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "ms_core.h"

#define MS_KEY_MAX 128
#define MS_KEY_HASH_MAX 64 /* longest claim hash in an idempotency key */

/* Each builder writes into |out| (at least MS_KEY_MAX bytes) and returns the key length. */
size_t ms_key_record(char *out, const char *id);
size_t ms_key_mailbox_prefix(char *out, const char *id); /* "m/<id>/" */
size_t ms_key_mailbox_end(char *out, const char *id);    /* first key after every "m/<id>/" key */
size_t ms_key_idem(char *out, const char *id, const uint8_t *hash, size_t hash_len);
size_t ms_key_outref(char *out, const char *id, uint64_t seq);
size_t ms_key_expiry(char *out, int64_t expires_ms, const char *id);
size_t ms_key_expiry_upto(char *out, int64_t expires_ms); /* first index key after |expires_ms| */
size_t ms_key_outbox(char *out, uint64_t seq);

/* Parsers: 0 when |k| has the shape, else -1. |id| receives a NUL-terminated id. */
int ms_key_parse_expiry(const char *k, size_t len, int64_t *expires_ms, char id[MS_ID_LEN + 1]);
int ms_key_parse_outbox(const char *k, size_t len, uint64_t *seq);
/* Given a key under "m/<id>/", 0 and *seq when it is an outbox back-reference. */
int ms_key_parse_outref(const char *k, size_t len, uint64_t *seq);

#endif
