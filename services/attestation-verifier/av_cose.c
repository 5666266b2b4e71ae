#include "av_cose.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

static int is_ecdsa(int64_t alg)
{
    return alg == AV_ALG_ES256 || alg == AV_ALG_ES384 || alg == AV_ALG_ES512;
}

static int is_pss(int64_t alg)
{
    return alg == AV_ALG_PS256 || alg == AV_ALG_PS384 || alg == AV_ALG_PS512;
}

static int is_pkcs1(int64_t alg)
{
    return alg == AV_ALG_RS256 || alg == AV_ALG_RS384 || alg == AV_ALG_RS512 || alg == AV_ALG_RS1;
}

const EVP_MD *av_alg_md(int64_t alg)
{
    switch (alg) {
    case AV_ALG_ES256:
    case AV_ALG_PS256:
    case AV_ALG_RS256:
        return EVP_sha256();
    case AV_ALG_ES384:
    case AV_ALG_PS384:
    case AV_ALG_RS384:
        return EVP_sha384();
    case AV_ALG_ES512:
    case AV_ALG_PS512:
    case AV_ALG_RS512:
        return EVP_sha512();
    case AV_ALG_RS1:
        return EVP_sha1();
    default:
        return NULL;
    }
}

static int ec_curve_nid(EVP_PKEY *key)
{
    char name[64];
    size_t n = 0;
    if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name), &n))
        return NID_undef;
    int nid = OBJ_txt2nid(name);
    if (nid == NID_undef)
        nid = EC_curve_nist2nid(name);
    return nid;
}

int av_alg_fits_key(int64_t alg, EVP_PKEY *key)
{
    if (!key)
        return 0;
    int id = EVP_PKEY_get_base_id(key);
    if (is_ecdsa(alg)) {
        if (id != EVP_PKEY_EC)
            return 0;
        int nid = ec_curve_nid(key);
        return (alg == AV_ALG_ES256 && nid == NID_X9_62_prime256v1) ||
               (alg == AV_ALG_ES384 && nid == NID_secp384r1) ||
               (alg == AV_ALG_ES512 && nid == NID_secp521r1);
    }
    if (is_pkcs1(alg))
        return id == EVP_PKEY_RSA;
    if (is_pss(alg))
        return id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS;
    if (alg == AV_ALG_EDDSA)
        return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448;
    if (alg == AV_ALG_ED25519)
        return id == EVP_PKEY_ED25519;
    if (alg == AV_ALG_ED448)
        return id == EVP_PKEY_ED448;
    return 0;
}

static int known_alg(int64_t alg)
{
    return is_ecdsa(alg) || is_pss(alg) || is_pkcs1(alg) || alg == AV_ALG_EDDSA ||
           alg == AV_ALG_ED25519 || alg == AV_ALG_ED448;
}

av_code_t av_sig_verify(EVP_PKEY *key, int64_t alg, const uint8_t *data, size_t len,
                        const uint8_t *sig, size_t sig_len)
{
    if (!key || !known_alg(alg))
        return AV_UNSUPPORTED_ALG;
    if (!av_alg_fits_key(alg, key))
        return AV_ALG_MISMATCH;
    av_code_t rc = AV_INTERNAL;
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    if (!mctx)
        return AV_INTERNAL;
    const EVP_MD *md = av_alg_md(alg);
    if (EVP_DigestVerifyInit_ex(mctx, &pctx, md ? EVP_MD_get0_name(md) : NULL, NULL, NULL, key,
                                NULL) != 1)
        goto out;
    if (is_pss(alg)) {
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1)
            goto out;
    } else if (is_pkcs1(alg)) {
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1)
            goto out;
    }
    rc = EVP_DigestVerify(mctx, sig, sig_len, data, len) == 1 ? AV_OK : AV_SIGNATURE_INVALID;
out:
    EVP_MD_CTX_free(mctx);
    return rc;
}

/* ---- COSE_Key -------------------------------------------------------------------------- */

static const av_cbor_item_t *get_bytes(const av_cbor_item_t *map, int64_t label)
{
    const av_cbor_item_t *it = av_cbor_map_get_int(map, label);
    return it && it->type == AV_CBOR_BYTES ? it : NULL;
}

