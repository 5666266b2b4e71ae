/* Issue 6 §2: the mailbox-store scaled out to three shards behind one gateway.
 *
 * Three real mailbox-store processes (each its own RocksDB data dir, ephemeral gRPC port) and
 * one real gateway started with --store-shards listing them (and --lb-policy=round_robin, as in
 * Kubernetes). Everything a phone does goes through the gateway over HTTP/1.1 (libcurl); where
 * a mailbox physically lives is checked by asking each shard directly over gRPC
 * (MailboxStore/ReadDisplay), against the placement cm_shard computes from the same list.
 *
 * Tests (one shared fixture, run in this order; the last one stops every shard):
 *   flows_on_all_shards            stateless + stateful flows, 120 mailboxes, placement
 *   duplicate_create_with_id       a retried Create reaches the same shard: 201
 *   duplicate_create_generated_id  the same without mailboxIdentifier (id made by the gateway)
 *   second_gateway_agrees          a replica with the shard list reversed routes identically
 *   killed_shard                   kill -9 of one shard: only its mailboxes 503; restart
 * Run one with `test_shards --only=<name>` (cmocka pattern), leave some out with --skip=. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cJSON.h>
#include <cmocka.h>

#include "cm_b64.h"
#include "cm_rpc.h"
#include "cm_shard.h"
#include "cm_uuid.h"
#include "th.h"
#include "th_api.h"
#include "th_http.h"
#include "th_stack.h"
#include "tigress/mailbox/v1/mailbox_store.pb-c.h"

#define NSHARDS 3
#define RPC_MS 5000

typedef struct {
    th_proc_t proc;
    char data_dir[600];
    int port; /* fixed after the first start: a restart binds the same one */
} shard_t;

static struct {
    char dir[512]; /* temp dir holding the shards' data dirs */
    shard_t sh[NSHARDS];
    th_proc_t gw;     /* the gateway every test talks to (round_robin, as in Kubernetes) */
    th_proc_t gw2;    /* a second replica, started by one test */
    int http_port;    /* of the gateway requests go to now */
    int gw_port;      /* of |gw| */
    char list[256];   /* the --store-shards value */
    cm_shards_t *map; /* owned; parsed from |list|, the placement oracle */
    cm_rpc_channel_t *ch[NSHARDS]; /* owned; direct channels to each shard */
    CURL *curl;                    /* owned; one keep-alive HTTP/1.1 connection */
} F;

/* ---- processes --------------------------------------------------------------------------- */

/* SIGTERM and wait; 0 when it exited 0. The harness dir (ready file, log) goes right away,
 * except for a process that did not exit cleanly. */
static int proc_stop_clean(th_proc_t *p, const char *what)
{
    if (th_proc_stop_clean(p, what, 20000) != 0)
        return -1;
    th_proc_cleanup(p);
    return 0;
}

/* Starts shard |i| on its port (0 the first time). A restart on the fixed port may race the
 * kernel releasing it: a few tries. */
static int shard_start(int i)
{
    shard_t *s = &F.sh[i];
    const char *extra[] = {"--log-level=warn", "--workers=2", "--sync=0", "--drain-timeout-ms=2000",
                           NULL};
    for (int attempt = 0; attempt < 5; attempt++) {
        if (th_store_start(&s->proc, s->data_dir, s->port, extra, 30000) == 0) {
            int port = th_proc_port(&s->proc, "grpc_port");
            if (s->port && port != s->port)
                return -1;
            s->port = port;
            return 0;
        }
        if (attempt < 4) /* the last failed start keeps its log */
            th_proc_cleanup(&s->proc);
        usleep(300 * 1000);
    }
    return -1;
}

/* Starts a gateway over the shards |list| with gRPC load-balancing policy |lb| ("" for the
 * default); its HTTP port goes to *port. */
