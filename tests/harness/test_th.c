/* The harness itself: a proc's temp dir (ready file, log) outlives stop so tests can read the
 * log, th_proc_cleanup removes it, and whatever is left goes when the test process exits;
 * nothing a test started outlives the test, however the test process ends;
 * th_proc_stop_clean; th_http against a minimal HTTP/1.1 server; th_port_hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <errno.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "th.h"
#include "th_http.h"
#include "th_stack.h"

/* A stand-in for a service: writes the ready file named by its last argument, logs a line to
 * stderr and waits for a signal. */
static char *const FAKE[] = {
    "/bin/sh", "-c",
    "echo 'started' >&2; echo '{\"grpc_port\":4242}' > \"${1#--ready-file=}\"; "
    "trap 'exit 0' TERM; while :; do sleep 0.05; done",
    "fake", NULL};

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void dir_of(const th_proc_t *p, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", p->log_path);
    char *slash = strrchr(buf, '/');
    assert_non_null(slash);
    *slash = '\0';
}

static void log_readable_after_stop_cleanup_removes(void **state)
{
    (void)state;
    th_proc_t p;
    assert_int_equal(th_proc_start(&p, FAKE, 10000), 0);
    assert_int_equal(th_proc_port(&p, "grpc_port"), 4242);
    char dir[512];
    dir_of(&p, dir, sizeof(dir));
    assert_non_null(strstr(dir, "th-proc"));
    int st = th_proc_stop(&p, SIGTERM, 10000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *log = th_read_file(p.log_path, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "started"));
    free(log);
    th_proc_cleanup(&p);
    assert_false(exists(dir));
    assert_int_equal(p.log_path[0], '\0');
    th_proc_cleanup(&p); /* idempotent */
}

static void cleanup_kills_a_running_proc(void **state)
{
    (void)state;
    th_proc_t p;
    assert_int_equal(th_proc_start(&p, FAKE, 10000), 0);
    pid_t pid = p.pid;
    char dir[512];
    dir_of(&p, dir, sizeof(dir));
    th_proc_cleanup(&p);
    assert_int_equal(kill(pid, 0), -1); /* reaped */
    assert_false(exists(dir));
}

/* A child process starts a proc, kills it and exits without cleanup: its dirs are gone after
 * it exited (the at-exit sweep), unless TH_KEEP is set. */
static void dirs_removed_at_exit(void **state)
{
    (void)state;
    for (int keep = 0; keep < 2; keep++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            if (keep)
                setenv("TH_KEEP", "1", 1);
            th_proc_t p;
            if (th_proc_start(&p, FAKE, 10000) != 0)
                _exit(3);
            char dir[512];
            snprintf(dir, sizeof(dir), "%s", p.log_path);
            *strrchr(dir, '/') = '\0';
            th_proc_kill9(&p);
            if (write(fds[1], dir, strlen(dir) + 1) < 0)
                _exit(4);
            exit(0); /* runs the at-exit sweep */
        }
        close(fds[1]);
        char dir[512] = "";
        ssize_t n = read(fds[0], dir, sizeof(dir) - 1);
        close(fds[0]);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        assert_true(n > 0);
        assert_non_null(strstr(dir, "th-proc"));
        assert_int_equal(exists(dir), keep);
        if (keep)
            th_rmtree(dir);
    }
}

/* A driver process (standing in for a test binary) starts a fake whose shell runs commands of
 * its own and a real attestation-verifier, then is ended by |sig|. This process is a child
 * subreaper, so whatever the driver leaves behind is re-parented here: waitpid(-1) reaching
 * ECHILD proves that no process is left, and that the two procs themselves were reaped. */
