/* Integration tests of the public API v1: the real gateway in front of the real mailbox-store,
 * both on ephemeral ports, driven by libcurl over h2c (prior knowledge), HTTP/1.1 and TLS (h2
 * by ALPN, certificate verified). What is asserted is what a phone or a crawler sees: status,
 * headers, bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>
#include <ctype.h>
#include <dirent.h>
#include <signal.h>
#include <time.h>

#include <cJSON.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "cm_b64.h"
#include "cm_shard.h"
#include "cm_uuid.h"
#include "th.h"
#include "th_http.h"
#include "th_stack.h"

enum { P_H2C = 0, P_H1 = 1, P_TLS = 2, P_COUNT };
static const char *const proto_names[] = {"h2c", "http/1.1", "https(h2)"};

typedef struct {
    th_proc_t store, gw;
    char dir[512];      /* temp dir: store data, TLS cert */
    char data_dir[600]; /* store data */
    char cert[600], key[600];
    int store_port;
    int http_port, https_port;
    CURL *curl[P_COUNT]; /* one handle per protocol: keeps its connection alive */
} env_t;

static env_t E; /* the shared fixture of the group */

/* Processes and handles a single test starts: the per-test teardown kills what a failed
 * assertion left behind, so no child outlives the test binary. */
static th_proc_t T_gw, T_store, T_push, T_shard[3], T_verifier;
static CURL *T_curl;

static int G_http_port, G_https_port; /* the shared gateway's ports, restored after a test */

static void creq_free_all(void); /* the concurrent requests a test left */

static int test_teardown(void **state)
{
    E.http_port = G_http_port;
    E.https_port = G_https_port;
    if (T_curl)
        curl_easy_cleanup(T_curl);
    T_curl = NULL;
    creq_free_all();
    if (T_gw.pid > 0)
        th_proc_kill9(&T_gw);
    if (T_store.pid > 0)
        th_proc_kill9(&T_store);
    if (T_push.pid > 0)
        th_proc_kill9(&T_push);
    for (int i = 0; i < 3; i++)
        if (T_shard[i].pid > 0)
            th_proc_kill9(&T_shard[i]);
    if (T_verifier.pid > 0)
        th_proc_kill9(&T_verifier);
    return 0;
}

/* ---- processes --------------------------------------------------------------------------- */

static int store_start(th_proc_t *p, const char *data_dir, int port)
{
    static const char *const extra[] = {"--log-level=warn", "--workers=2", "--sync=0", NULL};
    return th_store_start(p, data_dir, port, extra, 20000);
}

/* Starts a gateway against |store_port| with extra flags (NULL-terminated). */
static int gateway_start(th_proc_t *p, int store_port, const char *const *extra)
{
    char store[64], cert[700], key[700];
    snprintf(store, sizeof(store), "--store-target=127.0.0.1:%d", store_port);
    snprintf(cert, sizeof(cert), "--tls-cert=%s", E.cert);
    snprintf(key, sizeof(key), "--tls-key=%s", E.key);
    const char *argv[TH_MAX_ARGS] = {store,
                                     "--https-listen=127.0.0.1:0",
                                     cert,
                                     key,
                                     "--threads=2",
                                     "--log-level=warn",
                                     "--public-base-url=https://relay.example/",
                                     NULL};
    int n = 0;
    while (argv[n])
        n++;
    for (size_t i = 0; extra && extra[i] && n < TH_MAX_ARGS - 1; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return th_gateway_start(p, argv, 20000);
}

static int make_cert(const char *dir)
{
    snprintf(E.cert, sizeof(E.cert), "%s/cert.pem", dir);
    snprintf(E.key, sizeof(E.key), "%s/key.pem", dir);
    char cmd[2000];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost "
             "-keyout %s -out %s >/dev/null 2>&1",
             E.key, E.cert);
    return system(cmd) == 0 ? 0 : -1;
}

static void curl_handles_open(void)
{
    for (int i = 0; i < P_COUNT; i++)
        E.curl[i] = curl_easy_init();
}

static void curl_handles_close(void)
{
    for (int i = 0; i < P_COUNT; i++) {
        curl_easy_cleanup(E.curl[i]);
        E.curl[i] = NULL;
    }
}

static int group_setup(void **state)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (th_tempdir("gwapi", E.dir, sizeof(E.dir)) != 0 || make_cert(E.dir) != 0)
        return -1;
    snprintf(E.data_dir, sizeof(E.data_dir), "%s/store", E.dir);
    if (store_start(&E.store, E.data_dir, 0) != 0)
        return -1;
    E.store_port = th_proc_port(&E.store, "grpc_port");
    if (gateway_start(&E.gw, E.store_port, NULL) != 0)
        return -1;
    E.http_port = th_proc_port(&E.gw, "http_port");
    E.https_port = th_proc_port(&E.gw, "https_port");
    if (E.http_port <= 0 || E.https_port <= 0)
        return -1;
    G_http_port = E.http_port;
    G_https_port = E.https_port;
    curl_handles_open();
    return 0;
}

static int group_teardown(void **state)
{
    curl_handles_close();
    int rc = 0;
    if (E.gw.pid > 0 && th_proc_stop_clean(&E.gw, "gateway", 15000) != 0)
        rc = -1;
    if (E.store.pid > 0 && th_proc_stop_clean(&E.store, "mailbox-store", 15000) != 0)
        rc = -1;
    th_rmtree(E.dir);
    curl_global_cleanup();
    return rc;
}

/* ---- HTTP client ------------------------------------------------------------------------- */

/* One request via the shared client; a transport error or an HTTP version other than the one
 * |proto| asked for fails the test. */
static void do_req_on(CURL *c, int proto, int port, const char *method, const char *path,
                      const char *const *headers, const char *body, size_t blen,
                      th_http_resp_t *out)
{
    static const th_http_proto_t th_proto[P_COUNT] = {TH_HTTP_H2C, TH_HTTP_H1, TH_HTTP_TLS};
    th_http_req_t rq = {.proto = th_proto[proto],
                        .port = port,
                        .method = method,
                        .path = path,
                        .headers = headers,
                        .body = body,
                        .body_len = blen,
                        .ca_file = E.cert,
                        .timeout_ms = 15000};
    if (th_http_request(c, &rq, out) != 0)
        fail_msg("%s %s over %s: %s", method, path, proto_names[proto], out->err);
    long want = proto == P_H1 ? CURL_HTTP_VERSION_1_1 : CURL_HTTP_VERSION_2_0;
    if (out->version != want)
        fail_msg("%s %s: wanted %s, got curl http version %ld", method, path, proto_names[proto],
                 out->version);
}

static void do_req(int proto, const char *method, const char *path, const char *const *headers,
                   const char *body, th_http_resp_t *out)
{
    do_req_on(E.curl[proto], proto, proto == P_TLS ? E.https_port : E.http_port, method, path,
              headers, body, body ? strlen(body) : 0, out);
}

/* Asserts an error answer: status, JSON error body with |code| (when not NULL), JSON headers. */
static void expect_error(const th_http_resp_t *r, long status, const char *code)
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

/* ---- API helpers ------------------------------------------------------------------------- */

static void new_uuid(char out[37])
{
    assert_int_equal(cm_uuid_v4(out), 0);
}

/* base64 of |n| bytes all equal to |fill| */
static void payload_b64(int fill, size_t n, char *out)
{
    uint8_t raw[256];
    memset(raw, fill, n);
    cm_b64_encode(CM_B64_STD, raw, n, out);
}

typedef struct {
    char id[37];
    char sender[37];
} mbx_t;

static char hbuf[8][256];
static const char *H(int slot, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *H(int slot, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(hbuf[slot], sizeof(hbuf[slot]), fmt, ap);
    va_end(ap);
    return hbuf[slot];
}

/* Creates a mailbox with payload bytes |fill| and returns its id; asserts 200. */
static void create_mailbox(int proto, mbx_t *m, int fill, const char *title)
{
    char corr[37], data[400], body[2048];
    new_uuid(m->id);
    new_uuid(m->sender);
    new_uuid(corr);
    payload_b64(fill, 40, data);
    snprintf(body, sizeof(body),
             "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"%s\",\"description\":\"A key\","
             "\"imageUrl\":\"https://img.example/k.png\"},"
             "\"notificationToken\":{\"type\":\"com.apple.apns\",\"tokenData\":\"aabbcc\"},"
             "\"mailboxConfiguration\":{\"accessRights\":\"RWD\",\"timeToLive\":\"3600\"}}",
             m->id, data, title ? title : "Car Key");
    const char *h[] = {H(0, "deviceClaim: %s", m->sender), H(1, "Mailbox-Correlation-ID: %s", corr),
                       NULL};
    th_http_resp_t r;
    do_req(proto, "POST", "/v1/m", h, body, &r);
    if (r.status != 200)
        fail_msg("create over %s: %ld %s", proto_names[proto], r.status, r.body);
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

/* POST read as |claim|; returns the status, and the decoded payload fill byte in *fill. */
static long read_secure(int proto, const char *id, const char *claim, int *fill)
{
    char path[128], corr[37];
    new_uuid(corr);
    snprintf(path, sizeof(path), "/v1/m/%s", id);
    const char *h[] = {H(0, "deviceClaim: %s", claim), H(1, "Mailbox-Correlation-ID: %s", corr),
                       NULL};
    th_http_resp_t r;
    do_req(proto, "POST", path, h, NULL, &r);
    long st = r.status;
    assert_string_equal(th_http_header(&r, "mailbox-correlation-id"), corr);
    if (st == 200) {
        cJSON *j = cJSON_Parse(r.body);
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
        assert_string_equal(th_http_header(&r, "cache-control"), "no-store");
        cJSON_Delete(j);
    } else {
        expect_error(&r, st, NULL);
    }
    th_http_resp_free(&r);
    return st;
}

static long update_mailbox(int proto, const char *id, const char *claim, int fill)
{
    char path[128], data[400], body[1024];
    snprintf(path, sizeof(path), "/v1/m/%s", id);
    payload_b64(fill, 48, data);
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"notificationToken\":{\"type\":\"com.google.fcm\",\"tokenData\":\"tok\"}}",
             data);
    const char *h[] = {H(0, "deviceClaim: %s", claim), NULL};
    th_http_resp_t r;
    do_req(proto, "PUT", path, h, body, &r);
    long st = r.status;
    if (st != 200)
        expect_error(&r, st, NULL);
    th_http_resp_free(&r);
    return st;
}

static long delete_mailbox(int proto, const char *id, const char *claim)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", id);
    const char *h[] = {H(0, "deviceClaim: %s", claim), NULL};
    th_http_resp_t r;
    do_req(proto, "DELETE", path, h, NULL, &r);
    long st = r.status;
    if (st != 200)
        expect_error(&r, st, NULL);
    th_http_resp_free(&r);
    return st;
}