static int gateway_start(th_proc_t *p, const char *list, const char *lb, int *port)
{
    char shards[300], lbarg[64];
    snprintf(shards, sizeof(shards), "--store-shards=%s", list);
    snprintf(lbarg, sizeof(lbarg), "--lb-policy=%s", lb);
    const char *extra[] = {shards,
                           lbarg,
                           "--https-listen=127.0.0.1:0",
                           "--threads=2",
                           "--log-level=warn",
                           "--backend-timeout-ms=8000", /* a loaded machine must not 504 */
                           "--public-base-url=https://relay.example",
                           NULL};
    if (th_gateway_start(p, extra, 30000) != 0)
        return -1;
    *port = th_proc_port(p, "http_port");
    return 0;
}

static int group_setup(void **state)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (th_tempdir("shards", F.dir, sizeof(F.dir)) != 0)
        return -1;
    for (int i = 0; i < NSHARDS; i++) {
        snprintf(F.sh[i].data_dir, sizeof(F.sh[i].data_dir), "%s/shard%d", F.dir, i);
        if (shard_start(i) != 0)
            return -1;
        size_t n = strlen(F.list);
        snprintf(F.list + n, sizeof(F.list) - n, "%s127.0.0.1:%d", i ? "," : "", F.sh[i].port);
        char target[64];
        snprintf(target, sizeof(target), "127.0.0.1:%d", F.sh[i].port);
        if (cm_rpc_channel_new(target, NULL, &F.ch[i]) != 0)
            return -1;
    }
    if (cm_shards_parse(F.list, &F.map) != 0 || cm_shards_count(F.map) != NSHARDS)
        return -1;
    if (gateway_start(&F.gw, F.list, "round_robin", &F.gw_port) != 0)
        return -1;
    F.http_port = F.gw_port;
    F.curl = curl_easy_init();
    return F.curl ? 0 : -1;
}

static int group_teardown(void **state)
{
    int rc = 0;
    curl_easy_cleanup(F.curl);
    F.curl = NULL;
    if (F.gw.pid > 0 && proc_stop_clean(&F.gw, "gateway") != 0)
        rc = -1;
    if (F.gw2.pid > 0 && proc_stop_clean(&F.gw2, "gateway") != 0)
        rc = -1;
    for (int i = 0; i < NSHARDS; i++) {
        cm_rpc_channel_del(F.ch[i]); /* first: see the end of killed_shard */
        F.ch[i] = NULL;
        if (F.sh[i].proc.pid > 0 && proc_stop_clean(&F.sh[i].proc, "mailbox-store") != 0)
            rc = -1;
    }
    cm_shards_free(F.map);
    F.map = NULL;
    if (F.dir[0])
        th_rmtree(F.dir);
    curl_global_cleanup();
    return rc;
}

/* ---- HTTP client ------------------------------------------------------------------------- */

/* One request through the gateway over HTTP/1.1 (the shared th_api client); |headers|
 * NULL-terminated "Name: value" (may be NULL). A POST without body sends an empty one. */
static long do_req(const char *method, const char *path, const char *const *headers,
                   const char *body, th_http_resp_t *out)
{
    th_api_t t = {.curl = F.curl, .proto = TH_HTTP_H1, .port = F.http_port, .empty_post = 1};
    th_api_do(&t, method, path, headers, body, out);
    return out->status;
}

/* ---- the API as a phone uses it ---------------------------------------------------------- */

typedef struct {
    char id[37];
    char sender[37];   /* the creator's device claim */
    char receiver[37]; /* the device that binds by reading */
    char corr[37];     /* the Create's Mailbox-Correlation-ID */
    int with_id;       /* the client chose mailboxIdentifier; else the gateway made it */
    int fill;          /* first byte of the payload currently stored */
    int title;         /* the title is "Key <title>" (the create's fill) */
    size_t owner;      /* shard index cm_shard picks for |id| */
} mbx_t;

static size_t owner_of(const char *id)
{
    return cm_shards_pick(F.map, id, strlen(id));
}

static void create_body(const mbx_t *m, int fill, char *out, size_t cap)
{
    uint8_t raw[40];
    char data[80], idpart[80] = "";
    memset(raw, fill, sizeof(raw));
    cm_b64_encode(CM_B64_STD, raw, sizeof(raw), data);
    if (m->with_id)
        snprintf(idpart, sizeof(idpart), "\"mailboxIdentifier\":\"%s\",", m->id);
    snprintf(out, cap,
             "{%s\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"Key %d\",\"description\":\"d\"},"
             "\"mailboxConfiguration\":{\"accessRights\":\"RWD\",\"timeToLive\":\"900\"}}",
             idpart, data, fill);
}

