/* The public API when its backends fail or differ, in-process against real processes: a hung
 * store gives 504 at the deadline, a killed one 503 and /readyz 503, and after its restart the
 * API recovers by itself with the data intact; isPushNotificationSupported follows what the
 * real push-dispatch reports. */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>
#include <cmocka.h>

#include "th_api.h"

static th_api_env_t E; /* temp dir (the shared store and API are not used here) */

/* What one test starts; the teardown frees what a failed assertion left. */
static th_gwapi_t *T_gw;
static th_proc_t T_store, T_push;

static int group_setup(void **state)
{
    return th_api_env_start(&E, "gwback");
}

static int group_teardown(void **state)
{
    return th_api_env_stop(&E);
}

static int test_teardown(void **state)
{
    th_gwapi_free(T_gw);
    T_gw = NULL;
    if (T_store.pid > 0)
        th_proc_kill9(&T_store);
    if (T_push.pid > 0)
        th_proc_kill9(&T_push);
    return 0;
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

/* GET /readyz until it answers |want| or |ms| passed; returns the last status. */
static long readyz_until(const th_api_t *t, long want, long long ms)
{
    long long end = th_now_ms() + ms;
    long st = 0;
    while (th_now_ms() < end) {
        th_http_resp_t r;
        th_api_do(t, "GET", "/readyz", NULL, NULL, &r);
        st = r.status;
        th_http_resp_free(&r);
        if (st == want)
            break;
        usleep(100000);
    }
    return st;
}

/* A hung store (SIGSTOP): 504 at the deadline, not later; then it thaws and serves. */
static void hung_store(const th_api_t *t, pid_t pid, const char *path)
{
    th_http_resp_t r;
    kill(pid, SIGSTOP);
    wait_stopped(pid);
    long long t0 = th_now_ms();
    th_api_do(t, "GET", path, NULL, NULL, &r);
    long long hung = th_now_ms() - t0;
    kill(pid, SIGCONT);
    th_api_expect_error(&r, 504, "timeout");
    th_http_resp_free(&r);
    if (hung < 1400 || hung > 1500 + 2000)
        fail_msg("504 after %lld ms (deadline 1500)", hung);
    th_api_do(t, "GET", path, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);
}

/* A killed store gives 503 within the deadline and /readyz 503; after a restart (same port,
 * same data) the API recovers by itself and the data written before is still there. */
static void store_killed_and_back(void **state)
{
    char data_dir[700];
    snprintf(data_dir, sizeof(data_dir), "%s/kill", E.dir);
    assert_int_equal(th_api_store_start(&T_store, data_dir, 0), 0);
    int sport = th_proc_port(&T_store, "grpc_port");
    gw_backend_config_t bc;
    gw_api_config_t ac;
    th_gwapi_defaults(sport, &bc, &ac);
    bc.timeout_ms = ac.timeout_ms = 1500;
    assert_int_equal(th_gwapi_new(&bc, &ac, &T_gw), 0);
    th_api_t t = {.inproc = T_gw};
    th_http_resp_t r;

    th_api_do(&t, "GET", "/readyz", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);
    /* create one mailbox before the crash */
    char claim[37], id[37], data[100], body[1024];
    th_api_uuid(claim);
    th_api_uuid(id);
    th_api_payload_b64(0x5a, 32, data);
    snprintf(
        body, sizeof(body),
        "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
        "\"displayInformation\":{\"title\":\"t\"},\"mailboxConfiguration\":{\"timeToLive\":600}}",
        id, data);
    const char *h[] = {th_api_hdr(0, "deviceClaim: %s", claim), NULL};
    th_api_do(&t, "POST", "/v1/m", h, body, &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);

    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", id);
    hung_store(&t, T_store.pid, path);

    int hold = th_proc_kill9_hold(&T_store, sport);
    assert_true(hold >= 0);
    th_proc_cleanup(&T_store);
    long long t0 = th_now_ms();
    th_api_do(&t, "GET", path, NULL, NULL, &r);
    long long took = th_now_ms() - t0;
    th_api_expect_error(&r, 503, "unavailable");
    th_http_resp_free(&r);
    if (took > 1500 + 1000)
        fail_msg("503 took %lld ms (deadline 1500)", took);
    th_api_do(&t, "POST", path, h, NULL, &r);
    if (r.status != 503 && r.status != 504)
        fail_msg("read with store down: %ld", r.status);
    th_http_resp_free(&r);
    /* readiness flips within its cache time */
    assert_int_equal(readyz_until(&t, 503, 5000), 503);
    /* the outage is counted */
    char *metrics = th_gwapi_metrics();
    assert_non_null(metrics);
    assert_non_null(
        strstr(metrics, "gateway_backend_errors_total{backend=\"store\",code=\"UNAVAILABLE\"}"));
    assert_non_null(strstr(
        metrics, "gateway_backend_errors_total{backend=\"store\",code=\"DEADLINE_EXCEEDED\"}"));
    free(metrics);
    /* liveness stays */
    th_api_do(&t, "GET", "/healthz", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);

    /* back on the same port with the same data */
    assert_int_equal(th_api_store_start(&T_store, data_dir, sport), 0);
    th_port_release(hold);
    long long restarted = th_now_ms();
    if (readyz_until(&t, 200, 20000) != 200)
        fail_msg("API not ready 20 s after the store came back");
    fprintf(stderr, "store down: 503 in %lld ms; ready again %lld ms after the restart\n", took,
            th_now_ms() - restarted);
    th_api_do(&t, "POST", path, h, NULL, &r);
    if (r.status != 200)
        fail_msg("read after restart: %ld %s", r.status, r.body);
    th_http_resp_free(&r);
    th_gwapi_free(T_gw);
    T_gw = NULL;
    assert_int_equal(th_proc_stop_clean(&T_store, "mailbox-store", 15000), 0);
}

static void create_with_token(const th_api_t *t, const char *token_json, int want_push)
{
    char claim[37], data[100], body[1024];
    th_api_uuid(claim);
    th_api_payload_b64(6, 32, data);
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"t\"},%s%s"
             "\"mailboxConfiguration\":{\"timeToLive\":60}}",
             data, token_json ? token_json : "", token_json ? "," : "");
    const char *h[] = {th_api_hdr(0, "deviceClaim: %s", claim), NULL};
    th_http_resp_t r;
    th_api_do(t, "POST", "/v1/m", h, body, &r);
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
    snprintf(target, sizeof(target), "127.0.0.1:%d", th_proc_port(&T_push, "grpc_port"));
    gw_backend_config_t bc;
    gw_api_config_t ac;
    th_gwapi_defaults(E.store_port, &bc, &ac);
    bc.push_target = target;
    assert_int_equal(th_gwapi_new(&bc, &ac, &T_gw), 0);
    th_api_t t = {.inproc = T_gw};
    create_with_token(&t,
                      "\"notificationToken\":{\"type\":\"webhook\","
                      "\"tokenData\":\"https://hooks.example/x\"}",
                      1);
    create_with_token(&t,
                      "\"notificationToken\":{\"type\":\"com.apple.apns\","
                      "\"tokenData\":\"abcdef\"}",
                      0);
    create_with_token(&t,
                      "\"notificationToken\":{\"type\":\"com.google.fcm\","
                      "\"tokenData\":\"abcdef\"}",
                      0);
    create_with_token(&t, NULL, 1); /* no token: some provider works */
    th_gwapi_free(T_gw);
    T_gw = NULL;
    assert_int_equal(th_proc_stop_clean(&T_push, "push-dispatch", 15000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(store_killed_and_back, test_teardown),
        cmocka_unit_test_teardown(push_supported, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
