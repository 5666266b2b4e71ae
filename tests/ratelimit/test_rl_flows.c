/* Integration tests of the rate limits and the published configuration: the real gateway in
 * front of the real mailbox-store, driven by libcurl from several loopback addresses (Linux
 * routes all of 127.0.0.0/8 to lo, so 127.0.0.2 is another client). Asserted is what a client
 * sees (status, Retry-After, the JSON error body), what a backend sees (nothing of a refused
 * request), what an operator sees (the metric), and what is left behind (no client address in
 * any log or data file). */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <cJSON.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "cm_uuid.h"
#include "th.h"
#include "th_http.h"
#include "th_stack.h"

static struct {
    char dir[512];
    th_proc_t store, gw;
    int store_port, gw_port;
} E;

/* ---- processes ---- */

static int start_store(void)
{
    char data[600];
    snprintf(data, sizeof(data), "%s/store", E.dir);
    static const char *const extra[] = {"--log-level=debug", "--sync=0", NULL};
    if (th_store_start(&E.store, data, 0, extra, 20000) != 0)
        return -1;
    E.store_port = th_proc_port(&E.store, "grpc_port");
    return 0;
}

/* A gateway on the store with |extra| flags after the test defaults (limits on for loopback:
 * --rate-limit-exempt= empties the harness's exempt list; debug logs and the access log on, so
 * the privacy check reads everything the gateway can write). */
static int start_gateway(const char *const *extra)
{
    char store[64];
    snprintf(store, sizeof(store), "--store-target=127.0.0.1:%d", E.store_port);
    const char *argv[TH_MAX_ARGS] = {store,
                                     "--https-listen=",
                                     "--threads=2",
                                     "--log-level=debug",
                                     "--access-log=1",
                                     "--rate-limit-exempt=",
                                     NULL};
    int n = 0;
    while (argv[n])
        n++;
    for (size_t i = 0; extra && extra[i] && n < TH_MAX_ARGS - 1; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    if (th_gateway_start(&E.gw, argv, 20000) != 0)
        return -1;
    E.gw_port = th_proc_port(&E.gw, "http_port");
    return 0;
}

static void stop_gateway(void)
{
    assert_int_equal(th_proc_stop_clean(&E.gw, "gateway", 15000), 0);
}

static int group_setup(void **state)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (th_tempdir("ratelimit", E.dir, sizeof(E.dir)) != 0)
        return -1;
    return start_store();
}

static int group_teardown(void **state)
{
    int rc = 0;
    if (E.gw.pid > 0)
        th_proc_kill9(&E.gw);
    if (E.store.pid > 0 && th_proc_stop_clean(&E.store, "mailbox-store", 15000) != 0)
        rc = -1;
    th_rmtree(E.dir);
    curl_global_cleanup();
    return rc;
}

static int test_teardown(void **state)
{
    if (E.gw.pid > 0)
        th_proc_kill9(&E.gw);
    return 0;
}

/* ---- HTTP (the shared client, tests/harness/th_http) ---- */

/* An answer: zero-initialise it; req() frees the previous one, the test frees the last. */
typedef th_http_resp_t resp_t;

/* One HTTP/1.1 request from source address |from| to |port|; |hdrs| NULL-terminated lines. */
static void req(const char *from, int port, const char *method, const char *path,
                const char *const *hdrs, const char *body, resp_t *out)
{
    th_http_resp_free(out);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    th_http_req_t rq = {.proto = TH_HTTP_H1,
                        .port = port,
                        .source = from,
                        .method = method,
                        .path = path,
                        .headers = hdrs,
                        .body = body};
    int rc = th_http_request(c, &rq, out);
    curl_easy_cleanup(c);
    if (rc != 0)
        fail_msg("%s %s from %s: %s", method, path, from, out->err);
}

static void uuid4(char out[37])
{
    assert_int_equal(cm_uuid_v4(out), 0);
}

/* A Create from |from|; returns the status, the new id in |id|. */
static long create(const char *from, const char *payload_type, int64_t ttl, char id[37])
{
    char claim[37], corr[37], hc[80], hr[80], body[1024];
    uuid4(claim);
    uuid4(corr);
    uuid4(id);
    snprintf(hc, sizeof(hc), "deviceClaim: %s", claim);
    snprintf(hr, sizeof(hr), "Mailbox-Correlation-ID: %s", corr);
    const char *h[] = {hc, hr, NULL};
    snprintf(body, sizeof(body),
             "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"%s\",\"data\":"
             "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"},\"displayInformation\":{\"title\":"
             "\"Key\"},\"mailboxConfiguration\":{\"timeToLive\":\"%lld\"}}",
             id, payload_type, (long long)ttl);
    resp_t r = {0};
    req(from, E.gw_port, "POST", "/v1/m", h, body, &r);
    long status = r.status;
    th_http_resp_free(&r);
    return status;
}

