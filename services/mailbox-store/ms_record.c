#include "ms_record.h"

#include <stdlib.h>
#include <string.h>
#include "cm_alloc.h"

#define RECORD_VERSION 1
#define IDEM_VERSION 0xA1 /* never a method tag: records of the unversioned format fail */
#define OUTBOX_VERSION 0xB1

void ms_be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

uint64_t ms_be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* ---- a bounded writer and reader ---- */

typedef struct {
    uint8_t *p, *end;
} wr_t;

typedef struct {
    const uint8_t *p, *end;
    int bad;
} rd_t;

static uint8_t *wr_alloc(wr_t *w, size_t n)
{
    uint8_t *buf = cm_xmalloc(n);
    w->p = buf;
    w->end = buf + n;
    return buf;
}

static void wr_bytes(wr_t *w, const void *b, size_t n)
{
    if (n)
        memcpy(w->p, b, n);
    w->p += n;
}

static void wr_u8(wr_t *w, uint8_t v)
{
    *w->p++ = v;
}

static void wr_i64(wr_t *w, int64_t v)
{
    ms_be64_put(w->p, (uint64_t)v);
    w->p += 8;
}

static void wr_blob(wr_t *w, ms_blob_t b)
{
    w->p[0] = (uint8_t)(b.n >> 24);
    w->p[1] = (uint8_t)(b.n >> 16);
    w->p[2] = (uint8_t)(b.n >> 8);
    w->p[3] = (uint8_t)b.n;
    w->p += 4;
    wr_bytes(w, b.p, b.n);
}

