#include "cm_alloc.h"
#include "av_cbor.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} rd_t;

static void item_clear(av_cbor_item_t *it)
{
    if (!it->items)
        return;
    size_t n = it->type == AV_CBOR_MAP ? 2 * it->len : it->len;
    for (size_t i = 0; i < n; i++)
        item_clear(&it->items[i]);
    free(it->items);
    it->items = NULL;
}

/* Reads the initial byte's argument. Refuses indefinite lengths (ai 31) and the reserved
 * values 28-30. */
static int read_head(rd_t *r, int *major, int *ai, uint64_t *arg)
{
    if (r->p >= r->end)
        return -1;
    uint8_t ib = *r->p++;
    *major = ib >> 5;
    *ai = ib & 0x1f;
    if (*ai < 24) {
        *arg = (uint64_t)*ai;
        return 0;
    }
    size_t n;
    switch (*ai) {
    case 24:
        n = 1;
        break;
    case 25:
        n = 2;
        break;
    case 26:
        n = 4;
        break;
    case 27:
        n = 8;
        break;
    default:
        return -1;
    }
    if ((size_t)(r->end - r->p) < n)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | *r->p++;
    *arg = v;
    return 0;
}

static int key_eq(const av_cbor_item_t *a, const av_cbor_item_t *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case AV_CBOR_UINT:
    case AV_CBOR_NEGINT:
        return a->u == b->u;
    case AV_CBOR_BYTES:
    case AV_CBOR_TEXT:
        return a->len == b->len && (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
    default:
        return 0;
    }
}

static int decode_item(rd_t *r, av_cbor_item_t *it, int depth)
{
    if (depth > AV_CBOR_MAX_DEPTH)
        return -1;
    int major, ai;
    uint64_t arg;
    if (read_head(r, &major, &ai, &arg) != 0)
        return -1;
    size_t left = (size_t)(r->end - r->p);
    it->u = arg;
    switch (major) {
    case 0:
        it->type = AV_CBOR_UINT;
        return 0;
    case 1:
        it->type = AV_CBOR_NEGINT;
        return 0;
    case 2:
    case 3:
        if (arg > left)
            return -1;
        it->type = major == 2 ? AV_CBOR_BYTES : AV_CBOR_TEXT;
        it->ptr = r->p;
        it->len = (size_t)arg;
        r->p += arg;
        return 0;
    case 4:
    case 5: {
        /* Every element takes at least one byte: a count larger than what is left is a lie
         * and is refused before allocating. */
        uint64_t n = major == 5 ? arg * 2 : arg;
        if (arg > (major == 5 ? AV_CBOR_MAX_MAP : AV_CBOR_MAX_ARRAY) || n > left)
            return -1;
        it->type = major == 5 ? AV_CBOR_MAP : AV_CBOR_ARRAY;
        it->len = (size_t)arg;
        if (n == 0)
            return 0;
        it->items = cm_trycalloc((size_t)n, sizeof(*it->items));
        if (!it->items)
            return -1;
        for (size_t i = 0; i < n; i++) {
            if (decode_item(r, &it->items[i], depth + 1) != 0)
                return -1;
        }
        if (major == 5) {
            for (size_t i = 0; i < (size_t)arg; i++) {
                const av_cbor_item_t *k = &it->items[2 * i];
                if (k->type != AV_CBOR_UINT && k->type != AV_CBOR_NEGINT &&
                    k->type != AV_CBOR_TEXT && k->type != AV_CBOR_BYTES)
                    return -1;
                for (size_t j = 0; j < i; j++) {
                    if (key_eq(k, &it->items[2 * j]))
                        return -1;
                }
            }
        }
        return 0;
    }
    case 6:
        return -1; /* tags never occur in the WebAuthn structures */
    default:       /* 7 */
        if (ai < 24) {
            if (ai < 20)
                return -1; /* unassigned simple values */
            it->type = AV_CBOR_SIMPLE;
            return 0;
        }
        if (ai == 24)
            return -1; /* one-byte simple values are all unassigned or invalid */
        it->type = AV_CBOR_FLOAT;
        return 0;
    }
}

int av_cbor_decode(const uint8_t *buf, size_t len, av_cbor_item_t **out, size_t *used)
{
    *out = NULL;
    if (!buf || len == 0 || len > AV_CBOR_MAX_INPUT)
        return -1;
    av_cbor_item_t *root = cm_xcalloc(1, sizeof(*root));
    rd_t r = {buf, buf + len};
    if (decode_item(&r, root, 1) != 0)
        goto fail;
    if (used)
        *used = (size_t)(r.p - buf);
    else if (r.p != r.end)
        goto fail;
    *out = root;
    return 0;
fail:
    av_cbor_free(root);
    return -1;
}

void av_cbor_free(av_cbor_item_t *item)
{
    if (!item)
        return;
    item_clear(item);
    free(item);
}

const av_cbor_item_t *av_cbor_map_get_text(const av_cbor_item_t *map, const char *key)
{
    if (!map || map->type != AV_CBOR_MAP)
        return NULL;
    for (size_t i = 0; i < map->len; i++) {
        if (av_cbor_text_eq(&map->items[2 * i], key))
            return &map->items[2 * i + 1];
    }
    return NULL;
}

const av_cbor_item_t *av_cbor_map_get_int(const av_cbor_item_t *map, int64_t key)
{
    if (!map || map->type != AV_CBOR_MAP)
        return NULL;
    for (size_t i = 0; i < map->len; i++) {
        int64_t k;
        if (av_cbor_int(&map->items[2 * i], &k) == 0 && k == key)
            return &map->items[2 * i + 1];
    }
    return NULL;
}

int av_cbor_int(const av_cbor_item_t *it, int64_t *out)
{
    if (!it || it->u > (uint64_t)INT64_MAX)
        return -1;
    if (it->type == AV_CBOR_UINT)
        *out = (int64_t)it->u;
    else if (it->type == AV_CBOR_NEGINT)
        *out = -1 - (int64_t)it->u;
    else
        return -1;
    return 0;
}

int av_cbor_text_eq(const av_cbor_item_t *it, const char *s)
{
    size_t n = strlen(s);
    return it && it->type == AV_CBOR_TEXT && it->len == n && (n == 0 || !memcmp(it->ptr, s, n));
}
