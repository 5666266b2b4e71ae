/* tigress_client: a client of the Tigress relay's public API v1 (draft-secure-credential-
 * transfer-00): mailbox calls over HTTP/2 or HTTP/1.1 with TLS (libcurl), payload sealing with
 * AES-GCM (OpenSSL), share URLs with the Secret in the fragment.
 *
 * Conventions
 * - Every function that can fail returns a tc_err_t: TC_OK (0) or one TC_ERR_* value;
 *   outputs are written only on TC_OK unless the function says otherwise.
 * - Ownership: a pointer the caller passes in stays the caller's and is not kept after the call.
 *   A pointer the library hands out (marked "owned by the caller") is released with the named
 *   free function; tc_free() releases plain buffers (sealed payloads, plaintexts, strings).
 * - The Secret: the library never sends it anywhere, never logs, never writes it to disk. A
 *   share URL's fragment (the Secret) is split off by tc_share_parse and only the part before it
 *   is ever used as a request URL. Buffers that held a Secret or a plaintext are wiped before
 *   the library frees them.
 * - Threads: a tc_client_t is used by one thread at a time; distinct clients are independent.
 *   Call curl_global_init() once before the first client in a multi-threaded program.
 * - Nothing is printed: a failed call leaves the details (HTTP status, the relay's error code
 *   and message, the transport error) in tc_client_last_call().
 */
#ifndef TIGRESS_CLIENT_H
#define TIGRESS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------------------------ */

typedef enum {
    TC_OK = 0,
    TC_ERR_INVALID_ARG,  /* the caller passed something unusable (NULL, bad option value) */
    TC_ERR_NOMEM,        /* out of memory */
    TC_ERR_URL,          /* not a share URL / relay URL this client understands */
    TC_ERR_SECRET,       /* the fragment is not a Secret: bad base64 or not 16/32 bytes */
    TC_ERR_INSECURE,     /* plain http:// to a host that is not loopback */
    TC_ERR_UNREACHABLE,  /* no connection to the relay (refused, DNS, network), after retries */
    TC_ERR_TLS,          /* TLS failed: certificate not trusted, handshake refused */
    TC_ERR_TIMEOUT,      /* no answer in time, after retries; or `wait` gave up */
    TC_ERR_NOT_FOUND,    /* 404: the mailbox is gone (deleted or expired) or never existed */
    TC_ERR_UNAUTHORIZED, /* 401: another device is already bound, the device lacks the right,
                          * or (create) the mailbox id exists */
    TC_ERR_ATTESTATION,  /* 401 attestation_required / invalid_attestation */
    TC_ERR_TOO_LARGE,    /* 413 from the relay, or refused before upload as over its limit */
    TC_ERR_REJECTED,     /* 400/405/415/431: the relay refused the request as malformed */
    TC_ERR_RATE_LIMITED, /* 429 */
    TC_ERR_UNAVAILABLE,  /* 503/504 (a backend is down), after retries */
    TC_ERR_RELAY,        /* 500 or another unexpected status */
    TC_ERR_PROTOCOL,     /* an answer that breaks the API: bad JSON, another correlation id */
    TC_ERR_INTEGRITY,    /* the GCM tag did not verify: wrong Secret or tampered content */
    TC_ERR_CRYPTO,       /* OpenSSL failed (not an integrity failure) */
} tc_err_t;

/* A stable identifier of |e| ("TC_ERR_INTEGRITY"); "TC_ERR_UNKNOWN" for other values. */
const char *tc_err_name(tc_err_t e);
/* One lower-case sentence for a person ("integrity check failed: wrong Secret or tampered
 * content"); static storage. */
const char *tc_err_text(tc_err_t e);

/* ---- payload sealing (draft 001 §7) ------------------------------------------------------- */

/* Payload types: AES-GCM, 96-bit random IV, 128-bit tag, no AAD; wire format
 * IV(12) || ciphertext || tag(16). The AEAD_* names (later drafts) are the same algorithms. */
typedef enum {
    TC_AES128 = 0,       /* "AES128", 16-byte Secret */
    TC_AES256,           /* "AES256", 32-byte Secret */
    TC_AEAD_AES_128_GCM, /* "AEAD_AES_128_GCM", 16-byte Secret */
    TC_AEAD_AES_256_GCM, /* "AEAD_AES_256_GCM", 32-byte Secret */
} tc_payload_type_t;

