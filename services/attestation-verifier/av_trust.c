#include "cm_alloc.h"
#include "av_trust.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "av_der.h"

static const char *const formats[AV_TRUST_NFORMATS] = AV_TRUST_FORMATS;

struct av_trust {
    /* owned: one store per entry of |formats|; X509_STORE is safe to share for verification
     * once loading is done */
    X509_STORE *store[AV_TRUST_NFORMATS];
    int count[AV_TRUST_NFORMATS];
};

static int format_index(const char *fmt)
{
    for (int i = 0; i < AV_TRUST_NFORMATS; i++) {
        if (fmt && strcmp(fmt, formats[i]) == 0)
            return i;
    }
    return -1;
}

av_trust_t *av_trust_new(void)
{
    av_trust_t *t = cm_xcalloc(1, sizeof(*t));
    for (int i = 0; i < AV_TRUST_NFORMATS; i++) {
        t->store[i] = X509_STORE_new();
        if (!t->store[i]) {
            av_trust_free(t);
            return NULL;
        }
    }
    return t;
}

void av_trust_free(av_trust_t *t)
{
    if (!t)
        return;
    for (int i = 0; i < AV_TRUST_NFORMATS; i++)
        X509_STORE_free(t->store[i]);
    free(t);
}

int av_trust_add_pem(av_trust_t *t, const char *fmt, const char *pem, size_t len)
{
    int idx = fmt ? format_index(fmt) : -1;
    if (fmt && idx < 0)
        return -1;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return -1;
    int added = 0;
    for (;;) {
        ERR_set_mark();
        X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (!cert) {
            /* end of input is "no start line"; anything else is a broken block */
            unsigned long e = ERR_peek_last_error();
            int eof = ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
            ERR_pop_to_mark();
            if (!eof)
                added = -1;
            break;
        }
        ERR_clear_last_mark();
        for (int i = 0; i < AV_TRUST_NFORMATS; i++) {
            if (idx >= 0 && i != idx)
                continue;
            /* adding the same anchor twice is harmless: OpenSSL reports and ignores it */
            X509_STORE_add_cert(t->store[i], cert);
            t->count[i]++;
        }
        X509_free(cert);
        added++;
    }
    ERR_clear_error();
    BIO_free(bio);
    return added;
}

int av_trust_load_dir(av_trust_t *t, const char *dir, char *err, size_t errcap)
{
    int files = 0;
    for (int i = 0; i < AV_TRUST_NFORMATS; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s.pem", dir, formats[i]);
        FILE *f = fopen(path, "rb");
        if (!f) {
            if (errno == ENOENT)
                continue;
            snprintf(err, errcap, "%s: %s", path, strerror(errno));
            return -1;
        }
        char *buf = cm_xmalloc(1 << 20);
        size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
        int bad = !buf || ferror(f) || !feof(f);
        fclose(f);
        int added = bad ? -1 : av_trust_add_pem(t, formats[i], buf, n);
        free(buf);
        if (added <= 0) {
            snprintf(err, errcap, "%s: no PEM certificates, or unreadable", path);
            return -1;
        }
        files++;
    }
    return files;
}

int av_trust_count(const av_trust_t *t, const char *fmt)
{
    int idx = format_index(fmt);
    return idx < 0 ? 0 : t->count[idx];
}

static av_code_t map_x509_error(int e)
{
    switch (e) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return AV_CERT_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return AV_CERT_NOT_YET_VALID;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
        return AV_CHAIN_UNTRUSTED;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
        return AV_CERT_SIGNATURE_INVALID;
    default:
        return AV_CHAIN_INVALID;
    }
}

