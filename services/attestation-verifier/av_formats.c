#include "cm_alloc.h"
#include "av_formats.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "av_cose.h"
#include "av_der.h"

int av_attstmt_only(const av_cbor_item_t *stmt, const char *const *allowed, size_t n)
{
    for (size_t i = 0; i < stmt->len; i++) {
        int ok = 0;
        for (size_t j = 0; j < n && !ok; j++)
            ok = av_cbor_text_eq(&stmt->items[2 * i], allowed[j]);
        if (!ok)
            return 0;
    }
    return 1;
}

av_code_t av_fmt_chain(av_fmt_ctx_t *c, const char *fmt, X509 *leaf, STACK_OF(X509) * rest)
{
    if (!c->trust)
        return AV_OK;
    return av_trust_verify(c->trust, fmt, leaf, rest, c->at, c->root_fp, &c->x509_err);
}

/* authData || clientDataHash, the data most statements sign. malloc'd or NULL. */
static uint8_t *signed_data(const av_fmt_ctx_t *c, size_t *len)
{
    *len = c->ad->raw_len + 32;
    uint8_t *buf = cm_trymalloc(*len);
    if (buf) {
        memcpy(buf, c->ad->raw, c->ad->raw_len);
        memcpy(buf + c->ad->raw_len, c->cdh, 32);
    }
    return buf;
}

static int get_alg(const av_cbor_item_t *stmt, int64_t *alg)
{
    return av_cbor_int(av_cbor_map_get_text(stmt, "alg"), alg);
}

static const av_cbor_item_t *get_bytes(const av_cbor_item_t *stmt, const char *key)
{
    const av_cbor_item_t *it = av_cbor_map_get_text(stmt, key);
    return it && it->type == AV_CBOR_BYTES && it->len > 0 ? it : NULL;
}

static av_code_t key_matches_credential(const av_fmt_ctx_t *c, X509 *cert)
{
    if (!c->ad->key.pkey)
        return AV_UNSUPPORTED_ALG;
    EVP_PKEY *k = X509_get0_pubkey(cert);
    av_code_t rc = k && EVP_PKEY_eq(k, c->ad->key.pkey) == 1 ? AV_OK : AV_PUBKEY_MISMATCH;
    ERR_clear_error();
    return rc;
}

/* ---- none ------------------------------------------------------------------------------ */

av_code_t av_fmt_none(av_fmt_ctx_t *c)
{
    c->att_type = "none";
    return c->att_stmt->len == 0 ? AV_OK : AV_ATTSTMT_MALFORMED;
}

/* ---- packed (§8.2) --------------------------------------------------------------------- */

/* Text of the only |nid| entry of |name|, compared with |want| (NULL: any non-empty). */
static int name_entry_ok(X509_NAME *name, int nid, const char *want, size_t want_len)
{
    int idx = X509_NAME_get_index_by_NID(name, nid, -1);
    if (idx < 0 || X509_NAME_get_index_by_NID(name, nid, idx) >= 0)
        return 0;
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
    int ok = n > 0 && (!want || ((size_t)n == want_len && memcmp(utf8, want, want_len) == 0));
    if (ok && want_len == 2 && !want) /* country: two letters */
        ok = n == 2;
    OPENSSL_free(utf8);
    return ok;
}

static av_code_t packed_cert_requirements(X509 *cert, const uint8_t aaguid[16])
{
    X509_NAME *subj = X509_get_subject_name(cert);
    static const char ou[] = "Authenticator Attestation";
    if (X509_get_version(cert) != X509_VERSION_3 ||
        !name_entry_ok(subj, NID_countryName, NULL, 2) ||
        !name_entry_ok(subj, NID_organizationName, NULL, 0) ||
        !name_entry_ok(subj, NID_organizationalUnitName, ou, sizeof(ou) - 1) ||
        !name_entry_ok(subj, NID_commonName, NULL, 0) || av_cert_is_ca(cert))
        return AV_CERT_REQUIREMENTS;
    return av_cert_check_aaguid(cert, aaguid);
}