/* POST /v1/m with |m|'s sender claim and correlation id; returns the status. On 200/201 the
 * id is taken from urlLink (checked against the client's id when it gave one). */
static long create_raw(mbx_t *m, int fill, th_http_resp_t *r)
{
    char body[1024];
    create_body(m, fill, body, sizeof(body));
    const char *h[] = {th_api_hdr(0, "deviceClaim: %s", m->sender),
                       th_api_hdr(1, "Mailbox-Correlation-ID: %s", m->corr), NULL};
    do_req("POST", "/v1/m", h, body, r);
    const char *echo = th_http_header(r, "mailbox-correlation-id");
    if (!echo || strcmp(echo, m->corr) != 0)
        fail_msg("create: correlation id not echoed (%s)", echo ? echo : "none");
    if (r->status == 200 || r->status == 201) {
        cJSON *j = cJSON_Parse(r->body);
        assert_non_null(j);
        cJSON *u = cJSON_GetObjectItem(j, "urlLink");
        assert_true(cJSON_IsString(u));
        const char *pre = "https://relay.example/v1/m/";
        assert_int_equal(strncmp(u->valuestring, pre, strlen(pre)), 0);
        const char *id = u->valuestring + strlen(pre);
        assert_true(cm_uuid_is_v4(id, strlen(id)));
        if (m->with_id)
            assert_string_equal(id, m->id);
        else
            snprintf(m->id, sizeof(m->id), "%s", id);
        cJSON_Delete(j);
        m->owner = owner_of(m->id);
        m->fill = fill;
        m->title = fill;
    }
    return r->status;
}

/* A new mailbox through the gateway; asserts 200. |with_id|: the client picks the id. */
static void create_ok(mbx_t *m, int with_id, int fill)
{
    memset(m, 0, sizeof(*m));
    m->with_id = with_id;
    th_api_uuid(m->sender);
    th_api_uuid(m->receiver);
    th_api_uuid(m->corr);
    if (with_id)
        th_api_uuid(m->id);
    th_http_resp_t r;
    if (create_raw(m, fill, &r) != 200)
        fail_msg("create (%s id): %ld %s", with_id ? "client" : "generated", r.status, r.body);
    th_http_resp_free(&r);
}

/* GET /v1/m/{id}: the preview. On 200 it must show this mailbox's title. */
static long preview(const mbx_t *m)
{
    char path[64];
    snprintf(path, sizeof(path), "/v1/m/%s", m->id);
    th_http_resp_t r;
    long st = do_req("GET", path, NULL, NULL, &r);
    if (st == 200) {
        char want[96];
        snprintf(want, sizeof(want), "<meta property=\"og:title\" content=\"Key %d\">", m->title);
        if (!strstr(r.body, want))
            fail_msg("preview of %s lacks %s", m->id, want);
    } else if (st == 404) {
        th_api_expect_error(&r, 404, "not_found");
    } else if (st == 503) {
        th_api_expect_error(&r, 503, "unavailable");
    }
    th_http_resp_free(&r);
    return st;
}

/* POST /v1/m/{id} as |claim|; on 200 checks the payload is the one stored last. */
static long read_secure(const mbx_t *m, const char *claim)
{
    char path[64], corr[37];
    th_api_uuid(corr);
    snprintf(path, sizeof(path), "/v1/m/%s", m->id);
    const char *h[] = {th_api_hdr(0, "deviceClaim: %s", claim),
                       th_api_hdr(1, "Mailbox-Correlation-ID: %s", corr), NULL};
    th_http_resp_t r;
    long st = do_req("POST", path, h, NULL, &r);
    const char *echo = th_http_header(&r, "mailbox-correlation-id");
    assert_non_null(echo);
    assert_string_equal(echo, corr);
    if (st == 200) {
        cJSON *j = cJSON_Parse(r.body);
        assert_non_null(j);
        cJSON *d = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "payload"), "data");
        assert_true(cJSON_IsString(d));
        uint8_t raw[128];
        size_t n = 0;
        assert_int_equal(
            cm_b64_decode(CM_B64_STD, d->valuestring, strlen(d->valuestring), raw, sizeof(raw), &n),
            0);
        assert_true(n > 0);
        if (raw[0] != (uint8_t)m->fill)
            fail_msg("read of %s: payload %d, wanted %d", m->id, raw[0], m->fill);
        cJSON_Delete(j);
    } else if (st == 401) {
        th_api_expect_error(&r, 401, "unauthorized");
    } else if (st == 503) {
        th_api_expect_error(&r, 503, "unavailable");
    }
    th_http_resp_free(&r);
    return st;
}

