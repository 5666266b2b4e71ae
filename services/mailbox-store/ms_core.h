/* ms_core: every mailbox rule (README "Rules") in C domain types, over a storage engine
 * (ms_engine.h). No gRPC or protobuf here: ms_service.c maps the wire messages and status codes
 * to and from these types in one place.
 *
 * Atomicity: each claim-bearing operation runs as one engine transaction scoped to its mailbox
 * (ms_engine_run): the core reads the record and the idempotency record, decides, and queues
 * its writes; the engine commits them atomically or re-runs the decision after a conflict. So
 * check-then-write sequences such as "receiver unbound -> bind me" cannot interleave, on one
 * process (RocksDB: stripe locks) or on several replicas (PostgreSQL: row locks).
 *
 * Idempotency: a claim-bearing request with a non-empty correlation id that matches the last
 * successful request of the same claim on the same mailbox, for the same method, gets that
 * request's response again, marked duplicate, and changes nothing. Records live under the
 * mailbox and die with it (so a repeated Delete answers MS_ERR_NOT_FOUND).
 *
 * Stored bytes: mailbox records, idempotency records and outbox entries are the core's own
 * versioned binary encodings (ms_record.h); engines store them as opaque blobs next to the few
 * columns they need. Notification tokens pass through ms_core_token_seal / ms_core_token_open
 * on their way into and out of every stored blob, and device claims through ms_core_claim_hash.
 *
 * Keys at rest (common/cm_seal.h): tokens are sealed with AES-256-GCM under the token key ring,
 * the mailbox id as associated data; claims are stored as key id + HMAC-SHA-256 under the claim
 * key ring. New values use each ring's primary key; stored values name their key id, so a claim
 * bound under an older claim key still matches and a token sealed under an older token key
 * still opens, as long as the key is in the ring (rotation). */
#ifndef MS_CORE_H
#define MS_CORE_H

#include <stddef.h>
#include <stdint.h>

#define MS_ID_LEN 36   /* canonical lowercase UUID */
#define MS_HASH_LEN 33 /* keyed claim hash: claim key id + HMAC-SHA-256 (CM_SEAL_HASH_LEN) */
#define MS_MAX_CLAIM_LEN 1024
#define MS_MAX_CORR_LEN 255
#define MS_DETAIL_LEN 160

/* One error enum for the store: the core's answers and the engines' failures. ms_service maps
 * it to gRPC status codes (in brackets). */
typedef enum {
    MS_OK = 0,
    MS_ERR_INVALID = -1,      /* malformed field or lifetime out of range [INVALID_ARGUMENT] */
    MS_ERR_NOT_FOUND = -2,    /* unknown or expired mailbox [NOT_FOUND] */
    MS_ERR_EXISTS = -3,       /* id taken at Create [ALREADY_EXISTS] */
    MS_ERR_DENIED = -4,       /* claim not bound, or right missing [PERMISSION_DENIED] */
    MS_ERR_PRECONDITION = -5, /* the creator tried to Relinquish [FAILED_PRECONDITION] */
    MS_ERR_UNAVAILABLE = -6,  /* storage failed or unreachable; nothing was written [UNAVAILABLE] */
    MS_ERR_RETRY = -7,        /* engine: retryable conflict (serialization failure, deadlock,
                                 lost race on a new row): the transaction is re-run; never
                                 returned by a core operation [ABORTED if it ever escapes] */
    MS_ERR_CORRUPT = -8,      /* stored bytes unreadable [INTERNAL] */
    MS_ERR_INTERNAL = -9,     /* bug or resource failure [INTERNAL] */
} ms_err_t;

/* "OK", "INVALID", "NOT_FOUND", ... (static string; "UNKNOWN" for other values). */
const char *ms_err_name(ms_err_t e);

/* Bytes that are not owned by the struct holding them. */
typedef struct {
    const uint8_t *p;
    size_t n;
} ms_blob_t;

/* Why an operation failed, for the caller's error message. Never holds a claim, token or
 * payload. */
typedef struct {
    char msg[MS_DETAIL_LEN];
} ms_detail_t;