/* A ReadSecure of a mailbox that does not exist: 404 (or 429 once refused). |fwd|: a whole
 * header line, or an X-Forwarded-For value (no ':'), or NULL. */
static void failed_read(const char *from, const char *fwd, resp_t *r)
{
    char id[37], claim[37], hc[80], hx[200];
    uuid4(id);
    uuid4(claim);
    snprintf(hc, sizeof(hc), "deviceClaim: %s", claim);
    if (fwd && strchr(fwd, ':'))
        snprintf(hx, sizeof(hx), "%s", fwd);
    else
        snprintf(hx, sizeof(hx), "X-Forwarded-For: %s", fwd ? fwd : "");
    const char *h[] = {hc, fwd ? hx : NULL, NULL};
    char path[64];
    snprintf(path, sizeof(path), "/v1/m/%s", id);
    req(from, E.gw_port, "POST", path, h, NULL, r);
}

/* Sum of every sample of metric |name| at the admin listener on |port|. */
static double metric_sum(int port, const char *name, const char *labels)
{
    resp_t r = {0};
    req("127.0.0.1", port, "GET", "/metrics", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    char *buf = r.body;
    double sum = 0;
    size_t nl = strlen(name);
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, name, nl) != 0 || (line[nl] != '{' && line[nl] != ' '))
            continue;
        if (labels && !strstr(line, labels))
            continue;
        sum += atof(strrchr(line, ' ') + 1);
    }
    th_http_resp_free(&r);
    return sum;
}

/* ---- tests ---- */

/* A burst of failed lookups from one client ends in 429 with Retry-After; nothing of the
 * refused requests reaches the store; another client (127.0.0.2) is unaffected; the write
 * budget refuses a third client's Creates past its burst. */
static void test_burst_per_client(void **state)
{
    static const char *const extra[] = {
        "--rate-limit-failure-per-min=6", "--rate-limit-failure-burst=5",
        "--rate-limit-write-per-min=6", "--rate-limit-write-burst=3", NULL};
    assert_int_equal(start_gateway(extra), 0);
    int gadmin = th_proc_port(&E.gw, "admin_port"), sadmin = th_proc_port(&E.store, "admin_port");
    char id[37];
    /* an existing mailbox, made by a client that is not part of the burst */
    assert_int_equal(create("127.0.0.9", "AES128", 600, id), 200);

    resp_t r = {0};
    for (int i = 0; i < 5; i++) {
        failed_read("127.0.0.1", NULL, &r);
        assert_int_equal(r.status, 404);
    }
    double store_before = metric_sum(sadmin, "tigress_mailbox_store_requests_total", NULL);
    for (int i = 0; i < 3; i++) {
        failed_read("127.0.0.1", NULL, &r);
        assert_int_equal(r.status, 429);
        const char *ra = th_http_header(&r, "Retry-After");
        assert_non_null(ra);
        long secs = atol(ra);
        assert_true(secs >= 1 && secs <= 10); /* one token per 10 s */
        cJSON *j = cJSON_Parse(r.body);
        assert_non_null(j);
        cJSON *code = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code");
        assert_string_equal(cJSON_GetStringValue(code), "rate_limited");
        cJSON_Delete(j);
    }
    /* the refused client is refused its previews and writes too, as any of them could fail */
    char path[64];
    snprintf(path, sizeof(path), "/v1/m/%s", id);
    req("127.0.0.1", E.gw_port, "GET", path, NULL, NULL, &r);
    assert_int_equal(r.status, 429);
    assert_int_equal(create("127.0.0.1", "AES128", 600, id + 0), 429);
    double store_after = metric_sum(sadmin, "tigress_mailbox_store_requests_total", NULL);
    assert_true(store_after == store_before); /* nothing forwarded */

    /* another client: its lookups fail normally and its preview works */
    failed_read("127.0.0.2", NULL, &r);
    assert_int_equal(r.status, 404);
    char id2[37];
    assert_int_equal(create("127.0.0.2", "AES128", 600, id2), 200);
    snprintf(path, sizeof(path), "/v1/m/%s", id2);
    for (int i = 0; i < 20; i++) { /* previews of an existing mailbox cost nothing */
        req("127.0.0.2", E.gw_port, "GET", path, NULL, NULL, &r);
        assert_int_equal(r.status, 200);
    }

    /* writes: 3 at once, the 4th refused */
    for (int i = 0; i < 3; i++)
        assert_int_equal(create("127.0.0.3", "AES256", 600, id2), 200);
    char corr_hdr[] = "Mailbox-Correlation-ID: rl-echo-1";
    const char *h[] = {corr_hdr, "deviceClaim: 8c1f2a0e-1111-4222-8333-944455556666", NULL};
    req("127.0.0.3", E.gw_port, "POST", "/v1/m", h, "{}", &r);
    assert_int_equal(r.status, 429);
    assert_non_null(th_http_header(&r, "Retry-After"));
    assert_string_equal(th_http_header(&r, "Mailbox-Correlation-ID"), "rl-echo-1");
    assert_string_equal(th_http_header(&r, "Content-Type"), "application/json");

    assert_true(metric_sum(gadmin, "tigress_gateway_rate_limited_total", "budget=\"failure\"") >=
                5);
    assert_true(metric_sum(gadmin, "tigress_gateway_rate_limited_total", "budget=\"write\"") >= 1);
    th_http_resp_free(&r);
    stop_gateway();
}