/* PUT /v1/m/{id} as |claim| with payload bytes |fill|; on 200 the mailbox holds |fill|. */
static long update(mbx_t *m, const char *claim, int fill)
{
    char path[64], body[512], data[80], corr[37];
    uint8_t raw[44];
    memset(raw, fill, sizeof(raw));
    cm_b64_encode(CM_B64_STD, raw, sizeof(raw), data);
    th_api_uuid(corr);
    snprintf(path, sizeof(path), "/v1/m/%s", m->id);
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"notificationToken\":{\"type\":\"com.google.fcm\",\"tokenData\":\"tok\"}}",
             data);
    const char *h[] = {th_api_hdr(0, "deviceClaim: %s", claim),
                       th_api_hdr(1, "Mailbox-Correlation-ID: %s", corr), NULL};
    th_http_resp_t r;
    long st = do_req("PUT", path, h, body, &r);
    th_http_resp_free(&r);
    if (st == 200)
        m->fill = fill;
    return st;
}

static long del(const mbx_t *m, const char *claim)
{
    char path[64];
    snprintf(path, sizeof(path), "/v1/m/%s", m->id);
    const char *h[] = {th_api_hdr(0, "deviceClaim: %s", claim), NULL};
    th_http_resp_t r;
    long st = do_req("DELETE", path, h, NULL, &r);
    th_http_resp_free(&r);
    return st;
}

static long readyz(void)
{
    th_http_resp_t r;
    long st = do_req("GET", "/readyz", NULL, NULL, &r);
    th_http_resp_free(&r);
    return st;
}

/* ---- where a mailbox lives, asked of each shard directly --------------------------------- */

/* 1 when shard |i| holds |id| (ReadDisplay OK, with the expected title), 0 on NOT_FOUND. */
static int shard_holds(int i, const mbx_t *m)
{
    Tigress__Mailbox__V1__ReadDisplayRequest req = TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
    req.mailbox_id = (char *)m->id;
    cm_rpc_call_opts_t o = {.timeout_ms = RPC_MS, .request_id = "test-shards"};
    cm_rpc_status_t st;
    ProtobufCMessage *resp = NULL;
    /* UNAVAILABLE: this channel may still hold the connection of a shard that was killed and
     * restarted; it reconnects on its own (and the call is a read: safe to repeat) */
    long long end = th_now_ms() + 15000;
    for (;;) {
        cm_rpc_call(F.ch[i], "/tigress.mailbox.v1.MailboxStore/ReadDisplay", &req.base,
                    &tigress__mailbox__v1__read_display_response__descriptor, &o, &resp, &st);
        if (st.code != GRPC_STATUS_UNAVAILABLE || th_now_ms() > end)
            break;
        usleep(50 * 1000);
    }
    int held = -1;
    if (st.code == GRPC_STATUS_OK && resp) {
        Tigress__Mailbox__V1__ReadDisplayResponse *d = (void *)resp;
        char want[32];
        snprintf(want, sizeof(want), "Key %d", m->title);
        held = d->display && d->display->title && !strcmp(d->display->title, want) ? 1 : -1;
    } else if (st.code == GRPC_STATUS_NOT_FOUND) {
        held = 0;
    }
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    if (held < 0)
        fail_msg("shard %d ReadDisplay %s: %s %s", i, m->id, cm_rpc_code_name(st.code), st.message);
    return held;
}

