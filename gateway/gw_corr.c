#include "gw_corr.h"

#include <stddef.h>

const char *const gw_correlation_headers[2] = {"mailbox-correlation-id", "mailbox-request-id"};

int gw_correlation_id_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        if ((unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e)
            return 0;
        if (n >= GW_CORRELATION_ID_MAX)
            return 0;
    }
    return n > 0;
}
