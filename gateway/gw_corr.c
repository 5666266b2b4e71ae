#include "gw_corr.h"

const char *const gw_correlation_headers[2] = {"mailbox-correlation-id", "mailbox-request-id"};
