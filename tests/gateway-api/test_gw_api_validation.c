/* The public API's validation, in-process against the real mailbox-store: every 400 kind with
 * the correlation id echoed, the later draft's header and member names, and a hostile title
 * that must come out escaped in the preview and verbatim in the secure read; the two published
 * documents (GET /v1/config, GET /v1/openapi.json) and their routes' 405. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>
#include <cmocka.h>

#include "cm_uuid.h"
#include "th_api.h"

static th_api_env_t E; /* the shared store and the API in-process */
#define API (&E.api)

static int group_setup(void **state)
{
    return th_api_env_start(&E, "gwval");
}

static int group_teardown(void **state)
{
    return th_api_env_stop(&E);
}

/* Every 400 kind of the API, each with the correlation id echoed. */
static void validation_errors(void **state)
{
    char claim[37], id[37], good[100], short_data[100];
    th_api_uuid(claim);
    th_api_uuid(id);
    th_api_payload_b64(1, 32, good);
    th_api_payload_b64(1, 27, short_data);
    char title257[300];
    memset(title257, 'x', 257);
    title257[257] = '\0';
    struct {
        const char *what, *body_fmt, *code;
    } cases[] = {
        {"malformed JSON", "{\"payload\":", "invalid_json"},
        {"not an object", "[1,2]", "invalid_json"},
        {"missing payload",
         "{\"displayInformation\":{\"title\":\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60}"
         "%.0s}",
         "missing_field"},
        {"mailbox id not v4",
         "{\"mailboxIdentifier\":\"6ba7b810-9dad-11d1-80b4-00c04fd430c8\",\"payload\":{\"type\":"
         "\"AES128\",\"data\":\"%s\"},\"displayInformation\":{\"title\":\"t\"},"
         "\"mailboxConfiguration\":{\"timeToLive\":60}}",
         "invalid_field"},
        {"payload type",
         "{\"payload\":{\"type\":\"ROT13\",\"data\":\"%s\"},\"displayInformation\":{\"title\":"
         "\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60}}",
         "invalid_field"},
        {"payload not base64",
         "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s***\"},\"displayInformation\":{"
         "\"title\":\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60}}",
         "invalid_field"},
        {"access rights",
         "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"displayInformation\":{\"title\":"
         "\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60,\"accessRights\":\"RX\"}}",
         "invalid_field"},
        {"ttl zero",
         "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"displayInformation\":{\"title\":"
         "\"t\"},\"mailboxConfiguration\":{\"timeToLive\":\"0\"}}",
         "invalid_field"},
        {"ttl not a number",
         "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"displayInformation\":{\"title\":"
         "\"t\"},\"mailboxConfiguration\":{\"timeToLive\":\"soon\"}}",
         "invalid_field"},
        {"ttl above max",
         "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"displayInformation\":{\"title\":"
         "\"t\"},\"mailboxConfiguration\":{\"timeToLive\":172801}}",
         "invalid_field"},
        {"no lifetime",
         "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"displayInformation\":{\"title\":"
         "\"t\"},\"mailboxConfiguration\":{\"accessRights\":\"RD\"}}",
         "missing_field"},
        {"token type unknown",
         "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"displayInformation\":{\"title\":"
         "\"t\"},\"notificationToken\":{\"type\":\"sms\",\"tokenData\":\"x\"},"
         "\"mailboxConfiguration\":{\"timeToLive\":60}}",
         "invalid_field"},
        {"token without data",
         "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"displayInformation\":{\"title\":"
         "\"t\"},\"notificationToken\":{\"type\":\"webhook\"},"
         "\"mailboxConfiguration\":{\"timeToLive\":60}}",
         "missing_field"},
        {"title not UTF-8",
         "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"displayInformation\":{\"title\":"
         "\"\xff\xfe\"},\"mailboxConfiguration\":{\"timeToLive\":60}}",
         "invalid_json"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[2048], corr[37];
        snprintf(body, sizeof(body), cases[i].body_fmt, good);
        th_api_uuid(corr);
        const char *h[] = {th_api_hdr(0, "deviceClaim: %s", claim),
                           th_api_hdr(1, "Mailbox-Correlation-ID: %s", corr), NULL};
        th_http_resp_t r;
        th_api_do(API, "POST", "/v1/m", h, body, &r);
        if (r.status != 400)
            fail_msg("%s: %ld %s", cases[i].what, r.status, r.body);
        th_api_expect_error(&r, 400, cases[i].code);
        const char *echo = th_http_header(&r, "mailbox-correlation-id");
        if (!echo || strcmp(echo, corr) != 0)
            fail_msg("%s: correlation id not echoed", cases[i].what);
        th_http_resp_free(&r);
    }
    /* short payload, long title */
    char body[2048];
    const char *hc[] = {th_api_hdr(0, "deviceClaim: %s", claim), NULL};
    th_http_resp_t r;
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"displayInformation\":{\"title\":"
             "\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60}}",
             short_data);
    th_api_do(API, "POST", "/v1/m", hc, body, &r);
    th_api_expect_error(&r, 400, "invalid_field");
    th_http_resp_free(&r);
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"displayInformation\":{\"title\":"
             "\"%s\"},\"mailboxConfiguration\":{\"timeToLive\":60}}",
             good, title257);
    th_api_do(API, "POST", "/v1/m", hc, body, &r);
    th_api_expect_error(&r, 400, "invalid_field");
    assert_non_null(strstr(r.body, "title"));
    th_http_resp_free(&r);

    /* claim header: missing, not a UUID */
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"displayInformation\":{\"title\":"
             "\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60}}",
             good);
    char corr[37];
    th_api_uuid(corr);
    const char *hn[] = {th_api_hdr(1, "Mailbox-Correlation-ID: %s", corr), NULL};
    th_api_do(API, "POST", "/v1/m", hn, body, &r);
    th_api_expect_error(&r, 400, "missing_header");
    assert_string_equal(th_http_header(&r, "mailbox-correlation-id"), corr);
    th_http_resp_free(&r);
    const char *hb[] = {"deviceClaim: not-a-uuid", NULL};
    th_api_do(API, "POST", "/v1/m", hb, body, &r);
    th_api_expect_error(&r, 400, "invalid_header");
    th_http_resp_free(&r);
    /* mailbox id in the path not a UUID */
    const char *hv[] = {th_api_hdr(0, "deviceClaim: %s", claim), NULL};
    th_api_do(API, "POST", "/v1/m/12345", hv, NULL, &r);
    th_api_expect_error(&r, 400, "invalid_mailbox_id");
    th_http_resp_free(&r);
    /* Update: notificationToken is required */
    th_mbx_t m;
    th_api_create(API, &m, 3, NULL);
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", m.id);
    snprintf(body, sizeof(body), "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"}}", good);
    const char *hs[] = {th_api_hdr(0, "deviceClaim: %s", m.sender), NULL};
    th_api_do(API, "PUT", path, hs, body, &r);
    th_api_expect_error(&r, 400, "missing_field");
    th_http_resp_free(&r);
    /* nothing was changed by the refused update */
    int fill = 0;
    assert_int_equal(th_api_read_secure(API, m.id, m.sender, &fill), 200);
    assert_int_equal(fill, 3);
}

