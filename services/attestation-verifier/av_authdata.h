/* av_authdata: authenticator data (WebAuthn §6.1) of a registration. */
#ifndef AV_AUTHDATA_H
#define AV_AUTHDATA_H

#include <stddef.h>
#include <stdint.h>

#include "av_code.h"
#include "av_cose.h"

#define AV_FLAG_UP 0x01
#define AV_FLAG_UV 0x04
#define AV_FLAG_BE 0x08
#define AV_FLAG_BS 0x10
#define AV_FLAG_AT 0x40
#define AV_FLAG_ED 0x80

#define AV_CRED_ID_MAX 1023

typedef struct {
    const uint8_t *raw; /* the whole authData, not owned (inside the attestation object) */
    size_t raw_len;
    const uint8_t *rp_id_hash; /* 32 bytes, into raw */
    uint8_t flags;
    uint32_t sign_count;
    uint8_t aaguid[16];
    const uint8_t *cred_id; /* into raw */
    size_t cred_id_len;
    av_cose_key_t key; /* owned (key.pkey); members point into raw */
} av_authdata_t;

/* Parses |raw| (must outlive *|ad|). Registration authData must carry attested credential
 * data (AT); extensions are decoded (bounded CBOR map) only when ED is set; nothing may
 * follow. Returns AV_OK (release with av_authdata_dispose), AV_AUTHDATA_MALFORMED or
 * AV_UNSUPPORTED_ALG. Flag policy (UP, UV, rpIdHash) is the caller's. */
av_code_t av_authdata_parse(const uint8_t *raw, size_t len, av_authdata_t *ad);
void av_authdata_dispose(av_authdata_t *ad);

#endif
