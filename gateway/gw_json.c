#include "gw_json.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <openssl/sha.h>

#include "cm_alloc.h"
#include "cm_b64.h"

static void set_err(gw_json_err_t *err, gw_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(gw_json_err_t *err, gw_err_t code, const char *fmt, ...)
{
    if (!err)
        return;
    err->err = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

/* ---- text checks ------------------------------------------------------------------------- */

int gw_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0; /* continuation byte first, 0xc0/0xc1 overlong lead, or > 0xf4 */
        }
        if (len - i <= n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm), so no
 * timegm()/TZ dependence. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int gw_rfc3339_parse(const char *s, int64_t *out_ms)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec;
    if (!s || strlen(s) < 20)
        return -1;
    if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) ||
        s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &sec))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 60)
        return -1;
    int dim = mdays[mo - 1] + (mo == 2 && is_leap(y));
    if (d > dim)
        return -1;
    if (sec == 60) /* a leap second names the same instant as :59.999 plus a bit; clamp */
        sec = 59;
    const char *p = s + 19;
    int64_t ms = 0;
    if (*p == '.') {
        p++;
        int nd = 0;
        while (*p >= '0' && *p <= '9') {
            if (nd < 3)
                ms = ms * 10 + (*p - '0');
            nd++;
            p++;
        }
        if (nd == 0)
            return -1;
        for (int k = nd; k < 3; k++)
            ms *= 10;
    }
    int64_t off_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        off_min = (int64_t)(oh * 60 + om) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -1;
    }
    if (*p != '\0')
        return -1;
    int64_t days = days_from_civil(y, mo, d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - off_min * 60;
    *out_ms = secs * 1000 + ms;
    return 0;
}

void gw_rfc3339_format(int64_t ms, char out[32])
{
    int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t rem = secs - days * 86400;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    snprintf(out, 32, "%04lld-%02d-%02dT%02d:%02d:%02dZ", (long long)y, m, d, (int)(rem / 3600),
             (int)(rem / 60 % 60), (int)(rem % 60));
}

int gw_media_type_is_json(const char *ct)
{
    if (!ct)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    static const char want[] = "application/json";
    if (strncasecmp(ct, want, sizeof(want) - 1) != 0)
        return 0;
    ct += sizeof(want) - 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

void gw_derive_mailbox_id(const char *claim, const char *correlation_id,
                          char out[CM_UUID_STRLEN + 1])
{
    static const char tag[] = "tigress-relay mailbox id v1";
    /* tag NUL claim NUL correlation id: the NULs keep the fields apart */
    uint8_t buf[sizeof(tag) + CM_UUID_STRLEN + 1 + CM_CORR_ID_MAX + 64];
    size_t cl = strnlen(claim, CM_UUID_STRLEN + 32), rl = strnlen(correlation_id, 192), n = 0;
    memcpy(buf, tag, sizeof(tag));
    n = sizeof(tag);
    memcpy(buf + n, claim, cl);
    n += cl;
    buf[n++] = 0;
    if (rl > sizeof(buf) - n)
        rl = sizeof(buf) - n;
    memcpy(buf + n, correlation_id, rl);
    n += rl;
    uint8_t d[SHA256_DIGEST_LENGTH];
    SHA256(buf, n, d);
    d[6] = (uint8_t)((d[6] & 0x0f) | 0x40);
    d[8] = (uint8_t)((d[8] & 0x3f) | 0x80);
    snprintf(out, CM_UUID_STRLEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", d[0], d[1],
             d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14],
             d[15]);
}

/* ---- body parsing ------------------------------------------------------------------------ */

/* cJSON decodes "\u0000" into a NUL that silently truncates the string: refuse the escape
 * itself. An escape is real when preceded by an even number of backslashes (the run
 * including its own one is odd). */
static int has_nul_escape(const uint8_t *b, size_t len)
{
    for (size_t i = 0; i + 6 <= len; i++) {
        if (b[i] != '\\' || b[i + 1] != 'u' || memcmp(b + i + 2, "0000", 4) != 0)
            continue;
        size_t run = 0;
        while (run < i && b[i - 1 - run] == '\\')
            run++;
        if (run % 2 == 0)
            return 1;
    }
    return 0;
}