static long get_preview(int proto, const char *id, th_http_resp_t *r)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%.64s", id);
    do_req(proto, "GET", path, NULL, NULL, r);
    return r->status;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void stateless_flow(void **state)
{
    for (int proto = 0; proto < P_COUNT; proto++) {
        mbx_t m;
        create_mailbox(proto, &m, 0x41 + proto, NULL);

        th_http_resp_t r;
        assert_int_equal(get_preview(proto, m.id, &r), 200);
        assert_string_equal(th_http_header(&r, "content-type"), "text/html; charset=utf-8");
        assert_string_equal(th_http_header(&r, "cache-control"), "no-store");
        assert_string_equal(th_http_header(&r, "content-security-policy"),
                            "default-src 'none'; img-src https:; style-src 'unsafe-inline'");
        assert_string_equal(th_http_header(&r, "x-content-type-options"), "nosniff");
        assert_string_equal(th_http_header(&r, "referrer-policy"), "no-referrer");
        assert_non_null(strstr(r.body, "<meta property=\"og:title\" content=\"Car Key\">"));
        assert_non_null(strstr(r.body, "<meta property=\"og:description\" content=\"A key\">"));
        assert_non_null(
            strstr(r.body, "<meta property=\"og:image\" content=\"https://img.example/k.png\">"));
        assert_non_null(strstr(r.body, "<meta property=\"og:type\" content=\"website\">"));
        char og_url[200];
        snprintf(og_url, sizeof(og_url),
                 "<meta property=\"og:url\" content=\"https://relay.example/v1/m/%s\">", m.id);
        assert_non_null(strstr(r.body, og_url));
        assert_null(strstr(r.body, "<script"));
        th_http_resp_free(&r);

        char receiver[37];
        new_uuid(receiver);
        int fill = 0;
        assert_int_equal(read_secure(proto, m.id, receiver, &fill), 200);
        assert_int_equal(fill, 0x41 + proto);
        /* the preview has no side effect and needs no claim: still there */
        assert_int_equal(get_preview(proto, m.id, &r), 200);
        th_http_resp_free(&r);
        assert_int_equal(delete_mailbox(proto, m.id, receiver), 200);
        assert_int_equal(get_preview(proto, m.id, &r), 404);
        expect_error(&r, 404, "not_found");
        th_http_resp_free(&r);
        assert_int_equal(read_secure(proto, m.id, receiver, NULL), 404);
        assert_int_equal(delete_mailbox(proto, m.id, receiver), 404);
    }
}

static void stateful_flow(void **state)
{
    for (int proto = 0; proto < P_COUNT; proto++) {
        mbx_t m;
        char receiver[37], third[37];
        new_uuid(receiver);
        new_uuid(third);
        int fill = 0;
        create_mailbox(proto, &m, 0x10, NULL);
        /* the sender reads its own mailbox: allowed, binds nothing */
        assert_int_equal(read_secure(proto, m.id, m.sender, &fill), 200);
        assert_int_equal(fill, 0x10);
        /* receiver binds, then answers */
        assert_int_equal(read_secure(proto, m.id, receiver, &fill), 200);
        assert_int_equal(fill, 0x10);
        assert_int_equal(update_mailbox(proto, m.id, receiver, 0x20), 200);
        /* a third device is neither sender nor receiver */
        assert_int_equal(read_secure(proto, m.id, third, NULL), 401);
        assert_int_equal(update_mailbox(proto, m.id, third, 0x66), 401);
        assert_int_equal(delete_mailbox(proto, m.id, third), 401);
        /* exchange 2: sender reads the receiver's answer, writes back */
        assert_int_equal(read_secure(proto, m.id, m.sender, &fill), 200);
        assert_int_equal(fill, 0x20);
        assert_int_equal(update_mailbox(proto, m.id, m.sender, 0x30), 200);
        /* exchange 3: receiver reads the final payload, then deletes */
        assert_int_equal(read_secure(proto, m.id, receiver, &fill), 200);
        assert_int_equal(fill, 0x30);
        assert_int_equal(delete_mailbox(proto, m.id, receiver), 200);
        assert_int_equal(read_secure(proto, m.id, m.sender, NULL), 404);
    }
}

static void relinquish(void **state)
{
    mbx_t m;
    char r1[37], r2[37], path[128];
    new_uuid(r1);
    new_uuid(r2);
    create_mailbox(P_H2C, &m, 0x11, NULL);
    assert_int_equal(read_secure(P_H2C, m.id, r1, NULL), 200);
    assert_int_equal(read_secure(P_H2C, m.id, r2, NULL), 401);
    snprintf(path, sizeof(path), "/v1/m/%s", m.id);
    const char *h[] = {H(0, "Mailbox-Device-Claim: %s", r1), NULL};
    th_http_resp_t r;
    do_req(P_H1, "PATCH", path, h, NULL, &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);
    /* once the receiver let go, another device may bind */
    assert_int_equal(read_secure(P_H2C, m.id, r2, NULL), 200);
    /* the creator cannot relinquish */
    const char *hs[] = {H(0, "deviceClaim: %s", m.sender), NULL};
    do_req(P_H2C, "PATCH", path, hs, NULL, &r);
    expect_error(&r, 400, "invalid_request");
    th_http_resp_free(&r);
    assert_int_equal(delete_mailbox(P_H2C, m.id, m.sender), 200);
}

static void duplicate_and_existing(void **state)
{
    char id[37], claim[37], corr[37], data[100], body[1024];
    new_uuid(id);
    new_uuid(claim);
    new_uuid(corr);
    payload_b64(7, 30, data);
    snprintf(body, sizeof(body),
             "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES256\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"t\"},"
             "\"mailboxConfiguration\":{\"timeToLive\":600}}",
             id, data);
    const char *h[] = {H(0, "deviceClaim: %s", claim), H(1, "Mailbox-Correlation-ID: %s", corr),
                       NULL};
    th_http_resp_t r1, r2;
    do_req(P_H2C, "POST", "/v1/m", h, body, &r1);
    assert_int_equal(r1.status, 200);
    /* the same request again (a client retry): 201 with the same body */
    do_req(P_H1, "POST", "/v1/m", h, body, &r2);
    if (r2.status != 201)
        fail_msg("retry: %ld %s", r2.status, r2.body);
    assert_string_equal(r1.body, r2.body);
    assert_string_equal(th_http_header(&r2, "mailbox-correlation-id"), corr);
    th_http_resp_free(&r1);
    th_http_resp_free(&r2);
    /* the same id with a new correlation id: the id exists -> 401 (001 §6.1.5) */
    char corr2[37], claim2[37];
    new_uuid(corr2);
    new_uuid(claim2);
    const char *h2[] = {H(0, "deviceClaim: %s", claim2), H(1, "Mailbox-Correlation-ID: %s", corr2),
                        NULL};
    do_req(P_H2C, "POST", "/v1/m", h2, body, &r1);
    expect_error(&r1, 401, "unauthorized");
    assert_string_equal(th_http_header(&r1, "mailbox-correlation-id"), corr2);
    th_http_resp_free(&r1);

    /* a retried Create without mailboxIdentifier (one store, no shards) names the same
     * mailbox: 201 with the same link, not a second mailbox */
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES256\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"t\"},"
             "\"mailboxConfiguration\":{\"timeToLive\":600}}",
             data);
    do_req(P_H2C, "POST", "/v1/m", h2, body, &r1);
    assert_int_equal(r1.status, 200);
    do_req(P_H1, "POST", "/v1/m", h2, body, &r2);
    if (r2.status != 201)
        fail_msg("retry without id: %ld %s", r2.status, r2.body);
    assert_string_equal(r1.body, r2.body);
    th_http_resp_free(&r1);
    th_http_resp_free(&r2);
}

