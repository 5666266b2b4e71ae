/* gateway: the public REST/JSON API (h2, h2c, HTTP/1.1, TLS) in front of the internal gRPC
 * services. The process around the server core is gw_service; this file maps the API's and
 * the backends' options to their configurations and composes them: main creates the backend
 * instance and hands it to the API, which is the core's request handler. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cm_config.h"
#include "cm_log.h"
#include "gw_api.h"
#include "gw_backend.h"
#include "gw_pubconfig.h"
#include "gw_ratelimit.h"
#include "gw_service.h"

static const char *o_store_target, *o_store_shards, *o_push_target, *o_attest_target,
    *o_public_base_url, *o_attest_policy, *o_lb_policy;
static int64_t o_backend_timeout_ms, o_max_ttl;
static int o_store_batch;

static cm_opt_t APP_OPTS[] = {
    {"store-target", CM_OPT_STR, "127.0.0.1:7001", "mailbox-store gRPC target", &o_store_target},
    {"store-shards", CM_OPT_STR, NULL,
     "comma-separated mailbox-store shard addresses; mailboxes are placed by rendezvous hashing "
     "of their id (cm_shard.h); overrides --store-target",
     &o_store_shards},
    {"push-target", CM_OPT_STR, NULL, "push-dispatch gRPC target; empty: push reported unsupported",
     &o_push_target},
    {"attestation-target", CM_OPT_STR, NULL,
     "attestation-verifier gRPC target; empty: no verifier (a present attestation then gets "
     "503 unless the policy is off)",
     &o_attest_target},
    {"backend-timeout-ms", CM_OPT_INT, "2000", "deadline of every backend call (ms)",
     &o_backend_timeout_ms},
    {"public-base-url", CM_OPT_STR, "http://127.0.0.1:8080",
     "scheme://host[:port] used in urlLink and og:url", &o_public_base_url},
    {"max-ttl", CM_OPT_INT, "172800", "largest mailbox lifetime a client may ask for (s)",
     &o_max_ttl},
    {"attestation-policy", CM_OPT_STR, "verify-if-present",
     "device attestation on Create/Update: off | verify-if-present | required", &o_attest_policy},
    {"lb-policy", CM_OPT_STR, NULL, "gRPC load-balancing policy for backends (round_robin in k8s)",
     &o_lb_policy},
    {"store-batch", CM_OPT_BOOL, "1",
     "send the store reads of one loop iteration as one MailboxStore/Batch call (0: one call "
     "per read, for a store older than Batch)",
     &o_store_batch},
};

/* APP_OPTS, then the rate limiter's and the published configuration's own options. */
static cm_opt_t *app_options(size_t *n)
{
    static cm_opt_t all[sizeof(APP_OPTS) / sizeof(APP_OPTS[0]) + 16];
    size_t na = sizeof(APP_OPTS) / sizeof(APP_OPTS[0]), nrl = 0, npub = 0;
    cm_opt_t *rl = gw_rl_options(&nrl), *pub = gw_pubconfig_options(&npub);
    if (na + nrl + npub > sizeof(all) / sizeof(all[0]))
        abort();
    memcpy(all, APP_OPTS, sizeof(APP_OPTS));
    memcpy(all + na, rl, nrl * sizeof(*rl));
    memcpy(all + na + nrl, pub, npub * sizeof(*pub));
    *n = na + nrl + npub;
    return all;
}

/* What main composes: all owned; the API and the limiter are freed last, once no request can
 * reach them (see gw_api_free). */
typedef struct {
    gw_rl_t *limiter;
    gw_backend_t *backend;
    gw_api_t *api;
} gateway_t;

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

static int gateway_start(void *arg, int nloops, gw_handler_fn *handler, void **handler_ctx)
{
    gateway_t *g = arg;
    (void)nloops; /* one poller serves every loop; completions hop back with gw_loop_post */
    gw_backend_config_t bc = {
        .store_target = o_store_target,
        .store_shards = o_store_shards,
        .push_target = o_push_target,
        .attest_target = o_attest_target,
        .lb_policy = o_lb_policy,
        .timeout_ms = o_backend_timeout_ms,
        .store_batch = o_store_batch,
    };
    if (gw_rl_new(&g->limiter) != 0)
        return -1;
    gw_api_config_t ac = {
        .public_base_url = o_public_base_url,
        .attestation_policy = o_attest_policy,
        .timeout_ms = o_backend_timeout_ms,
        .max_ttl = o_max_ttl,
        .limiter = g->limiter,
    };
    if (gw_backend_new(&bc, &g->backend) != 0)
        goto fail;
    if (gw_api_new(&ac, g->backend, &g->api) != 0)
        goto fail;
    CM_INFO(NULL,
            "gateway api: store=%s shards=%s push=%s attestation=%s policy=%s "
            "timeout_ms=%lld max_ttl=%lld base_url=%s",
            o_store_target, or_dash(o_store_shards), or_dash(o_push_target),
            or_dash(o_attest_target), o_attest_policy, (long long)o_backend_timeout_ms,
            (long long)o_max_ttl, o_public_base_url);
    *handler = gw_api_handle;
    *handler_ctx = g->api;
    return 0;
fail:
    gw_backend_free(g->backend);
    g->backend = NULL;
    gw_rl_free(g->limiter);
    g->limiter = NULL;
    return -1;
}

static void gateway_stop(void *arg)
{
    gateway_t *g = arg;
    gw_backend_free(g->backend);
    g->backend = NULL;
}

static void gateway_destroy(void *arg)
{
    gateway_t *g = arg;
    gw_api_free(g->api);
    g->api = NULL;
    gw_rl_free(g->limiter);
    g->limiter = NULL;
}

int main(int argc, char **argv)
{
    gateway_t g = {0};
    size_t nopts = 0;
    cm_opt_t *opts = app_options(&nopts);
    gw_service_t svc = {
        .name = "gateway",
        .summary = "Tigress relay public API gateway",
        .opts = opts,
        .nopts = nopts,
        .app = &g,
        .start = gateway_start,
        .stop = gateway_stop,
        .destroy = gateway_destroy,
    };
    return gw_service_main(&svc, argc, argv);
}
