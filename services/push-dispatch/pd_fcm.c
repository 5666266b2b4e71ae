#include "pd_fcm.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "cm_alloc.h"
#include "cm_config.h"
#include "cm_log.h"
#include "pd_http.h"
#include "pd_jwt.h"
#include "pd_queue.h"

typedef struct {
    EVP_PKEY *key;      /* owned: the service account's RSA key */
    char *client_email; /* owned */
    char *token_uri;    /* owned */
    char *send_url;     /* owned: {url}/v1/projects/{project}/messages:send */
    char *ca_file;      /* owned; NULL = system */
    int64_t timeout_ms;
    volatile int64_t abort_at_ms;

    pthread_mutex_t lock; /* guards the cached access token; held while fetching a new one */
    char *access_token;   /* owned; NULL until fetched */
    int64_t access_expires_ms;
    pd_provider_t prov;
} fcm_t;

static int token_char_ok(const char *t)
{
    size_t n = 0;
    for (; t[n]; n++) {
        char c = t[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == ':' || c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return n > 0 && n <= PD_TOKEN_MAX;
}

/* Fetches a new access token (lock held). 0, or -1 with |r| filled. */
static int fetch_token(fcm_t *f, pd_result_t *r)
{
    int64_t now = pd_now_ms() / 1000;
    char claims[1024], *jwt = NULL, *body = NULL;
    int rc = -1;
    snprintf(claims, sizeof(claims),
             "{\"iss\":\"%s\",\"scope\":\"https://www.googleapis.com/auth/firebase.messaging\","
             "\"aud\":\"%s\",\"iat\":%" PRId64 ",\"exp\":%" PRId64 "}",
             f->client_email, f->token_uri, now, now + 3600);
    if (pd_jwt_sign(f->key, 0, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims, &jwt) != 0) {
        pd_result_set(r, PD_R_RETRY, 0, "oauth_sign");
        return -1;
    }
    const char *pre = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=";
    body = cm_xmalloc(strlen(pre) + strlen(jwt) + 1);
    strcpy(body, pre);
    strcat(body, jwt); /* base64url and dots: form-safe as is */
    const char *hdrs[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    pd_http_req_t req = {.url = f->token_uri,
                         .headers = hdrs,
                         .body = body,
                         .body_len = strlen(body),
                         .ca_file = f->ca_file,
                         .https_only = 1,
                         .timeout_ms = f->timeout_ms,
                         .abort_at_ms = &f->abort_at_ms};
    pd_http_resp_t *resp = cm_xcalloc(1, sizeof(*resp));
    if (pd_http_post(&req, resp) != 0) {
        CM_WARN(NULL, "fcm: token endpoint unreachable: %s", resp->error);
        pd_result_set(r, PD_R_RETRY, 0,
                      strcmp(resp->error, "shutdown") == 0 ? "shutdown" : "oauth_network");
        goto out;
    }
    if (resp->status != 200) {
        CM_WARN(NULL, "fcm: token endpoint answered %d", resp->status);
        pd_result_set(r, PD_R_RETRY, resp->status, "oauth_refused");
        r->retry_after_ms = resp->retry_after_ms;
        goto out;
    }
    cJSON *j = cJSON_Parse(resp->body);
    cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "access_token");
    cJSON *ex = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
    if (!cJSON_IsString(at) || !at->valuestring[0]) {
        cJSON_Delete(j);
        CM_WARN(NULL, "fcm: token endpoint answer has no access_token");
        pd_result_set(r, PD_R_RETRY, resp->status, "oauth_bad_answer");
        goto out;
    }
    free(f->access_token);
    f->access_token = cm_xstrdup(at->valuestring);
    int64_t life = cJSON_IsNumber(ex) && ex->valuedouble > 0 ? (int64_t)ex->valuedouble : 3600;
    f->access_expires_ms = pd_now_ms() + life * 1000;
    cJSON_Delete(j);
    CM_INFO(NULL, "fcm: new access token, valid %" PRId64 " s", life);
    rc = 0;
out:
    free(resp);
    free(body);
    free(jwt);
    return rc;
}

/* Copies a valid access token into *out (malloc'd). |stale| = the one the provider refused. */
static int get_token(fcm_t *f, const char *stale, char **out, pd_result_t *r)
{
    int rc = 0;
    pthread_mutex_lock(&f->lock);
    /* Renew a minute early so no request leaves with a token about to expire. */
    if (!f->access_token || f->access_expires_ms - 60000 <= pd_now_ms() ||
        (stale && strcmp(stale, f->access_token) == 0))
        rc = fetch_token(f, r);
    if (rc == 0)
        *out = cm_xstrdup(f->access_token);
    pthread_mutex_unlock(&f->lock);
    return rc;
}

static const char *fcm_error_code(cJSON *j, char *buf, size_t cap)
{
    cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    cJSON *det = cJSON_GetObjectItemCaseSensitive(err, "details");
    cJSON *d;
    cJSON_ArrayForEach(d, det)
    {
        cJSON *c = cJSON_GetObjectItemCaseSensitive(d, "errorCode");
        if (cJSON_IsString(c)) {
            snprintf(buf, cap, "%s", c->valuestring);
            return buf;
        }
    }
    cJSON *st = cJSON_GetObjectItemCaseSensitive(err, "status");
    snprintf(buf, cap, "%s", cJSON_IsString(st) ? st->valuestring : "");
    return buf;
}

static int fcm_send(void *impl, const pd_entry_t *e, pd_result_t *r)
{
    fcm_t *f = impl;
    char *tok = NULL, *body = NULL, auth[4200];
    pd_http_resp_t *resp = NULL;
    r->retry_after_ms = -1;
    if (!token_char_ok(e->token)) {
        pd_result_set(r, PD_R_INVALID, 0, "malformed_token");
        return 0;
    }
    int64_t ttl = (e->expires_ms - pd_now_ms()) / 1000;
    if (ttl < 0)
        ttl = 0;
    char ttls[32];
    snprintf(ttls, sizeof(ttls), "%" PRId64 "s", ttl);
    cJSON *root = cJSON_CreateObject(), *msg = cJSON_AddObjectToObject(root, "message");
    cJSON_AddStringToObject(msg, "token", e->token);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(msg, "data"), "type", "mailbox_updated");
    cJSON *android = cJSON_AddObjectToObject(msg, "android");
    cJSON_AddStringToObject(android, "priority", "normal");
    cJSON_AddStringToObject(android, "ttl", ttls);
    body = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!body)
        cm_oom(0); /* cJSON's NULL here can only be out-of-memory */

    resp = cm_xcalloc(1, sizeof(*resp));
    for (int round = 0; round < 2; round++) {
        char *stale = tok;
        tok = NULL;
        int grc = get_token(f, stale, &tok, r);
        free(stale);
        if (grc != 0)
            goto out;
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
        const char *hdrs[] = {auth, "Content-Type: application/json; charset=utf-8", NULL};
        pd_http_req_t req = {.url = f->send_url,
                             .headers = hdrs,
                             .body = body,
                             .body_len = strlen(body),
                             .ca_file = f->ca_file,
                             .https_only = 1,
                             .timeout_ms = f->timeout_ms,
                             .abort_at_ms = &f->abort_at_ms};
        if (pd_http_post(&req, resp) != 0) {
            pd_result_set(r, PD_R_RETRY, 0,
                          strcmp(resp->error, "shutdown") == 0 ? "shutdown" : "network");
            goto out;
        }
        if (resp->status == 401 && round == 0)
            continue; /* token revoked or expired early: fetch a new one once */
        break;
    }
    r->retry_after_ms = resp->retry_after_ms;
    char code[64];
    cJSON *j = cJSON_Parse(resp->body);
    fcm_error_code(j, code, sizeof(code));
    cJSON_Delete(j);
    int st = resp->status;
    if (st >= 200 && st < 300)
        pd_result_set(r, PD_R_OK, st, "ok");
    else if (st == 404 || strcmp(code, "UNREGISTERED") == 0 ||
             strcmp(code, "SENDER_ID_MISMATCH") == 0)
        pd_result_set(r, PD_R_DEAD, st, code[0] ? code : "UNREGISTERED");
    else if (st == 429 || st >= 500 || st == 401)
        pd_result_set(r, PD_R_RETRY, st, code[0] ? code : "unavailable");
    else
        pd_result_set(r, PD_R_REJECTED, st, code[0] ? code : "rejected");
    r->retry_after_ms = resp->retry_after_ms;
out:
    free(resp);
    free(tok);
    free(body);
    return 0;
}

