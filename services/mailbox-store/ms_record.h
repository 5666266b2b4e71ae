/* ms_record: binary encoding of a stored mailbox and of an idempotency record.
 *
 * A mailbox record is a version byte, fixed-size fields and length-prefixed blobs. Decoding
 * does not copy: every ms_blob_t points into the encoded buffer, which must outlive the
 * decoded struct. Claims appear only as keyed hashes (see ms_claim.h). */
#ifndef MS_RECORD_H
#define MS_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "ms_keys.h"

enum {
    MS_RIGHT_R = 1,
    MS_RIGHT_W = 2,
    MS_RIGHT_D = 4,
};

typedef struct {
    const uint8_t *p; /* not owned */
    size_t n;
} ms_blob_t;

typedef struct {
    int64_t created_ms;
    int64_t expires_ms;
    uint8_t rights; /* MS_RIGHT_* bits */
    uint8_t has_receiver;
    uint8_t creator[MS_HASH_LEN];
    uint8_t receiver[MS_HASH_LEN]; /* meaningful when has_receiver */
    ms_blob_t creator_tok_type, creator_tok_data;
    ms_blob_t receiver_tok_type, receiver_tok_data;
    ms_blob_t title, description, image_url;
    ms_blob_t payload_type, payload_data;
} ms_record_t;

/* Encodes |r| into a malloc'd buffer (*out, *len). Returns 0 (aborts on out of memory). */
int ms_record_encode(const ms_record_t *r, uint8_t **out, size_t *len);

/* Decodes |buf| into |r|. Returns 0, or -1 when the bytes are not a valid record. */
int ms_record_decode(const uint8_t *buf, size_t len, ms_record_t *r);

/* Parses accessRights: a non-empty subset of "RWD" in any order without repeats, or "" for the
 * default "RD". Returns 0 and the bits, or -1. */
int ms_rights_parse(const char *s, uint8_t *bits);

/* Idempotency record: the method, the correlation id and the packed response (stored already
 * marked duplicate). Encoded: method byte, id length byte, id, response. */
int ms_idem_encode(uint8_t method, const char *corr, const uint8_t *resp, size_t resp_len,
                   uint8_t **out, size_t *len);
int ms_idem_decode(const uint8_t *buf, size_t len, uint8_t *method, ms_blob_t *corr,
                   ms_blob_t *resp);

#endif
