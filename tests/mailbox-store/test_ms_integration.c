/* Integration tests: the real mailbox-store binary on ephemeral ports, called through the
 * cm_rpc client (issue 2 §4). One source for every storage engine: "--engine=rocksdb|postgres"
 * (ms_tengine.h); the storage is inspected through the engine after the process stopped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <errno.h>

#include <cmocka.h>

#include "cm_rpc.h"
#include "cm_seal.h"
#include "cm_uuid.h"
#include "ms_core.h"
#include "ms_engine.h"
#include "ms_tengine.h"
#include "ms_treq.h"
#include "th.h"
#include "th_stack.h"
#include "tigress/mailbox/v1/mailbox_store.pb-c.h"
#include "tigress/push/v1/push_dispatch.pb-c.h"

#define SVC "/tigress.mailbox.v1.MailboxStore/"
#define CLAIM_A "aaaaaaaa-0000-4000-8000-000000000001"
#define CLAIM_B "bbbbbbbb-0000-4000-8000-000000000002"
#define CLAIM_C "cccccccc-0000-4000-8000-000000000003"
/* Deadlines and upper bounds get SLOW(ms): 4 times the room under ThreadSanitizer, which slows
 * the store and this client several times over (tests/run runs this suite under TSan). */
#if defined(__SANITIZE_THREAD__)
#define SLOW(ms) ((ms)*4)
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SLOW(ms) ((ms)*4)
#endif
#endif
#ifndef SLOW
#define SLOW(ms) (ms)
#endif
#define START_MS SLOW(30000)
#define CALL_MS SLOW(10000)

typedef struct {
    ms_tengine_t eng; /* the storage the store runs on */
    char dir[512];    /* --data-dir: the fixture's temp dir */
    char data_arg[600];
    char push_arg[300];
    char extra_arg[300]; /* one more flag for the next start, or "" */
    char token_arg[700]; /* --token-key-file=<dir>/token-keys (also read back by db_scan) */
    int mounted;         /* a tmpfs is mounted on |dir| (disk_full test) */
    th_proc_t proc;
    cm_rpc_channel_t *ch;
    int port;
    int admin_port;
} fx_t;

static void store_start(fx_t *fx)
{
    const char *extra[12] = {"--sweep-interval-ms=100", "--max-ttl=3600",
                             fx->push_arg[0] ? fx->push_arg : "--log-level=info",
                             fx->extra_arg[0] ? fx->extra_arg : "--log-level=info"};
    int n = 4 + ms_tengine_server_args(&fx->eng, extra + 4, 6);
    /* One token key ring for every start (and for db_scan's own core). */
    char ring[600];
    snprintf(ring, sizeof(ring), "%s/token-keys", fx->dir);
    if (access(ring, F_OK) != 0)
        assert_int_equal(cm_seal_ring_generate(ring, 1), CM_SEAL_OK);
    snprintf(fx->token_arg, sizeof(fx->token_arg), "--token-key-file=%s", ring);
    extra[n] = fx->token_arg;
    assert_int_equal(th_store_start(&fx->proc, fx->dir, 0, extra, START_MS), 0);
    fx->port = th_proc_port(&fx->proc, "grpc_port");
    fx->admin_port = th_proc_port(&fx->proc, "admin_port");
    assert_true(fx->port > 0 && fx->admin_port > 0);
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", fx->port);
    assert_int_equal(cm_rpc_channel_new(target, NULL, &fx->ch), 0);
}

static void channel_drop(fx_t *fx)
{
    if (fx->ch)
        cm_rpc_channel_del(fx->ch);
    fx->ch = NULL;
}

/* SIGTERM and expect a clean exit 0. */
static void store_stop(fx_t *fx)
{
    channel_drop(fx);
    assert_int_equal(th_proc_stop_clean(&fx->proc, "mailbox-store", SLOW(20000)), 0);
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    assert_int_equal(ms_tengine_setup(&fx->eng, 0), 0);
    snprintf(fx->dir, sizeof(fx->dir), "%s", fx->eng.dir);
    *state = fx;
    return 0;
}

static int setup_started(void **state)
{
    setup(state);
    store_start(*state);
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    channel_drop(fx);
    th_proc_cleanup(&fx->proc);
    if (fx->mounted)
        umount2(fx->dir, MNT_DETACH);
    ms_tengine_teardown(&fx->eng);
    free(fx);
    return 0;
}

/* ---- calls ---- */

/* A unary call of |method|; the whole status (code and message) in *st. */
static int call_st(fx_t *fx, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *rd, ProtobufCMessage **resp,
                   cm_rpc_status_t *st)
{
    char path[128];
    snprintf(path, sizeof(path), SVC "%s", method);
    cm_rpc_call_opts_t o = {.timeout_ms = CALL_MS, .request_id = "test"};
    ProtobufCMessage *r = NULL;
    cm_rpc_call(fx->ch, path, req, rd, &o, &r, st);
    if (resp)
        *resp = r;
    else if (r)
        protobuf_c_message_free_unpacked(r, NULL);
    return st->code;
}

static int call(fx_t *fx, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *rd, ProtobufCMessage **resp)
{
    cm_rpc_status_t st;
    return call_st(fx, method, req, rd, resp, &st);
}

static const ms_treq_content_t CONTENT = {.data = "secret-bytes",
                                          .title = "Hotel Pass",
                                          .description = "Some Hotel Pass",
                                          .image_url = "https://hotel.example/i.png"};

static int create(fx_t *fx, const char *id, const char *claim, const char *corr, const char *rights,
                  int64_t ttl, const char *tok, int *dup)
{
    ms_treq_create_t c;
    ms_treq_create(&c, &CONTENT, id, claim, corr, rights, ttl, tok ? "com.apple.apns" : NULL, tok);
    Tigress__Mailbox__V1__CreateResponse *resp = NULL;
    int code = call(fx, "Create", &c.req.base, &tigress__mailbox__v1__create_response__descriptor,
                    (ProtobufCMessage **)&resp);
    if (resp) {
        assert_string_equal(resp->mailbox_id, id);
        if (dup)
            *dup = resp->duplicate;
        tigress__mailbox__v1__create_response__free_unpacked(resp, NULL);
    }
    return code;
}

static int read_secure(fx_t *fx, const char *id, const char *claim, const char *corr, int *dup)
{
    Tigress__Mailbox__V1__ReadSecureRequest r = TIGRESS__MAILBOX__V1__READ_SECURE_REQUEST__INIT;
    r.mailbox_id = (char *)id;
    r.device_claim = (char *)claim;
    r.correlation_id = (char *)corr;
    Tigress__Mailbox__V1__ReadSecureResponse *resp = NULL;
    int code =
        call(fx, "ReadSecure", &r.base, &tigress__mailbox__v1__read_secure_response__descriptor,
             (ProtobufCMessage **)&resp);
    if (resp) {
        assert_string_equal(resp->payload->type, "AES128");
        assert_string_equal(resp->display->title, "Hotel Pass");
        if (dup)
            *dup = resp->duplicate;
        tigress__mailbox__v1__read_secure_response__free_unpacked(resp, NULL);
    }
    return code;
}

static int rs(fx_t *fx, const char *id, const char *claim)
{
    return read_secure(fx, id, claim, "", NULL);
}

