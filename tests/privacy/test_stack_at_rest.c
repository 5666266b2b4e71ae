/* Nothing identifying at rest, through the real stack: phones talk to the real gateway, which
 * uses the real mailbox-store, whose outbox feeds the real push-dispatch, which pushes to the
 * fake APNs (HTTP/2 + TLS). After a run of every public operation, the processes are stopped
 * and every byte of their data directories (RocksDB tables, WAL, manifests, key-less logs) and
 * of their logs is searched for each device claim and notification token the run used, in
 * every encoding (pv_scan). Then the keys rotate: the services restart with a ring holding the
 * old and a new key; the old mailbox is still readable by its bound devices, its pushes still
 * reach the right tokens, and new values are sealed under the new key.
 *
 * "--engine=postgres" (or TEST_ENGINE=postgres) runs the store on a real PostgreSQL cluster
 * started by the test instead, and the whole cluster directory (tables, WAL, server log) is
 * searched as well. */
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
#include <openssl/sha.h>

#include "cm_b64.h"
#include "cm_seal.h"
#include "cm_uuid.h"
#include "ms_record.h"
#include "pdt.h"
#include "pv_scan.h"
#include "th_http.h"
#include "th_pg.h"
#include "th_stack.h"

#define MAX_SECRETS 256

static int use_pg; /* the store on PostgreSQL */
static th_pg_t pg; /* started once, by the first setup */
static int pg_up, pg_dbs;

typedef struct {
    pdt_t t;
    th_proc_t store, gw;
    char store_data[700];
    char token_ring[700], claim_ring[700];
    char db_url_file[600]; /* PostgreSQL: this test's database */
    char db[32];
    int store_port, http_port;
    int pd_hold; /* th_port_hold of push-dispatch's port while it is down, or -1 */
    CURL *curl;
    /* every claim and token the run used, to search for */
    char *secrets[MAX_SECRETS];
    size_t nsecrets;
} stk_t;

static const char KT1[] = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
static const char KT2[] = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
static const char KC1[] = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
static const char KC2[] = "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Writes the token and claim rings: key 1 only (|both| 0) or keys 1 and 2. */
static void write_rings(stk_t *s, int both)
{
    char text[400];
    snprintf(text, sizeof(text), "1 %s\n%s%s%s", KT1, both ? "2 " : "", both ? KT2 : "",
             both ? "\n" : "");
    write_file(s->token_ring, text);
    snprintf(text, sizeof(text), "1 %s\n%s%s%s", KC1, both ? "2 " : "", both ? KC2 : "",
             both ? "\n" : "");
    write_file(s->claim_ring, text);
}

static const char *remember(stk_t *s, const char *secret)
{
    assert_true(s->nsecrets < MAX_SECRETS);
    s->secrets[s->nsecrets] = strdup(secret);
    return s->secrets[s->nsecrets++];
}

/* 64 random-looking hex digits (an APNs token), remembered. */
static const char *new_token(stk_t *s, char out[65])
{
    uint8_t raw[32];
    char uid[37];
    assert_int_equal(cm_uuid_v4(uid), 0);
    SHA256((const uint8_t *)uid, strlen(uid), raw);
    for (int j = 0; j < 32; j++)
        snprintf(out + 2 * j, 3, "%02x", raw[j]);
    return remember(s, out);
}

/* A device claim: a random UUID (the API's format); remembered. */
static const char *new_claim(stk_t *s, char out[64])
{
    assert_int_equal(cm_uuid_v4(out), 0);
    return remember(s, out);
}

static int store_start(stk_t *s)
{
    char push[64], tk[800], ck[800];
    snprintf(push, sizeof(push), "--push-target=127.0.0.1:%d", s->t.grpc_port);
    snprintf(tk, sizeof(tk), "--token-key-file=%s", s->token_ring);
    snprintf(ck, sizeof(ck), "--claim-key-file=%s", s->claim_ring);
    char url[700];
    snprintf(url, sizeof(url), "--database-url-file=%s", s->db_url_file);
    const char *extra[] = {push, tk,  ck, "--log-level=debug", use_pg ? "--engine=postgres" : NULL,
                           url,  NULL};
    pdt_proc_cleanup(&s->store);
    if (th_store_start(&s->store, s->store_data, s->store_port, extra, 30000) != 0)
        return -1;
    s->store_port = th_proc_port(&s->store, "grpc_port");
    return 0;
}

