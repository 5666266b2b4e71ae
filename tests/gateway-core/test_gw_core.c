/* Protocol-level tests of the gateway core: the gateway's process runner + gateway_core, with the
 * test API of test_api.c, run as a process (gw_core_testd) and driven by libcurl, raw sockets
 * and python3-h2 probes (h2probe.py). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "th.h"

static char g_dir[512], g_cert[600], g_key[600], g_bin[512];
static th_proc_t g_gw;
static int g_http, g_https, g_admin;

/* ---- helpers ---------------------------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len;
} buf_t;

typedef struct {
    CURLcode rc;
    long status;
    long version;
    long nconnects;
    buf_t body;
    buf_t head;
} resp_t;

static size_t buf_write(char *p, size_t s, size_t n, void *u)
{
    buf_t *b = u;
    size_t add = s * n;
    b->data = realloc(b->data, b->len + add + 1);
    memcpy(b->data + b->len, p, add);
    b->len += add;
    b->data[b->len] = 0;
    return add;
}

static void resp_free(resp_t *r)
{
    free(r->body.data);
    free(r->head.data);
    memset(r, 0, sizeof(*r));
}

static CURL *mk(const char *url, long ver, resp_t *r)
{
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, ver);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, buf_write);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->head);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_CAINFO, g_cert);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    return c;
}

static void run(CURL *c, resp_t *r)
{
    r->rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(c, CURLINFO_HTTP_VERSION, &r->version);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &r->nconnects);
}

/* One request on a fresh handle. |body| NULL = GET. */
static void req(const char *url, long ver, const char *body, size_t blen, resp_t *r)
{
    memset(r, 0, sizeof(*r));
    CURL *c = mk(url, ver, r);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    }
    run(c, r);
    curl_easy_cleanup(c);
}

static char *url(char *buf, const char *scheme, int port, const char *path)
{
    snprintf(buf, 256, "%s://%s:%d%s", scheme, strcmp(scheme, "https") ? "127.0.0.1" : "localhost",
             port, path);
    return buf;
}

typedef struct {
    const char *data;
    size_t len, off;
} src_t;

static size_t src_read(char *p, size_t s, size_t n, void *u)
{
    src_t *src = u;
    size_t k = s * n;
    if (k > 1000)
        k = 1000; /* several chunks */
    if (k > src->len - src->off)
        k = src->len - src->off;
    memcpy(p, src->data + src->off, k);
    src->off += k;
    return k;
}

/* POST with a streamed body of unknown length: chunked in HTTP/1.1, no content-length in h2. */
static void req_stream(const char *u, long ver, const char *body, size_t blen, resp_t *r)
{
    memset(r, 0, sizeof(*r));
    CURL *c = mk(u, ver, r);
    src_t src = {body, blen, 0};
    struct curl_slist *h = NULL;
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, src_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &src);
    if (ver == CURL_HTTP_VERSION_1_1) {
        h = curl_slist_append(h, "Transfer-Encoding: chunked");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    }
    run(c, r);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until EOF, |needle| seen, or |ms|. Returns bytes read, -1 on timeout before EOF/needle;
 * *eof set when the peer closed. */
static long read_until(int fd, char *buf, size_t cap, const char *needle, int ms, int *eof)
{
    size_t len = 0;
    long long end = th_now_ms() + ms;
    *eof = 0;
    buf[0] = 0;
    while (th_now_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)(end - th_now_ms())) <= 0)
            continue;
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n <= 0) {
            *eof = 1;
            return (long)len;
        }
        len += (size_t)n;
        buf[len] = 0;
        if (needle && strstr(buf, needle))
            return (long)len;
    }
    return -1;
}

static int start_gw(th_proc_t *p, const char *extra[])
{
    char *argv[TH_MAX_ARGS];
    int i = 0;
    argv[i++] = g_bin;
    argv[i++] = "--http-listen=127.0.0.1:0";
    argv[i++] = "--https-listen=127.0.0.1:0";
    argv[i++] = "--admin-listen=127.0.0.1:0";
    char c[700], k[700];
    snprintf(c, sizeof(c), "--tls-cert=%s", g_cert);
    snprintf(k, sizeof(k), "--tls-key=%s", g_key);
    argv[i++] = c;
    argv[i++] = k;
    argv[i++] = "--threads=2";
    for (int j = 0; extra && extra[j]; j++)
        argv[i++] = (char *)extra[j];
    argv[i] = NULL;
    return th_proc_start(p, argv, 20000);
}

