/* Tests of cm_rpc: a real gRPC server and real clients over loopback TCP in one process.
 *
 * The test service "/test.Echo/Echo" reuses tigress.mailbox.v1 ReadDisplayRequest/Response:
 * the request's mailbox_id is a command ("echo text", "fail:<msg>", "sleep:<ms>"); the reply
 * carries the command in display.title, the x-request-id in display.description and the time
 * left before the deadline in expires_at_ms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "cm_log.h"
#include "cm_metrics.h"
#include "cm_rpc.h"
#include "cm_rpc_internal.h" /* the metrics helpers, for the cost check */
#include "grpc/health/v1/health.pb-c.h"
#include "th.h"
#include "tigress/mailbox/v1/mailbox_store.pb-c.h"

#define ECHO "/test.Echo/Echo"
#define REQ_DESC tigress__mailbox__v1__read_display_request__descriptor
#define RESP_DESC tigress__mailbox__v1__read_display_response__descriptor

typedef Tigress__Mailbox__V1__ReadDisplayRequest echo_req_t;
typedef Tigress__Mailbox__V1__ReadDisplayResponse echo_resp_t;

/* Set by the handler when a sleeping call has started (for the drain test). */

/* Upper bounds on how long something may take ("answered at once", "the drain bound holds")
 * get 4 times the room under ThreadSanitizer, which slows every thread several times over. */
#if defined(__SANITIZE_THREAD__)
#define BOUND_MS(ms) ((ms)*4)
#else
#define BOUND_MS(ms) (ms)
#endif

static atomic_int g_sleepers;

static grpc_status_code echo(cm_rpc_call_t *call, void *user, const ProtobufCMessage *req,
                             ProtobufCMessage *resp)
{
    const echo_req_t *rq = (const echo_req_t *)req;
    echo_resp_t *rs = (echo_resp_t *)resp;
    const char *cmd = rq->mailbox_id;
    if (strncmp(cmd, "fail:", 5) == 0)
        return cm_rpc_fail(call, GRPC_STATUS_FAILED_PRECONDITION, "boom %s", cmd + 5);
    if (strncmp(cmd, "sleep:", 6) == 0) {
        atomic_fetch_add(&g_sleepers, 1);
        usleep((useconds_t)atoi(cmd + 6) * 1000);
    }
    Tigress__Mailbox__V1__DisplayInformation *d = cm_rpc_alloc(call, sizeof(*d));
    tigress__mailbox__v1__display_information__init(d);
    d->title = cm_rpc_strdup(call, cmd);
    d->description = cm_rpc_strdup(call, cm_rpc_request_id(call));
    d->image_url = cm_rpc_memdup(call, "u", 2);
    rs->display = d;
    rs->expires_at_ms = cm_rpc_remaining_ms(call);
    return GRPC_STATUS_OK;
}

static cm_rpc_server_t *server_start(const char *listen, int workers, int drain_ms, int *port)
{
    cm_rpc_server_opts_t o = {.listen = listen, .workers = workers, .drain_timeout_ms = drain_ms};
    cm_rpc_server_t *s = NULL;
    assert_int_equal(cm_rpc_server_new(&o, &s), 0);
    assert_int_equal(cm_rpc_server_add_method(s, ECHO, &REQ_DESC, &RESP_DESC, echo, NULL), 0);
    /* Same path twice is refused. */
    assert_int_equal(cm_rpc_server_add_method(s, ECHO, &REQ_DESC, &RESP_DESC, echo, NULL), -1);
    if (cm_rpc_server_start(s, port) != 0) {
        cm_rpc_server_del(s);
        return NULL;
    }
    return s;
}

static cm_rpc_channel_t *channel_to(int port)
{
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    cm_rpc_channel_t *ch = NULL;
    assert_int_equal(cm_rpc_channel_new(target, NULL, &ch), 0);
    assert_string_equal(cm_rpc_channel_target(ch), target);
    return ch;
}

/* Blocking echo of |cmd|; returns the status code, fills |title| when OK. */
static grpc_status_code call_echo(cm_rpc_channel_t *ch, const char *cmd, int64_t timeout_ms,
                                  const char *rid, cm_rpc_status_t *st, echo_resp_t **out)
{
    echo_req_t rq = TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
    rq.mailbox_id = (char *)cmd;
    cm_rpc_call_opts_t o = {.timeout_ms = timeout_ms, .request_id = rid};
    ProtobufCMessage *resp = NULL;
    int r = cm_rpc_call(ch, ECHO, &rq.base, &RESP_DESC, &o, &resp, st);
    assert_int_equal(r, st->code == GRPC_STATUS_OK ? 0 : -1);
    if (st->code == GRPC_STATUS_OK)
        assert_non_null(resp);
    else
        assert_null(resp);
    if (out)
        *out = (echo_resp_t *)resp;
    else if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return st->code;
}

/* ---- shared fixture: one server with 2 workers on a shared CQ, one channel ---------------- */

typedef struct {
    cm_rpc_server_t *srv;
    cm_rpc_channel_t *ch;
    int port;
} fx_t;

