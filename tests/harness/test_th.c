/* The harness itself: a proc's temp dir (ready file, log) outlives stop so tests can read the
 * log, th_proc_cleanup removes it, and whatever is left goes when the test process exits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "th.h"

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

int main(void)
{
    unsetenv("TH_KEEP");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(log_readable_after_stop_cleanup_removes),
        cmocka_unit_test(cleanup_kills_a_running_proc),
        cmocka_unit_test(dirs_removed_at_exit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
