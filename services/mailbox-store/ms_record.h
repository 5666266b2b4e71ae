/* ms_record: the store's own binary encodings, the blobs every engine stores as they are.
 *
 *   mailbox record      version 1, fixed-size fields, length-prefixed blobs (claims only as
 *                       keyed hashes, token data sealed: ms_core_token_seal)
 *   idempotency record  version 0xA1: method, correlation id, and the response to repeat
 *   outbox entry        version 0xB1: kind, notification id, mailbox id, expiry, creation
 *                       time, token type and sealed token data
 *
 * Integers are big-endian, blobs a 4-byte length and the bytes. Decoding does not copy: every
 * ms_blob_t points into the encoded buffer, which must outlive the decoded struct. A decoder
 * rejects every truncation, trailing byte and unknown version. */
#ifndef MS_RECORD_H
#define MS_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "ms_core.h"

enum {
    MS_RIGHT_R = 1,
    MS_RIGHT_W = 2,
    MS_RIGHT_D = 4,
};

typedef struct {
    int64_t created_ms;
    int64_t expires_ms;
    uint8_t rights; /* MS_RIGHT_* bits */
    uint8_t has_receiver;
    uint8_t creator[MS_HASH_LEN];
    uint8_t receiver[MS_HASH_LEN];                  /* meaningful when has_receiver */
    ms_blob_t creator_tok_type, creator_tok_data;   /* data sealed */
    ms_blob_t receiver_tok_type, receiver_tok_data; /* data sealed */
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

/* Method tags of idempotency records. */
enum {
    MS_METHOD_CREATE = 1,
    MS_METHOD_READ_SECURE = 3,
    MS_METHOD_UPDATE = 4,
    MS_METHOD_DELETE = 5,
    MS_METHOD_RELINQUISH = 6,
};

/* The last successful request of one claim on one mailbox, and what it answered. The response
 * fields a method does not have are empty. */
typedef struct {
    uint8_t method;
    ms_blob_t corr; /* at most MS_MAX_CORR_LEN bytes */
    int64_t expires_at_ms;
    ms_blob_t title, description, image_url; /* ReadSecure */
    ms_blob_t payload_type, payload_data;    /* ReadSecure */
} ms_idem_t;

int ms_idem_encode(const ms_idem_t *r, uint8_t **out, size_t *len);
int ms_idem_decode(const uint8_t *buf, size_t len, ms_idem_t *r);

typedef struct {
    uint8_t kind; /* ms_outbox_kind_t */
    char notification_id[MS_ID_LEN + 1];
    char mailbox_id[MS_ID_LEN + 1];
    int64_t mailbox_expires_at_ms, created_at_ms;
    ms_blob_t token_type, token_data; /* data sealed; empty for a cancel marker */
} ms_outbox_rec_t;

int ms_outbox_rec_encode(const ms_outbox_rec_t *r, uint8_t **out, size_t *len);
int ms_outbox_rec_decode(const uint8_t *buf, size_t len, ms_outbox_rec_t *r);

void ms_be64_put(uint8_t *p, uint64_t v);
uint64_t ms_be64_get(const uint8_t *p);

#endif
