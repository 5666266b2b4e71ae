/* av_cbor: a small bounded CBOR (RFC 8949) decoder for the fixed WebAuthn shapes (attestation
 * object, attStmt, COSE key, authenticator extensions).
 *
 * Why not libcbor: Debian's libcbor 0.8 pre-allocates arrays and maps from the declared count,
 * so 5 bytes can make it allocate gigabytes (a 5-byte map header declaring 2^32 entries). Here
 * every declared length or count is checked against the bytes left before anything is allocated,
 * the input size, nesting depth and container sizes are capped, indefinite lengths, tags and
 * duplicate map keys are refused. Strings are not copied: items point into the input buffer,
 * which must outlive the tree. */
#ifndef AV_CBOR_H
#define AV_CBOR_H

#include <stddef.h>
#include <stdint.h>

#define AV_CBOR_MAX_INPUT (64 * 1024) /* attestation objects are a few KiB */
#define AV_CBOR_MAX_DEPTH 8
#define AV_CBOR_MAX_MAP 64    /* pairs per map; keeps the duplicate check cheap */
#define AV_CBOR_MAX_ARRAY 256 /* elements per array (x5c has 2-4) */

typedef enum {
    AV_CBOR_UINT,
    AV_CBOR_NEGINT, /* value is -1 - u */
    AV_CBOR_BYTES,
    AV_CBOR_TEXT,
    AV_CBOR_ARRAY,
    AV_CBOR_MAP,
    AV_CBOR_SIMPLE, /* false (20), true (21), null (22), undefined (23): u holds the number */
    AV_CBOR_FLOAT,  /* half/single/double; value not decoded (never needed) */
} av_cbor_type_t;

typedef struct av_cbor_item {
    av_cbor_type_t type;
    uint64_t u;                 /* integer argument: UINT/NEGINT value, simple value */
    const uint8_t *ptr;         /* BYTES/TEXT content (into the input buffer; not NUL-terminated) */
    size_t len;                 /* BYTES/TEXT length; ARRAY element count; MAP pair count */
    struct av_cbor_item *items; /* owned: ARRAY len elements; MAP 2*len (key, value, ...) */
} av_cbor_item_t;

/* Decodes one item from |buf|. With |used| NULL the item must span all |len| bytes (trailing
 * bytes are an error); otherwise the number of bytes consumed is stored there.
 * Returns 0 and a tree in *out (free with av_cbor_free), or -1 for anything malformed or over
 * a limit (nothing is left allocated). */
int av_cbor_decode(const uint8_t *buf, size_t len, av_cbor_item_t **out, size_t *used);

void av_cbor_free(av_cbor_item_t *item);

/* Map lookups: the value for a text key / an integer key, or NULL (also when |map| is not a
 * map). */
const av_cbor_item_t *av_cbor_map_get_text(const av_cbor_item_t *map, const char *key);
const av_cbor_item_t *av_cbor_map_get_int(const av_cbor_item_t *map, int64_t key);

/* Integer value of a UINT or NEGINT item that fits int64_t: 0 and *out, or -1. */
int av_cbor_int(const av_cbor_item_t *it, int64_t *out);

/* 1 when |it| is a TEXT item equal to |s|. */
int av_cbor_text_eq(const av_cbor_item_t *it, const char *s);

#endif