/* Asserts |m| is on its cm_shard owner and on no other shard (|present| 1), or nowhere. */
static void check_placement(const mbx_t *m, int present)
{
    for (int i = 0; i < NSHARDS; i++) {
        int want = present && (size_t)i == m->owner;
        int got = shard_holds(i, m);
        if (got != want)
            fail_msg("mailbox %s (%s id, owner shard %zu): shard %d %s it", m->id,
                     m->with_id ? "client" : "generated", m->owner, i,
                     got ? "holds" : "does not hold");
    }
}

/* ---- tests ------------------------------------------------------------------------------- */

#define NFLOW 60 /* mailboxes per flow; even i: the client picks the id, odd i: the gateway */

/* The stateless flow (create, preview, read binding the receiver, delete) and the stateful
 * flow (create; receiver reads; receiver updates; sender reads; sender updates; receiver
 * reads; delete) for NFLOW mailboxes each, all through the one gateway. Every mailbox is on
 * exactly the shard cm_shard picks, and every shard gets some of both kinds of id. */
static void flows_on_all_shards(void **state)
{
    F.http_port = F.gw_port;
    assert_int_equal(readyz(), 200);
    static mbx_t sl[NFLOW], sf[NFLOW];
    size_t per[NSHARDS] = {0}, per_gen[NSHARDS] = {0}, per_cli[NSHARDS] = {0};
    for (int i = 0; i < NFLOW; i++) {
        create_ok(&sl[i], i % 2 == 0, 1 + i);
        create_ok(&sf[i], i % 2 == 0, 1 + NFLOW + i);
    }
    for (int i = 0; i < 2 * NFLOW; i++) {
        mbx_t *m = i < NFLOW ? &sl[i] : &sf[i - NFLOW];
        check_placement(m, 1);
        per[m->owner]++;
        (m->with_id ? per_cli : per_gen)[m->owner]++;
    }
    printf("distribution of %d mailboxes over shards 0/1/2: %zu/%zu/%zu "
           "(client ids %zu/%zu/%zu, gateway ids %zu/%zu/%zu)\n",
           2 * NFLOW, per[0], per[1], per[2], per_cli[0], per_cli[1], per_cli[2], per_gen[0],
           per_gen[1], per_gen[2]);
    for (int k = 0; k < NSHARDS; k++) {
        /* binomial(120, 1/3): below 15 is ~5 standard deviations out */
        if (per[k] < 15 || per_cli[k] == 0 || per_gen[k] == 0)
            fail_msg("shard %d got too few mailboxes (%zu; %zu client ids, %zu gateway ids)", k,
                     per[k], per_cli[k], per_gen[k]);
    }

    /* stateless */
    for (int i = 0; i < NFLOW; i++) {
        mbx_t *m = &sl[i];
        char other[37];
        th_api_uuid(other);
        assert_int_equal(preview(m), 200);
        assert_int_equal(read_secure(m, m->receiver), 200);
        /* bound: another device is refused, the receiver may read again */
        assert_int_equal(read_secure(m, other), 401);
        assert_int_equal(read_secure(m, m->receiver), 200);
        assert_int_equal(del(m, m->receiver), 200);
        assert_int_equal(preview(m), 404);
        assert_int_equal(read_secure(m, m->receiver), 404);
    }

    /* stateful, one step at a time over all mailboxes so the shards interleave */
    for (int i = 0; i < NFLOW; i++)
        assert_int_equal(read_secure(&sf[i], sf[i].receiver), 200);
    for (int i = 0; i < NFLOW; i++)
        assert_int_equal(update(&sf[i], sf[i].receiver, 0xA0 + i % 16), 200);
    for (int i = 0; i < NFLOW; i++)
        assert_int_equal(read_secure(&sf[i], sf[i].sender), 200);
    for (int i = 0; i < NFLOW; i++)
        assert_int_equal(update(&sf[i], sf[i].sender, 0xC0 + i % 16), 200);
    for (int i = 0; i < NFLOW; i++) {
        char other[37];
        th_api_uuid(other);
        assert_int_equal(read_secure(&sf[i], sf[i].receiver), 200);
        assert_int_equal(update(&sf[i], other, 0x11), 401);
        assert_int_equal(preview(&sf[i]), 200);
    }
    for (int i = 0; i < NFLOW; i++) {
        assert_int_equal(del(&sf[i], sf[i].receiver), 200);
        assert_int_equal(read_secure(&sf[i], sf[i].sender), 404);
    }

    /* gone from every shard */
    for (int i = 0; i < NFLOW; i++) {
        check_placement(&sl[i], 0);
        check_placement(&sf[i], 0);
    }
}