static int read_display(fx_t *fx, const char *id)
{
    Tigress__Mailbox__V1__ReadDisplayRequest r = TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
    r.mailbox_id = (char *)id;
    Tigress__Mailbox__V1__ReadDisplayResponse *resp = NULL;
    int code =
        call(fx, "ReadDisplay", &r.base, &tigress__mailbox__v1__read_display_response__descriptor,
             (ProtobufCMessage **)&resp);
    if (resp) {
        assert_string_equal(resp->display->description, "Some Hotel Pass");
        tigress__mailbox__v1__read_display_response__free_unpacked(resp, NULL);
    }
    return code;
}

static int update(fx_t *fx, const char *id, const char *claim, const char *corr, const char *tok,
                  int *dup)
{
    ms_treq_update_t u;
    ms_treq_update(&u, id, claim, corr, "updated", tok ? "com.google.fcm" : NULL, tok);
    Tigress__Mailbox__V1__UpdateResponse *resp = NULL;
    int code = call(fx, "Update", &u.req.base, &tigress__mailbox__v1__update_response__descriptor,
                    (ProtobufCMessage **)&resp);
    if (resp) {
        if (dup)
            *dup = resp->duplicate;
        tigress__mailbox__v1__update_response__free_unpacked(resp, NULL);
    }
    return code;
}

static int del(fx_t *fx, const char *id, const char *claim)
{
    Tigress__Mailbox__V1__DeleteRequest r = TIGRESS__MAILBOX__V1__DELETE_REQUEST__INIT;
    r.mailbox_id = (char *)id;
    r.device_claim = (char *)claim;
    return call(fx, "Delete", &r.base, &tigress__mailbox__v1__delete_response__descriptor, NULL);
}

static int relinquish(fx_t *fx, const char *id, const char *claim)
{
    Tigress__Mailbox__V1__RelinquishRequest r = TIGRESS__MAILBOX__V1__RELINQUISH_REQUEST__INIT;
    r.mailbox_id = (char *)id;
    r.device_claim = (char *)claim;
    return call(fx, "Relinquish", &r.base, &tigress__mailbox__v1__relinquish_response__descriptor,
                NULL);
}

static void new_id(char id[37])
{
    assert_int_equal(cm_uuid_v4(id), 0);
}

/* ---- database inspection (read-only, after stop) ---- */

typedef struct {
    int keys_mentioning; /* keys or values that contain the needle */
    int outbox_notify;   /* outbox entries */
    int outbox_cancel;
    char last_token[128]; /* token_data of the last notify entry naming the needle */
} scan_t;

static void db_scan(fx_t *fx, const char *needle, scan_t *s)
{
    memset(s, 0, sizeof(*s));
    s->keys_mentioning = ms_tengine_count_mentions(&fx->eng, needle, strlen(needle));
    assert_true(s->keys_mentioning >= 0);
    /* the outbox as a forwarder would claim it (tokens opened by a core with the store's
     * token keys) */
    static const uint8_t key[32] = "any-key-any-key-any-key-any-key!";
    char ring_path[600], err[256];
    cm_seal_ring_t *ring = NULL;
    snprintf(ring_path, sizeof(ring_path), "%s/token-keys", fx->dir);
    assert_int_equal(cm_seal_ring_load(ring_path, &ring, err, sizeof(err)), CM_SEAL_OK);
    assert_int_equal(ms_tengine_open(&fx->eng), 0);
    ms_engine_t *e = fx->eng.engine;
    ms_core_t *core = NULL;
    ms_core_opts_t co = {
        .engine = e, .claim_key = key, .claim_key_len = sizeof(key), .token_ring = ring};
    assert_int_equal(ms_core_new(&co, &core), MS_OK);
    ms_outbox_entry_t en[64];
    size_t n = 0;
    assert_int_equal(e->ops->outbox_claim(e, 64, 60000, en, &n), MS_OK);
    for (size_t i = 0; i < n; i++) {
        ms_notification_t no;
        assert_int_equal(ms_core_outbox_decode(core, &en[i], &no), MS_OK);
        if (no.kind == MS_OUTBOX_CANCEL)
            s->outbox_cancel++;
        else
            s->outbox_notify++;
        if (no.kind == MS_OUTBOX_NOTIFY && strcmp(no.mailbox_id, needle) == 0)
            snprintf(s->last_token, sizeof(s->last_token), "%s:%s", no.token_type, no.token_data);
        ms_notification_free(&no);
    }
    assert_int_equal(e->ops->outbox_release(e, en, n), MS_OK);
    ms_outbox_entries_free(en, n);
    ms_core_del(core);
    cm_seal_ring_free(ring);
    ms_tengine_close(&fx->eng);
}

/* ---- tests ---- */

