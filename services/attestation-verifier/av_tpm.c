/* fmt "tpm" (WebAuthn §8.3): TPMS_ATTEST (certInfo) signed by the AIK, certifying the
 * TPMT_PUBLIC (pubArea) that must be the credential key. */
#include "cm_alloc.h"
#include "av_formats.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "av_cose.h"

#define TPM_ALG_RSA 0x0001
#define TPM_ALG_SHA1 0x0004
#define TPM_ALG_SHA256 0x000B
#define TPM_ALG_SHA384 0x000C
#define TPM_ALG_SHA512 0x000D
#define TPM_ALG_NULL 0x0010
#define TPM_ALG_ECC 0x0023
#define TPM_GENERATED_VALUE 0xff544347u
#define TPM_ST_ATTEST_CERTIFY 0x8017

typedef struct {
    const uint8_t *p, *end;
    int bad;
} rd_t;

static uint64_t rd_uint(rd_t *r, int n)
{
    uint64_t v = 0;
    if (r->bad || r->end - r->p < n) {
        r->bad = 1;
        return 0;
    }
    for (int i = 0; i < n; i++)
        v = v << 8 | *r->p++;
    return v;
}

/* TPM2B: u16 size + bytes. */
static const uint8_t *rd_2b(rd_t *r, size_t *len)
{
    size_t n = (size_t)rd_uint(r, 2);
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        *len = 0;
        return NULL;
    }
    const uint8_t *v = r->p;
    r->p += n;
    *len = n;
    return v;
}

typedef struct {
    uint16_t type, name_alg;
    uint32_t exponent;      /* RSA; 0 means 65537 */
    uint16_t curve;         /* ECC */
    const uint8_t *u1, *u2; /* RSA n / ECC x, ECC y */
    size_t u1_len, u2_len;
} pub_area_t;

/* The fixed layout used by the TPM vectors (and py_webauthn/go-webauthn): symmetric and
 * scheme without details (TPM_ALG_NULL) for these signing keys. */
static int parse_pub_area(const uint8_t *buf, size_t len, pub_area_t *pa)
{
    rd_t r = {buf, buf + len, 0};
    size_t n;
    memset(pa, 0, sizeof(*pa));
    pa->type = (uint16_t)rd_uint(&r, 2);
    pa->name_alg = (uint16_t)rd_uint(&r, 2);
    rd_uint(&r, 4); /* objectAttributes */
    rd_2b(&r, &n);  /* authPolicy */
    if (pa->type == TPM_ALG_RSA) {
        uint16_t sym = (uint16_t)rd_uint(&r, 2);
        rd_uint(&r, 2); /* scheme */
        rd_uint(&r, 2); /* keyBits */
        pa->exponent = (uint32_t)rd_uint(&r, 4);
        pa->u1 = rd_2b(&r, &pa->u1_len);
        if (sym != TPM_ALG_NULL)
            return -1;
    } else if (pa->type == TPM_ALG_ECC) {
        uint16_t sym = (uint16_t)rd_uint(&r, 2);
        rd_uint(&r, 2); /* scheme */
        pa->curve = (uint16_t)rd_uint(&r, 2);
        rd_uint(&r, 2); /* kdf */
        pa->u1 = rd_2b(&r, &pa->u1_len);
        pa->u2 = rd_2b(&r, &pa->u2_len);
        if (sym != TPM_ALG_NULL)
            return -1;
    } else {
        return -1;
    }
    return r.bad || r.p != r.end ? -1 : 0;
}

static const EVP_MD *tpm_md(uint16_t alg)
{
    switch (alg) {
    case TPM_ALG_SHA1:
        return EVP_sha1();
    case TPM_ALG_SHA256:
        return EVP_sha256();
    case TPM_ALG_SHA384:
        return EVP_sha384();
    case TPM_ALG_SHA512:
        return EVP_sha512();
    default:
        return NULL;
    }
}

static int eq_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && alen > 0 && memcmp(a, b, alen) == 0;
}

