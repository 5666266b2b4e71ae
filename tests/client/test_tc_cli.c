/* The `tigress` command line and the client library against the real relay: gateway (TLS with
 * a test CA, h2 by ALPN, HTTP/1.1 and h2c on its cleartext port), mailbox-store on RocksDB,
 * push-dispatch and attestation-verifier, all on ephemeral loopback ports. What is asserted is
 * what a user sees: exit status, stdout, the one error line on stderr, the files written; and
 * what the relay keeps on disk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <openssl/rand.h>

#include "cm_b64.h"
#include "cutproxy.h"
#include "th.h"
#include "th_http.h"
#include "th_stack.h"
#include "tigress_client.h"

typedef struct {
    th_proc_t store, gw, push, verifier;
    char dir[512];
    char store_data[600], push_data[600], home[600];
    char cert[600], key[600];
    int https_port, http_port;
    char https_base[64], http_base[64];
} env_t;

static env_t E;

/* ---- the stack --------------------------------------------------------------------------- */

/* A free loopback port: the gateway must know its public URL (the share URLs' origin) before
 * it starts, so its TLS port is picked here. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &l) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int make_cert(void)
{
    snprintf(E.cert, sizeof(E.cert), "%s/cert.pem", E.dir);
    snprintf(E.key, sizeof(E.key), "%s/key.pem", E.dir);
    char cmd[2000];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost "
             "-keyout %s -out %s >/dev/null 2>&1",
             E.key, E.cert);
    return system(cmd) == 0 ? 0 : -1;
}

static int start_backends(void)
{
    char dd[700], push[64];
    snprintf(dd, sizeof(dd), "--data-dir=%s", E.push_data);
    const char *pflags[] = {"--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0", dd,
                            "--log-level=warn", NULL};
    if (th_start(&E.push, "push-dispatch", pflags, NULL, 20000) != 0)
        return -1;
    const char *vflags[] = {"--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0",
                            "--log-level=warn", NULL};
    if (th_start(&E.verifier, "attestation-verifier", vflags, NULL, 20000) != 0)
        return -1;
    snprintf(push, sizeof(push), "--push-target=127.0.0.1:%d", th_proc_port(&E.push, "grpc_port"));
    const char *sextra[] = {"--log-level=warn", "--sync=0", push, NULL};
    return th_store_start(&E.store, E.store_data, 0, sextra, 20000);
}

static int start_gateway(void)
{
    char store[64], push[64], att[64], cert[700], key[700], https[64], base[96];
    snprintf(store, sizeof(store), "--store-target=127.0.0.1:%d",
             th_proc_port(&E.store, "grpc_port"));
    snprintf(push, sizeof(push), "--push-target=127.0.0.1:%d", th_proc_port(&E.push, "grpc_port"));
    snprintf(att, sizeof(att), "--attestation-target=127.0.0.1:%d",
             th_proc_port(&E.verifier, "grpc_port"));
    snprintf(cert, sizeof(cert), "--tls-cert=%s", E.cert);
    snprintf(key, sizeof(key), "--tls-key=%s", E.key);
    for (int attempt = 0; attempt < 5; attempt++) { /* the picked port may be taken meanwhile */
        int port = free_port();
        snprintf(https, sizeof(https), "--https-listen=127.0.0.1:%d", port);
        snprintf(base, sizeof(base), "--public-base-url=https://127.0.0.1:%d", port);
        const char *extra[] = {
            store, push, att, cert, key, https, base, "--threads=2", "--log-level=warn", NULL};
        if (port > 0 && th_gateway_start(&E.gw, extra, 20000) == 0) {
            E.https_port = port;
            E.http_port = th_proc_port(&E.gw, "http_port");
            return 0;
        }
    }
    return -1;
}

static int group_setup(void **state)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);
    if (th_tempdir("tccli", E.dir, sizeof(E.dir)) != 0 || make_cert() != 0)
        return -1;
    snprintf(E.store_data, sizeof(E.store_data), "%s/store", E.dir);
    snprintf(E.push_data, sizeof(E.push_data), "%s/push", E.dir);
    snprintf(E.home, sizeof(E.home), "%s/home", E.dir);
    mkdir(E.home, 0700);
    if (start_backends() != 0 || start_gateway() != 0)
        return -1;
    snprintf(E.https_base, sizeof(E.https_base), "https://127.0.0.1:%d", E.https_port);
    snprintf(E.http_base, sizeof(E.http_base), "http://127.0.0.1:%d", E.http_port);
    return 0;
}

static int group_teardown(void **state)
{
    int rc = 0;
    th_proc_t *procs[] = {&E.gw, &E.store, &E.push, &E.verifier};
    const char *names[] = {"gateway", "mailbox-store", "push-dispatch", "attestation-verifier"};
    for (int i = 0; i < 4; i++)
        if (procs[i]->pid > 0 && th_proc_stop_clean(procs[i], names[i], 15000) != 0)
            rc = -1;
    th_rmtree(E.dir);
    curl_global_cleanup();
    return rc;
}

/* ---- running the command line ------------------------------------------------------------ */

typedef struct {
    int rc;
    char *out, *err; /* owned */
    size_t out_len, err_len;
} cli_t;

static void cli_free(cli_t *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

/* Child side: the environment a user would have (HOME in the test dir, the test CA trusted
 * unless |env| says otherwise), stdin from |in| or /dev/null, then exec. */
static void cli_child(const char *in, const char *const *env, char **argv, const char *outp,
                      const char *errp)
{
    setenv("HOME", E.home, 1);
    unsetenv("XDG_CONFIG_HOME");
    unsetenv("TIGRESS_STATE_DIR");
    unsetenv("TIGRESS_RELAY");
    setenv("TIGRESS_CACERT", E.cert, 1);
    for (size_t i = 0; env && env[i]; i++) {
        char name[128];
        const char *eq = strchr(env[i], '=');
        snprintf(name, sizeof(name), "%.*s", (int)(eq - env[i]), env[i]);
        if (eq[1])
            setenv(name, eq + 1, 1);
        else
            unsetenv(name);
    }
    int fi = open(in ? in : "/dev/null", O_RDONLY);
    int fo = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fi < 0 || fo < 0 || fe < 0)
        _exit(120);
    dup2(fi, 0);
    dup2(fo, 1);
    dup2(fe, 2);
    execv(argv[0], argv);
    _exit(127);
}

