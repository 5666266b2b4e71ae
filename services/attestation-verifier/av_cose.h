/* av_cose: COSE_Key (RFC 9052/9053) credential public keys -> OpenSSL EVP_PKEY, and
 * signature verification by COSE algorithm identifier. */
#ifndef AV_COSE_H
#define AV_COSE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "av_cbor.h"
#include "av_code.h"

#define AV_ALG_ES256 (-7)
#define AV_ALG_ES384 (-35)
#define AV_ALG_ES512 (-36)
#define AV_ALG_EDDSA (-8)
#define AV_ALG_ED25519 (-19)
#define AV_ALG_ED448 (-53)
#define AV_ALG_PS256 (-37)
#define AV_ALG_PS384 (-38)
#define AV_ALG_PS512 (-39)
#define AV_ALG_RS256 (-257)
#define AV_ALG_RS384 (-258)
#define AV_ALG_RS512 (-259)
#define AV_ALG_RS1 (-65535) /* SHA-1 PKCS#1 v1.5: TPM attestation statements only */
#define AV_ALG_MLDSA44 (-48)
#define AV_ALG_MLDSA65 (-49)
#define AV_ALG_MLDSA87 (-50)

#define AV_KTY_OKP 1
#define AV_KTY_EC2 2
#define AV_KTY_RSA 3
#define AV_KTY_AKP 7

typedef struct {
    int64_t kty, alg, crv; /* crv 0 for RSA and AKP */
    /* owned; NULL for ML-DSA keys, which OpenSSL 3.0 cannot use: such a key is accepted only
     * where it is never used (fmt "none"); any signature check with it is UNSUPPORTED_ALG */
    EVP_PKEY *pkey;
    /* raw members, pointing into the decoded buffer (must outlive the key): EC2 x/y, OKP x in
     * |x|; RSA modulus n in |x| and exponent e in |y|; AKP public key in |x| */
    const uint8_t *x, *y;
    size_t x_len, y_len;
} av_cose_key_t;

/* Parses a COSE_Key map. Returns AV_OK (fill *|k|; release with av_cose_key_dispose),
 * AV_AUTHDATA_MALFORMED (missing/ill-typed members, wrong lengths, point not on the curve)
 * or AV_UNSUPPORTED_ALG (kty/alg/curve not supported or inconsistent). */
av_code_t av_cose_key_parse(const av_cbor_item_t *map, av_cose_key_t *k);
void av_cose_key_dispose(av_cose_key_t *k);

/* 1 when |alg| can be used with |key| (key type and, for ECDSA, curve). */
int av_alg_fits_key(int64_t alg, EVP_PKEY *key);

/* Message digest of |alg| (SHA-1/256/384/512), NULL for EdDSA or unknown. */
const EVP_MD *av_alg_md(int64_t alg);

/* Verifies |sig| (DER for ECDSA, as WebAuthn sends it) over |data| with |key| and COSE |alg|.
 * Returns AV_OK, AV_SIGNATURE_INVALID, AV_ALG_MISMATCH (alg does not fit the key) or
 * AV_UNSUPPORTED_ALG (unknown alg, or |key| NULL). */
av_code_t av_sig_verify(EVP_PKEY *key, int64_t alg, const uint8_t *data, size_t len,
                        const uint8_t *sig, size_t sig_len);

#endif
