/* gw_ratelimit: abuse limits of the public API, per client, in memory only (never stored or
 * logged).
 *
 * Two budgets per client (gw_rltable): "write" (Create and Update take one token each before
 * anything is forwarded) and "failure" (each 400, 401 or 404 answer on /v1/m... costs one
 * token once it is known; that is what guessing mailbox ids or claims produces). A client whose
 * failure budget is empty is refused every /v1/m... request, since any could fail; successful
 * reads and previews cost nothing. A refused request gets 429 with Retry-After and the API's
 * JSON error body, and reaches no backend.
 *
 * The client is the TCP peer's address (IPv6: its /64), or, when the peer is a trusted proxy
 * (--trusted-proxies), the address that proxy reports in X-Forwarded-For or Forwarded
 * (--client-ip-header). Clients in --rate-limit-exempt are never limited. */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "cm_config.h"
#include "gw_http.h"
#include "gw_rltable.h"

/* The limiter's options (--rate-limit-*, --trusted-proxies, --client-ip-header); the gateway's
 * main appends them to its table. Static, lives for the process. */
cm_opt_t *gw_rl_options(size_t *n);

/* One limiter: the parsed options, the bucket table and the metrics. Shared by every loop
 * thread (the table locks itself). */
typedef struct gw_rl gw_rl_t;

/* After config parsing: checks the options and builds a limiter from them. 0 and the limiter
 * in *out, or -1 (message logged). */
int gw_rl_new(gw_rl_t **out);

/* Frees |rl| once no request can reach it any more (after the server is gone). NULL ignored. */
void gw_rl_free(gw_rl_t *rl);

/* Called before a request on a mailbox route (/v1/m, /v1/m/...) is handled. Returns 0 when it
 * may go on (always with |rl| NULL); otherwise it has answered 429 and returns -1. */
int gw_rl_admit(gw_rl_t *rl, gw_req_t *r);

/* Called with the status of every answer the API gives: a 400, 401 or 404 on a mailbox route
 * is charged to the client's failure budget. |rl| NULL: nothing. */
void gw_rl_observe(gw_rl_t *rl, gw_req_t *r, int status);

/* The configured budget |b| (per_min 0: not limited; {0, 1} with |rl| NULL), for the published
 * configuration. */
gw_rl_rate_t gw_rl_budget(const gw_rl_t *rl, gw_rl_budget_t b);

#endif