/* ---- domain requests and responses ----
 * Request strings are borrowed NUL-terminated strings; NULL reads as "". */

typedef struct {
    const char *title, *description, *image_url;
} ms_display_t;

typedef struct {
    const char *type; /* required ("" or NULL: INVALID) */
    ms_blob_t data;
} ms_payload_t;

typedef struct {
    const char *type; /* "" or NULL: no token */
    const char *data; /* required when type is set */
} ms_token_t;

typedef struct {
    const char *mailbox_id, *device_claim, *correlation_id;
    int64_t ttl_seconds;
    const char *access_rights; /* subset of "RWD"; "" = "RD" */
    ms_display_t display;
    ms_payload_t payload;
    ms_token_t token;
} ms_create_req_t;

typedef struct {
    char mailbox_id[MS_ID_LEN + 1];
    int64_t expires_at_ms;
    int duplicate;
} ms_create_resp_t;

typedef struct {
    const char *mailbox_id;
} ms_read_display_req_t;

/* Strings point into |mem|: free with ms_read_display_resp_free. */
typedef struct {
    ms_display_t display;
    int64_t expires_at_ms;
    void *mem; /* owned */
} ms_read_display_resp_t;

/* ReadSecure, Delete and Relinquish carry the same fields. */
typedef struct {
    const char *mailbox_id, *device_claim, *correlation_id;
} ms_claim_req_t;

typedef ms_claim_req_t ms_read_secure_req_t;
typedef ms_claim_req_t ms_delete_req_t;
typedef ms_claim_req_t ms_relinquish_req_t;

/* Strings and payload bytes point into |mem|: free with ms_read_secure_resp_free. */
typedef struct {
    ms_display_t display;
    ms_payload_t payload;
    int64_t expires_at_ms;
    int duplicate;
    void *mem; /* owned */
} ms_read_secure_resp_t;

typedef struct {
    const char *mailbox_id, *device_claim, *correlation_id;
    ms_payload_t payload;
    ms_token_t token; /* stored as the updater's token when set */
} ms_update_req_t;

/* Update, Delete and Relinquish answer only whether it was a duplicate. */
typedef struct {
    int duplicate;
} ms_ack_resp_t;

/* ---- the core ---- */

typedef struct ms_core ms_core_t;
typedef struct ms_engine ms_engine_t;       /* ms_engine.h */
typedef struct cm_seal_ring cm_seal_ring_t; /* cm_seal.h */

typedef struct {
    ms_engine_t *engine; /* not owned; must outlive the core */
    int64_t max_ttl_s;   /* Create: 1 <= ttl <= max_ttl_s */
    /* Claim key ring (not owned; must outlive the core). NULL: the single key |claim_key|
     * (exactly 32 bytes; copied) under id 1. */
    const cm_seal_ring_t *claim_ring;
    const uint8_t *claim_key;
    size_t claim_key_len;
    /* Token key ring (not owned; must outlive the core). NULL: a random key of this core's
     * lifetime (tests that never reopen what they stored). */
    const cm_seal_ring_t *token_ring;
    int64_t (*now_ms)(void *arg); /* clock (Unix ms); NULL = realtime. Tests inject one. */
    void *now_arg;
    /* Called (from a request thread, after the commit, without locks held) when an operation
     * added outbox entries, so a forwarder can wake up. May be NULL. */
    void (*outbox_hook)(void *arg);
    void *outbox_arg;
} ms_core_opts_t;

/* Returns MS_OK and the core in *out, or MS_ERR_INVALID (no engine, no claim key). */
ms_err_t ms_core_new(const ms_core_opts_t *opts, ms_core_t **out);
void ms_core_del(ms_core_t *c);
ms_engine_t *ms_core_engine(ms_core_t *c);
int64_t ms_core_now_ms(ms_core_t *c);

/* The operations. Each returns MS_OK with |resp| set, or an error with |detail| (may be NULL)
 * saying why and |resp| untouched (nothing to free). Never MS_ERR_RETRY. */
ms_err_t ms_core_create(ms_core_t *c, const ms_create_req_t *req, ms_create_resp_t *resp,
                        ms_detail_t *detail);
