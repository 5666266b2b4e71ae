/* gw_json: the pure (no I/O, no threads) half of the public API v1: request body parsing and
 * validation into C structs, response bodies, the attestation header format, and the small text
 * checks they need (UTF-8, RFC 3339, media type).
 *
 * Everything here is deterministic given its inputs (the clock is a parameter), so it is unit
 * tested and fuzzed without a server. Validation follows the draft as gateway/API.md describes it;
 * where the draft leaves a choice open, the choice is stated at the function. */
#ifndef GW_JSON_H
#define GW_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "cm_uuid.h"
#include "gw_corr.h"
#include "gw_err.h"

/* Byte caps of the display strings (gateway/API.md). */
#define GW_TITLE_MAX 256
#define GW_DESCRIPTION_MAX 1024
#define GW_IMAGE_URL_MAX 2048
/* Not in the draft: bounds a push token so one mailbox cannot carry an arbitrary blob. */
#define GW_TOKEN_DATA_MAX 4096
/* IV (12) + GCM tag (16): the smallest ciphertext the draft (§7) can produce. */
#define GW_PAYLOAD_MIN 28

/* A validation failure: |err| gives the status and the machine code of the answer (gw_err.h),
 * |message| a short human text naming the field; neither carries request data. */
typedef struct {
    gw_err_t err;
    char message[160];
} gw_json_err_t;

typedef struct {
    char type[24]; /* one of AES128, AES256, AEAD_AES_128_GCM, AEAD_AES_256_GCM */
    uint8_t *data; /* owned (malloc); decoded ciphertext, >= GW_PAYLOAD_MIN bytes */
    size_t data_len;
} gw_payload_t;

typedef struct {
    int present;
    char type[24];    /* com.apple.apns | com.google.fcm | webhook */
    char *token_data; /* owned (malloc); NUL-terminated, non-empty */
} gw_token_t;

typedef struct {
    char mailbox_id[CM_UUID_STRLEN + 1]; /* lowercase canonical v4 */
    int id_generated;                    /* 1 when the body had no mailboxIdentifier */
    gw_payload_t payload;
    char *title;       /* owned; never NULL after a successful parse ("" allowed) */
    char *description; /* owned; never NULL ("" when absent) */
    char *image_url;   /* owned; never NULL ("" when absent) */
    gw_token_t token;
    char access_rights[4]; /* subset of "RWD" in that order; "" = absent (store default RD) */
    int64_t ttl_seconds;   /* 1 .. max_ttl */
} gw_create_body_t;

typedef struct {
    gw_payload_t payload;
    gw_token_t token; /* present is always 1 after a successful parse */
} gw_update_body_t;

/* Parses and validates a CreateMailbox body. |now_ms| (Unix epoch ms) turns an "expiration"
 * into a lifetime; |max_ttl| is the configured maximum in seconds. Rules:
 *  - the body must be UTF-8 JSON, an object, with nothing but whitespace after it; a "\u0000"
 *    escape anywhere is refused (cJSON would silently cut the string there);
 *  - mailboxIdentifier: optional, a v4 UUID; when absent a fresh v4 is generated;
 *  - payload {type, data}: data is base64, standard or URL alphabet, padding optional;
 *  - displayInformation: an object with a string title; description and imageUrl (or
 *    imageURL) optional strings; byte caps above;
 *  - notificationToken: optional; when present type (or the draft's figure 3 "name") and tokenData
 *    are required non-empty strings and type is a known provider;
 *  - mailboxConfiguration: required; accessRights optional but, when present, a non-empty
 *    subset of "RWD" without repeats (any order, upper case); timeToLive (decimal string or
 *    integral JSON number, seconds) or expiration (RFC 3339); timeToLive wins when both come;
 *    the lifetime must be 1 .. max_ttl.
 * Unknown fields are ignored. Returns 0 and fills |out| (release with gw_create_body_free), or
 * -1 with |err| set and |out| left empty. */
int gw_json_parse_create(const uint8_t *body, size_t len, int64_t now_ms, int64_t max_ttl,
                         gw_create_body_t *out, gw_json_err_t *err);
void gw_create_body_free(gw_create_body_t *b);

/* Parses an UpdateMailbox body: payload and notificationToken both required (draft §6.2.4),
 * same field rules as Create. Returns 0 or -1 with |err|. */
int gw_json_parse_update(const uint8_t *body, size_t len, gw_update_body_t *out,
                         gw_json_err_t *err);
void gw_update_body_free(gw_update_body_t *b);

/* The deviceAttestation header (gateway/API.md, Attestation): base64url (padding optional) of a
 * JSON object
 * {"attestationObject": b64url, "clientDataJSON": b64url}. Returns 0 and two malloc'd buffers,
 * or -1 when the value is not in that format (the caller answers 401). */
int gw_json_parse_attestation(const char *value, uint8_t **att_obj, size_t *att_obj_len,
                              uint8_t **client_data, size_t *client_data_len);

/* ---- response bodies (malloc'd NUL-terminated JSON; *len gets the length; NULL on OOM) --- */

/* {"error":{"code":<gw_err_code(err)>,"message":<message, or gw_err_message(err) if NULL>}} */
char *gw_json_error_body(gw_err_t err, const char *message, size_t *len);
char *gw_json_create_response(const char *url_link, int push_supported, size_t *len);
/* |expires_at_ms| is rendered as RFC 3339 UTC with second precision. */
char *gw_json_read_response(const char *title, const char *description, const char *image_url,
                            const char *payload_type, const uint8_t *data, size_t data_len,
                            int64_t expires_at_ms, size_t *len);

/* ---- small checks ------------------------------------------------------------------------ */

/* 1 when |s| (|len| bytes) is well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, nothing
 * above U+10FFFF); else 0. */
int gw_utf8_valid(const uint8_t *s, size_t len);

/* Parses an RFC 3339 date-time ("2026-11-23T07:00:00Z", optional fraction, "Z" or +hh:mm) into
 * Unix epoch milliseconds. Returns 0 or -1. */
int gw_rfc3339_parse(const char *s, int64_t *out_ms);
/* Formats |ms| as "YYYY-MM-DDTHH:MM:SSZ" (seconds truncated toward the past). |out| >= 32. */
void gw_rfc3339_format(int64_t ms, char out[32]);

/* 1 when a Content-Type value names application/json (case-insensitive, parameters allowed);
 * else 0 (also for NULL). */
int gw_media_type_is_json(const char *content_type);

/* A version 4 UUID derived from the creator's |claim| (canonical) and |correlation_id|, for a
 * Create without mailboxIdentifier against a sharded store: a retry of the same request must
 * reach the shard that saw the first try, and shards are picked by mailbox id. The 122 bits
 * come from SHA-256 over both values (the claim is the device's secret). */
void gw_derive_mailbox_id(const char *claim, const char *correlation_id,
                          char out[CM_UUID_STRLEN + 1]);

#endif
