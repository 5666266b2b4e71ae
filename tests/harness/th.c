#include "th.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

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
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

int th_proc_start(th_proc_t *p, char *const argv[], int timeout_ms)
{
    char dir[400];
    memset(p, 0, sizeof(*p));
    if (th_tempdir("th-proc", dir, sizeof(dir)) != 0)
        return -1;
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

    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execv(args[0], args);
        _exit(127);
    }
    p->pid = pid;
    long long end = th_now_ms() + timeout_ms;
    while (th_now_ms() < end) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "th: %s exited early (status %d); log %s\n", args[0], st, p->log_path);
            p->pid = 0;
            return -1;
        }
        if (access(p->ready_path, R_OK) == 0) {
            p->ready_json = th_read_file(p->ready_path, NULL);
            return p->ready_json ? 0 : -1;
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
        int st;
        if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
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

void th_proc_kill9(th_proc_t *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
    }
    p->pid = 0;
    free(p->ready_json);
    p->ready_json = NULL;
}