static void fcm_shutdown(void *impl, int64_t grace_ms)
{
    fcm_t *f = impl;
    f->abort_at_ms = pd_now_ms() + (grace_ms > 0 ? grace_ms : 1);
}

static void fcm_del(void *impl)
{
    fcm_t *f = impl;
    if (!f)
        return;
    EVP_PKEY_free(f->key);
    free(f->client_email);
    free(f->token_uri);
    free(f->send_url);
    free(f->ca_file);
    free(f->access_token);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

int pd_fcm_new(const pd_fcm_opts_t *o, pd_provider_t **out)
{
    char *text = NULL;
    size_t len = 0;
    cJSON *j = NULL;
    fcm_t *f = cm_xcalloc(1, sizeof(*f));
    pthread_mutex_init(&f->lock, NULL);
    if (cm_config_read_file(o->service_account_file, 64 * 1024, &text, &len) != 0) {
        CM_ERROR(NULL, "fcm: cannot read the service account file");
        goto fail;
    }
    j = cJSON_ParseWithLength(text, len);
    cJSON *email = cJSON_GetObjectItemCaseSensitive(j, "client_email");
    cJSON *pk = cJSON_GetObjectItemCaseSensitive(j, "private_key");
    cJSON *uri = cJSON_GetObjectItemCaseSensitive(j, "token_uri");
    cJSON *proj = cJSON_GetObjectItemCaseSensitive(j, "project_id");
    if (!cJSON_IsString(email) || !cJSON_IsString(pk) || !cJSON_IsString(uri)) {
        CM_ERROR(NULL, "fcm: service account file lacks client_email, private_key or token_uri");
        goto fail;
    }
    if (strncmp(uri->valuestring, "https://", 8) != 0) {
        CM_ERROR(NULL, "fcm: token_uri must be https");
        goto fail;
    }
    const char *project = o->project && *o->project ? o->project
                          : cJSON_IsString(proj)    ? proj->valuestring
                                                    : "";
    if (!pd_id_valid(project)) {
        CM_ERROR(NULL, "fcm: no usable project id (--fcm-project or project_id in the file)");
        goto fail;
    }
    f->key = pd_jwt_load_key(pk->valuestring, strlen(pk->valuestring));
    if (!f->key || EVP_PKEY_get_base_id(f->key) != EVP_PKEY_RSA) {
        CM_ERROR(NULL, "fcm: private_key is not a usable RSA key");
        goto fail;
    }
    /* JSON strings must not smuggle quotes into the JWT claims we format by hand. */
    if (strpbrk(email->valuestring, "\"\\") || strpbrk(uri->valuestring, "\"\\")) {
        CM_ERROR(NULL, "fcm: client_email or token_uri has quotes");
        goto fail;
    }
    f->client_email = cm_xstrdup(email->valuestring);
    f->token_uri = cm_xstrdup(uri->valuestring);
    const char *base = o->url && *o->url ? o->url : "https://fcm.googleapis.com";
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    f->send_url = cm_xmalloc(bl + strlen(project) + 64);
    sprintf(f->send_url, "%.*s/v1/projects/%s/messages:send", (int)bl, base, project);
    f->ca_file = o->ca_file && *o->ca_file ? cm_xstrdup(o->ca_file) : NULL;
    f->timeout_ms = o->timeout_ms;
    f->prov = (pd_provider_t){.name = "fcm",
                              .token_type = "com.google.fcm",
                              .send = fcm_send,
                              .shutdown = fcm_shutdown,
                              .del = fcm_del,
                              .impl = f};
    cJSON_Delete(j);
    if (text) {
        OPENSSL_cleanse(text, len);
        free(text);
    }
    *out = &f->prov;
    return 0;
fail:
    cJSON_Delete(j);
    if (text) {
        OPENSSL_cleanse(text, len);
        free(text);
    }
    fcm_del(f);
    return -1;
}
