#include "cm_b64.h"

#include <string.h>

static const char std_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t cm_b64_decoded_max(size_t len)
{
    return (len + 3) / 4 * 3;
}

size_t cm_b64_encoded_size(size_t len)
{
    return (len + 2) / 3 * 4 + 1;
}

static int value_of(cm_b64_variant_t v, unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if ((c == '+' && v != CM_B64_URL) || (c == '-' && v != CM_B64_STD))
        return 62;
    if ((c == '/' && v != CM_B64_URL) || (c == '_' && v != CM_B64_STD))
        return 63;
    return -1;
}

int cm_b64_decode(cm_b64_variant_t v, const char *in, size_t len, uint8_t *out, size_t cap,
                  size_t *outlen)
{
    size_t pad = 0;
    while (pad < 2 && len > 0 && in[len - 1] == '=') {
        len--;
        pad++;
    }
    if (pad && (len + pad) % 4 != 0)
        return -1;
    if (v == CM_B64_STD && len % 4 != 0 && (len + pad) % 4 != 0)
        return -1;
    if (len % 4 == 1)
        return -1;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > cap)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int x = value_of(v, (unsigned char)in[i]);
        if (x < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)x;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* Leftover bits must be zero, so each byte string has exactly one encoding. */
    if (bits && (acc & ((1u << bits) - 1)))
        return -1;
    *outlen = o;
    return 0;
}

size_t cm_b64_encode(cm_b64_variant_t v, const uint8_t *in, size_t len, char *out)
{
    const char *a = v == CM_B64_URL ? url_alpha : std_alpha;
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t n = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[n >> 18];
        out[o++] = a[(n >> 12) & 63];
        out[o++] = a[(n >> 6) & 63];
        out[o++] = a[n & 63];
    }
    if (i < len) {
        uint32_t n = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = a[n >> 18];
        out[o++] = a[(n >> 12) & 63];
        if (i + 1 < len)
            out[o++] = a[(n >> 6) & 63];
        else if (v != CM_B64_URL)
            out[o++] = '=';
        if (v != CM_B64_URL)
            out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}