static int setup(void **state)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    th_bin("gw_core_testd", g_bin, sizeof(g_bin));
    if (th_tempdir("gwcore", g_dir, sizeof(g_dir)) != 0)
        return -1;
    snprintf(g_cert, sizeof(g_cert), "%s/cert.pem", g_dir);
    snprintf(g_key, sizeof(g_key), "%s/key.pem", g_dir);
    char cmd[2048];
    snprintf(
        cmd, sizeof(cmd),
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s "
        "-out %s -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
        ">/dev/null 2>&1",
        g_key, g_cert);
    if (system(cmd) != 0)
        return -1;
    const char *extra[] = {"--request-timeout-ms=1000", "--idle-timeout-ms=2000",
                           "--max-connections=40", NULL};
    if (start_gw(&g_gw, extra) != 0)
        return -1;
    g_http = th_proc_port(&g_gw, "http_port");
    g_https = th_proc_port(&g_gw, "https_port");
    g_admin = th_proc_port(&g_gw, "admin_port");
    return g_http > 0 && g_https > 0 && g_admin > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    int st = th_proc_stop(&g_gw, SIGTERM, 15000);
    free(g_gw.ready_json);
    th_rmtree(g_dir);
    curl_global_cleanup();
    return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_h2c_prior_knowledge(void **state)
{
    char u[256];
    resp_t r;
    req(url(u, "http", g_http, "/echo?a=b"), CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE, NULL, 0, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.version, CURL_HTTP_VERSION_2_0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "GET /echo?a=b h2c 0 0\n");
    assert_non_null(strstr(r.head.data, "content-type: text/plain"));
    assert_non_null(strstr(r.head.data, "x-request-id: "));
    resp_free(&r);

    req(url(u, "http", g_http, "/async?ms=50"), CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE, "xyz", 3, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "POST /async?ms=50 h2c 0 1\nxyz");
    resp_free(&r);

    req(url(u, "http", g_http, "/nope"), CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE, NULL, 0, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
}

static void test_h1_keepalive_cl_and_chunked(void **state)
{
    char u[256];
    resp_t r = {0};
    CURL *c = mk(url(u, "http", g_http, "/echo"), CURL_HTTP_VERSION_1_1, &r);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "hello");
    run(c, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.version, CURL_HTTP_VERSION_1_1);
    assert_string_equal(r.body.data, "POST /echo http/1.1 0 1\nhello");
    assert_non_null(strstr(r.head.data, "content-length: 29"));
    assert_int_equal(r.nconnects, 1);
    free(r.body.data);
    r.body.data = NULL;
    r.body.len = 0;

    /* same handle: chunked body, on the same connection */
    static char big[20000];
    memset(big, 'c', sizeof(big));
    src_t src = {big, sizeof(big), 0};
    struct curl_slist *h = curl_slist_append(NULL, "Transfer-Encoding: chunked");
    curl_easy_setopt(c, CURLOPT_URL, url(u, "http", g_http, "/async?ms=20"));
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, src_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &src);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    run(c, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.nconnects, 0); /* reused */
    const char *hdr = "POST /async?ms=20 http/1.1 0 1\n";
    assert_int_equal(r.body.len, strlen(hdr) + sizeof(big));
    assert_memory_equal(r.body.data, hdr, strlen(hdr));
    assert_memory_equal(r.body.data + strlen(hdr), big, sizeof(big));
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    resp_free(&r);
}

