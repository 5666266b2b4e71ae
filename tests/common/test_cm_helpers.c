/* The helpers written once in common/: cm_alloc (the x/try variants), cm_time (the monotonic
 * timed wait), cm_fs (mkdir -p), cm_corr (the correlation-id rule) and cm_service's ready file
 * and readiness, through a real admin listener. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cm_alloc.h"
#include "cm_corr.h"
#include "cm_fs.h"
#include "cm_service.h"
#include "cm_time.h"
#include "th.h"
#include "th_http.h"

/* Under ASan/TSan an impossible malloc must return NULL as libc's does (their default is to
 * stop the process), so the try variants can be tested there too. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static void alloc_variants(void **state)
{
    (void)state;
    char *s = cm_xstrdup("abc");
    assert_string_equal(s, "abc");
    free(s);
    s = cm_xstrdup(NULL);
    assert_string_equal(s, "");
    free(s);
    s = cm_xstrndup("abcdef", 3);
    assert_string_equal(s, "abc");
    free(s);
    int *v = cm_xcalloc(4, sizeof(int));
    assert_int_equal(v[3], 0);
    v = cm_xreallocarray(v, 1000, sizeof(int));
    v[999] = 7;
    free(v);
    char *m = cm_xmemdup("xy", 2);
    assert_memory_equal(m, "xy", 2);
    free(m);
    /* The try variants say no instead of aborting: an overflowing size, an impossible one. */
    assert_null(cm_trycalloc(SIZE_MAX / 2, 4));
    assert_null(cm_trymalloc(SIZE_MAX - 16));
    void *p = cm_trymalloc(0); /* a usable pointer, not NULL */
    assert_non_null(p);
    free(p);
}

/* cm_xmalloc on an impossible size logs one line and aborts (in a child). */
static void alloc_x_aborts(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        void *volatile p = cm_xmalloc(SIZE_MAX - 16);
        (void)p;
        _exit(0);
    }
    close(fds[1]);
    char buf[8192] = ""; /* a sanitizer may say its own word first */
    size_t n = 0;
    for (ssize_t k; n < sizeof(buf) - 1 && (k = read(fds[0], buf + n, sizeof(buf) - 1 - n)) > 0;)
        n += (size_t)k;
    close(fds[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "out of memory"));
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond;
static int flag;

static void *set_flag(void *arg)
{
    (void)arg;
    usleep(50000);
    pthread_mutex_lock(&mu);
    flag = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void timed_wait(void **state)
{
    (void)state;
    assert_int_equal(cm_cond_init(&cond), 0);
    pthread_mutex_lock(&mu);
    int64_t t0 = cm_time_mono_ms();
    assert_int_equal(cm_cond_wait_ms(&cond, &mu, 30), ETIMEDOUT);
    assert_true(cm_time_mono_ms() - t0 >= 29);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, set_flag, NULL), 0);
    while (!flag)
        assert_int_equal(cm_cond_wait_ms(&cond, &mu, 60000), 0);
    pthread_mutex_unlock(&mu);
    pthread_join(t, NULL);
    pthread_cond_destroy(&cond);
    assert_true(cm_time_wall_ms() > 1700000000000LL);
}

static void mkdir_p(void **state)
{
    (void)state;
    char dir[400], deep[600], file[600];
    assert_int_equal(th_tempdir("cm-fs", dir, sizeof(dir)), 0);
    snprintf(deep, sizeof(deep), "%s/a/b//c", dir);
    assert_int_equal(cm_fs_mkdir_p(deep, 0700), 0);
    assert_int_equal(cm_fs_mkdir_p(deep, 0700), 0); /* exists: fine */
    struct stat sb;
    assert_int_equal(stat(deep, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    snprintf(file, sizeof(file), "%s/f", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(deep, sizeof(deep), "%s/f/x", dir);
    assert_int_equal(cm_fs_mkdir_p(deep, 0700), -1);
    assert_int_equal(errno, ENOTDIR);
    assert_int_equal(cm_fs_mkdir_p("", 0700), -1);
    th_rmtree(dir);
}

static void correlation_ids(void **state)
{
    (void)state;
    char max[CM_CORR_ID_MAX + 2];
    memset(max, 'a', sizeof(max));
    max[CM_CORR_ID_MAX] = '\0';
    assert_true(cm_corr_id_valid(max));
    max[CM_CORR_ID_MAX] = 'a';
    max[CM_CORR_ID_MAX + 1] = '\0';
    assert_false(cm_corr_id_valid(max));
    assert_true(cm_corr_id_valid("req-1:~!"));
    assert_false(cm_corr_id_valid(""));
    assert_false(cm_corr_id_valid(NULL));
    assert_false(cm_corr_id_valid("a b"));
    assert_false(cm_corr_id_valid("caf\xc3\xa9"));
    assert_false(cm_corr_id_valid_n("ab\0c", 4));
    assert_true(cm_corr_id_valid_n("abc-not-terminated", 3));
}

static int extra_ready = 1;
static int check_extra(void *arg)
{
    return *(int *)arg;
}

/* The ready file lists the given ports and the admin port; /readyz follows cm_service_ready,
 * the service's own check and the end. */
static void service_ready_file(void **state)
{
    (void)state;
    char dir[400], ready[600];
    assert_int_equal(th_tempdir("cm-svc", dir, sizeof(dir)), 0);
    snprintf(ready, sizeof(ready), "%s/ready.json", dir);
    cm_service_t svc = {
        .name = "test", .summary = "s", .ready = check_extra, .ready_arg = &extra_ready};
    svc.admin_listen = "127.0.0.1:0";
    svc.ready_file = ready;
    cm_service_port_t ports[] = {{"grpc_port", 1234}, {"http_port", 80}, {NULL, 0}};
    assert_int_equal(cm_service_ready(&svc, ports), 0);
    assert_true(cm_service_serving(&svc));
    int admin = cm_service_admin_port(&svc);
    assert_true(admin > 0);
    char *json = th_read_file(ready, NULL);
    char want[128];
    snprintf(want, sizeof(want), "{\"grpc_port\":1234,\"http_port\":80,\"admin_port\":%d}\n",
             admin);
    assert_string_equal(json, want);
    free(json);

    CURL *c = curl_easy_init();
    th_http_req_t rq = {.proto = TH_HTTP_H1,
                        .port = admin,
                        .method = "GET",
                        .path = "/readyz",
                        .timeout_ms = 10000};
    th_http_resp_t r;
    assert_int_equal(th_http_request(c, &rq, &r), 0);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);
    extra_ready = 0;
    assert_int_equal(th_http_request(c, &rq, &r), 0);
    assert_int_equal(r.status, 503);
    th_http_resp_free(&r);
    curl_easy_cleanup(c);
    cm_service_end(&svc);
    assert_false(cm_service_serving(&svc));
    th_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(alloc_variants),  cmocka_unit_test(alloc_x_aborts),
        cmocka_unit_test(timed_wait),      cmocka_unit_test(mkdir_p),
        cmocka_unit_test(correlation_ids), cmocka_unit_test(service_ready_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