/* A fresh client-chosen id that cm_shard places on shard |k|. */
static void id_on_shard(mbx_t *m, size_t k)
{
    do
        th_api_uuid(m->id);
    while (owner_of(m->id) != k);
}

/* A retried Create (same claim, same Mailbox-Correlation-ID, same body) with the client's
 * mailboxIdentifier reaches the same shard, which answers it as a duplicate: 201 with the same
 * body, one mailbox. The same id from another device is refused (401). On every shard. */
static void duplicate_create_with_id(void **state)
{
    for (size_t k = 0; k < NSHARDS; k++) {
        mbx_t m;
        memset(&m, 0, sizeof(m));
        m.with_id = 1;
        th_api_uuid(m.sender);
        th_api_uuid(m.corr);
        id_on_shard(&m, k);
        th_http_resp_t r1, r2;
        assert_int_equal(create_raw(&m, 0x30 + (int)k, &r1), 200);
        if (create_raw(&m, 0x30 + (int)k, &r2) != 201)
            fail_msg("retried create on shard %zu: %ld %s", k, r2.status, r2.body);
        assert_string_equal(r1.body, r2.body);
        th_http_resp_free(&r1);
        th_http_resp_free(&r2);
        check_placement(&m, 1);

        mbx_t other = m;
        th_api_uuid(other.sender);
        th_api_uuid(other.corr);
        create_raw(&other, 0x40, &r1);
        th_api_expect_error(&r1, 401, "unauthorized");
        th_http_resp_free(&r1);
        check_placement(&m, 1); /* unchanged: still "Key 0x30+k" */
        assert_int_equal(del(&m, m.sender), 200);
        check_placement(&m, 0);
    }
}

/* The same for a Create without mailboxIdentifier (the relay makes the id). 001 §5/§6.1.5: a
 * request repeating the Mailbox-Correlation-ID gets 201 and creates nothing. The shard is
 * chosen by the id, so this holds only if the gateway gives the retry the same id (it derives
 * it from the claim and the correlation id). A new correlation id is a new mailbox. */
static void duplicate_create_generated_id(void **state)
{
    size_t seen[NSHARDS] = {0};
    for (int attempt = 0; attempt < 12; attempt++) {
        mbx_t a, b;
        memset(&a, 0, sizeof(a));
        th_api_uuid(a.sender);
        th_api_uuid(a.corr);
        b = a;
        th_http_resp_t r1, r2;
        assert_int_equal(create_raw(&a, 0x50 + attempt, &r1), 200);
        long st = create_raw(&b, 0x50 + attempt, &r2);
        int made = st == 200 || st == 201;
        int same = made && !strcmp(a.id, b.id);
        if (made && !same)
            del(&b, b.sender); /* a second mailbox was made: clean it up before failing */
        if (st != 201 || !same) {
            del(&a, a.sender);
            fail_msg("retried create without mailboxIdentifier: %ld, first id %s (shard %zu), "
                     "retry id %s (shard %zu): the retry was not recognised as a duplicate",
                     st, a.id, a.owner, made ? b.id : "-", made ? b.owner : (size_t)0);
        }
        assert_string_equal(r1.body, r2.body);
        th_http_resp_free(&r1);
        th_http_resp_free(&r2);
        check_placement(&a, 1);
        seen[a.owner]++;

        /* the same device, a new request: a new mailbox with its own id */
        mbx_t c = a;
        th_api_uuid(c.corr);
        assert_int_equal(create_raw(&c, 0x70 + attempt, &r1), 200);
        th_http_resp_free(&r1);
        assert_string_not_equal(c.id, a.id);
        check_placement(&c, 1);
        check_placement(&a, 1); /* untouched: still its own title */
        assert_int_equal(del(&a, a.sender), 200);
        assert_int_equal(del(&c, c.sender), 200);
        check_placement(&a, 0);
    }
    printf("retried creates without mailboxIdentifier answered 201 on shards 0/1/2: "
           "%zu/%zu/%zu\n",
           seen[0], seen[1], seen[2]);
}

