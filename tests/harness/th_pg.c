#include "th_pg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <libpq-fe.h>

#include "th.h"

#define START_TIMEOUT_MS 60000
#define MAX_GROUPS 16

/* ---- never outlive the test ---------------------------------------------------------------- */

/* Process groups of running postmasters. Read from signal handlers, so plain ints written
 * before the handlers can see them (a slot is set after fork, cleared after reaping). */
static volatile sig_atomic_t groups[MAX_GROUPS];
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static char *roots[MAX_GROUPS]; /* owned: temp dirs still to remove at exit */
static pid_t reg_owner;         /* the process that installed the hooks (not forked kids) */

static void kill_all_groups(void)
{
    for (int i = 0; i < MAX_GROUPS; i++)
        if (groups[i] > 0)
            kill(-(pid_t)groups[i], SIGKILL);
}

/* Temp dirs for the signal handler (fixed buffers: no malloc there). */
static char sig_roots[MAX_GROUPS][400];

/* rm -rf of every cluster dir, from a signal handler: only fork, exec and wait. */
static void remove_roots_from_handler(void)
{
    for (int i = 0; i < MAX_GROUPS; i++) {
        if (groups[i] > 0)
            waitpid((pid_t)groups[i], NULL, 0);
    }
    for (int i = 0; i < MAX_GROUPS; i++) {
        if (!sig_roots[i][0])
            continue;
        pid_t pid = fork();
        if (pid == 0) {
            char *const argv[] = {"/bin/rm", "-rf", sig_roots[i], NULL};
            execv(argv[0], argv);
            _exit(127);
        }
        if (pid > 0)
            waitpid(pid, NULL, 0);
    }
}