static int fx_setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    f->srv = server_start("127.0.0.1:0", 2, 5000, &f->port);
    if (!f->srv)
        return -1;
    f->ch = channel_to(f->port);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx_t *f = *state;
    cm_rpc_channel_del(f->ch);
    cm_rpc_server_del(f->srv);
    free(f);
    return 0;
}

static void test_ok_path(void **state)
{
    fx_t *f = *state;
    cm_rpc_status_t st;
    echo_resp_t *r = NULL;
    assert_int_equal(call_echo(f->ch, "hello", 5000, "req-123", &st, &r), GRPC_STATUS_OK);
    assert_string_equal(r->display->title, "hello");
    assert_string_equal(r->display->description, "req-123");
    assert_string_equal(r->display->image_url, "u");
    /* The server saw the client's 5 s deadline. */
    assert_true(r->expires_at_ms > 3000 && r->expires_at_ms <= 5100);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* No request id: the server reports "". */
    assert_int_equal(call_echo(f->ch, "x", 5000, NULL, &st, &r), GRPC_STATUS_OK);
    assert_string_equal(r->display->description, "");
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* A long, non-ASCII-laden request id is cut and cleaned, never echoed raw. */
    char rid[300];
    memset(rid, 'a', sizeof(rid) - 1);
    rid[sizeof(rid) - 1] = '\0';
    assert_int_equal(call_echo(f->ch, "x", 5000, rid, &st, &r), GRPC_STATUS_OK);
    assert_int_equal(strlen(r->display->description), 128);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* Control and non-ASCII bytes would make core reject the call: the client drops them. */
    assert_int_equal(call_echo(f->ch, "x", 5000, "ab\ncd\xc3\xa9", &st, &r), GRPC_STATUS_OK);
    assert_string_equal(r->display->description, "abcd");
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* An empty message (all defaults) is a valid request. */
    assert_int_equal(call_echo(f->ch, "", 5000, NULL, &st, &r), GRPC_STATUS_OK);
    assert_string_equal(r->display->title, "");
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void test_error_status(void **state)
{
    fx_t *f = *state;
    cm_rpc_status_t st;
    assert_int_equal(call_echo(f->ch, "fail:disk on fire", 5000, NULL, &st, NULL),
                     GRPC_STATUS_FAILED_PRECONDITION);
    assert_string_equal(st.message, "boom disk on fire");
}

static void test_bad_args(void **state)
{
    fx_t *f = *state;
    cm_rpc_status_t st;
    assert_int_equal(call_echo(f->ch, "x", 0, NULL, &st, NULL), GRPC_STATUS_INVALID_ARGUMENT);
    cm_rpc_channel_t *ch = NULL;
    assert_int_equal(cm_rpc_channel_new("", NULL, &ch), -1);
    assert_null(ch);
    cm_rpc_server_t *s = NULL;
    cm_rpc_server_opts_t o = {.listen = NULL};
    assert_int_equal(cm_rpc_server_new(&o, &s), -1);
    /* A path without the leading slash is refused. */
    o.listen = "127.0.0.1:0";
    assert_int_equal(cm_rpc_server_new(&o, &s), 0);
    assert_int_equal(
        cm_rpc_server_add_method(s, "test.Echo/Echo", &REQ_DESC, &RESP_DESC, echo, NULL), -1);
    cm_rpc_server_del(s); /* never started */
}

static void test_unknown_method(void **state)
{
    fx_t *f = *state;
    echo_req_t rq = TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
    cm_rpc_call_opts_t o = {.timeout_ms = 10000};
    cm_rpc_status_t st;
    ProtobufCMessage *resp = NULL;
    const char *paths[] = {"/test.Echo/Nope", "/no.Such/Thing", "/grpc.health.v1.Health/Watch"};
    /* More calls than generic requests are posted: each must still be answered at once. */
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < 3; i++) {
            long long t0 = th_now_ms();
            assert_int_equal(cm_rpc_call(f->ch, paths[i], &rq.base, &RESP_DESC, &o, &resp, &st),
                             -1);
            long long dt = th_now_ms() - t0;
            assert_int_equal(st.code, GRPC_STATUS_UNIMPLEMENTED);
            assert_null(resp);
            assert_true(dt < BOUND_MS(1000));
        }
    }
}

/* Raw core client call with an arbitrary payload (NULL = no message at all) and a deadline
 * (0 = none). When the reply is an echo response, *remaining gets its expires_at_ms. */