static cJSON *parse_object(const uint8_t *body, size_t len, gw_json_err_t *err)
{
    if (len == 0) {
        set_err(err, GW_ERR_INVALID_JSON, "request body is empty");
        return NULL;
    }
    if (!gw_utf8_valid(body, len)) {
        set_err(err, GW_ERR_INVALID_JSON, "request body is not valid UTF-8");
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        /* raw control characters are never valid JSON; cJSON would keep them (a NUL cuts a
         * string short), so refuse them before it sees the text */
        if (body[i] < 0x20 && body[i] != '\t' && body[i] != '\n' && body[i] != '\r') {
            set_err(err, GW_ERR_INVALID_JSON, "request body contains a control character");
            return NULL;
        }
    }
    if (has_nul_escape(body, len)) {
        set_err(err, GW_ERR_INVALID_JSON, "strings must not contain U+0000");
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)body, len, &end, 0);
    if (!root) {
        set_err(err, GW_ERR_INVALID_JSON, "request body is not valid JSON");
        return NULL;
    }
    for (const char *p = end; p && p < (const char *)body + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            cJSON_Delete(root);
            set_err(err, GW_ERR_INVALID_JSON, "trailing data after the JSON value");
            return NULL;
        }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        set_err(err, GW_ERR_INVALID_JSON, "request body must be a JSON object");
        return NULL;
    }
    return root;
}

/* Fetches an optional string member. Returns 1 present (in *out), 0 absent, -1 wrong type. A
 * JSON null counts as absent. */
static int get_str(const cJSON *obj, const char *name, const char **out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!it || cJSON_IsNull(it))
        return 0;
    if (!cJSON_IsString(it) || !it->valuestring)
        return -1;
    *out = it->valuestring;
    return 1;
}

/* Required or optional string with a byte cap. Returns 0 (|*out| set or left NULL when absent
 * and optional) or -1 with |err|. */
static int want_str(const cJSON *obj, const char *name, const char *path, int required, size_t cap,
                    const char **out, gw_json_err_t *err)
{
    int rc = get_str(obj, name, out);
    if (rc < 0) {
        set_err(err, GW_ERR_INVALID_FIELD, "%s must be a string", path);
        return -1;
    }
    if (rc == 0) {
        *out = NULL;
        if (required) {
            set_err(err, GW_ERR_MISSING_FIELD, "%s is required", path);
            return -1;
        }
        return 0;
    }
    size_t n = strlen(*out);
    if (n > cap) {
        set_err(err, GW_ERR_INVALID_FIELD, "%s exceeds %zu bytes", path, cap);
        return -1;
    }
    if (!gw_utf8_valid((const uint8_t *)*out, n)) {
        set_err(err, GW_ERR_INVALID_FIELD, "%s is not valid UTF-8", path);
        return -1;
    }
    return 0;
}

static const cJSON *get_obj(const cJSON *parent, const char *name, const char *path, int required,
                            int *bad, gw_json_err_t *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(parent, name);
    *bad = 0;
    if (!it || cJSON_IsNull(it)) {
        if (required) {
            set_err(err, GW_ERR_MISSING_FIELD, "%s is required", path);
            *bad = 1;
        }
        return NULL;
    }
    if (!cJSON_IsObject(it)) {
        set_err(err, GW_ERR_INVALID_FIELD, "%s must be an object", path);
        *bad = 1;
        return NULL;
    }
    return it;
}

static int parse_payload(const cJSON *root, gw_payload_t *p, gw_json_err_t *err)
{
    static const char *const types[] = {"AES128", "AES256", "AEAD_AES_128_GCM", "AEAD_AES_256_GCM"};
    int bad;
    const cJSON *obj = get_obj(root, "payload", "payload", 1, &bad, err);
    if (!obj)
        return -1;
    const char *type, *data;
    if (want_str(obj, "type", "payload.type", 1, 32, &type, err))
        return -1;
    int known = 0;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        known |= strcmp(type, types[i]) == 0;
    if (!known) {
        set_err(err, GW_ERR_INVALID_FIELD,
                "payload.type must be AES128, AES256, AEAD_AES_128_GCM or AEAD_AES_256_GCM");
        return -1;
    }
    /* the body cap bounds data; SIZE_MAX only guards the arithmetic below */
    if (want_str(obj, "data", "payload.data", 1, SIZE_MAX / 2, &data, err))
        return -1;
    size_t n = strlen(data);
    /* the size is the client's (up to --max-body): failing it fails this request only */
    uint8_t *buf = cm_trymalloc(cm_b64_decoded_max(n) + 1);
    if (!buf) {
        set_err(err, GW_ERR_INTERNAL, "out of memory");
        return -1;
    }
    size_t outlen = 0;
    if (cm_b64_decode(CM_B64_ANY, data, n, buf, cm_b64_decoded_max(n) + 1, &outlen) != 0) {
        free(buf);
        set_err(err, GW_ERR_INVALID_FIELD, "payload.data must be base64");
        return -1;
    }
    if (outlen < GW_PAYLOAD_MIN) {
        free(buf);
        set_err(err, GW_ERR_INVALID_FIELD,
                "payload.data must decode to at least %d bytes (IV + tag)", GW_PAYLOAD_MIN);
        return -1;
    }
    snprintf(p->type, sizeof(p->type), "%s", type);
    p->data = buf;
    p->data_len = outlen;
    return 0;
}