static void on_fatal_signal(int sig)
{
    if (getpid() == reg_owner) {
        kill_all_groups();
        const char *keep = getenv("TH_KEEP");
        if (!(keep && *keep && strcmp(keep, "0") != 0))
            remove_roots_from_handler();
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_tree(const char *path)
{
    const char *keep = getenv("TH_KEEP");
    if (keep && *keep && strcmp(keep, "0") != 0) {
        fprintf(stderr, "th_pg: TH_KEEP set, kept %s\n", path);
        return;
    }
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void at_exit(void)
{
    if (getpid() != reg_owner)
        return;
    kill_all_groups();
    for (int i = 0; i < MAX_GROUPS; i++) {
        if (groups[i] > 0)
            waitpid((pid_t)groups[i], NULL, 0);
        groups[i] = 0;
    }
    pthread_mutex_lock(&reg_mu);
    for (int i = 0; i < MAX_GROUPS; i++) {
        if (roots[i])
            rm_tree(roots[i]);
        free(roots[i]);
        roots[i] = NULL;
    }
    pthread_mutex_unlock(&reg_mu);
}

static void install_hooks(void)
{
    pthread_mutex_lock(&reg_mu);
    if (reg_owner != getpid()) {
        reg_owner = getpid();
        atexit(at_exit);
        int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGALRM, SIGQUIT};
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
            struct sigaction sa = {.sa_handler = on_fatal_signal};
            sigemptyset(&sa.sa_mask);
            sigaction(sigs[i], &sa, NULL);
        }
        /* ctest killing the test (or the test's parent dying) takes the test down, and with it
         * the clusters (handler above); a SIGKILL of the test reaches them via their own
         * parent-death signal. */
        pid_t parent = getppid();
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            raise(SIGTERM);
    }
    pthread_mutex_unlock(&reg_mu);
}

static void group_add(pid_t pid)
{
    for (int i = 0; i < MAX_GROUPS; i++) {
        if (groups[i] == 0) {
            groups[i] = pid;
            return;
        }
    }
}

static void group_del(pid_t pid)
{
    for (int i = 0; i < MAX_GROUPS; i++)
        if (groups[i] == pid)
            groups[i] = 0;
}

static void root_add(const char *dir)
{
    pthread_mutex_lock(&reg_mu);
    for (int i = 0; i < MAX_GROUPS; i++) {
        if (!roots[i]) {
            roots[i] = strdup(dir);
            snprintf(sig_roots[i], sizeof(sig_roots[i]), "%s", dir);
            break;
        }
    }
    pthread_mutex_unlock(&reg_mu);
}

static void root_del(const char *dir)
{
    pthread_mutex_lock(&reg_mu);
    for (int i = 0; i < MAX_GROUPS; i++) {
        if (roots[i] && strcmp(roots[i], dir) == 0) {
            sig_roots[i][0] = '\0';
            free(roots[i]);
            roots[i] = NULL;
        }
    }
    pthread_mutex_unlock(&reg_mu);
}

/* ---- running server programs as the unprivileged user ------------------------------------ */

typedef struct {
    uid_t uid;
    gid_t gid;
    int switch_user; /* running as root: become uid/gid in the child */
} run_user_t;

static int run_user(run_user_t *u)
{
    memset(u, 0, sizeof(*u));
    if (geteuid() != 0)
        return 0;
    struct passwd *pw = getpwnam("postgres");
    if (!pw) {
        fprintf(stderr, "th_pg: running as root but there is no 'postgres' user\n");
        return -1;
    }
    u->uid = pw->pw_uid;
    u->gid = pw->pw_gid;
    u->switch_user = 1;
    return 0;
}

static const char *pg_bin(const char *name, char *buf, size_t cap)
{
    const char *dir = getenv("TH_PG_BIN");
    snprintf(buf, cap, "%s/%s", dir && *dir ? dir : "/usr/lib/postgresql/15/bin", name);
    return buf;
}

/* Forks |argv| as the server user, in its own process group, with stdout+stderr appended to
 * |log_path| and SIGKILL on the death of the forking thread. Returns the pid or -1. */
static pid_t spawn(char *const argv[], const char *log_path)
{
    run_user_t u;
    if (run_user(&u) != 0)
        return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0) {
        setpgid(pid, pid); /* also in the child: whichever runs first */
        return pid;
    }
    setpgid(0, 0);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    if (u.switch_user && (setgroups(0, NULL) != 0 || setgid(u.gid) != 0 || setuid(u.uid) != 0))
        _exit(126);
    /* After the user switch: changing credentials clears the parent-death signal. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(125);
    execv(argv[0], argv);
    _exit(127);
}

/* Runs |argv| to completion (spawn, waited up to |timeout_ms|). 0 when it exited 0. */
static int run(char *const argv[], const char *log_path, int timeout_ms)
{
    pid_t pid = spawn(argv, log_path);
    if (pid < 0)
        return -1;
    group_add(pid);
    long long end = th_now_ms() + timeout_ms;
    int st = -1;
    while (th_now_ms() < end) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            break;
        st = -1;
        usleep(10000);
    }
    if (st == -1) {
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    group_del(pid);
    if (!(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        fprintf(stderr, "th_pg: %s failed (status %d); log %s\n", argv[0], st, log_path);
        return -1;
    }
    return 0;
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    int port = -1;
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(s, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(s);
    return port;
}

static int chown_to_server_user(const char *path)
{
    run_user_t u;
    if (run_user(&u) != 0)
        return -1;
    return u.switch_user ? chown(path, u.uid, u.gid) : 0;
}

/* ---- nodes --------------------------------------------------------------------------------- */

static void conninfo(int port, const char *db, char *buf, size_t cap)
{
    snprintf(buf, cap, "host=127.0.0.1 port=%d user=relay dbname=%s connect_timeout=5", port,
             db ? db : "relay");
}

/* Starts the postmaster of |n| with |extra| -c settings (NULL-terminated) and waits until it
 * accepts connections. 0 or -1 (then it is not running). */
static int node_start(th_pg_t *pg, th_pg_node_t *n, const char *const *extra)
{
    char bin[600], port[32], sock[600];
    snprintf(port, sizeof(port), "port=%d", n->port);
    snprintf(sock, sizeof(sock), "unix_socket_directories=%s", pg->sock_dir);
    const char *durable = (pg->flags & (TH_PG_DURABLE | TH_PG_STANDBY)) ? "on" : "off";
    char fsync[32], fpw[32];
    snprintf(fsync, sizeof(fsync), "fsync=%s", durable);
    snprintf(fpw, sizeof(fpw), "full_page_writes=%s", durable);
    char *argv[40];
    int k = 0;
    argv[k++] = (char *)pg_bin("postgres", bin, sizeof(bin));
    argv[k++] = "-D";
    argv[k++] = n->data_dir;
    const char *base[] = {port,
                          sock,
                          "listen_addresses=127.0.0.1",
                          fsync,
                          fpw,
                          "synchronous_commit=on",
                          "wal_level=replica",
                          "max_wal_senders=5",
                          "max_connections=200",
                          "shared_buffers=32MB",
                          "logging_collector=off",
                          "log_min_messages=warning",
                          NULL};
    for (size_t i = 0; base[i]; i++) {
        argv[k++] = "-c";
        argv[k++] = (char *)base[i];
    }
    for (size_t i = 0; extra && extra[i] && k < 36; i++) {
        argv[k++] = "-c";
        argv[k++] = (char *)extra[i];
    }
    argv[k] = NULL;
    pid_t pid = spawn(argv, n->log_path);
    if (pid < 0)
        return -1;
    group_add(pid);
    n->pid = pid;
    char ci[256];
    conninfo(n->port, "postgres", ci, sizeof(ci));
    long long end = th_now_ms() + START_TIMEOUT_MS;
    while (th_now_ms() < end) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            group_del(pid);
            n->pid = 0;
            fprintf(stderr, "th_pg: postgres exited at start; log %s\n", n->log_path);
            return -1;
        }
        if (PQping(ci) == PQPING_OK)
            return 0;
        usleep(20000);
    }
    fprintf(stderr, "th_pg: postgres not ready after %d ms; log %s\n", START_TIMEOUT_MS,
            n->log_path);
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
    group_del(pid);
    n->pid = 0;
    return -1;
}

/* Children of |parent| (from /proc), at most |cap|. */
static int children_of(pid_t parent, pid_t *out, int cap)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < cap) {
        pid_t pid = (pid_t)atoi(de->d_name);
        char path[64], buf[512];
        if (pid <= 0)
            continue;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = '\0';
        /* "pid (comm) state ppid ...": comm may hold spaces, so parse after the last ')'. */
        char *rp = strrchr(buf, ')');
        char state;
        int ppid;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == parent && state != 'Z')
            out[n++] = pid;
    }
    closedir(d);
    return n;
}