static grpc_status_code raw_call_full(int port, const char *path, const void *payload, size_t len,
                                      int deadline_ms, int64_t *remaining)
{
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *chan = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec dl = deadline_ms ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                 gpr_time_from_millis(deadline_ms, GPR_TIMESPAN))
                                  : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_call *c = grpc_channel_create_call(chan, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                            grpc_slice_from_static_string(path), NULL, dl, NULL);
    grpc_byte_buffer *bb = NULL;
    if (payload) {
        grpc_slice s = grpc_slice_from_copied_buffer(payload, len);
        bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
    }
    grpc_metadata_array init_md, trail_md;
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    grpc_byte_buffer *recv = NULL;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details;
    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (bb) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = bb;
    }
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n++].data.recv_initial_metadata.recv_initial_metadata = &init_md;
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &recv;
    ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[n].data.recv_status_on_client.trailing_metadata = &trail_md;
    ops[n].data.recv_status_on_client.status = &status;
    ops[n++].data.recv_status_on_client.status_details = &details;
    assert_int_equal(grpc_call_start_batch(c, ops, n, (void *)1, NULL), GRPC_CALL_OK);
    grpc_event ev =
        grpc_completion_queue_pluck(cq, (void *)1, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    assert_int_equal(ev.type, GRPC_OP_COMPLETE);
    grpc_slice_unref(details);
    if (recv && remaining) {
        grpc_byte_buffer_reader rd;
        assert_true(grpc_byte_buffer_reader_init(&rd, recv));
        grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
        grpc_byte_buffer_reader_destroy(&rd);
        echo_resp_t *r = tigress__mailbox__v1__read_display_response__unpack(
            NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
        grpc_slice_unref(all);
        assert_non_null(r);
        *remaining = r->expires_at_ms;
        tigress__mailbox__v1__read_display_response__free_unpacked(r, NULL);
    }
    if (recv)
        grpc_byte_buffer_destroy(recv);
    if (bb)
        grpc_byte_buffer_destroy(bb);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    grpc_call_unref(c);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    grpc_channel_destroy(chan);
    return status;
}

static grpc_status_code raw_call(int port, const char *path, const void *payload, size_t len)
{
    return raw_call_full(port, path, payload, len, 5000, NULL);
}

static void test_bad_payload(void **state)
{
    fx_t *f = *state;
    /* No message at all (core hands the handler a NULL payload). */
    assert_int_equal(raw_call(f->port, ECHO, NULL, 0), GRPC_STATUS_INVALID_ARGUMENT);
    /* Not a protobuf: field 1 (string) claims 100 bytes that are not there. */
    assert_int_equal(raw_call(f->port, ECHO, "\x0a\x64xx", 4), GRPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(raw_call(f->port, "/grpc.health.v1.Health/Check", "\xff\xff\xff", 3),
                     GRPC_STATUS_INVALID_ARGUMENT);
    /* A zero-length message is an empty proto3 message, not a missing one. */
    assert_int_equal(raw_call(f->port, ECHO, "", 0), GRPC_STATUS_OK);
    assert_int_equal(raw_call(f->port, "/grpc.health.v1.Health/Check", "", 0), GRPC_STATUS_OK);
}

static void test_no_deadline(void **state)
{
    fx_t *f = *state;
    int64_t rem = 0;
    assert_int_equal(raw_call_full(f->port, ECHO, "", 0, 0, &rem), GRPC_STATUS_OK);
    assert_true(rem == INT64_MAX);
    assert_int_equal(raw_call_full(f->port, ECHO, "", 0, 3000, &rem), GRPC_STATUS_OK);
    /* grpc-timeout is sent rounded up, so the server may see a few ms more. */
    assert_true(rem > 1000 && rem <= 3100);
}

static void test_deadline(void **state)
{
    fx_t *f = *state;
    cm_rpc_status_t st;
    long long t0 = th_now_ms();
    assert_int_equal(call_echo(f->ch, "sleep:700", 200, NULL, &st, NULL),
                     GRPC_STATUS_DEADLINE_EXCEEDED);
    long long dt = th_now_ms() - t0;
    /* The status already proves the caller did not wait for the 700 ms handler; the time
     * bound is loose for loaded machines. */
    assert_true(dt >= 150 && dt < BOUND_MS(1000));
    /* The other worker still serves while one sleeps. */
    assert_int_equal(call_echo(f->ch, "after", 2000, NULL, &st, NULL), GRPC_STATUS_OK);
}

static void test_health(void **state)
{
    fx_t *f = *state;
    assert_int_equal(cm_rpc_health_check(f->ch, "", 2000), 1);
    assert_int_equal(cm_rpc_health_check(f->ch, NULL, 2000), 1);
    cm_rpc_server_set_health(f->srv, "tigress.mailbox.v1.MailboxStore", 1);
    assert_int_equal(cm_rpc_health_check(f->ch, "tigress.mailbox.v1.MailboxStore", 2000), 1);
    cm_rpc_server_set_health(f->srv, "tigress.mailbox.v1.MailboxStore", 0);
    assert_int_equal(cm_rpc_health_check(f->ch, "tigress.mailbox.v1.MailboxStore", 2000), 0);
    assert_int_equal(cm_rpc_health_check(f->ch, "", 2000), 1);
    cm_rpc_server_set_health(f->srv, "", 0);
    assert_int_equal(cm_rpc_health_check(f->ch, "", 2000), 0);
    cm_rpc_server_set_health(f->srv, "", 1);
    assert_int_equal(cm_rpc_health_check(f->ch, "", 2000), 1);

    /* Unknown name: NOT_FOUND on the wire. */
    assert_int_equal(cm_rpc_health_check(f->ch, "no.such.Service", 2000), -1);
    Grpc__Health__V1__HealthCheckRequest rq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    rq.service = "no.such.Service";
    cm_rpc_call_opts_t o = {.timeout_ms = 2000};
    cm_rpc_status_t st;
    ProtobufCMessage *resp = NULL;
    assert_int_equal(cm_rpc_call(f->ch, "/grpc.health.v1.Health/Check", &rq.base,
                                 &grpc__health__v1__health_check_response__descriptor, &o, &resp,
                                 &st),
                     -1);
    assert_int_equal(st.code, GRPC_STATUS_NOT_FOUND);
}

/* ---- async ---------------------------------------------------------------------------------- */

#define NASYNC 64

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int calls[NASYNC];
    grpc_status_code codes[NASYNC];
    int title_ok[NASYNC];
} async_state_t;

typedef struct {
    async_state_t *as;
    int i;
} async_ctx_t;

static void async_done(void *user, const cm_rpc_status_t *st, ProtobufCMessage *resp)
{
    async_ctx_t *c = user;
    async_state_t *as = c->as;
    char want[32];
    snprintf(want, sizeof(want), "a%d", c->i);
    int ok = 0;
    if (resp) {
        echo_resp_t *r = (echo_resp_t *)resp;
        ok = r->display && strcmp(r->display->title, want) == 0;
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    pthread_mutex_lock(&as->mu);
    as->calls[c->i]++;
    as->codes[c->i] = st->code;
    as->title_ok[c->i] = ok;
    as->done++;
    pthread_cond_broadcast(&as->cv);
    pthread_mutex_unlock(&as->mu);
}

static void async_wait(async_state_t *as, int n, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    pthread_mutex_lock(&as->mu);
    while (as->done < n) {
        if (pthread_cond_timedwait(&as->cv, &as->mu, &until) != 0)
            break;
    }
    pthread_mutex_unlock(&as->mu);
}

static void async_state_init(async_state_t *as)
{
    memset(as, 0, sizeof(*as));
    pthread_mutex_init(&as->mu, NULL);
    pthread_cond_init(&as->cv, NULL);
}

static void async_state_fini(async_state_t *as)
{
    pthread_mutex_destroy(&as->mu);
    pthread_cond_destroy(&as->cv);
}

static void test_async_64(void **state)
{
    fx_t *f = *state;
    static async_state_t as;
    async_state_init(&as);
    async_ctx_t ctx[NASYNC];
    cm_rpc_async_t *a = NULL;
    assert_int_equal(cm_rpc_async_new(&a), 0);
    for (int i = 0; i < NASYNC; i++) {
        char cmd[32];
        snprintf(cmd, sizeof(cmd), "a%d", i);
        echo_req_t rq = TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
        rq.mailbox_id = cmd; /* packed before return: the stack buffer may go */
        ctx[i].as = &as;
        ctx[i].i = i;
        cm_rpc_call_opts_t o = {.timeout_ms = 10000, .request_id = "async"};
        assert_int_equal(
            cm_rpc_call_async(a, f->ch, ECHO, &rq.base, &RESP_DESC, &o, async_done, &ctx[i]), 0);
    }
    async_wait(&as, NASYNC, 15000);
    /* Give a duplicate callback a moment to show up before counting. */
    usleep(50 * 1000);
    pthread_mutex_lock(&as.mu);
    assert_int_equal(as.done, NASYNC);
    for (int i = 0; i < NASYNC; i++) {
        assert_int_equal(as.calls[i], 1);
        assert_int_equal(as.codes[i], GRPC_STATUS_OK);
        assert_true(as.title_ok[i]);
    }
    pthread_mutex_unlock(&as.mu);

    /* Invalid arguments: refused, callback never runs. */
    echo_req_t rq = TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
    cm_rpc_call_opts_t bad = {.timeout_ms = 0};
    assert_int_equal(
        cm_rpc_call_async(a, f->ch, ECHO, &rq.base, &RESP_DESC, &bad, async_done, &ctx[0]), -1);
    cm_rpc_async_del(a);
    assert_int_equal(as.done, NASYNC);
    async_state_fini(&as);
}

static void test_async_del_cancels(void **state)
{
    fx_t *f = *state;
    static async_state_t as;
    async_state_init(&as);
    async_ctx_t ctx[4];
    cm_rpc_async_t *a = NULL;
    assert_int_equal(cm_rpc_async_new(&a), 0);
    for (int i = 0; i < 4; i++) {
        echo_req_t rq = TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
        rq.mailbox_id = "sleep:400";
        ctx[i].as = &as;
        ctx[i].i = i;
        cm_rpc_call_opts_t o = {.timeout_ms = 10000};
        assert_int_equal(
            cm_rpc_call_async(a, f->ch, ECHO, &rq.base, &RESP_DESC, &o, async_done, &ctx[i]), 0);
    }
    long long t0 = th_now_ms();
    cm_rpc_async_del(a);
    assert_true(th_now_ms() - t0 < BOUND_MS(1000));
    assert_int_equal(as.done, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(as.calls[i], 1);
        assert_int_equal(as.codes[i], GRPC_STATUS_CANCELLED);
    }
    async_state_fini(&as);
    /* The server's two workers stay busy with the sleepers for up to 2 x 400 ms; later tests
     * use long deadlines, so they only queue behind them. */
}

/* ---- blocking calls from many threads ------------------------------------------------------- */

#define NTHREADS 8
#define PER_THREAD 100

typedef struct {
    cm_rpc_channel_t *ch;
    int id;
    int ok;
} thr_arg_t;

static void *thr_main(void *p)
{
    thr_arg_t *t = p;
    for (int i = 0; i < PER_THREAD; i++) {
        char cmd[32], rid[32];
        snprintf(cmd, sizeof(cmd), "t%d-%d", t->id, i);
        snprintf(rid, sizeof(rid), "r%d-%d", t->id, i);
        echo_req_t rq = TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
        rq.mailbox_id = cmd;
        cm_rpc_call_opts_t o = {.timeout_ms = 10000, .request_id = rid};
        ProtobufCMessage *resp = NULL;
        cm_rpc_status_t st;
        if (cm_rpc_call(t->ch, ECHO, &rq.base, &RESP_DESC, &o, &resp, &st) == 0) {
            echo_resp_t *r = (echo_resp_t *)resp;
            if (strcmp(r->display->title, cmd) == 0 && strcmp(r->display->description, rid) == 0)
                t->ok++;
            protobuf_c_message_free_unpacked(resp, NULL);
        }
    }
    return NULL;
}

static void test_blocking_threads(void **state)
{
    fx_t *f = *state;
    pthread_t th[NTHREADS];
    thr_arg_t args[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = (thr_arg_t){.ch = f->ch, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, thr_main, &args[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].ok, PER_THREAD);
    }
}

/* ---- stop, drain, restart -------------------------------------------------------------------- */

/* A one-worker server (drain timeout |drain_ms|) whose worker runs the handler of one async
 * "sleep:<ms>" call; the async call's result lands in |as| slot 0. */
typedef struct {
    cm_rpc_server_t *s;
    cm_rpc_channel_t *ch;
    cm_rpc_async_t *a;
    async_ctx_t ctx;
} sleeper_t;

/* Starts it all; returns whether the handler began sleeping within ~2.5 s. */
static int sleeper_start(sleeper_t *z, async_state_t *as, int drain_ms, const char *cmd)
{
    int port = 0;
    z->s = server_start("127.0.0.1:0", 1, drain_ms, &port);
    assert_non_null(z->s);
    z->ch = channel_to(port);
    async_state_init(as);
    z->ctx = (async_ctx_t){.as = as, .i = 0};
    z->a = NULL;
    assert_int_equal(cm_rpc_async_new(&z->a), 0);
    echo_req_t rq = TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
    rq.mailbox_id = (char *)cmd;
    cm_rpc_call_opts_t o = {.timeout_ms = 10000};
    int before = atomic_load(&g_sleepers);
    assert_int_equal(
        cm_rpc_call_async(z->a, z->ch, ECHO, &rq.base, &RESP_DESC, &o, async_done, &z->ctx), 0);
    for (int i = 0; i < 500 && atomic_load(&g_sleepers) == before; i++)
        usleep(5000);
    return atomic_load(&g_sleepers) != before;
}

static void sleeper_end(sleeper_t *z, async_state_t *as)
{
    cm_rpc_async_del(z->a);
    cm_rpc_channel_del(z->ch);
    cm_rpc_server_del(z->s);
    async_state_fini(as);
}

static void test_stop_drains(void **state)
{
    (void)state;
    static async_state_t as;
    sleeper_t z;
    assert_true(sleeper_start(&z, &as, 3000, "sleep:600"));

    long long t0 = th_now_ms();
    cm_rpc_server_stop(z.s);
    long long dt = th_now_ms() - t0;
    cm_rpc_server_stop(z.s); /* idempotent */
    assert_true(dt < BOUND_MS(3000));
    async_wait(&as, 1, 5000);
    assert_int_equal(as.calls[0], 1);
    /* The in-flight call finished normally although the server was stopping. */
    assert_int_equal(as.codes[0], GRPC_STATUS_OK);

    /* After stop: nothing listens, calls fail fast. */
    cm_rpc_status_t st;
    t0 = th_now_ms();
    grpc_status_code c = call_echo(z.ch, "x", 5000, NULL, &st, NULL);
    assert_true(c == GRPC_STATUS_UNAVAILABLE);
    assert_true(th_now_ms() - t0 < BOUND_MS(2000));

    sleeper_end(&z, &as);
}

static void test_stop_cancels_after_timeout(void **state)
{
    (void)state;
    static async_state_t as;
    sleeper_t z;
    sleeper_start(&z, &as, 200, "sleep:800");
    long long t0 = th_now_ms();
    cm_rpc_server_stop(z.s);
    long long dt = th_now_ms() - t0;
    /* Bound: drain timeout, then the running handler's remaining time. */
    assert_true(dt < BOUND_MS(2500));
    async_wait(&as, 1, 5000);
    assert_int_equal(as.calls[0], 1);
    /* Cancelled by the server: the client does not get a success. */
    assert_int_not_equal(as.codes[0], GRPC_STATUS_OK);
    sleeper_end(&z, &as);
}

typedef struct {
    cm_rpc_channel_t *ch;
    atomic_int *stop;
    int ok, unavailable, other;
} load_arg_t;

static void *load_main(void *p)
{
    load_arg_t *t = p;
    while (!atomic_load(t->stop)) {
        cm_rpc_status_t st;
        grpc_status_code c = call_echo(t->ch, "load", 5000, NULL, &st, NULL);
        if (c == GRPC_STATUS_OK)
            t->ok++;
        else if (c == GRPC_STATUS_UNAVAILABLE)
            t->unavailable++;
        else {
            t->other++;
            print_message("other: %s %s\n", cm_rpc_code_name(c), st.message);
        }
    }
    return NULL;
}

/* Stop while 4 threads keep calling (and unknown methods arrive): every call ends with a
 * status, stop returns within its bound, and the sanitizer build sees no race or leak. */
static void test_stop_under_load(void **state)
{
    (void)state;
    int port = 0;
    cm_rpc_server_t *s = server_start("127.0.0.1:0", 2, 2000, &port);
    assert_non_null(s);
    cm_rpc_channel_t *ch = channel_to(port);
    atomic_int stop = 0;
    pthread_t th[4];
    load_arg_t args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (load_arg_t){.ch = ch, .stop = &stop};
        assert_int_equal(pthread_create(&th[i], NULL, load_main, &args[i]), 0);
    }
    echo_req_t rq = TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
    cm_rpc_call_opts_t o = {.timeout_ms = 2000};
    cm_rpc_status_t st;
    for (int i = 0; i < 20; i++)
        cm_rpc_call(ch, "/no.Such/Thing", &rq.base, &RESP_DESC, &o, NULL, &st);
    usleep(200 * 1000);
    long long t0 = th_now_ms();
    cm_rpc_server_stop(s);
    long long dt = th_now_ms() - t0;
    usleep(100 * 1000);
    atomic_store(&stop, 1);
    int ok = 0, unavailable = 0, other = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].ok;
        unavailable += args[i].unavailable;
        other += args[i].other;
    }
    assert_true(dt < BOUND_MS(2500)); /* the 2000 ms drain bound holds */
    assert_true(ok > 0);
    assert_true(unavailable > 0); /* calls after the stop fail fast */
    assert_int_equal(other, 0);
    cm_rpc_channel_del(ch);
    cm_rpc_server_del(s);
}