static int parse_token(const cJSON *root, int required, gw_token_t *t, gw_json_err_t *err)
{
    static const char *const types[] = {"com.apple.apns", "com.google.fcm", "webhook"};
    int bad;
    const cJSON *obj = get_obj(root, "notificationToken", "notificationToken", required, &bad, err);
    if (!obj)
        return bad ? -1 : 0;
    const char *type, *data;
    if (want_str(obj, "type", "notificationToken.type", 0, 64, &type, err))
        return -1;
    if (!type && want_str(obj, "name", "notificationToken.type", 1, 64, &type, err))
        return -1; /* the draft's figure 3 calls it "name" */
    int known = 0;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        known |= strcmp(type, types[i]) == 0;
    if (!known) {
        set_err(err, GW_ERR_INVALID_FIELD,
                "notificationToken.type must be com.apple.apns, com.google.fcm or webhook");
        return -1;
    }
    if (want_str(obj, "tokenData", "notificationToken.tokenData", 1, GW_TOKEN_DATA_MAX, &data, err))
        return -1;
    if (!*data) {
        set_err(err, GW_ERR_INVALID_FIELD, "notificationToken.tokenData must not be empty");
        return -1;
    }
    t->present = 1;
    snprintf(t->type, sizeof(t->type), "%s", type);
    t->token_data = cm_xstrdup(data);
    return 0;
}

static int parse_access_rights(const cJSON *cfg, char out[4], gw_json_err_t *err)
{
    const char *s;
    if (want_str(cfg, "accessRights", "mailboxConfiguration.accessRights", 0, 16, &s, err))
        return -1;
    out[0] = '\0';
    if (!s)
        return 0;
    int r = 0, w = 0, d = 0, ok = *s != '\0';
    for (const char *p = s; *p && ok; p++) {
        int *seen = *p == 'R' ? &r : *p == 'W' ? &w : *p == 'D' ? &d : NULL;
        if (!seen || *seen)
            ok = 0;
        else
            *seen = 1;
    }
    if (!ok) {
        set_err(err, GW_ERR_INVALID_FIELD,
                "mailboxConfiguration.accessRights must be a non-empty subset of RWD");
        return -1;
    }
    snprintf(out, 4, "%s%s%s", r ? "R" : "", w ? "W" : "", d ? "D" : "");
    return 0;
}

static int parse_lifetime(const cJSON *cfg, int64_t now_ms, int64_t max_ttl, int64_t *ttl,
                          gw_json_err_t *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(cfg, "timeToLive");
    if (it && !cJSON_IsNull(it)) {
        int64_t v = 0;
        int ok = 0;
        if (cJSON_IsString(it) && it->valuestring) {
            const char *s = it->valuestring;
            size_t n = strlen(s);
            ok = n > 0 && n <= 18;
            for (size_t i = 0; ok && i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                    ok = 0;
                else
                    v = v * 10 + (s[i] - '0');
            }
            if (!ok && n > 0 && (s[0] == '-' || n > 18)) {
                /* a negative or absurd number is a range error, not a type error */
                set_err(err, GW_ERR_INVALID_FIELD,
                        "mailboxConfiguration.timeToLive must be 1..%lld seconds",
                        (long long)max_ttl);
                return -1;
            }
        } else if (cJSON_IsNumber(it)) {
            double dv = it->valuedouble;
            if (!isfinite(dv) || dv != floor(dv)) {
                set_err(err, GW_ERR_INVALID_FIELD,
                        "mailboxConfiguration.timeToLive must be a whole number of seconds");
                return -1;
            }
            if (dv <= 0 || dv > (double)max_ttl) {
                set_err(err, GW_ERR_INVALID_FIELD,
                        "mailboxConfiguration.timeToLive must be 1..%lld seconds",
                        (long long)max_ttl);
                return -1;
            }
            v = (int64_t)dv;
            ok = 1;
        }
        if (!ok) {
            set_err(err, GW_ERR_INVALID_FIELD,
                    "mailboxConfiguration.timeToLive must be a number of seconds");
            return -1;
        }
        if (v <= 0 || v > max_ttl) {
            set_err(err, GW_ERR_INVALID_FIELD,
                    "mailboxConfiguration.timeToLive must be 1..%lld seconds", (long long)max_ttl);
            return -1;
        }
        *ttl = v;
        return 0;
    }
    const char *exp;
    if (want_str(cfg, "expiration", "mailboxConfiguration.expiration", 0, 64, &exp, err))
        return -1;
    if (!exp) {
        set_err(err, GW_ERR_MISSING_FIELD,
                "mailboxConfiguration.timeToLive or mailboxConfiguration.expiration is required");
        return -1;
    }
    int64_t at_ms;
    if (gw_rfc3339_parse(exp, &at_ms) != 0) {
        set_err(err, GW_ERR_INVALID_FIELD, "mailboxConfiguration.expiration must be RFC 3339");
        return -1;
    }
    /* whole seconds from now, rounded down: never outlive what the client asked for */
    int64_t v = (at_ms - now_ms) / 1000;
    if (at_ms <= now_ms || v <= 0 || v > max_ttl) {
        set_err(err, GW_ERR_INVALID_FIELD,
                "mailboxConfiguration.expiration must be 1..%lld seconds in the future",
                (long long)max_ttl);
        return -1;
    }
    *ttl = v;
    return 0;
}

