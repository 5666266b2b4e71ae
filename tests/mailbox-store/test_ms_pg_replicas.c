/* Several mailbox-store processes (replicas) on one PostgreSQL database, called over gRPC as the
 * gateway would spread calls over them:
 * - a 24-claim binding race spread over two replicas has exactly one winner;
 * - the outbox forwarders of both replicas, feeding the real push-dispatch (fake APNs behind
 *   it), deliver each notification once: every token woken once, push-dispatch accepted each
 *   notification once, and the replicas' forwarded counters add up to the number of
 *   notifications (no replica sent what another had sent);
 * - the sweepers of both remove every expired mailbox once (swept counters add up);
 * - kill -9 of one replica under load loses nothing it acknowledged (read back through the
 *   other, and through a restarted one). */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <grpc/status.h>

#include "cm_rpc.h"
#include "cm_uuid.h"
#include "ms_tengine.h"
#include "ms_treq.h"
#include "pdt.h"
#include "th.h"
#include "th_http.h"
#include "th_stack.h"
#include "tigress/mailbox/v1/mailbox_store.pb-c.h"

#define SVC "/tigress.mailbox.v1.MailboxStore/"
#define START_MS 30000
#define CALL_MS 10000
#define MAX_REPLICAS 2

typedef struct {
    th_proc_t proc;
    cm_rpc_channel_t *ch;
    int admin_port;
} replica_t;

typedef struct {
    ms_tengine_t eng; /* the database (a fresh one per test) */
    pdt_t pd;         /* push-dispatch + fake APNs, when started */
    int pd_up;
    replica_t r[MAX_REPLICAS];
} fx_t;

static const ms_treq_content_t CONTENT = {.data = "secret-bytes",
                                          .title = "Hotel Pass",
                                          .description = "Some Hotel Pass",
                                          .image_url = "https://hotel.example/i.png"};

static int replica_start(fx_t *fx, int i)
{
    replica_t *r = &fx->r[i];
    const char *args[8];
    int n = ms_tengine_server_args(&fx->eng, args, 4);
    char push[64];
    if (fx->pd_up) {
        snprintf(push, sizeof(push), "--push-target=127.0.0.1:%d", fx->pd.grpc_port);
        args[n++] = push;
    }
    args[n++] = "--sweep-interval-ms=100";
    args[n++] = "--log-level=warn";
    args[n] = NULL;
    if (th_store_start(&r->proc, fx->eng.dir, 0, args, START_MS) != 0)
        return -1;
    r->admin_port = th_proc_port(&r->proc, "admin_port");
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", th_proc_port(&r->proc, "grpc_port"));
    return cm_rpc_channel_new(target, NULL, &r->ch);
}

static void replica_drop(replica_t *r)
{
    if (r->ch)
        cm_rpc_channel_del(r->ch);
    r->ch = NULL;
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    *state = fx;
    return ms_tengine_setup(&fx->eng, 0);
}

static int setup_with_push(void **state)
{
    if (setup(state) != 0)
        return -1;
    fx_t *fx = *state;
    const char *extra[] = {"--mailbox-budget=2000", "--log-level=warn", NULL};
    if (pdt_init(&fx->pd) != 0 || pdt_fake_start(&fx->pd, "apns", 0, 0) != 0 ||
        pdt_pd_start(&fx->pd, extra) != 0)
        return -1;
    fx->pd_up = 1;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    for (int i = 0; i < MAX_REPLICAS; i++) {
        replica_drop(&fx->r[i]);
        th_proc_cleanup(&fx->r[i].proc);
    }
    if (fx->pd_up)
        pdt_fini(&fx->pd);
    ms_tengine_teardown(&fx->eng);
    free(fx);
    return 0;
}

/* ---- calls ---- */

static int call(replica_t *r, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *rd, ProtobufCMessage **resp)
{
    char path[128];
    snprintf(path, sizeof(path), SVC "%s", method);
    cm_rpc_call_opts_t o = {.timeout_ms = CALL_MS, .request_id = "test"};
    cm_rpc_status_t st;
    ProtobufCMessage *out = NULL;
    cm_rpc_call(r->ch, path, req, rd, &o, &out, &st);
    if (resp)
        *resp = out;
    else if (out)
        protobuf_c_message_free_unpacked(out, NULL);
    return st.code;
}

static int create(replica_t *r, const char *id, const char *claim, int64_t ttl, const char *tok)
{
    ms_treq_create_t c;
    char corr[37];
    assert_int_equal(cm_uuid_v4(corr), 0);
    ms_treq_create(&c, &CONTENT, id, claim, corr, "RWD", ttl, tok ? "com.apple.apns" : NULL, tok);
    return call(r, "Create", &c.req.base, &tigress__mailbox__v1__create_response__descriptor, NULL);
}