/* A port that nothing listens on: bound once by the kernel, then closed. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void test_closed_port(void **state)
{
    (void)state;
    cm_rpc_channel_t *ch = channel_to(closed_port());
    for (int i = 0; i < 3; i++) {
        cm_rpc_status_t st;
        long long t0 = th_now_ms();
        assert_int_equal(call_echo(ch, "x", 10000, NULL, &st, NULL), GRPC_STATUS_UNAVAILABLE);
        assert_true(th_now_ms() - t0 < BOUND_MS(2000));
    }
    /* Async: the callback reports UNAVAILABLE just as fast. */
    static async_state_t as;
    async_state_init(&as);
    async_ctx_t ctx = {.as = &as, .i = 0};
    cm_rpc_async_t *a = NULL;
    assert_int_equal(cm_rpc_async_new(&a), 0);
    echo_req_t rq = TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
    cm_rpc_call_opts_t o = {.timeout_ms = 10000};
    long long t0 = th_now_ms();
    assert_int_equal(cm_rpc_call_async(a, ch, ECHO, &rq.base, &RESP_DESC, &o, async_done, &ctx), 0);
    async_wait(&as, 1, 5000);
    assert_true(th_now_ms() - t0 < BOUND_MS(2000));
    assert_int_equal(as.codes[0], GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(cm_rpc_health_check(ch, "", 1000), -1);
    cm_rpc_async_del(a);
    cm_rpc_channel_del(ch);
    async_state_fini(&as);
}