av_code_t av_fmt_packed(av_fmt_ctx_t *c)
{
    static const char *const keys[] = {"alg", "sig", "x5c"};
    const av_cbor_item_t *stmt = c->att_stmt, *sig = get_bytes(stmt, "sig");
    int64_t alg;
    if (!av_attstmt_only(stmt, keys, 3) || get_alg(stmt, &alg) != 0 || !sig)
        return AV_ATTSTMT_MALFORMED;
    size_t dlen;
    uint8_t *data = signed_data(c, &dlen);
    if (!data)
        return AV_INTERNAL;
    const av_cbor_item_t *x5c = av_cbor_map_get_text(stmt, "x5c");
    X509 *leaf = NULL;
    STACK_OF(X509) *rest = NULL;
    av_code_t rc;
    if (!x5c) {
        c->att_type = "self";
        if (alg != c->ad->key.alg)
            rc = AV_ALG_MISMATCH;
        else
            rc = av_sig_verify(c->ad->key.pkey, alg, data, dlen, sig->ptr, sig->len);
        goto out;
    }
    c->att_type = "basic";
    if ((rc = av_x5c_parse(x5c, &leaf, &rest)) != AV_OK)
        goto out;
    if ((rc = av_sig_verify(X509_get0_pubkey(leaf), alg, data, dlen, sig->ptr, sig->len)) != AV_OK)
        goto out;
    if ((rc = packed_cert_requirements(leaf, c->ad->aaguid)) != AV_OK)
        goto out;
    rc = av_fmt_chain(c, "packed", leaf, rest);
out:
    free(data);
    X509_free(leaf);
    sk_X509_pop_free(rest, X509_free);
    return rc;
}

/* ---- apple (§8.8) ---------------------------------------------------------------------- */

/* The nonce extension is exactly SEQUENCE { [1] EXPLICIT OCTET STRING (32) }. */
static av_code_t apple_nonce(X509 *leaf, const uint8_t **nonce)
{
    const uint8_t *v;
    size_t n;
    int r = av_cert_ext(leaf, "1.2.840.113635.100.8.2", &v, &n, NULL);
    if (r == 0)
        return AV_NONCE_MISSING;
    av_der_tlv_t seq, tag, oct;
    if (r < 0 || av_der_whole(v, n, &seq) != 0 || seq.cls != AV_DER_UNIVERSAL || !seq.constructed ||
        seq.tag != 16 || av_der_whole(seq.val, seq.len, &tag) != 0 || tag.cls != AV_DER_CONTEXT ||
        !tag.constructed || tag.tag != 1 || av_der_whole(tag.val, tag.len, &oct) != 0 ||
        oct.cls != AV_DER_UNIVERSAL || oct.constructed || oct.tag != 4 || oct.len != 32)
        return AV_NONCE_MALFORMED;
    *nonce = oct.val;
    return AV_OK;
}

av_code_t av_fmt_apple(av_fmt_ctx_t *c)
{
    static const char *const keys[] = {"x5c", "alg"};
    const av_cbor_item_t *stmt = c->att_stmt;
    int64_t alg;
    c->att_type = "anonca";
    /* No sig here: the statement is the nonce in the certificate. alg is optional. */
    if (!av_attstmt_only(stmt, keys, 2) ||
        (av_cbor_map_get_text(stmt, "alg") && get_alg(stmt, &alg) != 0))
        return AV_ATTSTMT_MALFORMED;
    X509 *leaf = NULL;
    STACK_OF(X509) *rest = NULL;
    av_code_t rc = av_x5c_parse(av_cbor_map_get_text(stmt, "x5c"), &leaf, &rest);
    if (rc != AV_OK)
        return rc;
    size_t dlen;
    uint8_t *data = signed_data(c, &dlen);
    uint8_t expect[32];
    const uint8_t *nonce = NULL;
    if (!data || !SHA256(data, dlen, expect)) {
        rc = AV_INTERNAL;
        goto out;
    }
    if ((rc = apple_nonce(leaf, &nonce)) != AV_OK)
        goto out;
    if (CRYPTO_memcmp(nonce, expect, 32) != 0) {
        rc = AV_NONCE_MISMATCH;
        goto out;
    }
    if ((rc = key_matches_credential(c, leaf)) != AV_OK)
        goto out;
    rc = av_fmt_chain(c, "apple", leaf, rest);
out:
    free(data);
    X509_free(leaf);
    sk_X509_pop_free(rest, X509_free);
    return rc;
}

