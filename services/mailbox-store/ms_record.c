#include "ms_record.h"

#include <stdlib.h>
#include <string.h>

#define RECORD_VERSION 1
#define NBLOBS 9

static ms_blob_t *blobs(ms_record_t *r, size_t i)
{
    ms_blob_t *b[NBLOBS] = {&r->creator_tok_type,
                            &r->creator_tok_data,
                            &r->receiver_tok_type,
                            &r->receiver_tok_data,
                            &r->title,
                            &r->description,
                            &r->image_url,
                            &r->payload_type,
                            &r->payload_data};
    return b[i];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* version, created, expires, rights, has_receiver, creator, receiver */
#define FIXED_LEN (1 + 8 + 8 + 1 + 1 + 2 * MS_HASH_LEN)

int ms_record_encode(const ms_record_t *r, uint8_t **out, size_t *len)
{
    ms_record_t *m = (ms_record_t *)r; /* blobs() takes a mutable record; nothing is written */
    size_t n = FIXED_LEN;
    for (size_t i = 0; i < NBLOBS; i++)
        n += 4 + blobs(m, i)->n;
    uint8_t *buf = malloc(n);
    if (!buf)
        abort();
    uint8_t *p = buf;
    *p++ = RECORD_VERSION;
    ms_be64_put(p, (uint64_t)r->created_ms);
    p += 8;
    ms_be64_put(p, (uint64_t)r->expires_ms);
    p += 8;
    *p++ = r->rights;
    *p++ = r->has_receiver ? 1 : 0;
    memcpy(p, r->creator, MS_HASH_LEN);
    p += MS_HASH_LEN;
    if (r->has_receiver)
        memcpy(p, r->receiver, MS_HASH_LEN);
    else
        memset(p, 0, MS_HASH_LEN);
    p += MS_HASH_LEN;
    for (size_t i = 0; i < NBLOBS; i++) {
        const ms_blob_t *b = blobs(m, i);
        put32(p, (uint32_t)b->n);
        p += 4;
        if (b->n)
            memcpy(p, b->p, b->n);
        p += b->n;
    }
    *out = buf;
    *len = n;
    return 0;
}

int ms_record_decode(const uint8_t *buf, size_t len, ms_record_t *r)
{
    memset(r, 0, sizeof(*r));
    if (len < FIXED_LEN || buf[0] != RECORD_VERSION)
        return -1;
    const uint8_t *p = buf + 1, *end = buf + len;
    r->created_ms = (int64_t)ms_be64_get(p);
    p += 8;
    r->expires_ms = (int64_t)ms_be64_get(p);
    p += 8;
    r->rights = *p++;
    r->has_receiver = *p++;
    if (r->has_receiver > 1 || (r->rights & ~7))
        return -1;
    memcpy(r->creator, p, MS_HASH_LEN);
    p += MS_HASH_LEN;
    memcpy(r->receiver, p, MS_HASH_LEN);
    p += MS_HASH_LEN;
    for (size_t i = 0; i < NBLOBS; i++) {
        if ((size_t)(end - p) < 4)
            return -1;
        uint32_t n = get32(p);
        p += 4;
        if ((size_t)(end - p) < n)
            return -1;
        blobs(r, i)->p = p;
        blobs(r, i)->n = n;
        p += n;
    }
    return p == end ? 0 : -1;
}

int ms_rights_parse(const char *s, uint8_t *bits)
{
    uint8_t b = 0;
    if (!*s) {
        *bits = MS_RIGHT_R | MS_RIGHT_D;
        return 0;
    }
    for (; *s; s++) {
        uint8_t f = *s == 'R' ? MS_RIGHT_R : *s == 'W' ? MS_RIGHT_W : *s == 'D' ? MS_RIGHT_D : 0;
        if (!f || (b & f))
            return -1;
        b |= f;
    }
    *bits = b;
    return 0;
}

int ms_idem_encode(uint8_t method, const char *corr, const uint8_t *resp, size_t resp_len,
                   uint8_t **out, size_t *len)
{
    size_t cl = strlen(corr);
    if (cl > 255)
        return -1;
    size_t n = 2 + cl + resp_len;
    uint8_t *buf = malloc(n);
    if (!buf)
        abort();
    buf[0] = method;
    buf[1] = (uint8_t)cl;
    memcpy(buf + 2, corr, cl);
    if (resp_len)
        memcpy(buf + 2 + cl, resp, resp_len);
    *out = buf;
    *len = n;
    return 0;
}

int ms_idem_decode(const uint8_t *buf, size_t len, uint8_t *method, ms_blob_t *corr,
                   ms_blob_t *resp)
{
    if (len < 2 || (size_t)buf[1] + 2 > len)
        return -1;
    *method = buf[0];
    corr->p = buf + 2;
    corr->n = buf[1];
    resp->p = buf + 2 + buf[1];
    resp->n = len - 2 - buf[1];
    return 0;
}