static int read_secure(replica_t *r, const char *id, const char *claim)
{
    Tigress__Mailbox__V1__ReadSecureRequest q = TIGRESS__MAILBOX__V1__READ_SECURE_REQUEST__INIT;
    q.mailbox_id = (char *)id;
    q.device_claim = (char *)claim;
    q.correlation_id = "";
    return call(r, "ReadSecure", &q.base, &tigress__mailbox__v1__read_secure_response__descriptor,
                NULL);
}

static int read_display(replica_t *r, const char *id)
{
    Tigress__Mailbox__V1__ReadDisplayRequest q = TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
    q.mailbox_id = (char *)id;
    Tigress__Mailbox__V1__ReadDisplayResponse *resp = NULL;
    int code =
        call(r, "ReadDisplay", &q.base, &tigress__mailbox__v1__read_display_response__descriptor,
             (ProtobufCMessage **)&resp);
    if (resp) {
        assert_string_equal(resp->display->title, "Hotel Pass");
        tigress__mailbox__v1__read_display_response__free_unpacked(resp, NULL);
    }
    return code;
}

static int update(replica_t *r, const char *id, const char *claim)
{
    ms_treq_update_t u;
    char corr[37];
    assert_int_equal(cm_uuid_v4(corr), 0);
    ms_treq_update(&u, id, claim, corr, "updated", NULL, NULL);
    return call(r, "Update", &u.req.base, &tigress__mailbox__v1__update_response__descriptor, NULL);
}

/* Value of metric line |series| at the replica's /metrics, 0 when absent, -1 on error. */
static long long metric(replica_t *r, const char *series)
{
    CURL *c = curl_easy_init();
    th_http_req_t rq = {.proto = TH_HTTP_H1,
                        .port = r->admin_port,
                        .method = "GET",
                        .path = "/metrics",
                        .timeout_ms = 10000};
    th_http_resp_t resp;
    long long v = -1;
    if (th_http_request(c, &rq, &resp) == 0 && resp.status == 200) {
        v = 0;
        size_t n = strlen(series);
        for (const char *p = resp.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
            if (strncmp(p, series, n) == 0 && p[n] == ' ')
                v = strtoll(p + n + 1, NULL, 10);
        }
    }
    th_http_resp_free(&resp);
    curl_easy_cleanup(c);
    return v;
}

/* ---- binding race ---- */

#define CREATOR "aaaaaaaa-0000-4000-8000-000000000001"

typedef struct {
    fx_t *fx;
    const char *id;
} race_ctx_t;

static int race_read(void *ctxp, int who)
{
    race_ctx_t *ctx = ctxp;
    char claim[64];
    snprintf(claim, sizeof(claim), "reader-%04d", who);
    return read_secure(&ctx->fx->r[who % 2], ctx->id, claim);
}

static void binding_race_over_two_replicas(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(replica_start(fx, 0), 0);
    assert_int_equal(replica_start(fx, 1), 0);
    for (int round = 0; round < 3; round++) {
        char id[37];
        assert_int_equal(cm_uuid_v4(id), 0);
        assert_int_equal(create(&fx->r[round % 2], id, CREATOR, 3600, NULL), GRPC_STATUS_OK);
        race_ctx_t ctx = {fx, id};
        int winner = ms_tengine_binding_race(24, round * 100, race_read, &ctx,
                                             GRPC_STATUS_PERMISSION_DENIED);
        /* The winner is bound on both replicas; everyone else stays refused on both. */
        char claim[64];
        snprintf(claim, sizeof(claim), "reader-%04d", winner);
        assert_int_equal(read_secure(&fx->r[0], id, claim), GRPC_STATUS_OK);
        assert_int_equal(read_secure(&fx->r[1], id, claim), GRPC_STATUS_OK);
        snprintf(claim, sizeof(claim), "reader-%04d",
                 winner == round * 100 ? winner + 1 : winner - 1);
        assert_int_equal(read_secure(&fx->r[0], id, claim), GRPC_STATUS_PERMISSION_DENIED);
        assert_int_equal(read_secure(&fx->r[1], id, claim), GRPC_STATUS_PERMISSION_DENIED);
    }
}

/* ---- forwarders and sweepers of two replicas ---- */

#define READER "bbbbbbbb-0000-4000-8000-000000000002"