/* Runs `tigress args...` and collects its exit status, stdout and stderr. */
static void cli_env(cli_t *r, const char *in, const char *const *env, const char *const *args)
{
    char bin[512], outp[700], errp[700];
    th_bin("tigress", bin, sizeof(bin));
    snprintf(outp, sizeof(outp), "%s/cli.out", E.dir);
    snprintf(errp, sizeof(errp), "%s/cli.err", E.dir);
    char *argv[64];
    int n = 0;
    argv[n++] = bin;
    for (size_t i = 0; args[i] && n < 63; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    memset(r, 0, sizeof(*r));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        cli_child(in, env, argv, outp, errp);
    int st = 0;
    long long deadline = th_now_ms() + 120000;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (th_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fail_msg("tigress %s: no exit within 120 s", args[0]);
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    r->rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r->out = th_read_file(outp, &r->out_len);
    r->err = th_read_file(errp, &r->err_len);
    assert_non_null(r->out);
    assert_non_null(r->err);
}

#define CLI(r, in, ...) cli_env(r, in, NULL, (const char *const[]){__VA_ARGS__, NULL})
#define CLI_ENV(r, in, env, ...) cli_env(r, in, env, (const char *const[]){__VA_ARGS__, NULL})

/* The exit status must be |want|; on failure it and stderr are shown. */
static void expect_rc(const cli_t *r, int want)
{
    if (r->rc != want)
        fail_msg("exit status %d, wanted %d; stderr: %s", r->rc, want, r->err);
}

/* A failure is exactly one line on stderr, containing |text|, and nothing on stdout. */
static void expect_error_line(const cli_t *r, int want_rc, const char *text)
{
    expect_rc(r, want_rc);
    if (!strstr(r->err, text))
        fail_msg("stderr lacks \"%s\": %s", text, r->err);
    const char *nl = strchr(r->err, '\n');
    if (!nl || nl[1] != '\0')
        fail_msg("stderr is not one line: %s", r->err);
    assert_int_equal(r->out_len, 0);
}

/* The share URL printed by `send`: stdout is exactly one line. Returned malloc'd, no "\n". */
static char *share_url(const cli_t *r)
{
    expect_rc(r, 0);
    assert_true(r->out_len > 0 && r->out[r->out_len - 1] == '\n');
    assert_ptr_equal(strchr(r->out, '\n'), r->out + r->out_len - 1);
    char *u = strndup(r->out, r->out_len - 1);
    tc_share_t s;
    assert_int_equal(tc_share_parse(u, &s), TC_OK);
    assert_int_equal(s.secret_len, 16);
    return u;
}

/* "--state-dir=<dir>/state-<name>": one simulated device. */
static const char *device(const char *name)
{
    static char bufs[16][700];
    static int next;
    char *b = bufs[next++ % 16];
    snprintf(b, sizeof(bufs[0]), "--state-dir=%s/state-%s", E.dir, name);
    return b;
}

static const char *path_in(const char *name)
{
    static char bufs[16][700];
    static int next;
    char *b = bufs[next++ % 16];
    snprintf(b, sizeof(bufs[0]), "%s/%s", E.dir, name);
    return b;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *random_bytes(size_t n)
{
    uint8_t *b = malloc(n ? n : 1);
    assert_int_equal(RAND_bytes(b, (int)n), 1);
    return b;
}

static void expect_file(const char *path, const void *p, size_t n)
{
    size_t len = 0;
    char *got = th_read_file(path, &len);
    assert_non_null(got);
    assert_int_equal(len, n);
    assert_memory_equal(got, p, n);
    free(got);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The claim a device keeps for a mailbox, from its state file. */
static void state_claim(const char *device_flag, const char *id, char out[37])
{
    char path[800];
    snprintf(path, sizeof(path), "%s/state.json", strchr(device_flag, '=') + 1);
    char *text = th_read_file(path, NULL);
    assert_non_null(text);
    cJSON *root = cJSON_Parse(text);
    const cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "mailboxes"), id);
    const cJSON *c = cJSON_GetObjectItem(m, "claim");
    assert_true(cJSON_IsString(c));
    snprintf(out, 37, "%s", c->valuestring);
    cJSON_Delete(root);
    free(text);
}

/* One request of the raw API over TLS (the test acting as a device by hand). */
static void raw(const char *method, const char *path, const char *claim, const char *body,
                th_http_resp_t *out)
{
    char h[128];
    const char *hdrs[2] = {NULL, NULL};
    if (claim) {
        snprintf(h, sizeof(h), "deviceClaim: %s", claim);
        hdrs[0] = h;
    }
    th_http_req_t rq = {
        .proto = TH_HTTP_TLS,
        .port = E.https_port,
        .method = method,
        .path = path,
        .headers = hdrs,
        .body = body,
        .ca_file = E.cert,
        .timeout_ms = 15000,
    };
    CURL *c = curl_easy_init();
    int rc = th_http_request(c, &rq, out);
    curl_easy_cleanup(c);
    if (rc != 0)
        fail_msg("%s %s: %s", method, path, out->err);
}

/* ---- tests ------------------------------------------------------------------------------- */

/* Progress lines appear only when stderr is a terminal: none into a file, some on a pty. */
static void progress_only_on_a_terminal(void **state)
{
    write_file(path_in("tty.bin"), "tty", 3);
    cli_t r;
    CLI(&r, NULL, "send", "--relay", E.https_base, device("tty-a"), path_in("tty.bin"));
    char *url = share_url(&r);
    assert_int_equal(r.err_len, 0);
    cli_free(&r);
    int master, slave;
    assert_int_equal(openpty(&master, &slave, NULL, NULL, NULL), 0);
    char bin[512], out[700];
    th_bin("tigress", bin, sizeof(bin));
    snprintf(out, sizeof(out), "--output=%s", path_in("tty.out"));
    char *argv[] = {bin, "receive", url, (char *)device("tty-b"), out, NULL};
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(master);
        setenv("HOME", E.home, 1);
        setenv("TIGRESS_CACERT", E.cert, 1);
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(slave, 2);
        execv(bin, argv);
        _exit(127);
    }
    close(slave);
    char text[4096];
    size_t n = 0;
    long long deadline = th_now_ms() + 60000;
    for (;;) { /* until the child closed the pty (EIO) */
        struct pollfd pfd = {.fd = master, .events = POLLIN};
        if (th_now_ms() > deadline)
            break;
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        ssize_t k = read(master, text + n, sizeof(text) - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    text[n] = '\0';
    close(master);
    int st = 0;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!strstr(text, "3 bytes verified and written"))
        fail_msg("no progress on the terminal: %s", text);
    expect_file(path_in("tty.out"), "tty", 3);
    free(url);
}

/* A Secret given on the command line is overwritten in the process's arguments once parsed,
 * so a long `wait` does not show it in the process list. */
static void secret_leaves_the_process_list(void **state)
{
    write_file(path_in("ps.bin"), "ps", 2);
    cli_t r;
    CLI(&r, NULL, "send", "--relay", E.https_base, device("ps-a"), path_in("ps.bin"));
    char *url = share_url(&r);
    cli_free(&r);
    const char *secret = strchr(url, '#') + 1;
    char bin[512];
    th_bin("tigress", bin, sizeof(bin));
    char *argv[] = {bin, "wait", url, (char *)device("ps-a"), "--max-wait=20s", "-q", NULL};
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("TIGRESS_CACERT", E.cert, 1);
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(nul, 2);
        execv(bin, argv);
        _exit(127);
    }
    char path[64], cmdline[4096];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    int wiped = 0;
    for (long long end = th_now_ms() + 15000; !wiped && th_now_ms() < end;) {
        FILE *f = fopen(path, "rb");
        size_t n = f ? fread(cmdline, 1, sizeof(cmdline) - 1, f) : 0;
        if (f)
            fclose(f);
        for (size_t i = 0; i < n; i++)
            cmdline[i] = cmdline[i] ? cmdline[i] : ' ';
        cmdline[n] = '\0';
        wiped = strstr(cmdline, "#xxxxxxxxxxxxxxxxxxxxxx") != NULL;
        if (wiped)
            assert_null(strstr(cmdline, secret));
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_true(wiped);
    free(url);
}

static th_proc_t T_gw2; /* a second gateway a test starts; killed by its teardown */

static int kill_gw2(void **state)
{
    if (T_gw2.pid > 0)
        th_proc_kill9(&T_gw2);
    return 0;
}

/* A relay with a smaller body limit: the command line learns it from GET /v1/config when the
 * relay publishes it and refuses before uploading; a relay that does not publish it answers
 * 413 to the upload. Either way the user gets exit status 7 and one line. */
static void published_body_limit(void **state)
{
    char store[64];
    snprintf(store, sizeof(store), "--store-target=127.0.0.1:%d",
             th_proc_port(&E.store, "grpc_port"));
    const char *extra[] = {store, "--max-body=16384", "--threads=1", "--log-level=warn", NULL};
    th_proc_t *gw2 = &T_gw2;
    assert_int_equal(th_gateway_start(gw2, extra, 20000), 0);
    char base[64];
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", th_proc_port(gw2, "http_port"));
    th_http_req_t rq = {.proto = TH_HTTP_H1,
                        .port = th_proc_port(gw2, "http_port"),
                        .method = "GET",
                        .path = "/v1/config",
                        .timeout_ms = 15000};
    th_http_resp_t resp;
    CURL *c = curl_easy_init();
    assert_int_equal(th_http_request(c, &rq, &resp), 0);
    curl_easy_cleanup(c);
    int published = resp.status == 200;
    print_message("GET /v1/config: %ld\n", resp.status);
    th_http_resp_free(&resp);
    uint8_t *data = random_bytes(14000);
    write_file(path_in("small.bin"), data, 14000);
    cli_t r;
    CLI(&r, NULL, "send", "--relay", base, device("pl-a"), path_in("small.bin"));
    if (published) {
        expect_error_line(&r, 7, "request limit is 16384 bytes");
        assert_non_null(strstr(r.err, "nothing was uploaded"));
        size_t max = strtoul(strstr(r.err, "at most ") + 8, NULL, 10);
        assert_true(max > 11000 && max < 12288);
        cli_free(&r);
        write_file(path_in("small.bin"), data, max);
        CLI(&r, NULL, "send", "--relay", base, device("pl-a"), path_in("small.bin"));
        expect_rc(&r, 0);
    } else {
        expect_error_line(&r, 7, "413");
    }
    cli_free(&r);
    free(data);
    assert_int_equal(th_proc_stop_clean(gw2, "gateway", 15000), 0);
}

static void help_everywhere(void **state)
{
    const char *cmds[] = {"send",   "receive",    "reply",   "wait",
                          "delete", "relinquish", "preview", "demo"};
    cli_t r;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        char want[64];
        snprintf(want, sizeof(want), "usage: tigress %s", cmds[i]);
        CLI(&r, NULL, cmds[i], "--help");
        expect_rc(&r, 0);
        assert_ptr_equal(strstr(r.out, want), r.out);
        assert_non_null(strstr(r.out, "--state-dir"));
        assert_int_equal(r.err_len, 0);
        cli_free(&r);
    }
    CLI(&r, NULL, "--help");
    expect_rc(&r, 0);
    assert_non_null(strstr(r.out, "Exit status"));
    cli_free(&r);
    cli_env(&r, NULL, NULL, (const char *const[]){NULL});
    expect_rc(&r, 2);
    cli_free(&r);
    CLI(&r, NULL, "frobnicate");
    expect_rc(&r, 2);
    cli_free(&r);
    CLI(&r, NULL, "receive");
    expect_error_line(&r, 2, "expects one SHARE_URL");
    cli_free(&r);
    CLI(&r, NULL, "send", "--relay", E.https_base, "--ttl", "soon", "-");
    expect_error_line(&r, 2, "--ttl");
    cli_free(&r);
    CLI(&r, NULL, "send", "--frobnicate", "-");
    expect_error_line(&r, 2, "unknown option --frobnicate");
    cli_free(&r);
    CLI(&r, NULL, "receive", "x", "-o");
    expect_error_line(&r, 2, "missing value for -o");
    cli_free(&r);
}

/* The largest file the relay's 64 KiB body allows goes through; one byte more is refused with a
 * clear message before anything is uploaded (the proxy counts the creates that reach it). */
static void stateless_at_the_limit(void **state)
{
    cp_proxy_t *p = cp_start(E.http_port);
    assert_non_null(p);
    char base[64];
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", cp_port(p));
    cli_t r;
    uint8_t *big = random_bytes(60000);
    write_file(path_in("big.bin"), big, 60000);
    CLI(&r, NULL, "send", "--relay", base, device("lim-a"), path_in("big.bin"));
    expect_error_line(&r, 7, "is too large: 60000 bytes");
    assert_non_null(strstr(r.err, "nothing was uploaded"));
    const char *at = strstr(r.err, "at most ");
    assert_non_null(at);
    size_t max = strtoul(at + 8, NULL, 10);
    print_message("largest file for a 65536-byte body: %zu bytes\n", max);
    assert_true(max > 48000 && max <= 65536 / 4 * 3 - TC_SEAL_OVERHEAD);
    cli_free(&r);

    write_file(path_in("over.bin"), big, max + 1);
    CLI(&r, NULL, "send", "--relay", base, device("lim-a"), path_in("over.bin"));
    expect_error_line(&r, 7, "too large");
    cli_free(&r);
    CLI(&r, path_in("over.bin"), "send", "--relay", base, device("lim-a"), "-");
    expect_error_line(&r, 7, "the input is too large: over");
    cli_free(&r);
    assert_int_equal(cp_creates(p), 0); /* refused before uploading */

    write_file(path_in("max.bin"), big, max);
    CLI(&r, NULL, "send", "--relay", base, device("lim-a"), path_in("max.bin"));
    char *url = share_url(&r);
    cli_free(&r);
    assert_int_equal(cp_creates(p), 1);
    CLI(&r, NULL, "receive", url, device("lim-b"), "-o", path_in("max.out"));
    expect_rc(&r, 0);
    expect_file(path_in("max.out"), big, max);
    cli_free(&r);
    struct stat st;
    assert_int_equal(stat(path_in("max.out"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    free(url);
    free(big);
    cp_stop(p);
}

/* Stateless flow from stdin over TLS: HTTP/2 by ALPN for the send, HTTP/1.1 for the reads. */
static void stateless_stdin(void **state)
{
    uint8_t *data = random_bytes(5000);
    write_file(path_in("stdin.bin"), data, 5000);
    cli_t r;
    CLI(&r, path_in("stdin.bin"), "send", "--relay", E.https_base, device("in-a"), "--title",
        "Hotel key", "--description", "Room 12", "--ttl", "10m", "-");
    char *url = share_url(&r);
    assert_int_equal(strncmp(url, E.https_base, strlen(E.https_base)), 0);
    cli_free(&r);
    CLI(&r, NULL, "preview", url);
    expect_rc(&r, 0);
    assert_string_equal(r.out, "title: Hotel key\ndescription: Room 12\n");
    cli_free(&r);
    CLI(&r, NULL, "receive", url, device("in-b"), "--http1.1");
    expect_rc(&r, 0);
    assert_int_equal(r.out_len, 5000);
    assert_memory_equal(r.out, data, 5000);
    cli_free(&r);
    /* the same device again, then deleting it once verified (the stateless flow's end) */
    CLI(&r, NULL, "receive", url, device("in-b"), "-o", path_in("stdin.out"), "--delete");
    expect_rc(&r, 0);
    expect_file(path_in("stdin.out"), data, 5000);
    cli_free(&r);
    CLI(&r, NULL, "receive", url, device("in-b"));
    expect_error_line(&r, 4, "mailbox not found");
    cli_free(&r);
    CLI(&r, NULL, "preview", url);
    expect_error_line(&r, 4, "404");
    cli_free(&r);
    free(url);
    free(data);
}

static void third_device_refused(void **state)
{
    uint8_t *data = random_bytes(700);
    write_file(path_in("three.bin"), data, 700);
    cli_t r;
    CLI(&r, NULL, "send", "--relay", E.https_base, device("3-a"), path_in("three.bin"));
    char *url = share_url(&r);
    cli_free(&r);
    CLI(&r, NULL, "receive", url, device("3-b"), "-o", path_in("three.b"));
    expect_rc(&r, 0);
    cli_free(&r);
    CLI(&r, NULL, "receive", url, device("3-c"), "-o", path_in("three.c"));
    expect_error_line(&r, 5, "another device is already bound");
    assert_false(exists(path_in("three.c")));
    cli_free(&r);
    /* the bound receiver and the sender still read it */
    CLI(&r, NULL, "receive", url, device("3-b"), "-o", path_in("three.b2"));
    expect_rc(&r, 0);
    expect_file(path_in("three.b2"), data, 700);
    cli_free(&r);
    CLI(&r, NULL, "receive", url, device("3-a"), "-o", path_in("three.a"));
    expect_rc(&r, 0);
    expect_file(path_in("three.a"), data, 700);
    cli_free(&r);
    free(url);
    free(data);
}

/* A share URL whose fragment is wrong: nothing is written, the error says why. */
static void wrong_fragment(void **state)
{
    uint8_t *data = random_bytes(900);
    write_file(path_in("frag.bin"), data, 900);
    cli_t r;
    CLI(&r, NULL, "send", "--relay", E.https_base, device("wf-a"), path_in("frag.bin"));
    char *url = share_url(&r);
    cli_free(&r);
    char wrong[TC_URL_MAX], frag[64];
    uint8_t other[32];
    assert_int_equal(RAND_bytes(other, 32), 1);
    cm_b64_encode(CM_B64_URL, other, 16, frag);
    snprintf(wrong, sizeof(wrong), "%.*s#%s", (int)(strchr(url, '#') - url), url, frag);
    CLI(&r, NULL, "receive", wrong, device("wf-b"), "-o", path_in("frag.out"));
    expect_error_line(&r, 3, "integrity check failed");
    assert_false(exists(path_in("frag.out")));
    cli_free(&r);
    cm_b64_encode(CM_B64_URL, other, 32, frag); /* an AES-256 Secret for an AES128 payload */
    snprintf(wrong, sizeof(wrong), "%.*s#%s", (int)(strchr(url, '#') - url), url, frag);
    CLI(&r, NULL, "receive", wrong, device("wf-b"), "-o", path_in("frag.out"));
    expect_error_line(&r, 3, "integrity check failed");
    assert_false(exists(path_in("frag.out")));
    cli_free(&r);
    snprintf(wrong, sizeof(wrong), "%.*s#not*base64", (int)(strchr(url, '#') - url), url);
    CLI(&r, NULL, "receive", wrong, device("wf-b"), "-o", path_in("frag.out"));
    expect_error_line(&r, 2, "no valid Secret");
    cli_free(&r);
    snprintf(wrong, sizeof(wrong), "%.*s", (int)(strchr(url, '#') - url), url);
    CLI(&r, NULL, "receive", wrong, device("wf-b"), "-o", path_in("frag.out"));
    expect_error_line(&r, 2, "no valid Secret");
    assert_false(exists(path_in("frag.out")));
    cli_free(&r);
    /* the right URL (given as @FILE) still works for that device */
    write_file(path_in("frag.url"), url, strlen(url));
    char at[700];
    snprintf(at, sizeof(at), "@%s", path_in("frag.url"));
    CLI(&r, NULL, "receive", at, device("wf-b"), "-o", path_in("frag.out"));
    expect_rc(&r, 0);
    expect_file(path_in("frag.out"), data, 900);
    cli_free(&r);
    free(url);
    free(data);
}

/* The sender's claim writes a payload with one ciphertext byte flipped through the raw API (a
 * relay or a thief changing the stored bytes); the receiver must detect it. */
static void tampered_ciphertext(void **state)
{
    uint8_t *data = random_bytes(1000);
    write_file(path_in("tamper.bin"), data, 1000);
    cli_t r;
    CLI(&r, NULL, "send", "--relay", E.https_base, "--rights", "RWD", device("tm-a"),
        path_in("tamper.bin"));
    char *url = share_url(&r);
    cli_free(&r);
    tc_share_t s;
    assert_int_equal(tc_share_parse(url, &s), TC_OK);
    char claim[37], path[128];
    state_claim(device("tm-a"), s.mailbox_id, claim);
    snprintf(path, sizeof(path), "/v1/m/%s", s.mailbox_id);
    th_http_resp_t resp;
    raw("POST", path, claim, NULL, &resp);
    assert_int_equal(resp.status, 200);
    cJSON *root = cJSON_Parse(resp.body);
    const char *b64 =
        cJSON_GetObjectItem(cJSON_GetObjectItem(root, "payload"), "data")->valuestring;
    uint8_t sealed[2048];
    size_t n = 0;
    assert_int_equal(cm_b64_decode(CM_B64_STD, b64, strlen(b64), sealed, sizeof(sealed), &n), 0);
    assert_int_equal(n, 1000 + TC_SEAL_OVERHEAD);
    sealed[TC_IV_LEN + 500] ^= 0x04; /* one bit of the ciphertext */
    char enc[4096], body[4600];
    cm_b64_encode(CM_B64_STD, sealed, n, enc);
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},\"notificationToken\":"
             "{\"type\":\"webhook\",\"tokenData\":\"https://polling.invalid/t\"}}",
             enc);
    cJSON_Delete(root);
    th_http_resp_free(&resp);
    raw("PUT", path, claim, body, &resp);
    assert_int_equal(resp.status, 200);
    th_http_resp_free(&resp);
    CLI(&r, NULL, "receive", url, device("tm-b"), "-o", path_in("tamper.out"));
    expect_error_line(&r, 3, "integrity check failed");
    assert_false(exists(path_in("tamper.out")));
    cli_free(&r);
    free(url);
    free(data);
}

/* A create whose answer is lost is retried with the same correlation id: the relay answers 201
 * with the first answer and there is one mailbox with the first content. */
static void retried_create_is_a_duplicate(void **state)
{
    cp_proxy_t *p = cp_start(E.http_port);
    assert_non_null(p);
    char base[64];
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", cp_port(p));
    tc_options_t o = {.http = TC_HTTP_1_1, .retry_base_ms = 50, .ca_file = E.cert};
    tc_client_t *c = NULL;
    assert_int_equal(tc_client_new(&o, &c), TC_OK);
    uint8_t secret[TC_SECRET_MAX], *sealed;
    size_t sl, n;
    assert_int_equal(tc_secret_new(TC_AEAD_AES_128_GCM, secret, &sl), TC_OK);
    const char msg[] = "the first and only write";
    assert_int_equal(
        tc_seal(TC_AEAD_AES_128_GCM, secret, sl, (const uint8_t *)msg, sizeof(msg), &sealed, &n),
        TC_OK);
    char claim[37] = "0f8fad5b-d9cb-469f-a165-70867728950e";
    tc_create_t in = {.type = TC_AEAD_AES_128_GCM,
                      .sealed = sealed,
                      .sealed_len = n,
                      .title = "Retry",
                      .access_rights = "RWD",
                      .ttl_seconds = 600};
    tc_created_t cr;
    cp_arm(p);
    assert_int_equal(tc_create(c, base, claim, &in, &cr), TC_OK);
    const tc_call_info_t *ci = tc_client_last_call(c);
    print_message("create through a cut answer: %d attempts, status %ld, duplicate %d\n",
                  ci->attempts, ci->status, cr.duplicate);
    assert_int_equal(ci->attempts, 2);
    assert_int_equal(ci->status, 201);
    assert_true(cr.duplicate);
    assert_int_equal(cp_creates(p), 2);
    /* control: a retry with a new correlation id would not be a duplicate but a conflict */
    in.mailbox_id = cr.mailbox_id;
    tc_created_t cr2;
    assert_int_equal(tc_create(c, base, claim, &in, &cr2), TC_ERR_UNAUTHORIZED);
    /* one mailbox, holding the first content */
    tc_share_t s;
    assert_int_equal(tc_share_parse(cr.url_link, &s), TC_OK);
    tc_content_t ct;
    assert_int_equal(tc_read(c, s.api_url, "7c9e6679-7425-40de-944b-e07fc1f90ae7", &ct), TC_OK);
    uint8_t *pt;
    size_t pl;
    assert_int_equal(tc_open(ct.type, secret, sl, ct.sealed, ct.sealed_len, NULL, 0, &pt, &pl),
                     TC_OK);
    assert_string_equal((char *)pt, msg);
    tc_free(pt, pl);
    tc_content_free(&ct);
    tc_free(sealed, n);
    tc_client_free(c);

    /* the same through the command line */
    uint8_t *data = random_bytes(3000);
    write_file(path_in("retry.bin"), data, 3000);
    int before = cp_creates(p);
    cp_arm(p);
    cli_t r;
    CLI(&r, NULL, "send", "--relay", base, device("rt-a"), path_in("retry.bin"));
    char *url = share_url(&r);
    cli_free(&r);
    assert_int_equal(cp_creates(p), before + 2);
    CLI(&r, NULL, "receive", url, device("rt-b"), "-o", path_in("retry.out"));
    expect_rc(&r, 0);
    expect_file(path_in("retry.out"), data, 3000);
    cli_free(&r);
    free(url);
    free(data);
    cp_stop(p);
}

/* The stateful flow with the commands: receive, reply, wait (polling), relinquish, delete. */
static void stateful_commands(void **state)
{
    size_t n1 = 300, n2 = 5000, n3 = 20000;
    uint8_t *f1 = random_bytes(n1), *f2 = random_bytes(n2), *f3 = random_bytes(n3);
    write_file(path_in("sf1"), f1, n1);
    write_file(path_in("sf2"), f2, n2);
    write_file(path_in("sf3"), f3, n3);
    cli_t r;
    CLI(&r, NULL, "send", "--relay", E.https_base, "--rights", "RWD", device("sf-a"),
        path_in("sf1"));
    char *url = share_url(&r);
    cli_free(&r);
    write_file(path_in("sf.url"), url, strlen(url));
    char at[700];
    snprintf(at, sizeof(at), "@%s", path_in("sf.url"));
    CLI(&r, NULL, "receive", at, device("sf-b"), "-o", path_in("sf1.out"));
    expect_rc(&r, 0);
    expect_file(path_in("sf1.out"), f1, n1);
    cli_free(&r);
    CLI(&r, NULL, "reply", at, path_in("sf2"), device("sf-b"));
    expect_rc(&r, 0);
    assert_int_equal(r.out_len, 0);
    cli_free(&r);
    CLI(&r, NULL, "wait", at, device("sf-a"), "-o", path_in("sf2.out"));
    expect_rc(&r, 0);
    expect_file(path_in("sf2.out"), f2, n2);
    assert_non_null(strstr(r.err, "no push channel, so this polls"));
    cli_free(&r);
    CLI(&r, path_in("sf3"), "reply", url, "-", device("sf-a"));
    expect_rc(&r, 0);
    cli_free(&r);
    CLI(&r, NULL, "wait", url, device("sf-b"), "-o", path_in("sf3.out"), "--max-wait", "30s");
    expect_rc(&r, 0);
    expect_file(path_in("sf3.out"), f3, n3);
    cli_free(&r);
    /* nothing new: wait gives up when told to */
    CLI(&r, NULL, "wait", url, device("sf-b"), "--max-wait", "2s", "-q");
    expect_error_line(&r, 6, "gave up after 2 s");
    cli_free(&r);
    CLI(&r, NULL, "relinquish", url, device("sf-b"));
    expect_rc(&r, 0);
    cli_free(&r);
    CLI(&r, NULL, "receive", url, device("sf-c"), "-o", path_in("sf3.c"));
    expect_rc(&r, 0); /* once the receiver let go, another device may bind */
    expect_file(path_in("sf3.c"), f3, n3);
    cli_free(&r);
    CLI(&r, NULL, "reply", url, path_in("sf1"), device("sf-d"));
    expect_error_line(&r, 1, "no claim for mailbox");
    cli_free(&r);
    CLI(&r, NULL, "delete", url, device("sf-a"));
    expect_rc(&r, 0);
    cli_free(&r);
    CLI(&r, NULL, "receive", url, device("sf-c"));
    expect_error_line(&r, 4, "mailbox not found");
    cli_free(&r);
    CLI(&r, NULL, "delete", url, device("sf-a"));
    expect_error_line(&r, 1, "no claim for mailbox");
    cli_free(&r);
    free(url);
    free(f1);
    free(f2);
    free(f3);
}

static void demo_flows(void **state)
{
    cli_t r;
    CLI(&r, NULL, "demo", "--relay", E.https_base);
    expect_rc(&r, 0);
    const char *steps[] = {"KeyCreationRequest",    "CreateMailbox", "link preview",
                           "bound as the receiver", "refused (401)", "KeySigningRequest",
                           "KeyImportRequest",      "DeleteMailbox", "404, the mailbox is gone",
                           "demo complete"};
    const char *at = r.out;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        const char *hit = strstr(at, steps[i]);
        if (!hit)
            fail_msg("demo output lacks \"%s\" (in order): %s", steps[i], r.out);
        at = hit;
    }
    /* the Secret is not printed; the mailbox is gone */
    const char *u = strstr(r.out, "share URL ");
    assert_non_null(u);
    u += strlen("share URL ");
    const char *hash = strchr(u, '#');
    assert_non_null(hash);
    assert_int_equal(strncmp(hash, "#<Secret", 8), 0);
    char link[512];
    snprintf(link, sizeof(link), "%.*s", (int)(hash - u), u);
    tc_share_t s;
    assert_int_equal(tc_share_parse(link, &s), TC_OK);
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", s.mailbox_id);
    th_http_resp_t resp;
    raw("GET", path, NULL, NULL, &resp);
    assert_int_equal(resp.status, 404);
    th_http_resp_free(&resp);
    cli_free(&r);
    /* HTTP/2 without TLS (prior knowledge), and HTTP/1.1 with the later type names */
    CLI(&r, NULL, "demo", "--http2", "--relay", E.http_base);
    expect_rc(&r, 0);
    cli_free(&r);
    CLI(&r, NULL, "demo", "--http1.1", "--relay", E.http_base, "--type", "AEAD_AES_256_GCM");
    expect_rc(&r, 0);
    assert_non_null(strstr(r.out, "AEAD_AES_256_GCM"));
    cli_free(&r);
}

static void errors_are_one_line(void **state)
{
    write_file(path_in("err.bin"), "x", 1);
    /* A port nobody listens on, held so no server can take it meanwhile. */
    int port = free_port();
    int hold = th_port_hold(port);
    assert_true(hold >= 0);
    char dead[64], url[256];
    snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", port);
    cli_t r;
    CLI(&r, NULL, "send", "--relay", dead, device("er-a"), path_in("err.bin"));
    expect_error_line(&r, 6, "relay unreachable");
    cli_free(&r);
    snprintf(url, sizeof(url),
             "%s/v1/m/2bba630e-519b-4aec-bf63-0242ac130002#hXlr6aRC7KgJpOLTNZaLsw", dead);
    CLI(&r, NULL, "receive", url, device("er-a"));
    expect_error_line(&r, 6, "relay unreachable");
    cli_free(&r);
    th_port_release(hold);
    /* an https relay whose certificate is not trusted */
    CLI_ENV(&r, NULL, ((const char *const[]){"TIGRESS_CACERT=", NULL}), "send", "--relay",
            E.https_base, device("er-a"), path_in("err.bin"));
    expect_error_line(&r, 6, "TLS failed");
    cli_free(&r);
    CLI(&r, NULL, "send", "--relay", "http://relay.example", device("er-a"), path_in("err.bin"));
    expect_error_line(&r, 2, "plain http://");
    cli_free(&r);
    CLI(&r, NULL, "send", "--relay", "relay.example", device("er-a"), path_in("err.bin"));
    expect_error_line(&r, 2, "--relay wants");
    cli_free(&r);
    CLI(&r, NULL, "receive", "https://relay.example/m/123#x", device("er-a"));
    expect_error_line(&r, 2, "not a Tigress share URL");
    cli_free(&r);
    CLI(&r, NULL, "send", "--relay", E.https_base, device("er-a"), path_in("missing.bin"));
    expect_error_line(&r, 1, "cannot read");
    cli_free(&r);
}

/* Without --state-dir the claims go to ~/.config/tigress, private, and never the Secret. */
static void default_state_is_private(void **state)
{
    write_file(path_in("home.bin"), "hello", 5);
    cli_t r;
    CLI(&r, NULL, "send", "--relay", E.https_base, path_in("home.bin"));
    char *url = share_url(&r);
    cli_free(&r);
    char dir[700], file[800];
    snprintf(dir, sizeof(dir), "%s/.config/tigress", E.home);
    snprintf(file, sizeof(file), "%s/state.json", dir);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    tc_share_t s;
    assert_int_equal(tc_share_parse(url, &s), TC_OK);
    char *text = th_read_file(file, NULL);
    assert_non_null(strstr(text, s.mailbox_id));
    char b64u[64], b64s[64], hex[80];
    cm_b64_encode(CM_B64_URL, s.secret, s.secret_len, b64u);
    cm_b64_encode(CM_B64_STD, s.secret, s.secret_len, b64s);
    for (size_t i = 0; i < s.secret_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", s.secret[i]);
    b64s[strcspn(b64s, "=")] = '\0';
    assert_null(strstr(text, b64u));
    assert_null(strstr(text, b64s));
    assert_null(strstr(text, hex));
    free(text);
    free(url);
}

/* ---- what the relay keeps on disk -------------------------------------------------------- */

typedef struct {
    const char *what;
    const void *p;
    size_t n;
} needle_t;

static needle_t *G_needles;
static size_t G_nneedles;
static int G_found;

static int scan_file(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    if (type != FTW_F)
        return 0;
    size_t len = 0;
    char *text = th_read_file(path, &len);
    for (size_t i = 0; text && i < G_nneedles; i++) {
        if (memmem(text, len, G_needles[i].p, G_needles[i].n)) {
            print_message("FOUND %s in %s\n", G_needles[i].what, path);
            G_found++;
        }
    }
    free(text);
    return 0;
}

static void scan(const char *root, needle_t *needles, size_t n)
{
    G_needles = needles;
    G_nneedles = n;
    nftw(root, scan_file, 16, FTW_PHYS);
}

/* Plaintexts, Secrets (raw, base64, base64url, hex) and claims of a stateless and a stateful
 * exchange never appear in the relay's data directories or its logs; checked while running
 * (write-ahead logs) and after a clean stop (flushed tables). */
static void relay_disk_has_no_plaintext_or_secret(void **state)
{
    char p1[4000], p2[4000], m1[48], m2[48];
    uint8_t rnd[16];
    assert_int_equal(RAND_bytes(rnd, 16), 1);
    snprintf(m1, sizeof(m1), "PLAINTEXT-ONE-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    snprintf(m2, sizeof(m2), "PLAINTEXT-TWO-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[8], rnd[9],
             rnd[10], rnd[11], rnd[12], rnd[13], rnd[14], rnd[15]);
    for (size_t i = 0; i < sizeof(p1); i++) {
        p1[i] = m1[i % strlen(m1)];
        p2[i] = m2[i % strlen(m2)];
    }
    write_file(path_in("disk1"), p1, sizeof(p1));
    write_file(path_in("disk2"), p2, sizeof(p2));
    cli_t r;
    CLI(&r, NULL, "send", "--relay", E.https_base, "--rights", "RWD", device("dk-a"),
        path_in("disk1"));
    char *url = share_url(&r);
    cli_free(&r);
    CLI(&r, NULL, "receive", url, device("dk-b"), "-o", path_in("disk1.out"));
    expect_rc(&r, 0);
    cli_free(&r);
    CLI(&r, NULL, "reply", url, path_in("disk2"), device("dk-b"));
    expect_rc(&r, 0);
    cli_free(&r);
    CLI(&r, NULL, "wait", url, device("dk-a"), "-o", path_in("disk2.out"));
    expect_rc(&r, 0);
    expect_file(path_in("disk2.out"), p2, sizeof(p2));
    cli_free(&r);

    tc_share_t s;
    assert_int_equal(tc_share_parse(url, &s), TC_OK);
    char b64u[64], b64s[64], hex[80], ca[37], cb[37];
    cm_b64_encode(CM_B64_URL, s.secret, s.secret_len, b64u);
    cm_b64_encode(CM_B64_STD, s.secret, s.secret_len, b64s);
    b64s[strcspn(b64s, "=")] = '\0';
    for (size_t i = 0; i < s.secret_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", s.secret[i]);
    state_claim(device("dk-a"), s.mailbox_id, ca);
    state_claim(device("dk-b"), s.mailbox_id, cb);
    needle_t needles[] = {
        {"plaintext 1", m1, strlen(m1)},
        {"plaintext 2", m2, strlen(m2)},
        {"Secret (raw)", s.secret, s.secret_len},
        {"Secret (base64url)", b64u, strlen(b64u)},
        {"Secret (base64)", b64s, strlen(b64s)},
        {"Secret (hex)", hex, strlen(hex)},
        {"sender claim", ca, 36},
        {"receiver claim", cb, 36},
    };
    size_t nn = sizeof(needles) / sizeof(needles[0]);
    G_found = 0;
    scan(E.store_data, needles, nn);
    scan(E.push_data, needles, nn);
    th_proc_t *procs[] = {&E.gw, &E.store, &E.push, &E.verifier};
    for (int i = 0; i < 4; i++)
        scan(procs[i]->log_path, needles, nn);
    assert_int_equal(G_found, 0);
    /* flushed to tables on a clean stop: scanned again */
    assert_int_equal(th_proc_stop_clean(&E.store, "mailbox-store", 15000), 0);
    scan(E.store_data, needles, nn);
    assert_int_equal(G_found, 0);
    tc_share_wipe(&s);
    free(url);
}

/* Every library operation over each transport: HTTP/2 by ALPN and HTTP/1.1 over TLS,
 * HTTP/1.1 and HTTP/2 with prior knowledge over cleartext; the version used is checked. */
static void library_over_each_protocol(void **state)
{
    struct {
        const char *base;
        tc_http_mode_t mode;
        int want;
    } cases[] = {{E.https_base, TC_HTTP_AUTO, 2},
                 {E.https_base, TC_HTTP_1_1, 11},
                 {E.http_base, TC_HTTP_AUTO, 11},
                 {E.http_base, TC_HTTP_2, 2}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tc_options_t o = {.http = cases[i].mode, .ca_file = E.cert};
        tc_client_t *c = NULL;
        assert_int_equal(tc_client_new(&o, &c), TC_OK);
        const tc_call_info_t *ci = tc_client_last_call(c);
        long max_body = 0;
        assert_int_equal(tc_relay_max_body(c, cases[i].base, &max_body), TC_OK);
        assert_true(max_body >= 1024);
        uint8_t secret[TC_SECRET_MAX], *sealed, *pt;
        size_t sl, n, pl;
        assert_int_equal(tc_secret_new(TC_AES256, secret, &sl), TC_OK);
        assert_int_equal(tc_seal(TC_AES256, secret, sl, (const uint8_t *)"k1", 2, &sealed, &n),
                         TC_OK);
        const char *snd = "11111111-1111-4111-8111-111111111111";
        const char *rcv = "22222222-2222-4222-8222-222222222222";
        tc_create_t in = {.type = TC_AES256,
                          .sealed = sealed,
                          .sealed_len = n,
                          .title = "P",
                          .image_url = "https://example.com/p.png",
                          .access_rights = "RWD",
                          .ttl_seconds = 120};
        tc_created_t cr;
        assert_int_equal(tc_create(c, cases[i].base, snd, &in, &cr), TC_OK);
        print_message("%s mode %d: HTTP version %d\n", cases[i].base, (int)cases[i].mode,
                      ci->http_version);
        assert_int_equal(ci->http_version, cases[i].want);
        assert_false(cr.duplicate);
        tc_share_t s;
        assert_int_equal(tc_share_parse(cr.url_link, &s), TC_OK);
        /* the link is the gateway's public (TLS) URL; calls go where this case says */
        char api[TC_URL_MAX];
        snprintf(api, sizeof(api), "%s/v1/m/%s", cases[i].base, cr.mailbox_id);
        tc_preview_t pv;
        assert_int_equal(tc_preview(c, api, &pv), TC_OK);
        assert_string_equal(pv.title, "P");
        assert_string_equal(pv.image_url, "https://example.com/p.png");
        tc_preview_free(&pv);
        tc_content_t ct;
        assert_int_equal(tc_read(c, api, rcv, &ct), TC_OK);
        assert_int_equal(ci->http_version, cases[i].want);
        assert_int_equal(ct.type, TC_AES256);
        assert_string_equal(ct.title, "P");
        assert_true(strlen(ct.expiration) >= 20);
        assert_int_equal(tc_open(ct.type, secret, sl, ct.sealed, ct.sealed_len, NULL, 0, &pt, &pl),
                         TC_OK);
        assert_int_equal(pl, 2);
        tc_free(pt, pl);
        tc_content_free(&ct);
        int dup = -1;
        assert_int_equal(tc_update(c, api, rcv, TC_AES256, sealed, n, "webhook",
                                   "https://polling.invalid/x", &dup),
                         TC_OK);
        assert_int_equal(dup, 0);
        assert_int_equal(tc_relinquish(c, api, snd), TC_ERR_REJECTED); /* creators cannot */
        assert_int_equal(tc_relinquish(c, api, rcv), TC_OK);
        assert_int_equal(tc_delete(c, api, snd), TC_OK);
        assert_int_equal(tc_delete(c, api, snd), TC_ERR_NOT_FOUND);
        assert_int_equal(ci->status, 404);
        assert_string_equal(ci->code, "not_found");
        tc_free(sealed, n);
        tc_client_free(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(help_everywhere),
        cmocka_unit_test(library_over_each_protocol),
        cmocka_unit_test(progress_only_on_a_terminal),
        cmocka_unit_test(secret_leaves_the_process_list),
        cmocka_unit_test(stateless_at_the_limit),
        cmocka_unit_test_teardown(published_body_limit, kill_gw2),
        cmocka_unit_test(stateless_stdin),
        cmocka_unit_test(third_device_refused),
        cmocka_unit_test(wrong_fragment),
        cmocka_unit_test(tampered_ciphertext),
        cmocka_unit_test(retried_create_is_a_duplicate),
        cmocka_unit_test(stateful_commands),
        cmocka_unit_test(demo_flows),
        cmocka_unit_test(errors_are_one_line),
        cmocka_unit_test(default_state_is_private),
        cmocka_unit_test(relay_disk_has_no_plaintext_or_secret), /* last: stops the store */
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
