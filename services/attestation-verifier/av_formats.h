/* av_formats: the attestation statement procedures of WebAuthn §8, one per format. */
#ifndef AV_FORMATS_H
#define AV_FORMATS_H

#include <stdint.h>
#include <time.h>

#include "av_authdata.h"
#include "av_cbor.h"
#include "av_code.h"
#include "av_trust.h"

typedef struct {
    const av_authdata_t *ad;
    const uint8_t *cdh;             /* SHA-256(clientDataJSON), 32 bytes */
    const av_cbor_item_t *att_stmt; /* a map (checked by the caller) */
    const av_trust_t *trust;        /* NULL: chain validation off (statement only) */
    time_t at;                      /* verify time; 0 = now */
    /* outputs */
    const char *att_type; /* "none", "self", "basic", "attca", "anonca" */
    char root_fp[65];     /* anchor SHA-256 hex, "" when no chain was validated */
    int x509_err;         /* OpenSSL verify error when the chain failed */
} av_fmt_ctx_t;

/* Each returns AV_OK or the failing check's code; see av_code.h. */
av_code_t av_fmt_none(av_fmt_ctx_t *c);
av_code_t av_fmt_packed(av_fmt_ctx_t *c);
av_code_t av_fmt_apple(av_fmt_ctx_t *c);
av_code_t av_fmt_android_key(av_fmt_ctx_t *c);
av_code_t av_fmt_fido_u2f(av_fmt_ctx_t *c);
av_code_t av_fmt_tpm(av_fmt_ctx_t *c); /* av_tpm.c */

/* Shared by the procedures: 1 when every key of the attStmt map is one of |allowed|. */
int av_attstmt_only(const av_cbor_item_t *stmt, const char *const *allowed, size_t n);

/* Chain step shared by the procedures: validates when c->trust is set, else AV_OK. */
av_code_t av_fmt_chain(av_fmt_ctx_t *c, const char *fmt, X509 *leaf, STACK_OF(X509) * rest);

#endif