static void later_draft_names(void **state)
{
    char claim[37], req_id[37], data[100], body[1024];
    new_uuid(claim);
    new_uuid(req_id);
    payload_b64(9, 28, data);
    /* no mailboxIdentifier (the relay makes one), imageURL, expiration instead of timeToLive */
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AEAD_AES_128_GCM\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"Later\",\"imageURL\":\"https://i.example/a\"},"
             "\"mailboxConfiguration\":{\"expiration\":\"2099-01-01T00:00:00Z\"}}",
             data);
    const char *h[] = {H(0, "Mailbox-Device-Claim: %s", claim),
                       H(1, "Mailbox-Request-ID: %s", req_id), NULL};
    th_http_resp_t r;
    do_req(P_TLS, "POST", "/v1/m", h, body, &r);
    /* 2099 is beyond the 48 h maximum */
    expect_error(&r, 400, "invalid_field");
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
    new_uuid(req_id);
    h[1] = H(1, "Mailbox-Request-ID: %s", req_id);
    do_req(P_TLS, "POST", "/v1/m", h, body, &r);
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

    assert_int_equal(get_preview(P_TLS, idc, &r), 200);
    assert_non_null(strstr(r.body, "content=\"https://i.example/a\""));
    th_http_resp_free(&r);
    /* the expiration the store keeps matches the one asked for (to the second) */
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", idc);
    const char *hr[] = {H(0, "Mailbox-Device-Claim: %s", claim), NULL};
    do_req(P_TLS, "POST", path, hr, NULL, &r);
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
    assert_int_equal(delete_mailbox(P_H2C, idc, claim), 200);
}

static void hostile_title(void **state)
{
    mbx_t m;
    /* JSON-escaped: "><script>alert(1)</script><img src=x onerror='y'>& */
    create_mailbox(P_H1, &m, 0x22, "\\\"><script>alert(1)</script><img src=x onerror='y'>&");
    th_http_resp_t r;
    assert_int_equal(get_preview(P_H1, m.id, &r), 200);
    assert_null(strstr(r.body, "<script"));
    assert_null(strstr(r.body, "<img src=x"));
    assert_non_null(strstr(r.body, "content=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
                                   "&lt;img src=x onerror=&#39;y&#39;&gt;&amp;\""));
    th_http_resp_free(&r);
    /* ReadSecure gives the title back verbatim (JSON-escaped, not HTML-escaped) */
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", m.id);
    const char *h[] = {H(0, "deviceClaim: %s", m.sender), NULL};
    do_req(P_H1, "POST", path, h, NULL, &r);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "displayInformation"), "title")->valuestring,
        "\"><script>alert(1)</script><img src=x onerror='y'>&");
    cJSON_Delete(j);
    th_http_resp_free(&r);
}

/* Every 400 kind of issue 3 §2, each with the correlation id echoed. */
static void validation_errors(void **state)
{
    char claim[37], id[37], good[100], short_data[100];
    new_uuid(claim);
    new_uuid(id);
    payload_b64(1, 32, good);
    payload_b64(1, 27, short_data);
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
        new_uuid(corr);
        const char *h[] = {H(0, "deviceClaim: %s", claim), H(1, "Mailbox-Correlation-ID: %s", corr),
                           NULL};
        th_http_resp_t r;
        do_req(i % 2 ? P_H1 : P_H2C, "POST", "/v1/m", h, body, &r);
        if (r.status != 400)
            fail_msg("%s: %ld %s", cases[i].what, r.status, r.body);
        expect_error(&r, 400, cases[i].code);
        const char *echo = th_http_header(&r, "mailbox-correlation-id");
        if (!echo || strcmp(echo, corr) != 0)
            fail_msg("%s: correlation id not echoed", cases[i].what);
        th_http_resp_free(&r);
    }
    /* short payload, long title */
    char body[2048];
    const char *hc[] = {H(0, "deviceClaim: %s", claim), NULL};
    th_http_resp_t r;
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"displayInformation\":{\"title\":"
             "\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60}}",
             short_data);
    do_req(P_TLS, "POST", "/v1/m", hc, body, &r);
    expect_error(&r, 400, "invalid_field");
    th_http_resp_free(&r);
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"displayInformation\":{\"title\":"
             "\"%s\"},\"mailboxConfiguration\":{\"timeToLive\":60}}",
             good, title257);
    do_req(P_TLS, "POST", "/v1/m", hc, body, &r);
    expect_error(&r, 400, "invalid_field");
    assert_non_null(strstr(r.body, "title"));
    th_http_resp_free(&r);

    /* claim header: missing, not a UUID */
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"displayInformation\":{\"title\":"
             "\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60}}",
             good);
    char corr[37];
    new_uuid(corr);
    const char *hn[] = {H(1, "Mailbox-Correlation-ID: %s", corr), NULL};
    do_req(P_H2C, "POST", "/v1/m", hn, body, &r);
    expect_error(&r, 400, "missing_header");
    assert_string_equal(th_http_header(&r, "mailbox-correlation-id"), corr);
    th_http_resp_free(&r);
    const char *hb[] = {"deviceClaim: not-a-uuid", NULL};
    do_req(P_H2C, "POST", "/v1/m", hb, body, &r);
    expect_error(&r, 400, "invalid_header");
    th_http_resp_free(&r);
    /* mailbox id in the path not a UUID */
    const char *hv[] = {H(0, "deviceClaim: %s", claim), NULL};
    do_req(P_H2C, "POST", "/v1/m/12345", hv, NULL, &r);
    expect_error(&r, 400, "invalid_mailbox_id");
    th_http_resp_free(&r);
    /* Update: notificationToken is required */
    mbx_t m;
    create_mailbox(P_H2C, &m, 3, NULL);
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", m.id);
    snprintf(body, sizeof(body), "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"}}", good);
    const char *hs[] = {H(0, "deviceClaim: %s", m.sender), NULL};
    do_req(P_H2C, "PUT", path, hs, body, &r);
    expect_error(&r, 400, "missing_field");
    th_http_resp_free(&r);
    /* nothing was changed by the refused update */
    int fill = 0;
    assert_int_equal(read_secure(P_H2C, m.id, m.sender, &fill), 200);
    assert_int_equal(fill, 3);
}