static av_code_t pub_area_matches(const pub_area_t *pa, const av_cose_key_t *k)
{
    if (pa->type == TPM_ALG_RSA) {
        if (k->kty != AV_KTY_RSA || !eq_bytes(pa->u1, pa->u1_len, k->x, k->x_len))
            return AV_PUBKEY_MISMATCH;
        uint64_t e = 0;
        for (size_t i = 0; i < k->y_len; i++)
            e = e << 8 | k->y[i];
        return e == (pa->exponent ? pa->exponent : 65537u) ? AV_OK : AV_PUBKEY_MISMATCH;
    }
    int crv = pa->curve == 0x0003 ? 1 : pa->curve == 0x0004 ? 2 : pa->curve == 0x0005 ? 3 : 0;
    if (k->kty != AV_KTY_EC2 || crv != k->crv || !eq_bytes(pa->u1, pa->u1_len, k->x, k->x_len) ||
        !eq_bytes(pa->u2, pa->u2_len, k->y, k->y_len))
        return AV_PUBKEY_MISMATCH;
    return AV_OK;
}

/* §8.3.1 AIK certificate requirements. */
static av_code_t aik_requirements(X509 *cert)
{
    av_code_t rc = AV_CERT_REQUIREMENTS;
    GENERAL_NAMES *san = NULL;
    EXTENDED_KEY_USAGE *eku = NULL;
    ASN1_OBJECT *aik = OBJ_txt2obj("2.23.133.8.3", 1);
    ASN1_OBJECT *manuf = OBJ_txt2obj("2.23.133.2.1", 1);
    ASN1_OBJECT *model = OBJ_txt2obj("2.23.133.2.2", 1);
    ASN1_OBJECT *ver = OBJ_txt2obj("2.23.133.2.3", 1);
    int crit = 0;
    if (!aik || !manuf || !model || !ver) {
        rc = AV_INTERNAL;
        goto out;
    }
    if (X509_get_version(cert) != X509_VERSION_3 ||
        X509_NAME_entry_count(X509_get_subject_name(cert)) != 0 || av_cert_is_ca(cert))
        goto out;
    san = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
    if (!san || crit != 1)
        goto out;
    int have = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(san); i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(san, i);
        if (gn->type != GEN_DIRNAME)
            continue;
        X509_NAME *dn = gn->d.directoryName;
        if (X509_NAME_get_index_by_OBJ(dn, manuf, -1) >= 0 &&
            X509_NAME_get_index_by_OBJ(dn, model, -1) >= 0 &&
            X509_NAME_get_index_by_OBJ(dn, ver, -1) >= 0)
            have = 1;
    }
    if (!have)
        goto out;
    eku = X509_get_ext_d2i(cert, NID_ext_key_usage, &crit, NULL);
    int found = 0;
    for (int i = 0; eku && i < sk_ASN1_OBJECT_num(eku); i++)
        found |= OBJ_cmp(sk_ASN1_OBJECT_value(eku, i), aik) == 0;
    if (!found)
        goto out;
    rc = AV_OK;
out:
    GENERAL_NAMES_free(san);
    EXTENDED_KEY_USAGE_free(eku);
    ASN1_OBJECT_free(aik);
    ASN1_OBJECT_free(manuf);
    ASN1_OBJECT_free(model);
    ASN1_OBJECT_free(ver);
    ERR_clear_error();
    return rc;
}

