/* gw_api: the public REST/JSON API v1 translated into backend gRPC calls. An instance is the
 * request handler the server core is configured with (gw_api_handle is a gw_handler_fn); it
 * calls the backends through the gw_backend_t it was given. Routes are one table in gw_api.c
 * (path, method, route label, handler): a new endpoint is one row there. */
#ifndef GW_API_H
#define GW_API_H

#include <stdint.h>

#include "gw_backend.h"
#include "gw_http.h"
#include "gw_ratelimit.h"

typedef struct {
    const char *public_base_url;    /* scheme://host[:port][/path] of urlLink and og:url */
    const char *attestation_policy; /* "off", "verify-if-present" or "required" */
    int64_t timeout_ms;             /* deadline of every backend call a request makes (> 0) */
    int64_t max_ttl;                /* largest mailbox lifetime a client may ask for, s (> 0) */
    gw_rl_t *limiter; /* not owned, must outlive the API; NULL: requests are not limited */
} gw_api_config_t;

typedef struct gw_api gw_api_t;

/* Checks |cfg| (strings are copied) against what |backend| offers (a required attestation
 * needs a verifier). |backend| is not owned and must outlive the API. Returns 0 and the API in
 * *out, or -1 (logged). */
int gw_api_new(const gw_api_config_t *cfg, gw_backend_t *backend, gw_api_t **out);

/* Frees the API once nothing can call into it any more: after its backend was freed and the
 * loops ran the completions that backend posted. NULL is ignored. */
void gw_api_free(gw_api_t *api);

/* Handles one complete request (|api| is the gw_api_t). On the request's loop thread. */
void gw_api_handle(void *api, gw_req_t *r);

#endif
