/* th_pg itself: a cluster answers, per-test databases, a synchronous standby that has every
 * commit and takes over after kill -9 of the primary, and no cluster outlives its test (also
 * when the test process is killed). */
#include <errno.h>
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
#include "th_pg.h"

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Until no process of group |pgid| is left, at most |timeout_ms|. 1 when gone. */
static int group_gone(pid_t pgid, int timeout_ms)
{
    long long end = th_now_ms() + timeout_ms;
    while (th_now_ms() < end) {
        if (kill(-pgid, 0) != 0 && errno == ESRCH)
            return 1;
        usleep(20000);
    }
    return 0;
}

static void single_node(void **state)
{
    (void)state;
    th_pg_t pg;
    assert_int_equal(th_pg_start(&pg, 0), 0);
    assert_true(pg.primary.pid > 0);
    assert_int_equal(pg.standby.port, 0);
    char v[64];
    assert_int_equal(th_pg_query(&pg, 0, NULL, "SHOW fsync", v, sizeof(v)), 0);
    assert_string_equal(v, "off");
    assert_int_equal(th_pg_query(&pg, 0, NULL, "SELECT current_user", v, sizeof(v)), 0);
    assert_string_equal(v, "relay");
    /* The server does not run as root. */
    assert_int_equal(th_pg_query(&pg, 0, NULL, "SHOW data_directory", v, sizeof(v)), 0);
    struct stat sb;
    assert_int_equal(stat(pg.primary.data_dir, &sb), 0);
    if (geteuid() == 0)
        assert_int_not_equal(sb.st_uid, 0);

    char url_file[600];
    assert_int_equal(th_pg_create_db(&pg, "t_one", url_file, sizeof(url_file)), 0);
    char *url = th_read_file(url_file, NULL);
    assert_non_null(url);
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%d/t_one?", pg.primary.port);
    assert_non_null(strstr(url, want));
    free(url);
    assert_int_equal(th_pg_query(&pg, 0, "t_one", "CREATE TABLE t (k int PRIMARY KEY)", NULL, 0),
                     0);
    assert_int_equal(th_pg_query(&pg, 0, "t_one", "INSERT INTO t VALUES (1), (2)", NULL, 0), 0);
    assert_int_equal(th_pg_query_int(&pg, 0, "t_one", "SELECT count(*) FROM t"), 2);
    assert_int_equal(th_pg_query(&pg, 0, "t_one", "SELECT * FROM missing", NULL, 0), -1);

    pid_t pid = pg.primary.pid;
    char root[400];
    snprintf(root, sizeof(root), "%s", pg.root);
    th_pg_stop(&pg);
    assert_true(group_gone(pid, 10000));
    assert_false(exists(root));
    th_pg_stop(&pg); /* idempotent */
}

static void standby_takes_over(void **state)
{
    (void)state;
    th_pg_t pg;
    assert_int_equal(th_pg_start(&pg, TH_PG_STANDBY), 0);
    assert_true(pg.standby.port > 0 && pg.standby.pid > 0);
    char v[64];
    assert_int_equal(th_pg_query(&pg, 0, NULL, "SHOW fsync", v, sizeof(v)), 0);
    assert_string_equal(v, "on");
    char url[512];
    th_pg_url(&pg, NULL, url, sizeof(url));
    assert_non_null(strstr(url, "target_session_attrs=read-write"));

    assert_int_equal(th_pg_query(&pg, 0, NULL, "CREATE TABLE t (k int PRIMARY KEY)", NULL, 0), 0);
    assert_int_equal(
        th_pg_query(&pg, 0, NULL, "INSERT INTO t SELECT generate_series(1, 100)", NULL, 0), 0);
    /* Synchronous: a commit that returned is on the standby before the primary dies. */
    th_pg_kill_primary(&pg);
    assert_int_equal(pg.primary.pid, 0);
    assert_int_equal(
        th_pg_query(&pg, pg.standby.port, NULL, "SELECT pg_is_in_recovery()", v, sizeof(v)), 0);
    assert_string_equal(v, "t");
    assert_int_equal(th_pg_promote(&pg), 0);
    assert_int_equal(th_pg_query_int(&pg, pg.standby.port, NULL, "SELECT count(*) FROM t"), 100);
    assert_int_equal(th_pg_query(&pg, pg.standby.port, NULL, "INSERT INTO t VALUES (101)", NULL, 0),
                     0);
    th_pg_stop(&pg);
}

/* A test process killed with SIGKILL (no atexit, no handler) or SIGTERM (what ctest sends on
 * a timeout) takes its cluster with it. */
static void cluster_dies_with_test(void **state)
{
    (void)state;
    int sigs[] = {SIGKILL, SIGTERM};
    for (size_t i = 0; i < 2; i++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
            close(fds[0]);
            th_pg_t pg;
            if (th_pg_start(&pg, 0) != 0)
                _exit(3);
            pid_t pm = pg.primary.pid;
            if (write(fds[1], &pm, sizeof(pm)) != sizeof(pm) ||
                write(fds[1], pg.root, sizeof(pg.root)) != sizeof(pg.root))
                _exit(4);
            for (;;)
                pause();
        }
        close(fds[1]);
        pid_t pm = 0;
        char root[400];
        assert_int_equal(read(fds[0], &pm, sizeof(pm)), sizeof(pm));
        assert_int_equal(read(fds[0], root, sizeof(root)), sizeof(root));
        close(fds[0]);
        assert_true(exists(root));
        assert_int_equal(kill(pm, 0), 0);
        kill(child, sigs[i]);
        int st;
        assert_int_equal(waitpid(child, &st, 0), child);
        assert_true(WIFSIGNALED(st));
        assert_true(group_gone(pm, 15000));
        if (sigs[i] == SIGTERM) /* the handler ran: the data went too */
            assert_false(exists(root));
        else
            th_rmtree(root);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(single_node),
        cmocka_unit_test(standby_takes_over),
        cmocka_unit_test(cluster_dies_with_test),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
