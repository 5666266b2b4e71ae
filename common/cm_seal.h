/* cm_seal: secrets at rest under rotating per-deployment keys.
 *
 * A key ring is a small text file of 256-bit keys, each with a numeric id:
 *
 *     # comment lines and blank lines are ignored
 *     1 3f9c...64 hex digits...
 *     2 a0b1...64 hex digits...
 *     primary 1        (optional; without it the highest id is the primary)
 *
 * Ids are 1..255. New values are always written under the primary key; values under any other
 * key of the ring stay readable, which is what makes rotation possible: add a key with a higher
 * id and restart, and remove the old one only once nothing written under it can still be alive
 * (after the longest mailbox lifetime). A `primary` line lets a deployment where several
 * processes read one database (PostgreSQL) first roll out a ring that knows the new key and only
 * then switch writes to it. A file holding nothing but one bare 64-hex-digit key (the format of
 * older single-key files) is the ring {1: that key}.
 *
 * Two uses:
 * - cm_seal_encrypt/decrypt: AES-256-GCM with a random 96-bit nonce. Layout of a sealed value:
 *     version (1 byte, CM_SEAL_VERSION) | key id (1) | nonce (12) | ciphertext | tag (16)
 *   The caller's associated data (e.g. the mailbox id) binds a value to its place: moved to
 *   another mailbox it no longer opens. The version and key id are authenticated too.
 * - cm_seal_hash/hash_verify: HMAC-SHA-256 for values that are only ever compared (device
 *   claims). Layout: key id (1) | HMAC (32). Hash under the primary key for new bindings; verify
 *   under the key id the stored hash names. */
#ifndef CM_SEAL_H
#define CM_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define CM_SEAL_VERSION 1
#define CM_SEAL_KEY_LEN 32
#define CM_SEAL_NONCE_LEN 12
#define CM_SEAL_TAG_LEN 16
#define CM_SEAL_HEADER_LEN (2 + CM_SEAL_NONCE_LEN)
#define CM_SEAL_OVERHEAD (CM_SEAL_HEADER_LEN + CM_SEAL_TAG_LEN)
#define CM_SEAL_MAC_LEN 32
#define CM_SEAL_HASH_LEN (1 + CM_SEAL_MAC_LEN)
#define CM_SEAL_FILE_MAX 65536

typedef enum {
    CM_SEAL_OK = 0,
    CM_SEAL_ERR_FILE,        /* key ring file missing, unreadable or too large */
    CM_SEAL_ERR_SYNTAX,      /* key ring line not "<id> <64 hex>" or "primary <id>" */
    CM_SEAL_ERR_EMPTY,       /* key ring without keys, or primary names an absent id */
    CM_SEAL_ERR_FORMAT,      /* sealed value too short or of an unknown version */
    CM_SEAL_ERR_UNKNOWN_KEY, /* sealed value or hash under a key id not in the ring */
    CM_SEAL_ERR_AUTH,        /* tag check failed: tampered, or other associated data */
    CM_SEAL_ERR_CRYPTO,      /* OpenSSL failed (random source, cipher) */
} cm_seal_err_t;

/* Stable lower-case name of |e| for logs ("unknown_key", ...). */
const char *cm_seal_err_name(cm_seal_err_t e);

typedef struct cm_seal_ring cm_seal_ring_t;

/* Loads the key ring in |path|. On error, |err| (capacity |errcap|) says why and where (line
 * number, never key material). The ring is immutable afterwards and may be shared by threads. */
cm_seal_err_t cm_seal_ring_load(const char *path, cm_seal_ring_t **out, char *err, size_t errcap);

/* For development only: loads |path| when it is set; otherwise uses "<dir>/<name>", creating
 * |dir| and the file with one fresh random key ("1 <hex>", mode 0600) when it does not exist
 * yet, and sets *generated so the caller warns that it is no managed secret. */
cm_seal_err_t cm_seal_ring_load_or_create(const char *path, const char *dir, const char *name,
                                          cm_seal_ring_t **out, int *generated, char *err,
                                          size_t errcap);

/* Writes a ring file with one fresh random key under |id| (O_EXCL, mode 0600). For tools,
 * tests and the development fallback. */
cm_seal_err_t cm_seal_ring_generate(const char *path, uint8_t id);

/* A ring of the one key |key| under |id| (1..255); |key| NULL = a fresh random key (a ring for
 * values that never outlive the process, e.g. in tests). */
cm_seal_err_t cm_seal_ring_from_key(uint8_t id, const uint8_t *key, cm_seal_ring_t **out);

/* Wipes the keys and frees. NULL is fine. */
void cm_seal_ring_free(cm_seal_ring_t *r);

/* The id new values are written under, and how many keys the ring holds. */
uint8_t cm_seal_ring_primary(const cm_seal_ring_t *r);
size_t cm_seal_ring_count(const cm_seal_ring_t *r);

/* Size of the sealed form of |plain_len| bytes. */
static inline size_t cm_seal_sealed_len(size_t plain_len)
{
    return plain_len + CM_SEAL_OVERHEAD;
}

/* Seals |plain| (|n| bytes) under the primary key with associated data |ad| (|adlen| bytes,
 * may be 0) into |out| (cm_seal_sealed_len(n) bytes). */
cm_seal_err_t cm_seal_encrypt(const cm_seal_ring_t *r, const void *ad, size_t adlen,
                              const void *plain, size_t n, uint8_t *out);

/* Opens |sealed| (|n| bytes) with the key it names and associated data |ad| into |out| (at
 * least n - CM_SEAL_OVERHEAD bytes; *outlen = that). *key_id (may be NULL) = the key used. On
 * any error nothing of the plaintext is left in |out|. */
cm_seal_err_t cm_seal_decrypt(const cm_seal_ring_t *r, const void *ad, size_t adlen,
                              const uint8_t *sealed, size_t n, uint8_t *out, size_t *outlen,
                              uint8_t *key_id);

/* Key id a sealed value names, without opening it (for dumps and tests). */
cm_seal_err_t cm_seal_key_id(const uint8_t *sealed, size_t n, uint8_t *key_id);

/* out = primary key id | HMAC-SHA-256(primary key, msg). */
cm_seal_err_t cm_seal_hash(const cm_seal_ring_t *r, const void *msg, size_t n,
                           uint8_t out[CM_SEAL_HASH_LEN]);

/* out = |key_id| | HMAC-SHA-256(key |key_id|, msg): the hash a value stored under an older key
 * would have (to look up rows keyed by a claim's hash during a rotation).
 * CM_SEAL_ERR_UNKNOWN_KEY when the ring has no such key. */
cm_seal_err_t cm_seal_hash_with(const cm_seal_ring_t *r, uint8_t key_id, const void *msg, size_t n,
                                uint8_t out[CM_SEAL_HASH_LEN]);

/* The ids of the ring, primary first, then descending; returns how many (<= 255). */
size_t cm_seal_ring_ids(const cm_seal_ring_t *r, uint8_t ids[255]);

/* Recomputes the HMAC of |msg| under the key |stored| names and compares in constant time.
 * CM_SEAL_OK when equal, CM_SEAL_ERR_AUTH when not, CM_SEAL_ERR_UNKNOWN_KEY when the ring no
 * longer holds that key. */
cm_seal_err_t cm_seal_hash_verify(const cm_seal_ring_t *r, const void *msg, size_t n,
                                  const uint8_t stored[CM_SEAL_HASH_LEN]);

#endif
