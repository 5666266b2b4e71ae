/* gw_corr: where the gateway finds a client's correlation id. A client's Mailbox-Correlation-ID
 * (or the later name Mailbox-Request-ID) is echoed under the name it came with, on every answer
 * the gateway gives (the core's own refusals and the API's answers), and forwarded to the store
 * when it follows the project's one rule for correlation ids, cm_corr_id_valid (1..CM_CORR_ID_MAX
 * bytes of visible ASCII, the rule API.md documents); anything else is never echoed. */
#ifndef GW_CORR_H
#define GW_CORR_H

#include "cm_corr.h"

/* The request header names that carry it (lower case), in order of preference. */
extern const char *const gw_correlation_headers[2];

#endif
