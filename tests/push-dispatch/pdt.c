#include "pdt.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cm_alloc.h"
#include "tigress/push/v1/push_dispatch.pb-c.h"

static char keys[512];

int64_t pdt_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void pdt_sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

static const char *fakes_py(char *buf, size_t cap)
{
    const char *src = getenv("TIGRESS_SRC_DIR");
    snprintf(buf, cap, "%s/tests/push-dispatch/fakes.py", src ? src : ".");
    return buf;
}

static void remove_keys(void)
{
    if (keys[0] && !getenv("PDT_KEEP"))
        th_rmtree(keys);
}

int pdt_init(pdt_t *t)
{
    memset(t, 0, sizeof(*t));
    signal(SIGPIPE, SIG_IGN);
    if (!keys[0]) {
        char py[600], cmd[1400];
        if (th_tempdir("pd-keys", keys, sizeof(keys)) != 0)
            return -1;
        snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s gen %s", fakes_py(py, sizeof(py)), keys);
        if (system(cmd) != 0) {
            keys[0] = '\0';
            return -1;
        }
        atexit(remove_keys);
    }
    if (th_tempdir("pd-test", t->dir, sizeof(t->dir)) != 0)
        return -1;
    const char *files[] = {"ca.pem",  "server.pem",   "server.key",    "apns.p8",
                           "fcm.key", "apns_pub.pem", "webhook.secret"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char a[700], b[700];
        snprintf(a, sizeof(a), "%s/%s", keys, files[i]);
        snprintf(b, sizeof(b), "%s/%s", t->dir, files[i]);
        if (symlink(a, b) != 0)
            return -1;
    }
    snprintf(t->data, sizeof(t->data), "%s/data", t->dir);
    return 0;
}

th_proc_t *pdt_fake(pdt_t *t, const char *kind)
{
    if (strcmp(kind, "apns") == 0)
        return &t->apns;
    if (strcmp(kind, "fcm") == 0)
        return &t->fcm;
    return &t->webhook;
}

static int *fake_port(pdt_t *t, const char *kind)
{
    if (strcmp(kind, "apns") == 0)
        return &t->apns_port;
    if (strcmp(kind, "fcm") == 0)
        return &t->fcm_port;
    return &t->webhook_port;
}

int pdt_fake_start(pdt_t *t, const char *kind, int port, int max_streams)
{
    char py[600], ps[16], ms[16];
    snprintf(ps, sizeof(ps), "%d", port);
    snprintf(ms, sizeof(ms), "%d", max_streams > 0 ? max_streams : 100);
    char *argv[] = {"/usr/bin/python3",
                    (char *)fakes_py(py, sizeof(py)),
                    (char *)kind,
                    t->dir,
                    "--port",
                    ps,
                    "--max-streams",
                    ms,
                    NULL};
    th_proc_t *p = pdt_fake(t, kind);
    pdt_proc_cleanup(p); /* a previous instance's directory */
    if (th_proc_start(p, argv, 20000) != 0)
        return -1;
    *fake_port(t, kind) = th_proc_port(p, "https_port");
    return *fake_port(t, kind) > 0 ? 0 : -1;
}