static int pd_start(stk_t *s)
{
    char tk[800];
    snprintf(tk, sizeof(tk), "--token-key-file=%s", s->token_ring);
    /* Never give up on a notification within a test, however slow the machine: what is
     * checked is who gets pushed, not the retry limit. */
    const char *extra[] = {tk, "--log-level=debug", "--max-attempts=100000", NULL};
    return pdt_pd_start(&s->t, extra);
}

static int gw_start(stk_t *s)
{
    char store[64], push[64];
    snprintf(store, sizeof(store), "--store-target=127.0.0.1:%d", s->store_port);
    snprintf(push, sizeof(push), "--push-target=127.0.0.1:%d", s->t.grpc_port);
    const char *extra[] = {store, push, "--log-level=debug", NULL};
    pdt_proc_cleanup(&s->gw);
    if (th_gateway_start(&s->gw, extra, 30000) != 0)
        return -1;
    s->http_port = th_proc_port(&s->gw, "http_port");
    return 0;
}

/* Stops push-dispatch cleanly (exit 0) and holds its port for pd_up. */
static void pd_down(stk_t *s)
{
    assert_int_equal(pdt_pd_stop(&s->t), 0);
    s->pd_hold = th_port_hold(s->t.grpc_port);
    assert_true(s->pd_hold >= 0);
}

/* push-dispatch keeps its port across restarts, so the store's channel finds it. */
static void pd_up(stk_t *s)
{
    s->t.pd_listen_port = s->t.grpc_port;
    assert_int_equal(pd_start(s), 0);
    th_port_release(s->pd_hold);
    s->pd_hold = -1;
}

/* Stops the three services cleanly (exit 0), push-dispatch last. */
static void stop_all(stk_t *s)
{
    assert_int_equal(th_proc_stop_clean(&s->gw, "gateway", 20000), 0);
    assert_int_equal(th_proc_stop_clean(&s->store, "mailbox-store", 20000), 0);
    pd_down(s);
}

static void start_all(stk_t *s)
{
    pd_up(s);
    assert_int_equal(store_start(s), 0);
    assert_int_equal(gw_start(s), 0);
}

static int setup(void **state)
{
    stk_t *s = calloc(1, sizeof(*s));
    if (!s || pdt_init(&s->t) != 0)
        return -1;
    s->pd_hold = -1;
    snprintf(s->store_data, sizeof(s->store_data), "%s/store", s->t.dir);
    snprintf(s->token_ring, sizeof(s->token_ring), "%s/token-keys", s->t.dir);
    snprintf(s->claim_ring, sizeof(s->claim_ring), "%s/claim-keys", s->t.dir);
    write_rings(s, 0);
    if (use_pg) {
        if (!pg_up && th_pg_start(&pg, 0) != 0)
            return -1;
        pg_up = 1;
        snprintf(s->db, sizeof(s->db), "stack%d", ++pg_dbs);
        if (th_pg_create_db(&pg, s->db, s->db_url_file, sizeof(s->db_url_file)) != 0)
            return -1;
    }
    if (pdt_fake_start(&s->t, "apns", 0, 0) != 0 || pd_start(s) != 0 || store_start(s) != 0 ||
        gw_start(s) != 0)
        return -1;
    s->curl = curl_easy_init();
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    stk_t *s = *state;
    if (s->curl)
        curl_easy_cleanup(s->curl);
    pdt_proc_cleanup(&s->gw);
    pdt_proc_cleanup(&s->store);
    th_port_release(s->pd_hold);
    pdt_fini(&s->t);
    for (size_t i = 0; i < s->nsecrets; i++)
        free(s->secrets[i]);
    free(s);
    return 0;
}