int gw_json_parse_create(const uint8_t *body, size_t len, int64_t now_ms, int64_t max_ttl,
                         gw_create_body_t *out, gw_json_err_t *err)
{
    memset(out, 0, sizeof(*out));
    cJSON *root = parse_object(body, len, err);
    if (!root)
        return -1;
    int bad;
    const char *id, *title, *desc, *img;

    if (want_str(root, "mailboxIdentifier", "mailboxIdentifier", 0, 64, &id, err))
        goto fail;
    if (id) {
        if (!cm_uuid_is_v4(id, strlen(id))) {
            set_err(err, GW_ERR_INVALID_FIELD, "mailboxIdentifier must be a version 4 UUID");
            goto fail;
        }
        cm_uuid_canonical(id, out->mailbox_id);
    } else {
        if (cm_uuid_v4(out->mailbox_id) != 0) {
            set_err(err, GW_ERR_INTERNAL, "could not generate an identifier");
            goto fail;
        }
        out->id_generated = 1;
    }

    if (parse_payload(root, &out->payload, err))
        goto fail;

    const cJSON *disp = get_obj(root, "displayInformation", "displayInformation", 1, &bad, err);
    if (!disp)
        goto fail;
    if (want_str(disp, "title", "displayInformation.title", 1, GW_TITLE_MAX, &title, err) ||
        want_str(disp, "description", "displayInformation.description", 0, GW_DESCRIPTION_MAX,
                 &desc, err) ||
        want_str(disp, "imageUrl", "displayInformation.imageUrl", 0, GW_IMAGE_URL_MAX, &img, err))
        goto fail;
    if (!img &&
        want_str(disp, "imageURL", "displayInformation.imageURL", 0, GW_IMAGE_URL_MAX, &img, err))
        goto fail;

    if (parse_token(root, 0, &out->token, err))
        goto fail;

    const cJSON *cfg = get_obj(root, "mailboxConfiguration", "mailboxConfiguration", 1, &bad, err);
    if (!cfg)
        goto fail;
    if (parse_access_rights(cfg, out->access_rights, err) ||
        parse_lifetime(cfg, now_ms, max_ttl, &out->ttl_seconds, err))
        goto fail;

    out->title = cm_xstrdup(title);
    out->description = cm_xstrdup(desc);
    out->image_url = cm_xstrdup(img);
    cJSON_Delete(root);
    return 0;

fail:
    cJSON_Delete(root);
    gw_create_body_free(out);
    return -1;
}

void gw_create_body_free(gw_create_body_t *b)
{
    if (!b)
        return;
    free(b->payload.data);
    free(b->token.token_data);
    free(b->title);
    free(b->description);
    free(b->image_url);
    memset(b, 0, sizeof(*b));
}

int gw_json_parse_update(const uint8_t *body, size_t len, gw_update_body_t *out, gw_json_err_t *err)
{
    memset(out, 0, sizeof(*out));
    cJSON *root = parse_object(body, len, err);
    if (!root)
        return -1;
    if (parse_payload(root, &out->payload, err) || parse_token(root, 1, &out->token, err)) {
        cJSON_Delete(root);
        gw_update_body_free(out);
        return -1;
    }
    cJSON_Delete(root);
    return 0;
}

