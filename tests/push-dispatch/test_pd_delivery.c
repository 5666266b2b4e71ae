/* push-dispatch against fake providers speaking the real protocols (fakes.py): retries,
 * outages, dead tokens, budget, expiry, cancel, dedup, unsupported providers, GOAWAY and
 * stream limits, FCM OAuth, signed webhooks and the SSRF guard, and SIGTERM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pdt.h"
#include "tigress/push/v1/push_dispatch.pb-c.h"

#define APNS "com.apple.apns"
#define HOUR (3600 * 1000LL)

static int setup(void **state)
{
    pdt_t *t = calloc(1, sizeof(*t));
    if (!t || pdt_init(t) != 0)
        return -1;
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    pdt_t *t = *state;
    pdt_fini(t);
    free(t);
    return 0;
}

static void tok(int i, char out[65])
{
    pdt_token(i, out);
}

/* 503 then 200: delivered exactly once, after one retry; Retry-After honoured. */
static void test_retry_then_delivered(void **state)
{
    pdt_t *t = *state;
    char k[65];
    tok(1, k);
    pdt_ctl(t, "apns", "{\"seq\":[503],\"retry_after\":1}");
    assert_int_equal(pdt_fake_start(t, "apns", 0, 0), 0);
    assert_int_equal(pdt_pd_start(t, NULL), 0);
    int64_t t0 = pdt_now_ms();
    assert_int_equal(pdt_enqueue1(t, "n1", "mb1", APNS, k, pdt_now_ms() + HOUR), 1);
    assert_int_equal(pdt_wait(t, "apns", 200, k, 1, 20000), 1);
    /* Retry-After: 1 s beats the 100 ms backoff. */
    assert_true(pdt_now_ms() - t0 >= 900);
    pdt_sleep_ms(1000);
    assert_int_equal(pdt_count(t, "apns", 503, k), 1);
    assert_int_equal(pdt_count(t, "apns", 200, k), 1);
    assert_int_equal(pdt_count(t, "apns", 0, NULL), 2);
    assert_int_equal(pdt_metric(t, "push_dispatch_delivered_total{provider=\"apns\"}"), 1);
    assert_int_equal(pdt_metric(t, "push_dispatch_retried_total{provider=\"apns\"}"), 1);
    /* Same id again (the store re-sent it after a crash): acknowledged, not re-queued. */
    assert_int_equal(pdt_enqueue1(t, "n1", "mb1", APNS, k, pdt_now_ms() + HOUR), 0);
    pdt_sleep_ms(500);
    assert_int_equal(pdt_count(t, "apns", 200, k), 1);
    /* Every request carried a JWT that verified and the expected headers. */
    assert_int_equal(pdt_count(t, "apns", 400, NULL) + pdt_count(t, "apns", 403, NULL), 0);
    assert_int_equal(pdt_pd_stop(t), 0);
}

/* Provider down (connection refused) for a while: delivered once it is back. */
static void test_provider_down_then_back(void **state)
{
    pdt_t *t = *state;
    assert_int_equal(pdt_fake_start(t, "apns", 0, 0), 0);
    int port = t->apns_port;
    int hold = th_proc_kill9_hold(&t->apns, port);
    assert_true(hold >= 0);
    /* Enough attempts to outlast the outage (100 ms doubling to a 1 s cap). */
    const char *extra[] = {"--max-attempts=30", NULL};
    assert_int_equal(pdt_pd_start(t, extra), 0);
    assert_int_equal(pdt_enqueue_many(t, "down", 0, 5, 5, 5, APNS, pdt_now_ms() + HOUR), 5);
    pdt_sleep_ms(2500);
    assert_true(pdt_metric(t, "push_dispatch_retried_total{provider=\"apns\"}") >= 5);
    assert_int_equal(pdt_fake_start(t, "apns", port, 0), 0);
    th_port_release(hold);
    assert_int_equal(pdt_wait(t, "apns", 200, NULL, 5, 20000), 5);
    assert_int_equal(pdt_count_distinct(t, "apns", 200), 5);
    assert_int_equal(pdt_metric(t, "push_dispatch_failed_total{provider=\"apns\"}"), -1);
}

