#include "av_clientdata.h"

#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "cm_b64.h"

static int origin_allowed(const char *origin, const av_clientdata_policy_t *pol)
{
    if (pol->norigins == 0) {
        char want[512];
        if (!pol->rp_id || !*pol->rp_id ||
            (size_t)snprintf(want, sizeof(want), "https://%s", pol->rp_id) >= sizeof(want))
            return 0;
        return strcmp(origin, want) == 0;
    }
    for (size_t i = 0; i < pol->norigins; i++) {
        if (pol->origins[i] && strcmp(origin, pol->origins[i]) == 0)
            return 1;
    }
    return 0;
}

static int in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (list[i] && strcmp(s, list[i]) == 0)
            return 1;
    }
    return 0;
}

/* cJSON keeps the first of duplicate members; a second "type" or "challenge" could mean
 * different things to different parsers, so the members we read must be unique. */
static int duplicate_member(const cJSON *root)
{
    static const char *const names[] = {"type",        "challenge", "origin",
                                        "crossOrigin", "topOrigin", "tokenBinding"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int seen = 0;
        for (const cJSON *m = root->child; m; m = m->next)
            seen += m->string && strcmp(m->string, names[i]) == 0;
        if (seen > 1)
            return 1;
    }
    return 0;
}

av_code_t av_clientdata_check(const uint8_t *json, size_t len, const av_clientdata_policy_t *pol)
{
    if (len > AV_CLIENTDATA_MAX)
        return AV_INPUT_TOO_LARGE;
    if (len == 0 || memchr(json, 0, len))
        return AV_CLIENTDATA_MALFORMED;
    const char *endp = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)json, len, &endp, 0);
    av_code_t rc = AV_CLIENTDATA_MALFORMED;
    if (!root || !cJSON_IsObject(root))
        goto out;
    /* cJSON stops after the value; only whitespace may follow */
    for (const char *p = endp; p && p < (const char *)json + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            goto out;
    }
    if (duplicate_member(root))
        goto out;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    const cJSON *chal = cJSON_GetObjectItemCaseSensitive(root, "challenge");
    const cJSON *origin = cJSON_GetObjectItemCaseSensitive(root, "origin");
    if (!cJSON_IsString(type) || !cJSON_IsString(chal) || !cJSON_IsString(origin))
        goto out;
    if (strcmp(type->valuestring, "webauthn.create") != 0) {
        rc = AV_CLIENTDATA_TYPE_MISMATCH;
        goto out;
    }

    uint8_t got[AV_CHALLENGE_MAX];
    size_t got_len = 0;
    const char *c = chal->valuestring;
    size_t clen = strlen(c);
    rc = AV_CHALLENGE_MISMATCH;
    if (clen == 0 || cm_b64_decoded_max(clen) > sizeof(got) || memchr(c, '=', clen) ||
        cm_b64_decode(CM_B64_URL, c, clen, got, sizeof(got), &got_len) != 0)
        goto out;
    /* The length of the expected challenge is not secret; its bytes are. */
    if (!pol->challenge || pol->challenge_len == 0 || got_len != pol->challenge_len ||
        CRYPTO_memcmp(got, pol->challenge, got_len) != 0)
        goto out;

    if (!origin_allowed(origin->valuestring, pol)) {
        rc = AV_ORIGIN_MISMATCH;
        goto out;
    }
    const cJSON *xo = cJSON_GetObjectItemCaseSensitive(root, "crossOrigin");
    const cJSON *top = cJSON_GetObjectItemCaseSensitive(root, "topOrigin");
    if (xo && !cJSON_IsBool(xo)) {
        rc = AV_CLIENTDATA_MALFORMED;
        goto out;
    }
    int cross = cJSON_IsTrue(xo);
    if (top && !cJSON_IsString(top)) {
        rc = AV_CLIENTDATA_MALFORMED;
        goto out;
    }
    if ((cross || top) && !pol->allow_cross_origin) {
        rc = AV_CROSS_ORIGIN_NOT_ALLOWED;
        goto out;
    }
    if (top && !in_list(top->valuestring, pol->top_origins, pol->ntop_origins)) {
        rc = AV_ORIGIN_MISMATCH;
        goto out;
    }
    /* WebAuthn L2: tokenBinding, when an object, has status "present" or "supported". L3
     * reserved the member; old clients sent a plain string, which is ignored. */
    const cJSON *tb = cJSON_GetObjectItemCaseSensitive(root, "tokenBinding");
    if (cJSON_IsObject(tb)) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(tb, "status");
        if (!cJSON_IsString(st) || (strcmp(st->valuestring, "present") != 0 &&
                                    strcmp(st->valuestring, "supported") != 0)) {
            rc = AV_TOKEN_BINDING_INVALID;
            goto out;
        }
    }
    rc = AV_OK;
out:
    cJSON_Delete(root);
    return rc;
}
