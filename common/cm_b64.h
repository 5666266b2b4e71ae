/* cm_b64: strict base64 (RFC 4648 §4) and base64url (§5) codecs. */
#ifndef CM_B64_H
#define CM_B64_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CM_B64_STD = 0, /* "+/" alphabet, "=" padding required */
    CM_B64_URL = 1, /* "-_" alphabet, padding optional */
    CM_B64_ANY = 2, /* decode only: either alphabet, padding optional (lenient client input) */
} cm_b64_variant_t;

/* Bytes needed to decode |len| characters (an upper bound). */
size_t cm_b64_decoded_max(size_t len);
/* Characters (plus NUL) needed to encode |len| bytes. */
size_t cm_b64_encoded_size(size_t len);

/* Decodes |in| into |out| (capacity |cap|). Rejects whitespace, characters outside the
 * alphabet, misplaced padding and non-zero trailing bits. Returns 0 and *outlen, or -1. */
int cm_b64_decode(cm_b64_variant_t v, const char *in, size_t len, uint8_t *out, size_t cap,
                  size_t *outlen);

/* Encodes and NUL-terminates; CM_B64_URL writes no padding. Returns the length written. */
size_t cm_b64_encode(cm_b64_variant_t v, const uint8_t *in, size_t len, char *out);

#endif
