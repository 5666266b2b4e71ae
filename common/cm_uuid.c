#include "cm_uuid.h"

#include <ctype.h>
#include <stdio.h>

#include <openssl/rand.h>

int cm_uuid_valid(const char *s, size_t len)
{
    if (len != CM_UUID_STRLEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

int cm_uuid_is_v4(const char *s, size_t len)
{
    if (!cm_uuid_valid(s, len) || s[14] != '4')
        return 0;
    char v = (char)tolower((unsigned char)s[19]);
    return v == '8' || v == '9' || v == 'a' || v == 'b';
}

void cm_uuid_canonical(const char *s, char out[CM_UUID_STRLEN + 1])
{
    for (int i = 0; i < CM_UUID_STRLEN; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[CM_UUID_STRLEN] = '\0';
}

int cm_uuid_v4(char out[CM_UUID_STRLEN + 1])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, CM_UUID_STRLEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return 0;
}