#define TC_IV_LEN 12
#define TC_TAG_LEN 16
#define TC_SEAL_OVERHEAD (TC_IV_LEN + TC_TAG_LEN)
#define TC_SECRET_MAX 32

/* The wire name ("AES128", ...). */
const char *tc_payload_type_name(tc_payload_type_t t);
/* Parses a wire name, exact case. TC_ERR_INVALID_ARG for anything else. */
tc_err_t tc_payload_type_parse(const char *name, tc_payload_type_t *out);
/* Secret length in bytes: 16 or 32. */
size_t tc_payload_type_key_len(tc_payload_type_t t);

/* A fresh Secret for |t| from the OpenSSL CSPRNG into |secret| (capacity TC_SECRET_MAX);
 * its length in *len. */
tc_err_t tc_secret_new(tc_payload_type_t t, uint8_t secret[TC_SECRET_MAX], size_t *len);

/* Seals |pt| (|pt_len| bytes, may be 0) with |secret| under a fresh random IV. On TC_OK
 * *out (owned by the caller, tc_free) holds IV || ciphertext || tag, *out_len bytes
 * (pt_len + TC_SEAL_OVERHEAD). TC_ERR_SECRET when |secret_len| does not fit |t|. */
tc_err_t tc_seal(tc_payload_type_t t, const uint8_t *secret, size_t secret_len, const uint8_t *pt,
                 size_t pt_len, uint8_t **out, size_t *out_len);

/* tc_seal with a caller-chosen |iv| and optional additional data (|aad|, may be NULL): for
 * known-answer tests only. Reusing an IV under one Secret breaks GCM; the payload format has
 * no AAD, so a relay peer would fail to open anything sealed with |aad_len| > 0. */
tc_err_t tc_seal_with_iv(tc_payload_type_t t, const uint8_t *secret, size_t secret_len,
                         const uint8_t iv[TC_IV_LEN], const uint8_t *aad, size_t aad_len,
                         const uint8_t *pt, size_t pt_len, uint8_t **out, size_t *out_len);

/* Opens IV || ciphertext || tag. On TC_OK *pt (owned by the caller, tc_free; never NULL, even
 * for an empty plaintext) holds *pt_len bytes. TC_ERR_INTEGRITY when the tag does not verify
 * or |sealed| is shorter than TC_SEAL_OVERHEAD: nothing of the plaintext is returned then.
 * |aad| as for tc_seal_with_iv (NULL for relay payloads). */
tc_err_t tc_open(tc_payload_type_t t, const uint8_t *secret, size_t secret_len,
                 const uint8_t *sealed, size_t sealed_len, const uint8_t *aad, size_t aad_len,
                 uint8_t **pt, size_t *pt_len);

/* Wipes |len| bytes then frees |p| (NULL is fine). For every buffer the library hands out. */
void tc_free(void *p, size_t len);

/* ---- share URLs (draft 001 §8.3, sample implementation) ------------------------------------ */

#define TC_URL_MAX 2048
#define TC_UUID_LEN 36

/* A share URL split into what may travel (api_url) and what must not (the Secret):
 *   scheme://host[:port][/prefix]/v1/m/<mailbox id>[/...][?v=<vertical>&...]#<Secret>
 * scheme http or https; the id a version 4 UUID (any case; kept lower case); trailing slashes
 * after the id are allowed; the query is dropped from api_url (its `v` kept in |vertical|);
 * the fragment is the Secret in base64url or base64 (padding optional, percent-encoding
 * allowed), 16 or 32 bytes. */
typedef struct {
    char api_url[TC_URL_MAX];    /* scheme://host[:port][/prefix]/v1/m/<id>: request URL */
    char relay_base[TC_URL_MAX]; /* scheme://host[:port][/prefix] */
    char mailbox_id[TC_UUID_LEN + 1];
    char vertical[64];             /* the `v` query parameter, "" when absent */
    uint8_t secret[TC_SECRET_MAX]; /* valid when secret_len > 0; wipe with tc_share_wipe */
    size_t secret_len;             /* 0: the URL had no fragment */
} tc_share_t;

/* Parses |url|. A URL without a fragment parses (secret_len 0: enough to delete, preview or
 * relinquish); an empty fragment or one that is not a Secret gives TC_ERR_SECRET; a URL of
 * another shape TC_ERR_URL. *out is zeroed first. */