/* X-Forwarded-For is believed only from --trusted-proxies: behind the proxy each client has
 * its own budget; from anyone else the header is ignored (a spoofer cannot pass as another
 * client, nor escape its own limit). */
static void test_trusted_proxy(void **state)
{
    static const char *const extra[] = {"--rate-limit-failure-per-min=1",
                                        "--rate-limit-failure-burst=2",
                                        "--trusted-proxies=127.0.0.5/32", NULL};
    assert_int_equal(start_gateway(extra), 0);
    resp_t r = {0};
    /* client A behind the proxy uses up its budget */
    for (int i = 0; i < 2; i++) {
        failed_read("127.0.0.5", "198.51.100.7", &r);
        assert_int_equal(r.status, 404);
    }
    failed_read("127.0.0.5", "198.51.100.7", &r);
    assert_int_equal(r.status, 429);
    /* client B behind the same proxy is another client */
    failed_read("127.0.0.5", "203.0.113.50, 198.51.100.8", &r);
    assert_int_equal(r.status, 404);
    /* a proxy in the chain that is not trusted is the client: 198.51.100.8 above, not 203... */
    failed_read("127.0.0.5", "198.51.100.8", &r);
    assert_int_equal(r.status, 404);
    failed_read("127.0.0.5", "198.51.100.8", &r);
    assert_int_equal(r.status, 429);

    /* an untrusted peer naming the drained client A is judged by its own address */
    failed_read("127.0.0.6", "198.51.100.7", &r);
    assert_int_equal(r.status, 404);
    /* and naming a fresh address does not escape its own limit */
    failed_read("127.0.0.6", "192.0.2.1", &r);
    assert_int_equal(r.status, 404);
    failed_read("127.0.0.6", "192.0.2.2", &r);
    assert_int_equal(r.status, 429);
    th_http_resp_free(&r);
    stop_gateway();
}

/* With --client-ip-header=forwarded the proxy's RFC 7239 header names the client, and an
 * X-Forwarded-For (which the proxy would pass through untouched) is not believed. */
static void test_forwarded_header(void **state)
{
    static const char *const extra[] = {
        "--rate-limit-failure-per-min=1", "--rate-limit-failure-burst=2",
        "--trusted-proxies=127.0.0.5/32", "--client-ip-header=forwarded", NULL};
    assert_int_equal(start_gateway(extra), 0);
    resp_t r = {0};
    const char *a = "Forwarded: for=\"[2001:db8:1:2::7]:4711\";proto=https";
    const char *a_same64 = "Forwarded: for=6.6.6.6, For=\"[2001:db8:1:2:ffff::9]\"";
    failed_read("127.0.0.5", a, &r);
    assert_int_equal(r.status, 404);
    failed_read("127.0.0.5", a_same64, &r); /* same /64: same client */
    assert_int_equal(r.status, 404);
    failed_read("127.0.0.5", a, &r);
    assert_int_equal(r.status, 429);
    failed_read("127.0.0.5", "Forwarded: for=\"[2001:db8:1:3::7]\"", &r); /* next /64 */
    assert_int_equal(r.status, 404);
    /* X-Forwarded-For is not the configured header: the proxy itself is the client */
    failed_read("127.0.0.5", "198.51.100.30", &r);
    assert_int_equal(r.status, 404);
    failed_read("127.0.0.5", "198.51.100.31", &r);
    assert_int_equal(r.status, 404);
    failed_read("127.0.0.5", "198.51.100.32", &r);
    assert_int_equal(r.status, 429);
    th_http_resp_free(&r);
    stop_gateway();
}

