/* The public API over the network: a real gateway process in front of the real mailbox-store,
 * both on ephemeral ports, driven by libcurl over h2c (prior knowledge), HTTP/1.1 and TLS (h2
 * by ALPN, certificate verified), each answer checked to come in the protocol asked for. The
 * mailbox exchanges and the status rules run over each protocol; everything else about the API
 * is tested in-process (test_gw_api_*.c on tests/harness/th_gwapi). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "api_flows.h"
#include "th.h"
#include "th_api.h"
#include "th_stack.h"

enum { P_H2C = 0, P_H1 = 1, P_TLS = 2, P_COUNT };

static struct {
    th_proc_t store, gw;
    char dir[512]; /* temp dir: store data, TLS cert */
    char cert[600], key[600];
    th_api_t net[P_COUNT]; /* one target (and curl handle: one connection) per protocol */
} E;

#define API (&E.net[proto])

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

static int group_setup(void **state)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char data[700], store[64], cert[700], key[700];
    if (th_tempdir("gwhttp", E.dir, sizeof(E.dir)) != 0 || make_cert(E.dir) != 0)
        return -1;
    snprintf(data, sizeof(data), "%s/store", E.dir);
    if (th_api_store_start(&E.store, data, 0) != 0)
        return -1;
    snprintf(store, sizeof(store), "--store-target=127.0.0.1:%d",
             th_proc_port(&E.store, "grpc_port"));
    snprintf(cert, sizeof(cert), "--tls-cert=%s", E.cert);
    snprintf(key, sizeof(key), "--tls-key=%s", E.key);
    const char *flags[] = {store,
                           "--https-listen=127.0.0.1:0",
                           cert,
                           key,
                           "--threads=2",
                           "--log-level=warn",
                           "--public-base-url=https://relay.example/",
                           NULL};
    if (th_gateway_start(&E.gw, flags, 20000) != 0)
        return -1;
    int http = th_proc_port(&E.gw, "http_port"), https = th_proc_port(&E.gw, "https_port");
    if (http <= 0 || https <= 0)
        return -1;
    static const th_http_proto_t protos[P_COUNT] = {TH_HTTP_H2C, TH_HTTP_H1, TH_HTTP_TLS};
    for (int i = 0; i < P_COUNT; i++)
        E.net[i] = (th_api_t){.curl = curl_easy_init(),
                              .proto = protos[i],
                              .port = protos[i] == TH_HTTP_TLS ? https : http,
                              .ca_file = E.cert};
    return 0;
}

static int group_teardown(void **state)
{
    for (int i = 0; i < P_COUNT; i++)
        curl_easy_cleanup(E.net[i].curl);
    int rc = 0;
    if (E.gw.pid > 0 && th_proc_stop_clean(&E.gw, "gateway", 15000) != 0)
        rc = -1;
    if (E.store.pid > 0 && th_proc_stop_clean(&E.store, "mailbox-store", 15000) != 0)
        rc = -1;
    th_rmtree(E.dir);
    curl_global_cleanup();
    return rc;
}

static void stateless_flow(void **state)
{
    for (int proto = 0; proto < P_COUNT; proto++)
        flow_stateless(API, 0x41 + proto);
}

static void stateful_flow(void **state)
{
    for (int proto = 0; proto < P_COUNT; proto++)
        flow_stateful(API);
}

static void status_rules(void **state)
{
    th_http_resp_t r;
    char claim[37], unknown[37], path[128], corr[37];
    th_api_uuid(claim);
    th_api_uuid(unknown);
    th_api_uuid(corr);
    snprintf(path, sizeof(path), "/v1/m/%s", unknown);
    const char *h[] = {th_api_hdr(0, "deviceClaim: %s", claim),
                       th_api_hdr(1, "Mailbox-Correlation-ID: %s", corr), NULL};
    for (int proto = 0; proto < P_COUNT; proto++) {
        /* 404: unknown mailbox, on every method; unknown route */
        static const char *const methods[] = {"GET", "POST", "DELETE", "PATCH"};
        for (size_t i = 0; i < 4; i++) {
            th_api_do(API, methods[i], path, h, NULL, &r);
            th_api_expect_error(&r, 404, "not_found");
            assert_string_equal(th_http_header(&r, "mailbox-correlation-id"), corr);
            th_http_resp_free(&r);
        }
        th_api_do(API, "GET", "/v2/m", h, NULL, &r);
        th_api_expect_error(&r, 404, "not_found");
        assert_string_equal(th_http_header(&r, "mailbox-correlation-id"), corr);
        th_http_resp_free(&r);
        th_api_do(API, "GET", "/v1/m/a/b", NULL, NULL, &r);
        th_api_expect_error(&r, 404, "not_found");
        th_http_resp_free(&r);
        /* 405 with Allow */
        th_api_do(API, "GET", "/v1/m", h, NULL, &r);
        th_api_expect_error(&r, 405, "method_not_allowed");
        assert_string_equal(th_http_header(&r, "allow"), "POST");
        assert_string_equal(th_http_header(&r, "mailbox-correlation-id"), corr);
        th_http_resp_free(&r);
        th_api_do(API, "OPTIONS", path, h, NULL, &r);
        th_api_expect_error(&r, 405, "method_not_allowed");
        assert_non_null(strstr(th_http_header(&r, "allow"), "PATCH"));
        th_http_resp_free(&r);
        th_api_do(API, "POST", "/healthz", NULL, NULL, &r);
        th_api_expect_error(&r, 405, NULL);
        th_http_resp_free(&r);
        /* 415: a body that is not JSON */
        const char *ht[] = {h[0], h[1], "Content-Type: text/plain", NULL};
        th_api_do(API, "POST", "/v1/m", ht, "{\"a\":1}", &r);
        th_api_expect_error(&r, 415, "unsupported_media_type");
        assert_string_equal(th_http_header(&r, "mailbox-correlation-id"), corr);
        th_http_resp_free(&r);
        const char *hf[] = {h[0], "Content-Type: application/x-www-form-urlencoded", NULL};
        th_api_do(API, "PUT", path, hf, "a=1", &r);
        th_api_expect_error(&r, 415, "unsupported_media_type");
        th_http_resp_free(&r);
        /* but a JSON type with parameters is fine (here it reaches validation) */
        const char *hj[] = {h[0], "Content-Type: application/json; charset=utf-8", NULL};
        th_api_do(API, "POST", "/v1/m", hj, "{}", &r);
        th_api_expect_error(&r, 400, "missing_field");
        th_http_resp_free(&r);
        /* 413 over the 64 KiB body limit */
        size_t big = 70 * 1024;
        char *body = malloc(big + 1);
        memset(body, ' ', big);
        body[0] = '{';
        body[big - 1] = '}';
        body[big] = '\0';
        th_api_do(API, "POST", "/v1/m", h, body, &r);
        if (r.status != 413)
            fail_msg("over %s: %ld, wanted 413", th_api_name(API), r.status);
        th_http_resp_free(&r);
        free(body);
        /* health */
        th_api_do(API, "GET", "/healthz", NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        th_http_resp_free(&r);
        th_api_do(API, "GET", "/readyz", NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        th_http_resp_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stateless_flow),
        cmocka_unit_test(stateful_flow),
        cmocka_unit_test(status_rules),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