static void later_draft_names(void **state)
{
    char claim[37], req_id[37], data[100], body[1024];
    th_api_uuid(claim);
    th_api_uuid(req_id);
    th_api_payload_b64(9, 28, data);
    /* no mailboxIdentifier (the relay makes one), imageURL, expiration instead of timeToLive */
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AEAD_AES_128_GCM\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"Later\",\"imageURL\":\"https://i.example/a\"},"
             "\"mailboxConfiguration\":{\"expiration\":\"2099-01-01T00:00:00Z\"}}",
             data);
    const char *h[] = {th_api_hdr(0, "Mailbox-Device-Claim: %s", claim),
                       th_api_hdr(1, "Mailbox-Request-ID: %s", req_id), NULL};
    th_http_resp_t r;
    th_api_do(API, "POST", "/v1/m", h, body, &r);
    /* 2099 is beyond the 48 h maximum */
    th_api_expect_error(&r, 400, "invalid_field");
    assert_string_equal(th_http_header(&r, "mailbox-request-id"), req_id);
    assert_null(th_http_header(&r, "mailbox-correlation-id"));
    th_http_resp_free(&r);

    char exp[40];
    time_t t = time(NULL) + 7200;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(exp, sizeof(exp), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AEAD_AES_128_GCM\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"Later\",\"imageURL\":\"https://i.example/a\"},"
             "\"mailboxConfiguration\":{\"expiration\":\"%s\"}}",
             data, exp);
    th_api_uuid(req_id);
    h[1] = th_api_hdr(1, "Mailbox-Request-ID: %s", req_id);
    th_api_do(API, "POST", "/v1/m", h, body, &r);
    if (r.status != 200)
        fail_msg("%ld %s", r.status, r.body);
    assert_string_equal(th_http_header(&r, "mailbox-request-id"), req_id);
    cJSON *j = cJSON_Parse(r.body);
    const char *url = cJSON_GetObjectItem(j, "urlLink")->valuestring;
    const char *id = strrchr(url, '/') + 1;
    assert_true(cm_uuid_is_v4(id, strlen(id)));
    char idc[37];
    snprintf(idc, sizeof(idc), "%s", id);
    cJSON_Delete(j);
    th_http_resp_free(&r);

    assert_int_equal(th_api_preview(API, idc, &r), 200);
    assert_non_null(strstr(r.body, "content=\"https://i.example/a\""));
    th_http_resp_free(&r);
    /* the expiration the store keeps matches the one asked for (to the second) */
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", idc);
    const char *hr[] = {th_api_hdr(0, "Mailbox-Device-Claim: %s", claim), NULL};
    th_api_do(API, "POST", path, hr, NULL, &r);
    assert_int_equal(r.status, 200);
    j = cJSON_Parse(r.body);
    const char *got = cJSON_GetObjectItem(j, "expiration")->valuestring;
    /* The lifetime travels as whole seconds (gateway: expiration - now, rounded down; store:
     * now + lifetime), so a loaded machine may land a few seconds early, never late. */
    int64_t got_ms = 0;
    struct tm gt = {0};
    assert_non_null(strptime(got, "%Y-%m-%dT%H:%M:%SZ", &gt));
    got_ms = (int64_t)timegm(&gt);
    if (got_ms > (int64_t)t || got_ms < (int64_t)t - 5)
        fail_msg("expiration %s, wanted %s (or up to 5 s earlier)", got, exp);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "displayInformation"), "imageUrl")->valuestring,
        "https://i.example/a");
    cJSON_Delete(j);
    th_http_resp_free(&r);
    assert_int_equal(th_api_delete(API, idc, claim), 200);
}