/* ---- android-key (§8.4) ---------------------------------------------------------------- */

typedef struct {
    int all_apps;     /* [600] seen */
    int origin_seen;  /* [702] seen */
    int origin_other; /* an origin other than GENERATED (0) seen */
    int sign;         /* purpose SIGN (2) seen */
} android_authz_t;

static int android_authz(const av_der_tlv_t *list, android_authz_t *a)
{
    if (list->cls != AV_DER_UNIVERSAL || !list->constructed || list->tag != 16)
        return -1;
    const uint8_t *p = list->val, *end = list->val + list->len;
    while (p < end) {
        av_der_tlv_t e, in;
        if (av_der_next(&p, end, &e) != 0)
            return -1;
        if (e.cls != AV_DER_CONTEXT)
            return -1;
        if (e.tag == 600) {
            a->all_apps = 1;
        } else if (e.tag == 702) {
            uint64_t v;
            if (av_der_whole(e.val, e.len, &in) != 0 || av_der_uint(&in, &v) != 0)
                return -1;
            a->origin_seen = 1;
            if (v != 0)
                a->origin_other = 1;
        } else if (e.tag == 1) {
            if (av_der_whole(e.val, e.len, &in) != 0 || in.tag != 17 || !in.constructed)
                return -1;
            const uint8_t *q = in.val, *qend = in.val + in.len;
            while (q < qend) {
                av_der_tlv_t i;
                uint64_t v;
                if (av_der_next(&q, qend, &i) != 0 || av_der_uint(&i, &v) != 0)
                    return -1;
                if (v == 2)
                    a->sign = 1;
            }
        }
    }
    return 0;
}

static av_code_t android_key_description(X509 *leaf, const uint8_t *cdh)
{
    const uint8_t *v;
    size_t n;
    if (av_cert_ext(leaf, "1.3.6.1.4.1.11129.2.1.17", &v, &n, NULL) != 1)
        return AV_CERT_REQUIREMENTS;
    av_der_tlv_t seq, f[8];
    if (av_der_whole(v, n, &seq) != 0 || seq.cls != AV_DER_UNIVERSAL || !seq.constructed ||
        seq.tag != 16)
        return AV_CERT_REQUIREMENTS;
    const uint8_t *p = seq.val, *end = seq.val + seq.len;
    for (int i = 0; i < 8; i++) {
        if (av_der_next(&p, end, &f[i]) != 0)
            return AV_CERT_REQUIREMENTS;
    }
    /* f[4] attestationChallenge, f[6] softwareEnforced, f[7] teeEnforced */
    if (f[4].cls != AV_DER_UNIVERSAL || f[4].tag != 4 || f[4].constructed)
        return AV_CERT_REQUIREMENTS;
    if (f[4].len != 32 || CRYPTO_memcmp(f[4].val, cdh, 32) != 0)
        return AV_NONCE_MISMATCH;
    android_authz_t a = {0};
    if (android_authz(&f[6], &a) != 0 || android_authz(&f[7], &a) != 0)
        return AV_CERT_REQUIREMENTS;
    /* Policy: the union of both lists (WebAuthn §8.4 allows teeEnforced only or the union);
     * the key must be generated in the keystore, for signing, bound to this app. */
    if (a.all_apps || !a.origin_seen || a.origin_other || !a.sign)
        return AV_ANDROID_KEY_AUTHORIZATION;
    return AV_OK;
}

