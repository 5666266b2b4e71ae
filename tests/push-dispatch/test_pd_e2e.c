/* End to end: phones talk to the real gateway, which uses the real mailbox-store, whose outbox
 * feeds the real push-dispatch, which pushes to the fake APNs. Asserted at the fake: who gets
 * woken, how often, and that nothing is lost when the store is killed -9 mid-burst. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "cm_b64.h"
#include "cm_uuid.h"
#include "pdt.h"

typedef struct {
    pdt_t t;
    th_proc_t store, gw;
    char store_data[700];
    int store_port, http_port;
    CURL *curl;
} e2e_t;

static int store_start(e2e_t *e, int port)
{
    char bin[600], listen[64], data[800], push[64];
    th_bin("mailbox-store", bin, sizeof(bin));
    snprintf(listen, sizeof(listen), "--listen=127.0.0.1:%d", port);
    snprintf(data, sizeof(data), "--data-dir=%s", e->store_data);
    snprintf(push, sizeof(push), "--push-target=127.0.0.1:%d", e->t.grpc_port);
    char *argv[] = {bin, listen, data, push, "--admin-listen=127.0.0.1:0", "--log-level=warn",
                    NULL};
    pdt_proc_cleanup(&e->store);
    if (th_proc_start(&e->store, argv, 30000) != 0)
        return -1;
    e->store_port = th_proc_port(&e->store, "grpc_port");
    return 0;
}

static int gw_start(e2e_t *e)
{
    char bin[600], store[64], push[64], cert[700], key[700];
    th_bin("gateway", bin, sizeof(bin));
    snprintf(store, sizeof(store), "--store-target=127.0.0.1:%d", e->store_port);
    snprintf(push, sizeof(push), "--push-target=127.0.0.1:%d", e->t.grpc_port);
    snprintf(cert, sizeof(cert), "--tls-cert=%s/server.pem", e->t.dir);
    snprintf(key, sizeof(key), "--tls-key=%s/server.key", e->t.dir);
    char *argv[] = {bin,
                    store,
                    push,
                    cert,
                    key,
                    "--http-listen=127.0.0.1:0",
                    "--https-listen=127.0.0.1:0",
                    "--admin-listen=127.0.0.1:0",
                    "--access-log=0",
                    "--log-level=warn",
                    "--public-base-url=https://relay.example/",
                    "--rate-limit-exempt=127.0.0.0/8", /* bursts of writes from one client */
                    NULL};
    if (th_proc_start(&e->gw, argv, 30000) != 0)
        return -1;
    e->http_port = th_proc_port(&e->gw, "http_port");
    return 0;
}

static int setup(void **state)
{
    e2e_t *e = calloc(1, sizeof(*e));
    if (!e || pdt_init(&e->t) != 0)
        return -1;
    snprintf(e->store_data, sizeof(e->store_data), "%s/store", e->t.dir);
    const char *extra[] = {"--mailbox-budget=2000", NULL};
    if (pdt_fake_start(&e->t, "apns", 0, 0) != 0 || pdt_pd_start(&e->t, extra) != 0 ||
        store_start(e, 0) != 0 || gw_start(e) != 0)
        return -1;
    e->curl = curl_easy_init();
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    e2e_t *e = *state;
    if (e->curl)
        curl_easy_cleanup(e->curl);
    pdt_proc_cleanup(&e->gw);
    pdt_proc_cleanup(&e->store);
    pdt_fini(&e->t);
    free(e);
    return 0;
}

typedef struct {
    char body[4096];
    size_t len;
} buf_t;

static size_t on_body(char *p, size_t s, size_t n, void *u)
{
    buf_t *b = u;
    size_t c = s * n, room = sizeof(b->body) - 1 - b->len;
    memcpy(b->body + b->len, p, c < room ? c : room);
    b->len += c < room ? c : room;
    b->body[b->len] = '\0';
    return s * n;
}