/* 410 and BadDeviceToken: dropped at once, never retried; other tokens unaffected. */
static void test_dead_token_dropped(void **state)
{
    pdt_t *t = *state;
    char dead[65], bad[65], ok[65], ctl[400];
    tok(10, dead);
    tok(11, bad);
    tok(12, ok);
    snprintf(ctl, sizeof(ctl), "{\"dead\":[\"%s\"]}", dead);
    pdt_ctl(t, "apns", ctl);
    assert_int_equal(pdt_fake_start(t, "apns", 0, 0), 0);
    assert_int_equal(pdt_pd_start(t, NULL), 0);
    assert_int_equal(pdt_enqueue1(t, "d1", "mbd", APNS, dead, pdt_now_ms() + HOUR), 1);
    assert_int_equal(pdt_enqueue1(t, "d2", "mbd", APNS, ok, pdt_now_ms() + HOUR), 1);
    assert_int_equal(pdt_wait(t, "apns", 410, dead, 1, 20000), 1);
    assert_int_equal(pdt_wait(t, "apns", 200, ok, 1, 20000), 1);
    pdt_ctl(t, "apns", "{\"seq\":[400]}"); /* BadDeviceToken */
    assert_int_equal(pdt_enqueue1(t, "d3", "mbd", APNS, bad, pdt_now_ms() + HOUR), 1);
    assert_int_equal(pdt_wait(t, "apns", 400, bad, 1, 20000), 1);
    pdt_sleep_ms(1500); /* many backoff periods */
    assert_int_equal(pdt_count(t, "apns", 0, dead), 1);
    assert_int_equal(pdt_count(t, "apns", 0, bad), 1);
    assert_int_equal(
        pdt_metric(t, "push_dispatch_dropped_total{provider=\"apns\",reason=\"dead_token\"}"), 2);
    /* The log names the notification, never the token. */
    char *log = th_read_file(t->pd.log_path, NULL);
    assert_non_null(log);
    assert_null(strstr(log, dead));
    assert_null(strstr(log, bad));
    free(log);
}

/* Per-mailbox budget, counted durably across a restart. */
static void test_budget(void **state)
{
    pdt_t *t = *state;
    const char *extra[] = {"--mailbox-budget=5", NULL};
    assert_int_equal(pdt_fake_start(t, "apns", 0, 0), 0);
    assert_int_equal(pdt_pd_start(t, extra), 0);
    /* 8 notifications, all for one mailbox (nmb = 1). */
    assert_int_equal(pdt_enqueue_many(t, "bud", 0, 8, 1, 3, APNS, pdt_now_ms() + HOUR), 5);
    assert_int_equal(pdt_wait(t, "apns", 200, NULL, 5, 20000), 5);
    assert_int_equal(
        pdt_metric(t, "push_dispatch_dropped_total{provider=\"apns\",reason=\"budget\"}"), 3);
    pdt_pd_kill9(t);
    assert_int_equal(pdt_pd_start(t, extra), 0);
    assert_int_equal(pdt_enqueue_many(t, "bud", 100, 2, 1, 2, APNS, pdt_now_ms() + HOUR), 0);
    /* Another mailbox has its own budget (tokens 200 and 201, unlike the first mailbox's). */
    assert_int_equal(pdt_enqueue_many(t, "bud2", 200, 2, 1, 2, APNS, pdt_now_ms() + HOUR), 2);
    /* Delivery is at least once: a notification delivered just before the kill -9 but not yet
     * marked done may come again after the restart. So count distinct tokens: the first
     * mailbox's 5 and the other's 2, and never the 2 refused after the restart. */
    int64_t end = pdt_now_ms() + 20000;
    while (pdt_count_distinct(t, "apns", 200) < 7 && pdt_now_ms() < end)
        pdt_sleep_ms(50);
    pdt_sleep_ms(300);
    assert_int_equal(pdt_count_distinct(t, "apns", 200), 7);
}

/* Expired mailboxes: refused at enqueue; a retrying one is given up at its expiry. */
static void test_expiry(void **state)
{
    pdt_t *t = *state;
    char a[65], b[65];
    tok(20, a);
    tok(21, b);
    pdt_ctl(t, "apns", "{\"default\":503}");
    assert_int_equal(pdt_fake_start(t, "apns", 0, 0), 0);
    assert_int_equal(pdt_pd_start(t, NULL), 0);
    assert_int_equal(pdt_enqueue1(t, "e1", "mbe", APNS, a, pdt_now_ms() - 1), 0);
    assert_int_equal(pdt_enqueue1(t, "e2", "mbe2", APNS, b, pdt_now_ms() + 1500), 1);
    pdt_sleep_ms(2500);
    int n = pdt_count(t, "apns", 503, b);
    assert_true(n >= 1);
    pdt_ctl(t, "apns", "{\"default\":200}");
    pdt_sleep_ms(1500);
    assert_int_equal(pdt_count(t, "apns", 0, b), n); /* no attempt after expiry */
    assert_int_equal(pdt_count(t, "apns", 0, a), 0);
    assert_int_equal(pdt_count(t, "apns", 200, NULL), 0);
    assert_int_equal(
        pdt_metric(t, "push_dispatch_dropped_total{provider=\"apns\",reason=\"expired\"}"), 1);
    assert_int_equal(pdt_metric(t, "push_dispatch_failed_total{provider=\"apns\"}"), 1);
}

