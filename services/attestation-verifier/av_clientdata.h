/* av_clientdata: clientDataJSON checks of a registration (WebAuthn §7.1 steps 7-12). */
#ifndef AV_CLIENTDATA_H
#define AV_CLIENTDATA_H

#include <stddef.h>
#include <stdint.h>

#include "av_code.h"

#define AV_CLIENTDATA_MAX (16 * 1024)
#define AV_CHALLENGE_MAX 1024

typedef struct {
    const uint8_t *challenge; /* the expected challenge bytes (required, non-empty) */
    size_t challenge_len;
    /* allowed origins, exact string match; when none are given the origin must be
     * "https://" + |rp_id| */
    const char *const *origins;
    size_t norigins;
    const char *rp_id;
    int allow_cross_origin; /* crossOrigin:true accepted */
    /* allowed topOrigin values (only looked at when cross-origin is allowed); a topOrigin
     * not listed (or any, when the list is empty) is ORIGIN_MISMATCH */
    const char *const *top_origins;
    size_t ntop_origins;
} av_clientdata_policy_t;

/* Checks the raw |json| bytes: a JSON object with type "webauthn.create", challenge
 * (base64url) equal to the expected one (constant-time compare), origin allowed,
 * crossOrigin/topOrigin per policy, and an L2 tokenBinding object, if present, with status
 * "present" or "supported". Unknown members are ignored. Returns AV_OK or the first failing
 * check's code (AV_CLIENTDATA_MALFORMED, AV_INPUT_TOO_LARGE, AV_CLIENTDATA_TYPE_MISMATCH,
 * AV_CHALLENGE_MISMATCH, AV_ORIGIN_MISMATCH, AV_CROSS_ORIGIN_NOT_ALLOWED,
 * AV_TOKEN_BINDING_INVALID). */
av_code_t av_clientdata_check(const uint8_t *json, size_t len, const av_clientdata_policy_t *pol);

#endif