/* One HTTP/1.1 request to the gateway; returns the status (0 on a transport error). */
static long req(e2e_t *e, const char *method, const char *id, const char *claim, const char *corr,
                const char *body, buf_t *out)
{
    char url[200], hc[128], hcorr[200];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/m%s%s", e->http_port, id ? "/" : "",
             id ? id : "");
    struct curl_slist *h = NULL;
    snprintf(hc, sizeof(hc), "deviceClaim: %s", claim);
    h = curl_slist_append(h, hc);
    if (corr) {
        snprintf(hcorr, sizeof(hcorr), "Mailbox-Correlation-ID: %s", corr);
        h = curl_slist_append(h, hcorr);
    }
    h = curl_slist_append(h, "Content-Type: application/json");
    buf_t tmp;
    buf_t *b = out ? out : &tmp;
    b->len = 0;
    b->body[0] = '\0';
    CURL *c = e->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    long st = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_slist_free_all(h);
    return st;
}

static void uuid(char out[37])
{
    assert_int_equal(cm_uuid_v4(out), 0);
}

static void payload(char *out)
{
    uint8_t raw[40];
    memset(raw, 7, sizeof(raw));
    cm_b64_encode(CM_B64_STD, raw, sizeof(raw), out);
}

/* Creates a mailbox as |sender| with APNs token |tok|; returns isPushNotificationSupported. */
static int create(e2e_t *e, const char *id, const char *sender, const char *tok)
{
    char body[1024], data[80], corr[37];
    payload(data);
    uuid(corr);
    snprintf(body, sizeof(body),
             "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"Car Key\",\"description\":\"A key\","
             "\"imageUrl\":\"https://img.example/k.png\"},"
             "\"notificationToken\":{\"type\":\"com.apple.apns\",\"tokenData\":\"%s\"},"
             "\"mailboxConfiguration\":{\"accessRights\":\"RWD\",\"timeToLive\":\"3600\"}}",
             id, data, tok);
    buf_t b;
    long st = req(e, "POST", NULL, sender, corr, body, &b);
    if (st != 200)
        fail_msg("create: %ld %s", st, b.body);
    cJSON *j = cJSON_Parse(b.body);
    assert_non_null(j);
    int push = cJSON_IsTrue(cJSON_GetObjectItem(j, "isPushNotificationSupported"));
    cJSON_Delete(j);
    return push;
}

static long update(e2e_t *e, const char *id, const char *claim, const char *corr, const char *tok)
{
    char body[1024], data[80];
    payload(data);
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"notificationToken\":{\"type\":\"com.apple.apns\",\"tokenData\":\"%s\"}}",
             data, tok);
    return req(e, "PUT", id, claim, corr, body, NULL);
}

static long read_secure(e2e_t *e, const char *id, const char *claim)
{
    char corr[37];
    uuid(corr);
    return req(e, "POST", id, claim, corr, NULL, NULL);
}

/* Receiver updates -> the sender's device gets exactly one push, and the other way round;
 * a deleted mailbox's token is never used. */
static void test_flow(void **state)
{
    e2e_t *e = *state;
    pdt_t *t = &e->t;
    char id[37], sender[37], receiver[37], corr[37], ts[65], tr[65];
    uuid(id);
    uuid(sender);
    uuid(receiver);
    pdt_token(501, ts);
    pdt_token(502, tr);
    assert_int_equal(create(e, id, sender, ts), 1);
    assert_int_equal(read_secure(e, id, receiver), 200);
    uuid(corr);
    assert_int_equal(update(e, id, receiver, corr, tr), 200);
    assert_int_equal(pdt_wait(t, "apns", 200, ts, 1, 20000), 1);
    /* A retried request (same correlation id: 201 "duplicate") wakes no one again. */
    assert_int_equal(update(e, id, receiver, corr, tr), 201);
    pdt_sleep_ms(1500);
    assert_int_equal(pdt_count(t, "apns", 0, ts), 1);
    assert_int_equal(pdt_count(t, "apns", 0, tr), 0);
    uuid(corr);
    assert_int_equal(update(e, id, sender, corr, ts), 200);
    assert_int_equal(pdt_wait(t, "apns", 200, tr, 1, 20000), 1);
    pdt_sleep_ms(1000);
    assert_int_equal(pdt_count(t, "apns", 0, tr), 1);
    assert_int_equal(pdt_count(t, "apns", 0, ts), 1);

    /* Second mailbox: APNs unavailable, so the receiver's update waits in push-dispatch's
     * queue; then the mailbox is deleted: its token must never be used. */
    char id2[37], s2[65], r2[65];
    uuid(id2);
    pdt_token(601, s2);
    pdt_token(602, r2);
    assert_int_equal(create(e, id2, sender, s2), 1);
    assert_int_equal(read_secure(e, id2, receiver), 200);
    pdt_ctl(t, "apns", "{\"default\":503,\"retry_after\":3}");
    uuid(corr);
    assert_int_equal(update(e, id2, receiver, corr, r2), 200);
    assert_int_equal(pdt_wait(t, "apns", 503, s2, 1, 20000), 1);
    assert_int_equal(req(e, "DELETE", id2, receiver, NULL, NULL, NULL), 200);
    pdt_sleep_ms(500); /* the store forwards the cancel */
    pdt_ctl(t, "apns", "{}");
    pdt_sleep_ms(4000); /* past the Retry-After */
    assert_int_equal(pdt_count(t, "apns", 200, s2), 0);
    assert_int_equal(pdt_count(t, "apns", 0, s2), 1);
}

