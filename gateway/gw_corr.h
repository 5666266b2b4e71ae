/* gw_corr: the correlation id rule, one for every answer the gateway gives (the core's own
 * refusals and the API's answers). A client's Mailbox-Correlation-ID (or the later name
 * Mailbox-Request-ID) is echoed under the name it came with and forwarded to the store, when it
 * is 1..GW_CORRELATION_ID_MAX bytes of visible ASCII; anything else is never echoed. */
#ifndef GW_CORR_H
#define GW_CORR_H

/* Correlation ids are echoed back; anything longer is not a UUID-like id. */
#define GW_CORRELATION_ID_MAX 128

/* The request header names that carry it (lower case), in order of preference. */
extern const char *const gw_correlation_headers[2];

/* 1 when |s| may be echoed and forwarded: 1..128 bytes of visible ASCII; else 0. */
int gw_correlation_id_valid(const char *s);

#endif
