#include "av_verify.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "av_authdata.h"
#include "av_cbor.h"
#include "av_formats.h"

typedef struct {
    const char *name;
    av_code_t (*fn)(av_fmt_ctx_t *c);
} fmt_entry_t;

static const fmt_entry_t fmt_table[] = {
    {"apple", av_fmt_apple},       {"packed", av_fmt_packed},
    {"tpm", av_fmt_tpm},           {"android-key", av_fmt_android_key},
    {"fido-u2f", av_fmt_fido_u2f}, {"none", av_fmt_none},
};

int av_format_supported(const char *fmt)
{
    for (size_t i = 0; i < sizeof(fmt_table) / sizeof(fmt_table[0]); i++) {
        if (strcmp(fmt, fmt_table[i].name) == 0)
            return 1;
    }
    return 0;
}

static const fmt_entry_t *find_format(const av_cbor_item_t *fmt)
{
    for (size_t i = 0; i < sizeof(fmt_table) / sizeof(fmt_table[0]); i++) {
        if (av_cbor_text_eq(fmt, fmt_table[i].name))
            return &fmt_table[i];
    }
    return NULL;
}

static int format_allowed(const av_request_t *req, const char *name)
{
    if (!req->formats || req->nformats == 0)
        return 1;
    for (size_t i = 0; i < req->nformats; i++) {
        if (req->formats[i] && strcmp(req->formats[i], name) == 0)
            return 1;
    }
    return 0;
}

static void copy_format(av_result_t *res, const av_cbor_item_t *fmt)
{
    size_t n = fmt->len < sizeof(res->format) - 1 ? fmt->len : sizeof(res->format) - 1;
    for (size_t i = 0; i < n; i++) {
        if (fmt->ptr[i] < 0x20 || fmt->ptr[i] > 0x7e || fmt->ptr[i] == '"' || fmt->ptr[i] == '\\') {
            res->format[0] = '\0';
            return;
        }
        res->format[i] = (char)fmt->ptr[i];
    }
    res->format[n] = '\0';
}

static av_code_t run(const av_request_t *req, av_result_t *res)
{
    if (req->att_obj_len > AV_CBOR_MAX_INPUT)
        return AV_INPUT_TOO_LARGE;
    /* Decoded first only so that the verdict (and the metrics) can name the format; the
     * clientDataJSON checks still decide first. */
    av_cbor_item_t *obj = NULL;
    int decoded = av_cbor_decode(req->att_obj, req->att_obj_len, &obj, NULL) == 0;
    const av_cbor_item_t *fmt0 = decoded ? av_cbor_map_get_text(obj, "fmt") : NULL;
    if (fmt0 && fmt0->type == AV_CBOR_TEXT) {
        copy_format(res, fmt0);
        res->known_format = find_format(fmt0) != NULL;
    }
    av_code_t rc = av_clientdata_check(req->client_data, req->client_data_len, &req->cd);
    if (rc != AV_OK || !decoded) {
        av_cbor_free(obj);
        return rc != AV_OK ? rc : AV_CBOR_MALFORMED;
    }
    uint8_t cdh[32];
    SHA256(req->client_data, req->client_data_len, cdh);

    const av_cbor_item_t *fmt = av_cbor_map_get_text(obj, "fmt");
    const av_cbor_item_t *stmt = av_cbor_map_get_text(obj, "attStmt");
    const av_cbor_item_t *authdata = av_cbor_map_get_text(obj, "authData");
    av_authdata_t ad;
    memset(&ad, 0, sizeof(ad));
    /* exactly the three members (CTAP2 may add epAtt/largeBlobKey only to its own responses) */
    if (obj->type != AV_CBOR_MAP || obj->len != 3 || !fmt || fmt->type != AV_CBOR_TEXT || !stmt ||
        stmt->type != AV_CBOR_MAP || !authdata || authdata->type != AV_CBOR_BYTES) {
        rc = AV_CBOR_MALFORMED;
        goto out;
    }
    const fmt_entry_t *fe = find_format(fmt);
    if (!fe || !format_allowed(req, fe->name)) {
        rc = AV_UNSUPPORTED_FORMAT;
        goto out;
    }
    if ((rc = av_authdata_parse(authdata->ptr, authdata->len, &ad)) != AV_OK)
        goto out;
    memcpy(res->aaguid, ad.aaguid, 16);
    res->has_aaguid = 1;

    uint8_t rp_hash[32];
    const char *rp = req->cd.rp_id ? req->cd.rp_id : "";
    SHA256((const uint8_t *)rp, strlen(rp), rp_hash);
    if (!*rp || CRYPTO_memcmp(rp_hash, ad.rp_id_hash, 32) != 0) {
        rc = AV_RPID_HASH_MISMATCH;
        goto out;
    }
    if (!(ad.flags & AV_FLAG_UP)) {
        rc = AV_USER_PRESENT_MISSING;
        goto out;
    }
    if (req->require_uv && !(ad.flags & AV_FLAG_UV)) {
        rc = AV_USER_VERIFICATION_REQUIRED;
        goto out;
    }

    av_fmt_ctx_t fc;
    memset(&fc, 0, sizeof(fc));
    fc.ad = &ad;
    fc.cdh = cdh;
    fc.att_stmt = stmt;
    fc.trust = req->trust;
    fc.at = req->verify_time;
    rc = fe->fn(&fc);
    res->att_type = fc.att_type ? fc.att_type : "";
    res->x509_err = fc.x509_err;
    /* after the statement procedure, so a broken self statement keeps its own code */
    if (rc == AV_OK && req->refuse_self && fc.att_type && strcmp(fc.att_type, "self") == 0)
        rc = AV_SELF_ATTESTATION_NOT_ALLOWED;
    if (rc == AV_OK)
        memcpy(res->root_fp, fc.root_fp, sizeof(res->root_fp));
out:
    av_authdata_dispose(&ad);
    av_cbor_free(obj);
    return rc;
}

void av_verify(const av_request_t *req, av_result_t *res)
{
    memset(res, 0, sizeof(*res));
    res->att_type = "";
    res->code = run(req, res);
    res->valid = res->code == AV_OK;
    if (!res->valid)
        res->att_type = "";
}