/* One request to the gateway (HTTP/1.1); returns the status. */
static long api(stk_t *s, const char *method, const char *id, const char *claim, const char *body)
{
    char path[128], hc[200], hcorr[80], corr[37];
    snprintf(path, sizeof(path), "/v1/m%s%s", id ? "/" : "", id ? id : "");
    snprintf(hc, sizeof(hc), "deviceClaim: %s", claim ? claim : "");
    assert_int_equal(cm_uuid_v4(corr), 0);
    snprintf(hcorr, sizeof(hcorr), "Mailbox-Correlation-ID: %s", corr);
    const char *headers[] = {hc, hcorr, NULL};
    th_http_req_t rq = {.proto = TH_HTTP_H1,
                        .port = s->http_port,
                        .method = method,
                        .path = path,
                        .headers = claim ? headers : headers + 1,
                        .body = body,
                        .empty_post = 1};
    th_http_resp_t r;
    if (th_http_request(s->curl, &rq, &r) != 0)
        fail_msg("%s %s: %s", method, path, r.err);
    long st = r.status;
    th_http_resp_free(&r);
    return st;
}

static long create(stk_t *s, const char *id, const char *claim, const char *tok)
{
    char body[1024], data[80];
    uint8_t raw[40];
    memset(raw, 9, sizeof(raw));
    cm_b64_encode(CM_B64_STD, raw, sizeof(raw), data);
    snprintf(body, sizeof(body),
             "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"Car Key\",\"description\":\"A key\","
             "\"imageUrl\":\"https://img.example/k.png\"},"
             "\"notificationToken\":{\"type\":\"com.apple.apns\",\"tokenData\":\"%s\"},"
             "\"mailboxConfiguration\":{\"accessRights\":\"RWD\",\"timeToLive\":\"3600\"}}",
             id, data, tok);
    return api(s, "POST", NULL, claim, body);
}

static long update(stk_t *s, const char *id, const char *claim, const char *tok)
{
    char body[1024], data[80];
    uint8_t raw[40];
    memset(raw, 5, sizeof(raw));
    cm_b64_encode(CM_B64_STD, raw, sizeof(raw), data);
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"notificationToken\":{\"type\":\"com.apple.apns\",\"tokenData\":\"%s\"}}",
             data, tok);
    return api(s, "PUT", id, claim, body);
}

/* Scans the data directories and logs for every remembered secret; returns the hits. */
static int scan_everything(stk_t *s)
{
    /* PostgreSQL: the store's data is the cluster's (tables after a checkpoint, WAL, log). */
    if (use_pg) {
        /* A canary written in clear must be found, or the search would prove nothing. */
        static const char canary[] = "canary-5f0b7c1e-written-in-clear";
        char sql[200];
        snprintf(sql, sizeof(sql),
                 "CREATE TABLE IF NOT EXISTS canary (t text); INSERT INTO canary VALUES ('%s')",
                 canary);
        assert_int_equal(th_pg_query(&pg, 0, NULL, sql, NULL, 0), 0);
        assert_int_equal(th_pg_query(&pg, 0, NULL, "CHECKPOINT", NULL, 0), 0);
        assert_true(pv_scan(pg.root, canary) > 0);
    }
    const char *dirs[] = {use_pg ? pg.root : s->store_data, s->t.data};
    const char *logs[] = {s->store.log_path, s->t.pd.log_path, s->gw.log_path};
    int hits = 0;
    for (size_t d = 0; d < 2; d++) {
        size_t bytes = 0, files = pv_dir_files(dirs[d], &bytes);
        print_message("scan %s: %zu files, %zu bytes\n", dirs[d], files, bytes);
        assert_true(files >= 3);
        hits += pv_scan_all(dirs[d], (const char *const *)s->secrets, s->nsecrets);
    }
    for (size_t l = 0; l < 3; l++) {
        /* The log's own directory (ready file, log): a file at a time is enough. */
        char dir[600];
        snprintf(dir, sizeof(dir), "%s", logs[l]);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        hits += pv_scan_all(dir, (const char *const *)s->secrets, s->nsecrets);
    }
    return hits;
}

