#include "av_der.h"

int av_der_next(const uint8_t **p, const uint8_t *end, av_der_tlv_t *t)
{
    const uint8_t *q = *p;
    if (q >= end)
        return -1;
    uint8_t b = *q++;
    t->cls = b >> 6;
    t->constructed = (b >> 5) & 1;
    t->tag = b & 0x1f;
    if (t->tag == 0x1f) {
        uint32_t tag = 0;
        int n = 0;
        do {
            if (q >= end || ++n > 3)
                return -1;
            b = *q++;
            tag = (tag << 7) | (b & 0x7f);
        } while (b & 0x80);
        t->tag = tag;
    }
    if (q >= end)
        return -1;
    b = *q++;
    size_t len;
    if (b < 0x80) {
        len = b;
    } else {
        int n = b & 0x7f;
        if (n == 0 || n > 4)
            return -1; /* indefinite, or longer than anything we accept */
        len = 0;
        for (int i = 0; i < n; i++) {
            if (q >= end)
                return -1;
            len = (len << 8) | *q++;
        }
        if (len < 0x80)
            return -1; /* DER requires the short form here */
    }
    if (len > (size_t)(end - q))
        return -1;
    t->val = q;
    t->len = len;
    *p = q + len;
    return 0;
}

int av_der_whole(const uint8_t *buf, size_t len, av_der_tlv_t *t)
{
    const uint8_t *p = buf;
    if (av_der_next(&p, buf + len, t) != 0 || p != buf + len)
        return -1;
    return 0;
}

int av_der_uint(const av_der_tlv_t *t, uint64_t *out)
{
    if (t->cls != AV_DER_UNIVERSAL || (t->tag != 2 && t->tag != 10) || t->constructed ||
        t->len == 0 || t->len > 9 || (t->val[0] & 0x80))
        return -1;
    if (t->len == 9 && t->val[0] != 0)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < t->len; i++)
        v = (v << 8) | t->val[i];
    *out = v;
    return 0;
}
