#include "th.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "cm_alloc.h"

long long th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *th_bin(const char *name, char *buf, size_t cap)
{
    const char *dir = getenv("TIGRESS_BIN_DIR");
    snprintf(buf, cap, "%s/%s", dir ? dir : ".", name);
    return buf;
}

int th_tempdir(const char *prefix, char *buf, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, cap, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
    return mkdtemp(buf) ? 0 : -1;
}

void th_rmtree(const char *path)
{
    if (!path || !*path || strcmp(path, "/") == 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        execlp("rm", "rm", "-rf", path, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

char *th_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = cm_xmalloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) {
            cap *= 2;
            buf = cm_xrealloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* ---- per-process temp dirs ---------------------------------------------------------------- */

/* Every th-proc dir made by this test process. Tests read a proc's log after stopping it, so
 * the dirs go at exit (or earlier with th_proc_cleanup), not on stop. */
static pthread_mutex_t dirs_mu = PTHREAD_MUTEX_INITIALIZER;
static char **dirs; /* owned, each owned; NULL slots were removed already */
static size_t ndirs;
static pid_t dirs_owner; /* only the process that made them removes them (not forked kids) */

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

/* In-process rm -rf: no fork at exit (the test may have threads running). */
static void rm_tree_quiet(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int keep_dirs(void)
{
    const char *k = getenv("TH_KEEP");
    return k && *k && strcmp(k, "0") != 0;
}

static void dirs_at_exit(void)
{
    pthread_mutex_lock(&dirs_mu);
    if (getpid() == dirs_owner) {
        for (size_t i = 0; i < ndirs; i++) {
            if (dirs[i] && !keep_dirs())
                rm_tree_quiet(dirs[i]);
            else if (dirs[i])
                fprintf(stderr, "th: TH_KEEP set, kept %s\n", dirs[i]);
            free(dirs[i]);
        }
        free(dirs);
        dirs = NULL;
        ndirs = 0;
    }
    pthread_mutex_unlock(&dirs_mu);
}

static void dirs_add(const char *dir)
{
    pthread_mutex_lock(&dirs_mu);
    if (!dirs_owner) {
        atexit(dirs_at_exit);
    } else if (dirs_owner != getpid()) {
        /* A forked child: the inherited dirs are its parent's to remove, not its own. */
        for (size_t i = 0; i < ndirs; i++)
            free(dirs[i]);
        ndirs = 0;
    }
    dirs_owner = getpid();
    dirs = cm_xreallocarray(dirs, ndirs + 1, sizeof(*dirs));
    dirs[ndirs++] = cm_xstrdup(dir);
    pthread_mutex_unlock(&dirs_mu);
}

/* The proc's dir, from its log path. 0 or -1. */
static int proc_dir(const th_proc_t *p, char *buf, size_t cap)
{
    const char *slash = strrchr(p->log_path, '/');
    if (!p->log_path[0] || !slash || (size_t)(slash - p->log_path) >= cap)
        return -1;
    memcpy(buf, p->log_path, (size_t)(slash - p->log_path));
    buf[slash - p->log_path] = '\0';
    return strstr(buf, "th-proc") ? 0 : -1;
}

/* ---- every process a test started dies with the test --------------------------------------
 *
 * ctest's timeout signals the test process only, and a failed assertion may skip a test's
 * stop calls. So each child runs in its own process group (its own children included) and:
 *  - gets SIGKILL from the kernel when the test process dies, however it dies (SIGKILL too):
 *    prctl(PR_SET_PDEATHSIG) between fork and exec. The death signal follows the thread that
 *    forked, so procs are started from the test's main thread;
 *  - has its whole group killed by the test process at exit and on a fatal signal (SIGTERM
 *    from ctest, SIGINT, SIGABRT, ...): that also catches the grandchildren (a shell's
 *    commands, a fake's helpers), which the death signal does not reach.
 * The table is fixed-size and lock-free so the signal handler can walk it. */
#define TH_MAX_LIVE 256
static pid_t live[TH_MAX_LIVE]; /* process group ids (= the child's pid); 0 = free slot */
static pid_t live_owner;        /* the process that started them; forked kids leave them be */

static void live_kill_all(void)
{
    if (__atomic_load_n(&live_owner, __ATOMIC_ACQUIRE) != getpid())
        return;
    for (size_t i = 0; i < TH_MAX_LIVE; i++) {
        pid_t pg = __atomic_load_n(&live[i], __ATOMIC_ACQUIRE);
        if (pg > 0) {
            kill(-pg, SIGKILL);
            kill(pg, SIGKILL); /* in case it never got its own group */
        }
    }
}

static const int fatal_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGABRT,
                                    SIGSEGV, SIGBUS, SIGFPE, SIGILL};
static struct sigaction fatal_prev[sizeof(fatal_signals) / sizeof(fatal_signals[0])];

/* Async-signal-safe: kill(), sigaction(), raise() only. */
static void on_fatal_signal(int sig)
{
    live_kill_all();
    for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++) {
        if (fatal_signals[i] == sig) {
            sigaction(sig, &fatal_prev[i], NULL);
            break;
        }
    }
    raise(sig); /* the previous disposition (default: die) now decides */
}

static void live_at_exit(void)
{
    live_kill_all();
    if (live_owner != getpid())
        return;
    for (size_t i = 0; i < TH_MAX_LIVE; i++) {
        pid_t pg = __atomic_exchange_n(&live[i], 0, __ATOMIC_ACQ_REL);
        if (pg > 0)
            waitpid(pg, NULL, 0);
    }
}

static pthread_once_t live_once = PTHREAD_ONCE_INIT;

static void live_install(void)
{
    atexit(live_at_exit);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++) {
        struct sigaction cur;
        /* A test that handles a signal itself (or ignores it) keeps it. */
        if (sigaction(fatal_signals[i], NULL, &cur) == 0 && cur.sa_handler == SIG_DFL)
            sigaction(fatal_signals[i], &sa, &fatal_prev[i]);
    }
}

static void live_add(pid_t pid)
{
    pthread_once(&live_once, live_install);
    pid_t me = getpid();
    if (__atomic_load_n(&live_owner, __ATOMIC_ACQUIRE) != me) {
        /* A forked child: the inherited entries are its parent's procs, not its own. */
        for (size_t i = 0; i < TH_MAX_LIVE; i++)
            __atomic_store_n(&live[i], 0, __ATOMIC_RELEASE);
        __atomic_store_n(&live_owner, me, __ATOMIC_RELEASE);
    }
    for (size_t i = 0; i < TH_MAX_LIVE; i++) {
        pid_t expect = 0;
        if (__atomic_compare_exchange_n(&live[i], &expect, pid, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return;
    }
    fprintf(stderr, "th: over %d live procs; pid %d is not tracked\n", TH_MAX_LIVE, (int)pid);
}

static void live_remove(pid_t pid)
{
    for (size_t i = 0; i < TH_MAX_LIVE; i++) {
        pid_t expect = pid;
        if (__atomic_compare_exchange_n(&live[i], &expect, 0, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return;
    }
}

/* 1 when |pid| has exited (it is left unreaped). */
static int exited(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

/* Kills what is left of |pid|'s process group, then reaps |pid| (which has exited or was
 * killed). The group is killed while |pid| is still unreaped, so its id cannot have been
 * reused. Returns the wait status. */
static int reap_group(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT);
    kill(-pid, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    live_remove(pid);
    return st;
}

/* In the child, between fork and exec: own process group, killed when the test dies. */
static void child_bind_to_parent(pid_t parent)
{
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) /* the parent died before the death signal was armed */
        _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

void th_proc_cleanup(th_proc_t *p)
{
    th_proc_kill9(p);
    char dir[512];
    if (proc_dir(p, dir, sizeof(dir)) == 0) {
        if (keep_dirs()) {
            fprintf(stderr, "th: TH_KEEP set, kept %s\n", dir);
        } else {
            rm_tree_quiet(dir);
        }
        pthread_mutex_lock(&dirs_mu);
        for (size_t i = 0; i < ndirs; i++) {
            if (dirs[i] && strcmp(dirs[i], dir) == 0) {
                free(dirs[i]);
                dirs[i] = NULL;
            }
        }
        pthread_mutex_unlock(&dirs_mu);
    }
    p->log_path[0] = '\0';
    p->ready_path[0] = '\0';
}

int th_proc_start(th_proc_t *p, char *const argv[], int timeout_ms)
{
    char dir[400];
    memset(p, 0, sizeof(*p));
    if (th_tempdir("th-proc", dir, sizeof(dir)) != 0)
        return -1;
    dirs_add(dir);
    snprintf(p->ready_path, sizeof(p->ready_path), "%s/ready.json", dir);
    snprintf(p->log_path, sizeof(p->log_path), "%s/stderr.log", dir);
    char ready_arg[600];
    snprintf(ready_arg, sizeof(ready_arg), "--ready-file=%s", p->ready_path);

    char *args[TH_MAX_ARGS + 2];
    int n = 0;
    for (; argv[n] && n < TH_MAX_ARGS; n++)
        args[n] = argv[n];
    args[n++] = ready_arg;
    args[n] = NULL;

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        child_bind_to_parent(parent);
        int fd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execv(args[0], args);
        _exit(127);
    }
    setpgid(pid, pid); /* also here: no window where a group kill would miss it */
    live_add(pid);
    p->pid = pid;
    long long end = th_now_ms() + timeout_ms;
    while (th_now_ms() < end) {
        if (exited(pid)) {
            int st = reap_group(pid);
            fprintf(stderr, "th: %s exited early (status %d); log %s\n", args[0], st, p->log_path);
            p->pid = 0;
            return -1;
        }
        if (access(p->ready_path, R_OK) == 0) {
            /* A writer that does not rename into place may not be done yet: wait for JSON. */
            p->ready_json = th_read_file(p->ready_path, NULL);
            cJSON *j = p->ready_json ? cJSON_Parse(p->ready_json) : NULL;
            cJSON_Delete(j);
            if (j)
                return 0;
            free(p->ready_json);
            p->ready_json = NULL;
        }
        usleep(10000);
    }
    fprintf(stderr, "th: %s not ready after %d ms; log %s\n", args[0], timeout_ms, p->log_path);
    th_proc_kill9(p);
    return -1;
}

int th_proc_port(const th_proc_t *p, const char *key)
{
    cJSON *j = cJSON_Parse(p->ready_json ? p->ready_json : "");
    if (!j)
        return -1;
    cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    int port = cJSON_IsNumber(v) ? v->valueint : -1;
    cJSON_Delete(j);
    return port;
}

int th_proc_stop(th_proc_t *p, int sig, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, sig);
    long long end = th_now_ms() + timeout_ms;
    while (th_now_ms() < end) {
        if (exited(p->pid)) {
            int st = reap_group(p->pid);
            p->pid = 0;
            free(p->ready_json);
            p->ready_json = NULL;
            return st;
        }
        usleep(5000);
    }
    th_proc_kill9(p);
    return -1;
}

int th_proc_stop_clean(th_proc_t *p, const char *what, int timeout_ms)
{
    int st = th_proc_stop(p, SIGTERM, timeout_ms);
    if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        fprintf(stderr, "%s did not exit cleanly (status %d); log %s\n", what, st, p->log_path);
        return -1;
    }
    return 0;
}

void th_proc_kill9(th_proc_t *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        reap_group(p->pid);
    }
    p->pid = 0;
    free(p->ready_json);
    p->ready_json = NULL;
}

int th_port_hold(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* A connection that took the port while it was free may still be closing: retry a while. */
    for (int attempt = 0; attempt < 50; attempt++) {
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
            bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
            return fd;
        usleep(20 * 1000);
    }
    fprintf(stderr, "th: could not hold port %d: %s\n", port, strerror(errno));
    close(fd);
    return -1;
}

void th_port_release(int fd)
{
    if (fd >= 0)
        close(fd);
}

int th_proc_kill9_hold(th_proc_t *p, int port)
{
    th_proc_kill9(p);
    return th_port_hold(port);
}
