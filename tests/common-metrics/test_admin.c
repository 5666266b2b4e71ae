/* cm_admin: a real listener on an ephemeral loopback port, fetched over plain sockets the way
 * a kubelet probe or a Prometheus scraper would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cmocka.h>

#include "cm_admin.h"
#include "cm_metrics.h"

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Sends one HTTP/1.1 request with Connection: close and returns the whole response
 * (malloc'd) and its status code. */
static char *http(int port, const char *method, const char *path, int *status)
{
    int fd = tcp_connect(port);
    char req[256];
    int n =
        snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                 method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        assert_true(r >= 0);
        if (r == 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    close(fd);
    assert_int_equal(sscanf(buf, "HTTP/1.1 %d", status), 1);
    return buf;
}

static const char *body_of(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    assert_non_null(b);
    return b + 4;
}

static int ready_flag;
static int ready_cb(void *arg)
{
    assert_ptr_equal(arg, &ready_flag);
    return __atomic_load_n(&ready_flag, __ATOMIC_SEQ_CST);
}

static void serves_endpoints(void **state)
{
    cm_counter_add(cm_metrics_counter("t_admin_hits_total", "Hits.", "code=\"200\""), 42);
    cm_admin_t *a = NULL;
    int port = 0, st = 0;
    assert_int_equal(cm_admin_start("127.0.0.1:0", ready_cb, &ready_flag, &a, &port), 0);
    assert_non_null(a);
    assert_true(port > 0);

    char *r = http(port, "GET", "/metrics", &st);
    assert_int_equal(st, 200);
    assert_non_null(strstr(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert_non_null(strstr(body_of(r), "# TYPE t_admin_hits_total counter\n"
                                       "t_admin_hits_total{code=\"200\"} 42\n"));
    free(r);

    r = http(port, "GET", "/healthz", &st);
    assert_int_equal(st, 200);
    free(r);

    __atomic_store_n(&ready_flag, 0, __ATOMIC_SEQ_CST);
    r = http(port, "GET", "/readyz", &st);
    assert_int_equal(st, 503);
    free(r);
    __atomic_store_n(&ready_flag, 1, __ATOMIC_SEQ_CST);
    r = http(port, "GET", "/readyz?verbose=1", &st);
    assert_int_equal(st, 200);
    free(r);

    r = http(port, "GET", "/nope", &st);
    assert_int_equal(st, 404);
    free(r);
    r = http(port, "POST", "/metrics", &st);
    assert_int_equal(st, 405);
    free(r);
    r = http(port, "HEAD", "/healthz", &st);
    assert_int_equal(st, 200);
    assert_string_equal(body_of(r), "");
    free(r);

    /* An idle client connection must not hold up shutdown. */
    int idle = tcp_connect(port);
    cm_admin_stop(a);
    close(idle);
}

static void readyz_without_callback(void **state)
{
    cm_admin_t *a = NULL;
    int port = 0, st = 0;
    assert_int_equal(cm_admin_start("127.0.0.1:0", NULL, NULL, &a, &port), 0);
    char *r = http(port, "GET", "/readyz", &st);
    assert_int_equal(st, 200);
    free(r);
    cm_admin_stop(a);
}

static void bad_addresses(void **state)
{
    cm_admin_t *a = (cm_admin_t *)1;
    const char *bad[] = {"", "127.0.0.1", "127.0.0.1:x", "127.0.0.1:70000", "[::1", "1.2.3.4.5:0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        assert_int_equal(cm_admin_start(bad[i], NULL, NULL, &a, NULL), -1);
        assert_null(a);
    }
    /* A port already in use is an error, not a silent second listener. */
    cm_admin_t *first = NULL;
    int port = 0;
    assert_int_equal(cm_admin_start("127.0.0.1:0", NULL, NULL, &first, &port), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    assert_int_equal(cm_admin_start(addr, NULL, NULL, &a, NULL), -1);
    cm_admin_stop(first);
    cm_admin_stop(NULL);
}

static void ipv6_and_restart(void **state)
{
    /* Start/stop cycles catch leaked threads, sockets and events. */
    for (int i = 0; i < 20; i++) {
        cm_admin_t *a = NULL;
        int port = 0, st = 0;
        assert_int_equal(cm_admin_start("127.0.0.1:0", NULL, NULL, &a, &port), 0);
        if (i % 5 == 0) {
            char *r = http(port, "GET", "/healthz", &st);
            assert_int_equal(st, 200);
            free(r);
        }
        cm_admin_stop(a);
    }
    cm_admin_t *a = NULL;
    int port = 0;
    /* Not every CI sandbox has IPv6 loopback; when it has, the bracket form must work. */
    if (cm_admin_start("[::1]:0", NULL, NULL, &a, &port) == 0) {
        assert_true(port > 0);
        cm_admin_stop(a);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(serves_endpoints),
        cmocka_unit_test(readyz_without_callback),
        cmocka_unit_test(bad_addresses),
        cmocka_unit_test(ipv6_and_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
