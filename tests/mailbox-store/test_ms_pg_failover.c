/* Failover of the database under the whole stack: phones create mailboxes through the real
 * gateway, whose mailbox-store runs on a PostgreSQL primary with a synchronous streaming
 * standby (fsync on), reached through a multi-host connection string with
 * target_session_attrs=read-write. Mid-load the primary is killed -9 (every server process at
 * once), and after a gap the standby is promoted. Asserted as a user sees it:
 * - every answer is 200 or 503: never another status, never a transport error;
 * - requests in the gap get 503 and the store reports NOT_SERVING (/readyz) meanwhile;
 * - every create that got 200 is readable afterwards (the synchronous standby had it);
 * - the store serves again by itself, without a restart, once the standby is promoted.
 * And with the standby gone (primary alive), a write the primary committed only locally is not
 * acknowledged: the engine answers UNAVAILABLE, not OK. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "cm_uuid.h"
#include "ms_engine.h"
#include "th.h"
#include "th_http.h"
#include "th_pg.h"
#include "th_stack.h"

#define START_MS 30000
#define THREADS 3
#define CAP 20000

typedef struct {
    th_pg_t pg;
    char dir[512];
    char key_file[600];
    th_proc_t store, gw;
    int http_port, store_admin;
} fx_t;

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    *state = fx;
    if (th_tempdir("ms-failover", fx->dir, sizeof(fx->dir)) != 0 ||
        th_pg_start(&fx->pg, TH_PG_STANDBY) != 0)
        return -1;
    snprintf(fx->key_file, sizeof(fx->key_file), "%s/claim.key", fx->dir);
    FILE *f = fopen(fx->key_file, "w");
    if (!f)
        return -1;
    /* key rings (common/cm_seal.h): the claim key and the token key, one each */
    fputs("1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", f);
    fclose(f);
    char token_file[600], tok[700];
    snprintf(token_file, sizeof(token_file), "%s/token-keys", fx->dir);
    f = fopen(token_file, "w");
    if (!f)
        return -1;
    fputs("1 ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n", f);
    fclose(f);
    snprintf(tok, sizeof(tok), "--token-key-file=%s", token_file);
    char url[700], key[700];
    snprintf(url, sizeof(url), "--database-url-file=%s", fx->pg.url_path);
    snprintf(key, sizeof(key), "--claim-key-file=%s", fx->key_file);
    const char *store_args[] = {"--engine=postgres",
                                url,
                                key,
                                tok,
                                "--sweep-interval-ms=100",
                                "--db-statement-timeout-ms=2000",
                                "--log-level=warn",
                                NULL};
    if (th_store_start(&fx->store, fx->dir, 0, store_args, START_MS) != 0)
        return -1;
    fx->store_admin = th_proc_port(&fx->store, "admin_port");
    char target[64];
    snprintf(target, sizeof(target), "--store-target=127.0.0.1:%d",
             th_proc_port(&fx->store, "grpc_port"));
    const char *gw_args[] = {target, "--public-base-url=https://relay.example/", "--log-level=warn",
                             NULL};
    if (th_gateway_start(&fx->gw, gw_args, START_MS) != 0)
        return -1;
    fx->http_port = th_proc_port(&fx->gw, "http_port");
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    th_proc_cleanup(&fx->gw);
    th_proc_cleanup(&fx->store);
    th_pg_stop(&fx->pg);
    if (fx->dir[0])
        th_rmtree(fx->dir);
    free(fx);
    return 0;
}

/* ---- requests ---- */

typedef struct {
    char id[37], claim[37];
} made_t;