void gw_update_body_free(gw_update_body_t *b)
{
    if (!b)
        return;
    free(b->payload.data);
    free(b->token.token_data);
    memset(b, 0, sizeof(*b));
}

/* ---- attestation header ------------------------------------------------------------------ */

#define ATTESTATION_HEADER_MAX 32768

static int b64url_field(const cJSON *obj, const char *name, uint8_t **out, size_t *outlen)
{
    const char *s;
    if (get_str(obj, name, &s) != 1 || !*s)
        return -1;
    size_t n = strlen(s), cap = cm_b64_decoded_max(n) + 1;
    uint8_t *buf = cm_xmalloc(cap); /* bounded by ATTESTATION_HEADER_MAX */
    if (cm_b64_decode(CM_B64_URL, s, n, buf, cap, outlen) != 0 || *outlen == 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

int gw_json_parse_attestation(const char *value, uint8_t **att_obj, size_t *att_obj_len,
                              uint8_t **client_data, size_t *client_data_len)
{
    *att_obj = *client_data = NULL;
    *att_obj_len = *client_data_len = 0;
    if (!value)
        return -1;
    size_t n = strlen(value);
    if (n == 0 || n > ATTESTATION_HEADER_MAX)
        return -1;
    size_t cap = cm_b64_decoded_max(n) + 1, jlen = 0;
    uint8_t *json = cm_xmalloc(cap); /* bounded by ATTESTATION_HEADER_MAX */
    gw_json_err_t err;
    cJSON *root = NULL;
    int rc = -1;
    if (cm_b64_decode(CM_B64_URL, value, n, json, cap, &jlen) != 0)
        goto out;
    root = parse_object(json, jlen, &err);
    if (!root)
        goto out;
    if (b64url_field(root, "attestationObject", att_obj, att_obj_len) ||
        b64url_field(root, "clientDataJSON", client_data, client_data_len)) {
        free(*att_obj);
        free(*client_data);
        *att_obj = *client_data = NULL;
        *att_obj_len = *client_data_len = 0;
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    free(json);
    return rc;
}

/* ---- responses --------------------------------------------------------------------------- */

static char *print_and_free(cJSON *root, size_t *len)
{
    char *s = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (s && len)
        *len = strlen(s);
    return s;
}

char *gw_json_error_body(gw_err_t err, const char *message, size_t *len)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    if (!e || !cJSON_AddStringToObject(e, "code", gw_err_code(err)) ||
        !cJSON_AddStringToObject(e, "message", message ? message : gw_err_message(err))) {
        cJSON_Delete(root);
        return NULL;
    }
    return print_and_free(root, len);
}

char *gw_json_create_response(const char *url_link, int push_supported, size_t *len)
{
    cJSON *root = cJSON_CreateObject();
    if (!root || !cJSON_AddStringToObject(root, "urlLink", url_link) ||
        !cJSON_AddBoolToObject(root, "isPushNotificationSupported", push_supported ? 1 : 0)) {
        cJSON_Delete(root);
        return NULL;
    }
    return print_and_free(root, len);
}

char *gw_json_read_response(const char *title, const char *description, const char *image_url,
                            const char *payload_type, const uint8_t *data, size_t data_len,
                            int64_t expires_at_ms, size_t *len)
{
    char exp[32];
    gw_rfc3339_format(expires_at_ms, exp);
    /* the size is the stored payload's: failing it fails this request only */
    char *b64 = cm_trymalloc(cm_b64_encoded_size(data_len));
    if (!b64)
        return NULL;
    cm_b64_encode(CM_B64_STD, data, data_len, b64);
    cJSON *root = cJSON_CreateObject();
    cJSON *disp = cJSON_AddObjectToObject(root, "displayInformation");
    cJSON *pl = cJSON_AddObjectToObject(root, "payload");
    int ok = disp && pl && cJSON_AddStringToObject(disp, "title", title ? title : "") &&
             cJSON_AddStringToObject(disp, "description", description ? description : "") &&
             cJSON_AddStringToObject(disp, "imageUrl", image_url ? image_url : "") &&
             cJSON_AddStringToObject(pl, "type", payload_type ? payload_type : "") &&
             cJSON_AddStringToObject(pl, "data", b64) &&
             cJSON_AddStringToObject(root, "expiration", exp);
    free(b64);
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return print_and_free(root, len);
}
