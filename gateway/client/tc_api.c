/* tc_api: the mailbox operations of the public API v1 (bodies built and answers read with
 * cJSON) and the OpenGraph preview parser. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cJSON.h>
#include <openssl/crypto.h>

#include "cm_b64.h"
#include "cm_uuid.h"
#include "tc_int.h"

/* ---- relay limits ------------------------------------------------------------------------ */

/* A positive number under a key that names a maximum body size, searched depth first. */
static long find_max_body(const cJSON *node, int depth)
{
    if (depth > 4)
        return 0;
    for (const cJSON *it = node ? node->child : NULL; it; it = it->next) {
        if (cJSON_IsNumber(it) && it->string && strcasestr(it->string, "max") &&
            strcasestr(it->string, "body") && it->valuedouble >= 1024 && it->valuedouble < 1e9)
            return (long)it->valuedouble;
        if (cJSON_IsObject(it)) {
            long v = find_max_body(it, depth + 1);
            if (v)
                return v;
        }
    }
    return 0;
}

long tc_config_max_body(const char *body, size_t len)
{
    cJSON *root = body ? cJSON_ParseWithLength(body, len) : NULL;
    long v = find_max_body(root, 0);
    cJSON_Delete(root);
    return v;
}

tc_err_t tc_relay_max_body(tc_client_t *c, const char *relay_base, long *max_body)
{
    char url[TC_URL_MAX];
    if (!c || !relay_base || !max_body)
        return TC_ERR_INVALID_ARG;
    if (tc_join(url, relay_base, "/v1/config") != TC_OK)
        return TC_ERR_URL;
    tc_req_t rq = {.method = "GET", .url = url};
    tc_resp_t r;
    tc_err_t e = tc_call(c, &rq, &r);
    long v = e == TC_OK && r.status == 200 ? tc_config_max_body(r.body, r.len) : 0;
    tc_resp_free(&r);
    if (e == TC_ERR_UNREACHABLE || e == TC_ERR_TLS || e == TC_ERR_TIMEOUT || e == TC_ERR_INSECURE ||
        e == TC_ERR_NOMEM)
        return e;
    c->max_body = v ? v : TC_DEFAULT_MAX_BODY;
    *max_body = c->max_body;
    return TC_OK;
}

/* ---- create ------------------------------------------------------------------------------ */

