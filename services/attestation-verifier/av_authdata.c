#include "av_authdata.h"

#include <string.h>

#include "av_cbor.h"

av_code_t av_authdata_parse(const uint8_t *raw, size_t len, av_authdata_t *ad)
{
    memset(ad, 0, sizeof(*ad));
    /* rpIdHash 32, flags 1, signCount 4, aaguid 16, credIdLen 2 */
    if (len < 37 || len > AV_CBOR_MAX_INPUT)
        return AV_AUTHDATA_MALFORMED;
    ad->raw = raw;
    ad->raw_len = len;
    ad->rp_id_hash = raw;
    ad->flags = raw[32];
    ad->sign_count =
        (uint32_t)raw[33] << 24 | (uint32_t)raw[34] << 16 | (uint32_t)raw[35] << 8 | raw[36];
    /* Without AT the bytes after signCount (if any) would be garbage or extensions; a
     * registration without a credential is refused either way. BE=0 forbids BS=1. */
    if (!(ad->flags & AV_FLAG_AT) || ((ad->flags & AV_FLAG_BS) && !(ad->flags & AV_FLAG_BE)))
        return AV_AUTHDATA_MALFORMED;
    size_t off = 37;
    if (len - off < 18)
        return AV_AUTHDATA_MALFORMED;
    memcpy(ad->aaguid, raw + off, 16);
    off += 16;
    size_t idlen = (size_t)raw[off] << 8 | raw[off + 1];
    off += 2;
    if (idlen == 0 || idlen > AV_CRED_ID_MAX || idlen > len - off)
        return AV_AUTHDATA_MALFORMED;
    ad->cred_id = raw + off;
    ad->cred_id_len = idlen;
    off += idlen;

    av_cbor_item_t *key = NULL;
    size_t used = 0;
    if (off >= len || av_cbor_decode(raw + off, len - off, &key, &used) != 0)
        return AV_AUTHDATA_MALFORMED;
    av_code_t rc = av_cose_key_parse(key, &ad->key);
    av_cbor_free(key);
    if (rc != AV_OK)
        return rc;
    off += used;

    if (ad->flags & AV_FLAG_ED) {
        av_cbor_item_t *ext = NULL;
        if (off >= len || av_cbor_decode(raw + off, len - off, &ext, &used) != 0)
            goto malformed;
        int is_map = ext->type == AV_CBOR_MAP;
        av_cbor_free(ext);
        if (!is_map)
            goto malformed;
        off += used;
    }
    if (off != len)
        goto malformed;
    return AV_OK;
malformed:
    av_authdata_dispose(ad);
    return AV_AUTHDATA_MALFORMED;
}

void av_authdata_dispose(av_authdata_t *ad)
{
    av_cose_key_dispose(&ad->key);
}
