/* push-dispatch health (issue 6 §1): grpc.health.v1 and /readyz turn NOT_SERVING / 503 when the
 * queue's RocksDB cannot write (a full disk, here a small tmpfs) and while draining; Enqueue
 * then answers UNAVAILABLE, and every acknowledged notification survives to be delivered. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pdt.h"
#include "tigress/push/v1/push_dispatch.pb-c.h"

#define APNS "com.apple.apns"
#define SVC "tigress.push.v1.PushDispatch"
#define HOUR (3600 * 1000LL)

typedef struct {
    pdt_t t;
    char mnt[520];
    int mounted;
} fx_t;

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    if (!fx || pdt_init(&fx->t) != 0)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    pdt_pd_kill9(&fx->t);
    if (fx->mounted)
        umount2(fx->mnt, MNT_DETACH);
    pdt_fini(&fx->t);
    free(fx);
    return 0;
}

/* "HTTP/1.1 <code>" of GET |path| on the admin port, or -1. */
static int http_status(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    char buf[4096];
    int n =
        snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    if (write(fd, buf, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t len = 0;
    ssize_t r;
    while (len < sizeof(buf) - 1 && (r = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)r;
    buf[len] = '\0';
    close(fd);
    int code = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1)
        return -1;
    return code;
}

/* Enqueues one APNs notification with token number |i|; returns the gRPC status code. */
static int enqueue_code(pdt_t *t, int i)
{
    char id[32], mb[32], tk[65];
    snprintf(id, sizeof(id), "h-%d", i);
    snprintf(mb, sizeof(mb), "hmb-%d", i);
    pdt_token(i, tk);
    Tigress__Push__V1__Notification n = TIGRESS__PUSH__V1__NOTIFICATION__INIT, *np = &n;
    n.notification_id = id;
    n.mailbox_id = mb;
    n.token_type = APNS;
    n.token_data = tk;
    n.mailbox_expires_at_ms = pdt_now_ms() + HOUR;
    n.created_at_ms = pdt_now_ms();
    Tigress__Push__V1__EnqueueRequest rq = TIGRESS__PUSH__V1__ENQUEUE_REQUEST__INIT;
    rq.n_notifications = 1;
    rq.notifications = &np;
    ProtobufCMessage *resp = NULL;
    cm_rpc_status_t st;
    cm_rpc_call_opts_t o = {.timeout_ms = 10000};
    int rc = cm_rpc_call(t->ch, "/" SVC "/Enqueue", &rq.base,
                         &tigress__push__v1__enqueue_response__descriptor, &o, &resp, &st);
    int code = rc == 0 ? GRPC_STATUS_OK : (int)st.code;
    if (rc == 0)
        assert_int_equal(((Tigress__Push__V1__EnqueueResponse *)resp)->accepted, 1);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return code;
}

/* A port nothing listens on: APNs "down" while the disk fills, so acknowledged notifications
 * stay queued on disk and the restart has to deliver them. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_disk_full_not_serving(void **state)
{
    fx_t *fx = *state;
    pdt_t *t = &fx->t;
    snprintf(fx->mnt, sizeof(fx->mnt), "%s/mnt", t->dir);
    assert_int_equal(mkdir(fx->mnt, 0700), 0);
    if (mount("tmpfs", fx->mnt, "tmpfs", 0, "size=12m,mode=0700") != 0) {
        print_message("test_disk_full_not_serving: cannot mount a tmpfs (%s); skipped\n",
                      strerror(errno));
        skip();
    }
    fx->mounted = 1;
    snprintf(t->data, sizeof(t->data), "%s/data", fx->mnt);
    t->apns_port = closed_port();
    const char *extra[] = {"--retry-base-ms=5000", "--retry-max-ms=60000", "--max-attempts=1000",
                           NULL};
    assert_int_equal(pdt_pd_start(t, extra), 0);
    assert_int_equal(cm_rpc_health_check(t->ch, SVC, 5000), 1);
    assert_int_equal(cm_rpc_health_check(t->ch, "", 5000), 1);
    assert_int_equal(http_status(t->admin_port, "/readyz"), 200);
    int n = 0;
    for (; n < 20; n++)
        assert_int_equal(enqueue_code(t, n), GRPC_STATUS_OK);

    /* Fill the rest of the file system. */
    char filler[700];
    snprintf(filler, sizeof(filler), "%s/filler", fx->mnt);
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    static char chunk[65536];
    memset(chunk, 0x5a, sizeof(chunk));
    while (write(fd, chunk, sizeof(chunk)) > 0)
        ;
    while (write(fd, chunk, 512) > 0) /* the last partial pages */
        ;
    close(fd);
    /* Enqueues go on until the WAL needs a page it cannot get; each OK is acknowledged. */
    enum { MAXN = 20000 };
    int unavailable = 0;
    while (n < MAXN) {
        int code = enqueue_code(t, n);
        if (code == GRPC_STATUS_OK) {
            n++;
            continue;
        }
        assert_int_equal(code, GRPC_STATUS_UNAVAILABLE);
        unavailable = 1;
        break;
    }
    assert_true(unavailable);
    /* NOT_SERVING at once (the failed Enqueue flips it), on both names and /readyz. */
    assert_int_equal(cm_rpc_health_check(t->ch, SVC, 2000), 0);
    assert_int_equal(cm_rpc_health_check(t->ch, "", 2000), 0);
    assert_int_equal(http_status(t->admin_port, "/readyz"), 503);
    assert_int_equal(http_status(t->admin_port, "/healthz"), 200); /* alive: no restart loop */
    print_message("test_disk_full_not_serving: %d enqueues acknowledged, then UNAVAILABLE\n", n);
    /* Fenced even with space back (RocksDB 7.8 must not write after a failed WAL write). */
    assert_int_equal(unlink(filler), 0);
    pdt_sleep_ms(1500); /* a sweeper round */
    assert_int_equal(cm_rpc_health_check(t->ch, SVC, 2000), 0);
    assert_int_equal(http_status(t->admin_port, "/readyz"), 503);
    assert_int_equal(enqueue_code(t, n), GRPC_STATUS_UNAVAILABLE);
    /* SIGTERM still exits 0; the log says why, without any token. */
    assert_int_equal(pdt_pd_stop(t), 0);
    char *log = th_read_file(t->pd.log_path, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "refusing writes until restarted"));
    char tk0[65];
    pdt_token(0, tk0);
    assert_null(strstr(log, tk0));
    free(log);

    /* Restart with APNs up: every acknowledged notification is delivered, nothing else. */
    t->apns_port = 0;
    assert_int_equal(pdt_fake_start(t, "apns", 0, 0), 0);
    const char *extra2[] = {"--workers=8", NULL};
    assert_int_equal(pdt_pd_start(t, extra2), 0);
    assert_int_equal(cm_rpc_health_check(t->ch, SVC, 5000), 1);
    assert_int_equal(cm_rpc_health_check(t->ch, "", 5000), 1);
    assert_int_equal(http_status(t->admin_port, "/readyz"), 200);
    assert_int_equal(pdt_wait(t, "apns", 200, NULL, n, 60000), n);
    pdt_sleep_ms(300);
    assert_int_equal(pdt_count_distinct(t, "apns", 200), n);
    char tk[65];
    pdt_token(n, tk); /* the refused one */
    assert_int_equal(pdt_count(t, "apns", 0, tk), 0);
    /* and the queue takes new ones again */
    assert_int_equal(enqueue_code(t, n), GRPC_STATUS_OK);
    assert_int_equal(pdt_wait(t, "apns", 200, tk, 1, 20000), 1);
    assert_int_equal(pdt_pd_stop(t), 0);
    assert_int_equal(umount(fx->mnt), 0);
    fx->mounted = 0;
}