static void hostile_title(void **state)
{
    th_mbx_t m;
    /* JSON-escaped: "><script>alert(1)</script><img src=x onerror='y'>& */
    th_api_create(API, &m, 0x22, "\\\"><script>alert(1)</script><img src=x onerror='y'>&");
    th_http_resp_t r;
    assert_int_equal(th_api_preview(API, m.id, &r), 200);
    assert_null(strstr(r.body, "<script"));
    assert_null(strstr(r.body, "<img src=x"));
    assert_non_null(strstr(r.body, "content=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
                                   "&lt;img src=x onerror=&#39;y&#39;&gt;&amp;\""));
    th_http_resp_free(&r);
    /* ReadSecure gives the title back verbatim (JSON-escaped, not HTML-escaped) */
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", m.id);
    const char *h[] = {th_api_hdr(0, "deviceClaim: %s", m.sender), NULL};
    th_api_do(API, "POST", path, h, NULL, &r);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "displayInformation"), "title")->valuestring,
        "\"><script>alert(1)</script><img src=x onerror='y'>&");
    cJSON_Delete(j);
    th_http_resp_free(&r);
}

/* GET /v1/config gives the API's configuration (th_gwapi's: max TTL 172800 s, body limit of its
 * core; no limiter in-process, so both budgets unlimited) and is cacheable; /v1/openapi.json is
 * an OpenAPI 3.1 document; any other method on either is a 405 with Allow: GET. */
static void published_documents(void **state)
{
    char corr[37];
    th_api_uuid(corr);
    const char *h[] = {th_api_hdr(0, "Mailbox-Correlation-ID: %s", corr), NULL};
    th_http_resp_t r;
    th_api_do(API, "GET", "/v1/config", h, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_http_header(&r, "cache-control"), "public, max-age=300");
    assert_string_equal(th_http_header(&r, "mailbox-correlation-id"), corr);
    cJSON *j = cJSON_Parse(r.body);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "apiVersion")->valuestring, "v1");
    cJSON *life = cJSON_GetObjectItem(j, "lifetime");
    assert_int_equal((long)cJSON_GetObjectItem(life, "maximumSeconds")->valuedouble, 172800);
    cJSON *lim = cJSON_GetObjectItem(j, "limits");
    assert_true(cJSON_GetObjectItem(lim, "maxBodyBytes")->valuedouble > 0);
    cJSON *at = cJSON_GetObjectItem(j, "attestation");
    assert_string_equal(cJSON_GetObjectItem(at, "policy")->valuestring, "verify-if-present");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(at, "verifierConfigured")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "pushProviders")), 0);
    cJSON *rl = cJSON_GetObjectItem(j, "rateLimits");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(rl, "write"), "limited")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(rl, "failure"), "limited")));
    cJSON_Delete(j);
    th_http_resp_free(&r);

    th_api_do(API, "GET", "/v1/openapi.json", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    j = cJSON_Parse(r.body);
    assert_non_null(j);
    assert_int_equal(strncmp(cJSON_GetObjectItem(j, "openapi")->valuestring, "3.1", 3), 0);
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "paths"), "/v1/config"));
    cJSON_Delete(j);
    th_http_resp_free(&r);

    static const char *const wrong[][2] = {{"POST", "/v1/config"}, {"DELETE", "/v1/openapi.json"}};
    for (size_t i = 0; i < 2; i++) {
        th_api_do(API, wrong[i][0], wrong[i][1], h, NULL, &r);
        th_api_expect_error(&r, 405, "method_not_allowed");
        assert_string_equal(th_http_header(&r, "allow"), "GET");
        assert_string_equal(th_http_header(&r, "mailbox-correlation-id"), corr);
        th_http_resp_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(validation_errors),
        cmocka_unit_test(later_draft_names),
        cmocka_unit_test(hostile_title),
        cmocka_unit_test(published_documents),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