static void driver_ended_by(int sig)
{
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t driver = fork();
    assert_true(driver >= 0);
    if (driver == 0) {
        close(fds[0]);
        th_proc_t fake, av;
        const char *flags[] = {"--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0", NULL};
        if (th_proc_start(&fake, FAKE, 20000) != 0 ||
            th_start(&av, "attestation-verifier", flags, NULL, 30000) != 0)
            _exit(3);
        pid_t pids[2] = {fake.pid, av.pid};
        if (write(fds[1], pids, sizeof(pids)) != (ssize_t)sizeof(pids))
            _exit(4);
        for (;;)
            pause();
    }
    close(fds[1]);
    pid_t pids[2] = {0, 0};
    ssize_t n = read(fds[0], pids, sizeof(pids));
    close(fds[0]);
    kill(driver, sig);
    int st;
    assert_int_equal(waitpid(driver, &st, 0), driver);
    assert_int_equal(n, (ssize_t)sizeof(pids));
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == sig);

    int reaped[2] = {0, 0}, left = 1;
    long long end = th_now_ms() + 20000;
    while (th_now_ms() < end) {
        pid_t r = waitpid(-1, &st, WNOHANG);
        if (r < 0 && errno == ECHILD) {
            left = 0;
            break;
        }
        for (int i = 0; i < 2; i++)
            reaped[i] |= r == pids[i];
        if (r == 0)
            usleep(10000);
    }
    if (left) { /* leave nothing behind even when failing */
        kill(-pids[0], SIGKILL), kill(-pids[1], SIGKILL);
        kill(pids[0], SIGKILL), kill(pids[1], SIGKILL);
        while (waitpid(-1, NULL, 0) > 0) {
        }
    }
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
    assert_false(left);
    assert_true(reaped[0] && reaped[1]);
}

static void nothing_left_after_sigkill(void **state)
{
    (void)state;
    driver_ended_by(SIGKILL); /* as a ctest timeout's last resort: no handler runs */
}

static void nothing_left_after_sigterm(void **state)
{
    (void)state;
    driver_ended_by(SIGTERM); /* as a ctest timeout */
}

/* th_proc_stop_clean: 0 only for an exit 0 after SIGTERM. */
static void stop_clean_wants_exit_0(void **state)
{
    (void)state;
    th_proc_t p;
    assert_int_equal(th_proc_start(&p, FAKE, 10000), 0);
    assert_int_equal(th_proc_stop_clean(&p, "fake", 10000), 0);
    th_proc_cleanup(&p);
    char *const exits3[] = {"/bin/sh", "-c",
                            "echo '{}' > \"${1#--ready-file=}\"; "
                            "trap 'exit 3' TERM; while :; do sleep 0.05; done",
                            "fake", NULL};
    assert_int_equal(th_proc_start(&p, exits3, 10000), 0);
    assert_int_equal(th_proc_stop_clean(&p, "fake (exit 3)", 10000), -1);
    th_proc_cleanup(&p);
}

/* th_http over HTTP/1.1 against a one-shot server in a child: what was sent (JSON body, no
 * Expect) and what came back (the final response after a 100, its headers, the body). */
static void http_request_and_answer(void **state)
{
    (void)state;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(ls, 1), 0);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &al), 0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int c = accept(ls, NULL, NULL);
        char req[4096];
        size_t n = 0;
        while (n < sizeof(req) - 1 && !strstr(req, "{\"k\":1}")) {
            ssize_t k = read(c, req + n, sizeof(req) - 1 - n);
            if (k <= 0)
                break;
            n += (size_t)k;
            req[n] = '\0';
        }
        (void)!write(fds[1], req, n);
        static const char ans[] = "HTTP/1.1 100 Continue\r\nX-Thing: early\r\n\r\n"
                                  "HTTP/1.1 201 Created\r\nX-Thing:  a b\r\n"
                                  "Content-Length: 5\r\n\r\nhello";
        (void)!write(c, ans, sizeof(ans) - 1);
        close(c);
        _exit(0);
    }
    close(fds[1]);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    const char *h[] = {"deviceClaim: x", NULL};
    th_http_req_t rq = {.proto = TH_HTTP_H1,
                        .port = ntohs(a.sin_port),
                        .method = "PUT",
                        .path = "/v1/m/1",
                        .headers = h,
                        .body = "{\"k\":1}",
                        .timeout_ms = 10000};
    th_http_resp_t r;
    assert_int_equal(th_http_request(c, &rq, &r), 0);
    assert_int_equal(r.status, 201);
    assert_int_equal(r.version, CURL_HTTP_VERSION_1_1);
    assert_string_equal(r.body, "hello");
    assert_int_equal(r.len, 5);
    assert_string_equal(th_http_header(&r, "x-thing"), "a b");
    assert_null(th_http_header(&r, "x-missing"));
    th_http_resp_free(&r);
    char got[4096];
    ssize_t n = read(fds[0], got, sizeof(got) - 1);
    assert_true(n > 0);
    got[n] = '\0';
    assert_non_null(strstr(got, "PUT /v1/m/1 HTTP/1.1\r\n"));
    assert_non_null(strstr(got, "deviceClaim: x\r\n"));
    assert_non_null(strstr(got, "Content-Type: application/json\r\n"));
    assert_non_null(strstr(got, "Content-Length: 7\r\n"));
    assert_null(strstr(got, "Expect:"));
    close(fds[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);

    /* Nothing listens any more: a transport error, said in err, and still a body to free. */
    close(ls);
    assert_int_equal(th_http_request(c, &rq, &r), -1);
    assert_non_null(strstr(r.err, "curl error"));
    assert_string_equal(r.body, "");
    th_http_resp_free(&r);
    curl_easy_cleanup(c);
}