static void test_h1_pipelining_and_close(void **state)
{
    int fd = tcp_connect(g_http);
    assert_true(fd >= 0);
    const char *two = "GET /async?ms=30 HTTP/1.1\r\nHost: x\r\n\r\n"
                      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n"
                      "\r\nabc";
    assert_int_equal(send(fd, two, strlen(two), 0), (ssize_t)strlen(two));
    char buf[4096];
    int eof;
    long n = read_until(fd, buf, sizeof(buf), NULL, 5000, &eof);
    assert_true(n > 0);
    assert_int_equal(eof, 1); /* Connection: close honoured */
    char *first = strstr(buf, "GET /async?ms=30 http/1.1");
    char *second = strstr(buf, "POST /echo http/1.1 0 1\nabc");
    assert_non_null(first);
    assert_non_null(second);
    assert_true(first < second); /* in order */
    assert_non_null(strstr(buf, "connection: close"));
    close(fd);

    /* garbage gets a 400 and a close */
    fd = tcp_connect(g_http);
    send(fd, "BLAH\x01\x02 / HTTP/1.1\r\n\r\n", 20, 0);
    n = read_until(fd, buf, sizeof(buf), NULL, 5000, &eof);
    assert_true(n > 0);
    assert_int_equal(eof, 1);
    assert_memory_equal(buf, "HTTP/1.1 400", 12);
    close(fd);
}

static void test_tls_alpn(void **state)
{
    char u[256];
    resp_t r;
    req(url(u, "https", g_https, "/echo"), CURL_HTTP_VERSION_2TLS, "t", 1, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.version, CURL_HTTP_VERSION_2_0);
    assert_string_equal(r.body.data, "POST /echo h2 1 1\nt");
    resp_free(&r);

    req(url(u, "https", g_https, "/echo"), CURL_HTTP_VERSION_1_1, NULL, 0, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.version, CURL_HTTP_VERSION_1_1);
    assert_string_equal(r.body.data, "GET /echo http/1.1 1 0\n");
    resp_free(&r);

    /* no ALPN at all -> HTTP/1.1 */
    memset(&r, 0, sizeof(r));
    CURL *c = mk(url(u, "https", g_https, "/echo"), CURL_HTTP_VERSION_2TLS, &r);
    curl_easy_setopt(c, CURLOPT_SSL_ENABLE_ALPN, 0L);
    run(c, &r);
    curl_easy_cleanup(c);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.version, CURL_HTTP_VERSION_1_1);
    resp_free(&r);
}

static void test_tls_versions(void **state)
{
    char u[256];
    resp_t r = {0};
    CURL *c = mk(url(u, "https", g_https, "/echo"), CURL_HTTP_VERSION_2TLS, &r);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_1 | CURL_SSLVERSION_MAX_TLSv1_1);
    run(c, &r);
    curl_easy_cleanup(c);
    assert_int_not_equal(r.rc, CURLE_OK);
    resp_free(&r);

    /* The server itself refuses 1.1 even for a client willing to use weak settings. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "openssl s_client -connect 127.0.0.1:%d -tls1_1 -cipher DEFAULT@SECLEVEL=0 "
             "</dev/null >/dev/null 2>&1",
             g_https);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd),
             "openssl s_client -connect 127.0.0.1:%d -tls1_2 </dev/null >/dev/null 2>&1", g_https);
    assert_int_equal(system(cmd), 0);
    /* Mozilla intermediate: no CBC/SHA-1 suites in TLS 1.2 */
    snprintf(cmd, sizeof(cmd),
             "openssl s_client -connect 127.0.0.1:%d -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA "
             "</dev/null >/dev/null 2>&1",
             g_https);
    assert_int_not_equal(system(cmd), 0);

    c = mk(url(u, "https", g_https, "/echo"), CURL_HTTP_VERSION_2TLS, &r);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2);
    run(c, &r);
    curl_easy_cleanup(c);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