/* Gateway replicas agree on placement: a second gateway given the same shards in the reverse
 * order (and the default pick_first policy) serves every mailbox the first one created, and a
 * Create retried through the other replica is still a duplicate (201). */
static void second_gateway_agrees(void **state)
{
    enum { N = 30 };
    char rev[256] = "";
    for (int i = NSHARDS - 1; i >= 0; i--) {
        size_t n = strlen(rev);
        snprintf(rev + n, sizeof(rev) - n, "%s127.0.0.1:%d", i < NSHARDS - 1 ? "," : "",
                 F.sh[i].port);
    }
    int port1 = F.gw_port, port2 = 0;
    assert_int_equal(gateway_start(&F.gw2, rev, "", &port2), 0);
    static mbx_t m[N];
    for (int i = 0; i < N; i++) {
        F.http_port = port1;
        create_ok(&m[i], i % 2 == 0, 1 + i);
        F.http_port = port2;
        assert_int_equal(preview(&m[i]), 200);
        assert_int_equal(read_secure(&m[i], m[i].receiver), 200);
        /* the retry of the Create through the other replica */
        th_http_resp_t r;
        mbx_t again = m[i];
        assert_int_equal(create_raw(&again, m[i].title, &r), 201);
        assert_string_equal(again.id, m[i].id);
        th_http_resp_free(&r);
    }
    F.http_port = port1;
    for (int i = 0; i < N; i++) {
        assert_int_equal(read_secure(&m[i], m[i].receiver), 200);
        assert_int_equal(del(&m[i], m[i].sender), 200);
        check_placement(&m[i], 0);
    }
    assert_int_equal(proc_stop_clean(&F.gw2, "gateway"), 0);
}

#define NKILL 60
#define VICTIM 1

/* Polls a preview of |m| until it answers |want| (the gateway reconnects on its own). */
static void wait_preview(const mbx_t *m, long want, long long timeout_ms)
{
    long long end = th_now_ms() + timeout_ms;
    long st;
    while ((st = preview(m)) != want) {
        if (th_now_ms() > end)
            fail_msg("mailbox %s (shard %zu): %ld after %lld ms, wanted %ld", m->id, m->owner, st,
                     timeout_ms, want);
        usleep(100 * 1000);
    }
}

/* kill -9 of one shard: exactly its mailboxes answer 503 (preview and read), the others 200,
 * and new mailboxes it would own cannot be created while the others can. The gateway stays
 * ready. Restarted on the same port and data dir, its mailboxes are back with their bindings.
 * Finally, with every shard stopped, the gateway is not ready. */