static int alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && rp[2] != 'Z';
}

/* kill -9 of the postmaster and of every server process at the same moment, like a crash of
 * the machine. Backends run in process groups of their own, so killing the postmaster's group
 * is not enough: a backend would finish (and commit) what it was doing before noticing. */
static void node_kill(th_pg_node_t *n)
{
    if (n->pid <= 0)
        return;
    kill(n->pid, SIGSTOP); /* no new children while they are collected */
    pid_t kids[256];
    int nk = children_of(n->pid, kids, 256);
    for (int i = 0; i < nk; i++)
        kill(kids[i], SIGKILL);
    kill(-n->pid, SIGKILL);
    waitpid(n->pid, NULL, 0);
    group_del(n->pid);
    n->pid = 0;
    /* Gone (or zombies): a restart must not find them attached to the old shared memory. */
    long long end = th_now_ms() + 10000;
    for (int i = 0; i < nk; i++) {
        while (alive(kids[i]) && th_now_ms() < end)
            usleep(5000);
    }
}

static void node_paths(th_pg_t *pg, th_pg_node_t *n, const char *name)
{
    snprintf(n->data_dir, sizeof(n->data_dir), "%s/%s", pg->root, name);
    snprintf(n->log_path, sizeof(n->log_path), "%s/%s.log", pg->root, name);
}

