/* ms_keys: the RocksDB key layout of the mailbox-store (one column family).
 *
 *   m/<id>/r              mailbox record (ms_record encoding)
 *   m/<id>/i/<hash32>     idempotency record of one claim (hash = keyed claim hash, binary)
 *   m/<id>/o/<seq8>       back-reference to an outbox entry of this mailbox (empty value)
 *   x/<exp8><id>          expiry index (exp = expiry in Unix ms, big endian; empty value)
 *   o/<seq8>              outbox entry (ms_outbox_kind byte + packed tigress.push.v1.Notification)
 *
 * <id> is the 36-character lowercase canonical UUID. Every key of a mailbox except its expiry
 * index and its outbox entries starts with "m/<id>/", so deleting a mailbox is one prefix scan
 * (plus the keys the back-references name). Big-endian integers make RocksDB's byte order the
 * numeric order, so the sweeper and the outbox forwarder read in time / sequence order. */
#ifndef MS_KEYS_H
#define MS_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define MS_ID_LEN 36
#define MS_HASH_LEN 32
#define MS_KEY_MAX 80

/* Each builder writes into |out| (at least MS_KEY_MAX bytes) and returns the key length. */
size_t ms_key_record(char *out, const char *id);
size_t ms_key_mailbox_prefix(char *out, const char *id); /* "m/<id>/" */
size_t ms_key_mailbox_end(char *out, const char *id);    /* first key after every "m/<id>/" key */
size_t ms_key_idem(char *out, const char *id, const uint8_t hash[MS_HASH_LEN]);
size_t ms_key_outref(char *out, const char *id, uint64_t seq);
size_t ms_key_expiry(char *out, int64_t expires_ms, const char *id);
size_t ms_key_expiry_upto(char *out, int64_t expires_ms); /* first index key after |expires_ms| */
size_t ms_key_outbox(char *out, uint64_t seq);

/* Parsers: 0 when |k| has the shape, else -1. |id| receives a NUL-terminated id. */
int ms_key_parse_expiry(const char *k, size_t len, int64_t *expires_ms, char id[MS_ID_LEN + 1]);
int ms_key_parse_outbox(const char *k, size_t len, uint64_t *seq);
/* Given a key under "m/<id>/", 0 and *seq when it is an outbox back-reference. */
int ms_key_parse_outref(const char *k, size_t len, uint64_t *seq);

void ms_be64_put(uint8_t *p, uint64_t v);
uint64_t ms_be64_get(const uint8_t *p);

#endif