/* kill -9 of push-dispatch, then of the mailbox-store, in the middle of a burst of 1,000
 * updates (one per mailbox, so each notification has its own token): every one is pushed at
 * least once. */
static void test_store_kill9_burst(void **state)
{
    e2e_t *e = *state;
    pdt_t *t = &e->t;
    enum { N = 1000 };
    char(*ids)[37] = calloc(N, 37);
    char(*corrs)[37] = calloc(N, 37);
    char sender[37], receiver[37], tok[65], rt[65];
    uuid(sender);
    uuid(receiver);
    pdt_token(9999, rt);
    for (int i = 0; i < N; i++) {
        uuid(ids[i]);
        uuid(corrs[i]);
        pdt_token(10000 + i, tok);
        create(e, ids[i], sender, tok);
        assert_int_equal(read_secure(e, ids[i], receiver), 200);
    }
    /* A slow provider, so push-dispatch has a backlog when it is killed. */
    pdt_ctl(t, "apns", "{\"delay_ms\":10}");
    int port = e->store_port, killed = 0, failed = 0, backlog = 0, store_hold = -1;
    for (int i = 0; i < N; i++) {
        if (i == N / 4) {
            /* Restarted on the same port: the store's channel reconnects by itself. */
            t->pd_listen_port = t->grpc_port;
            backlog = i - pdt_count(t, "apns", 200, NULL);
            pdt_pd_kill9(t);
            int hold = th_port_hold(t->pd_listen_port);
            assert_true(hold >= 0);
            const char *extra[] = {"--mailbox-budget=2000", NULL};
            assert_int_equal(pdt_pd_start(t, extra), 0);
            th_port_release(hold);
        }
        if (i == N / 2) {
            store_hold = th_proc_kill9_hold(&e->store, port);
            assert_true(store_hold >= 0);
            killed = 1;
        }
        long st = update(e, ids[i], receiver, corrs[i], rt);
        if (st != 200) {
            failed++;
            if (killed == 1) {
                assert_int_equal(store_start(e, port), 0);
                th_port_release(store_hold);
                killed = 2;
            }
            /* The phone retries with the same correlation id until it gets an answer. */
            int64_t end = pdt_now_ms() + 30000;
            while ((st = update(e, ids[i], receiver, corrs[i], rt)) != 200 && st != 201 &&
                   pdt_now_ms() < end)
                pdt_sleep_ms(100);
            assert_true(st == 200 || st == 201);
        }
    }
    int64_t end = pdt_now_ms() + 90000;
    while (pdt_count_distinct(t, "apns", 200) < N && pdt_now_ms() < end)
        pdt_sleep_ms(200);
    print_message("kill9 burst: %d not yet pushed when push-dispatch was killed, %d updates failed "
                  "around the store's kill, %d distinct pushed, %d requests at the fake\n",
                  backlog, failed, pdt_count_distinct(t, "apns", 200),
                  pdt_count(t, "apns", 0, NULL));
    assert_int_equal(pdt_count_distinct(t, "apns", 200), N);
    free(ids);
    free(corrs);
}

int main(void)
{
    cm_rpc_init();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (getenv("PDT_FILTER"))
        cmocka_set_test_filter(getenv("PDT_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_kill9_burst, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    cm_rpc_shutdown();
    return rc;
}