/* POST /v1/m; the status, or -1 on a transport error. */
static long create(CURL *c, int port, made_t *m)
{
    char corr[37], body[1024], hc[80], hr[80];
    cm_uuid_v4(m->id);
    cm_uuid_v4(m->claim);
    cm_uuid_v4(corr);
    snprintf(body, sizeof(body),
             "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES128\","
             "\"data\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"},"
             "\"displayInformation\":{\"title\":\"Car Key\",\"description\":\"A key\","
             "\"imageUrl\":\"https://img.example/k.png\"},"
             "\"mailboxConfiguration\":{\"accessRights\":\"RWD\",\"timeToLive\":\"3600\"}}",
             m->id);
    snprintf(hc, sizeof(hc), "deviceClaim: %s", m->claim);
    snprintf(hr, sizeof(hr), "Mailbox-Correlation-ID: %s", corr);
    const char *h[] = {hc, hr, NULL};
    th_http_req_t rq = {.proto = TH_HTTP_H1,
                        .port = port,
                        .method = "POST",
                        .path = "/v1/m",
                        .headers = h,
                        .body = body,
                        .timeout_ms = 15000};
    th_http_resp_t r;
    long st = th_http_request(c, &rq, &r) == 0 ? r.status : -1;
    if (st != 200 && st != 503)
        print_message("create: %ld %s %s\n", st, r.body, r.err);
    th_http_resp_free(&r);
    return st;
}

/* ReadSecure by the creator: POST /v1/m/<id>. The status, or -1. */
static long read_back(CURL *c, int port, const made_t *m)
{
    char path[80], corr[37], hc[80], hr[80];
    cm_uuid_v4(corr);
    snprintf(path, sizeof(path), "/v1/m/%s", m->id);
    snprintf(hc, sizeof(hc), "deviceClaim: %s", m->claim);
    snprintf(hr, sizeof(hr), "Mailbox-Correlation-ID: %s", corr);
    const char *h[] = {hc, hr, NULL};
    th_http_req_t rq = {.proto = TH_HTTP_H1,
                        .port = port,
                        .method = "POST",
                        .path = path,
                        .headers = h,
                        .empty_post = 1,
                        .timeout_ms = 15000};
    th_http_resp_t r;
    long st = th_http_request(c, &rq, &r) == 0 ? r.status : -1;
    th_http_resp_free(&r);
    return st;
}

static long readyz(CURL *c, int port)
{
    th_http_req_t rq = {
        .proto = TH_HTTP_H1, .port = port, .method = "GET", .path = "/readyz", .timeout_ms = 5000};
    th_http_resp_t r;
    long st = th_http_request(c, &rq, &r) == 0 ? r.status : -1;
    th_http_resp_free(&r);
    return st;
}

/* ---- load ---- */

typedef struct {
    int port;
    volatile int *stop;
    made_t *ok; /* creates answered 200 */
    int nok;
    int n503, nother;
    long long last_503_ms, first_ok_after_ms; /* see failover_under_load */
    volatile long long *promoted_ms;
} load_t;

static void *load_thread(void *argp)
{
    load_t *l = argp;
    CURL *c = curl_easy_init();
    while (!*l->stop && l->nok < CAP) {
        made_t m;
        long st = create(c, l->port, &m);
        if (st == 200) {
            l->ok[l->nok++] = m;
            if (*l->promoted_ms && !l->first_ok_after_ms)
                l->first_ok_after_ms = th_now_ms();
        } else if (st == 503) {
            l->n503++;
            l->last_503_ms = th_now_ms();
            usleep(20000);
        } else {
            l->nother++;
        }
    }
    curl_easy_cleanup(c);
    return NULL;
}