static av_code_t ec2_key(av_cose_key_t *k, const av_cbor_item_t *map)
{
    const char *group;
    size_t clen;
    int64_t want_alg;
    switch (k->crv) {
    case 1:
        group = "P-256", clen = 32, want_alg = AV_ALG_ES256;
        break;
    case 2:
        group = "P-384", clen = 48, want_alg = AV_ALG_ES384;
        break;
    case 3:
        group = "P-521", clen = 66, want_alg = AV_ALG_ES512;
        break;
    default:
        return AV_UNSUPPORTED_ALG;
    }
    if (k->alg != want_alg)
        return AV_UNSUPPORTED_ALG;
    const av_cbor_item_t *x = get_bytes(map, -2), *y = get_bytes(map, -3);
    if (!x || !y || x->len != clen || y->len != clen)
        return AV_AUTHDATA_MALFORMED;
    k->x = x->ptr, k->x_len = x->len, k->y = y->ptr, k->y_len = y->len;

    av_code_t rc = AV_AUTHDATA_MALFORMED;
    uint8_t pub[1 + 2 * 66];
    pub[0] = 0x04;
    memcpy(pub + 1, x->ptr, clen);
    memcpy(pub + 1 + clen, y->ptr, clen);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY_CTX *check = NULL;
    if (!bld || !ctx ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + 2 * clen) ||
        !(params = OSSL_PARAM_BLD_to_param(bld)) || EVP_PKEY_fromdata_init(ctx) != 1) {
        rc = AV_INTERNAL;
        goto out;
    }
    if (EVP_PKEY_fromdata(ctx, &k->pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out; /* not a point on the curve */
    check = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
    if (!check || EVP_PKEY_public_check(check) != 1) {
        EVP_PKEY_free(k->pkey);
        k->pkey = NULL;
        goto out;
    }
    rc = AV_OK;
out:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return rc;
}

static av_code_t okp_key(av_cose_key_t *k, const av_cbor_item_t *map)
{
    int type;
    size_t xlen;
    if (k->crv == 6 && (k->alg == AV_ALG_EDDSA || k->alg == AV_ALG_ED25519))
        type = EVP_PKEY_ED25519, xlen = 32;
    else if (k->crv == 7 && (k->alg == AV_ALG_EDDSA || k->alg == AV_ALG_ED448))
        type = EVP_PKEY_ED448, xlen = 57;
    else
        return AV_UNSUPPORTED_ALG;
    const av_cbor_item_t *x = get_bytes(map, -2);
    if (!x || x->len != xlen)
        return AV_AUTHDATA_MALFORMED;
    k->x = x->ptr, k->x_len = x->len;
    k->pkey = EVP_PKEY_new_raw_public_key(type, NULL, x->ptr, x->len);
    return k->pkey ? AV_OK : AV_AUTHDATA_MALFORMED;
}

static av_code_t rsa_key(av_cose_key_t *k, const av_cbor_item_t *map)
{
    if (!is_pkcs1(k->alg) && !is_pss(k->alg))
        return AV_UNSUPPORTED_ALG;
    if (k->alg == AV_ALG_RS1)
        return AV_UNSUPPORTED_ALG; /* SHA-1 only for TPM statements, never credentials */
    const av_cbor_item_t *n = get_bytes(map, -1), *e = get_bytes(map, -2);
    if (!n || !e || e->len == 0 || e->len > 8 || n->len == 0 || n->ptr[0] == 0)
        return AV_AUTHDATA_MALFORMED;
    if (n->len < 256 || n->len > 1024)
        return AV_UNSUPPORTED_ALG; /* 2048..8192 bits */
    k->x = n->ptr, k->x_len = n->len, k->y = e->ptr, k->y_len = e->len;

    av_code_t rc = AV_INTERNAL;
    BIGNUM *bn = BN_bin2bn(n->ptr, (int)n->len, NULL), *be = BN_bin2bn(e->ptr, (int)e->len, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!bn || !be || !bld || !ctx || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) ||
        !(params = OSSL_PARAM_BLD_to_param(bld)) || EVP_PKEY_fromdata_init(ctx) != 1)
        goto out;
    if (!BN_is_odd(be) || BN_is_one(be)) {
        rc = AV_AUTHDATA_MALFORMED;
        goto out;
    }
    rc = EVP_PKEY_fromdata(ctx, &k->pkey, EVP_PKEY_PUBLIC_KEY, params) == 1 ? AV_OK
                                                                            : AV_AUTHDATA_MALFORMED;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return rc;
}

static av_code_t akp_key(av_cose_key_t *k, const av_cbor_item_t *map)
{
    size_t want;
    switch (k->alg) {
    case AV_ALG_MLDSA44:
        want = 1312;
        break;
    case AV_ALG_MLDSA65:
        want = 1952;
        break;
    case AV_ALG_MLDSA87:
        want = 2592;
        break;
    default:
        return AV_UNSUPPORTED_ALG;
    }
    const av_cbor_item_t *pub = get_bytes(map, -1);
    if (!pub || pub->len != want)
        return AV_AUTHDATA_MALFORMED;
    k->x = pub->ptr, k->x_len = pub->len;
    return AV_OK; /* structurally valid; no EVP_PKEY (see av_cose_key_t.pkey) */
}

av_code_t av_cose_key_parse(const av_cbor_item_t *map, av_cose_key_t *k)
{
    memset(k, 0, sizeof(*k));
    if (!map || map->type != AV_CBOR_MAP)
        return AV_AUTHDATA_MALFORMED;
    if (av_cbor_int(av_cbor_map_get_int(map, 1), &k->kty) != 0 ||
        av_cbor_int(av_cbor_map_get_int(map, 3), &k->alg) != 0)
        return AV_AUTHDATA_MALFORMED;
    const av_cbor_item_t *crv = av_cbor_map_get_int(map, -1);
    av_code_t rc;
    switch (k->kty) {
    case AV_KTY_EC2:
    case AV_KTY_OKP:
        if (av_cbor_int(crv, &k->crv) != 0)
            return AV_AUTHDATA_MALFORMED;
        rc = k->kty == AV_KTY_EC2 ? ec2_key(k, map) : okp_key(k, map);
        break;
    case AV_KTY_RSA:
        rc = rsa_key(k, map);
        break;
    case AV_KTY_AKP:
        rc = akp_key(k, map);
        break;
    default:
        rc = AV_UNSUPPORTED_ALG;
    }
    if (rc != AV_OK)
        av_cose_key_dispose(k);
    return rc;
}

void av_cose_key_dispose(av_cose_key_t *k)
{
    EVP_PKEY_free(k->pkey);
    k->pkey = NULL;
}
