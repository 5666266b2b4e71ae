/* ms-bench-client: closed-loop load against a mailbox-store from one process over gRPC, with a
 * fixed number of calls in flight on the asynchronous cm_rpc client (driven by tests/bench/
 * store-bench; a benchmark, not a test).
 *
 *   --mode pairs   each slot: Create a new mailbox, then ReadSecure it with a second claim
 *                  (which binds that claim: a write too); one sample = the pair's latency
 *   --mode health  each slot: grpc.health.v1.Health/Check (the RPC-layer reference)
 *
 * Prints one JSON line: {"mode":..,"inflight":..,"ops":..,"seconds":..,"ops_per_s":..,
 * "p50_ms":..,"p99_ms":..,"errors":..}. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cm_config.h"
#include "cm_log.h"
#include "cm_rpc.h"
#include "cm_uuid.h"
#include "grpc/health/v1/health.pb-c.h"
#include "tigress/mailbox/v1/mailbox_store.pb-c.h"

#define MAX_SAMPLES (4 * 1024 * 1024)

typedef struct slot slot_t;

typedef struct {
    cm_rpc_async_t *as;
    cm_rpc_channel_t *ch;
    int pairs;
    _Atomic int measuring, stopping, idle;
    _Atomic long errors;
    long nsamples; /* written only on the poller thread */
    double *samples;
    uint8_t payload[256];
} bench_t;

