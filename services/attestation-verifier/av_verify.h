/* av_verify: the whole registration attestation check (WebAuthn §7.1 steps 5-27 as far as
 * a stateless verifier can go), from raw attestationObject + clientDataJSON to a verdict.
 *
 * Order: cheap unauthenticated checks first (clientDataJSON, CBOR shape, fmt, authData,
 * rpIdHash, flags), then the format's statement procedure, then the certificate path. The
 * first failing check decides the code. Thread-safe; nothing is logged. */
#ifndef AV_VERIFY_H
#define AV_VERIFY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "av_clientdata.h"
#include "av_code.h"
#include "av_trust.h"

typedef struct {
    const uint8_t *att_obj; /* CBOR, at most AV_CBOR_MAX_INPUT bytes */
    size_t att_obj_len;
    const uint8_t *client_data; /* raw clientDataJSON, hashed as received */
    size_t client_data_len;
    av_clientdata_policy_t cd; /* challenge, origins, rp_id, cross-origin policy */
    int require_uv;
    /* NULL: chain validation off (statement only; for cases whose roots are not public).
     * Otherwise the per-format anchors; a format without anchors is CHAIN_UNTRUSTED. */
    const av_trust_t *trust;
    time_t verify_time; /* 0: now (time of receipt) */
    /* formats allowed by policy, names; NULL/0: every supported format */
    const char *const *formats;
    size_t nformats;
    /* 1: a statement that verifies but has no certificate chain (packed self: signed by the
     * credential key itself, so it proves nothing about the device) is
     * SELF_ATTESTATION_NOT_ALLOWED. 0: accepted (the CLI judges case files). */
    int refuse_self;
} av_request_t;

typedef struct {
    int valid; /* 1 only with code AV_OK */
    av_code_t code;
    char format[32];      /* fmt as received when printable (else ""), truncated */
    int known_format;     /* fmt is one of the supported formats */
    const char *att_type; /* "none", "self", "basic", "attca", "anonca", or "" */
    int has_aaguid;
    uint8_t aaguid[16];
    char root_fp[65]; /* SHA-256 hex of the trust anchor, "" when none */
    int x509_err;     /* OpenSSL verify error of a failed chain, else 0 */
} av_result_t;

void av_verify(const av_request_t *req, av_result_t *res);

/* 1 when |fmt| is a supported format name. */
int av_format_supported(const char *fmt);

#endif