/* CancelMailbox drops queued entries and refuses later ones for that mailbox. */
static void test_cancel(void **state)
{
    pdt_t *t = *state;
    pdt_ctl(t, "apns", "{\"default\":503,\"retry_after\":2}");
    assert_int_equal(pdt_fake_start(t, "apns", 0, 0), 0);
    assert_int_equal(pdt_pd_start(t, NULL), 0);
    /* 3 for mailbox can-mb-0, 0 for others */
    assert_int_equal(pdt_enqueue_many(t, "can", 0, 3, 1, 3, APNS, pdt_now_ms() + HOUR), 3);
    assert_int_equal(pdt_wait(t, "apns", 503, NULL, 3, 20000), 3);
    uint32_t dropped = 0;
    assert_int_equal(pdt_cancel(t, "can-mb-0", pdt_now_ms() + HOUR, &dropped), 0);
    assert_int_equal(dropped, 3);
    pdt_ctl(t, "apns", "{\"default\":200}");
    /* Late enqueue for the cancelled mailbox (store forwarding an old outbox entry). */
    assert_int_equal(pdt_enqueue_many(t, "can", 10, 1, 1, 1, APNS, pdt_now_ms() + HOUR), 0);
    /* Survives a restart too. */
    pdt_pd_kill9(t);
    assert_int_equal(pdt_pd_start(t, NULL), 0);
    assert_int_equal(pdt_enqueue_many(t, "can", 20, 1, 1, 1, APNS, pdt_now_ms() + HOUR), 0);
    /* Another mailbox still works. */
    char k[65];
    tok(99, k);
    assert_int_equal(pdt_enqueue1(t, "other", "other-mb", APNS, k, pdt_now_ms() + HOUR), 1);
    assert_int_equal(pdt_wait(t, "apns", 200, k, 1, 20000), 1);
    pdt_sleep_ms(2500);
    assert_int_equal(pdt_count(t, "apns", 200, NULL), 1);
    /* Bad input: clear error, nothing changed. */
    assert_int_equal(pdt_cancel(t, "", 0, &dropped), -1);
    assert_int_equal(pdt_enqueue1(t, "bad id!", "mb", APNS, k, pdt_now_ms() + HOUR), -1);
    /* An empty or oversized token drops only that notification, the call succeeds. */
    assert_int_equal(pdt_enqueue1(t, "emptytok", "mbx", APNS, "", pdt_now_ms() + HOUR), 0);
    char *big = malloc(5000);
    memset(big, 'a', 4999);
    big[4999] = '\0';
    assert_int_equal(pdt_enqueue1(t, "bigtok", "mbx", APNS, big, pdt_now_ms() + HOUR), 0);
    free(big);
    assert_int_equal(
        pdt_metric(t, "push_dispatch_dropped_total{provider=\"apns\",reason=\"invalid_token\"}"),
        2);
}

/* No credentials: Supported is empty, notifications are logged as undeliverable (no token),
 * nothing crashes, SIGTERM exits 0. */
static void test_unconfigured(void **state)
{
    pdt_t *t = *state;
    char k[65];
    tok(30, k);
    assert_int_equal(pdt_pd_start(t, NULL), 0);
    Tigress__Push__V1__SupportedRequest rq = TIGRESS__PUSH__V1__SUPPORTED_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    cm_rpc_status_t st;
    cm_rpc_call_opts_t o = {.timeout_ms = 5000};
    assert_int_equal(cm_rpc_call(t->ch, "/tigress.push.v1.PushDispatch/Supported", &rq.base,
                                 &tigress__push__v1__supported_response__descriptor, &o, &resp,
                                 &st),
                     0);
    assert_int_equal(((Tigress__Push__V1__SupportedResponse *)resp)->n_token_types, 0);
    protobuf_c_message_free_unpacked(resp, NULL);
    assert_int_equal(pdt_enqueue1(t, "u1", "mbu", APNS, k, pdt_now_ms() + HOUR), 0);
    assert_int_equal(
        pdt_enqueue1(t, "u2", "mbu", "webhook", "https://example.com/h", pdt_now_ms() + HOUR), 0);
    assert_int_equal(cm_rpc_health_check(t->ch, "tigress.push.v1.PushDispatch", 5000), 1);
    assert_int_equal(cm_rpc_health_check(t->ch, "", 5000), 1);
    assert_int_equal(pdt_pd_stop(t), 0);
    char *log = th_read_file(t->pd.log_path, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "undeliverable"));
    assert_null(strstr(log, k));
    assert_null(strstr(log, "example.com"));
    free(log);
}

