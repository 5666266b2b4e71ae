#include "pd_jwt.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/pem.h>

#include "cm_alloc.h"
#include "cm_b64.h"
#include "cm_log.h"

EVP_PKEY *pd_jwt_load_key(const char *pem, size_t len)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!k)
        CM_ERROR(NULL, "cannot parse PEM private key");
    return k;
}

static char *b64url(const unsigned char *in, size_t len)
{
    char *o = cm_xmalloc(cm_b64_encoded_size(len));
    cm_b64_encode(CM_B64_URL, in, len, o);
    return o;
}

int pd_jwt_sign(EVP_PKEY *key, int es256, const char *header_json, const char *claims_json,
                char **out)
{
    int rc = -1;
    char *h = b64url((const unsigned char *)header_json, strlen(header_json));
    char *c = b64url((const unsigned char *)claims_json, strlen(claims_json));
    size_t ilen = strlen(h) + 1 + strlen(c);
    char *input = cm_xmalloc(ilen + 1);
    unsigned char *sig = NULL, raw[64];
    size_t siglen = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ECDSA_SIG *es = NULL;
    char *s64 = NULL;
    if (!md)
        cm_oom(0); /* OpenSSL's NULL here can only be out-of-memory */
    strcpy(input, h);
    strcat(input, ".");
    strcat(input, c);
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)input, ilen) != 1)
        goto out;
    sig = cm_xmalloc(siglen);
    if (EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input, ilen) != 1)
        goto out;
    if (es256) {
        /* JWS wants raw r||s (RFC 7518 §3.4), OpenSSL gives DER. */
        const unsigned char *p = sig;
        const BIGNUM *r, *s;
        es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
        if (!es)
            goto out;
        ECDSA_SIG_get0(es, &r, &s);
        if (BN_bn2binpad(r, raw, 32) != 32 || BN_bn2binpad(s, raw + 32, 32) != 32)
            goto out;
        s64 = b64url(raw, 64);
    } else {
        s64 = b64url(sig, siglen);
    }
    *out = cm_xmalloc(ilen + 1 + strlen(s64) + 1);
    strcpy(*out, input);
    strcat(*out, ".");
    strcat(*out, s64);
    rc = 0;
out:
    if (rc != 0)
        CM_ERROR(NULL, "JWT signing failed");
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(md);
    free(sig);
    free(s64);
    free(input);
    free(h);
    free(c);
    return rc;
}