/* Exempt clients are never limited. */
static void test_exempt(void **state)
{
    static const char *const extra[] = {"--rate-limit-failure-per-min=1",
                                        "--rate-limit-failure-burst=1",
                                        "--rate-limit-exempt=127.0.0.7/32", NULL};
    assert_int_equal(start_gateway(extra), 0);
    resp_t r = {0};
    for (int i = 0; i < 10; i++) {
        failed_read("127.0.0.7", NULL, &r);
        assert_int_equal(r.status, 404);
    }
    failed_read("127.0.0.8", NULL, &r);
    assert_int_equal(r.status, 404);
    failed_read("127.0.0.8", NULL, &r);
    assert_int_equal(r.status, 429);
    th_http_resp_free(&r);
    stop_gateway();
}

/* Looks for |needle| in every regular file under |dir|; fails naming the file. */
static void scan_tree(const char *dir, const char *const *needles)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[1200];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            scan_tree(p, needles);
            continue;
        }
        if (!S_ISREG(st.st_mode))
            continue;
        size_t len = 0;
        char *buf = th_read_file(p, &len);
        for (size_t i = 0; buf && needles[i]; i++)
            if (memmem(buf, len, needles[i], strlen(needles[i])))
                fail_msg("client address %s found in %s", needles[i], p);
        free(buf);
    }
    closedir(d);
}

/* After all the traffic above (debug logs and the access log on): no client address in the
 * gateway's or the store's logs, nor in the store's data directory. Runs last. */
static void test_nothing_about_clients(void **state)
{
    static const char *const extra[] = {"--rate-limit-failure-burst=1",
                                        "--trusted-proxies=127.0.0.5/32", NULL};
    assert_int_equal(start_gateway(extra), 0);
    resp_t r = {0};
    for (int i = 0; i < 3; i++)
        failed_read("127.0.0.5", "198.51.100.99", &r);
    assert_int_equal(r.status, 429);
    th_http_resp_free(&r);
    char gwlog[600];
    snprintf(gwlog, sizeof(gwlog), "%s", E.gw.log_path);
    stop_gateway();
    assert_int_equal(th_proc_stop_clean(&E.store, "mailbox-store", 15000), 0);
    static const char *const needles[] = {
        "127.0.0.2",    "127.0.0.3", "127.0.0.5",    "127.0.0.6",     "127.0.0.7",
        "127.0.0.8",    "127.0.0.9", "198.51.100.7", "198.51.100.8",  "198.51.100.99",
        "203.0.113.50", "192.0.2.1", "2001:db8:1:2", "198.51.100.30", NULL};
    size_t len = 0;
    char *log = th_read_file(gwlog, &len);
    assert_non_null(log);
    assert_non_null(strstr(log, "status=429")); /* the access log did record the requests */
    for (size_t i = 0; needles[i]; i++)
        if (memmem(log, len, needles[i], strlen(needles[i])))
            fail_msg("client address %s in the gateway log %s", needles[i], gwlog);
    free(log);
    log = th_read_file(E.store.log_path, &len);
    for (size_t i = 0; log && needles[i]; i++)
        if (memmem(log, len, needles[i], strlen(needles[i])))
            fail_msg("client address %s in the store log", needles[i]);
    free(log);
    char data[600];
    snprintf(data, sizeof(data), "%s/store", E.dir);
    scan_tree(data, needles);
    assert_int_equal(start_store(), 0); /* for the group teardown */
}

/* GET /v1/config reports the running configuration: non-default flags in, the same values
 * out; the published types are the ones Create accepts; the published maximum lifetime is the
 * one enforced. */