/* Honours SETTINGS_MAX_CONCURRENT_STREAMS and survives GOAWAY: everything delivered. */
static void test_streams_and_goaway(void **state)
{
    pdt_t *t = *state;
    pdt_ctl(t, "apns", "{\"goaway_after\":25,\"delay_ms\":5}");
    assert_int_equal(pdt_fake_start(t, "apns", 0, 4), 0);
    assert_int_equal(pdt_pd_start(t, NULL), 0);
    assert_int_equal(pdt_enqueue_many(t, "ga", 0, 100, 100, 50, APNS, pdt_now_ms() + HOUR), 100);
    assert_int_equal(pdt_wait(t, "apns", 200, NULL, 100, 30000), 100);
    assert_int_equal(pdt_count_distinct(t, "apns", 200), 100);
    char p[700];
    snprintf(p, sizeof(p), "%s/apns.stats", t->dir);
    char *s = th_read_file(p, NULL);
    assert_non_null(s);
    int conns = 0, maxc = 0;
    const char *c = strstr(s, "\"connections\": "), *m = strstr(s, "\"max_concurrent\": ");
    assert_non_null(c);
    assert_non_null(m);
    conns = atoi(c + strlen("\"connections\": "));
    maxc = atoi(m + strlen("\"max_concurrent\": "));
    free(s);
    assert_true(conns >= 4); /* 100 requests, GOAWAY after 25 per connection */
    assert_true(maxc >= 2 && maxc <= 4);
}

/* FCM: OAuth2 grant (checked by the fake), delivery, UNREGISTERED dropped, 503 retried. */
static void test_fcm(void **state)
{
    pdt_t *t = *state;
    pdt_ctl(t, "fcm", "{\"seq\":[503]}");
    assert_int_equal(pdt_fake_start(t, "fcm", 0, 0), 0);
    assert_int_equal(pdt_pd_start(t, NULL), 0);
    const char *ft = "fcmtoken:APA91bH-1_x";
    assert_int_equal(pdt_enqueue1(t, "f1", "mbf", "com.google.fcm", ft, pdt_now_ms() + HOUR), 1);
    assert_int_equal(pdt_wait(t, "fcm", 200, ft, 1, 20000), 1);
    assert_int_equal(pdt_count(t, "fcm", 503, ft), 1);
    pdt_ctl(t, "fcm", "{\"seq\":[410]}");
    const char *dead = "fcmtoken:dead";
    assert_int_equal(pdt_enqueue1(t, "f2", "mbf", "com.google.fcm", dead, pdt_now_ms() + HOUR), 1);
    assert_int_equal(pdt_wait(t, "fcm", 404, dead, 1, 20000), 1);
    pdt_sleep_ms(1000);
    assert_int_equal(pdt_count(t, "fcm", 0, dead), 1);
    assert_int_equal(pdt_count(t, "fcm", 200, "TokenIssued"), 1); /* access token cached */
    assert_int_equal(pdt_count(t, "fcm", 400, NULL) + pdt_count(t, "fcm", 401, NULL), 0);
    assert_int_equal(
        pdt_metric(t, "push_dispatch_dropped_total{provider=\"fcm\",reason=\"dead_token\"}"), 1);
}