static void status_rules(void **state)
{
    th_http_resp_t r;
    char claim[37], unknown[37], path[128], corr[37];
    new_uuid(claim);
    new_uuid(unknown);
    new_uuid(corr);
    snprintf(path, sizeof(path), "/v1/m/%s", unknown);
    const char *h[] = {H(0, "deviceClaim: %s", claim), H(1, "Mailbox-Correlation-ID: %s", corr),
                       NULL};
    for (int proto = 0; proto < P_COUNT; proto++) {
        /* 404: unknown mailbox, on every method; unknown route */
        static const char *const methods[] = {"GET", "POST", "DELETE", "PATCH"};
        for (size_t i = 0; i < 4; i++) {
            do_req(proto, methods[i], path, h, NULL, &r);
            expect_error(&r, 404, "not_found");
            assert_string_equal(th_http_header(&r, "mailbox-correlation-id"), corr);
            th_http_resp_free(&r);
        }
        do_req(proto, "GET", "/v2/m", h, NULL, &r);
        expect_error(&r, 404, "not_found");
        assert_string_equal(th_http_header(&r, "mailbox-correlation-id"), corr);
        th_http_resp_free(&r);
        do_req(proto, "GET", "/v1/m/a/b", NULL, NULL, &r);
        expect_error(&r, 404, "not_found");
        th_http_resp_free(&r);
        /* 405 with Allow */
        do_req(proto, "GET", "/v1/m", h, NULL, &r);
        expect_error(&r, 405, "method_not_allowed");
        assert_string_equal(th_http_header(&r, "allow"), "POST");
        assert_string_equal(th_http_header(&r, "mailbox-correlation-id"), corr);
        th_http_resp_free(&r);
        do_req(proto, "OPTIONS", path, h, NULL, &r);
        expect_error(&r, 405, "method_not_allowed");
        assert_non_null(strstr(th_http_header(&r, "allow"), "PATCH"));
        th_http_resp_free(&r);
        do_req(proto, "POST", "/healthz", NULL, NULL, &r);
        expect_error(&r, 405, NULL);
        th_http_resp_free(&r);
        /* 415: a body that is not JSON */
        const char *ht[] = {h[0], h[1], "Content-Type: text/plain", NULL};
        do_req(proto, "POST", "/v1/m", ht, "{\"a\":1}", &r);
        expect_error(&r, 415, "unsupported_media_type");
        assert_string_equal(th_http_header(&r, "mailbox-correlation-id"), corr);
        th_http_resp_free(&r);
        const char *hf[] = {h[0], "Content-Type: application/x-www-form-urlencoded", NULL};
        do_req(proto, "PUT", path, hf, "a=1", &r);
        expect_error(&r, 415, "unsupported_media_type");
        th_http_resp_free(&r);
        /* but a JSON type with parameters is fine (here it reaches validation) */
        const char *hj[] = {h[0], "Content-Type: application/json; charset=utf-8", NULL};
        do_req(proto, "POST", "/v1/m", hj, "{}", &r);
        expect_error(&r, 400, "missing_field");
        th_http_resp_free(&r);
        /* 413 over the 64 KiB body limit */
        size_t big = 70 * 1024;
        char *body = malloc(big + 1);
        memset(body, ' ', big);
        body[0] = '{';
        body[big - 1] = '}';
        body[big] = '\0';
        do_req(proto, "POST", "/v1/m", h, body, &r);
        if (r.status != 413)
            fail_msg("over %s: %ld, wanted 413", proto_names[proto], r.status);
        th_http_resp_free(&r);
        free(body);
        /* health */
        do_req(proto, "GET", "/healthz", NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        th_http_resp_free(&r);
        do_req(proto, "GET", "/readyz", NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        th_http_resp_free(&r);
    }
}

static void wrong_claim(void **state)
{
    mbx_t m;
    char receiver[37], other[37];
    new_uuid(receiver);
    new_uuid(other);
    create_mailbox(P_TLS, &m, 5, NULL);
    assert_int_equal(read_secure(P_TLS, m.id, receiver, NULL), 200);
    /* a claim in another case is the same UUID */
    char upper[37];
    for (int i = 0; i < 37; i++)
        upper[i] = (char)toupper((unsigned char)receiver[i]);
    assert_int_equal(read_secure(P_TLS, m.id, upper, NULL), 200);
    assert_int_equal(read_secure(P_TLS, m.id, other, NULL), 401);
    assert_int_equal(update_mailbox(P_TLS, m.id, other, 9), 401);
    assert_int_equal(delete_mailbox(P_TLS, m.id, other), 401);
    /* nothing changed */
    int fill = 0;
    assert_int_equal(read_secure(P_TLS, m.id, receiver, &fill), 200);
    assert_int_equal(fill, 5);
    /* conflicting claim headers */
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", m.id);
    const char *h[] = {H(0, "deviceClaim: %s", receiver), H(1, "Mailbox-Device-Claim: %s", other),
                       NULL};
    th_http_resp_t r;
    do_req(P_TLS, "POST", path, h, NULL, &r);
    expect_error(&r, 400, "invalid_header");
    th_http_resp_free(&r);
    assert_int_equal(delete_mailbox(P_TLS, m.id, m.sender), 200);
}

/* With the default policy (verify-if-present) and no verifier configured, a request carrying
 * an attestation cannot be checked: 503 and nothing stored. Without one it goes through. */
static void attestation_without_verifier(void **state)
{
    char claim[37], id[37], data[100], body[1024];
    new_uuid(claim);
    new_uuid(id);
    payload_b64(4, 32, data);
    snprintf(
        body, sizeof(body),
        "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
        "\"displayInformation\":{\"title\":\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60}}",
        id, data);
    const char *h[] = {H(0, "deviceClaim: %s", claim), "deviceAttestation: e30", NULL};
    th_http_resp_t r;
    do_req(P_H2C, "POST", "/v1/m", h, body, &r);
    expect_error(&r, 503, NULL);
    th_http_resp_free(&r);
    assert_int_equal(get_preview(P_H2C, id, &r), 404);
    th_http_resp_free(&r);
    const char *h2[] = {h[0], NULL};
    do_req(P_H2C, "POST", "/v1/m", h2, body, &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);
}

/* --attestation-policy=required against a verifier address where nothing listens: a missing
 * or malformed attestation is refused (401) before any backend is asked; a well-formed one
 * that cannot be verified is a 503; nothing is stored in any case. */
static void attestation_required(void **state)
{
    const char *extra[] = {"--attestation-policy=required", "--attestation-target=127.0.0.1:1",
                           NULL};
    /* "required" without a verifier is a configuration error: the gateway does not start */
    th_proc_t bad;
    fprintf(stderr, "(expected below: two gateways that refuse to start)\n");
    const char *no_target[] = {"--attestation-policy=required", NULL};
    assert_int_equal(gateway_start(&bad, E.store_port, no_target), -1);
    th_proc_cleanup(&bad);
    const char *bad_policy[] = {"--attestation-policy=maybe", NULL};
    assert_int_equal(gateway_start(&bad, E.store_port, bad_policy), -1);
    th_proc_cleanup(&bad);

    th_proc_t *gw = &T_gw;
    assert_int_equal(gateway_start(gw, E.store_port, extra), 0);
    int port = th_proc_port(gw, "http_port");
    CURL *c = T_curl = curl_easy_init();
    char claim[37], id[37], data[100], body[1024];
    new_uuid(claim);
    new_uuid(id);
    payload_b64(4, 32, data);
    snprintf(
        body, sizeof(body),
        "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
        "\"displayInformation\":{\"title\":\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60}}",
        id, data);
    th_http_resp_t r;
    const char *h0[] = {H(0, "deviceClaim: %s", claim), NULL};
    do_req_on(c, P_H2C, port, "POST", "/v1/m", h0, body, strlen(body), &r);
    expect_error(&r, 401, "attestation_required");
    th_http_resp_free(&r);
    const char *h1[] = {h0[0], "Mailbox-Device-Attestation: !!notbase64!!", NULL};
    do_req_on(c, P_H2C, port, "POST", "/v1/m", h1, body, strlen(body), &r);
    expect_error(&r, 401, "invalid_attestation");
    th_http_resp_free(&r);
    /* {"attestationObject":"oP8A","clientDataJSON":"e30"} */
    const char *h2[] = {h0[0],
                        "deviceAttestation: "
                        "eyJhdHRlc3RhdGlvbk9iamVjdCI6Im9QOEEiLCJjbGllbnREYXRhSlNPTiI6ImUzMCJ9",
                        NULL};
    do_req_on(c, P_H2C, port, "POST", "/v1/m", h2, body, strlen(body), &r);
    expect_error(&r, 503, "unavailable");
    th_http_resp_free(&r);
    /* reads need no attestation */
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", id);
    do_req_on(c, P_H2C, port, "GET", path, NULL, NULL, 0, &r);
    expect_error(&r, 404, "not_found");
    th_http_resp_free(&r);
    assert_int_equal(th_proc_stop_clean(gw, "gateway", 15000), 0);
}

/* SIGSTOP is delivered asynchronously: wait until every thread of |pid| is stopped. */
static void wait_stopped(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
    for (int tries = 0; tries < 500; tries++) {
        int all = 1;
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char path[400], buf[512];
            snprintf(path, sizeof(path), "%s/%s/stat", dir, e->d_name);
            FILE *f = fopen(path, "r");
            if (!f)
                continue;
            size_t n = fread(buf, 1, sizeof(buf) - 1, f);
            fclose(f);
            buf[n] = '\0';
            const char *rp = strrchr(buf, ')'); /* the state follows "(comm) " */
            if (rp && rp[1] == ' ' && rp[2] != 'T' && rp[2] != 't')
                all = 0;
        }
        if (d)
            closedir(d);
        if (all)
            return;
        usleep(2000);
    }
    fail_msg("process %d did not stop", (int)pid);
}

/* A killed store gives 503 within the deadline and /readyz 503; after a restart (same port,
 * same data) the gateway recovers by itself and the data written before is still there. */
static void store_killed_and_back(void **state)
{
    char data_dir[700];
    snprintf(data_dir, sizeof(data_dir), "%s/kill", E.dir);
    th_proc_t *store = &T_store, *gw = &T_gw;
    assert_int_equal(store_start(store, data_dir, 0), 0);
    int sport = th_proc_port(store, "grpc_port");
    const char *extra[] = {"--backend-timeout-ms=1500", NULL};
    assert_int_equal(gateway_start(gw, sport, extra), 0);
    int port = th_proc_port(gw, "http_port");
    CURL *c = T_curl = curl_easy_init();
    th_http_resp_t r;

    do_req_on(c, P_H2C, port, "GET", "/readyz", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);
    /* create one mailbox before the crash */
    char claim[37], id[37], data[100], body[1024];
    new_uuid(claim);
    new_uuid(id);
    payload_b64(0x5a, 32, data);
    snprintf(
        body, sizeof(body),
        "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
        "\"displayInformation\":{\"title\":\"t\"},\"mailboxConfiguration\":{\"timeToLive\":600}}",
        id, data);
    const char *h[] = {H(0, "deviceClaim: %s", claim), NULL};
    do_req_on(c, P_H2C, port, "POST", "/v1/m", h, body, strlen(body), &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);

    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", id);

    /* a hung store (SIGSTOP): 504 at the deadline, not later; then it thaws and serves */
    kill(store->pid, SIGSTOP);
    wait_stopped(store->pid);
    long long t0 = th_now_ms();
    do_req_on(c, P_H2C, port, "GET", path, NULL, NULL, 0, &r);
    long long hung = th_now_ms() - t0;
    kill(store->pid, SIGCONT);
    expect_error(&r, 504, "timeout");
    th_http_resp_free(&r);
    if (hung < 1400 || hung > 1500 + 2000)
        fail_msg("504 after %lld ms (deadline 1500)", hung);
    do_req_on(c, P_H2C, port, "GET", path, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);

    th_proc_kill9(store);
    th_proc_cleanup(store);
    t0 = th_now_ms();
    do_req_on(c, P_H2C, port, "GET", path, NULL, NULL, 0, &r);
    long long took = th_now_ms() - t0;
    expect_error(&r, 503, "unavailable");
    th_http_resp_free(&r);
    if (took > 1500 + 1000)
        fail_msg("503 took %lld ms (deadline 1500)", took);
    do_req_on(c, P_H1, port, "POST", path, h, NULL, 0, &r);
    if (r.status != 503 && r.status != 504)
        fail_msg("read with store down: %ld", r.status);
    th_http_resp_free(&r);
    /* readiness flips within its cache time */
    long long end = th_now_ms() + 5000;
    long st = 0;
    while (th_now_ms() < end) {
        do_req_on(c, P_H2C, port, "GET", "/readyz", NULL, NULL, 0, &r);
        st = r.status;
        th_http_resp_free(&r);
        if (st == 503)
            break;
        usleep(100000);
    }
    assert_int_equal(st, 503);
    /* the outage is counted on the admin listener */
    char url[128];
    snprintf(url, sizeof(url), "/metrics");
    do_req_on(c, P_H1, th_proc_port(gw, "admin_port"), "GET", url, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(
        strstr(r.body, "gateway_backend_errors_total{backend=\"store\",code=\"UNAVAILABLE\"}"));
    assert_non_null(strstr(
        r.body, "gateway_backend_errors_total{backend=\"store\",code=\"DEADLINE_EXCEEDED\"}"));
    th_http_resp_free(&r);
    /* liveness stays */
    do_req_on(c, P_H2C, port, "GET", "/healthz", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);

    /* back on the same port with the same data */
    assert_int_equal(store_start(store, data_dir, sport), 0);
    long long restarted = th_now_ms();
    end = th_now_ms() + 20000;
    long long back = 0;
    while (th_now_ms() < end) {
        do_req_on(c, P_H2C, port, "GET", "/readyz", NULL, NULL, 0, &r);
        st = r.status;
        th_http_resp_free(&r);
        if (st == 200) {
            back = th_now_ms();
            break;
        }
        usleep(100000);
    }
    if (st != 200)
        fail_msg("gateway not ready 20 s after the store came back");
    fprintf(stderr, "store down: 503 in %lld ms; ready again %lld ms after the restart\n", took,
            back - restarted);
    do_req_on(c, P_H2C, port, "POST", path, h, NULL, 0, &r);
    if (r.status != 200)
        fail_msg("read after restart: %ld %s", r.status, r.body);
    th_http_resp_free(&r);
    assert_int_equal(th_proc_stop_clean(gw, "gateway", 15000), 0);
    assert_int_equal(th_proc_stop_clean(store, "mailbox-store", 15000), 0);
}

static void create_with_token(CURL *c, int port, const char *token_json, int want_push)
{
    char claim[37], data[100], body[1024];
    new_uuid(claim);
    payload_b64(6, 32, data);
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"t\"},%s%s"
             "\"mailboxConfiguration\":{\"timeToLive\":60}}",
             data, token_json ? token_json : "", token_json ? "," : "");
    const char *h[] = {H(0, "deviceClaim: %s", claim), NULL};
    th_http_resp_t r;
    do_req_on(c, P_H1, port, "POST", "/v1/m", h, body, strlen(body), &r);
    if (r.status != 200)
        fail_msg("create: %ld %s", r.status, r.body);
    cJSON *j = cJSON_Parse(r.body);
    cJSON *b = cJSON_GetObjectItem(j, "isPushNotificationSupported");
    assert_true(cJSON_IsBool(b));
    if (cJSON_IsTrue(b) != want_push)
        fail_msg("isPushNotificationSupported %d for %s", cJSON_IsTrue(b),
                 token_json ? token_json : "(no token)");
    cJSON_Delete(j);
    th_http_resp_free(&r);
}

/* isPushNotificationSupported follows what the real push-dispatch reports: here only webhooks
 * are configured (a secret, no APNs/FCM credentials). */
static void push_supported(void **state)
{
    char bin[512], secret[700], data[700], sarg[800], darg[800];
    th_bin("push-dispatch", bin, sizeof(bin));
    if (access(bin, X_OK) != 0)
        skip();
    snprintf(secret, sizeof(secret), "%s/webhook.key", E.dir);
    snprintf(data, sizeof(data), "%s/push", E.dir);
    FILE *f = fopen(secret, "w");
    assert_non_null(f);
    fputs("0123456789abcdef0123456789abcdef\n", f);
    fclose(f);
    snprintf(sarg, sizeof(sarg), "--webhook-secret-file=%s", secret);
    snprintf(darg, sizeof(darg), "--data-dir=%s", data);
    char *argv[] = {bin,
                    "--listen=127.0.0.1:0",
                    "--admin-listen=127.0.0.1:0",
                    "--log-level=warn",
                    "--workers=1",
                    sarg,
                    darg,
                    NULL};
    assert_int_equal(th_proc_start(&T_push, argv, 20000), 0);
    char target[64];
    snprintf(target, sizeof(target), "--push-target=127.0.0.1:%d",
             th_proc_port(&T_push, "grpc_port"));
    const char *extra[] = {target, NULL};
    assert_int_equal(gateway_start(&T_gw, E.store_port, extra), 0);
    int port = th_proc_port(&T_gw, "http_port");
    CURL *c = T_curl = curl_easy_init();
    create_with_token(c, port,
                      "\"notificationToken\":{\"type\":\"webhook\","
                      "\"tokenData\":\"https://hooks.example/x\"}",
                      1);
    create_with_token(c, port,
                      "\"notificationToken\":{\"type\":\"com.apple.apns\","
                      "\"tokenData\":\"abcdef\"}",
                      0);
    create_with_token(c, port,
                      "\"notificationToken\":{\"type\":\"com.google.fcm\","
                      "\"tokenData\":\"abcdef\"}",
                      0);
    create_with_token(c, port, NULL, 1); /* no token: some provider works */
    assert_int_equal(th_proc_stop_clean(&T_gw, "gateway", 15000), 0);
    assert_int_equal(th_proc_stop_clean(&T_push, "push-dispatch", 15000), 0);
}

/* Issue 6 §2: three store shards behind one gateway (--store-shards). The flows work, the
 * mailboxes spread over every shard exactly as cm_shard places them, and a killed shard makes
 * only its own mailboxes unavailable. */
/* Three store shards named by --store-shards on the gateway ;
 * writes the shard list into |list|. */
static void shards_start(char list[256])
{
    char dirs[3][700];
    list[0] = '\0';
    for (int i = 0; i < 3; i++) {
        snprintf(dirs[i], sizeof(dirs[i]), "%s/shard%d", E.dir, i);
        assert_int_equal(store_start(&T_shard[i], dirs[i], 0), 0);
        size_t n = strlen(list);
        snprintf(list + n, 256 - n, "%s127.0.0.1:%d", i ? "," : "",
                 th_proc_port(&T_shard[i], "grpc_port"));
    }
    char arg[300];
    snprintf(arg, sizeof(arg), "--store-shards=%s", list);
    const char *extra[] = {arg, NULL};
    assert_int_equal(gateway_start(&T_gw, 1 /* unused with shards */, extra), 0);
    E.http_port = th_proc_port(&T_gw, "http_port");
    E.https_port = th_proc_port(&T_gw, "https_port");
}

static void sharded_store(void **state)
{
    char list[256];
    shards_start(list);

    /* the shared flows, pointed at this gateway */
    stateless_flow(state);
    stateful_flow(state);

    cm_shards_t *sh = NULL;
    assert_int_equal(cm_shards_parse(list, &sh), 0);
    enum { N = 24 };
    mbx_t m[N];
    size_t owner[N], per_shard[3] = {0};
    for (int i = 0; i < N; i++) {
        create_mailbox(P_H2C, &m[i], i, NULL);
        owner[i] = cm_shards_pick(sh, m[i].id, strlen(m[i].id));
        per_shard[owner[i]]++;
    }
    for (int k = 0; k < 3; k++)
        if (per_shard[k] == 0)
            fail_msg("shard %d got none of %d mailboxes", k, N);

    /* a retried Create without mailboxIdentifier reaches the same shard: 201, same link */
    for (int k = 0; k < 4; k++) {
        char claim[37], corr[37], data[100], body[1024];
        new_uuid(claim);
        new_uuid(corr);
        payload_b64(k, 32, data);
        snprintf(body, sizeof(body),
                 "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"displayInformation\":"
                 "{\"title\":\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60}}",
                 data);
        const char *h[] = {H(0, "deviceClaim: %s", claim), H(1, "Mailbox-Correlation-ID: %s", corr),
                           NULL};
        th_http_resp_t r1, r2;
        do_req(P_H2C, "POST", "/v1/m", h, body, &r1);
        do_req(P_H1, "POST", "/v1/m", h, body, &r2);
        assert_int_equal(r1.status, 200);
        assert_int_equal(r2.status, 201);
        assert_string_equal(r1.body, r2.body);
        th_http_resp_free(&r1);
        th_http_resp_free(&r2);
    }

    th_proc_kill9(&T_shard[1]);
    th_proc_cleanup(&T_shard[1]);
    for (int i = 0; i < N; i++) {
        th_http_resp_t r;
        get_preview(P_H2C, m[i].id, &r);
        long want = owner[i] == 1 ? 503 : 200;
        if (r.status != want)
            fail_msg("mailbox on shard %zu: %ld, wanted %ld", owner[i], r.status, want);
        th_http_resp_free(&r);
        int fill = -1;
        if (owner[i] != 1) {
            assert_int_equal(read_secure(P_H1, m[i].id, m[i].sender, &fill), 200);
            assert_int_equal(fill, i);
        }
    }
    /* the gateway stays ready while other shards serve */
    th_http_resp_t r;
    do_req(P_H2C, "GET", "/readyz", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);
    cm_shards_free(sh);
    assert_int_equal(th_proc_stop_clean(&T_gw, "gateway", 15000), 0);
    for (int i = 0; i < 3; i++)
        if (i != 1)
            assert_int_equal(th_proc_stop_clean(&T_shard[i], "mailbox-store", 15000), 0);
}

/* ---- concurrent reads on one HTTP/2 connection (gateway store-read batches) -------------- */

/* A mailbox made for the concurrent reads: a title and payload of its own, and a bound
 * receiver or none. */
typedef struct {
    mbx_t m;
    char title[64];
    int fill;
    char receiver[37]; /* "" when no receiver is bound */
} box_t;

typedef enum {
    K_PREVIEW, /* GET: the preview page of box |box| */
    K_READ,    /* POST with the sender's or the bound receiver's claim: 200 and the payload */
    K_DENIED,  /* POST with a third device's claim on a bound mailbox: 401 */
    K_UNKNOWN, /* GET or POST of an id nobody created: 404 */
} rkind_t;

/* One request of a concurrent run and what came back. */
typedef struct {
    rkind_t kind;
    int box; /* index into the boxes, -1 for K_UNKNOWN */
    const char *method;
    char id[37];
    char claim[37]; /* "" for a GET */
    char corr[37];
    char *body;        /* owned */
    char corr_got[64]; /* the Mailbox-Correlation-ID answered */
    int done;          /* an answer came */
    long status;
} creq_t;

enum { MAX_CREQ = 128 };
/* The requests of the running test: freed by the test or, after a failed assertion, by
 * test_teardown. */
static creq_t T_q[MAX_CREQ];
static size_t T_nq;

static void creq_free_all(void)
{
    for (size_t i = 0; i < T_nq; i++) {
        free(T_q[i].body);
        T_q[i].body = NULL;
    }
    T_nq = 0;
}

/* Sends T_q[0..T_nq) at once on ONE h2c connection to |port|, every HEADERS frame in one
 * write (h2_burst.py, Debian's python3-h2), so the gateway reads them in one loop iteration.
 * libcurl 7.88 cannot be used here: its multiplexed h2c transfers fail with "Error in the
 * HTTP2 framing layer" whatever the server (curl issue #10634). Fills each answer. */
static void run_concurrent(int port)
{
    char plan[700], cmd[2000];
    snprintf(plan, sizeof(plan), "%s/burst.txt", E.dir);
    FILE *f = fopen(plan, "w");
    assert_non_null(f);
    for (size_t i = 0; i < T_nq; i++)
        fprintf(f, "%s /v1/m/%s %s %s\n", T_q[i].method, T_q[i].id, T_q[i].corr,
                T_q[i].claim[0] ? T_q[i].claim : "-");
    fclose(f);
    const char *src = getenv("TIGRESS_SRC_DIR");
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/tests/gateway-api/h2_burst.py %d < %s",
             src ? src : ".", port, plan);
    FILE *pp = popen(cmd, "r");
    assert_non_null(pp);
    char *line = NULL;
    size_t cap = 0, n = 0;
    while (getline(&line, &cap, pp) > 0 && n < T_nq) {
        creq_t *q = &T_q[n++];
        cJSON *j = cJSON_Parse(line);
        if (j) {
            cJSON *st = cJSON_GetObjectItem(j, "status"), *c = cJSON_GetObjectItem(j, "corr"),
                  *bd = cJSON_GetObjectItem(j, "body");
            q->status = cJSON_IsNumber(st) ? (long)st->valuedouble : 0;
            if (cJSON_IsString(c))
                snprintf(q->corr_got, sizeof(q->corr_got), "%s", c->valuestring);
            q->body = strdup(cJSON_IsString(bd) ? bd->valuestring : "");
            q->done = 1;
            cJSON_Delete(j);
        }
    }
    free(line);
    int rc = pclose(pp);
    if (rc != 0 || n != T_nq)
        fail_msg("h2_burst.py: exit status %d, %zu of %zu answers", rc, n, T_nq);
}

