/* tc_err: the library's error names and the mapping of the relay's answers onto them (done
 * once, here). */
#include <string.h>

#include <cJSON.h>

#include "tc_int.h"

#define ERRORS(X)                                                                                  \
    X(TC_OK, "success")                                                                            \
    X(TC_ERR_INVALID_ARG, "invalid argument")                                                      \
    X(TC_ERR_NOMEM, "out of memory")                                                               \
    X(TC_ERR_URL, "not a Tigress share URL (expected https://HOST/v1/m/<mailbox id>#<Secret>)")    \
    X(TC_ERR_SECRET, "the share URL's fragment is not a Secret (base64 of 16 or 32 bytes)")        \
    X(TC_ERR_INSECURE, "refusing plain http:// to a relay that is not on this machine")            \
    X(TC_ERR_UNREACHABLE, "relay unreachable")                                                     \
    X(TC_ERR_TLS, "TLS failed: the relay's certificate is not trusted or the handshake failed")    \
    X(TC_ERR_TIMEOUT, "timed out")                                                                 \
    X(TC_ERR_NOT_FOUND, "mailbox not found: deleted, expired or never created (404)")              \
    X(TC_ERR_UNAUTHORIZED,                                                                         \
      "not allowed: another device is already bound to this mailbox, or this device lacks the "    \
      "right (401)")                                                                               \
    X(TC_ERR_ATTESTATION, "the relay refused the device attestation (401)")                        \
    X(TC_ERR_TOO_LARGE, "too large for the relay's request limit")                                 \
    X(TC_ERR_REJECTED, "the relay refused the request as invalid")                                 \
    X(TC_ERR_RATE_LIMITED, "the relay is rate limiting this client (429)")                         \
    X(TC_ERR_UNAVAILABLE, "the relay is temporarily unavailable (503/504)")                        \
    X(TC_ERR_RELAY, "the relay failed (server error)")                                             \
    X(TC_ERR_PROTOCOL, "the relay's answer does not follow the API")                               \
    X(TC_ERR_INTEGRITY, "integrity check failed: wrong Secret or tampered content")                \
    X(TC_ERR_CRYPTO, "cryptographic library failure")

const char *tc_err_name(tc_err_t e)
{
    switch (e) {
#define NAME(id, text)                                                                             \
    case id:                                                                                       \
        return #id;
        ERRORS(NAME)
#undef NAME
    }
    return "TC_ERR_UNKNOWN";
}

const char *tc_err_text(tc_err_t e)
{
    switch (e) {
#define TEXT(id, text)                                                                             \
    case id:                                                                                       \
        return text;
        ERRORS(TEXT)
#undef TEXT
    }
    return "unknown error";
}

static void copy_field(const cJSON *obj, const char *key, char *dst, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsString(v) && v->valuestring)
        tc_sanitize(dst, cap, v->valuestring, strlen(v->valuestring));
}

/* The relay's error code (or "") for the status mapping. */
static void parse_body(const char *body, size_t len, tc_call_info_t *info)
{
    if (!body || !len)
        return;
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (cJSON_IsObject(err)) {
        copy_field(err, "code", info->code, sizeof(info->code));
        copy_field(err, "message", info->message, sizeof(info->message));
    }
    cJSON_Delete(root);
}

tc_err_t tc_relay_error_parse(long status, const char *body, size_t len, tc_call_info_t *info)
{
    tc_call_info_t local;
    if (!info)
        info = &local;
    info->code[0] = info->message[0] = '\0';
    if (status >= 200 && status < 300)
        return TC_OK;
    parse_body(body, len, info);
    switch (status) {
    case 400:
    case 405:
    case 411:
    case 415:
    case 431:
        return TC_ERR_REJECTED;
    case 401:
    case 403:
        if (!strcmp(info->code, "attestation_required") ||
            !strcmp(info->code, "invalid_attestation"))
            return TC_ERR_ATTESTATION;
        return TC_ERR_UNAUTHORIZED;
    case 404:
    case 410:
        return TC_ERR_NOT_FOUND;
    case 408:
        return TC_ERR_TIMEOUT;
    case 413:
        return TC_ERR_TOO_LARGE;
    case 429:
        return TC_ERR_RATE_LIMITED;
    case 502:
    case 503:
    case 504:
        return TC_ERR_UNAVAILABLE;
    default:
        return status >= 500 ? TC_ERR_RELAY : TC_ERR_PROTOCOL;
    }
}
