/* libFuzzer target for the gateway's client-input parsers: CreateMailbox and UpdateMailbox
 * bodies, the deviceAttestation header and RFC 3339 times. Accepted input must satisfy the
 * invariants the rest of the gateway relies on. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_json.h"
#include "gw_preview.h"

#define NOW_MS 1795417200000LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_create_body_t c;
    gw_json_err_t err;
    if (gw_json_parse_create(data, size, NOW_MS, 172800, &c, &err) == 0) {
        if (c.payload.data_len < GW_PAYLOAD_MIN || strlen(c.title) > GW_TITLE_MAX ||
            strlen(c.description) > GW_DESCRIPTION_MAX || strlen(c.image_url) > GW_IMAGE_URL_MAX ||
            c.ttl_seconds < 1 || c.ttl_seconds > 172800 ||
            !cm_uuid_is_v4(c.mailbox_id, strlen(c.mailbox_id)) ||
            !gw_utf8_valid((const uint8_t *)c.title, strlen(c.title)))
            abort();
        size_t len;
        char *html = gw_preview_render(c.title, c.description, c.image_url, "https://r/", &len);
        if (!html || strstr(html, "<script"))
            abort();
        free(html);
        gw_create_body_free(&c);
    } else if (err.err == GW_OK || !gw_err_code(err.err)[0]) {
        abort();
    }
    gw_update_body_t u;
    if (gw_json_parse_update(data, size, &u, &err) == 0) {
        if (!u.token.present || u.payload.data_len < GW_PAYLOAD_MIN)
            abort();
        gw_update_body_free(&u);
    }
    /* header-shaped input: NUL-terminated copy */
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    uint8_t *ao, *cd;
    size_t aol, cdl;
    if (gw_json_parse_attestation(s, &ao, &aol, &cd, &cdl) == 0) {
        if (!ao || !cd || !aol || !cdl)
            abort();
        free(ao);
        free(cd);
    }
    int64_t ms;
    if (gw_rfc3339_parse(s, &ms) == 0) {
        char out[32];
        gw_rfc3339_format(ms, out);
    }
    gw_media_type_is_json(s);
    cm_corr_id_valid(s);
    free(s);
    return 0;
}