static void test_channel_recovers(void **state)
{
    (void)state;
    int port = 0;
    cm_rpc_server_t *s = server_start("127.0.0.1:0", 1, 1000, &port);
    assert_non_null(s);
    cm_rpc_channel_opts_t co = {.lb_policy = "round_robin"};
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    cm_rpc_channel_t *ch = NULL;
    assert_int_equal(cm_rpc_channel_new(target, &co, &ch), 0);
    cm_rpc_status_t st;
    assert_int_equal(call_echo(ch, "up", 5000, NULL, &st, NULL), GRPC_STATUS_OK);

    cm_rpc_server_del(s);
    long long t0 = th_now_ms();
    assert_int_equal(call_echo(ch, "down", 5000, NULL, &st, NULL), GRPC_STATUS_UNAVAILABLE);
    assert_true(th_now_ms() - t0 < BOUND_MS(2000));

    /* Same port again; the channel must find it without being recreated. */
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    int port2 = 0;
    s = server_start(listen, 1, 1000, &port2);
    assert_non_null(s);
    assert_int_equal(port2, port);
    t0 = th_now_ms();
    grpc_status_code c = GRPC_STATUS_UNAVAILABLE;
    while (th_now_ms() - t0 < BOUND_MS(5000)) {
        c = call_echo(ch, "again", 1000, NULL, &st, NULL);
        if (c == GRPC_STATUS_OK)
            break;
        usleep(50 * 1000);
    }
    assert_int_equal(c, GRPC_STATUS_OK);
    /* Backoff is capped at 1 s, so recovery takes about that long at most. */
    assert_true(th_now_ms() - t0 < BOUND_MS(3000));
    cm_rpc_channel_del(ch);
    cm_rpc_server_del(s);
}

