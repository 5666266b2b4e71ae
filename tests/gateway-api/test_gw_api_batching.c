/* Store-read batches and shards through the public API, in-process against real
 * mailbox-stores: reads the API starts in one loop iteration travel as one MailboxStore/Batch
 * call per shard, each keeping its own answer; three shards behind one API; and store_batch 0
 * for a store older than Batch. */
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

#include "api_flows.h"
#include "cm_b64.h"
#include "cm_shard.h"
#include "th_api.h"

static th_api_env_t E; /* the shared store and the API in-process */
static CURL *E_curl;   /* HTTP/1.1 to the stores' admin listeners */

/* The API the test talks to: E's, or one the test started (T_gw). */
static th_api_t T_api;
#define API (&T_api)

/* What one test starts; the teardown frees what a failed assertion left. */
static th_gwapi_t *T_gw;
static th_proc_t T_store, T_shard[3];

static void creq_free_all(void);

static int group_setup(void **state)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    E_curl = curl_easy_init();
    if (!E_curl || th_api_env_start(&E, "gwbatch") != 0)
        return -1;
    T_api = E.api;
    return 0;
}

static int group_teardown(void **state)
{
    curl_easy_cleanup(E_curl);
    int rc = th_api_env_stop(&E);
    curl_global_cleanup();
    return rc;
}

static int test_teardown(void **state)
{
    creq_free_all();
    th_gwapi_free(T_gw);
    T_gw = NULL;
    T_api = E.api;
    if (T_store.pid > 0)
        th_proc_kill9(&T_store);
    for (int i = 0; i < 3; i++)
        if (T_shard[i].pid > 0)
            th_proc_kill9(&T_shard[i]);
    return 0;
}

/* Three store shards behind an API of their own (store_shards); writes the shard list into
 * |list|. */
static void shards_start(char list[256])
{
    char dirs[3][700];
    list[0] = '\0';
    for (int i = 0; i < 3; i++) {
        snprintf(dirs[i], sizeof(dirs[i]), "%s/shard%d", E.dir, i);
        assert_int_equal(th_api_store_start(&T_shard[i], dirs[i], 0), 0);
        size_t n = strlen(list);
        snprintf(list + n, 256 - n, "%s127.0.0.1:%d", i ? "," : "",
                 th_proc_port(&T_shard[i], "grpc_port"));
    }
    gw_backend_config_t bc;
    gw_api_config_t ac;
    th_gwapi_defaults(1 /* unused with shards */, &bc, &ac);
    bc.store_shards = list;
    assert_int_equal(th_gwapi_new(&bc, &ac, &T_gw), 0);
    T_api = (th_api_t){.inproc = T_gw};
}

/* Three store shards behind one API: the flows work, the mailboxes spread over every shard
 * exactly as cm_shard places them, and a killed shard makes only its own mailboxes
 * unavailable. */
static void sharded_store(void **state)
{
    char list[256];
    shards_start(list);

    /* the shared flows, pointed at this API */
    flow_stateless(API, 0x41);
    flow_stateful(API);

    cm_shards_t *sh = NULL;
    assert_int_equal(cm_shards_parse(list, &sh), 0);
    enum { N = 24 };
    th_mbx_t m[N];
    size_t owner[N], per_shard[3] = {0};
    for (int i = 0; i < N; i++) {
        th_api_create(API, &m[i], i, NULL);
        owner[i] = cm_shards_pick(sh, m[i].id, strlen(m[i].id));
        per_shard[owner[i]]++;
    }
    for (int k = 0; k < 3; k++)
        if (per_shard[k] == 0)
            fail_msg("shard %d got none of %d mailboxes", k, N);

    /* a retried Create without mailboxIdentifier reaches the same shard: 201, same link */
    for (int k = 0; k < 4; k++) {
        char claim[37], corr[37], data[100], body[1024];
        th_api_uuid(claim);
        th_api_uuid(corr);
        th_api_payload_b64(k, 32, data);
        snprintf(body, sizeof(body),
                 "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"displayInformation\":"
                 "{\"title\":\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60}}",
                 data);
        const char *h[] = {th_api_hdr(0, "deviceClaim: %s", claim),
                           th_api_hdr(1, "Mailbox-Correlation-ID: %s", corr), NULL};
        th_http_resp_t r1, r2;
        th_api_do(API, "POST", "/v1/m", h, body, &r1);
        th_api_do(API, "POST", "/v1/m", h, body, &r2);
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
        th_api_preview(API, m[i].id, &r);
        long want = owner[i] == 1 ? 503 : 200;
        if (r.status != want)
            fail_msg("mailbox on shard %zu: %ld, wanted %ld", owner[i], r.status, want);
        th_http_resp_free(&r);
        int fill = -1;
        if (owner[i] != 1) {
            assert_int_equal(th_api_read_secure(API, m[i].id, m[i].sender, &fill), 200);
            assert_int_equal(fill, i);
        }
    }
    /* the gateway stays ready while other shards serve */
    th_http_resp_t r;
    th_api_do(API, "GET", "/readyz", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);
    cm_shards_free(sh);
    th_gwapi_free(T_gw);
    T_gw = NULL;
    T_api = E.api;
    for (int i = 0; i < 3; i++)
        if (i != 1)
            assert_int_equal(th_proc_stop_clean(&T_shard[i], "mailbox-store", 15000), 0);
}

/* ---- concurrent reads (store-read batches) --------------------------------------------- */

/* A mailbox made for the concurrent reads: a title and payload of its own, and a bound
 * receiver or none. */
