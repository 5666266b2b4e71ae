/* GET /v1/config; see gw_pubconfig.h. The type lists repeat gw_json's validation tables; the
 * OpenAPI test (tests/openapi) creates a mailbox with every listed type, so they cannot drift. */
#include "gw_pubconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "gw_json.h"
#include "gw_ratelimit.h"

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

static struct {
    gw_pubconfig_api_t api;
} P;

cm_opt_t *gw_pubconfig_options(size_t *n)
{
    *n = sizeof(pub_opts) / sizeof(pub_opts[0]);
    return pub_opts;
}

void gw_pubconfig_set_api(const gw_pubconfig_api_t *api)
{
    P.api = *api;
}

/* The correlation id is echoed on every answer (API.md), under the name it came with. */
static void echo_correlation(gw_req_t *r)
{
    static const char *const names[] = {"mailbox-correlation-id", "mailbox-request-id"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = gw_req_header(r, names[i]);
        if (v && gw_correlation_id_valid(v))
            gw_req_add_header(r, names[i], v);
    }
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
            char *item = strndup(s, n);
            cJSON_AddItemToArray(a, cJSON_CreateString(item ? item : ""));
            free(item);
        }
        s += n;
    }
    return a;
}

static cJSON *budget_json(gw_rl_budget_t b)
{
    gw_rl_rate_t r = gw_rl_budget(b);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "limited", r.per_min > 0);
    cJSON_AddNumberToObject(o, "perMinute", (double)r.per_min);
    cJSON_AddNumberToObject(o, "burst", (double)r.burst);
    return o;
}

static cJSON *build(const gw_req_t *r)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "apiVersion", "v1");

    cJSON *life = cJSON_AddObjectToObject(root, "lifetime");
    cJSON_AddNumberToObject(life, "maximumSeconds", (double)P.api.max_ttl_s);
    /* 001 §6.1 makes the lifetime part of every Create: there is no default to apply */
    cJSON_AddNullToObject(life, "defaultSeconds");
    cJSON_AddBoolToObject(life, "required", 1);

    cJSON *lim = cJSON_AddObjectToObject(root, "limits");
    cJSON_AddNumberToObject(lim, "maxBodyBytes", (double)gw_req_max_body(r));
    cJSON_AddNumberToObject(lim, "titleMaxBytes", GW_TITLE_MAX);
    cJSON_AddNumberToObject(lim, "descriptionMaxBytes", GW_DESCRIPTION_MAX);
    cJSON_AddNumberToObject(lim, "imageUrlMaxBytes", GW_IMAGE_URL_MAX);
    cJSON_AddNumberToObject(lim, "tokenDataMaxBytes", GW_TOKEN_DATA_MAX);
    cJSON_AddNumberToObject(lim, "payloadMinBytes", GW_PAYLOAD_MIN);
    cJSON_AddNumberToObject(lim, "correlationIdMaxChars", GW_CORRELATION_ID_MAX);

    cJSON_AddItemToObject(root, "payloadTypes",
                          string_array(PAYLOAD_TYPES, sizeof(PAYLOAD_TYPES) / sizeof(char *)));
    cJSON_AddItemToObject(root, "notificationTokenTypes",
                          string_array(TOKEN_TYPES, sizeof(TOKEN_TYPES) / sizeof(char *)));

    cJSON *ar = cJSON_AddObjectToObject(root, "accessRights");
    cJSON_AddStringToObject(ar, "default", DEFAULT_ACCESS_RIGHTS);
    cJSON_AddStringToObject(ar, "allowed", "RWD");

    cJSON *at = cJSON_AddObjectToObject(root, "attestation");
    cJSON_AddStringToObject(at, "policy",
                            P.api.attestation_policy ? P.api.attestation_policy : "off");
    cJSON_AddBoolToObject(at, "verifierConfigured", P.api.attestation_verifier);
    cJSON_AddItemToObject(at, "formats", list_array(o_formats));

    cJSON *push = cJSON_AddArrayToObject(root, "pushProviders");
    for (size_t i = 0; push && i < sizeof(TOKEN_TYPES) / sizeof(char *); i++)
        if (P.api.push_supported_now && P.api.push_supported_now(TOKEN_TYPES[i]) > 0)
            cJSON_AddItemToArray(push, cJSON_CreateString(TOKEN_TYPES[i]));

    cJSON *rl = cJSON_AddObjectToObject(root, "rateLimits");
    cJSON_AddStringToObject(rl, "scope", "per client address (IPv6: per /64), per gateway");
    cJSON_AddItemToObject(rl, "write", budget_json(GW_RL_WRITE));
    cJSON_AddItemToObject(rl, "failure", budget_json(GW_RL_FAILURE));
    return root;
}

static void answer(gw_req_t *r)
{
    echo_correlation(r);
    cJSON *root = build(r);
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

static void push_known(void *arg)
{
    answer(arg);
}

void gw_pubconfig_handle(gw_req_t *r)
{
    gw_req_set_route(r, "config");
    if (strcmp(gw_req_method(r), "GET") != 0) {
        static const char body[] = "{\"error\":{\"code\":\"method_not_allowed\",\"message\":"
                                   "\"method not allowed on this resource\"}}";
        echo_correlation(r);
        gw_req_add_header(r, "allow", "GET");
        gw_req_add_header(r, "cache-control", "no-store");
        gw_req_respond(r, 405, "application/json", body, sizeof(body) - 1);
        return;
    }
    /* refresh push-dispatch's provider list when stale; answer once it is known */
    if (P.api.push_supported && P.api.push_supported(NULL, r, push_known, r) < 0)
        return;
    answer(r);
}