static void test_body_limit(void **state)
{
    char u[256];
    resp_t r;
    static char body[65537];
    memset(body, 'b', sizeof(body));
    long vers[] = {CURL_HTTP_VERSION_1_1, CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE};
    for (int i = 0; i < 2; i++) {
        /* exactly at the limit: fine */
        req(url(u, "http", g_http, "/echo"), vers[i], body, 65536, &r);
        assert_int_equal(r.status, 200);
        resp_free(&r);
        /* announced by Content-Length */
        req(url(u, "http", g_http, "/echo"), vers[i], body, sizeof(body), &r);
        if (r.status != 413)
            fprintf(stderr, "v%d rc=%d %s\n", i, r.rc, curl_easy_strerror(r.rc));
        assert_int_equal(r.status, 413);
        assert_non_null(strstr(r.body.data, "{\"error\":{\"code\":\"payload_too_large\""));
        assert_non_null(strstr(r.head.data, "content-type: application/json"));
        resp_free(&r);
        /* streamed (chunked / no content-length) */
        req_stream(url(u, "http", g_http, "/echo"), vers[i], body, sizeof(body), &r);
        assert_int_equal(r.status, 413);
        assert_non_null(strstr(r.body.data, "payload_too_large"));
        resp_free(&r);
    }
    /* the core's own 413 echoes the correlation id like every API answer (gateway/API.md), under
     * the name it came with, in both protocols */
    for (int i = 0; i < 2; i++) {
        memset(&r, 0, sizeof(r));
        CURL *c = mk(url(u, "http", g_http, "/echo"), vers[i], &r);
        struct curl_slist *hl = curl_slist_append(NULL, i ? "Mailbox-Request-ID: req-413-h2"
                                                          : "Mailbox-Correlation-ID: corr-413-h1");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)sizeof(body));
        run(c, &r);
        curl_easy_cleanup(c);
        curl_slist_free_all(hl);
        assert_int_equal(r.status, 413);
        assert_non_null(strstr(r.head.data, i ? "mailbox-request-id: req-413-h2\r\n"
                                              : "mailbox-correlation-id: corr-413-h1\r\n"));
        assert_null(strstr(r.head.data, i ? "mailbox-correlation-id" : "mailbox-request-id"));
        resp_free(&r);
    }
    /* a Content-Length far beyond the limit, without the body: refused at the head */
    int fd = tcp_connect(g_http);
    const char *h = "POST /echo HTTP/1.1\r\nHost: x\r\nMailbox-Correlation-ID: c-413\r\n"
                    "Content-Length: 10000000\r\n\r\n";
    send(fd, h, strlen(h), 0);
    char buf[2048];
    int eof;
    assert_true(read_until(fd, buf, sizeof(buf), "payload_too_large", 3000, &eof) > 0);
    assert_memory_equal(buf, "HTTP/1.1 413", 12);
    assert_non_null(strstr(buf, "mailbox-correlation-id: c-413\r\n"));
    close(fd);
}

static void test_header_limits(void **state)
{
    char u[256];
    long vers[] = {CURL_HTTP_VERSION_1_1, CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE};
    static char bigval[20100];
    memcpy(bigval, "x-big: ", 7);
    memset(bigval + 7, 'a', 20000);
    for (int i = 0; i < 2; i++) {
        resp_t r = {0};
        struct curl_slist *h = NULL;
        char line[32];
        for (int k = 0; k < 101; k++) {
            snprintf(line, sizeof(line), "x-h%d: v", k);
            h = curl_slist_append(h, line);
        }
        CURL *c = mk(url(u, "http", g_http, "/echo"), vers[i], &r);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        run(c, &r);
        assert_int_equal(r.status, 431);
        assert_non_null(strstr(r.body.data, "headers_too_large"));
        curl_easy_cleanup(c);
        curl_slist_free_all(h);
        resp_free(&r);

        h = curl_slist_append(NULL, bigval);
        c = mk(url(u, "http", g_http, "/echo"), vers[i], &r);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        run(c, &r);
        assert_int_equal(r.status, 431);
        curl_easy_cleanup(c);
        curl_slist_free_all(h);
        resp_free(&r);

        /* 90 headers are fine */
        h = NULL;
        for (int k = 0; k < 90; k++) {
            snprintf(line, sizeof(line), "x-h%d: v", k);
            h = curl_slist_append(h, line);
        }
        c = mk(url(u, "http", g_http, "/echo"), vers[i], &r);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        run(c, &r);
        assert_int_equal(r.status, 200);
        curl_easy_cleanup(c);
        curl_slist_free_all(h);
        resp_free(&r);
    }
}

