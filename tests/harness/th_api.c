#include "th_api.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <cmocka.h>

#include "cm_b64.h"
#include "cm_uuid.h"
#include "th_stack.h"

const char *th_api_name(const th_api_t *t)
{
    if (t->inproc)
        return "in-process";
    switch (t->proto) {
    case TH_HTTP_H2C:
        return "h2c";
    case TH_HTTP_H1:
        return "http/1.1";
    default:
        return "https(h2)";
    }
}

void th_api_do(const th_api_t *t, const char *method, const char *path, const char *const *headers,
               const char *body, th_http_resp_t *out)
{
    th_http_req_t rq = {.proto = t->proto,
                        .port = t->port,
                        .method = method,
                        .path = path,
                        .headers = headers,
                        .body = body,
                        .ca_file = t->ca_file,
                        .timeout_ms = 15000,
                        .empty_post = t->empty_post};
    if (t->inproc) {
        if (th_gwapi_request(t->inproc, &rq, out) != 0)
            fail_msg("%s %s in-process: %s", method, path, out->err);
        return;
    }
    if (th_http_request(t->curl, &rq, out) != 0)
        fail_msg("%s %s over %s: %s", method, path, th_api_name(t), out->err);
    long want = t->proto == TH_HTTP_H1 ? CURL_HTTP_VERSION_1_1 : CURL_HTTP_VERSION_2_0;
    if (out->version != want)
        fail_msg("%s %s: wanted %s, got curl http version %ld", method, path, th_api_name(t),
                 out->version);
}

void th_api_expect_error(const th_http_resp_t *r, long status, const char *code)
{
    if (r->status != status)
        fail_msg("status %ld, wanted %ld; body %s", r->status, status, r->body);
    const char *ct = th_http_header(r, "content-type");
    assert_non_null(ct);
    assert_true(strncmp(ct, "application/json", 16) == 0);
    cJSON *j = cJSON_Parse(r->body);
    assert_non_null(j);
    cJSON *e = cJSON_GetObjectItem(j, "error");
    assert_true(cJSON_IsObject(e));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(e, "message")));
    cJSON *c = cJSON_GetObjectItem(e, "code");
    assert_true(cJSON_IsString(c));
    if (code && strcmp(c->valuestring, code) != 0)
        fail_msg("error code %s, wanted %s (status %ld)", c->valuestring, code, status);
    cJSON_Delete(j);
}

void th_api_expect(th_http_resp_t *r, long status, const char *code, const char *what)
{
    if (r->status != status)
        fail_msg("%s: status %ld, wanted %ld; body %s", what, r->status, status, r->body);
    if (code) {
        cJSON *j = cJSON_Parse(r->body);
        const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code");
        if (!cJSON_IsString(c) || strcmp(c->valuestring, code) != 0)
            fail_msg("%s: body %s, wanted error code %s", what, r->body, code);
        cJSON_Delete(j);
    }
    th_http_resp_free(r);
}

static char hbuf[8][256];

const char *th_api_hdr(int slot, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(hbuf[slot], sizeof(hbuf[slot]), fmt, ap);
    va_end(ap);
    return hbuf[slot];
}

void th_api_uuid(char out[37])
{
    assert_int_equal(cm_uuid_v4(out), 0);
}

void th_api_payload_b64(int fill, size_t n, char *out)
{
    uint8_t raw[256];
    assert_true(n <= sizeof(raw));
    memset(raw, fill, n);
    cm_b64_encode(CM_B64_STD, raw, n, out);
}

void th_api_create(const th_api_t *t, th_mbx_t *m, int fill, const char *title)
{
    char corr[37], data[400], body[2048];
    th_api_uuid(m->id);
    th_api_uuid(m->sender);
    th_api_uuid(corr);
    th_api_payload_b64(fill, 40, data);
    snprintf(body, sizeof(body),
             "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"%s\",\"description\":\"A key\","
             "\"imageUrl\":\"https://img.example/k.png\"},"
             "\"notificationToken\":{\"type\":\"com.apple.apns\",\"tokenData\":\"aabbcc\"},"
             "\"mailboxConfiguration\":{\"accessRights\":\"RWD\",\"timeToLive\":\"3600\"}}",
             m->id, data, title ? title : "Car Key");
    const char *h[] = {th_api_hdr(0, "deviceClaim: %s", m->sender),
                       th_api_hdr(1, "Mailbox-Correlation-ID: %s", corr), NULL};
    th_http_resp_t r;
    th_api_do(t, "POST", "/v1/m", h, body, &r);
    if (r.status != 200)
        fail_msg("create over %s: %ld %s", th_api_name(t), r.status, r.body);
    assert_string_equal(th_http_header(&r, "mailbox-correlation-id"), corr);
    cJSON *j = cJSON_Parse(r.body);
    assert_non_null(j);
    char want[200];
    snprintf(want, sizeof(want), "https://relay.example/v1/m/%s", m->id);
    assert_string_equal(cJSON_GetObjectItem(j, "urlLink")->valuestring, want);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "isPushNotificationSupported")));
    cJSON_Delete(j);
    th_http_resp_free(&r);
}