/* Every public operation, then a byte search of everything the services left behind. */
static void nothing_in_clear(void **state)
{
    stk_t *s = *state;
    pdt_t *t = &s->t;
    enum { N = 8 };
    char id[N][37], sc[N][64], rc[N][64], st[N][65], rt[N][65], rt2[N][65];
    for (int i = 0; i < N; i++) {
        assert_int_equal(cm_uuid_v4(id[i]), 0);
        new_claim(s, sc[i]);
        new_claim(s, rc[i]);
        new_token(s, st[i]);
        new_token(s, rt[i]);
        new_token(s, rt2[i]);
        assert_int_equal(create(s, id[i], sc[i], st[i]), 200);
        assert_int_equal(api(s, "GET", id[i], NULL, NULL), 200);
        assert_int_equal(api(s, "POST", id[i], rc[i], NULL), 200);
        assert_int_equal(update(s, id[i], rc[i], rt[i]), 200);
        assert_int_equal(pdt_wait(t, "apns", 200, st[i], 1, 30000), 1);
        assert_int_equal(update(s, id[i], sc[i], st[i]), 200);
        assert_int_equal(pdt_wait(t, "apns", 200, rt[i], 1, 30000), 1);
    }
    /* Pushes that stay queued: APNs refuses for now. */
    pdt_ctl(t, "apns", "{\"default\":503}");
    for (int i = 0; i < N; i++)
        assert_int_equal(update(s, id[i], rc[i], rt2[i]), 200);
    assert_true(pdt_wait(t, "apns", 503, NULL, N, 30000) >= N);
    /* Some receivers leave, some mailboxes are deleted, the rest stay. */
    for (int i = 0; i < N / 4; i++)
        assert_int_equal(api(s, "PATCH", id[i], rc[i], NULL), 200);
    for (int i = N / 4; i < N / 2; i++)
        assert_int_equal(api(s, "DELETE", id[i], sc[i], NULL), 200);
    /* Failed attempts with the claims of others, for the logs. */
    assert_int_equal(api(s, "POST", id[N - 1], sc[0], NULL), 401);
    stop_all(s);
    assert_int_equal(scan_everything(s), 0);
}

/* The store's record of mailbox |id| as `mailbox-store --dump` prints it (the process must be
 * stopped); NULL when absent. cJSON_Delete it. */
static cJSON *dumped_record(stk_t *s, const char *id)
{
    char bin[600], cmd[2000], line[4096];
    th_bin("mailbox-store", bin, sizeof(bin));
    snprintf(cmd, sizeof(cmd), "%s --data-dir=%s --dump", bin, s->store_data);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    cJSON *found = NULL;
    while (fgets(line, sizeof(line), p)) {
        cJSON *o = cJSON_Parse(line);
        assert_non_null(o);
        const char *kind = cJSON_GetStringValue(cJSON_GetObjectItem(o, "kind"));
        const char *mid = cJSON_GetStringValue(cJSON_GetObjectItem(o, "mailbox_id"));
        if (!found && kind && strcmp(kind, "mailbox") == 0 && mid && strcmp(mid, id) == 0)
            found = o;
        else
            cJSON_Delete(o);
    }
    assert_int_equal(pclose(p), 0);
    return found;
}

static int num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItem(o, name);
    if (!cJSON_IsNumber(v))
        fail_msg("dump: no %s", name);
    return (int)v->valuedouble;
}

/* Key ids in the stored record of mailbox |id|: creator claim, receiver claim, creator token,
 * receiver token (-1: none). RocksDB through `mailbox-store --dump`; PostgreSQL by decoding the
 * record row with the store's own decoder. The store must be stopped (RocksDB). */