tc_err_t tc_share_parse(const char *url, tc_share_t *out);

/* Wipes the Secret held in |s|. */
void tc_share_wipe(tc_share_t *s);

/* |url_link| (the relay's urlLink: no fragment) + "#" + base64url(|secret|), no padding.
 * *out owned by the caller (tc_free with strlen + 1). TC_ERR_URL when |url_link| is not a
 * mailbox URL, TC_ERR_SECRET for a length other than 16/32. */
tc_err_t tc_share_build(const char *url_link, const uint8_t *secret, size_t secret_len, char **out);

/* Normalizes a relay URL "scheme://host[:port][/prefix][/]" (no query, no fragment, no user
 * info) into |out| without trailing slashes. TC_ERR_URL otherwise. */
tc_err_t tc_relay_base_parse(const char *url, char out[TC_URL_MAX]);

/* 1 when |url| (http:// or https://...) names a loopback host (localhost, 127.0.0.0/8, [::1]). */
int tc_url_is_loopback(const char *url);

/* ---- relay errors ------------------------------------------------------------------------ */

/* What the last call saw; strings are sanitized (printable ASCII) and truncated. */
typedef struct {
    long status;         /* final HTTP status, 0 when no answer came */
    char code[64];       /* the relay's error.code, "" when none */
    char message[256];   /* the relay's error.message, "" when none */
    char transport[256]; /* libcurl's description of a transport failure, "" when none */
    char correlation_id[TC_UUID_LEN + 1]; /* the Mailbox-Correlation-ID every attempt carried */
    int attempts;                         /* requests sent for this call (1 + retries) */
    int duplicate;    /* the relay answered 201: an earlier attempt was already applied */
    int http_version; /* of the final answer: 11 (HTTP/1.1), 2 (HTTP/2), 0 (none) */
} tc_call_info_t;

/* Maps an HTTP |status| and its body (the relay's {"error": {"code", "message"}}, possibly
 * absent or malformed) to an error; fills |info|->code and ->message when |info| is not NULL.
 * 2xx gives TC_OK. Never fails on any input. */
tc_err_t tc_relay_error_parse(long status, const char *body, size_t len, tc_call_info_t *info);

/* ---- the client ---------------------------------------------------------------------------- */

typedef enum {
    TC_HTTP_AUTO = 0, /* https: HTTP/2 by ALPN, else HTTP/1.1; http: HTTP/1.1 */
    TC_HTTP_1_1,      /* HTTP/1.1 only */
    TC_HTTP_2,        /* https: HTTP/2 (ALPN); http: HTTP/2 with prior knowledge (h2c) */
} tc_http_mode_t;

typedef struct {
    const char *ca_file; /* PEM trust anchors for https; NULL: the system store. Copied */
    tc_http_mode_t http;
    long timeout_ms;         /* per attempt; 0: 15000 */
    int max_attempts;        /* per call, same correlation id on each; 0: 4 */
    long retry_base_ms;      /* first backoff, doubled each retry (+ jitter); 0: 250 */
    int allow_insecure_http; /* 1: http:// to any host; 0: only to loopback */
    long max_body;           /* relay's request limit for the size checks; 0: 65536 */
} tc_options_t;

typedef struct tc_client tc_client_t;

/* A client with |opt| (NULL: all defaults). *out owned by the caller (tc_client_free). */
tc_err_t tc_client_new(const tc_options_t *opt, tc_client_t **out);
void tc_client_free(tc_client_t *c);
/* Details of the last call on |c| (valid until the next call). */
const tc_call_info_t *tc_client_last_call(const tc_client_t *c);

/* GET |relay_base|/v1/config: when it answers 200 with a maximum body size (see
 * tc_config_max_body), that value; otherwise the known default 65536. Also stores the value in
 * the client for the size checks of tc_create and tc_update. Fails only when the relay cannot be
 * reached (TC_ERR_UNREACHABLE, TC_ERR_TLS, TC_ERR_TIMEOUT, TC_ERR_INSECURE) or TC_ERR_NOMEM. */
tc_err_t tc_relay_max_body(tc_client_t *c, const char *relay_base, long *max_body);

