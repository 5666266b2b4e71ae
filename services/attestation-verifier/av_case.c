#include "cm_alloc.h"
#include "av_case.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "av_verify.h"
#include "cm_b64.h"
#include "cm_config.h"

#define CASE_MAX (1 << 20)

/* base64url text of member |key| -> malloc'd bytes. 0, 1 absent/not a string, -1 bad. */
static int b64_member(const cJSON *o, const char *key, uint8_t **out, size_t *len)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    *len = 0;
    if (!cJSON_IsString(s))
        return 1;
    size_t n = strlen(s->valuestring);
    *out = cm_trymalloc(cm_b64_decoded_max(n) + 1);
    if (!*out ||
        cm_b64_decode(CM_B64_URL, s->valuestring, n, *out, cm_b64_decoded_max(n) + 1, len) != 0) {
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

/* "2025-01-01T00:00:00Z" -> time_t. 0 or -1. */
static int parse_time(const char *s, time_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end || (*end != 'Z' && *end != '\0') || (*end == 'Z' && end[1] != '\0'))
        return -1;
    *out = timegm(&tm);
    return 0;
}

/* string or array of strings -> up to |cap| pointers (into the cJSON tree). */
static size_t string_list(const cJSON *v, const char **list, size_t cap)
{
    size_t n = 0;
    if (cJSON_IsString(v)) {
        list[n++] = v->valuestring;
    } else if (cJSON_IsArray(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v)
        {
            if (cJSON_IsString(e) && n < cap)
                list[n++] = e->valuestring;
        }
    }
    return n;
}

static void print_result(FILE *out, const char *id, const av_result_t *r)
{
    cJSON *o = cJSON_CreateObject();
    if (id)
        cJSON_AddStringToObject(o, "id", id);
    cJSON_AddBoolToObject(o, "valid", r->valid);
    cJSON_AddStringToObject(o, "code", av_code_name(r->code));
    cJSON_AddStringToObject(o, "format", r->format);
    cJSON_AddStringToObject(o, "attestationType", r->att_type);
    char aaguid[33] = "";
    if (r->has_aaguid) {
        for (int i = 0; i < 16; i++)
            snprintf(aaguid + 2 * i, 3, "%02x", r->aaguid[i]);
    }
    cJSON_AddStringToObject(o, "aaguid", aaguid);
    cJSON_AddStringToObject(o, "rootFingerprint", r->root_fp);
    if (r->x509_err)
        cJSON_AddNumberToObject(o, "x509Error", r->x509_err);
    char *s = cJSON_PrintUnformatted(o);
    if (s)
        fprintf(out, "%s\n", s);
    fflush(out);
    free(s);
    cJSON_Delete(o);
}

int av_case_run(const char *path, const av_trust_t *fallback, FILE *out)
{
    char *text = NULL;
    size_t text_len = 0;
    cJSON *c = NULL;
    uint8_t *att = NULL, *cdj = NULL, *chal = NULL;
    size_t att_len, cdj_len, chal_len;
    av_trust_t *own = NULL;
    int ret = -1;

    if (cm_config_read_file(path, CASE_MAX, &text, &text_len) != 0) {
        fprintf(stderr, "attestation-verifier: %s: cannot read (missing, or over 1 MiB)\n", path);
        return -1;
    }
    c = cJSON_ParseWithLength(text, text_len);
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(c, "rpId");
    if (!cJSON_IsObject(c) || !cJSON_IsString(rp) ||
        b64_member(c, "expectedChallenge", &chal, &chal_len) != 0) {
        fprintf(stderr,
                "attestation-verifier: %s: not a case file (JSON object with rpId and "
                "expectedChallenge)\n",
                path);
        goto out;
    }
    const cJSON *idj = cJSON_GetObjectItemCaseSensitive(c, "id");
    const char *id = cJSON_IsString(idj) ? idj->valuestring : NULL;

    av_request_t req;
    memset(&req, 0, sizeof(req));
    av_result_t res;
    const char *origins[16], *tops[16];
    req.cd.challenge = chal;
    req.cd.challenge_len = chal_len;
    req.cd.rp_id = rp->valuestring;
    req.cd.origins = origins;
    req.cd.norigins =
        string_list(cJSON_GetObjectItemCaseSensitive(c, "expectedOrigin"), origins, 16);
    req.require_uv = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "requireUserVerification"));
    const cJSON *vo = cJSON_GetObjectItemCaseSensitive(c, "verifyOptions");
    req.cd.allow_cross_origin =
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(vo, "allowCrossOrigin"));
    req.cd.top_origins = tops;
    req.cd.ntop_origins =
        string_list(cJSON_GetObjectItemCaseSensitive(vo, "allowedTopOrigins"), tops, 16);

    const cJSON *vt = cJSON_GetObjectItemCaseSensitive(c, "verifyTime");
    if (cJSON_IsString(vt) && parse_time(vt->valuestring, &req.verify_time) != 0) {
        fprintf(stderr, "attestation-verifier: %s: verifyTime is not YYYY-MM-DDTHH:MM:SSZ\n", path);
        goto out;
    }

    const cJSON *ta = cJSON_GetObjectItemCaseSensitive(c, "trustAnchor");
    const cJSON *roots = cJSON_GetObjectItemCaseSensitive(c, "rootCertsPem");
    int nroots = 0;
    if (cJSON_IsArray(roots) && cJSON_GetArraySize(roots) > 0) {
        if (!(own = av_trust_new()))
            goto out;
        const cJSON *pem;
        cJSON_ArrayForEach(pem, roots)
        {
            if (!cJSON_IsString(pem) ||
                av_trust_add_pem(own, NULL, pem->valuestring, strlen(pem->valuestring)) <= 0) {
                fprintf(stderr, "attestation-verifier: %s: rootCertsPem holds a bad PEM\n", path);
                goto out;
            }
            nroots++;
        }
    }
    if (cJSON_IsString(ta) && strncmp(ta->valuestring, "none-available", 14) == 0)
        req.trust = NULL; /* roots not public: statement only */
    else
        req.trust = nroots ? own : fallback;

    memset(&res, 0, sizeof(res));
    int a = b64_member(c, "attestationObject", &att, &att_len);
    int d = b64_member(c, "clientDataJSON", &cdj, &cdj_len);
    if (a != 0 || d != 0) {
        res.code = AV_ENCODING;
        res.att_type = "";
    } else {
        req.att_obj = att;
        req.att_obj_len = att_len;
        req.client_data = cdj;
        req.client_data_len = cdj_len;
        av_verify(&req, &res);
    }
    print_result(out, id, &res);
    ret = 0;
out:
    av_trust_free(own);
    free(att);
    free(cdj);
    free(chal);
    cJSON_Delete(c);
    free(text);
    return ret;
}
