/* gw_api: the public REST/JSON API v1 (draft 001) translated into backend gRPC calls.
 * The request entry point, gw_api_handle(), is declared in gw_http.h. */
#ifndef GW_API_H
#define GW_API_H

#include <stddef.h>

#include "cm_config.h"

/* The API's own configuration options (backend targets, deadlines, public base URL, max TTL,
 * attestation policy, ...). main.c appends them to the gateway's table before parsing; the
 * values are read by gw_api_start(). The array is static and lives for the process. */
cm_opt_t *gw_api_options(size_t *n);

/* After config parsing, before listeners accept: opens backend channels and the async poller.
 * |nloops| is the number of loop threads the core runs. Returns 0 or -1. */
int gw_api_start(int nloops);

/* After the core stopped accepting and finished in-flight requests. */
void gw_api_stop(void);

#endif
