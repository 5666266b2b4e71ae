#include "cm_corr.h"

#include <string.h>

int cm_corr_id_valid_n(const char *s, size_t n)
{
    if (!s || n == 0 || n > CM_CORR_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

int cm_corr_id_valid(const char *s)
{
    return s && cm_corr_id_valid_n(s, strnlen(s, CM_CORR_ID_MAX + 1));
}
