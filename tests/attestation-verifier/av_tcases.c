#include "av_tcases.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_b64.h"
#include "th.h"

static const char *data_dir(char *buf, size_t cap)
{
    const char *s = getenv("TIGRESS_SHARED_DIR");
    snprintf(buf, cap, "%s/testdata/attestation", s && *s ? s : "/work/shared");
    return buf;
}

int tc_load(tc_case_t **out)
{
    char dir[768], path[1024];
    data_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/cases-index.json", dir);
    char *text = th_read_file(path, NULL);
    cJSON *idx = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!cJSON_IsArray(idx)) {
        fprintf(stderr, "cannot read %s\n", path);
        cJSON_Delete(idx);
        return -1;
    }
    int n = cJSON_GetArraySize(idx);
    tc_case_t *cases = calloc((size_t)n, sizeof(*cases));
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, idx)
    {
        tc_case_t *c = &cases[i++];
        snprintf(c->id, sizeof(c->id), "%s", cJSON_GetObjectItem(e, "id")->valuestring);
        snprintf(c->path, sizeof(c->path), "%s/%s", dir,
                 cJSON_GetObjectItem(e, "path")->valuestring);
        char *ct = th_read_file(c->path, NULL);
        c->json = ct ? cJSON_Parse(ct) : NULL;
        free(ct);
        if (!c->json) {
            fprintf(stderr, "cannot read %s\n", c->path);
            cJSON_Delete(idx);
            tc_free(cases, n);
            return -1;
        }
        const cJSON *exp = cJSON_GetObjectItem(c->json, "expected");
        const cJSON *st = cJSON_GetObjectItem(exp, "strictness");
        c->optional = cJSON_IsString(st) && strcmp(st->valuestring, "optional") == 0;
        c->expect_valid = strcmp(cJSON_GetObjectItem(exp, "result")->valuestring, "valid") == 0;
        const cJSON *code = cJSON_GetObjectItem(exp, "code");
        if (cJSON_IsString(code))
            snprintf(c->codes[c->ncodes++], 48, "%s", code->valuestring);
        const cJSON *acc;
        cJSON_ArrayForEach(acc, cJSON_GetObjectItem(exp, "acceptableCodes"))
        {
            if (cJSON_IsString(acc) && c->ncodes < 8)
                snprintf(c->codes[c->ncodes++], 48, "%s", acc->valuestring);
        }
    }
    cJSON_Delete(idx);
    *out = cases;
    return n;
}

void tc_free(tc_case_t *cases, int n)
{
    for (int i = 0; cases && i < n; i++)
        cJSON_Delete(cases[i].json);
    free(cases);
}

int tc_match(const tc_case_t *c)
{
    if (!c->ran || c->got_valid != c->expect_valid)
        return 0;
    if (c->expect_valid)
        return strcmp(c->got_code, "OK") == 0;
    for (int i = 0; i < c->ncodes; i++) {
        if (strcmp(c->codes[i], c->got_code) == 0)
            return 1;
    }
    return 0;
}

int tc_report(const char *label, tc_case_t *cases, int n)
{
    int req_bad = 0, opt_bad = 0, req = 0, opt = 0;
    printf("\n== attestation verdicts via %s ==\n", label);
    printf("%-46s %-4s %-8s %-26s %-8s %-26s %s\n", "case", "kind", "expected", "code", "got",
           "code", "match");
    for (int i = 0; i < n; i++) {
        tc_case_t *c = &cases[i];
        int ok = tc_match(c);
        if (c->optional) {
            opt++;
            opt_bad += !ok;
        } else {
            req++;
            req_bad += !ok;
        }
        printf("%-46s %-4s %-8s %-26s %-8s %-26s %s\n", c->id, c->optional ? "opt" : "req",
               c->expect_valid ? "valid" : "invalid", c->ncodes ? c->codes[0] : "-",
               !c->ran        ? "-"
               : c->got_valid ? "valid"
                              : "invalid",
               c->got_code,
               ok            ? "yes"
               : c->optional ? "NO (optional)"
                             : "NO");
    }
    printf("%s: required %d/%d match, optional %d/%d match\n", label, req - req_bad, req,
           opt - opt_bad, opt);
    fflush(stdout);
    return req_bad;
}

int tc_b64(const tc_case_t *c, const char *member, uint8_t **out, size_t *len)
{
    const cJSON *s = cJSON_GetObjectItem(c->json, member);
    *out = NULL;
    *len = 0;
    if (!cJSON_IsString(s))
        return -1;
    size_t n = strlen(s->valuestring);
    *out = malloc(cm_b64_decoded_max(n) + 1);
    if (cm_b64_decode(CM_B64_URL, s->valuestring, n, *out, cm_b64_decoded_max(n) + 1, len) != 0) {
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}