static cJSON *create_body(const tc_create_t *in, const char *id, const char *data)
{
    char ttl[32];
    snprintf(ttl, sizeof(ttl), "%ld", in->ttl_seconds);
    cJSON *root = cJSON_CreateObject(), *o;
    if (!root || !cJSON_AddStringToObject(root, "mailboxIdentifier", id))
        goto fail;
    if (!(o = cJSON_AddObjectToObject(root, "payload")) ||
        !cJSON_AddStringToObject(o, "type", tc_payload_type_name(in->type)) ||
        !cJSON_AddStringToObject(o, "data", data))
        goto fail;
    if (!(o = cJSON_AddObjectToObject(root, "displayInformation")) ||
        !cJSON_AddStringToObject(o, "title", in->title ? in->title : ""))
        goto fail;
    if (in->description && !cJSON_AddStringToObject(o, "description", in->description))
        goto fail;
    if (in->image_url && !cJSON_AddStringToObject(o, "imageUrl", in->image_url))
        goto fail;
    if (in->token_type && in->token_data) {
        if (!(o = cJSON_AddObjectToObject(root, "notificationToken")) ||
            !cJSON_AddStringToObject(o, "type", in->token_type) ||
            !cJSON_AddStringToObject(o, "tokenData", in->token_data))
            goto fail;
    }
    if (!(o = cJSON_AddObjectToObject(root, "mailboxConfiguration")) ||
        (in->access_rights && !cJSON_AddStringToObject(o, "accessRights", in->access_rights)) ||
        !cJSON_AddStringToObject(o, "timeToLive", ttl))
        goto fail;
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

/* Length of the body with an empty payload.data (base64 needs no JSON escaping, so the real
 * body is this plus the base64 length). 0 when it cannot be built. */
static size_t body_overhead(const tc_create_t *in)
{
    static const char placeholder_id[] = "00000000-0000-4000-8000-000000000000";
    cJSON *b = create_body(in, in->mailbox_id ? in->mailbox_id : placeholder_id, "");
    char *s = b ? cJSON_PrintUnformatted(b) : NULL;
    size_t n = s ? strlen(s) : 0;
    free(s);
    cJSON_Delete(b);
    return n;
}

size_t tc_create_body_size(const tc_create_t *in, size_t pt_len)
{
    size_t o = in ? body_overhead(in) : 0;
    return o ? o + cm_b64_encoded_size(pt_len + TC_SEAL_OVERHEAD) - 1 : 0;
}

size_t tc_create_max_plaintext(const tc_create_t *in, long max_body)
{
    size_t o = in ? body_overhead(in) : 0;
    if (!o || max_body <= 0 || (size_t)max_body <= o)
        return 0;
    size_t sealed = ((size_t)max_body - o) / 4 * 3;
    return sealed > TC_SEAL_OVERHEAD ? sealed - TC_SEAL_OVERHEAD : 0;
}

/* Base64 of |p| (standard, padded); malloc'd or NULL. */
static char *b64(const uint8_t *p, size_t n)
{
    char *s = malloc(cm_b64_encoded_size(n));
    if (s)
        cm_b64_encode(CM_B64_STD, p, n, s);
    return s;
}

static tc_err_t read_created(const tc_resp_t *r, const char *id, tc_created_t *out)
{
    cJSON *root = cJSON_ParseWithLength(r->body, r->len);
    const cJSON *link = cJSON_GetObjectItemCaseSensitive(root, "urlLink");
    const cJSON *push = cJSON_GetObjectItemCaseSensitive(root, "isPushNotificationSupported");
    tc_err_t e = TC_ERR_PROTOCOL;
    tc_share_t s;
    /* the link must name the mailbox this device chose: anything else is not our mailbox */
    if (cJSON_IsString(link) && strlen(link->valuestring) < TC_URL_MAX &&
        tc_share_parse(link->valuestring, &s) == TC_OK && s.secret_len == 0 &&
        strcmp(s.mailbox_id, id) == 0) {
        snprintf(out->url_link, sizeof(out->url_link), "%s", link->valuestring);
        out->push_supported = cJSON_IsTrue(push);
        e = TC_OK;
    }
    cJSON_Delete(root);
    return e;
}

tc_err_t tc_create(tc_client_t *c, const char *relay_base, const char *claim, const tc_create_t *in,
                   tc_created_t *out)
{
    if (!c || !relay_base || !claim || !in || !out || !in->sealed ||
        in->sealed_len < TC_SEAL_OVERHEAD || in->ttl_seconds <= 0)
        return TC_ERR_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    memset(&c->last, 0, sizeof(c->last));
    if (in->mailbox_id) {
        if (!cm_uuid_is_v4(in->mailbox_id, strlen(in->mailbox_id)))
            return TC_ERR_INVALID_ARG;
        cm_uuid_canonical(in->mailbox_id, out->mailbox_id);
    } else if (cm_uuid_v4(out->mailbox_id) != 0) {
        return TC_ERR_CRYPTO;
    }
    char url[TC_URL_MAX];
    if (tc_join(url, relay_base, "/v1/m") != TC_OK)
        return TC_ERR_URL;
    char *data = b64(in->sealed, in->sealed_len);
    cJSON *body = data ? create_body(in, out->mailbox_id, data) : NULL;
    char *text = body ? cJSON_PrintUnformatted(body) : NULL;
    free(data);
    cJSON_Delete(body);
    if (!text)
        return TC_ERR_NOMEM;
    size_t len = strlen(text);
    if ((long)len > c->max_body) {
        free(text);
        return TC_ERR_TOO_LARGE; /* the relay would answer 413: do not upload at all */
    }
    tc_req_t rq = {.method = "POST", .url = url, .claim = claim, .body = text, .body_len = len};
    tc_resp_t r;
    tc_err_t e = tc_call(c, &rq, &r);
    free(text);
    if (e == TC_OK)
        e = read_created(&r, out->mailbox_id, out);
    out->duplicate = e == TC_OK && c->last.duplicate;
    tc_resp_free(&r);
    return e;
}

/* ---- read, update, delete, relinquish ------------------------------------------------------ */

void tc_content_free(tc_content_t *ct)
{
    if (!ct)
        return;
    free(ct->sealed);
    free(ct->title);
    free(ct->description);
    free(ct->image_url);
    memset(ct, 0, sizeof(*ct));
}

/* strdup of string member |key| of |o|, NULL when absent; *bad set on an allocation failure. */
static char *dup_member(const cJSON *o, const char *key, int *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v))
        return NULL;
    char *s = strdup(v->valuestring);
    if (!s)
        *bad = 1;
    return s;
}