int pdt_pd_start(pdt_t *t, const char *const *extra)
{
    char bin[600], apns_url[64], fcm_url[64], p8[600], ca[600], sa[600], sec[600];
    char *argv[TH_MAX_ARGS];
    int n = 0;
    argv[n++] = (char *)th_bin("push-dispatch", bin, sizeof(bin));
    char listen[64];
    snprintf(listen, sizeof(listen), "--listen=127.0.0.1:%d", t->pd_listen_port);
    argv[n++] = listen;
    argv[n++] = "--admin-listen=127.0.0.1:0";
    argv[n++] = "--log-level=info";
    char dd[700];
    snprintf(dd, sizeof(dd), "--data-dir=%s", t->data);
    argv[n++] = dd;
    argv[n++] = "--retry-base-ms=100";
    argv[n++] = "--retry-max-ms=1000";
    snprintf(ca, sizeof(ca), "--ca-file=%s/ca.pem", t->dir);
    argv[n++] = ca;
    if (t->apns_port > 0) {
        snprintf(apns_url, sizeof(apns_url), "--apns-url=https://127.0.0.1:%d", t->apns_port);
        snprintf(p8, sizeof(p8), "--apns-key-file=%s/apns.p8", t->dir);
        argv[n++] = apns_url;
        argv[n++] = p8;
        argv[n++] = "--apns-key-id=TESTKEY123";
        argv[n++] = "--apns-team-id=TESTTEAM01";
        argv[n++] = "--apns-topic=com.example.tigress";
    }
    if (t->fcm_port > 0) {
        snprintf(fcm_url, sizeof(fcm_url), "--fcm-url=https://127.0.0.1:%d", t->fcm_port);
        snprintf(sa, sizeof(sa), "--fcm-service-account-file=%s/sa.json", t->dir);
        argv[n++] = fcm_url;
        argv[n++] = sa;
    }
    if (t->webhook_port > 0) {
        snprintf(sec, sizeof(sec), "--webhook-secret-file=%s/webhook.secret", t->dir);
        argv[n++] = sec;
    }
    for (size_t i = 0; extra && extra[i] && n < TH_MAX_ARGS - 1; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    pdt_proc_cleanup(&t->pd); /* a previous instance's directory */
    if (th_proc_start(&t->pd, argv, 30000) != 0)
        return -1;
    t->grpc_port = th_proc_port(&t->pd, "grpc_port");
    t->admin_port = th_proc_port(&t->pd, "admin_port");
    if (!t->ch) {
        char target[64];
        snprintf(target, sizeof(target), "127.0.0.1:%d", t->grpc_port);
        if (cm_rpc_channel_new(target, NULL, &t->ch) != 0)
            return -1;
    }
    return 0;
}

void pdt_pd_kill9(pdt_t *t)
{
    th_proc_kill9(&t->pd);
    if (t->ch)
        cm_rpc_channel_del(t->ch);
    t->ch = NULL;
}

int pdt_pd_stop(pdt_t *t)
{
    int st = th_proc_stop(&t->pd, SIGTERM, 20000);
    if (t->ch)
        cm_rpc_channel_del(t->ch);
    t->ch = NULL;
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void pdt_proc_cleanup(th_proc_t *p)
{
    if (!p->log_path[0])
        return;
    th_proc_kill9(p);
    char *slash = strrchr(p->log_path, '/');
    if (slash && !getenv("PDT_KEEP")) {
        *slash = '\0';
        th_rmtree(p->log_path);
    }
    p->log_path[0] = '\0';
}

void pdt_fini(pdt_t *t)
{
    if (t->ch)
        cm_rpc_channel_del(t->ch);
    t->ch = NULL;
    pdt_proc_cleanup(&t->pd);
    pdt_proc_cleanup(&t->apns);
    pdt_proc_cleanup(&t->fcm);
    pdt_proc_cleanup(&t->webhook);
    if (t->dir[0] && !getenv("PDT_KEEP"))
        th_rmtree(t->dir);
}

void pdt_ctl(pdt_t *t, const char *kind, const char *json)
{
    char p[700], tmp[720];
    snprintf(p, sizeof(p), "%s/%s.ctl", t->dir, kind);
    snprintf(tmp, sizeof(tmp), "%s.tmp", p);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fputs(json, f);
    fclose(f);
    rename(tmp, p);
}

void pdt_token(int i, char out[65])
{
    snprintf(out, 65, "%064x", i);
    /* fixed prefix so the tokens look like real ones and never collide with other numbers */
    memcpy(out, "a1b2c3d4", 8);
}

static int call(pdt_t *t, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *rd, ProtobufCMessage **resp)
{
    char path[128];
    snprintf(path, sizeof(path), "/tigress.push.v1.PushDispatch/%s", method);
    /* generous: ASan builds on a loaded 2-core machine */
    cm_rpc_call_opts_t o = {.timeout_ms = 30000};
    cm_rpc_status_t st;
    if (!t->ch)
        return -1;
    int rc = cm_rpc_call(t->ch, path, req, rd, &o, resp, &st);
    if (rc != 0)
        fprintf(stderr, "pdt: %s failed: status %d %s\n", method, (int)st.code, st.message);
    return rc;
}

static int enqueue(pdt_t *t, Tigress__Push__V1__Notification **ns, size_t n)
{
    Tigress__Push__V1__EnqueueRequest rq = TIGRESS__PUSH__V1__ENQUEUE_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    rq.notifications = ns;
    rq.n_notifications = n;
    if (call(t, "Enqueue", &rq.base, &tigress__push__v1__enqueue_response__descriptor, &resp) != 0)
        return -1;
    int acc = (int)((Tigress__Push__V1__EnqueueResponse *)resp)->accepted;
    protobuf_c_message_free_unpacked(resp, NULL);
    return acc;
}

int pdt_enqueue1(pdt_t *t, const char *id, const char *mailbox, const char *type, const char *token,
                 int64_t expires_ms)
{
    Tigress__Push__V1__Notification n = TIGRESS__PUSH__V1__NOTIFICATION__INIT, *np = &n;
    n.notification_id = (char *)id;
    n.mailbox_id = (char *)mailbox;
    n.token_type = (char *)type;
    n.token_data = (char *)token;
    n.mailbox_expires_at_ms = expires_ms;
    n.created_at_ms = pdt_now_ms();
    return enqueue(t, &np, 1);
}

int pdt_enqueue_many(pdt_t *t, const char *prefix, int first, int n, int nmb, int batch,
                     const char *type, int64_t expires_ms)
{
    int total = 0;
    Tigress__Push__V1__Notification *arr = cm_xcalloc((size_t)batch, sizeof(*arr));
    Tigress__Push__V1__Notification **ptr = cm_xcalloc((size_t)batch, sizeof(*ptr));
    char(*ids)[64] = cm_xcalloc((size_t)batch, 64);
    char(*mbs)[64] = cm_xcalloc((size_t)batch, 64);
    char(*toks)[65] = cm_xcalloc((size_t)batch, 65);
    for (int i = first; i < first + n; i += batch) {
        int k = 0;
        for (; k < batch && i + k < first + n; k++) {
            int j = i + k;
            Tigress__Push__V1__Notification init = TIGRESS__PUSH__V1__NOTIFICATION__INIT;
            arr[k] = init;
            snprintf(ids[k], 64, "%s-%d", prefix, j);
            snprintf(mbs[k], 64, "%s-mb-%d", prefix, j % nmb);
            pdt_token(j, toks[k]);
            arr[k].notification_id = ids[k];
            arr[k].mailbox_id = mbs[k];
            arr[k].token_type = (char *)type;
            arr[k].token_data = toks[k];
            arr[k].mailbox_expires_at_ms = expires_ms;
            arr[k].created_at_ms = pdt_now_ms();
            ptr[k] = &arr[k];
        }
        int a = enqueue(t, ptr, (size_t)k);
        if (a < 0) {
            total = -1;
            break;
        }
        total += a;
    }
    free(arr);
    free(ptr);
    free(ids);
    free(mbs);
    free(toks);
    return total;
}

int pdt_cancel(pdt_t *t, const char *mailbox, int64_t expires_ms, uint32_t *dropped)
{
    Tigress__Push__V1__CancelMailboxRequest rq = TIGRESS__PUSH__V1__CANCEL_MAILBOX_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    rq.mailbox_id = (char *)mailbox;
    rq.mailbox_expires_at_ms = expires_ms;
    if (call(t, "CancelMailbox", &rq.base, &tigress__push__v1__cancel_mailbox_response__descriptor,
             &resp) != 0)
        return -1;
    *dropped = ((Tigress__Push__V1__CancelMailboxResponse *)resp)->dropped;
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

int pdt_count(pdt_t *t, const char *kind, int status, const char *needle)
{
    char p[700], line[1024];
    snprintf(p, sizeof(p), "%s/%s.log", t->dir, kind);
    FILE *f = fopen(p, "r");
    int n = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        if (status && atoi(line) != status)
            continue;
        if (needle && !strstr(line, needle))
            continue;
        n++;
    }
    fclose(f);
    return n;
}

static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int pdt_count_distinct(pdt_t *t, const char *kind, int status)
{
    char p[700], line[1024];
    snprintf(p, sizeof(p), "%s/%s.log", t->dir, kind);
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    char **v = NULL;
    size_t n = 0, cap = 0;
    while (fgets(line, sizeof(line), f)) {
        if (atoi(line) != status)
            continue;
        char tok[300];
        if (sscanf(line, "%*d %299s", tok) != 1)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            v = cm_xreallocarray(v, cap, sizeof(*v));
        }
        v[n++] = cm_xstrdup(tok);
    }
    fclose(f);
    qsort(v, n, sizeof(*v), cmpstr);
    int d = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(v[i], v[i - 1]) != 0)
            d++;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
    return d;
}

int pdt_wait(pdt_t *t, const char *kind, int status, const char *needle, int n, int timeout_ms)
{
    int64_t end = pdt_now_ms() + timeout_ms;
    int c;
    while ((c = pdt_count(t, kind, status, needle)) < n && pdt_now_ms() < end)
        pdt_sleep_ms(50);
    return c;
}

long long pdt_metric(pdt_t *t, const char *series)
{
    char cmd[256], line[1024];
    snprintf(cmd, sizeof(cmd), "curl -s --max-time 5 http://127.0.0.1:%d/metrics", t->admin_port);
    FILE *f = popen(cmd, "r");
    long long v = -1;
    size_t sl = strlen(series);
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, series, sl) == 0 && line[sl] == ' ')
            v = atoll(line + sl + 1);
    pclose(f);
    return v;
}