/* Creates |n| mailboxes with titles and payloads of their own; every |bind_every|-th one (0:
 * none) gets a bound receiver (its first read). Via the gateway at E.http_port. */
static void boxes_create(box_t *b, size_t n, size_t bind_every)
{
    for (size_t i = 0; i < n; i++) {
        b[i].fill = (int)(0x30 + i);
        snprintf(b[i].title, sizeof(b[i].title), "Batch box %02zu", i);
        create_mailbox(P_H2C, &b[i].m, b[i].fill, b[i].title);
        b[i].receiver[0] = '\0';
        if (bind_every && i % bind_every == 0) {
            int fill = -1;
            new_uuid(b[i].receiver);
            assert_int_equal(read_secure(P_H2C, b[i].m.id, b[i].receiver, &fill), 200);
            assert_int_equal(fill, b[i].fill);
        }
    }
}

static creq_t *plan_add(rkind_t kind, int box, const char *method, const char *id,
                        const char *claim)
{
    assert_true(T_nq < MAX_CREQ);
    creq_t *q = &T_q[T_nq++];
    memset(q, 0, sizeof(*q));
    q->kind = kind;
    q->box = box;
    q->method = method;
    snprintf(q->id, sizeof(q->id), "%s", id);
    snprintf(q->claim, sizeof(q->claim), "%s", claim ? claim : "");
    new_uuid(q->corr);
    return q;
}