static void test_many_streams_one_connection(void **state)
{
    enum { N = 150 };
    char u[256];
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
    static resp_t rs[N];
    CURL *hs[N];
    /* Over TLS: curl 7.88 fails parallel transfers queued on an h2c prior-knowledge
     * connection (same against nghttpd), not on an ALPN h2 one. */
    url(u, "https", g_https, "/async?ms=300");
    for (int i = 0; i < N; i++) {
        memset(&rs[i], 0, sizeof(rs[i]));
        hs[i] = mk(u, CURL_HTTP_VERSION_2TLS, &rs[i]);
        curl_easy_setopt(hs[i], CURLOPT_PIPEWAIT, 1L);
        curl_multi_add_handle(m, hs[i]);
    }
    long long t0 = th_now_ms();
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    long long dt = th_now_ms() - t0;
    long conns = 0;
    int ok = 0;
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)))
        if (msg->msg == CURLMSG_DONE && msg->data.result == CURLE_OK)
            ok++;
        else if (msg->msg == CURLMSG_DONE)
            fprintf(stderr, "stream failed: %s\n", curl_easy_strerror(msg->data.result));
    for (int i = 0; i < N; i++) {
        long st = 0, nc = 0;
        curl_easy_getinfo(hs[i], CURLINFO_RESPONSE_CODE, &st);
        curl_easy_getinfo(hs[i], CURLINFO_NUM_CONNECTS, &nc);
        if (st != 200)
            fprintf(stderr, "stream %d: %ld\n", i, st);
        assert_int_equal(st, 200);
        conns += nc;
        curl_multi_remove_handle(m, hs[i]);
        curl_easy_cleanup(hs[i]);
        resp_free(&rs[i]);
    }
    curl_multi_cleanup(m);
    assert_int_equal(ok, N);
    assert_int_equal(conns, 1);
    /* 150 streams of 300 ms at <= 100 concurrent: two rounds, not 150 */
    assert_true(dt < 5000);
}