static int primary_init(th_pg_t *pg)
{
    th_pg_node_t *n = &pg->primary;
    node_paths(pg, n, "primary");
    if (mkdir(n->data_dir, 0700) != 0 || chown_to_server_user(n->data_dir) != 0)
        return -1;
    char bin[600], pgdata[600];
    snprintf(pgdata, sizeof(pgdata), "--pgdata=%s", n->data_dir);
    char *initdb[] = {(char *)pg_bin("initdb", bin, sizeof(bin)),
                      pgdata,
                      "--auth=trust",
                      "--username=relay",
                      "--encoding=UTF8",
                      "--locale=C",
                      "--no-sync",
                      NULL};
    if (run(initdb, n->log_path, START_TIMEOUT_MS) != 0)
        return -1;
    /* synchronous_standby_names is set (ALTER SYSTEM) once the standby streams: before, every
     * commit would wait for it. */
    for (int attempt = 0; attempt < 3; attempt++) {
        n->port = free_port();
        if (n->port > 0 && node_start(pg, n, NULL) == 0)
            return th_pg_query(pg, n->port, "postgres", "CREATE DATABASE relay", NULL, 0);
    }
    return -1;
}

static int standby_init(th_pg_t *pg)
{
    th_pg_node_t *n = &pg->standby;
    node_paths(pg, n, "standby");
    if (mkdir(n->data_dir, 0700) != 0 || chown_to_server_user(n->data_dir) != 0)
        return -1;
    char bin[600], pgdata[600], port[32];
    snprintf(pgdata, sizeof(pgdata), "--pgdata=%s", n->data_dir);
    snprintf(port, sizeof(port), "--port=%d", pg->primary.port);
    char *basebackup[] = {(char *)pg_bin("pg_basebackup", bin, sizeof(bin)),
                          pgdata,
                          "--host=127.0.0.1",
                          port,
                          "--username=relay",
                          "--write-recovery-conf",
                          "--wal-method=stream",
                          "--checkpoint=fast",
                          "--no-sync",
                          NULL};
    if (run(basebackup, n->log_path, START_TIMEOUT_MS) != 0)
        return -1;
    /* After a promotion this node is alone: it must not wait for a standby of its own. */
    const char *extra[] = {"synchronous_standby_names=", "hot_standby=on", NULL};
    int started = -1;
    for (int attempt = 0; attempt < 3 && started != 0; attempt++) {
        n->port = free_port();
        started = n->port > 0 ? node_start(pg, n, extra) : -1;
    }
    if (started != 0)
        return -1;
    if (th_pg_query(pg, 0, "postgres", "ALTER SYSTEM SET synchronous_standby_names = '*'", NULL,
                    0) != 0 ||
        th_pg_query(pg, 0, "postgres", "SELECT pg_reload_conf()", NULL, 0) != 0)
        return -1;
    long long end = th_now_ms() + START_TIMEOUT_MS;
    while (th_now_ms() < end) {
        if (th_pg_query_int(pg, 0, "postgres",
                            "SELECT count(*) FROM pg_stat_replication "
                            "WHERE state = 'streaming' AND sync_state = 'sync'") == 1)
            return 0;
        usleep(50000);
    }
    fprintf(stderr, "th_pg: standby never became synchronous; log %s\n", n->log_path);
    return -1;
}

int th_pg_start(th_pg_t *pg, int flags)
{
    memset(pg, 0, sizeof(*pg));
    pg->flags = flags;
    install_hooks();
    if (th_tempdir("th-pg", pg->root, sizeof(pg->root)) != 0) {
        fprintf(stderr, "th_pg: no temp dir: %s\n", strerror(errno));
        return -1;
    }
    root_add(pg->root);
    snprintf(pg->sock_dir, sizeof(pg->sock_dir), "%s/sock", pg->root);
    if (chown_to_server_user(pg->root) != 0 || mkdir(pg->sock_dir, 0700) != 0 ||
        chown_to_server_user(pg->sock_dir) != 0) {
        fprintf(stderr, "th_pg: cannot prepare %s: %s\n", pg->root, strerror(errno));
        goto fail;
    }
    if (primary_init(pg) != 0)
        goto fail;
    if ((flags & TH_PG_STANDBY) && standby_init(pg) != 0)
        goto fail;
    char url[512];
    snprintf(pg->url_path, sizeof(pg->url_path), "%s/database-url", pg->root);
    FILE *f = fopen(pg->url_path, "w");
    if (!f || fprintf(f, "%s\n", th_pg_url(pg, NULL, url, sizeof(url))) < 0 || fclose(f) != 0)
        goto fail;
    return 0;
fail:
    th_pg_stop(pg);
    return -1;
}