static void test_config_equals_flags(void **state)
{
    static const char *const extra[] = {"--max-ttl=3600",
                                        "--max-body=20000",
                                        "--rate-limit-write-per-min=7",
                                        "--rate-limit-write-burst=9",
                                        "--rate-limit-failure-per-min=0",
                                        "--rate-limit-failure-burst=4",
                                        "--attestation-policy=off",
                                        "--attestation-formats=apple,tpm",
                                        "--rate-limit-exempt=127.0.0.0/8",
                                        NULL};
    assert_int_equal(start_gateway(extra), 0);
    resp_t r = {0};
    const char *h[] = {"Mailbox-Request-ID: cfg-1", NULL};
    req("127.0.0.1", E.gw_port, "GET", "/v1/config", h, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_http_header(&r, "Cache-Control"), "public, max-age=300");
    assert_string_equal(th_http_header(&r, "Mailbox-Request-ID"), "cfg-1");
    cJSON *j = cJSON_Parse(r.body);
    assert_non_null(j);
#define NUM(obj, key) cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, obj), key))
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "apiVersion")), "v1");
    assert_true(NUM("lifetime", "maximumSeconds") == 3600);
    assert_true(NUM("limits", "maxBodyBytes") == 20000);
    cJSON *rl = cJSON_GetObjectItem(j, "rateLimits");
    cJSON *w = cJSON_GetObjectItem(rl, "write"), *f = cJSON_GetObjectItem(rl, "failure");
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(w, "perMinute")) == 7);
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(w, "burst")) == 9);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(w, "limited")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(f, "limited")));
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(f, "burst")) == 4);
    cJSON *at = cJSON_GetObjectItem(j, "attestation");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(at, "policy")), "off");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(at, "verifierConfigured")));
    cJSON *fm = cJSON_GetObjectItem(at, "formats");
    assert_int_equal(cJSON_GetArraySize(fm), 2);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(fm, 1)), "tpm");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "pushProviders")), 0);
    /* every published payload type is accepted; the published maximum lifetime holds */
    char id[37];
    cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(j, "payloadTypes"))
    {
        assert_int_equal(create("127.0.0.1", cJSON_GetStringValue(t), 3600, id), 200);
    }
    assert_int_equal(create("127.0.0.1", "AES128", 3601, id), 400);
    assert_int_equal(create("127.0.0.1", "AES512", 60, id), 400);
    cJSON_Delete(j);
#undef NUM
    req("127.0.0.1", E.gw_port, "DELETE", "/v1/config", NULL, NULL, &r);
    assert_int_equal(r.status, 405);
    stop_gateway();

    /* the defaults, as README states them */
    assert_int_equal(start_gateway(NULL), 0);
    req("127.0.0.1", E.gw_port, "GET", "/v1/config", NULL, NULL, &r);
    j = cJSON_Parse(r.body);
    assert_non_null(j);
    cJSON *lim = cJSON_GetObjectItem(j, "limits");
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(lim, "maxBodyBytes")) == 65536);
    rl = cJSON_GetObjectItem(j, "rateLimits");
    w = cJSON_GetObjectItem(rl, "write");
    f = cJSON_GetObjectItem(rl, "failure");
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(w, "perMinute")) == 60);
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(w, "burst")) == 120);
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(f, "perMinute")) == 30);
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(f, "burst")) == 60);
    assert_string_equal(
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "attestation"), "policy")),
        "verify-if-present");
    cJSON_Delete(j);
    th_http_resp_free(&r);
    stop_gateway();
}

/* Bad limiter flags stop the gateway at start with a message, instead of running unlimited. */
static void test_bad_flags(void **state)
{
    static const char *const bad[][2] = {{"--rate-limit-exempt=10.0.0.0/33", NULL},
                                         {"--trusted-proxies=proxy.example", NULL},
                                         {"--client-ip-header=x-real-ip", NULL},
                                         {"--rate-limit-write-burst=0", NULL},
                                         {"--rate-limit-failure-per-min=-1", NULL}};
    fprintf(stderr, "(expected below: gateways that refuse to start)\n");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(start_gateway(bad[i]), -1);
        th_proc_cleanup(&E.gw);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_burst_per_client, test_teardown),
        cmocka_unit_test_teardown(test_trusted_proxy, test_teardown),
        cmocka_unit_test_teardown(test_forwarded_header, test_teardown),
        cmocka_unit_test_teardown(test_exempt, test_teardown),
        cmocka_unit_test_teardown(test_config_equals_flags, test_teardown),
        cmocka_unit_test_teardown(test_bad_flags, test_teardown),
        cmocka_unit_test_teardown(test_nothing_about_clients, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