static void rules_over_rpc(void **state)
{
    fx_t *fx = *state;
    char id[37], id2[37];
    new_id(id);
    new_id(id2);
    int dup = -1;
    const int PD = GRPC_STATUS_PERMISSION_DENIED, INV = GRPC_STATUS_INVALID_ARGUMENT;
    /* Create checks */
    assert_int_equal(create(fx, "nope", CLAIM_A, "", "", 60, NULL, NULL), INV);
    assert_int_equal(
        create(fx, "3f2504e0-4f89-11d3-9a0c-0305e82c3301", CLAIM_A, "", "", 60, NULL, NULL), INV);
    assert_int_equal(create(fx, id, CLAIM_A, "", "", 0, NULL, NULL), INV);
    assert_int_equal(create(fx, id, CLAIM_A, "", "", 3601, NULL, NULL), INV); /* --max-ttl */
    assert_int_equal(create(fx, id, CLAIM_A, "", "RX", 60, NULL, NULL), INV);
    assert_int_equal(create(fx, id, "", "", "", 60, NULL, NULL), INV);
    assert_int_equal(read_display(fx, id), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(create(fx, id, CLAIM_A, "c1", "", 3600, NULL, &dup), 0);
    assert_false(dup);
    assert_int_equal(create(fx, id, CLAIM_A, "c1", "", 60, NULL, &dup), 0); /* duplicate */
    assert_true(dup);
    assert_int_equal(create(fx, id, CLAIM_B, "c1", "", 60, NULL, NULL), GRPC_STATUS_ALREADY_EXISTS);
    assert_int_equal(create(fx, id, CLAIM_A, "c2", "", 60, NULL, NULL), GRPC_STATUS_ALREADY_EXISTS);
    assert_int_equal(read_display(fx, id), 0);
    assert_int_equal(read_display(fx, id2), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(read_display(fx, "x"), INV);
    /* binding */
    assert_int_equal(read_secure(fx, id, CLAIM_B, "r1", &dup), 0);
    assert_false(dup);
    assert_int_equal(read_secure(fx, id, CLAIM_B, "r1", &dup), 0);
    assert_true(dup);
    assert_int_equal(rs(fx, id, CLAIM_C), PD);
    assert_int_equal(rs(fx, id, CLAIM_A), 0);
    /* rights: default RD, so no Update */
    assert_int_equal(update(fx, id, CLAIM_A, "", NULL, NULL), PD);
    assert_int_equal(update(fx, id, CLAIM_B, "", NULL, NULL), PD);
    /* Relinquish: receiver only; then another device binds */
    assert_int_equal(relinquish(fx, id, CLAIM_A), GRPC_STATUS_FAILED_PRECONDITION);
    assert_int_equal(relinquish(fx, id, CLAIM_C), PD);
    assert_int_equal(relinquish(fx, id, CLAIM_B), 0);
    assert_int_equal(rs(fx, id, CLAIM_C), 0);
    assert_int_equal(rs(fx, id, CLAIM_B), PD);
    /* Delete: bound claims with D only */
    assert_int_equal(del(fx, id, CLAIM_B), PD);
    assert_int_equal(del(fx, id, CLAIM_C), 0);
    assert_int_equal(read_display(fx, id), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(rs(fx, id, CLAIM_A), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(del(fx, id, CLAIM_A), GRPC_STATUS_NOT_FOUND);
    /* RWD: Update by both parties, duplicates change nothing */
    assert_int_equal(create(fx, id2, CLAIM_A, "", "RWD", 600, "TOKEN-A", NULL), 0);
    assert_int_equal(update(fx, id2, CLAIM_B, "", NULL, NULL), PD); /* not bound yet */
    assert_int_equal(rs(fx, id2, CLAIM_B), 0);
    assert_int_equal(update(fx, id2, CLAIM_B, "u1", "TOKEN-B", &dup), 0);
    assert_false(dup);
    assert_int_equal(update(fx, id2, CLAIM_B, "u1", "TOKEN-B", &dup), 0);
    assert_true(dup);
    assert_int_equal(update(fx, id2, CLAIM_A, "u1", NULL, &dup), 0); /* other claim: new */
    assert_false(dup);
    /* unknown / expired ids are NOT_FOUND everywhere */
    char id3[37];
    new_id(id3);
    assert_int_equal(update(fx, id3, CLAIM_A, "", NULL, NULL), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(relinquish(fx, id3, CLAIM_A), GRPC_STATUS_NOT_FOUND);
    /* the two updates produced two outbox entries (B's update -> A's token, A's -> B's) */
    store_stop(fx);
    scan_t s;
    db_scan(fx, id2, &s);
    assert_int_equal(s.outbox_notify, 2);
    assert_string_equal(s.last_token, "com.google.fcm:TOKEN-B");
    db_scan(fx, CLAIM_A, &s);
    assert_int_equal(s.keys_mentioning, 0); /* claims only as keyed hashes */
}

typedef struct {
    fx_t *fx;
    const char *id;
} race_ctx_t;

static int race_read(void *ctx, int who)
{
    race_ctx_t *c = ctx;
    char claim[64];
    snprintf(claim, sizeof(claim), "%08d-0000-4000-8000-000000000000", who);
    return rs(c->fx, c->id, claim);
}

static void binding_race(void **state)
{
    fx_t *fx = *state;
    enum { N = 24, ROUNDS = 5 };
    for (int round = 0; round < ROUNDS; round++) {
        char id[37];
        new_id(id);
        assert_int_equal(create(fx, id, CLAIM_A, "", "", 600, NULL, NULL), 0);
        race_ctx_t c = {fx, id};
        int winner =
            ms_tengine_binding_race(N, round * 100, race_read, &c, GRPC_STATUS_PERMISSION_DENIED);
        char claim[64];
        snprintf(claim, sizeof(claim), "%08d-0000-4000-8000-000000000000", winner);
        assert_int_equal(rs(fx, id, claim), 0);
        assert_int_equal(rs(fx, id, CLAIM_C), GRPC_STATUS_PERMISSION_DENIED);
    }
}

static void ttl_expiry_and_sweeper(void **state)
{
    fx_t *fx = *state;
    char id[37], keep[37];
    new_id(id);
    new_id(keep);
    assert_int_equal(create(fx, id, CLAIM_A, "c1", "RWD", 2, "TOKEN-A", NULL), 0);
    assert_int_equal(create(fx, keep, CLAIM_A, "c1", "RWD", 600, NULL, NULL), 0);
    long long t0 = th_now_ms();
    assert_int_equal(read_secure(fx, id, CLAIM_B, "c2", NULL), 0);
    assert_int_equal(update(fx, id, CLAIM_B, "c3", "TOKEN-B", NULL), 0);
    /* every read path: NOT_FOUND as soon as the lifetime is over */
    while (th_now_ms() - t0 < 2100)
        usleep(20000);
    assert_int_equal(read_display(fx, id), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(rs(fx, id, CLAIM_A), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(update(fx, id, CLAIM_B, "", NULL, NULL), GRPC_STATUS_NOT_FOUND);
    /* the sweeper (every 100 ms) removes it; give a loaded machine time */
    usleep(1500 * 1000);
    assert_int_equal(read_display(fx, keep), 0);
    store_stop(fx);
    scan_t s;
    db_scan(fx, id, &s);
    assert_int_equal(s.keys_mentioning, 0); /* record, index, idempotency, outbox: all gone */
    assert_int_equal(s.outbox_notify, 0);
    db_scan(fx, keep, &s);
    assert_true(s.keys_mentioning >= 2); /* record, idempotency record (+ RocksDB's index) */
}

static void restart_durability(void **state)
{
    fx_t *fx = *state;
    enum { N = 100 };
    char ids[N][37];
    for (int i = 0; i < N; i++) {
        new_id(ids[i]);
        assert_int_equal(create(fx, ids[i], CLAIM_A, "", "RWD", 3600, "TOKEN-A", NULL), 0);
        if (i % 2 == 0)
            assert_int_equal(rs(fx, ids[i], CLAIM_B), 0);
    }
    channel_drop(fx);
    th_proc_kill9(&fx->proc); /* no shutdown path: only what was fsynced survives */
    store_start(fx);
    for (int i = 0; i < N; i++) {
        assert_int_equal(read_display(fx, ids[i]), 0);
        if (i % 2 == 0) {
            assert_int_equal(rs(fx, ids[i], CLAIM_C), GRPC_STATUS_PERMISSION_DENIED);
            assert_int_equal(rs(fx, ids[i], CLAIM_B), 0);
        } else {
            assert_int_equal(rs(fx, ids[i], CLAIM_C), 0); /* binds now */
        }
        assert_int_equal(rs(fx, ids[i], CLAIM_A), 0);
    }
    store_stop(fx);
}

static char *http_get(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return NULL;
    }
    char req[256];
    int n =
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while ((r = read(fd, buf + len, cap - 1 - len)) > 0) {
        len += (size_t)r;
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    buf[len] = '\0';
    close(fd);
    return buf;
}

static void health_unknown_metrics(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(cm_rpc_health_check(fx->ch, "", CALL_MS), 1);
    assert_int_equal(cm_rpc_health_check(fx->ch, "tigress.mailbox.v1.MailboxStore", CALL_MS), 1);
    assert_int_equal(cm_rpc_health_check(fx->ch, "no.such.Service", CALL_MS), -1);
    Tigress__Mailbox__V1__ReadDisplayRequest r = TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
    long long t0 = th_now_ms();
    assert_int_equal(call(fx, "NoSuchMethod", &r.base,
                          &tigress__mailbox__v1__read_display_response__descriptor, NULL),
                     GRPC_STATUS_UNIMPLEMENTED);
    assert_true(th_now_ms() - t0 < SLOW(1000));
    char id[37];
    new_id(id);
    assert_int_equal(create(fx, id, CLAIM_A, "", "", 60, NULL, NULL), 0);
    assert_int_equal(read_display(fx, "bad"), GRPC_STATUS_INVALID_ARGUMENT);
    char *m = http_get(fx->admin_port, "/metrics");
    assert_non_null(m);
    assert_non_null(
        strstr(m, "tigress_mailbox_store_requests_total{method=\"create\",code=\"OK\"} 1"));
    assert_non_null(strstr(
        m,
        "tigress_mailbox_store_requests_total{method=\"read_display\",code=\"INVALID_ARGUMENT\"}"));
    assert_non_null(strstr(m, "tigress_mailbox_store_outbox_depth"));
    /* the RPC layer's own series, per registered method; unknown paths share one label */
    assert_non_null(strstr(m, "rpc_server_requests_total{method=\"" SVC "Create\",code=\"OK\"} 1"));
    assert_non_null(strstr(m, "rpc_server_requests_total{method=\"" SVC
                              "ReadDisplay\",code=\"INVALID_ARGUMENT\"} 1"));
    assert_non_null(
        strstr(m, "rpc_server_requests_total{method=\"unknown\",code=\"UNIMPLEMENTED\"} 1"));
    assert_non_null(strstr(m, "rpc_server_duration_seconds_count{method=\"" SVC "Create\"} 1"));
    assert_null(strstr(m, "NoSuchMethod"));
    assert_null(strstr(m, id)); /* no ids in metrics */
    free(m);
    m = http_get(fx->admin_port, "/readyz");
    assert_non_null(m);
    assert_non_null(strstr(m, " 200 "));
    free(m);
    store_stop(fx);
}

/* ---- Batch: several calls in one round trip, each answered as its unary twin ---- */

typedef Tigress__Mailbox__V1__BatchCall bcall_t;
typedef Tigress__Mailbox__V1__BatchResult bres_t;
typedef Tigress__Mailbox__V1__BatchResponse bresp_t;

/* A call of |method| carrying |n| raw request bytes (copied; bcalls_free frees them). */
static void bc_raw(bcall_t *c, const char *method, const void *bytes, size_t n)
{
    *c = (bcall_t)TIGRESS__MAILBOX__V1__BATCH_CALL__INIT;
    c->method = (char *)method;
    c->request_id = "batch-test";
    c->request.data = malloc(n ? n : 1);
    memcpy(c->request.data, bytes, n);
    c->request.len = n;
}

/* A call of |method| carrying |req| serialized. */
static void bc_msg(bcall_t *c, const char *method, const ProtobufCMessage *req)
{
    size_t n = protobuf_c_message_get_packed_size(req);
    uint8_t *b = malloc(n ? n : 1);
    assert_int_equal(protobuf_c_message_pack(req, b), n);
    bc_raw(c, method, b, n);
    free(b);
}

static void bcalls_free(bcall_t *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(c[i].request.data);
}

static int batch(fx_t *fx, bcall_t *calls, size_t n, bresp_t **out, cm_rpc_status_t *st)
{
    bcall_t **pp = calloc(n ? n : 1, sizeof(*pp));
    for (size_t i = 0; i < n; i++)
        pp[i] = &calls[i];
    Tigress__Mailbox__V1__BatchRequest r = TIGRESS__MAILBOX__V1__BATCH_REQUEST__INIT;
    r.n_calls = n;
    r.calls = pp;
    int code = call_st(fx, "Batch", &r.base, &tigress__mailbox__v1__batch_response__descriptor,
                       (ProtobufCMessage **)out, st);
    free(pp);
    return code;
}

/* Result |r| must be what the unary call of |method| with |req| answers now: same code, and
 * the same response bytes on OK. The store's own refusals carry the same message too; with
 * |same_msg| 0 (the RPC layer answers the unary call: unknown method, unreadable request) only
 * the code is compared. */
static void same_as_unary(fx_t *fx, const bres_t *r, const char *method,
                          const ProtobufCMessage *req, const ProtobufCMessageDescriptor *rd,
                          int same_msg)
{
    cm_rpc_status_t st;
    ProtobufCMessage *u = NULL;
    call_st(fx, method, req, rd, &u, &st);
    assert_int_equal(r->code, st.code);
    if (st.code == GRPC_STATUS_OK) {
        size_t n = protobuf_c_message_get_packed_size(u);
        uint8_t *b = malloc(n ? n : 1);
        protobuf_c_message_pack(u, b);
        assert_int_equal(r->response.len, n);
        assert_memory_equal(r->response.data, b, n);
        assert_string_equal(r->message, "");
        free(b);
        protobuf_c_message_free_unpacked(u, NULL);
    } else {
        assert_null(u);
        assert_int_equal(r->response.len, 0);
        assert_true(r->message[0] != '\0');
        if (same_msg)
            assert_string_equal(r->message, st.message);
    }
}

static void check_secure(const bres_t *r)
{
    assert_int_equal(r->code, GRPC_STATUS_OK);
    Tigress__Mailbox__V1__ReadSecureResponse *s =
        tigress__mailbox__v1__read_secure_response__unpack(NULL, r->response.len, r->response.data);
    assert_non_null(s);
    assert_false(s->duplicate);
    assert_string_equal(s->display->title, "Hotel Pass");
    assert_string_equal(s->payload->type, "AES128");
    assert_int_equal(s->payload->data.len, strlen(CONTENT.data));
    assert_memory_equal(s->payload->data.data, CONTENT.data, strlen(CONTENT.data));
    tigress__mailbox__v1__read_secure_response__free_unpacked(s, NULL);
}

static int64_t now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void metric_has(const char *m, const char *line)
{
    if (!strstr(m, line))
        fail_msg("metrics lack \"%s\"", line);
}

static void batch_calls(void **state)
{
    fx_t *fx = *state;
    long long start = th_now_ms();
    cm_rpc_status_t st;
    bresp_t *resp = NULL;
    char id[37], unknown[37];
    new_id(id);
    new_id(unknown);
    assert_int_equal(create(fx, id, CLAIM_A, "", "", 600, NULL, NULL), 0);

    /* (4) a Create in a batch is a Create: synced (survives kill -9), visible to unary reads,
     * and its idempotency record answers a unary retry and a batched retry alike. First, so
     * that every batch below runs in the process that stops cleanly (sanitizers check it). */
    char made[37];
    new_id(made);
    ms_treq_create_t cr;
    ms_treq_create(&cr, &CONTENT, made, CLAIM_A, "bc-1", "", 600, NULL, NULL);
    bcall_t one;
    bc_msg(&one, "Create", &cr.req.base);
    int64_t t0 = now_ms();
    assert_int_equal(batch(fx, &one, 1, &resp, &st), GRPC_STATUS_OK);
    assert_int_equal(resp->n_results, 1);
    assert_int_equal(resp->results[0]->code, GRPC_STATUS_OK);
    Tigress__Mailbox__V1__CreateResponse *cresp = tigress__mailbox__v1__create_response__unpack(
        NULL, resp->results[0]->response.len, resp->results[0]->response.data);
    assert_non_null(cresp);
    assert_string_equal(cresp->mailbox_id, made);
    assert_false(cresp->duplicate);
    assert_true(cresp->expires_at_ms >= t0 + 600000 - 5000 &&
                cresp->expires_at_ms <= now_ms() + 600000);
    tigress__mailbox__v1__create_response__free_unpacked(cresp, NULL);
    tigress__mailbox__v1__batch_response__free_unpacked(resp, NULL);
    channel_drop(fx);
    th_proc_kill9(&fx->proc);
    store_start(fx);
    assert_int_equal(read_display(fx, made), 0);
    int dup = -1;
    assert_int_equal(create(fx, made, CLAIM_A, "bc-1", "", 600, NULL, &dup), 0);
    assert_true(dup);
    assert_int_equal(batch(fx, &one, 1, &resp, &st), GRPC_STATUS_OK);
    same_as_unary(fx, resp->results[0], "Create", &cr.req.base,
                  &tigress__mailbox__v1__create_response__descriptor, 1);
    tigress__mailbox__v1__batch_response__free_unpacked(resp, NULL);
    bcalls_free(&one, 1);
    assert_int_equal(create(fx, made, CLAIM_B, "", "", 600, NULL, NULL),
                     GRPC_STATUS_ALREADY_EXISTS);

    /* (1) one batch of reads, bindings and failures, answered in order */
    Tigress__Mailbox__V1__ReadDisplayRequest rd = TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT,
                                             rd_unknown = rd;
    rd.mailbox_id = id;
    rd_unknown.mailbox_id = unknown;
    Tigress__Mailbox__V1__ReadSecureRequest rs_a = TIGRESS__MAILBOX__V1__READ_SECURE_REQUEST__INIT,
                                            rs_b = rs_a, rs_c = rs_a;
    rs_a.mailbox_id = rs_b.mailbox_id = rs_c.mailbox_id = id;
    rs_a.device_claim = CLAIM_A; /* the creator: does not bind */
    rs_b.device_claim = CLAIM_B; /* first other device: binds */
    rs_c.device_claim = CLAIM_C; /* a third one: refused */
    /* 08 01 (field 1, varint): a ReadDisplayRequest's field 1 is a string, so unreadable */
    Tigress__Mailbox__V1__CreateResponse not_rd = TIGRESS__MAILBOX__V1__CREATE_RESPONSE__INIT;
    not_rd.duplicate = 1;
    static const uint8_t truncated[] = {0x0a, 0x40, 'a', 'b'}; /* string runs past the end */
    Tigress__Mailbox__V1__BatchRequest nested = TIGRESS__MAILBOX__V1__BATCH_REQUEST__INIT;
    enum { N = 11 };
    bcall_t c[N];
    bc_msg(&c[0], "ReadDisplay", &rd.base);
    bc_msg(&c[1], "ReadSecure", &rs_a.base);
    bc_msg(&c[2], "ReadSecure", &rs_b.base);
    bc_msg(&c[3], "ReadSecure", &rs_c.base);
    bc_msg(&c[4], "ReadDisplay", &rd_unknown.base);
    bc_msg(&c[5], "NoSuchMethod", &rd.base);
    bc_msg(&c[6], "ReadDisplay", &not_rd.base);
    bc_raw(&c[7], "ReadSecure", truncated, sizeof(truncated));
    bc_msg(&c[8], "Batch", &nested.base); /* no batches in batches */
    bc_msg(&c[9], "", &rd.base);
    bc_msg(&c[10], SVC "ReadDisplay", &rd.base); /* a name, not a path */
    const int want[N] = {GRPC_STATUS_OK,
                         GRPC_STATUS_OK,
                         GRPC_STATUS_OK,
                         GRPC_STATUS_PERMISSION_DENIED,
                         GRPC_STATUS_NOT_FOUND,
                         GRPC_STATUS_UNIMPLEMENTED,
                         GRPC_STATUS_INVALID_ARGUMENT,
                         GRPC_STATUS_INVALID_ARGUMENT,
                         GRPC_STATUS_UNIMPLEMENTED,
                         GRPC_STATUS_UNIMPLEMENTED,
                         GRPC_STATUS_UNIMPLEMENTED};
    assert_int_equal(batch(fx, c, N, &resp, &st), GRPC_STATUS_OK);
    bcalls_free(c, N);
    assert_int_equal(resp->n_results, N);
    for (int i = 0; i < N; i++) {
        if (resp->results[i]->code != want[i])
            fail_msg("batch result %d: code %d, want %d (%s)", i, resp->results[i]->code, want[i],
                     resp->results[i]->message);
        if (want[i] != GRPC_STATUS_OK)
            assert_int_equal(resp->results[i]->response.len, 0);
    }
    Tigress__Mailbox__V1__ReadDisplayResponse *d =
        tigress__mailbox__v1__read_display_response__unpack(NULL, resp->results[0]->response.len,
                                                            resp->results[0]->response.data);
    assert_non_null(d);
    assert_string_equal(d->display->title, "Hotel Pass");
    assert_string_equal(d->display->image_url, "https://hotel.example/i.png");
    assert_true(d->expires_at_ms > now_ms() + 590000 && d->expires_at_ms <= now_ms() + 600000);
    tigress__mailbox__v1__read_display_response__free_unpacked(d, NULL);
    check_secure(resp->results[1]);
    check_secure(resp->results[2]);
    /* Each equals its unary twin, asked now in the same order (B is bound since item 2, so
     * its unary read is the bound device's read, which answers the same bytes). */
    const ProtobufCMessageDescriptor *rdd =
                                         &tigress__mailbox__v1__read_display_response__descriptor,
                                     *rsd = &tigress__mailbox__v1__read_secure_response__descriptor;
    same_as_unary(fx, resp->results[0], "ReadDisplay", &rd.base, rdd, 1);
    same_as_unary(fx, resp->results[1], "ReadSecure", &rs_a.base, rsd, 1);
    same_as_unary(fx, resp->results[2], "ReadSecure", &rs_b.base, rsd, 1);
    same_as_unary(fx, resp->results[3], "ReadSecure", &rs_c.base, rsd, 1);
    same_as_unary(fx, resp->results[4], "ReadDisplay", &rd_unknown.base, rdd, 1);
    same_as_unary(fx, resp->results[5], "NoSuchMethod", &rd.base, rdd, 0);
    same_as_unary(fx, resp->results[6], "ReadDisplay", &not_rd.base, rdd, 0);
    tigress__mailbox__v1__batch_response__free_unpacked(resp, NULL);
    /* the binding made inside the batch holds for unary calls */
    assert_int_equal(rs(fx, id, CLAIM_B), 0);
    assert_int_equal(rs(fx, id, CLAIM_C), GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(rs(fx, id, CLAIM_A), 0);

    /* (2) an empty batch: OK, no results */
    assert_int_equal(batch(fx, NULL, 0, &resp, &st), GRPC_STATUS_OK);
    assert_int_equal(resp->n_results, 0);
    tigress__mailbox__v1__batch_response__free_unpacked(resp, NULL);

    /* (3) 257 Creates: the whole call refused, none of them made; 256 is still a batch */
    enum { OVER = 257 };
    static char ids[OVER][37];
    bcall_t *many = calloc(OVER, sizeof(*many));
    for (int i = 0; i < OVER; i++) {
        new_id(ids[i]);
        ms_treq_create_t cr;
        ms_treq_create(&cr, &CONTENT, ids[i], CLAIM_A, "", "", 600, NULL, NULL);
        bc_msg(&many[i], "Create", &cr.req.base);
    }
    resp = NULL;
    assert_int_equal(batch(fx, many, OVER, &resp, &st), GRPC_STATUS_INVALID_ARGUMENT);
    assert_null(resp);
    assert_string_equal(st.message, "more than 256 calls in a batch");
    bcalls_free(many, OVER);
    for (int i = 0; i < OVER - 1; i++) {
        Tigress__Mailbox__V1__ReadDisplayRequest r =
            TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
        r.mailbox_id = ids[i];
        bc_msg(&many[i], "ReadDisplay", &r.base);
    }
    assert_int_equal(batch(fx, many, OVER - 1, &resp, &st), GRPC_STATUS_OK);
    bcalls_free(many, OVER - 1);
    free(many);
    assert_int_equal(resp->n_results, OVER - 1);
    for (int i = 0; i < OVER - 1; i++)
        assert_int_equal(resp->results[i]->code, GRPC_STATUS_NOT_FOUND);
    tigress__mailbox__v1__batch_response__free_unpacked(resp, NULL);
    assert_int_equal(read_display(fx, ids[OVER - 1]), GRPC_STATUS_NOT_FOUND);

    /* (5) each item counts under its own method, the batch under method="batch" */
    char *m = http_get(fx->admin_port, "/metrics");
    assert_non_null(m);
#define MS_REQS "tigress_mailbox_store_requests_total{method=\""
    /* counted since the restart: batches (1), (2), the 256 reads and the batched retry */
    metric_has(m, MS_REQS "batch\",code=\"OK\"} 4\n");
    metric_has(m, MS_REQS "batch\",code=\"INVALID_ARGUMENT\"} 1\n");
    /* the unary retry, the batched retry and its unary twin; none of the 257 */
    metric_has(m, MS_REQS "create\",code=\"OK\"} 3\n");
    /* batched 1, its unary twin 1, the unary check after it 1 */
    metric_has(m, MS_REQS "read_secure\",code=\"PERMISSION_DENIED\"} 3\n");
    /* batched 1, its unary twin 1, the 256 batched, one unary */
    metric_has(m, MS_REQS "read_display\",code=\"NOT_FOUND\"} 259\n");
    metric_has(m, "rpc_server_requests_total{method=\"" SVC "Batch\",code=\"OK\"} 4\n");
    metric_has(m,
               "rpc_server_requests_total{method=\"" SVC "Batch\",code=\"INVALID_ARGUMENT\"} 1\n");
#undef MS_REQS
    free(m);
    store_stop(fx);
    print_message("batch_calls: %lld ms including a kill -9 and restart\n", th_now_ms() - start);
}

typedef struct {
    pthread_mutex_t mu;
    int done, ok;
    int code[64];
} async_t;

typedef struct {
    async_t *a;
    int i;
} async_slot_t;

static void on_done(void *user, const cm_rpc_status_t *st, ProtobufCMessage *resp)
{
    async_slot_t *s = user;
    pthread_mutex_lock(&s->a->mu);
    s->a->code[s->i] = st->code;
    s->a->done++;
    if (st->code == GRPC_STATUS_OK)
        s->a->ok++;
    pthread_mutex_unlock(&s->a->mu);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
}

static void sigterm_drains(void **state)
{
    fx_t *fx = *state;
    enum { N = 64 };
    char ids[N][37];
    async_t a = {.mu = PTHREAD_MUTEX_INITIALIZER};
    async_slot_t slots[N];
    cm_rpc_async_t *as = NULL;
    assert_int_equal(cm_rpc_async_new(&as), 0);
    cm_rpc_call_opts_t o = {.timeout_ms = CALL_MS};
    for (int i = 0; i < N; i++) {
        new_id(ids[i]);
        Tigress__Mailbox__V1__CreateRequest r = TIGRESS__MAILBOX__V1__CREATE_REQUEST__INIT;
        Tigress__Mailbox__V1__Payload p = TIGRESS__MAILBOX__V1__PAYLOAD__INIT;
        p.type = "AES128";
        r.mailbox_id = ids[i];
        r.device_claim = CLAIM_A;
        r.payload = &p;
        r.ttl_seconds = 600;
        slots[i] = (async_slot_t){&a, i};
        a.code[i] = -1;
        assert_int_equal(cm_rpc_call_async(as, fx->ch, SVC "Create", &r.base,
                                           &tigress__mailbox__v1__create_response__descriptor, &o,
                                           on_done, &slots[i]),
                         0);
    }
    /* SIGTERM while calls are in flight: exit 0, and every acknowledged create survives */
    kill(fx->proc.pid, SIGTERM);
    long long t0 = th_now_ms();
    assert_int_equal(th_proc_stop_clean(&fx->proc, "mailbox-store", SLOW(20000)), 0);
    assert_true(th_now_ms() - t0 < SLOW(15000));
    for (;;) {
        pthread_mutex_lock(&a.mu);
        int d = a.done;
        pthread_mutex_unlock(&a.mu);
        if (d == N)
            break;
        usleep(10000);
    }
    cm_rpc_async_del(as);
    channel_drop(fx);
    store_start(fx);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        if (a.code[i] == GRPC_STATUS_OK) {
            ok++;
            /* ReadDisplay checks the description, which these creates did not set */
            Tigress__Mailbox__V1__ReadSecureRequest r =
                TIGRESS__MAILBOX__V1__READ_SECURE_REQUEST__INIT;
            r.mailbox_id = ids[i];
            r.device_claim = CLAIM_A;
            assert_int_equal(call(fx, "ReadSecure", &r.base,
                                  &tigress__mailbox__v1__read_secure_response__descriptor, NULL),
                             0);
        }
    }
    print_message("sigterm_drains: %d of %d creates acknowledged before the drain\n", ok, N);
    store_stop(fx);
}

static void outbox_read_back_and_dump(void **state)
{
    fx_t *fx = *state;
    char id[37], gone[37];
    new_id(id);
    new_id(gone);
    assert_int_equal(create(fx, id, CLAIM_A, "", "RWD", 600, "TOKEN-A", NULL), 0);
    assert_int_equal(rs(fx, id, CLAIM_B), 0);
    assert_int_equal(update(fx, id, CLAIM_B, "", "TOKEN-B", NULL), 0);
    assert_int_equal(create(fx, gone, CLAIM_A, "", "RWD", 600, NULL, NULL), 0);
    assert_int_equal(del(fx, gone, CLAIM_A), 0);
    store_stop(fx);
    scan_t s;
    db_scan(fx, id, &s);
    assert_int_equal(s.outbox_notify, 1);
    assert_int_equal(s.outbox_cancel, 1);
    assert_string_equal(s.last_token, "com.apple.apns:TOKEN-A"); /* the OTHER party's token */
    if (ms_tengine_kind() != MS_ENGINE_ROCKSDB)
        return; /* --dump reads a RocksDB data directory */
    /* the same through the operator's dump */
    char cmd[1400], bin[512];
    th_bin("mailbox-store", bin, sizeof(bin));
    snprintf(cmd, sizeof(cmd), "%s --data-dir=%s --dump", bin, fx->dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[2048];
    int notify = 0, cancel = 0;
    while (fgets(line, sizeof(line), p)) {
        if (strstr(line, "\"kind\":\"outbox\"") && strstr(line, "\"type\":\"notify\"") &&
            strstr(line, id) && strstr(line, "\"token_key\":1"))
            notify++;
        if (strstr(line, "\"type\":\"cancel\"") && strstr(line, gone))
            cancel++;
        assert_null(strstr(line, "secret-bytes"));
        /* tokens are sealed: the dump names their key id, never their data */
        assert_null(strstr(line, "TOKEN-A"));
        assert_null(strstr(line, "TOKEN-B"));
    }
    assert_int_equal(pclose(p), 0);
    assert_int_equal(notify, 1);
    assert_int_equal(cancel, 1);
}

/* ---- forwarding to a fake push-dispatch (the real one is tested by its own suite) ---- */

typedef struct {
    pthread_mutex_t mu;
    int calls;
    int fail_first; /* answer UNAVAILABLE to this many Enqueue calls */
    int notifications;
    int cancels;
    int64_t cancel_expires_ms; /* mailbox_expires_at_ms of the last CancelMailbox */
    char tokens[256];
} fake_pd_t;

static grpc_status_code pd_enqueue(cm_rpc_call_t *call, void *user, const ProtobufCMessage *req,
                                   ProtobufCMessage *resp)
{
    fake_pd_t *f = user;
    const Tigress__Push__V1__EnqueueRequest *rq = (const void *)req;
    pthread_mutex_lock(&f->mu);
    int fail = f->calls++ < f->fail_first;
    if (!fail) {
        for (size_t i = 0; i < rq->n_notifications; i++) {
            f->notifications++;
            strncat(f->tokens, rq->notifications[i]->token_data,
                    sizeof(f->tokens) - strlen(f->tokens) - 2);
            strcat(f->tokens, ",");
        }
    }
    pthread_mutex_unlock(&f->mu);
    if (fail)
        return cm_rpc_fail(call, GRPC_STATUS_UNAVAILABLE, "not yet");
    ((Tigress__Push__V1__EnqueueResponse *)resp)->accepted = (uint32_t)rq->n_notifications;
    return GRPC_STATUS_OK;
}

static grpc_status_code pd_cancel(cm_rpc_call_t *call, void *user, const ProtobufCMessage *req,
                                  ProtobufCMessage *resp)
{
    fake_pd_t *f = user;
    const Tigress__Push__V1__CancelMailboxRequest *rq = (const void *)req;
    pthread_mutex_lock(&f->mu);
    f->cancels++;
    f->cancel_expires_ms = rq->mailbox_expires_at_ms;
    pthread_mutex_unlock(&f->mu);
    return GRPC_STATUS_OK;
}

static void forwarder_delivers_and_retries(void **state)
{
    fx_t *fx = *state;
    fake_pd_t f = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_first = 2};
    cm_rpc_server_opts_t so = {.listen = "127.0.0.1:0", .workers = 1, .drain_timeout_ms = 1000};
    cm_rpc_server_t *srv = NULL;
    int port = 0;
    assert_int_equal(cm_rpc_server_new(&so, &srv), 0);
    assert_int_equal(cm_rpc_server_add_method(srv, "/tigress.push.v1.PushDispatch/Enqueue",
                                              &tigress__push__v1__enqueue_request__descriptor,
                                              &tigress__push__v1__enqueue_response__descriptor,
                                              pd_enqueue, &f),
                     0);
    assert_int_equal(cm_rpc_server_add_method(
                         srv, "/tigress.push.v1.PushDispatch/CancelMailbox",
                         &tigress__push__v1__cancel_mailbox_request__descriptor,
                         &tigress__push__v1__cancel_mailbox_response__descriptor, pd_cancel, &f),
                     0);
    assert_int_equal(cm_rpc_server_start(srv, &port), 0);
    snprintf(fx->push_arg, sizeof(fx->push_arg), "--push-target=127.0.0.1:%d", port);
    /* round_robin over a one-address target behaves like pick_first: the option is wired */
    snprintf(fx->extra_arg, sizeof(fx->extra_arg), "--lb-policy=round_robin");
    store_start(fx);
    char id[37];
    new_id(id);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t created_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    assert_int_equal(create(fx, id, CLAIM_A, "", "RWD", 600, "TOKEN-A", NULL), 0);
    assert_int_equal(rs(fx, id, CLAIM_B), 0);
    assert_int_equal(update(fx, id, CLAIM_B, "", "TOKEN-B", NULL), 0);
    assert_int_equal(update(fx, id, CLAIM_A, "", NULL, NULL), 0);
    assert_int_equal(update(fx, id, CLAIM_B, "", NULL, NULL), 0);
    /* two failed calls (backoff 100 + 200 ms), then the three notifications in order */
    long long end = th_now_ms() + SLOW(20000);
    for (;;) {
        pthread_mutex_lock(&f.mu);
        int done = f.notifications == 3;
        pthread_mutex_unlock(&f.mu);
        if (done || th_now_ms() > end)
            break;
        usleep(20000);
    }
    assert_int_equal(del(fx, id, CLAIM_A), 0);
    for (end = th_now_ms() + SLOW(20000);;) {
        pthread_mutex_lock(&f.mu);
        int done = f.cancels == 1;
        pthread_mutex_unlock(&f.mu);
        if (done || th_now_ms() > end)
            break;
        usleep(20000);
    }
    store_stop(fx);
    cm_rpc_server_del(srv);
    assert_true(f.calls >= 3);
    assert_int_equal(f.notifications, 3);
    assert_string_equal(f.tokens, "TOKEN-A,TOKEN-B,TOKEN-A,");
    assert_int_equal(f.cancels, 1);
    /* the cancel carries the mailbox's expiry (created with ttl 600 s) */
    assert_true(f.cancel_expires_ms >= created_ms + 600000 - 5000);
    assert_true(f.cancel_expires_ms <= created_ms + 600000 + 5000);
    scan_t s;
    db_scan(fx, id, &s);
    assert_int_equal(s.keys_mentioning, 0);
    assert_int_equal(s.outbox_notify + s.outbox_cancel, 0);
}

/* ---- configuration, drain and storage health (issue 6 §1) ---- */

/* Runs the binary with |flag1| and |flag2|; returns its exit code (it must exit by itself). */
static int exit_code_with(fx_t *fx, const char *flag1, const char *flag2)
{
    char bin[512];
    th_bin("mailbox-store", bin, sizeof(bin));
    snprintf(fx->data_arg, sizeof(fx->data_arg), "--data-dir=%s", fx->dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 2);
        execl(bin, bin, "--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0", fx->data_arg, flag1,
              flag2, (char *)NULL);
        _exit(127);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void bad_config_refused(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(exit_code_with(fx, "--push-target=127.0.0.1:1", "--lb-policy=grpclb"), 2);
    assert_int_equal(exit_code_with(fx, "--engine=sqlite", "--log-level=info"), 2);
    /* the postgres engine needs its database and a shared claim key */
    assert_int_equal(exit_code_with(fx, "--engine=postgres", "--log-level=info"), 2);
    assert_int_equal(exit_code_with(fx, "--db-pool-size=0", "--log-level=info"), 2);
}

/* Health reports NOT_SERVING as soon as the drain starts (during --drain-delay-ms the store
 * still serves, so load balancers can take it out first), and never SERVING again after. */
static void drain_reports_not_serving(void **state)
{
    fx_t *fx = *state;
    snprintf(fx->extra_arg, sizeof(fx->extra_arg), "--drain-delay-ms=3000");
    store_start(fx);
    char id[37];
    new_id(id);
    assert_int_equal(create(fx, id, CLAIM_A, "", "", 60, NULL, NULL), 0);
    assert_int_equal(cm_rpc_health_check(fx->ch, "", CALL_MS), 1);
    assert_int_equal(cm_rpc_health_check(fx->ch, "tigress.mailbox.v1.MailboxStore", CALL_MS), 1);
    kill(fx->proc.pid, SIGTERM);
    long long t0 = th_now_ms();
    int seen_not_serving = 0, served_while_draining = 0, serving_after = 0, gone = 0;
    while (th_now_ms() - t0 < SLOW(15000)) {
        int h = cm_rpc_health_check(fx->ch, "tigress.mailbox.v1.MailboxStore", SLOW(2000));
        if (h == 0 && !seen_not_serving) {
            seen_not_serving = 1;
            /* still answering while NOT_SERVING */
            served_while_draining = read_display(fx, id) == GRPC_STATUS_OK;
        } else if (h == 1 && seen_not_serving) {
            serving_after++;
        } else if (h < 0) {
            gone = 1; /* listener closed: UNAVAILABLE */
            break;
        }
        usleep(20000);
    }
    assert_true(seen_not_serving);
    assert_true(served_while_draining);
    assert_int_equal(serving_after, 0);
    assert_true(gone);
    store_stop(fx);
}

/* A write that fails (a full disk, here a small tmpfs) turns health NOT_SERVING and /readyz
 * 503; writes answer UNAVAILABLE; nothing acknowledged is lost; a restart with space back
 * serves again. Needs mount(2) (root in the test machine); skipped without it. */
static void disk_full_not_serving(void **state)
{
    fx_t *fx = *state;
    if (ms_tengine_kind() != MS_ENGINE_ROCKSDB) {
        print_message("disk_full_not_serving: a full disk under the store is RocksDB's case\n");
        skip();
    }
    if (mount("tmpfs", fx->dir, "tmpfs", 0, "size=12m,mode=0700") != 0) {
        print_message("disk_full_not_serving: cannot mount a tmpfs (%s); skipped\n",
                      strerror(errno));
        skip();
    }
    fx->mounted = 1;
    store_start(fx);
    enum { MAXN = 4000 };
    static char ids[MAXN][37];
    int n = 0;
    for (; n < 20; n++) {
        new_id(ids[n]);
        assert_int_equal(create(fx, ids[n], CLAIM_A, "", "", 600, NULL, NULL), 0);
    }
    /* Fill the rest of the file system. */
    char filler[600];
    snprintf(filler, sizeof(filler), "%s/filler", fx->dir);
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    static char chunk[65536];
    memset(chunk, 0x5a, sizeof(chunk));
    for (;;) {
        ssize_t w = write(fd, chunk, sizeof(chunk));
        if (w <= 0)
            break;
    }
    while (write(fd, chunk, 512) > 0) /* the last partial pages */
        ;
    close(fd);
    /* Creates go on until the WAL needs a page it cannot get; each OK is acknowledged. */
    int unavailable = 0;
    while (n < MAXN) {
        new_id(ids[n]);
        int code = create(fx, ids[n], CLAIM_A, "", "", 600, NULL, NULL);
        if (code == GRPC_STATUS_OK) {
            n++;
            continue;
        }
        assert_int_equal(code, GRPC_STATUS_UNAVAILABLE);
        unavailable = 1;
        break;
    }
    assert_true(unavailable);
    long long t0 = th_now_ms();
    while (cm_rpc_health_check(fx->ch, "tigress.mailbox.v1.MailboxStore", SLOW(2000)) != 0 &&
           th_now_ms() - t0 < SLOW(10000))
        usleep(50000);
    assert_int_equal(cm_rpc_health_check(fx->ch, "tigress.mailbox.v1.MailboxStore", SLOW(2000)), 0);
    assert_int_equal(cm_rpc_health_check(fx->ch, "", SLOW(2000)), 0);
    char *m = http_get(fx->admin_port, "/readyz");
    assert_non_null(m);
    assert_non_null(strstr(m, " 503 "));
    free(m);
    char extra[37];
    new_id(extra);
    assert_int_equal(create(fx, extra, CLAIM_A, "", "", 600, NULL, NULL), GRPC_STATUS_UNAVAILABLE);
    /* reads still work */
    assert_int_equal(read_display(fx, ids[0]), GRPC_STATUS_OK);
    assert_int_equal(read_display(fx, ids[n - 1]), GRPC_STATUS_OK);
    print_message("disk_full_not_serving: %d creates acknowledged, then UNAVAILABLE; "
                  "NOT_SERVING after %lld ms\n",
                  n, th_now_ms() - t0);
    /* The store stays fenced (NOT_SERVING, writes refused) even with space back: a restart
     * replays the WAL. SIGTERM still exits 0, and every acknowledged create is there. */
    assert_int_equal(unlink(filler), 0);
    usleep(300000);
    assert_int_equal(cm_rpc_health_check(fx->ch, "tigress.mailbox.v1.MailboxStore", SLOW(2000)), 0);
    assert_int_equal(create(fx, extra, CLAIM_A, "", "", 600, NULL, NULL), GRPC_STATUS_UNAVAILABLE);
    store_stop(fx);
    store_start(fx);
    assert_int_equal(cm_rpc_health_check(fx->ch, "tigress.mailbox.v1.MailboxStore", SLOW(2000)), 1);
    for (int i = 0; i < n; i++)
        assert_int_equal(read_display(fx, ids[i]), GRPC_STATUS_OK);
    assert_int_equal(read_display(fx, extra), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(create(fx, extra, CLAIM_A, "", "", 600, NULL, NULL), GRPC_STATUS_OK);
    store_stop(fx);
    assert_int_equal(umount(fx->dir), 0);
    fx->mounted = 0;
}

int main(int argc, char **argv)
{
    ms_tengine_init(&argc, argv);
    cm_rpc_signals_block();
    cm_rpc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(rules_over_rpc, setup_started, teardown),
        cmocka_unit_test_setup_teardown(binding_race, setup_started, teardown),
        cmocka_unit_test_setup_teardown(ttl_expiry_and_sweeper, setup_started, teardown),
        cmocka_unit_test_setup_teardown(restart_durability, setup_started, teardown),
        cmocka_unit_test_setup_teardown(health_unknown_metrics, setup_started, teardown),
        cmocka_unit_test_setup_teardown(batch_calls, setup_started, teardown),
        cmocka_unit_test_setup_teardown(sigterm_drains, setup_started, teardown),
        cmocka_unit_test_setup_teardown(outbox_read_back_and_dump, setup_started, teardown),
        cmocka_unit_test_setup_teardown(forwarder_delivers_and_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_config_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(drain_reports_not_serving, setup, teardown),
        cmocka_unit_test_setup_teardown(disk_full_not_serving, setup, teardown),
    };
    int rc = cmocka_run_group_tests_name(ms_tengine_name(), tests, NULL, NULL);
    cm_rpc_shutdown();
    return rc;
}