static int bound_socket(int port, int reuse)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse));
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    return ntohs(a.sin_port);
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A held port refuses connections, is never handed out for an outgoing connection, and a
 * server restarted on it binds and listens beside the hold. */
static void port_hold_keeps_a_port_for_a_restart(void **state)
{
    (void)state;
    int srv = bound_socket(0, 1);
    assert_true(srv >= 0);
    int port = port_of(srv);
    assert_int_equal(listen(srv, 4096), 0);
    close(srv); /* the server is "killed" */

    int hold = th_port_hold(port);
    assert_true(hold >= 0);
    errno = 0;
    assert_int_equal(connect_to(port), -1);
    assert_int_equal(errno, ECONNREFUSED);

    /* Many more held ports beside it, then a few thousand outgoing connections: none of them
     * may come from a held port (were the ports free, about 3000 * 800 / 28232 = 85 would). */
    enum { HELD = 800, CONNS = 3000 }; /* fits a 1024-descriptor limit */
    static int held[HELD];
    static unsigned char is_held[65536];
    is_held[port] = 1;
    for (int i = 0; i < HELD; i++) {
        int fd = bound_socket(0, 1);
        assert_true(fd >= 0);
        held[i] = th_port_hold(port_of(fd));
        close(fd);
        assert_true(held[i] >= 0);
        is_held[port_of(held[i])] = 1;
    }
    int lsn = bound_socket(0, 1);
    assert_true(lsn >= 0);
    assert_int_equal(listen(lsn, 4096), 0);
    int collisions = 0;
    for (int i = 0; i < CONNS; i++) {
        int c = connect_to(port_of(lsn));
        assert_true(c >= 0);
        collisions += is_held[port_of(c)];
        int a = accept(lsn, NULL, NULL);
        assert_true(a >= 0);
        close(a);
        close(c);
    }
    close(lsn);
    for (int i = 0; i < HELD; i++)
        th_port_release(held[i]);
    assert_int_equal(collisions, 0);

    /* The restart: binds with SO_REUSEADDR beside the hold and serves. */
    srv = bound_socket(port, 1);
    assert_true(srv >= 0);
    assert_int_equal(listen(srv, 16), 0);
    th_port_release(hold);
    int c = connect_to(port);
    assert_true(c >= 0);
    close(c);
    close(srv);
}

int main(void)
{
    unsetenv("TH_KEEP");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(log_readable_after_stop_cleanup_removes),
        cmocka_unit_test(cleanup_kills_a_running_proc),
        cmocka_unit_test(dirs_removed_at_exit),
        cmocka_unit_test(stop_clean_wants_exit_0),
        cmocka_unit_test(nothing_left_after_sigkill),
        cmocka_unit_test(nothing_left_after_sigterm),
        cmocka_unit_test(http_request_and_answer),
        cmocka_unit_test(port_hold_keeps_a_port_for_a_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