static void test_listen_fails(void **state)
{
    (void)state;
    cm_rpc_server_opts_t o = {.listen = "256.1.1.1:1"};
    cm_rpc_server_t *s = NULL;
    assert_int_equal(cm_rpc_server_new(&o, &s), 0);
    assert_int_equal(cm_rpc_server_start(s, NULL), -1);
    cm_rpc_server_del(s);

    /* A port already served by another server is refused, not silently shared. */
    int port = 0;
    cm_rpc_server_t *a = server_start("127.0.0.1:0", 1, 1000, &port);
    assert_non_null(a);
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    o.listen = listen;
    assert_int_equal(cm_rpc_server_new(&o, &s), 0);
    assert_int_equal(cm_rpc_server_start(s, NULL), -1);
    cm_rpc_server_del(s);
    cm_rpc_server_del(a);
}

static void test_code_names(void **state)
{
    (void)state;
    assert_string_equal(cm_rpc_code_name(GRPC_STATUS_OK), "OK");
    assert_string_equal(cm_rpc_code_name(GRPC_STATUS_UNAVAILABLE), "UNAVAILABLE");
    assert_string_equal(cm_rpc_code_name(GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(cm_rpc_code_name((grpc_status_code)99), "UNKNOWN");
}

/* Value of one rendered series ("name{labels}"), 0 when absent. */
static unsigned long long metric(const char *series)
{
    char *text = cm_metrics_render(NULL);
    assert_non_null(text);
    unsigned long long v = 0;
    size_t n = strlen(series);
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            v = strtoull(line + n + 1, NULL, 10);
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    return v;
}

static void async_count_done(void *user, const cm_rpc_status_t *st, ProtobufCMessage *resp)
{
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    atomic_fetch_add((atomic_int *)user, 1);
}

/* rpc_server_requests_total{method,code}, rpc_server_duration_seconds{method} and
 * rpc_client_requests_total{method,code}: one count per call with its final code; unknown
 * paths share the server label "unknown" (a client cannot grow the metrics). */
static void test_metrics(void **state)
{
    fx_t *f = *state;
#define S_OK "rpc_server_requests_total{method=\"/test.Echo/Echo\",code=\"OK\"}"
#define S_FAIL "rpc_server_requests_total{method=\"/test.Echo/Echo\",code=\"FAILED_PRECONDITION\"}"
#define S_UNK "rpc_server_requests_total{method=\"unknown\",code=\"UNIMPLEMENTED\"}"
#define S_DUR "rpc_server_duration_seconds_count{method=\"/test.Echo/Echo\"}"
#define S_DUR_INF "rpc_server_duration_seconds_bucket{method=\"/test.Echo/Echo\",le=\"+Inf\"}"
#define C_OK "rpc_client_requests_total{method=\"/test.Echo/Echo\",code=\"OK\"}"
#define C_FAIL "rpc_client_requests_total{method=\"/test.Echo/Echo\",code=\"FAILED_PRECONDITION\"}"
#define C_UNK "rpc_client_requests_total{method=\"/test.Echo/Nope\",code=\"UNIMPLEMENTED\"}"
#define C_BAD "rpc_client_requests_total{method=\"/test.Echo/Echo\",code=\"INVALID_ARGUMENT\"}"
    unsigned long long s_ok = metric(S_OK), s_fail = metric(S_FAIL), s_unk = metric(S_UNK),
                       s_dur = metric(S_DUR), c_ok = metric(C_OK), c_fail = metric(C_FAIL),
                       c_unk = metric(C_UNK), c_bad = metric(C_BAD);
    cm_rpc_status_t st;
    for (int i = 0; i < 3; i++)
        assert_int_equal(call_echo(f->ch, "m", 5000, NULL, &st, NULL), GRPC_STATUS_OK);
    assert_int_equal(call_echo(f->ch, "fail:x", 5000, NULL, &st, NULL),
                     GRPC_STATUS_FAILED_PRECONDITION);
    assert_int_equal(call_echo(f->ch, "x", 0, NULL, &st, NULL), GRPC_STATUS_INVALID_ARGUMENT);
    echo_req_t rq = TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
    rq.mailbox_id = "a";
    cm_rpc_call_opts_t o = {.timeout_ms = 5000};
    ProtobufCMessage *resp = NULL;
    assert_int_equal(cm_rpc_call(f->ch, "/test.Echo/Nope", &rq.base, &RESP_DESC, &o, &resp, &st),
                     -1);
    cm_rpc_async_t *a = NULL;
    atomic_int done = 0;
    assert_int_equal(cm_rpc_async_new(&a), 0);
    assert_int_equal(
        cm_rpc_call_async(a, f->ch, ECHO, &rq.base, &RESP_DESC, &o, async_count_done, &done), 0);
    for (long long end = th_now_ms() + 10000; atomic_load(&done) < 1 && th_now_ms() < end;)
        usleep(2000);
    cm_rpc_async_del(a);
    assert_int_equal(atomic_load(&done), 1);

    assert_int_equal(metric(S_OK) - s_ok, 4);
    assert_int_equal(metric(S_FAIL) - s_fail, 1);
    assert_int_equal(metric(S_UNK) - s_unk, 1);
    assert_int_equal(metric(S_DUR) - s_dur, 5);
    assert_int_equal(metric(S_DUR_INF), metric(S_DUR));
    assert_int_equal(metric(C_OK) - c_ok, 4);
    assert_int_equal(metric(C_FAIL) - c_fail, 1);
    assert_int_equal(metric(C_UNK) - c_unk, 1);
    assert_int_equal(metric(C_BAD) - c_bad, 1);
    char *text = cm_metrics_render(NULL);
    assert_null(strstr(text, "rpc_server_requests_total{method=\"/test.Echo/Nope\""));
    assert_non_null(strstr(text, "# TYPE rpc_server_duration_seconds histogram"));
    free(text);

    /* Cost: counting is an atomic add on a cached series. 10^6 server-side counts must take well
     * under a second even on a loaded machine (counter + histogram). */
    static cm_rpc__metrics_t mx;
    cm_rpc__metrics_init(&mx, "test_rpc_cost_total", "cost probe", "/test.Echo/Cost",
                         "test_rpc_cost_seconds", "cost probe");
    long long t0 = th_now_ms();
    for (int i = 0; i < 1000000; i++)
        cm_rpc__metrics_count(&mx, GRPC_STATUS_OK, 0.001);
    long long dt = th_now_ms() - t0;
    print_message("test_metrics: 1e6 counts in %lld ms\n", dt);
    assert_true(dt < BOUND_MS(1000));
}

static void usr1_count(void *arg)
{
    (*(int *)arg)++;
}

static void *send_signals(void *arg)
{
    (void)arg;
    usleep(20 * 1000);
    kill(getpid(), SIGUSR1);
    usleep(50 * 1000);
    kill(getpid(), SIGTERM);
    return NULL;
}

static void test_signals(void **state)
{
    (void)state;
    /* main() blocked the signals before any thread started, as every binary does. */
    int usr1 = 0;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_signals, NULL), 0);
    assert_int_equal(cm_rpc_signals_wait(usr1_count, &usr1), SIGTERM);
    pthread_join(t, NULL);
    assert_int_equal(usr1, 1);
}