/* Plans the reads of |b[0..n)| into T_q, interleaved: per mailbox a preview and a read by
 * the sender; on a bound one also a read by the receiver and one by a third device (401);
 * after every few mailboxes a GET or POST of an unknown id (404). */
static void plan_reads(const box_t *b, size_t n)
{
    creq_free_all();
    for (size_t i = 0; i < n; i++) {
        plan_add(K_PREVIEW, (int)i, "GET", b[i].m.id, NULL);
        plan_add(K_READ, (int)i, "POST", b[i].m.id, b[i].m.sender);
        if (b[i].receiver[0]) {
            char third[37];
            new_uuid(third);
            plan_add(K_DENIED, (int)i, "POST", b[i].m.id, third);
            plan_add(K_READ, (int)i, "POST", b[i].m.id, b[i].receiver);
        }
        if (i % 3 == 1) {
            char unknown[37], claim[37];
            new_uuid(unknown);
            new_uuid(claim);
            if (i % 2)
                plan_add(K_UNKNOWN, -1, "GET", unknown, NULL);
            else
                plan_add(K_UNKNOWN, -1, "POST", unknown, claim);
        }
    }
}

/* Asserts that the JSON error body of |q| has |code|. */
static void creq_expect_error(const creq_t *q, long status, const char *code)
{
    if (q->status != status)
        fail_msg("%s %s (claim %s): %ld, wanted %ld; body %s", q->method, q->id, q->claim,
                 q->status, status, q->body ? q->body : "");
    cJSON *j = cJSON_Parse(q->body ? q->body : "");
    if (!j)
        fail_msg("%s %s: %ld answer is not JSON: %s", q->method, q->id, status, q->body);
    cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code");
    if (!cJSON_IsString(c) || strcmp(c->valuestring, code) != 0)
        fail_msg("%s %s: error %s, wanted code %s", q->method, q->id, q->body, code);
    cJSON_Delete(j);
}

/* Asserts every answer of T_q: transport, its own correlation id, the status its kind calls
 * for, and for a 200 the title/payload of ITS mailbox (a batch that mixed up answers would
 * hand one request another mailbox's data). */
static void check_answers(const box_t *b, size_t nb)
{
    for (size_t i = 0; i < T_nq; i++) {
        const creq_t *q = &T_q[i];
        if (!q->done)
            fail_msg("request %zu %s %s: no answer", i, q->method, q->id);
        if (strcmp(q->corr_got, q->corr) != 0)
            fail_msg("request %zu %s %s: correlation id %s, sent %s", i, q->method, q->id,
                     q->corr_got, q->corr);
        const box_t *x = q->box >= 0 && (size_t)q->box < nb ? &b[q->box] : NULL;
        switch (q->kind) {
        case K_PREVIEW: {
            char want[200];
            if (q->status != 200)
                fail_msg("preview %zu of %s: %ld %s", i, q->id, q->status, q->body);
            snprintf(want, sizeof(want), "<meta property=\"og:title\" content=\"%s\">", x->title);
            if (!strstr(q->body, want))
                fail_msg("preview %zu of %s (%s): wrong page %s", i, q->id, x->title, q->body);
            snprintf(want, sizeof(want),
                     "<meta property=\"og:url\" content=\"https://relay.example/v1/m/%s\">",
                     x->m.id);
            if (!strstr(q->body, want))
                fail_msg("preview %zu of %s: another mailbox's link %s", i, q->id, q->body);
            break;
        }
        case K_READ: {
            if (q->status != 200)
                fail_msg("read %zu of %s (claim %s): %ld %s", i, q->id, q->claim, q->status,
                         q->body);
            cJSON *j = cJSON_Parse(q->body);
            assert_non_null(j);
            cJSON *t = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "displayInformation"), "title");
            if (!cJSON_IsString(t) || strcmp(t->valuestring, x->title) != 0)
                fail_msg("read %zu of %s: title %s, wanted %s", i, q->id,
                         cJSON_IsString(t) ? t->valuestring : "(none)", x->title);
            cJSON *d = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "payload"), "data");
            assert_true(cJSON_IsString(d));
            uint8_t raw[256];
            size_t n = 0;
            assert_int_equal(cm_b64_decode(CM_B64_STD, d->valuestring, strlen(d->valuestring), raw,
                                           sizeof(raw), &n),
                             0);
            if (n != 40)
                fail_msg("read %zu of %s: %zu payload bytes, wanted 40", i, q->id, n);
            for (size_t k = 0; k < n; k++)
                if (raw[k] != x->fill)
                    fail_msg("read %zu of %s: payload byte %zu is 0x%02x, wanted 0x%02x", i, q->id,
                             k, raw[k], x->fill);
            assert_true(cJSON_IsString(cJSON_GetObjectItem(j, "expiration")));
            cJSON_Delete(j);
            break;
        }
        case K_DENIED:
            creq_expect_error(q, 401, "unauthorized");
            break;
        case K_UNKNOWN:
            creq_expect_error(q, 404, "not_found");
            break;
        }
    }
}