/* Webhooks: signed (checked by the receiver), private targets refused unless allowed. */
static void test_webhook(void **state)
{
    pdt_t *t = *state;
    char url[128];
    assert_int_equal(pdt_fake_start(t, "webhook", 0, 0), 0);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/hook/abc", t->webhook_port);
    /* Default: loopback target refused, never contacted. */
    assert_int_equal(pdt_pd_start(t, NULL), 0);
    assert_int_equal(pdt_enqueue1(t, "w1", "mbw", "webhook", url, pdt_now_ms() + HOUR), 1);
    char lh[128];
    snprintf(lh, sizeof(lh), "https://localhost:%d/hook/lh", t->webhook_port);
    assert_int_equal(pdt_enqueue1(t, "w2", "mbw", "webhook", lh, pdt_now_ms() + HOUR), 1);
    assert_int_equal(
        pdt_enqueue1(t, "w3", "mbw", "webhook", "http://example.com/x", pdt_now_ms() + HOUR), 1);
    pdt_sleep_ms(1500);
    assert_int_equal(pdt_count(t, "webhook", 0, NULL), 0);
    assert_int_equal(pdt_metric(t, "push_dispatch_dropped_total{provider=\"webhook\",reason="
                                   "\"forbidden_target\"}"),
                     3);
    assert_int_equal(pdt_pd_stop(t), 0);
    /* Allowed (tests): delivered and the signature verifies; 503 retried. */
    const char *allow[] = {"--webhook-allow-private=1", NULL};
    pdt_ctl(t, "webhook", "{\"seq\":[503]}");
    assert_int_equal(pdt_pd_start(t, allow), 0);
    assert_int_equal(pdt_enqueue1(t, "w4", "mbw2", "webhook", url, pdt_now_ms() + HOUR), 1);
    assert_int_equal(pdt_wait(t, "webhook", 200, "w4", 1, 20000), 1);
    assert_int_equal(pdt_count(t, "webhook", 503, "w4"), 1);
    assert_int_equal(pdt_count(t, "webhook", 401, NULL), 0);
}

/* kill -9 in the middle of a burst of 1,000: every notification delivered at least once. */
static void test_kill9_burst(void **state)
{
    pdt_t *t = *state;
    pdt_ctl(t, "apns", "{\"delay_ms\":2}");
    assert_int_equal(pdt_fake_start(t, "apns", 0, 0), 0);
    assert_int_equal(pdt_pd_start(t, NULL), 0);
    assert_int_equal(pdt_enqueue_many(t, "burst", 0, 500, 1000, 50, APNS, pdt_now_ms() + HOUR),
                     500);
    pdt_wait(t, "apns", 200, NULL, 50, 20000);
    pdt_pd_kill9(t);
    int before = pdt_count_distinct(t, "apns", 200);
    assert_int_equal(pdt_pd_start(t, NULL), 0);
    /* The second half; the first half's unfinished ones come back from disk. */
    assert_int_equal(pdt_enqueue_many(t, "burst", 500, 500, 1000, 50, APNS, pdt_now_ms() + HOUR),
                     500);
    int64_t end = pdt_now_ms() + 60000;
    while (pdt_count_distinct(t, "apns", 200) < 1000 && pdt_now_ms() < end)
        pdt_sleep_ms(100);
    print_message("kill9 burst: %d delivered before kill -9, %d distinct after, %d requests\n",
                  before, pdt_count_distinct(t, "apns", 200), pdt_count(t, "apns", 0, NULL));
    assert_true(before < 1000);
    assert_int_equal(pdt_count_distinct(t, "apns", 200), 1000);
    assert_int_equal(pdt_pd_stop(t), 0);
}

/* SIGTERM with a delivery in flight: exits 0 within the grace period, and the notification
 * is delivered after the restart (the queue is durable). */
static void test_sigterm_inflight(void **state)
{
    pdt_t *t = *state;
    char k[65];
    tok(40, k);
    pdt_ctl(t, "apns", "{\"delay_ms\":4000}");
    assert_int_equal(pdt_fake_start(t, "apns", 0, 0), 0);
    const char *extra[] = {"--shutdown-grace-ms=300", "--max-attempts=1", NULL};
    assert_int_equal(pdt_pd_start(t, extra), 0);
    assert_int_equal(pdt_enqueue1(t, "s1", "mbs", APNS, k, pdt_now_ms() + HOUR), 1);
    pdt_sleep_ms(500); /* the request is at the fake, which sits on it */
    int64_t t0 = pdt_now_ms();
    assert_int_equal(pdt_pd_stop(t), 0);
    assert_true(pdt_now_ms() - t0 < 3000);
    pdt_ctl(t, "apns", "{}");
    /* --max-attempts=1: the cut attempt must not have counted. */
    assert_int_equal(pdt_pd_start(t, extra), 0);
    assert_int_equal(pdt_wait(t, "apns", 200, k, 2, 20000), 2); /* the slow one, then ours */
}

int main(void)
{
    cm_rpc_init();
    if (getenv("PDT_FILTER")) /* e.g. PDT_FILTER=test_kill9_burst */
        cmocka_set_test_filter(getenv("PDT_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_retry_then_delivered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_provider_down_then_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_token_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unconfigured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streams_and_goaway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fcm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_burst, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cm_rpc_shutdown();
    return rc;
}