/* Asserts the shape of a 200 ReadSecure answer; the first payload byte in *fill. */
static void check_read_answer(const th_http_resp_t *r, int *fill)
{
    cJSON *j = cJSON_Parse(r->body);
    assert_non_null(j);
    cJSON *p = cJSON_GetObjectItem(j, "payload");
    assert_non_null(p);
    const char *d = cJSON_GetObjectItem(p, "data")->valuestring;
    uint8_t raw[256];
    size_t n = 0;
    assert_int_equal(cm_b64_decode(CM_B64_STD, d, strlen(d), raw, sizeof(raw), &n), 0);
    assert_true(n >= 28);
    if (fill)
        *fill = raw[0];
    cJSON *disp = cJSON_GetObjectItem(j, "displayInformation");
    assert_non_null(cJSON_GetObjectItem(disp, "title"));
    const char *exp = cJSON_GetObjectItem(j, "expiration")->valuestring;
    assert_int_equal(strlen(exp), 20); /* YYYY-MM-DDTHH:MM:SSZ */
    assert_int_equal(exp[19], 'Z');
    assert_string_equal(th_http_header(r, "cache-control"), "no-store");
    cJSON_Delete(j);
}

long th_api_read_secure(const th_api_t *t, const char *id, const char *claim, int *fill)
{
    char path[128], corr[37];
    th_api_uuid(corr);
    snprintf(path, sizeof(path), "/v1/m/%s", id);
    const char *h[] = {th_api_hdr(0, "deviceClaim: %s", claim),
                       th_api_hdr(1, "Mailbox-Correlation-ID: %s", corr), NULL};
    th_http_resp_t r;
    th_api_do(t, "POST", path, h, NULL, &r);
    long st = r.status;
    assert_string_equal(th_http_header(&r, "mailbox-correlation-id"), corr);
    if (st == 200)
        check_read_answer(&r, fill);
    else
        th_api_expect_error(&r, st, NULL);
    th_http_resp_free(&r);
    return st;
}

long th_api_update(const th_api_t *t, const char *id, const char *claim, int fill)
{
    char path[128], data[400], body[1024];
    snprintf(path, sizeof(path), "/v1/m/%s", id);
    th_api_payload_b64(fill, 48, data);
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"notificationToken\":{\"type\":\"com.google.fcm\",\"tokenData\":\"tok\"}}",
             data);
    const char *h[] = {th_api_hdr(0, "deviceClaim: %s", claim), NULL};
    th_http_resp_t r;
    th_api_do(t, "PUT", path, h, body, &r);
    long st = r.status;
    if (st != 200)
        th_api_expect_error(&r, st, NULL);
    th_http_resp_free(&r);
    return st;
}

long th_api_delete(const th_api_t *t, const char *id, const char *claim)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", id);
    const char *h[] = {th_api_hdr(0, "deviceClaim: %s", claim), NULL};
    th_http_resp_t r;
    th_api_do(t, "DELETE", path, h, NULL, &r);
    long st = r.status;
    if (st != 200)
        th_api_expect_error(&r, st, NULL);
    th_http_resp_free(&r);
    return st;
}

long th_api_preview(const th_api_t *t, const char *id, th_http_resp_t *r)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%.64s", id);
    th_api_do(t, "GET", path, NULL, NULL, r);
    return r->status;
}

int th_api_store_start(th_proc_t *p, const char *data_dir, int port)
{
    static const char *const extra[] = {"--log-level=warn", "--workers=2", "--sync=0", NULL};
    return th_store_start(p, data_dir, port, extra, 20000);
}

int th_api_env_start(th_api_env_t *e, const char *prefix)
{
    memset(e, 0, sizeof(*e));
    char data[700];
    if (th_tempdir(prefix, e->dir, sizeof(e->dir)) != 0)
        return -1;
    snprintf(data, sizeof(data), "%s/store", e->dir);
    if (th_api_store_start(&e->store, data, 0) != 0)
        return -1;
    e->store_port = th_proc_port(&e->store, "grpc_port");
    gw_backend_config_t bc;
    gw_api_config_t ac;
    th_gwapi_defaults(e->store_port, &bc, &ac);
    if (th_gwapi_new(&bc, &ac, &e->gw) != 0)
        return -1;
    e->api = (th_api_t){.inproc = e->gw};
    return 0;
}

int th_api_env_stop(th_api_env_t *e)
{
    th_gwapi_free(e->gw);
    e->gw = NULL;
    int rc = 0;
    if (e->store.pid > 0 && th_proc_stop_clean(&e->store, "mailbox-store", 15000) != 0)
        rc = -1;
    th_rmtree(e->dir);
    return rc;
}
