/* ms_claim: device claims are kept only as HMAC-SHA-256 under a per-deployment secret, so a
 * stolen database does not reveal which claim (and so which device) is bound to a mailbox. */
#ifndef MS_CLAIM_H
#define MS_CLAIM_H

#include <stddef.h>
#include <stdint.h>

#include "ms_core.h"

#define MS_CLAIM_KEY_MIN 32
#define MS_CLAIM_KEY_MAX 1024

/* Loads the claim key. With |key_file| set, reads it (at least MS_CLAIM_KEY_MIN bytes; the
 * contents are used as they are). Without it (for local development), uses "<data_dir>/claim.key",
 * creating it with 32 random bytes (hex, mode 0600) on first start; *generated tells the caller to
 * warn. Returns 0 and a malloc'd key in *key and *len, or -1 with a reason in |err|. */
int ms_claim_key_load(const char *key_file, const char *data_dir, uint8_t **key, size_t *len,
                      int *generated, char *err, size_t errcap);

/* out = HMAC-SHA-256(key, claim). Returns 0 or -1. */
int ms_claim_hash(const uint8_t *key, size_t key_len, const char *claim, size_t claim_len,
                  uint8_t out[MS_HASH_LEN]);

/* Constant-time equality of two hashes: 1 equal, 0 not. */
int ms_claim_equal(const uint8_t a[MS_HASH_LEN], const uint8_t b[MS_HASH_LEN]);

#endif