/* Sum of the samples of counter |name| whose labels contain |label| (NULL: all). */
static double metric_sum(const char *text, const char *name, const char *label)
{
    double sum = 0;
    size_t nl = strlen(name);
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        if (ll > nl && strncmp(p, name, nl) == 0 && p[nl] == '{') {
            const char *close = memchr(p, '}', ll);
            if (close) {
                char labels[256];
                snprintf(labels, sizeof(labels), "%.*s", (int)(close - p - nl), p + nl);
                if (!label || strstr(labels, label))
                    sum += strtod(close + 1, NULL);
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    return sum;
}

/* What a store counted: Batch calls, and ReadDisplay / ReadSecure (alone or in a batch). */
typedef struct {
    double batch, read_display, read_secure;
    int has_batch; /* a method="batch" sample is exported at all */
} store_counts_t;

static void store_counts(const th_proc_t *store, store_counts_t *out)
{
    if (!T_curl)
        T_curl = curl_easy_init();
    th_http_resp_t r;
    do_req_on(T_curl, P_H1, th_proc_port(store, "admin_port"), "GET", "/metrics", NULL, NULL, 0,
              &r);
    assert_int_equal(r.status, 200);
    static const char *const name = "tigress_mailbox_store_requests_total";
    out->batch = metric_sum(r.body, name, "method=\"batch\"");
    out->read_display = metric_sum(r.body, name, "method=\"read_display\"");
    out->read_secure = metric_sum(r.body, name, "method=\"read_secure\"");
    out->has_batch =
        strstr(r.body, "tigress_mailbox_store_requests_total{method=\"batch\"") != NULL;
    th_http_resp_free(&r);
}

static void planned_counts(size_t *gets, size_t *posts)
{
    *gets = *posts = 0;
    for (size_t i = 0; i < T_nq; i++)
        (*(strcmp(T_q[i].method, "GET") == 0 ? gets : posts))++;
}

/* Reads started in one loop iteration travel as one MailboxStore/Batch call, yet every one
 * keeps its own status and answer: previews, reads by the sender and by the receiver, a third
 * device refused, unknown ids, all at once on one HTTP/2 connection. */
static void batched_reads(void **state)
{
    enum { NB = 30 };
    box_t b[NB];
    boxes_create(b, NB, 3);
    plan_reads(b, NB);
    size_t gets, posts;
    planned_counts(&gets, &posts);
    store_counts_t before, after;
    store_counts(&E.store, &before);
    run_concurrent(E.http_port);
    check_answers(b, NB);
    store_counts(&E.store, &after);
    double batches = after.batch - before.batch;
    double rd = after.read_display - before.read_display;
    double rs = after.read_secure - before.read_secure;
    fprintf(stderr,
            "%zu concurrent reads (%zu GET, %zu POST) on one connection: %.0f store "
            "batch calls\n",
            T_nq, gets, posts, batches);
    if (rd != (double)gets || rs != (double)posts)
        fail_msg("store counted %.0f ReadDisplay and %.0f ReadSecure, wanted %zu and %zu", rd, rs,
                 gets, posts);
    if (!(batches > 0) || !(batches < (double)T_nq))
        fail_msg("%.0f batch calls for %zu reads: the reads were not coalesced", batches, T_nq);
    creq_free_all();
}

/* The same concurrent reads with the mailboxes spread over three shards: the reads of one
 * iteration form one batch per shard, each shard answers exactly its own reads, and no
 * answer lands on the wrong request. */
static void batched_reads_sharded(void **state)
{
    char list[256];
    shards_start(list);
    enum { NB = 30 };
    box_t b[NB];
    boxes_create(b, NB, 4);
    plan_reads(b, NB);
    cm_shards_t *sh = NULL;
    assert_int_equal(cm_shards_parse(list, &sh), 0);
    size_t want_rd[3] = {0}, want_rs[3] = {0};
    for (size_t i = 0; i < T_nq; i++) {
        size_t k = cm_shards_pick(sh, T_q[i].id, strlen(T_q[i].id));
        (*(strcmp(T_q[i].method, "GET") == 0 ? &want_rd[k] : &want_rs[k]))++;
    }
    cm_shards_free(sh);
    store_counts_t before[3], after[3];
    for (int k = 0; k < 3; k++)
        store_counts(&T_shard[k], &before[k]);
    run_concurrent(E.http_port);
    check_answers(b, NB);
    double batches = 0;
    for (int k = 0; k < 3; k++) {
        store_counts(&T_shard[k], &after[k]);
        double rd = after[k].read_display - before[k].read_display;
        double rs = after[k].read_secure - before[k].read_secure;
        double bk = after[k].batch - before[k].batch;
        if (rd != (double)want_rd[k] || rs != (double)want_rs[k])
            fail_msg("shard %d counted %.0f ReadDisplay and %.0f ReadSecure, wanted %zu and %zu", k,
                     rd, rs, want_rd[k], want_rs[k]);
        if (want_rd[k] + want_rs[k] > 0 && !(bk > 0))
            fail_msg("shard %d served %zu reads without a batch call", k, want_rd[k] + want_rs[k]);
        batches += bk;
    }
    fprintf(stderr, "%zu concurrent reads over 3 shards: %.0f store batch calls\n", T_nq, batches);
    if (!(batches < (double)T_nq))
        fail_msg("%.0f batch calls for %zu reads: the reads were not coalesced", batches, T_nq);
    creq_free_all();
    assert_int_equal(th_proc_stop_clean(&T_gw, "gateway", 15000), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(th_proc_stop_clean(&T_shard[i], "mailbox-store", 15000), 0);
}

/* --store-batch=0 (for a store older than Batch): one call per read, the same answers, and
 * the store never sees a Batch call. */
static void store_batch_off(void **state)
{
    char data_dir[700];
    snprintf(data_dir, sizeof(data_dir), "%s/nobatch", E.dir);
    assert_int_equal(store_start(&T_store, data_dir, 0), 0);
    const char *extra[] = {"--store-batch=0", NULL};
    assert_int_equal(gateway_start(&T_gw, th_proc_port(&T_store, "grpc_port"), extra), 0);
    E.http_port = th_proc_port(&T_gw, "http_port");
    E.https_port = th_proc_port(&T_gw, "https_port");
    stateless_flow(state);

    enum { NB = 12 };
    box_t b[NB];
    boxes_create(b, NB, 2);
    plan_reads(b, NB);
    size_t gets, posts;
    planned_counts(&gets, &posts);
    store_counts_t before, after;
    store_counts(&T_store, &before);
    run_concurrent(E.http_port);
    check_answers(b, NB);
    store_counts(&T_store, &after);
    if (after.read_display - before.read_display != (double)gets ||
        after.read_secure - before.read_secure != (double)posts)
        fail_msg("store counted %.0f ReadDisplay and %.0f ReadSecure, wanted %zu and %zu",
                 after.read_display - before.read_display, after.read_secure - before.read_secure,
                 gets, posts);
    if (after.has_batch || after.batch != 0)
        fail_msg("--store-batch=0, yet the store counted %.0f batch calls", after.batch);
    creq_free_all();
    assert_int_equal(th_proc_stop_clean(&T_gw, "gateway", 15000), 0);
    assert_int_equal(th_proc_stop_clean(&T_store, "mailbox-store", 15000), 0);
}

/* ---- a real WebAuthn "packed" self attestation, made here -------------------------------- */

static size_t put_cbor_bytes_hdr(uint8_t *o, uint8_t major, size_t n)
{
    if (n < 24) {
        o[0] = (uint8_t)(major << 5 | n);
        return 1;
    }
    if (n < 256) {
        o[0] = (uint8_t)(major << 5 | 24);
        o[1] = (uint8_t)n;
        return 2;
    }
    o[0] = (uint8_t)(major << 5 | 25);
    o[1] = (uint8_t)(n >> 8);
    o[2] = (uint8_t)n;
    return 3;
}

/* Builds the deviceAttestation header value for |payload| (the decoded payload.data bytes):
 * a fresh P-256 credential, authData for RP ID "relay.example" (UP, AT), clientDataJSON with
 * challenge = base64url(SHA-256(payload)) and origin https://relay.example, and a packed self
 * attestation signature over authData || SHA-256(clientDataJSON). Returns a malloc'd string. */
static char *make_attestation(const uint8_t *payload, size_t plen)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    uint8_t x[32], y[32];
    BIGNUM *bx = NULL, *by = NULL;
    assert_true(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &bx));
    assert_true(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &by));
    assert_int_equal(BN_bn2binpad(bx, x, 32), 32);
    assert_int_equal(BN_bn2binpad(by, y, 32), 32);
    BN_free(bx);
    BN_free(by);

    uint8_t auth[256];
    size_t al = 0;
    SHA256((const uint8_t *)"relay.example", 13, auth);
    al = 32;
    auth[al++] = 0x41;            /* UP | AT */
    memset(auth + al, 0, 4 + 16); /* signCount, AAGUID */
    al += 20;
    auth[al++] = 0;
    auth[al++] = 16; /* credentialId length */
    for (int i = 0; i < 16; i++)
        auth[al++] = (uint8_t)(0xc0 + i);
    static const uint8_t cose_head[] = {0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20};
    memcpy(auth + al, cose_head, sizeof(cose_head)); /* {1:2, 3:-7, -1:1, -2:x, -3:y} */
    al += sizeof(cose_head);
    memcpy(auth + al, x, 32);
    al += 32;
    auth[al++] = 0x22;
    auth[al++] = 0x58;
    auth[al++] = 0x20;
    memcpy(auth + al, y, 32);
    al += 32;

    uint8_t chal[32];
    SHA256(payload, plen, chal);
    char chal64[64], cdj[256];
    cm_b64_encode(CM_B64_URL, chal, 32, chal64);
    int cl = snprintf(cdj, sizeof(cdj),
                      "{\"type\":\"webauthn.create\",\"challenge\":\"%s\","
                      "\"origin\":\"https://relay.example\",\"crossOrigin\":false}",
                      chal64);

    uint8_t tbs[512], sig[128];
    memcpy(tbs, auth, al);
    SHA256((const uint8_t *)cdj, (size_t)cl, tbs + al);
    size_t sl = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestSign(md, sig, &sl, tbs, al + 32), 1);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key);

    /* {"fmt":"packed","attStmt":{"alg":-7,"sig":h'..'},"authData":h'..'} */
    uint8_t ao[1024];
    size_t n = 0;
    static const uint8_t head[] = {0xa3, 0x63, 'f',  'm', 't', 0x66, 'p',  'a', 'c', 'k',
                                   'e',  'd',  0x67, 'a', 't', 't',  'S',  't', 'm', 't',
                                   0xa2, 0x63, 'a',  'l', 'g', 0x26, 0x63, 's', 'i', 'g'};
    memcpy(ao, head, sizeof(head));
    n = sizeof(head);
    n += put_cbor_bytes_hdr(ao + n, 2, sl);
    memcpy(ao + n, sig, sl);
    n += sl;
    static const uint8_t ad[] = {0x68, 'a', 'u', 't', 'h', 'D', 'a', 't', 'a'};
    memcpy(ao + n, ad, sizeof(ad));
    n += sizeof(ad);
    n += put_cbor_bytes_hdr(ao + n, 2, al);
    memcpy(ao + n, auth, al);
    n += al;

    char ao64[2048], cdj64[512], json[3000];
    cm_b64_encode(CM_B64_URL, ao, n, ao64);
    cm_b64_encode(CM_B64_URL, (const uint8_t *)cdj, (size_t)cl, cdj64);
    int jl = snprintf(json, sizeof(json),
                      "{\"attestationObject\":\"%s\",\"clientDataJSON\":\"%s\"}", ao64, cdj64);
    char *out = malloc(cm_b64_encoded_size((size_t)jl));
    cm_b64_encode(CM_B64_URL, (const uint8_t *)json, (size_t)jl, out);
    return out;
}