av_code_t av_trust_verify(const av_trust_t *t, const char *fmt, X509 *leaf,
                          STACK_OF(X509) * untrusted, time_t at, char fp_hex[65], int *x509_err)
{
    fp_hex[0] = '\0';
    if (x509_err)
        *x509_err = 0;
    int idx = format_index(fmt);
    if (!t || idx < 0 || t->count[idx] == 0)
        return AV_CHAIN_UNTRUSTED; /* fail closed: no anchor is never "verified" */
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!ctx || X509_STORE_CTX_init(ctx, t->store[idx], leaf, untrusted) != 1) {
        X509_STORE_CTX_free(ctx);
        return AV_INTERNAL;
    }
    /* No X509_STRICT (real Apple/Android/Yubico chains fail it) and no PARTIAL_CHAIN: the
     * path must end at a configured anchor. */
    if (at)
        X509_STORE_CTX_set_time(ctx, 0, at);
    av_code_t rc;
    if (X509_verify_cert(ctx) == 1) {
        STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
        X509 *top = sk_X509_value(chain, sk_X509_num(chain) - 1);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (top && X509_digest(top, EVP_sha256(), md, &mdlen) == 1) {
            for (unsigned i = 0; i < mdlen && i < 32; i++)
                snprintf(fp_hex + 2 * i, 3, "%02x", md[i]);
        }
        rc = AV_OK;
    } else {
        int e = X509_STORE_CTX_get_error(ctx);
        if (x509_err)
            *x509_err = e;
        rc = map_x509_error(e);
    }
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

av_code_t av_x5c_parse(const av_cbor_item_t *x5c, X509 **leaf, STACK_OF(X509) * *rest)
{
    *leaf = NULL;
    *rest = NULL;
    if (!x5c || x5c->type != AV_CBOR_ARRAY || x5c->len == 0 || x5c->len > AV_X5C_MAX)
        return AV_ATTSTMT_MALFORMED;
    STACK_OF(X509) *sk = sk_X509_new_null();
    if (!sk)
        return AV_INTERNAL;
    for (size_t i = 0; i < x5c->len; i++) {
        const av_cbor_item_t *b = &x5c->items[i];
        if (b->type != AV_CBOR_BYTES || b->len == 0 || b->len > INT32_MAX)
            goto bad;
        const unsigned char *p = b->ptr;
        X509 *c = d2i_X509(NULL, &p, (long)b->len);
        if (!c)
            goto bad;
        if (p != b->ptr + b->len || !sk_X509_push(sk, c)) {
            X509_free(c);
            goto bad;
        }
    }
    *leaf = sk_X509_shift(sk);
    *rest = sk;
    ERR_clear_error();
    return AV_OK;
bad:
    sk_X509_pop_free(sk, X509_free);
    ERR_clear_error();
    return AV_ATTSTMT_MALFORMED;
}

int av_cert_ext(X509 *cert, const char *oid, const uint8_t **val, size_t *len, int *critical)
{
    ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
    if (!obj)
        return -1;
    int idx = X509_get_ext_by_OBJ(cert, obj, -1);
    int again = idx >= 0 ? X509_get_ext_by_OBJ(cert, obj, idx) : -1;
    ASN1_OBJECT_free(obj);
    if (idx < 0)
        return 0;
    if (again >= 0)
        return -1;
    X509_EXTENSION *ext = X509_get_ext(cert, idx);
    ASN1_OCTET_STRING *data = X509_EXTENSION_get_data(ext);
    *val = ASN1_STRING_get0_data(data);
    *len = (size_t)ASN1_STRING_length(data);
    if (critical)
        *critical = X509_EXTENSION_get_critical(ext);
    return 1;
}

av_code_t av_cert_check_aaguid(X509 *cert, const uint8_t aaguid[16])
{
    const uint8_t *v;
    size_t n;
    int crit = 0;
    int r = av_cert_ext(cert, "1.3.6.1.4.1.45724.1.1.4", &v, &n, &crit);
    if (r == 0)
        return AV_OK;
    av_der_tlv_t t;
    if (r < 0 || crit || av_der_whole(v, n, &t) != 0 || t.cls != AV_DER_UNIVERSAL ||
        t.constructed || t.tag != 4 || t.len != 16)
        return AV_CERT_REQUIREMENTS;
    return memcmp(t.val, aaguid, 16) == 0 ? AV_OK : AV_AAGUID_MISMATCH;
}

int av_cert_is_ca(X509 *cert)
{
    int crit = 0;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(cert, NID_basic_constraints, &crit, NULL);
    int ca = bc && bc->ca;
    BASIC_CONSTRAINTS_free(bc);
    if (!bc && crit == -2)
        ca = 1; /* present more than once: treat as the worst case */
    ERR_clear_error();
    return ca;
}