int main(void)
{
    cm_log_level_t lvl = CM_LOG_WARN;
    const char *e = getenv("TIGRESS_LOG_LEVEL");
    if (e)
        cm_log_level_parse(e, &lvl);
    cm_log_init("test_rpc", lvl);
    cm_rpc_signals_block();
    cm_rpc_init();
    const struct CMUnitTest shared[] = {
        cmocka_unit_test(test_ok_path),          cmocka_unit_test(test_error_status),
        cmocka_unit_test(test_bad_args),         cmocka_unit_test(test_unknown_method),
        cmocka_unit_test(test_bad_payload),      cmocka_unit_test(test_no_deadline),
        cmocka_unit_test(test_deadline),         cmocka_unit_test(test_health),
        cmocka_unit_test(test_async_64),         cmocka_unit_test(test_async_del_cancels),
        cmocka_unit_test(test_blocking_threads),
    };
    const struct CMUnitTest alone[] = {
        cmocka_unit_test(test_stop_drains),
        cmocka_unit_test(test_stop_cancels_after_timeout),
        cmocka_unit_test(test_stop_under_load),
        cmocka_unit_test(test_closed_port),
        cmocka_unit_test(test_channel_recovers),
        cmocka_unit_test(test_listen_fails),
        cmocka_unit_test(test_code_names),
        cmocka_unit_test(test_signals),
        cmocka_unit_test_setup_teardown(test_metrics, fx_setup, fx_teardown),
    };
    int fails = cmocka_run_group_tests_name("rpc_shared_server", shared, fx_setup, fx_teardown);
    fails += cmocka_run_group_tests_name("rpc_lifecycle", alone, NULL, NULL);
    cm_rpc_shutdown();
    return fails ? 1 : 0;
}