av_code_t av_fmt_android_key(av_fmt_ctx_t *c)
{
    static const char *const keys[] = {"alg", "sig", "x5c"};
    const av_cbor_item_t *stmt = c->att_stmt, *sig = get_bytes(stmt, "sig");
    int64_t alg;
    c->att_type = "basic";
    if (!av_attstmt_only(stmt, keys, 3) || get_alg(stmt, &alg) != 0 || !sig)
        return AV_ATTSTMT_MALFORMED;
    X509 *leaf = NULL;
    STACK_OF(X509) *rest = NULL;
    av_code_t rc = av_x5c_parse(av_cbor_map_get_text(stmt, "x5c"), &leaf, &rest);
    if (rc != AV_OK)
        return rc;
    size_t dlen;
    uint8_t *data = signed_data(c, &dlen);
    if (!data) {
        rc = AV_INTERNAL;
        goto out;
    }
    if ((rc = av_sig_verify(X509_get0_pubkey(leaf), alg, data, dlen, sig->ptr, sig->len)) != AV_OK)
        goto out;
    if ((rc = key_matches_credential(c, leaf)) != AV_OK)
        goto out;
    if ((rc = android_key_description(leaf, c->cdh)) != AV_OK)
        goto out;
    rc = av_fmt_chain(c, "android-key", leaf, rest);
out:
    free(data);
    X509_free(leaf);
    sk_X509_pop_free(rest, X509_free);
    return rc;
}

/* ---- fido-u2f (§8.6) ------------------------------------------------------------------- */

av_code_t av_fmt_fido_u2f(av_fmt_ctx_t *c)
{
    static const char *const keys[] = {"sig", "x5c"};
    const av_cbor_item_t *stmt = c->att_stmt, *sig = get_bytes(stmt, "sig");
    c->att_type = "basic";
    if (!av_attstmt_only(stmt, keys, 2) || !sig)
        return AV_ATTSTMT_MALFORMED;
    X509 *leaf = NULL;
    STACK_OF(X509) *rest = NULL;
    av_code_t rc = av_x5c_parse(av_cbor_map_get_text(stmt, "x5c"), &leaf, &rest);
    if (rc != AV_OK)
        return rc;
    uint8_t *data = NULL;
    /* §8.6 step 2: exactly one certificate (the batch certificate) */
    if (sk_X509_num(rest) != 0) {
        rc = AV_ATTSTMT_MALFORMED;
        goto out;
    }
    const av_cose_key_t *k = &c->ad->key;
    /* The U2F registration format can only carry an uncompressed P-256 point. */
    if (k->kty != AV_KTY_EC2 || k->crv != 1) {
        rc = AV_UNSUPPORTED_ALG;
        goto out;
    }
    EVP_PKEY *cert_key = X509_get0_pubkey(leaf);
    if (!av_alg_fits_key(AV_ALG_ES256, cert_key)) {
        rc = AV_CERT_REQUIREMENTS;
        goto out;
    }
    size_t dlen = 1 + 32 + 32 + c->ad->cred_id_len + 65, off = 0;
    if (!(data = cm_trymalloc(dlen))) {
        rc = AV_INTERNAL;
        goto out;
    }
    data[off++] = 0x00;
    memcpy(data + off, c->ad->rp_id_hash, 32), off += 32;
    memcpy(data + off, c->cdh, 32), off += 32;
    memcpy(data + off, c->ad->cred_id, c->ad->cred_id_len), off += c->ad->cred_id_len;
    data[off++] = 0x04;
    memcpy(data + off, k->x, 32), off += 32;
    memcpy(data + off, k->y, 32);
    if ((rc = av_sig_verify(cert_key, AV_ALG_ES256, data, dlen, sig->ptr, sig->len)) != AV_OK)
        goto out;
    rc = av_fmt_chain(c, "fido-u2f", leaf, rest);
out:
    free(data);
    X509_free(leaf);
    sk_X509_pop_free(rest, X509_free);
    return rc;
}