static void record_key_ids(stk_t *s, const char *id, int out[4])
{
    if (!use_pg) {
        cJSON *r = dumped_record(s, id);
        assert_non_null(r);
        out[0] = num(r, "creator_claim_key");
        out[1] = cJSON_GetObjectItem(r, "receiver_claim_key") ? num(r, "receiver_claim_key") : -1;
        out[2] = num(r, "creator_token_key");
        out[3] = num(r, "receiver_token_key");
        cJSON_Delete(r);
        return;
    }
    char sql[200], hex[8192];
    uint8_t raw[4096];
    snprintf(sql, sizeof(sql),
             "SELECT encode(record, 'hex') FROM ms_mailbox WHERE mailbox_id = '%s'", id);
    assert_int_equal(th_pg_query(&pg, 0, s->db, sql, hex, sizeof(hex)), 0);
    size_t n = strlen(hex) / 2;
    assert_true(n > 0 && n <= sizeof(raw));
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        raw[i] = (uint8_t)v;
    }
    ms_record_t r;
    assert_int_equal(ms_record_decode(raw, n, &r), 0);
    uint8_t k = 0;
    out[0] = r.creator[0];
    out[1] = r.has_receiver ? r.receiver[0] : -1;
    out[2] = cm_seal_key_id(r.creator_tok_data.p, r.creator_tok_data.n, &k) == CM_SEAL_OK ? k : -1;
    out[3] =
        cm_seal_key_id(r.receiver_tok_data.p, r.receiver_tok_data.n, &k) == CM_SEAL_OK ? k : -1;
}

/* The stored bytes name their keys (after the rotation test's first two phases): the old
 * bindings and the sender's token of |a| under key 1, the receiver's token (stored again by its
 * update) and all of mailbox |b| under key 2. */
static void check_key_ids(stk_t *s, const char *a, const char *b)
{
    int ka[4], kb[4];
    record_key_ids(s, a, ka);
    record_key_ids(s, b, kb);
    assert_int_equal(ka[0], 1);
    assert_int_equal(ka[1], 1);
    assert_int_equal(ka[2], 1);
    assert_int_equal(ka[3], 2);
    assert_int_equal(kb[0], 2);
    assert_int_equal(kb[1], -1);
    assert_int_equal(kb[2], 2);
}

/* Rotation: everything written under key 1, the services restart with the ring {1, 2}. */
static void rotation(void **state)
{
    stk_t *s = *state;
    pdt_t *t = &s->t;
    char a[37], b[37], sc[64], rc[64], sc2[64], ts[65], tr[65], ts2[65];
    assert_int_equal(cm_uuid_v4(a), 0);
    assert_int_equal(cm_uuid_v4(b), 0);
    new_claim(s, sc);
    new_claim(s, rc);
    new_claim(s, sc2);
    new_token(s, ts);
    new_token(s, tr);
    new_token(s, ts2);
    assert_int_equal(create(s, a, sc, ts), 200);
    assert_int_equal(api(s, "POST", a, rc, NULL), 200);
    assert_int_equal(update(s, a, rc, tr), 200);
    assert_int_equal(pdt_wait(t, "apns", 200, ts, 1, 30000), 1);
    /* A push to the receiver waits in push-dispatch's queue, sealed under key 1. */
    pdt_ctl(t, "apns", "{\"default\":503}");
    assert_int_equal(update(s, a, sc, ts), 200);
    assert_true(pdt_wait(t, "apns", 503, tr, 1, 30000) >= 1);
    stop_all(s);

    write_rings(s, 1);
    pdt_ctl(t, "apns", "{}");
    start_all(s);
    /* The queued push reaches the receiver's token; both devices still read the mailbox (their
     * claim hashes are under claim key 1). */
    assert_int_equal(pdt_wait(t, "apns", 200, tr, 1, 30000), 1);
    assert_int_equal(api(s, "POST", a, rc, NULL), 200);
    assert_int_equal(api(s, "POST", a, sc, NULL), 200);
    assert_int_equal(api(s, "POST", a, sc2, NULL), 401);
    /* The sender's token was stored under key 1: the receiver's update still wakes it. */
    assert_int_equal(update(s, a, rc, tr), 200);
    assert_int_equal(pdt_wait(t, "apns", 200, ts, 2, 30000), 2);
    /* New writes: under key 2. */
    assert_int_equal(create(s, b, sc2, ts2), 200);
    stop_all(s);
    assert_int_equal(scan_everything(s), 0);
    check_key_ids(s, a, b);

    /* Key 1 removed too early (before mailbox a expired): a's devices no longer match, which
     * is why a key may only go after the longest lifetime; b is untouched. */
    char text[200];
    snprintf(text, sizeof(text), "2 %s\n", KC2);
    write_file(s->claim_ring, text);
    snprintf(text, sizeof(text), "2 %s\n", KT2);
    write_file(s->token_ring, text);
    start_all(s);
    assert_int_equal(api(s, "POST", a, rc, NULL), 401);
    assert_int_equal(api(s, "POST", b, sc2, NULL), 200);
    stop_all(s);
}