static int probe(const char *name, const char *n)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 %s/tests/gateway-core/h2probe.py 127.0.0.1 %d %s %s",
             getenv("TIGRESS_SRC_DIR"), g_http, name, n);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void alive(void)
{
    char u[256];
    resp_t r;
    req(url(u, "http", g_http, "/echo"), CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

static void test_h2_resets(void **state)
{
    assert_int_equal(probe("reset_mid", "50"), 0);
    alive();
    assert_int_equal(probe("rapid_reset", "1000"), 0);
    alive();
    char u[256];
    resp_t r;
    req(url(u, "http", g_admin, "/metrics"), CURL_HTTP_VERSION_1_1, NULL, 0, &r);
    assert_non_null(strstr(r.body.data, "gateway_h2_reset_floods_total 1"));
    resp_free(&r);
}

static void test_timeouts(void **state)
{
    char buf[4096];
    int eof;
    /* slow body (HTTP/1.1): 408 at the request timeout (1 s here), then close */
    int fd = tcp_connect(g_http);
    const char *h = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab";
    send(fd, h, strlen(h), 0);
    long long t0 = th_now_ms();
    long n = read_until(fd, buf, sizeof(buf), NULL, 5000, &eof);
    long long dt = th_now_ms() - t0;
    assert_true(n > 0);
    assert_memory_equal(buf, "HTTP/1.1 408", 12);
    assert_true(dt >= 900 && dt < 4000);
    close(fd);

    /* slow headers */
    fd = tcp_connect(g_http);
    send(fd, "GET /echo HTTP/1.1\r\nHost: x\r\n", 29, 0);
    n = read_until(fd, buf, sizeof(buf), NULL, 5000, &eof);
    assert_true(n > 0);
    assert_memory_equal(buf, "HTTP/1.1 408", 12);
    close(fd);

    /* a connection that never sends a byte */
    fd = tcp_connect(g_http);
    t0 = th_now_ms();
    n = read_until(fd, buf, sizeof(buf), NULL, 5000, &eof);
    assert_int_equal(eof, 1);
    assert_true(th_now_ms() - t0 < 4000);
    close(fd);

    /* idle keep-alive: closed after the idle timeout (2 s), not before */
    fd = tcp_connect(g_http);
    send(fd, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", 31, 0);
    n = read_until(fd, buf, sizeof(buf), "GET /echo http/1.1", 3000, &eof);
    assert_true(n > 0);
    t0 = th_now_ms();
    n = read_until(fd, buf, sizeof(buf), NULL, 6000, &eof);
    dt = th_now_ms() - t0;
    assert_int_equal(eof, 1);
    assert_true(dt >= 1500 && dt < 5000);
    close(fd);

    /* HTTP/2 slow body: 408 on the stream */
    assert_int_equal(probe("slow_body", ""), 0);
}

static void test_max_connections(void **state)
{
    /* --max-connections=40: the 41st is accepted and closed at once */
    int fds[40];
    for (int i = 0; i < 40; i++) {
        fds[i] = tcp_connect(g_http);
        assert_true(fds[i] >= 0);
        send(fds[i], "G", 1, 0); /* started a request: not closed by the pre-protocol timer */
    }
    usleep(200 * 1000);
    int fd = tcp_connect(g_http);
    char buf[64];
    int eof;
    long long t0 = th_now_ms();
    read_until(fd, buf, sizeof(buf), NULL, 3000, &eof);
    assert_int_equal(eof, 1);
    assert_true(th_now_ms() - t0 < 1000);
    close(fd);
    for (int i = 0; i < 40; i++)
        close(fds[i]);
    usleep(300 * 1000);
    alive();
}

static void test_access_log_and_metrics(void **state)
{
    char u[256];
    resp_t r;
    req(url(u, "http", g_http, "/echo?secret=abc123"), CURL_HTTP_VERSION_1_1, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    usleep(100 * 1000);
    char *log = th_read_file(g_gw.log_path, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "access route=echo method=GET status=200 protocol=http/1.1"));
    assert_non_null(strstr(log, "access route=echo method=POST status=200 protocol=h2 "));
    assert_null(strstr(log, "abc123"));
    assert_null(strstr(log, "127.0.0.1\""));
    free(log);
    req(url(u, "http", g_admin, "/metrics"), CURL_HTTP_VERSION_1_1, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(
        strstr(r.body.data, "gateway_http_requests_total{route=\"echo\",code=\"200\"}"));
    assert_non_null(
        strstr(r.body.data, "gateway_http_requests_total{route=\"core\",code=\"413\"}"));
    assert_non_null(
        strstr(r.body.data, "gateway_http_request_duration_seconds_bucket{route=\"async\""));
    assert_non_null(strstr(r.body.data, "gateway_open_connections"));
    resp_free(&r);
}

/* ---- drain ---- */

typedef struct {
    long ver;
    int port;
    resp_t r;
} inflight_t;

static void *inflight(void *arg)
{
    inflight_t *f = arg;
    char u[256];
    req(url(u, "http", f->port, "/async?ms=1500"), f->ver, "in-flight", 9, &f->r);
    return NULL;
}

static void test_sigterm_drains(void **state)
{
    th_proc_t p;
    const char *extra[] = {"--drain-timeout-ms=8000", NULL};
    assert_int_equal(start_gw(&p, extra), 0);
    int port = th_proc_port(&p, "http_port");
    inflight_t f2 = {.ver = CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE, .port = port};
    inflight_t f1 = {.ver = CURL_HTTP_VERSION_1_1, .port = port};
    pthread_t t1, t2;
    pthread_create(&t2, NULL, inflight, &f2);
    pthread_create(&t1, NULL, inflight, &f1);
    usleep(500 * 1000);
    long long t0 = th_now_ms();
    kill(p.pid, SIGTERM);
    usleep(300 * 1000);
    /* no longer accepting */
    int fd = tcp_connect(port);
    if (fd >= 0) {
        char buf[16];
        int eof;
        read_until(fd, buf, sizeof(buf), NULL, 2000, &eof);
        assert_int_equal(eof, 1);
        close(fd);
    }
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    int st = th_proc_stop(&p, SIGTERM, 10000);
    long long dt = th_now_ms() - t0;
    assert_true(st >= 0 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(f2.r.rc, CURLE_OK);
    assert_int_equal(f2.r.status, 200);
    assert_string_equal(f2.r.body.data, "POST /async?ms=1500 h2c 0 1\nin-flight");
    assert_int_equal(f1.r.rc, CURLE_OK);
    assert_int_equal(f1.r.status, 200);
    assert_non_null(strstr(f1.r.head.data, "connection: close"));
    assert_true(dt < 6000);
    resp_free(&f1.r);
    resp_free(&f2.r);
    free(p.ready_json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h2c_prior_knowledge),
        cmocka_unit_test(test_h1_keepalive_cl_and_chunked),
        cmocka_unit_test(test_h1_pipelining_and_close),
        cmocka_unit_test(test_tls_alpn),
        cmocka_unit_test(test_tls_versions),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_header_limits),
        cmocka_unit_test(test_many_streams_one_connection),
        cmocka_unit_test(test_h2_resets),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_access_log_and_metrics),
        cmocka_unit_test(test_sigterm_drains),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
