/* libFuzzer target: the client-address parsers (X-Forwarded-For and Forwarded walks, address
 * literals, CIDR lists) on arbitrary bytes. Input: one selector byte, then header lines split at
 * '\n'. Checks that a resolved client is always the peer or an address that parses again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_clientaddr.h"

#define MAX_LINES 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    gw_fwd_kind_t kind = (data[0] & 1) ? GW_FWD_FORWARDED : GW_FWD_XFF;
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';

    gw_cidr_list_t trusted;
    if (gw_cidr_list_parse("10.0.0.0/8,2001:db8::/32,127.0.0.1", &trusted) != 0)
        abort();
    gw_addr_t peer, client;
    if (gw_addr_parse("10.1.2.3", 8, 0, &peer) != 0)
        abort();

    const char *lines[MAX_LINES];
    size_t n = 0;
    char *p = text;
    while (n < MAX_LINES) {
        lines[n++] = p;
        char *nl = strchr(p, '\n');
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    gw_client_resolve(&peer, &trusted, kind, lines, n, &client);
    if (client.family != 4 && client.family != 6)
        abort();
    uint8_t key[9];
    size_t klen = gw_addr_group_key(&client, key);
    if (klen != 5 && klen != 9)
        abort();

    /* the same bytes as a CIDR list and as an address literal */
    gw_cidr_list_t l;
    if (gw_cidr_list_parse(lines[0], &l) == 0) {
        gw_cidr_list_match(&l, &client);
        gw_cidr_list_free(&l);
    }
    gw_addr_t a;
    gw_addr_parse(lines[0], strlen(lines[0]), data[0] & 2, &a);

    gw_cidr_list_free(&trusted);
    free(text);
    return 0;
}
