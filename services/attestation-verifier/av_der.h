/* av_der: a strict DER TLV reader for the few certificate extension values parsed by hand
 * (Apple nonce, Android KeyDescription, AAGUID). Definite lengths only, bounds-checked. */
#ifndef AV_DER_H
#define AV_DER_H

#include <stddef.h>
#include <stdint.h>

#define AV_DER_UNIVERSAL 0
#define AV_DER_APPLICATION 1
#define AV_DER_CONTEXT 2
#define AV_DER_PRIVATE 3

typedef struct {
    int cls;            /* AV_DER_* class */
    int constructed;    /* 1 for SEQUENCE, SET, explicit tags */
    uint32_t tag;       /* tag number (high-tag-number form decoded, e.g. [600]) */
    const uint8_t *val; /* contents, inside the input */
    size_t len;
} av_der_tlv_t;

/* Reads the TLV at *|p| (< |end|) and advances *|p| past it. Returns 0 or -1 (truncated,
 * indefinite or non-minimal length, tag number over 2^21). */
int av_der_next(const uint8_t **p, const uint8_t *end, av_der_tlv_t *t);

/* Reads one TLV that must span exactly [|buf|, |buf|+|len|). 0 or -1. */
int av_der_whole(const uint8_t *buf, size_t len, av_der_tlv_t *t);

/* Value of a non-negative INTEGER or ENUMERATED up to 2^63: 0 and *out, or -1. */
int av_der_uint(const av_der_tlv_t *t, uint64_t *out);

#endif