static void failover_under_load(void **state)
{
    fx_t *fx = *state;
    CURL *c = curl_easy_init();
    assert_int_equal(readyz(c, fx->store_admin), 200);
    volatile int stop = 0;
    volatile long long promoted_ms = 0;
    load_t l[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        l[i] = (load_t){.port = fx->http_port, .stop = &stop, .promoted_ms = &promoted_ms};
        l[i].ok = calloc(CAP, sizeof(made_t));
        assert_int_equal(pthread_create(&th[i], NULL, load_thread, &l[i]), 0);
    }
    usleep(1500000);
    int before = 0;
    for (int i = 0; i < THREADS; i++)
        before += l[i].nok;

    long long killed_ms = th_now_ms();
    th_pg_kill_primary(&fx->pg);
    /* The gap: the store must say it cannot serve. */
    int saw_not_ready = 0;
    while (th_now_ms() - killed_ms < 2000) {
        saw_not_ready |= readyz(c, fx->store_admin) == 503;
        usleep(50000);
    }
    assert_int_equal(th_pg_promote(&fx->pg), 0);
    promoted_ms = th_now_ms();
    /* Recovery by itself: creates succeed again and /readyz says so. */
    int recovered = 0;
    while (!recovered && th_now_ms() - promoted_ms < 30000) {
        recovered = readyz(c, fx->store_admin) == 200;
        for (int i = 0; i < THREADS; i++)
            recovered &= l[i].first_ok_after_ms != 0;
        usleep(50000);
    }
    long long recovered_ms = th_now_ms();
    usleep(1000000);
    stop = 1;
    int total = 0, n503 = 0, other = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        total += l[i].nok;
        n503 += l[i].n503;
        other += l[i].nother;
    }
    print_message("creates: %d x 200 (%d before the kill), %d x 503, %d other; store serving "
                  "again %lld ms after the promotion\n",
                  total, before, n503, other, recovered_ms - promoted_ms);
    assert_true(before > 0);
    assert_int_equal(other, 0);
    assert_true(n503 > 0);
    assert_true(saw_not_ready);
    assert_true(recovered);

    /* Every acknowledged create survived the loss of the primary. */
    int missing = 0;
    for (int i = 0; i < THREADS; i++) {
        for (int k = 0; k < l[i].nok; k++) {
            long st = read_back(c, fx->http_port, &l[i].ok[k]);
            if (st != 200) {
                missing++;
                print_message("acknowledged mailbox unreadable: %ld\n", st);
            }
        }
        free(l[i].ok);
    }
    assert_int_equal(missing, 0);
    curl_easy_cleanup(c);
}

/* ---- the standby unreachable ---- */

static ms_err_t put_body(ms_txn_t *t, void *arg)
{
    ms_engine_t *e = arg;
    uint8_t *b = NULL;
    size_t n = 0;
    ms_err_t err = e->ops->get_record(t, &b, &n);
    free(b);
    if (err == MS_OK)
        return MS_ERR_EXISTS;
    if (err != MS_ERR_NOT_FOUND)
        return err;
    return e->ops->put_record(t, INT64_MAX, (const uint8_t *)"r", 1);
}

static void standby_lost_commit_not_acknowledged(void **state)
{
    th_pg_t pg;
    (void)state;
    assert_int_equal(th_pg_start(&pg, TH_PG_STANDBY), 0);
    ms_pg_opts_t o = {
        .database_url_file = pg.url_path, .pool_size = 2, .statement_timeout_ms = 500};
    ms_engine_t *e = NULL;
    char err[256];
    assert_int_equal(ms_engine_pg_open(&o, &e, err, sizeof(err)), MS_OK);
    char id[37];
    cm_uuid_v4(id);
    assert_int_equal(e->ops->run(e, id, put_body, e), MS_OK);

    th_pg_kill_node(&pg, &pg.standby);
    cm_uuid_v4(id);
    long long t0 = th_now_ms();
    assert_int_equal(e->ops->run(e, id, put_body, e), MS_ERR_UNAVAILABLE);
    assert_true(th_now_ms() - t0 < 5000);

    /* The standby back: it catches up and commits are acknowledged again. */
    assert_int_equal(th_pg_restart(&pg, &pg.standby), 0);
    ms_err_t rc = MS_ERR_UNAVAILABLE;
    long long end = th_now_ms() + 30000;
    while (rc != MS_OK && th_now_ms() < end) {
        cm_uuid_v4(id);
        rc = e->ops->run(e, id, put_body, e);
    }
    assert_int_equal(rc, MS_OK);
    ms_engine_close(e);
    th_pg_stop(&pg);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(failover_under_load, setup, teardown),
        cmocka_unit_test(standby_lost_commit_not_acknowledged),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