static void forwarders_and_sweepers_act_once(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(replica_start(fx, 0), 0);
    assert_int_equal(replica_start(fx, 1), 0);
    enum { N = 40, SWEPT = 30 };
    /* N mailboxes: created on one replica with the creator's APNs token, bound and updated by
     * the reader on the other: one notification each, for the creator's token. */
    for (int i = 0; i < N; i++) {
        char id[37], tok[65];
        assert_int_equal(cm_uuid_v4(id), 0);
        pdt_token(i, tok);
        assert_int_equal(create(&fx->r[i % 2], id, CREATOR, 3600, tok), GRPC_STATUS_OK);
        assert_int_equal(read_secure(&fx->r[(i + 1) % 2], id, READER), GRPC_STATUS_OK);
        assert_int_equal(update(&fx->r[(i + 1) % 2], id, READER), GRPC_STATUS_OK);
    }
    /* Mailboxes that expire at once: both sweepers race for them. */
    for (int i = 0; i < SWEPT; i++) {
        char id[37];
        assert_int_equal(cm_uuid_v4(id), 0);
        assert_int_equal(create(&fx->r[i % 2], id, CREATOR, 1, NULL), GRPC_STATUS_OK);
    }
    assert_int_equal(pdt_wait(&fx->pd, "apns", 200, NULL, N, 30000), N);
    long long fwd = 0, swept = 0;
    long long end = th_now_ms() + 30000;
    while (th_now_ms() < end) {
        fwd = metric(&fx->r[0], "tigress_mailbox_store_outbox_forwarded_total") +
              metric(&fx->r[1], "tigress_mailbox_store_outbox_forwarded_total");
        swept = metric(&fx->r[0], "tigress_mailbox_store_swept_total") +
                metric(&fx->r[1], "tigress_mailbox_store_swept_total");
        if (fwd >= N && swept >= SWEPT)
            break;
        usleep(100000);
    }
    /* A little longer: a second send of anything would show by now. */
    usleep(1500000);
    assert_int_equal(pdt_count(&fx->pd, "apns", 200, NULL), N);
    assert_int_equal(pdt_count_distinct(&fx->pd, "apns", 200), N);
    assert_int_equal(pdt_metric(&fx->pd, "push_dispatch_queued_total{provider=\"apns\"}"), N);
    fwd = metric(&fx->r[0], "tigress_mailbox_store_outbox_forwarded_total") +
          metric(&fx->r[1], "tigress_mailbox_store_outbox_forwarded_total");
    swept = metric(&fx->r[0], "tigress_mailbox_store_swept_total") +
            metric(&fx->r[1], "tigress_mailbox_store_swept_total");
    assert_int_equal(fwd, N);
    assert_int_equal(swept, SWEPT);
}

/* ---- kill -9 of a replica under load ---- */

typedef struct {
    fx_t *fx;
    int thread;
    volatile int *stop;
    char (*acked)[37]; /* ids whose Create answered OK */
    int nacked, cap;
    int other; /* answers other than OK and UNAVAILABLE */
} load_t;

static void *load_thread(void *argp)
{
    load_t *l = argp;
    for (int i = 0; !*l->stop && l->nacked < l->cap; i++) {
        replica_t *r = &l->fx->r[(i + l->thread) % 2];
        char id[37];
        cm_uuid_v4(id);
        int code = create(r, id, CREATOR, 3600, NULL);
        if (code == GRPC_STATUS_OK)
            memcpy(l->acked[l->nacked++], id, 37);
        else if (code != GRPC_STATUS_UNAVAILABLE)
            l->other++;
    }
    return NULL;
}

static void kill9_replica_under_load_loses_nothing(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(replica_start(fx, 0), 0);
    assert_int_equal(replica_start(fx, 1), 0);
    enum { T = 4, CAP = 4000 };
    volatile int stop = 0;
    load_t l[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        l[i] = (load_t){.fx = fx, .thread = i, .stop = &stop, .cap = CAP};
        l[i].acked = calloc(CAP, 37);
        assert_int_equal(pthread_create(&th[i], NULL, load_thread, &l[i]), 0);
    }
    usleep(1500000);
    th_proc_kill9(&fx->r[0].proc);
    usleep(1000000);
    stop = 1;
    int total = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(l[i].other, 0);
        total += l[i].nacked;
    }
    assert_true(total > 20);
    /* Every acknowledged Create is there, read through the surviving replica and through the
     * killed one restarted. */
    replica_drop(&fx->r[0]);
    th_proc_cleanup(&fx->r[0].proc);
    assert_int_equal(replica_start(fx, 0), 0);
    int missing = 0;
    for (int i = 0; i < T; i++) {
        for (int k = 0; k < l[i].nacked; k++) {
            missing += read_display(&fx->r[k % 2], l[i].acked[k]) != GRPC_STATUS_OK;
        }
        free(l[i].acked);
    }
    print_message("%d acknowledged creates, %d missing after kill -9 of a replica\n", total,
                  missing);
    assert_int_equal(missing, 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char prog[] = "test_ms_pg_replicas", flag[] = "--engine=postgres";
    char *args[] = {prog, flag, NULL};
    int n = 2;
    ms_tengine_init(&n, args);
    cm_rpc_init();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(binding_race_over_two_replicas, setup, teardown),
        cmocka_unit_test_setup_teardown(forwarders_and_sweepers_act_once, setup_with_push,
                                        teardown),
        cmocka_unit_test_setup_teardown(kill9_replica_under_load_loses_nothing, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