static tc_err_t read_content(const tc_resp_t *r, tc_content_t *out)
{
    cJSON *root = cJSON_ParseWithLength(r->body, r->len);
    const cJSON *payload = cJSON_GetObjectItemCaseSensitive(root, "payload");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(payload, "type");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(payload, "data");
    const cJSON *disp = cJSON_GetObjectItemCaseSensitive(root, "displayInformation");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(root, "expiration");
    tc_err_t e = TC_ERR_PROTOCOL;
    int bad = 0;
    if (!cJSON_IsString(type) || !cJSON_IsString(data) ||
        tc_payload_type_parse(type->valuestring, &out->type) != TC_OK)
        goto done;
    size_t dl = strlen(data->valuestring), n = 0;
    e = TC_ERR_NOMEM;
    if (!(out->sealed = malloc(cm_b64_decoded_max(dl) + 1)))
        goto done;
    e = TC_ERR_PROTOCOL;
    if (cm_b64_decode(CM_B64_ANY, data->valuestring, dl, out->sealed, cm_b64_decoded_max(dl) + 1,
                      &n) != 0)
        goto done;
    out->sealed_len = n;
    out->title = dup_member(disp, "title", &bad);
    out->description = dup_member(disp, "description", &bad);
    out->image_url = dup_member(disp, "imageUrl", &bad);
    if (cJSON_IsString(exp))
        tc_sanitize(out->expiration, sizeof(out->expiration), exp->valuestring,
                    strlen(exp->valuestring));
    e = bad ? TC_ERR_NOMEM : TC_OK;
done:
    cJSON_Delete(root);
    return e;
}

tc_err_t tc_read(tc_client_t *c, const char *api_url, const char *claim, tc_content_t *out)
{
    if (!c || !api_url || !claim || !out)
        return TC_ERR_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    tc_req_t rq = {.method = "POST", .url = api_url, .claim = claim};
    tc_resp_t r;
    tc_err_t e = tc_call(c, &rq, &r);
    if (e == TC_OK)
        e = read_content(&r, out);
    tc_resp_free(&r);
    if (e != TC_OK)
        tc_content_free(out);
    else
        out->duplicate = c->last.duplicate;
    return e;
}

tc_err_t tc_update(tc_client_t *c, const char *api_url, const char *claim, tc_payload_type_t type,
                   const uint8_t *sealed, size_t sealed_len, const char *token_type,
                   const char *token_data, int *duplicate)
{
    if (!c || !api_url || !claim || !sealed || sealed_len < TC_SEAL_OVERHEAD || !token_type ||
        !token_data || (unsigned)type >= 4)
        return TC_ERR_INVALID_ARG;
    char *data = b64(sealed, sealed_len);
    cJSON *root = cJSON_CreateObject(), *p, *t;
    char *text = NULL;
    if (data && root && (p = cJSON_AddObjectToObject(root, "payload")) &&
        cJSON_AddStringToObject(p, "type", tc_payload_type_name(type)) &&
        cJSON_AddStringToObject(p, "data", data) &&
        (t = cJSON_AddObjectToObject(root, "notificationToken")) &&
        cJSON_AddStringToObject(t, "type", token_type) &&
        cJSON_AddStringToObject(t, "tokenData", token_data))
        text = cJSON_PrintUnformatted(root);
    free(data);
    cJSON_Delete(root);
    if (!text)
        return TC_ERR_NOMEM;
    size_t len = strlen(text);
    tc_err_t e = TC_ERR_TOO_LARGE;
    if ((long)len <= c->max_body) {
        tc_req_t rq = {
            .method = "PUT", .url = api_url, .claim = claim, .body = text, .body_len = len};
        tc_resp_t r;
        e = tc_call(c, &rq, &r);
        tc_resp_free(&r);
    }
    free(text);
    if (duplicate)
        *duplicate = e == TC_OK && c->last.duplicate;
    return e;
}

tc_err_t tc_delete(tc_client_t *c, const char *api_url, const char *claim)
{
    if (!c || !api_url || !claim)
        return TC_ERR_INVALID_ARG;
    tc_req_t rq = {.method = "DELETE", .url = api_url, .claim = claim};
    tc_resp_t r;
    tc_err_t e = tc_call(c, &rq, &r);
    tc_resp_free(&r);
    /* draft 001 §6.3.3: a retried delete may find the mailbox already gone (our first attempt
     * deleted it and its answer was lost) */
    if (e == TC_ERR_NOT_FOUND && c->last.attempts > 1)
        e = TC_OK;
    return e;
}

tc_err_t tc_relinquish(tc_client_t *c, const char *api_url, const char *claim)
{
    if (!c || !api_url || !claim)
        return TC_ERR_INVALID_ARG;
    tc_req_t rq = {.method = "PATCH", .url = api_url, .claim = claim};
    tc_resp_t r;
    tc_err_t e = tc_call(c, &rq, &r);
    tc_resp_free(&r);
    return e;
}

/* ---- preview ----------------------------------------------------------------------------- */

tc_err_t tc_preview(tc_client_t *c, const char *api_url, tc_preview_t *out)
{
    if (!c || !api_url || !out)
        return TC_ERR_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    tc_req_t rq = {.method = "GET", .url = api_url};
    tc_resp_t r;
    tc_err_t e = tc_call(c, &rq, &r);
    if (e == TC_OK)
        e = tc_preview_parse(r.body, r.len, out);
    tc_resp_free(&r);
    return e;
}
