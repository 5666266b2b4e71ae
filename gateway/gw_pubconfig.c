/* GET /v1/config; see gw_pubconfig.h. The type lists repeat gw_json's validation tables; the
 * OpenAPI test (tests/openapi) creates a mailbox with every listed type, so they cannot drift. */
#include "gw_pubconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "cm_alloc.h"
#include "gw_corr.h"
#include "gw_json.h"

static const char *const PAYLOAD_TYPES[] = {"AES128", "AES256", "AEAD_AES_128_GCM",
                                            "AEAD_AES_256_GCM"};
static const char *const TOKEN_TYPES[] = {"com.apple.apns", "com.google.fcm", "webhook"};
/* Access rights a mailbox gets without mailboxConfiguration.accessRights (the store's rule). */
static const char DEFAULT_ACCESS_RIGHTS[] = "RD";

static const char *o_formats;

static cm_opt_t pub_opts[] = {
    {"attestation-formats", CM_OPT_STR, "apple,packed,tpm,android-key,fido-u2f",
     "attestation formats GET /v1/config announces; keep equal to the attestation-verifier's "
     "--formats",
     &o_formats},
};

cm_opt_t *gw_pubconfig_options(size_t *n)
{
    *n = sizeof(pub_opts) / sizeof(pub_opts[0]);
    return pub_opts;
}

static cJSON *string_array(const char *const *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
    return a;
}

/* "a,b, c" -> ["a","b","c"] */
static cJSON *list_array(const char *s)
{
    cJSON *a = cJSON_CreateArray();
    while (a && s && *s) {
        s += strspn(s, ", ");
        size_t n = strcspn(s, ", ");
        if (n) {
            char *item = cm_xstrndup(s, n);
            cJSON_AddItemToArray(a, cJSON_CreateString(item));
            free(item);
        }
        s += n;
    }
    return a;
}

static cJSON *budget_json(const gw_rl_t *rl, gw_rl_budget_t b)
{
    gw_rl_rate_t r = gw_rl_budget(rl, b);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "limited", r.per_min > 0);
    cJSON_AddNumberToObject(o, "perMinute", (double)r.per_min);
    cJSON_AddNumberToObject(o, "burst", (double)r.burst);
    return o;
}

static cJSON *build(const gw_pubconfig_t *cfg, const gw_req_t *r)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "apiVersion", "v1");

    cJSON *life = cJSON_AddObjectToObject(root, "lifetime");
    cJSON_AddNumberToObject(life, "maximumSeconds", (double)cfg->max_ttl_s);
    /* the draft (§6.1) makes the lifetime part of every Create: there is no default to apply */
    cJSON_AddNullToObject(life, "defaultSeconds");
    cJSON_AddBoolToObject(life, "required", 1);

    cJSON *lim = cJSON_AddObjectToObject(root, "limits");
    cJSON_AddNumberToObject(lim, "maxBodyBytes", (double)gw_req_max_body(r));
    cJSON_AddNumberToObject(lim, "titleMaxBytes", GW_TITLE_MAX);
    cJSON_AddNumberToObject(lim, "descriptionMaxBytes", GW_DESCRIPTION_MAX);
    cJSON_AddNumberToObject(lim, "imageUrlMaxBytes", GW_IMAGE_URL_MAX);
    cJSON_AddNumberToObject(lim, "tokenDataMaxBytes", GW_TOKEN_DATA_MAX);
    cJSON_AddNumberToObject(lim, "payloadMinBytes", GW_PAYLOAD_MIN);
    cJSON_AddNumberToObject(lim, "correlationIdMaxChars", CM_CORR_ID_MAX);

    cJSON_AddItemToObject(root, "payloadTypes",
                          string_array(PAYLOAD_TYPES, sizeof(PAYLOAD_TYPES) / sizeof(char *)));
    cJSON_AddItemToObject(root, "notificationTokenTypes",
                          string_array(TOKEN_TYPES, sizeof(TOKEN_TYPES) / sizeof(char *)));

    cJSON *ar = cJSON_AddObjectToObject(root, "accessRights");
    cJSON_AddStringToObject(ar, "default", DEFAULT_ACCESS_RIGHTS);
    cJSON_AddStringToObject(ar, "allowed", "RWD");

    cJSON *at = cJSON_AddObjectToObject(root, "attestation");
    cJSON_AddStringToObject(at, "policy",
                            cfg->attestation_policy ? cfg->attestation_policy : "off");
    cJSON_AddBoolToObject(at, "verifierConfigured", cfg->attestation_verifier);
    cJSON_AddItemToObject(at, "formats", list_array(o_formats));

    cJSON *push = cJSON_AddArrayToObject(root, "pushProviders");
    for (size_t i = 0; push && i < sizeof(TOKEN_TYPES) / sizeof(char *); i++)
        if (gw_backend_push_supported_now(cfg->backend, TOKEN_TYPES[i]) > 0)
            cJSON_AddItemToArray(push, cJSON_CreateString(TOKEN_TYPES[i]));

    cJSON *rl = cJSON_AddObjectToObject(root, "rateLimits");
    cJSON_AddStringToObject(rl, "scope", "per client address (IPv6: per /64), per gateway");
    cJSON_AddItemToObject(rl, "write", budget_json(cfg->limiter, GW_RL_WRITE));
    cJSON_AddItemToObject(rl, "failure", budget_json(cfg->limiter, GW_RL_FAILURE));
    return root;
}

static void answer(const gw_pubconfig_t *cfg, gw_req_t *r)
{
    gw_req_echo_correlation(r);
    cJSON *root = build(cfg, r);
    char *body = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!body) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}";
        gw_req_add_header(r, "cache-control", "no-store");
        gw_req_respond(r, 500, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    char cc[48];
    snprintf(cc, sizeof(cc), "public, max-age=%d", GW_PUBCONFIG_MAX_AGE);
    gw_req_add_header(r, "cache-control", cc);
    gw_req_add_header(r, "x-content-type-options", "nosniff");
    gw_req_respond(r, 200, "application/json", body, strlen(body));
    free(body);
}

/* A request waiting for push-dispatch's provider list. */
typedef struct {
    const gw_pubconfig_t *cfg;
    gw_req_t *r;
} push_wait_t;

static void push_known(void *arg)
{
    push_wait_t *w = arg;
    answer(w->cfg, w->r);
    free(w);
}

void gw_pubconfig_handle(const gw_pubconfig_t *cfg, gw_req_t *r)
{
    /* refresh push-dispatch's provider list when stale; answer once it is known */
    push_wait_t *w = cm_xmalloc(sizeof(*w));
    *w = (push_wait_t){cfg, r};
    if (gw_backend_push_supported(cfg->backend, NULL, gw_req_loop(r), push_known, w) < 0)
        return;
    free(w);
    answer(cfg, r);
}