/* SIGTERM: health turns NOT_SERVING (and /readyz 503) while in-flight deliveries finish. */
static void test_draining_not_serving(void **state)
{
    fx_t *fx = *state;
    pdt_t *t = &fx->t;
    char k[65];
    pdt_token(7, k);
    pdt_ctl(t, "apns", "{\"delay_ms\":3000}");
    assert_int_equal(pdt_fake_start(t, "apns", 0, 0), 0);
    const char *extra[] = {"--shutdown-grace-ms=2500", NULL};
    assert_int_equal(pdt_pd_start(t, extra), 0);
    assert_int_equal(pdt_enqueue1(t, "d1", "mbd", APNS, k, pdt_now_ms() + HOUR), 1);
    pdt_sleep_ms(500); /* the delivery sits at the fake */
    assert_int_equal(http_status(t->admin_port, "/readyz"), 200);
    assert_int_equal(kill(t->pd.pid, SIGTERM), 0);
    /* The process needs a moment to take the signal: wait (bounded) until health stops
     * answering SERVING... */
    long long until = pdt_now_ms() + 2000;
    while (cm_rpc_health_check(t->ch, SVC, 500) == 1 && pdt_now_ms() < until)
        pdt_sleep_ms(10);
    /* ...then, during the grace, the admin listener is still up and says 503; gRPC health
     * answers NOT_SERVING or is already closed (UNAVAILABLE, -1): never SERVING again. */
    int saw503 = 0;
    for (int i = 0; i < 20; i++) {
        int h = cm_rpc_health_check(t->ch, SVC, 500);
        assert_true(h != 1);
        int c = http_status(t->admin_port, "/readyz");
        if (c == 503)
            saw503 = 1;
        if (c == -1)
            break;
        pdt_sleep_ms(50);
    }
    assert_true(saw503);
    assert_int_equal(pdt_pd_stop(t), 0);
}

int main(void)
{
    cm_rpc_init();
    if (getenv("PDT_FILTER"))
        cmocka_set_test_filter(getenv("PDT_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_disk_full_not_serving, setup, teardown),
        cmocka_unit_test_setup_teardown(test_draining_not_serving, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cm_rpc_shutdown();
    return rc;
}