/* Issue 5 §2/§3 through the gateway, with the real attestation-verifier: a valid attestation
 * over the payload creates the mailbox; the same attestation with one payload byte changed is
 * refused with 401 and nothing is stored; Update is checked the same way. */
static void attestation_verified(void **state)
{
    char bin[512];
    th_bin("attestation-verifier", bin, sizeof(bin));
    if (access(bin, X_OK) != 0)
        skip();
    char *argv[] = {bin, "--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0",
                    "--rp-id=relay.example", "--log-level=warn",
                    /* this test builds a packed self attestation (refused by default) */
                    "--allow-self-attestation=1", NULL};
    assert_int_equal(th_proc_start(&T_verifier, argv, 20000), 0);
    char target[64];
    snprintf(target, sizeof(target), "--attestation-target=127.0.0.1:%d",
             th_proc_port(&T_verifier, "grpc_port"));
    const char *extra[] = {target, "--attestation-policy=required", NULL};
    assert_int_equal(gateway_start(&T_gw, E.store_port, extra), 0);
    int port = th_proc_port(&T_gw, "http_port");
    CURL *c = T_curl = curl_easy_init();

    uint8_t payload[40];
    for (int i = 0; i < 40; i++)
        payload[i] = (uint8_t)(i * 7);
    char *att = make_attestation(payload, sizeof(payload));
    char ahdr[4096];
    snprintf(ahdr, sizeof(ahdr), "deviceAttestation: %s", att);

    char claim[37], id[37], data[100], body[1024];
    new_uuid(claim);
    new_uuid(id);
    const char *h[] = {H(0, "deviceClaim: %s", claim), ahdr, NULL};
    th_http_resp_t r;
    /* one payload byte changed: the attestation no longer covers it */
    payload[39] ^= 1;
    cm_b64_encode(CM_B64_STD, payload, sizeof(payload), data);
    payload[39] ^= 1;
    snprintf(body, sizeof(body),
             "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60,"
             "\"accessRights\":\"RWD\"}}",
             id, data);
    do_req_on(c, P_H2C, port, "POST", "/v1/m", h, body, strlen(body), &r);
    expect_error(&r, 401, "invalid_attestation");
    th_http_resp_free(&r);
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", id);
    do_req_on(c, P_H2C, port, "GET", path, NULL, NULL, 0, &r);
    expect_error(&r, 404, "not_found");
    th_http_resp_free(&r);
    /* the payload it was made for */
    cm_b64_encode(CM_B64_STD, payload, sizeof(payload), data);
    snprintf(body, sizeof(body),
             "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60,"
             "\"accessRights\":\"RWD\"}}",
             id, data);
    do_req_on(c, P_H2C, port, "POST", "/v1/m", h, body, strlen(body), &r);
    if (r.status != 200)
        fail_msg("valid attestation: %ld %s (verifier log %s)", r.status, r.body,
                 T_verifier.log_path);
    th_http_resp_free(&r);
    free(att);

    /* Update: a new payload needs its own attestation */
    uint8_t p2[32];
    memset(p2, 0x77, sizeof(p2));
    cm_b64_encode(CM_B64_STD, p2, sizeof(p2), data);
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"notificationToken\":{\"type\":\"webhook\",\"tokenData\":\"https://h.example/\"}}",
             data);
    do_req_on(c, P_H1, port, "PUT", path, h, body, strlen(body), &r); /* old attestation */
    expect_error(&r, 401, "invalid_attestation");
    th_http_resp_free(&r);
    att = make_attestation(p2, sizeof(p2));
    snprintf(ahdr, sizeof(ahdr), "Mailbox-Device-Attestation: %s", att);
    free(att);
    do_req_on(c, P_H1, port, "PUT", path, h, body, strlen(body), &r);
    if (r.status != 200)
        fail_msg("update with a valid attestation: %ld %s", r.status, r.body);
    th_http_resp_free(&r);
    /* reads need none, and see the update */
    const char *hr[] = {h[0], NULL};
    do_req_on(c, P_H1, port, "POST", path, hr, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, data));
    th_http_resp_free(&r);
    assert_int_equal(th_proc_stop_clean(&T_gw, "gateway", 15000), 0);
    assert_int_equal(th_proc_stop_clean(&T_verifier, "attestation-verifier", 15000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(stateless_flow, test_teardown),
        cmocka_unit_test_teardown(stateful_flow, test_teardown),
        cmocka_unit_test_teardown(relinquish, test_teardown),
        cmocka_unit_test_teardown(duplicate_and_existing, test_teardown),
        cmocka_unit_test_teardown(later_draft_names, test_teardown),
        cmocka_unit_test_teardown(hostile_title, test_teardown),
        cmocka_unit_test_teardown(validation_errors, test_teardown),
        cmocka_unit_test_teardown(status_rules, test_teardown),
        cmocka_unit_test_teardown(wrong_claim, test_teardown),
        cmocka_unit_test_teardown(attestation_without_verifier, test_teardown),
        cmocka_unit_test_teardown(attestation_required, test_teardown),
        cmocka_unit_test_teardown(attestation_verified, test_teardown),
        cmocka_unit_test_teardown(store_killed_and_back, test_teardown),
        cmocka_unit_test_teardown(push_supported, test_teardown),
        cmocka_unit_test_teardown(sharded_store, test_teardown),
        cmocka_unit_test_teardown(batched_reads, test_teardown),
        cmocka_unit_test_teardown(batched_reads_sharded, test_teardown),
        cmocka_unit_test_teardown(store_batch_off, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
