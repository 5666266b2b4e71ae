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
#include "gw_http.h"

/* Seconds clients may cache the answer. */
#define GW_PUBCONFIG_MAX_AGE 300

typedef struct {
    int64_t max_ttl_s;              /* --max-ttl */
    const char *attestation_policy; /* static or option storage: off | verify-if-present | ... */
    int attestation_verifier;       /* a verifier is configured */
    /* Push-dispatch's providers, as gw_backend_push_supported/_now (NULL: no push at all):
     * |push_supported| answers at once (0/1) or returns -1 and calls |fn(arg)| once known. */
    int (*push_supported)(const char *type, gw_req_t *r, void (*fn)(void *), void *arg);
    int (*push_supported_now)(const char *type);
} gw_pubconfig_api_t;

/* The module's own option (--attestation-formats: what is announced; the verifier has the
 * authoritative list). gw_api_options appends it to the API's table. */
cm_opt_t *gw_pubconfig_options(size_t *n);

/* Values from the API (gw_api_start); copied. The body limit comes from the core. */
void gw_pubconfig_set_api(const gw_pubconfig_api_t *api);

/* Answers GET /v1/config (other methods: 405). On |r|'s loop thread. */
void gw_pubconfig_handle(gw_req_t *r);

#endif