ms_err_t ms_core_read_display(ms_core_t *c, const ms_read_display_req_t *req,
                              ms_read_display_resp_t *resp, ms_detail_t *detail);
ms_err_t ms_core_read_secure(ms_core_t *c, const ms_read_secure_req_t *req,
                             ms_read_secure_resp_t *resp, ms_detail_t *detail);
ms_err_t ms_core_update(ms_core_t *c, const ms_update_req_t *req, ms_ack_resp_t *resp,
                        ms_detail_t *detail);
ms_err_t ms_core_delete(ms_core_t *c, const ms_delete_req_t *req, ms_ack_resp_t *resp,
                        ms_detail_t *detail);
ms_err_t ms_core_relinquish(ms_core_t *c, const ms_relinquish_req_t *req, ms_ack_resp_t *resp,
                            ms_detail_t *detail);

void ms_read_display_resp_free(ms_read_display_resp_t *r);
void ms_read_secure_resp_free(ms_read_secure_resp_t *r);

/* Sweeper step at the core's clock: the engine deletes up to |batch| expired mailboxes with
 * everything they own (no cancel marker: push-dispatch never delivers after the mailbox's
 * expiry). *deleted gets the count, *more 1 when more may be due. */
ms_err_t ms_core_sweep(ms_core_t *c, size_t batch, size_t *deleted, int *more);

/* ---- outbox entries, decoded for the forwarder ---- */

typedef enum {
    MS_OUTBOX_NOTIFY = 'N', /* tell the other party's token that the mailbox changed */
    MS_OUTBOX_CANCEL = 'C', /* without a token: the mailbox was deleted, drop what is queued for
                               it; with a token: that party left (the receiver relinquished),
                               drop what is queued for its token */
} ms_outbox_kind_t;

typedef struct {
    ms_outbox_kind_t kind;
    char notification_id[MS_ID_LEN + 1];
    char mailbox_id[MS_ID_LEN + 1];
    int64_t mailbox_expires_at_ms;
    int64_t created_at_ms;
    char *token_type; /* owned, NUL-terminated; "" for a mailbox cancel marker */
    char *token_data; /* owned, NUL-terminated, opened (plain); "" for a mailbox cancel marker */
} ms_notification_t;

struct ms_outbox_entry; /* ms_engine.h */

/* Decodes an outbox entry's blob (opening its token). MS_OK, or MS_ERR_CORRUPT. Free |out|
 * with ms_notification_free in both cases. */
ms_err_t ms_core_outbox_decode(ms_core_t *c, const struct ms_outbox_entry *e,
                               ms_notification_t *out);
void ms_notification_free(ms_notification_t *n);

/* ---- the single paths of secrets into and out of stored bytes ---- */

/* Claim -> the hash new bindings and idempotency records are stored under (the primary claim
 * key's id + HMAC). MS_OK, or MS_ERR_INTERNAL. */
ms_err_t ms_core_claim_hash(ms_core_t *c, const char *claim, size_t len, uint8_t out[MS_HASH_LEN]);

/* 1 when |stored| is the hash of |claim| under the claim key it names, else 0 (also when the
 * ring no longer holds that key). Constant time in the hash. */
int ms_core_claim_matches(ms_core_t *c, const char *claim, size_t len,
                          const uint8_t stored[MS_HASH_LEN]);

/* Token data -> the bytes stored in records and outbox entries of mailbox |mailbox_id| (*out
 * malloc'd, caller frees; sealed under the primary token key, the mailbox id as associated
 * data), and back. Empty data stays empty (no token); data stored in clear by a version
 * before sealing (not starting with the seal version byte; tokens are text) opens as it is.
 * MS_OK; MS_ERR_INTERNAL (seal), or MS_ERR_CORRUPT (open: tampered, moved to another mailbox,
 * or under a key the ring no longer holds). */
ms_err_t ms_core_token_seal(ms_core_t *c, const char *mailbox_id, ms_blob_t plain, uint8_t **out,
                            size_t *len);
ms_err_t ms_core_token_open(ms_core_t *c, const char *mailbox_id, ms_blob_t sealed, uint8_t **out,
                            size_t *len);

#endif