static void killed_shard(void **state)
{
    F.http_port = F.gw_port;
    static mbx_t m[NKILL];
    size_t on_victim = 0;
    for (int i = 0; i < NKILL; i++) {
        create_ok(&m[i], i % 2 == 0, 1 + i);
        assert_int_equal(read_secure(&m[i], m[i].receiver), 200); /* binds */
        on_victim += m[i].owner == VICTIM;
    }
    if (on_victim == 0 || on_victim == NKILL)
        fail_msg("shard %d owns %zu of %d mailboxes", VICTIM, on_victim, NKILL);

    long long t0 = th_now_ms();
    int hold = th_proc_kill9_hold(&F.sh[VICTIM].proc, F.sh[VICTIM].port);
    assert_true(hold >= 0);
    th_proc_cleanup(&F.sh[VICTIM].proc);

    for (int i = 0; i < NKILL; i++) {
        long want = m[i].owner == VICTIM ? 503 : 200;
        long got = preview(&m[i]);
        if (got != want)
            fail_msg("preview of a mailbox on shard %zu with shard %d down: %ld, wanted %ld",
                     m[i].owner, VICTIM, got, want);
        got = read_secure(&m[i], m[i].receiver);
        if (got != want)
            fail_msg("read of a mailbox on shard %zu with shard %d down: %ld, wanted %ld",
                     m[i].owner, VICTIM, got, want);
        if (want == 200) /* the healthy shards still take writes */
            assert_int_equal(update(&m[i], m[i].receiver, 0xE0 + i % 16), 200);
    }
    long long down_ms = th_now_ms() - t0;
    for (size_t k = 0; k < NSHARDS; k++) {
        mbx_t n;
        memset(&n, 0, sizeof(n));
        n.with_id = 1;
        th_api_uuid(n.sender);
        th_api_uuid(n.corr);
        id_on_shard(&n, k);
        th_http_resp_t r;
        long st = create_raw(&n, 0x70, &r);
        if (k == VICTIM) {
            th_api_expect_error(&r, 503, "unavailable");
        } else {
            if (st != 200)
                fail_msg("create on healthy shard %zu: %ld %s", k, st, r.body);
            assert_int_equal(del(&n, n.sender), 200);
        }
        th_http_resp_free(&r);
    }
    assert_int_equal(readyz(), 200);
    printf("with shard %d killed: %zu of %d mailboxes answered 503, the rest 200 "
           "(%d requests in %lld ms)\n",
           VICTIM, on_victim, NKILL, 3 * NKILL, down_ms);

    /* restart on the same port and data dir */
    assert_int_equal(shard_start(VICTIM), 0);
    th_port_release(hold);
    long long t1 = th_now_ms();
    for (int i = 0; i < NKILL; i++)
        if (m[i].owner == VICTIM) {
            wait_preview(&m[i], 200, 20000);
            break;
        }
    printf("shard %d back through the gateway %lld ms after its restart\n", VICTIM,
           th_now_ms() - t1);
    for (int i = 0; i < NKILL; i++) {
        char other[37];
        th_api_uuid(other);
        assert_int_equal(preview(&m[i]), 200);
        /* bound before the crash: the receiver still reads, another device still cannot */
        assert_int_equal(read_secure(&m[i], m[i].receiver), 200);
        assert_int_equal(read_secure(&m[i], other), 401);
        assert_int_equal(read_secure(&m[i], m[i].sender), 200);
        check_placement(&m[i], 1);
    }
    for (int i = 0; i < NKILL; i++) {
        assert_int_equal(del(&m[i], m[i].sender), 200);
        check_placement(&m[i], 0);
    }

    /* every shard stopped: nothing can be served, the gateway says so */
    for (int k = 0; k < NSHARDS; k++) {
        /* this process polls its channels only inside a call, so an idle connection of ours
         * would not see the shard's GOAWAY and hold its drain for the whole drain timeout */
        cm_rpc_channel_del(F.ch[k]);
        F.ch[k] = NULL;
        assert_int_equal(proc_stop_clean(&F.sh[k].proc, "mailbox-store"), 0);
    }
    long long end = th_now_ms() + 10000;
    while (readyz() != 503) {
        if (th_now_ms() > end)
            fail_msg("gateway still ready with every shard stopped");
        usleep(100 * 1000);
    }
    assert_int_equal(preview(&m[0]), 503);
}

/* Arguments: --only=PATTERN runs the matching tests, --skip=PATTERN leaves them out (cmocka
 * filters, "*" and "?" wildcards). */
int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--only=", 7)) {
            cmocka_set_test_filter(argv[i] + 7);
        } else if (!strncmp(argv[i], "--skip=", 7)) {
            cmocka_set_skip_filter(argv[i] + 7);
        } else {
            fprintf(stderr, "usage: %s [--only=PATTERN] [--skip=PATTERN]\n", argv[0]);
            return 2;
        }
    }
    cm_rpc_signals_block();
    cm_rpc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(flows_on_all_shards),
        cmocka_unit_test(duplicate_create_with_id),
        cmocka_unit_test(duplicate_create_generated_id),
        cmocka_unit_test(second_gateway_agrees),
        cmocka_unit_test(killed_shard),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    cm_rpc_shutdown();
    return rc;
}