struct slot {
    bench_t *b;
    int stage; /* 0 Create, 1 ReadSecure */
    char id[CM_UUID_STRLEN + 1];
    int64_t t0_ns;
    int sampled; /* started while measuring */
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void done(void *user, const cm_rpc_status_t *st, ProtobufCMessage *resp);

static void start(slot_t *s)
{
    bench_t *b = s->b;
    cm_rpc_call_opts_t o = {.timeout_ms = 10000};
    int rc;
    if (!b->pairs) {
        Grpc__Health__V1__HealthCheckRequest r = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        rc = cm_rpc_call_async(b->as, b->ch, "/grpc.health.v1.Health/Check", &r.base,
                               &grpc__health__v1__health_check_response__descriptor, &o, done, s);
    } else if (s->stage == 0) {
        cm_uuid_v4(s->id);
        Tigress__Mailbox__V1__CreateRequest r = TIGRESS__MAILBOX__V1__CREATE_REQUEST__INIT;
        Tigress__Mailbox__V1__Payload p = TIGRESS__MAILBOX__V1__PAYLOAD__INIT;
        Tigress__Mailbox__V1__DisplayInformation d =
            TIGRESS__MAILBOX__V1__DISPLAY_INFORMATION__INIT;
        p.type = "AES128";
        p.data.data = b->payload;
        p.data.len = sizeof(b->payload);
        d.title = "Car Key";
        d.description = "bench";
        r.mailbox_id = s->id;
        r.device_claim = "11111111-2222-4333-8444-555555555555";
        r.correlation_id = s->id;
        r.payload = &p;
        r.display = &d;
        r.ttl_seconds = 3600;
        rc = cm_rpc_call_async(b->as, b->ch, "/tigress.mailbox.v1.MailboxStore/Create", &r.base,
                               &tigress__mailbox__v1__create_response__descriptor, &o, done, s);
    } else {
        Tigress__Mailbox__V1__ReadSecureRequest r = TIGRESS__MAILBOX__V1__READ_SECURE_REQUEST__INIT;
        r.mailbox_id = s->id;
        r.device_claim = "99999999-8888-4777-8666-555555555555";
        rc =
            cm_rpc_call_async(b->as, b->ch, "/tigress.mailbox.v1.MailboxStore/ReadSecure", &r.base,
                              &tigress__mailbox__v1__read_secure_response__descriptor, &o, done, s);
    }
    if (rc != 0) {
        atomic_fetch_add(&b->errors, 1);
        atomic_fetch_add(&b->idle, 1);
    }
}

static void begin(slot_t *s)
{
    bench_t *b = s->b;
    if (atomic_load(&b->stopping)) {
        atomic_fetch_add(&b->idle, 1);
        return;
    }
    s->stage = 0;
    s->t0_ns = now_ns();
    s->sampled = atomic_load(&b->measuring);
    start(s);
}

static void done(void *user, const cm_rpc_status_t *st, ProtobufCMessage *resp)
{
    slot_t *s = user;
    bench_t *b = s->b;
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    if (st->code != GRPC_STATUS_OK) {
        atomic_fetch_add(&b->errors, 1);
        begin(s);
        return;
    }
    if (b->pairs && s->stage == 0) {
        s->stage = 1;
        start(s);
        return;
    }
    if (s->sampled && atomic_load(&b->measuring) && b->nsamples < MAX_SAMPLES)
        b->samples[b->nsamples++] = (double)(now_ns() - s->t0_ns) / 1e6;
    begin(s);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    cm_rpc_signals_block();
    const char *target, *mode;
    int64_t inflight, duration_ms, warmup_ms;
    cm_opt_t opts[] = {
        {"target", CM_OPT_STR, "127.0.0.1:7001", "mailbox-store address", &target},
        {"mode", CM_OPT_STR, "pairs", "pairs (Create+ReadSecure) or health", &mode},
        {"inflight", CM_OPT_INT, "64", "calls in flight", &inflight},
        {"duration-ms", CM_OPT_INT, "5000", "measured time", &duration_ms},
        {"warmup-ms", CM_OPT_INT, "1000", "unmeasured time first", &warmup_ms},
    };
    int rc = cm_config_parse("ms-bench-client", "Closed-loop gRPC load on a mailbox-store.", opts,
                             sizeof(opts) / sizeof(opts[0]), argc, argv, NULL);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    cm_log_init("ms-bench-client", CM_LOG_WARN);
    cm_rpc_init();
    bench_t b = {.pairs = strcmp(mode, "health") != 0};
    b.samples = malloc(sizeof(double) * MAX_SAMPLES);
    for (size_t i = 0; i < sizeof(b.payload); i++)
        b.payload[i] = (uint8_t)(i * 131 + 7);
    if (!b.samples || cm_rpc_channel_new(target, NULL, &b.ch) != 0 ||
        cm_rpc_async_new(&b.as) != 0) {
        fprintf(stderr, "ms-bench-client: setup failed\n");
        return 1;
    }
    slot_t *slots = calloc((size_t)inflight, sizeof(*slots));
    for (int i = 0; i < inflight; i++) {
        slots[i].b = &b;
        begin(&slots[i]);
    }
    usleep((useconds_t)warmup_ms * 1000);
    atomic_store(&b.measuring, 1);
    int64_t t0 = now_ns();
    usleep((useconds_t)duration_ms * 1000);
    atomic_store(&b.measuring, 0);
    int64_t t1 = now_ns();
    atomic_store(&b.stopping, 1);
    while (atomic_load(&b.idle) < inflight)
        usleep(1000);
    long n = b.nsamples;
    qsort(b.samples, (size_t)n, sizeof(double), cmp);
    double secs = (double)(t1 - t0) / 1e9;
    printf("{\"mode\":\"%s\",\"inflight\":%d,\"ops\":%ld,\"seconds\":%.3f,\"ops_per_s\":%.1f,"
           "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"errors\":%ld}\n",
           b.pairs ? "pairs" : "health", (int)inflight, n, secs, n / secs,
           n ? b.samples[n / 2] : 0.0, n ? b.samples[(long)(n * 0.99)] : 0.0,
           atomic_load(&b.errors));
    cm_rpc_async_del(b.as);
    cm_rpc_channel_del(b.ch);
    cm_rpc_shutdown();
    free(slots);
    free(b.samples);
    return 0;
}