void th_pg_stop(th_pg_t *pg)
{
    node_kill(&pg->standby);
    node_kill(&pg->primary);
    if (pg->root[0]) {
        rm_tree(pg->root);
        root_del(pg->root);
        pg->root[0] = '\0';
    }
}

const char *th_pg_url(const th_pg_t *pg, const char *db, char *buf, size_t cap)
{
    if (pg->standby.port > 0)
        snprintf(buf, cap,
                 "postgresql://relay@127.0.0.1:%d,127.0.0.1:%d/%s"
                 "?target_session_attrs=read-write&connect_timeout=2",
                 pg->primary.port, pg->standby.port, db ? db : "relay");
    else
        snprintf(buf, cap, "postgresql://relay@127.0.0.1:%d/%s?connect_timeout=2", pg->primary.port,
                 db ? db : "relay");
    return buf;
}

int th_pg_create_db(th_pg_t *pg, const char *db, char *url_file, size_t cap)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", db);
    if (th_pg_query(pg, 0, "postgres", sql, NULL, 0) != 0)
        return -1;
    snprintf(url_file, cap, "%s/url-%s", pg->root, db);
    char url[512];
    FILE *f = fopen(url_file, "w");
    if (!f)
        return -1;
    int bad = fprintf(f, "%s\n", th_pg_url(pg, db, url, sizeof(url))) < 0;
    return fclose(f) != 0 || bad ? -1 : 0;
}

int th_pg_query(const th_pg_t *pg, int port, const char *db, const char *sql, char *out, size_t cap)
{
    char ci[256];
    conninfo(port ? port : pg->primary.port, db, ci, sizeof(ci));
    PGconn *c = PQconnectdb(ci);
    int rc = -1;
    PGresult *r = NULL;
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "th_pg: connect: %s", PQerrorMessage(c));
        goto out;
    }
    r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
        fprintf(stderr, "th_pg: %s: %s", sql, PQerrorMessage(c));
        goto out;
    }
    if (out && cap)
        snprintf(out, cap, "%s",
                 s == PGRES_TUPLES_OK && PQntuples(r) > 0 && PQnfields(r) > 0 ? PQgetvalue(r, 0, 0)
                                                                              : "");
    rc = 0;
out:
    PQclear(r);
    PQfinish(c);
    return rc;
}

long long th_pg_query_int(const th_pg_t *pg, int port, const char *db, const char *sql)
{
    char v[64];
    if (th_pg_query(pg, port, db, sql, v, sizeof(v)) != 0 || !v[0])
        return -1;
    return strtoll(v, NULL, 10);
}

void th_pg_kill_primary(th_pg_t *pg)
{
    node_kill(&pg->primary);
}

void th_pg_kill_node(th_pg_t *pg, th_pg_node_t *node)
{
    (void)pg;
    node_kill(node);
}

int th_pg_promote(th_pg_t *pg)
{
    char v[16];
    if (th_pg_query(pg, pg->standby.port, "postgres", "SELECT pg_promote(true, 60)", v,
                    sizeof(v)) != 0 ||
        strcmp(v, "t") != 0)
        return -1;
    return 0;
}

int th_pg_restart(th_pg_t *pg, th_pg_node_t *node)
{
    node_kill(node);
    /* The stores keep reconnecting while it is down: keep its port (see th_port_hold). */
    int hold = th_port_hold(node->port);
    const char *standby_extra[] = {"synchronous_standby_names=", NULL};
    int rc = node_start(pg, node, node == &pg->standby ? standby_extra : NULL);
    th_port_release(hold);
    return rc;
}
