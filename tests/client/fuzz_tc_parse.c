/* libFuzzer target for the client's parsers of untrusted text: share URLs (from a message),
 * relay base URLs, the relay's JSON error bodies, its /v1/config answer and its OpenGraph
 * preview page. The first
 * byte picks the parser. A share URL that parses must survive build -> parse unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tigress_client.h"

static void share_roundtrip(const char *s)
{
    tc_share_t a, b;
    if (tc_share_parse(s, &a) != TC_OK || a.secret_len == 0)
        return;
    char *u = NULL;
    if (tc_share_build(a.api_url, a.secret, a.secret_len, &u) != TC_OK)
        abort(); /* what parsed must build */
    if (tc_share_parse(u, &b) != TC_OK || strcmp(a.api_url, b.api_url) != 0 ||
        a.secret_len != b.secret_len || memcmp(a.secret, b.secret, a.secret_len) != 0)
        abort();
    tc_free(u, strlen(u) + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *s = malloc(size);
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    switch ((uint8_t)(data[0] - '0') % 5) { /* seeds start with an ASCII digit */
    case 0:
        share_roundtrip(s);
        break;
    case 1: {
        char base[TC_URL_MAX];
        tc_relay_base_parse(s, base);
        break;
    }
    case 2: {
        tc_call_info_t ci;
        long status = size > 2 ? 400 + data[1] % 200 : 404;
        tc_relay_error_parse(status, (const char *)data + 1, size - 1, &ci);
        if (strlen(ci.code) >= sizeof(ci.code) || strlen(ci.message) >= sizeof(ci.message))
            abort();
        break;
    }
    case 4:
        if (tc_config_max_body((const char *)data + 1, size - 1) < 0)
            abort();
        break;
    default: {
        tc_preview_t p;
        if (tc_preview_parse((const char *)data + 1, size - 1, &p) == TC_OK)
            tc_preview_free(&p);
        break;
    }
    }
    free(s);
    return 0;
}