typedef struct {
    th_mbx_t m;
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

/* Hands T_q[0..T_nq) to the API in one loop iteration (as a burst of HTTP/2 streams read
 * together arrives), so their store reads meet in the same batch; fills each answer. */
static void run_concurrent(void)
{
    th_http_req_t rq[MAX_CREQ];
    th_http_resp_t *out = calloc(MAX_CREQ, sizeof(*out)); /* ~16 KiB each */
    assert_non_null(out);
    char hclaim[MAX_CREQ][64], hcorr[MAX_CREQ][80];
    const char *hdrs[MAX_CREQ][3];
    for (size_t i = 0; i < T_nq; i++) {
        creq_t *q = &T_q[i];
        size_t k = 0;
        snprintf(hcorr[i], sizeof(hcorr[i]), "Mailbox-Correlation-ID: %s", q->corr);
        hdrs[i][k++] = hcorr[i];
        if (q->claim[0]) {
            snprintf(hclaim[i], sizeof(hclaim[i]), "deviceClaim: %s", q->claim);
            hdrs[i][k++] = hclaim[i];
        }
        hdrs[i][k] = NULL;
        char *path = malloc(64);
        assert_non_null(path);
        snprintf(path, 64, "/v1/m/%s", q->id);
        rq[i] = (th_http_req_t){.method = q->method, .path = path, .headers = hdrs[i]};
    }
    size_t n = th_gwapi_burst(T_api.inproc, rq, T_nq, out, 20000);
    for (size_t i = 0; i < T_nq; i++) {
        creq_t *q = &T_q[i];
        q->done = out[i].err[0] == '\0';
        q->status = out[i].status;
        const char *c = th_http_header(&out[i], "mailbox-correlation-id");
        snprintf(q->corr_got, sizeof(q->corr_got), "%s", c ? c : "");
        q->body = strdup(out[i].body ? out[i].body : "");
        th_http_resp_free(&out[i]);
        free((char *)rq[i].path);
    }
    free(out);
    if (n != T_nq)
        fail_msg("%zu of %zu answers", n, T_nq);
}

/* Creates |n| mailboxes with titles and payloads of their own; every |bind_every|-th one (0:
 * none) gets a bound receiver (its first read). Through the current API. */
static void boxes_create(box_t *b, size_t n, size_t bind_every)
{
    for (size_t i = 0; i < n; i++) {
        b[i].fill = (int)(0x30 + i);
        snprintf(b[i].title, sizeof(b[i].title), "Batch box %02zu", i);
        th_api_create(API, &b[i].m, b[i].fill, b[i].title);
        b[i].receiver[0] = '\0';
        if (bind_every && i % bind_every == 0) {
            int fill = -1;
            th_api_uuid(b[i].receiver);
            assert_int_equal(th_api_read_secure(API, b[i].m.id, b[i].receiver, &fill), 200);
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
    th_api_uuid(q->corr);
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
            th_api_uuid(third);
            plan_add(K_DENIED, (int)i, "POST", b[i].m.id, third);
            plan_add(K_READ, (int)i, "POST", b[i].m.id, b[i].receiver);
        }
        if (i % 3 == 1) {
            char unknown[37], claim[37];
            th_api_uuid(unknown);
            th_api_uuid(claim);
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
    th_api_t admin = {
        .curl = E_curl, .proto = TH_HTTP_H1, .port = th_proc_port(store, "admin_port")};
    th_http_resp_t r;
    th_api_do(&admin, "GET", "/metrics", NULL, NULL, &r);
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
 * device refused, unknown ids, all handed to the API in one loop iteration. */
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
    run_concurrent();
    check_answers(b, NB);
    store_counts(&E.store, &after);
    double batches = after.batch - before.batch;
    double rd = after.read_display - before.read_display;
    double rs = after.read_secure - before.read_secure;
    fprintf(stderr,
            "%zu concurrent reads (%zu GET, %zu POST) in one loop iteration: %.0f store "
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
    run_concurrent();
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
    th_gwapi_free(T_gw);
    T_gw = NULL;
    T_api = E.api;
    for (int i = 0; i < 3; i++)
        assert_int_equal(th_proc_stop_clean(&T_shard[i], "mailbox-store", 15000), 0);
}

/* store_batch 0 (for a store older than Batch): one call per read, the same answers, and
 * the store never sees a Batch call. */
static void store_batch_off(void **state)
{
    char data_dir[700];
    snprintf(data_dir, sizeof(data_dir), "%s/nobatch", E.dir);
    assert_int_equal(th_api_store_start(&T_store, data_dir, 0), 0);
    gw_backend_config_t bc;
    gw_api_config_t ac;
    th_gwapi_defaults(th_proc_port(&T_store, "grpc_port"), &bc, &ac);
    bc.store_batch = 0;
    assert_int_equal(th_gwapi_new(&bc, &ac, &T_gw), 0);
    T_api = (th_api_t){.inproc = T_gw};
    flow_stateless(API, 0x41);

    enum { NB = 12 };
    box_t b[NB];
    boxes_create(b, NB, 2);
    plan_reads(b, NB);
    size_t gets, posts;
    planned_counts(&gets, &posts);
    store_counts_t before, after;
    store_counts(&T_store, &before);
    run_concurrent();
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
    th_gwapi_free(T_gw);
    T_gw = NULL;
    T_api = E.api;
    assert_int_equal(th_proc_stop_clean(&T_store, "mailbox-store", 15000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(sharded_store, test_teardown),
        cmocka_unit_test_teardown(batched_reads, test_teardown),
        cmocka_unit_test_teardown(batched_reads_sharded, test_teardown),
        cmocka_unit_test_teardown(store_batch_off, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