/* A receiver that relinquishes loses its pending notifications: those still queued in
 * push-dispatch (APNs refusing) never reach its token once APNs is back; the sender's still
 * do. */
static void relinquish_drops_pending(void **state)
{
    stk_t *s = *state;
    pdt_t *t = &s->t;
    char a[37], sc[64], rc[64], ts[65], tr[65];
    assert_int_equal(cm_uuid_v4(a), 0);
    new_claim(s, sc);
    new_claim(s, rc);
    new_token(s, ts);
    new_token(s, tr);
    assert_int_equal(create(s, a, sc, ts), 200);
    assert_int_equal(api(s, "POST", a, rc, NULL), 200);
    assert_int_equal(update(s, a, rc, tr), 200);
    assert_int_equal(pdt_wait(t, "apns", 200, ts, 1, 30000), 1);
    pdt_ctl(t, "apns", "{\"default\":503}");
    /* Two pushes for the receiver and one for the sender wait in push-dispatch. */
    assert_int_equal(update(s, a, sc, ts), 200);
    assert_int_equal(update(s, a, sc, ts), 200);
    assert_int_equal(update(s, a, rc, tr), 200);
    assert_true(pdt_wait(t, "apns", 503, tr, 2, 30000) >= 2);
    assert_true(pdt_wait(t, "apns", 503, ts, 1, 30000) >= 1);
    assert_int_equal(api(s, "PATCH", a, rc, NULL), 200);
    /* CancelRecipient reached push-dispatch: its dropped counter moved. */
    int64_t end = pdt_now_ms() + 30000;
    const char *cancelled = "push_dispatch_dropped_total{provider=\"apns\",reason=\"cancelled\"}";
    while (pdt_metric(t, cancelled) < 2 && pdt_now_ms() < end)
        pdt_sleep_ms(100);
    assert_int_equal(pdt_metric(t, cancelled), 2);
    pdt_ctl(t, "apns", "{}");
    assert_int_equal(pdt_wait(t, "apns", 200, ts, 2, 30000), 2);
    pdt_sleep_ms(2000); /* past every retry delay (--retry-max-ms=1000) */
    assert_int_equal(pdt_count(t, "apns", 200, tr), 0);
    /* The mailbox lives on: a new receiver binds. */
    char rc2[64], tr2[65];
    new_claim(s, rc2);
    new_token(s, tr2);
    assert_int_equal(api(s, "POST", a, rc2, NULL), 200);
    /* Pushes still in the store's outbox (push-dispatch down) when the receiver leaves: the
     * forwarder drops them together with the marker, push-dispatch never sees them. */
    pd_down(s);
    assert_int_equal(update(s, a, rc2, tr2), 200);
    assert_int_equal(update(s, a, sc, ts), 200);
    assert_int_equal(update(s, a, sc, ts), 200);
    assert_int_equal(api(s, "PATCH", a, rc2, NULL), 200);
    pd_up(s);
    assert_int_equal(pdt_wait(t, "apns", 200, ts, 3, 30000), 3);
    pdt_sleep_ms(2000);
    assert_int_equal(pdt_count(t, "apns", 0, tr2), 0);
    stop_all(s);
    assert_int_equal(scan_everything(s), 0);
}

int main(int argc, char **argv)
{
    const char *engine = getenv("TEST_ENGINE");
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--engine=", 9) == 0)
            engine = argv[i] + 9;
    use_pg = engine && strcmp(engine, "postgres") == 0;
    cm_rpc_init();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(nothing_in_clear, setup, teardown),
        cmocka_unit_test_setup_teardown(rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(relinquish_drops_pending, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (pg_up)
        th_pg_stop(&pg);
    curl_global_cleanup();
    cm_rpc_shutdown();
    return rc;
}