static const uint8_t *rd_bytes(rd_t *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

static uint8_t rd_u8(rd_t *r)
{
    const uint8_t *p = rd_bytes(r, 1);
    return p ? *p : 0;
}

static int64_t rd_i64(rd_t *r)
{
    const uint8_t *p = rd_bytes(r, 8);
    return p ? (int64_t)ms_be64_get(p) : 0;
}

static ms_blob_t rd_blob(rd_t *r)
{
    ms_blob_t b = {NULL, 0};
    const uint8_t *l = rd_bytes(r, 4);
    if (!l)
        return b;
    size_t n = (size_t)l[0] << 24 | (size_t)l[1] << 16 | (size_t)l[2] << 8 | l[3];
    b.p = rd_bytes(r, n);
    b.n = b.p ? n : 0;
    return b;
}

/* 0 when every byte was read and nothing was short. */
static int rd_done(const rd_t *r)
{
    return !r->bad && r->p == r->end ? 0 : -1;
}

/* ---- mailbox record ---- */

#define NBLOBS 9

static void record_blobs(const ms_record_t *r, const ms_blob_t **b)
{
    const ms_blob_t *all[NBLOBS] = {&r->creator_tok_type,
                                    &r->creator_tok_data,
                                    &r->receiver_tok_type,
                                    &r->receiver_tok_data,
                                    &r->title,
                                    &r->description,
                                    &r->image_url,
                                    &r->payload_type,
                                    &r->payload_data};
    memcpy(b, all, sizeof(all));
}

/* version, created, expires, rights, has_receiver, creator, receiver */
#define FIXED_LEN (1 + 8 + 8 + 1 + 1 + 2 * MS_HASH_LEN)

int ms_record_encode(const ms_record_t *r, uint8_t **out, size_t *len)
{
    const ms_blob_t *b[NBLOBS];
    record_blobs(r, b);
    size_t n = FIXED_LEN;
    for (size_t i = 0; i < NBLOBS; i++)
        n += 4 + b[i]->n;
    wr_t w;
    *out = wr_alloc(&w, n);
    *len = n;
    static const uint8_t none[MS_HASH_LEN];
    wr_u8(&w, RECORD_VERSION);
    wr_i64(&w, r->created_ms);
    wr_i64(&w, r->expires_ms);
    wr_u8(&w, r->rights);
    wr_u8(&w, r->has_receiver ? 1 : 0);
    wr_bytes(&w, r->creator, MS_HASH_LEN);
    wr_bytes(&w, r->has_receiver ? r->receiver : none, MS_HASH_LEN);
    for (size_t i = 0; i < NBLOBS; i++)
        wr_blob(&w, *b[i]);
    return 0;
}

int ms_record_decode(const uint8_t *buf, size_t len, ms_record_t *r)
{
    memset(r, 0, sizeof(*r));
    rd_t rd = {buf, buf + len, 0};
    if (rd_u8(&rd) != RECORD_VERSION || rd.bad)
        return -1;
    r->created_ms = rd_i64(&rd);
    r->expires_ms = rd_i64(&rd);
    r->rights = rd_u8(&rd);
    r->has_receiver = rd_u8(&rd);
    const uint8_t *c = rd_bytes(&rd, MS_HASH_LEN), *v = rd_bytes(&rd, MS_HASH_LEN);
    if (rd.bad || r->has_receiver > 1 || (r->rights & ~7))
        return -1;
    memcpy(r->creator, c, MS_HASH_LEN);
    memcpy(r->receiver, v, MS_HASH_LEN);
    ms_blob_t *b[NBLOBS] = {&r->creator_tok_type,
                            &r->creator_tok_data,
                            &r->receiver_tok_type,
                            &r->receiver_tok_data,
                            &r->title,
                            &r->description,
                            &r->image_url,
                            &r->payload_type,
                            &r->payload_data};
    for (size_t i = 0; i < NBLOBS; i++)
        *b[i] = rd_blob(&rd);
    return rd_done(&rd);
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

/* ---- idempotency record ---- */

int ms_idem_encode(const ms_idem_t *r, uint8_t **out, size_t *len)
{
    if (r->corr.n > MS_MAX_CORR_LEN)
        return -1;
    const ms_blob_t *b[5] = {&r->title, &r->description, &r->image_url, &r->payload_type,
                             &r->payload_data};
    size_t n = 1 + 1 + 1 + r->corr.n + 8;
    for (size_t i = 0; i < 5; i++)
        n += 4 + b[i]->n;
    wr_t w;
    *out = wr_alloc(&w, n);
    *len = n;
    wr_u8(&w, IDEM_VERSION);
    wr_u8(&w, r->method);
    wr_u8(&w, (uint8_t)r->corr.n);
    wr_bytes(&w, r->corr.p, r->corr.n);
    wr_i64(&w, r->expires_at_ms);
    for (size_t i = 0; i < 5; i++)
        wr_blob(&w, *b[i]);
    return 0;
}

int ms_idem_decode(const uint8_t *buf, size_t len, ms_idem_t *r)
{
    memset(r, 0, sizeof(*r));
    rd_t rd = {buf, buf + len, 0};
    if (rd_u8(&rd) != IDEM_VERSION || rd.bad)
        return -1;
    r->method = rd_u8(&rd);
    r->corr.n = rd_u8(&rd);
    r->corr.p = rd_bytes(&rd, r->corr.n);
    r->expires_at_ms = rd_i64(&rd);
    r->title = rd_blob(&rd);
    r->description = rd_blob(&rd);
    r->image_url = rd_blob(&rd);
    r->payload_type = rd_blob(&rd);
    r->payload_data = rd_blob(&rd);
    return rd_done(&rd);
}

/* ---- outbox entry ---- */

int ms_outbox_rec_encode(const ms_outbox_rec_t *r, uint8_t **out, size_t *len)
{
    size_t n = 1 + 1 + 2 * MS_ID_LEN + 16 + 8 + r->token_type.n + r->token_data.n;
    wr_t w;
    *out = wr_alloc(&w, n);
    *len = n;
    wr_u8(&w, OUTBOX_VERSION);
    wr_u8(&w, r->kind);
    wr_bytes(&w, r->notification_id, MS_ID_LEN);
    wr_bytes(&w, r->mailbox_id, MS_ID_LEN);
    wr_i64(&w, r->mailbox_expires_at_ms);
    wr_i64(&w, r->created_at_ms);
    wr_blob(&w, r->token_type);
    wr_blob(&w, r->token_data);
    return 0;
}

int ms_outbox_rec_decode(const uint8_t *buf, size_t len, ms_outbox_rec_t *r)
{
    memset(r, 0, sizeof(*r));
    rd_t rd = {buf, buf + len, 0};
    if (rd_u8(&rd) != OUTBOX_VERSION || rd.bad)
        return -1;
    r->kind = rd_u8(&rd);
    const uint8_t *nid = rd_bytes(&rd, MS_ID_LEN), *mid = rd_bytes(&rd, MS_ID_LEN);
    if (rd.bad)
        return -1;
    memcpy(r->notification_id, nid, MS_ID_LEN);
    memcpy(r->mailbox_id, mid, MS_ID_LEN);
    r->mailbox_expires_at_ms = rd_i64(&rd);
    r->created_at_ms = rd_i64(&rd);
    r->token_type = rd_blob(&rd);
    r->token_data = rd_blob(&rd);
    return rd_done(&rd);
}
