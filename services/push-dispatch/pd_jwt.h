/* pd_jwt: compact JWS signing for provider auth: ES256 (APNs provider tokens) and RS256
 * (Google service-account grants). */
#ifndef PD_JWT_H
#define PD_JWT_H

#include <stddef.h>

#include <openssl/evp.h>

/* Loads a PEM private key (PKCS#8 as in an APNs .p8 file or a service-account JSON). |pem| is
 * the text. Returns the key or NULL (the reason is logged, never the key). */
EVP_PKEY *pd_jwt_load_key(const char *pem, size_t len);

/* Signs header.claims (both JSON texts) with |key|: ES256 when |es256|, else RS256. Returns a
 * malloc'd NUL-terminated JWT in *out, or -1. */
int pd_jwt_sign(EVP_PKEY *key, int es256, const char *header_json, const char *claims_json,
                char **out);

#endif