av_code_t av_fmt_tpm(av_fmt_ctx_t *c)
{
    static const char *const keys[] = {"ver", "alg", "x5c", "sig", "certInfo", "pubArea"};
    const av_cbor_item_t *stmt = c->att_stmt;
    const av_cbor_item_t *sig = av_cbor_map_get_text(stmt, "sig");
    const av_cbor_item_t *ci = av_cbor_map_get_text(stmt, "certInfo");
    const av_cbor_item_t *pub = av_cbor_map_get_text(stmt, "pubArea");
    int64_t alg;
    c->att_type = "attca";
    if (!av_attstmt_only(stmt, keys, 6) ||
        !av_cbor_text_eq(av_cbor_map_get_text(stmt, "ver"), "2.0") ||
        av_cbor_int(av_cbor_map_get_text(stmt, "alg"), &alg) != 0 || !sig ||
        sig->type != AV_CBOR_BYTES || !ci || ci->type != AV_CBOR_BYTES || !pub ||
        pub->type != AV_CBOR_BYTES)
        return AV_ATTSTMT_MALFORMED;
    pub_area_t pa;
    if (parse_pub_area(pub->ptr, pub->len, &pa) != 0)
        return AV_ATTSTMT_MALFORMED;
    av_code_t rc = pub_area_matches(&pa, &c->ad->key);
    if (rc != AV_OK)
        return rc;

    X509 *leaf = NULL;
    STACK_OF(X509) *rest = NULL;
    uint8_t *data = NULL;
    if ((rc = av_x5c_parse(av_cbor_map_get_text(stmt, "x5c"), &leaf, &rest)) != AV_OK)
        return rc;
    /* The AIK signature first: a tampered certInfo is a bad signature whatever it says. */
    if ((rc = av_sig_verify(X509_get0_pubkey(leaf), alg, ci->ptr, ci->len, sig->ptr, sig->len)) !=
        AV_OK)
        goto out;

    rd_t r = {ci->ptr, ci->ptr + ci->len, 0};
    size_t n, extra_len, name_len;
    uint32_t magic = (uint32_t)rd_uint(&r, 4);
    uint16_t type = (uint16_t)rd_uint(&r, 2);
    rd_2b(&r, &n); /* qualifiedSigner */
    const uint8_t *extra = rd_2b(&r, &extra_len);
    rd_uint(&r, 8); /* clockInfo.clock */
    rd_uint(&r, 4); /* resetCount */
    rd_uint(&r, 4); /* restartCount */
    rd_uint(&r, 1); /* safe */
    rd_uint(&r, 8); /* firmwareVersion */
    const uint8_t *name = rd_2b(&r, &name_len);
    rd_2b(&r, &n); /* qualifiedName */
    if (r.bad || r.p != r.end || magic != TPM_GENERATED_VALUE || type != TPM_ST_ATTEST_CERTIFY) {
        rc = AV_ATTSTMT_MALFORMED;
        goto out;
    }
    /* extraData = hash_alg(authData || clientDataHash), the hash of the statement's alg */
    const EVP_MD *md = av_alg_md(alg);
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int hlen = 0;
    size_t dlen = c->ad->raw_len + 32;
    if (!md || !(data = cm_trymalloc(dlen))) {
        rc = md ? AV_INTERNAL : AV_UNSUPPORTED_ALG;
        goto out;
    }
    memcpy(data, c->ad->raw, c->ad->raw_len);
    memcpy(data + c->ad->raw_len, c->cdh, 32);
    if (EVP_Digest(data, dlen, h, &hlen, md, NULL) != 1) {
        rc = AV_INTERNAL;
        goto out;
    }
    if (extra_len != hlen || CRYPTO_memcmp(extra, h, hlen) != 0) {
        rc = AV_SIGNATURE_INVALID;
        goto out;
    }
    /* attested.name = nameAlg || H_nameAlg(pubArea): the certified key is this pubArea */
    const EVP_MD *nmd = tpm_md(pa.name_alg);
    if (!nmd || EVP_Digest(pub->ptr, pub->len, h, &hlen, nmd, NULL) != 1 || name_len != 2 + hlen ||
        name[0] != (pa.name_alg >> 8) || name[1] != (pa.name_alg & 0xff) ||
        memcmp(name + 2, h, hlen) != 0) {
        rc = AV_PUBKEY_MISMATCH;
        goto out;
    }
    if ((rc = aik_requirements(leaf)) != AV_OK)
        goto out;
    if ((rc = av_cert_check_aaguid(leaf, c->ad->aaguid)) != AV_OK)
        goto out;
    rc = av_fmt_chain(c, "tpm", leaf, rest);
out:
    free(data);
    X509_free(leaf);
    sk_X509_pop_free(rest, X509_free);
    return rc;
}
