/* tc_seal: the payload format of draft 001 §7, AES-GCM through OpenSSL EVP:
 * IV (12 random bytes) || ciphertext || tag (16 bytes), no additional data. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "tigress_client.h"

static const char *const type_names[] = {"AES128", "AES256", "AEAD_AES_128_GCM",
                                         "AEAD_AES_256_GCM"};

const char *tc_payload_type_name(tc_payload_type_t t)
{
    return (unsigned)t < 4 ? type_names[t] : "?";
}

tc_err_t tc_payload_type_parse(const char *name, tc_payload_type_t *out)
{
    for (unsigned i = 0; name && i < 4; i++) {
        if (strcmp(name, type_names[i]) == 0) {
            *out = (tc_payload_type_t)i;
            return TC_OK;
        }
    }
    return TC_ERR_INVALID_ARG;
}

size_t tc_payload_type_key_len(tc_payload_type_t t)
{
    return (t == TC_AES256 || t == TC_AEAD_AES_256_GCM) ? 32 : 16;
}

tc_err_t tc_secret_new(tc_payload_type_t t, uint8_t secret[TC_SECRET_MAX], size_t *len)
{
    if ((unsigned)t >= 4 || !secret || !len)
        return TC_ERR_INVALID_ARG;
    size_t n = tc_payload_type_key_len(t);
    if (RAND_bytes(secret, (int)n) != 1)
        return TC_ERR_CRYPTO;
    *len = n;
    return TC_OK;
}

void tc_free(void *p, size_t len)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, len);
    free(p);
}

static const EVP_CIPHER *cipher_for(tc_payload_type_t t)
{
    return tc_payload_type_key_len(t) == 32 ? EVP_aes_256_gcm() : EVP_aes_128_gcm();
}

static tc_err_t check_key(tc_payload_type_t t, const uint8_t *secret, size_t secret_len)
{
    if ((unsigned)t >= 4)
        return TC_ERR_INVALID_ARG;
    if (!secret || secret_len != tc_payload_type_key_len(t))
        return TC_ERR_SECRET;
    return TC_OK;
}

tc_err_t tc_seal_with_iv(tc_payload_type_t t, const uint8_t *secret, size_t secret_len,
                         const uint8_t iv[TC_IV_LEN], const uint8_t *aad, size_t aad_len,
                         const uint8_t *pt, size_t pt_len, uint8_t **out, size_t *out_len)
{
    tc_err_t e = check_key(t, secret, secret_len);
    if (e != TC_OK)
        return e;
    if (!iv || !out || !out_len || (pt_len && !pt) || (aad_len && !aad) || pt_len > INT32_MAX ||
        aad_len > INT32_MAX)
        return TC_ERR_INVALID_ARG;
    size_t total = TC_IV_LEN + pt_len + TC_TAG_LEN;
    uint8_t *buf = malloc(total);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    e = TC_ERR_NOMEM;
    if (!buf || !ctx)
        goto fail;
    e = TC_ERR_CRYPTO;
    memcpy(buf, iv, TC_IV_LEN);
    if (EVP_EncryptInit_ex(ctx, cipher_for(t), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, TC_IV_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(ctx, NULL, NULL, secret, iv) != 1)
        goto fail;
    if (aad_len && EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)
        goto fail;
    n = 0;
    if (pt_len && EVP_EncryptUpdate(ctx, buf + TC_IV_LEN, &n, pt, (int)pt_len) != 1)
        goto fail;
    if (EVP_EncryptFinal_ex(ctx, buf + TC_IV_LEN + n, &fin) != 1 || (size_t)(n + fin) != pt_len ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TC_TAG_LEN, buf + TC_IV_LEN + pt_len) != 1)
        goto fail;
    EVP_CIPHER_CTX_free(ctx);
    *out = buf;
    *out_len = total;
    return TC_OK;
fail:
    EVP_CIPHER_CTX_free(ctx);
    tc_free(buf, buf ? total : 0);
    return e;
}

tc_err_t tc_seal(tc_payload_type_t t, const uint8_t *secret, size_t secret_len, const uint8_t *pt,
                 size_t pt_len, uint8_t **out, size_t *out_len)
{
    uint8_t iv[TC_IV_LEN];
    if (RAND_bytes(iv, sizeof(iv)) != 1)
        return TC_ERR_CRYPTO;
    return tc_seal_with_iv(t, secret, secret_len, iv, NULL, 0, pt, pt_len, out, out_len);
}

tc_err_t tc_open(tc_payload_type_t t, const uint8_t *secret, size_t secret_len,
                 const uint8_t *sealed, size_t sealed_len, const uint8_t *aad, size_t aad_len,
                 uint8_t **pt, size_t *pt_len)
{
    tc_err_t e = check_key(t, secret, secret_len);
    if (e != TC_OK)
        return e;
    if (!pt || !pt_len || (aad_len && !aad) || sealed_len > INT32_MAX || aad_len > INT32_MAX)
        return TC_ERR_INVALID_ARG;
    if (!sealed || sealed_len < TC_SEAL_OVERHEAD)
        return TC_ERR_INTEGRITY;
    size_t ct_len = sealed_len - TC_SEAL_OVERHEAD;
    const uint8_t *iv = sealed, *ct = sealed + TC_IV_LEN, *tag = sealed + TC_IV_LEN + ct_len;
    uint8_t *buf = malloc(ct_len + 1); /* + 1: never malloc(0), so an empty plaintext is not NULL */
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    e = TC_ERR_NOMEM;
    if (!buf || !ctx)
        goto fail;
    e = TC_ERR_CRYPTO;
    if (EVP_DecryptInit_ex(ctx, cipher_for(t), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, TC_IV_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(ctx, NULL, NULL, secret, iv) != 1)
        goto fail;
    if (aad_len && EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)
        goto fail;
    n = 0;
    if (ct_len && EVP_DecryptUpdate(ctx, buf, &n, ct, (int)ct_len) != 1)
        goto fail;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TC_TAG_LEN, (void *)tag) != 1)
        goto fail;
    if (EVP_DecryptFinal_ex(ctx, buf + n, &fin) != 1) {
        e = TC_ERR_INTEGRITY; /* the tag did not verify: the plaintext is wiped, never returned */
        goto fail;
    }
    EVP_CIPHER_CTX_free(ctx);
    *pt = buf;
    *pt_len = ct_len;
    return TC_OK;
fail:
    EVP_CIPHER_CTX_free(ctx);
    tc_free(buf, buf ? ct_len + 1 : 0);
    return e;
}
