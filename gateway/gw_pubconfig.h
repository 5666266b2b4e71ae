/* gw_pubconfig: GET /v1/config, the relay's published limits, so a client can discover what
 * this deployment accepts instead of learning it from 400s: API version, lifetimes, body and
 * field sizes, payload and token types, access-rights default, attestation policy, push
 * providers available now, and the rate-limit budgets. Every value is taken from the running
 * configuration; the answer is public and cacheable (Cache-Control: public, max-age=300). */
#ifndef GW_PUBCONFIG_H
#define GW_PUBCONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "cm_config.h"
#include "gw_backend.h"
#include "gw_http.h"
#include "gw_ratelimit.h"

/* Seconds clients may cache the answer. */
#define GW_PUBCONFIG_MAX_AGE 300

/* What the API publishes besides the module's own option; the API fills it in gw_api_new. */
typedef struct {
    int64_t max_ttl_s;              /* --max-ttl */
    const char *attestation_policy; /* static: off | verify-if-present | required */
    int attestation_verifier;       /* a verifier is configured */
    gw_backend_t *backend;          /* not owned: push-dispatch's providers */
    const gw_rl_t *limiter;         /* not owned; NULL: requests are not limited */
} gw_pubconfig_t;

/* The module's own option (--attestation-formats: what is announced; the verifier has the
 * authoritative list). The gateway's main appends it to its table. */
cm_opt_t *gw_pubconfig_options(size_t *n);

/* Answers GET /v1/config from |cfg| (which must outlive the answer, as the API does) and the
 * core's body limit. The router answers other methods. On |r|'s loop thread. */
void gw_pubconfig_handle(const gw_pubconfig_t *cfg, gw_req_t *r);

#endif