/* CreateMailbox input. Strings are copied into the request; NULL means "leave out". */
typedef struct {
    const char *mailbox_id; /* v4 UUID; NULL: a fresh one (written to the result) */
    tc_payload_type_t type;
    const uint8_t *sealed; /* IV || ciphertext || tag */
    size_t sealed_len;
    const char *title;         /* required by the relay (<= 256 bytes) */
    const char *description;   /* <= 1024 bytes */
    const char *image_url;     /* https://..., <= 2048 bytes */
    const char *access_rights; /* "RD", "RWD", ...; NULL: the relay's default (RD) */
    long ttl_seconds;          /* > 0 */
    const char *token_type;    /* notification token, both or neither */
    const char *token_data;
} tc_create_t;

typedef struct {
    char mailbox_id[TC_UUID_LEN + 1];
    char url_link[TC_URL_MAX]; /* the relay's link to the mailbox (no Secret) */
    int push_supported;
    int duplicate; /* 201: a retry found the first attempt already stored */
} tc_created_t;

/* POST |relay_base|/v1/m as the device |claim| (a UUID). Retries reuse one correlation id, so
 * a create whose answer was lost comes back as a duplicate (201) with the first answer's body.
 * TC_ERR_TOO_LARGE without any request when the body would exceed the client's max_body. */
tc_err_t tc_create(tc_client_t *c, const char *relay_base, const char *claim, const tc_create_t *in,
                   tc_created_t *out);

/* The maximum request body size in a /v1/config answer (this gateway publishes it as
 * limits.maxBodyBytes): the first number (1024 .. 1e9) whose key names a maximum body
 * ("maxBodyBytes", "max_body_size", ...), searched depth first up to 4 levels deep; 0 when
 * there is none or |body| is not JSON. Never fails on any input. */
long tc_config_max_body(const char *body, size_t len);

/* The exact CreateMailbox body size in bytes for |in| when its payload seals |pt_len| bytes
 * (|in|->sealed ignored), and the largest plaintext whose body fits |max_body|. */
size_t tc_create_body_size(const tc_create_t *in, size_t pt_len);
size_t tc_create_max_plaintext(const tc_create_t *in, long max_body);

/* ReadSecureContent result. Owned by the caller: tc_content_free. */
typedef struct {
    tc_payload_type_t type;
    uint8_t *sealed; /* IV || ciphertext || tag */
    size_t sealed_len;
    char *title, *description, *image_url; /* NULL when absent */
    char expiration[40];                   /* RFC 3339 */
    int duplicate;
} tc_content_t;
void tc_content_free(tc_content_t *ct);

/* POST |api_url| (from tc_share_t) as |claim|: the first claim that is not the creator's
 * binds as the receiver; a third one gets TC_ERR_UNAUTHORIZED. */
tc_err_t tc_read(tc_client_t *c, const char *api_url, const char *claim, tc_content_t *out);

/* PUT |api_url|: a new payload (the stateful flow; needs the W right) and this device's
 * notification token (the relay requires one). |duplicate| (may be NULL) set on 201. */
tc_err_t tc_update(tc_client_t *c, const char *api_url, const char *claim, tc_payload_type_t type,
                   const uint8_t *sealed, size_t sealed_len, const char *token_type,
                   const char *token_data, int *duplicate);

/* DELETE |api_url| (needs the D right). */
tc_err_t tc_delete(tc_client_t *c, const char *api_url, const char *claim);

/* PATCH |api_url|: the receiver unbinds itself (a creator gets TC_ERR_REJECTED). */
tc_err_t tc_relinquish(tc_client_t *c, const char *api_url, const char *claim);

/* ReadDisplayInformation: GET |api_url| (no claim, no side effect), the OpenGraph page parsed.
 * Owned by the caller: tc_preview_free. */
typedef struct {
    char *title, *description, *image_url; /* NULL when the page has none */
} tc_preview_t;
tc_err_t tc_preview(tc_client_t *c, const char *api_url, tc_preview_t *out);
void tc_preview_free(tc_preview_t *p);

/* Parses OpenGraph meta tags (og:title, og:description, og:image) out of |html|, entities
 * decoded. Never fails on any input but TC_ERR_NOMEM. */
tc_err_t tc_preview_parse(const char *html, size_t len, tc_preview_t *out);

#ifdef __cplusplus
}
#endif

#endif
