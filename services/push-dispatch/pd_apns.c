#include "pd_apns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cJSON.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cm_alloc.h"
#include "cm_config.h"
#include "cm_log.h"
#include "pd_jwt.h"

#define MAX_STREAMS_CAP 1000
static const char BODY[] = "{\"aps\":{\"content-available\":1},\"type\":\"mailbox_updated\"}";

/* One request, living on the stack of the delivery thread that waits in apns_send(). */
typedef struct job {
    const pd_entry_t *e; /* borrowed for the duration of send() */
    pd_result_t *r;      /* where the outcome goes */
    int done;            /* guarded by apns_t.lock */
    pthread_cond_t cv;   /* signalled when done (one per job: no thundering herd) */
    int32_t stream_id;
    int status;
    int64_t retry_after_ms;
    char body[512]; /* first bytes of the response body ({"reason":...}) */
    size_t body_len;
    size_t sent; /* request body bytes handed to nghttp2 */
    struct job *next;
} job_t;

typedef struct {
    /* configuration (immutable after start) */
    EVP_PKEY *key; /* owned */
    char key_id[64], team_id[64], topic[256];
    char host[256], port[8], authority[270];
    int64_t timeout_ms, jwt_refresh_ms;
    SSL_CTX *ctx; /* owned */

    pthread_t thread;
    int thread_started;
    int efd; /* eventfd: wakes the thread for new jobs and stop */

    pthread_mutex_t lock; /* guards pending, stop, abort_at_ms, exited, job->done */
    job_t *pending_head, *pending_tail;
    int stop, exited;
    int64_t abort_at_ms;

    /* connection state: connection thread only */
    int fd;
    SSL *ssl;              /* owned */
    nghttp2_session *sess; /* owned */
    int settings_seen, goaway, want_pollout;
    job_t **inflight; /* owned array (the jobs are not owned) */
    size_t ninflight, capinflight;
    uint8_t *out; /* owned: bytes from nghttp2 waiting for SSL_write */
    size_t outlen, outoff, outcap;
    int64_t last_progress_ms;
    int64_t reconnect_at_ms;
    char *jwt; /* owned */
    int64_t jwt_at_ms;
    int jwt_renew; /* the server called the token expired */

    pd_provider_t prov;
} apns_t;

/* ---- jobs ---- */

static void job_complete(apns_t *a, job_t *j, pd_result_kind_t k, int status, const char *why)
{
    pd_result_set(j->r, k, status, why);
    j->r->retry_after_ms = j->retry_after_ms;
    pthread_mutex_lock(&a->lock);
    j->done = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&a->lock);
}

/* Classifies a finished stream (https://developer.apple.com: "Handling notification responses
 * from APNs"). */
static void job_finish_response(apns_t *a, job_t *j)
{
    char reason[64] = "";
    cJSON *b = cJSON_ParseWithLength(j->body, j->body_len);
    cJSON *rs = cJSON_GetObjectItemCaseSensitive(b, "reason");
    if (cJSON_IsString(rs))
        snprintf(reason, sizeof(reason), "%s", rs->valuestring);
    cJSON_Delete(b);
    int st = j->status;
    if (st == 200) {
        job_complete(a, j, PD_R_OK, st, "ok");
    } else if (st == 410 || strcmp(reason, "BadDeviceToken") == 0 ||
               strcmp(reason, "Unregistered") == 0 ||
               strcmp(reason, "DeviceTokenNotForTopic") == 0) {
        job_complete(a, j, PD_R_DEAD, st, reason[0] ? reason : "Unregistered");
    } else if (st == 403 && (strcmp(reason, "ExpiredProviderToken") == 0 ||
                             strcmp(reason, "InvalidProviderToken") == 0 ||
                             strcmp(reason, "MissingProviderToken") == 0)) {
        /* Renew and retry: an operator may fix the key without losing the queue. */
        if (strcmp(reason, "ExpiredProviderToken") == 0)
            a->jwt_renew = 1;
        job_complete(a, j, PD_R_RETRY, st, reason);
    } else if (st == 429 || st >= 500) {
        job_complete(a, j, PD_R_RETRY, st, reason[0] ? reason : "unavailable");
    } else {
        job_complete(a, j, PD_R_REJECTED, st, reason[0] ? reason : "rejected");
    }
}

static void inflight_remove(apns_t *a, job_t *j)
{
    for (size_t i = 0; i < a->ninflight; i++) {
        if (a->inflight[i] == j) {
            a->inflight[i] = a->inflight[--a->ninflight];
            return;
        }
    }
}

/* ---- nghttp2 callbacks ---- */

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)flags, (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    job_t *j = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!j)
        return 0;
    if (nl == 7 && memcmp(name, ":status", 7) == 0) {
        int st = 0;
        for (size_t i = 0; i < vl && i < 3; i++)
            st = st * 10 + (value[i] - '0');
        j->status = st;
    } else if (nl == 11 && memcmp(name, "retry-after", 11) == 0) {
        j->retry_after_ms = pd_retry_after_ms((const char *)value, vl);
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
                   void *ud)
{
    (void)flags, (void)ud;
    job_t *j = nghttp2_session_get_stream_user_data(s, sid);
    if (!j)
        return 0;
    size_t room = sizeof(j->body) - j->body_len;
    size_t c = len < room ? len : room;
    memcpy(j->body + j->body_len, data, c);
    j->body_len += c;
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t err, void *ud)
{
    apns_t *a = ud;
    job_t *j = nghttp2_session_get_stream_user_data(s, sid);
    if (!j)
        return 0;
    nghttp2_session_set_stream_user_data(s, sid, NULL);
    inflight_remove(a, j);
    a->last_progress_ms = pd_now_ms();
    if (err == NGHTTP2_NO_ERROR && j->status > 0)
        job_finish_response(a, j);
    else
        job_complete(a, j, PD_R_RETRY, j->status,
                     err == NGHTTP2_REFUSED_STREAM ? "refused_stream" : "stream_reset");
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    apns_t *a = ud;
    (void)s;
    if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK))
        a->settings_seen = 1;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        /* Only the streams the server did not take are refused (nghttp2 closes them with
         * REFUSED_STREAM); the rest still get their answers. */
        if (!a->goaway)
            CM_INFO(NULL, "apns: server sent GOAWAY (error %" PRIu32 "), will reconnect",
                    f->goaway.error_code);
        a->goaway = 1;
    }
    return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)s, (void)sid, (void)ud;
    job_t *j = src->ptr;
    size_t left = sizeof(BODY) - 1 - j->sent;
    size_t c = left < len ? left : len;
    memcpy(buf, BODY + j->sent, c);
    j->sent += c;
    if (j->sent == sizeof(BODY) - 1)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)c;
}

/* ---- connection ---- */

static void conn_close(apns_t *a, const char *why)
{
    if (a->sess) {
        nghttp2_session_del(a->sess);
        a->sess = NULL;
    }
    /* Streams die with the session without callbacks: their jobs go back as retries. */
    for (size_t i = 0; i < a->ninflight; i++)
        job_complete(a, a->inflight[i], PD_R_RETRY, 0, why);
    a->ninflight = 0;
    if (a->ssl) {
        SSL_shutdown(a->ssl);
        SSL_free(a->ssl);
        a->ssl = NULL;
    }
    if (a->fd >= 0)
        close(a->fd);
    a->fd = -1;
    a->outlen = a->outoff = 0;
    a->settings_seen = a->goaway = a->want_pollout = 0;
}

static int wait_fd(int fd, short ev, int64_t deadline)
{
    int64_t left = deadline - pd_now_ms();
    if (left <= 0)
        return -1;
    struct pollfd p = {.fd = fd, .events = ev};
    int n = poll(&p, 1, (int)left);
    return n > 0 ? 0 : -1;
}

static int tcp_connect(apns_t *a, int64_t deadline)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(a->host, a->port, &hints, &ai) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *p = ai; p; p = p->ai_next) {
        fd = socket(p->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        if (connect(fd, p->ai_addr, p->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) == 0) {
            int err = 0;
            socklen_t el = sizeof(err);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0)
                break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}

static int conn_open(apns_t *a)
{
    int64_t deadline = pd_now_ms() + a->timeout_ms;
    a->fd = tcp_connect(a, deadline);
    if (a->fd < 0) {
        CM_WARN(NULL, "apns: cannot connect to %s", a->authority);
        return -1;
    }
    a->ssl = SSL_new(a->ctx);
    if (!a->ssl)
        goto fail;
    SSL_set_fd(a->ssl, a->fd);
    struct in6_addr tmp;
    if (inet_pton(AF_INET, a->host, &tmp) == 1 || inet_pton(AF_INET6, a->host, &tmp) == 1) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(a->ssl), a->host);
    } else {
        SSL_set_tlsext_host_name(a->ssl, a->host);
        SSL_set1_host(a->ssl, a->host);
    }
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(a->ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(a->ssl, r);
        if (e == SSL_ERROR_WANT_READ && wait_fd(a->fd, POLLIN, deadline) == 0)
            continue;
        if (e == SSL_ERROR_WANT_WRITE && wait_fd(a->fd, POLLOUT, deadline) == 0)
            continue;
        long v = SSL_get_verify_result(a->ssl);
        CM_WARN(NULL, "apns: TLS handshake with %s failed (%s)", a->authority,
                v != X509_V_OK ? X509_verify_cert_error_string(v) : "handshake error");
        goto fail;
    }
    const unsigned char *alpn = NULL;
    unsigned int alen = 0;
    SSL_get0_alpn_selected(a->ssl, &alpn, &alen);
    if (alen != 2 || memcmp(alpn, "h2", 2) != 0) {
        CM_WARN(NULL, "apns: %s did not negotiate h2", a->authority);
        goto fail;
    }
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        goto fail;
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    int rv = nghttp2_session_client_new(&a->sess, cb, a);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0)
        goto fail;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                   {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
    if (nghttp2_submit_settings(a->sess, NGHTTP2_FLAG_NONE, iv, 2) != 0)
        goto fail;
    a->last_progress_ms = pd_now_ms();
    CM_INFO(NULL, "apns: connected to %s", a->authority);
    return 0;
fail:
    conn_close(a, "connect");
    return -1;
}

/* Moves bytes nghttp2 wants to send into SSL. 0, or -1 on a dead connection. */
static int conn_flush(apns_t *a)
{
    a->want_pollout = 0;
    for (;;) {
        if (a->outoff == a->outlen) {
            a->outoff = a->outlen = 0;
            /* Gather a few frames per SSL record batch. */
            while (a->outlen < 65536) {
                const uint8_t *data;
                ssize_t n = nghttp2_session_mem_send(a->sess, &data);
                if (n < 0)
                    return -1;
                if (n == 0)
                    break;
                if (a->outlen + (size_t)n > a->outcap) {
                    a->outcap = (a->outlen + (size_t)n) * 2;
                    a->out = cm_xrealloc(a->out, a->outcap);
                }
                memcpy(a->out + a->outlen, data, (size_t)n);
                a->outlen += (size_t)n;
            }
            if (a->outlen == 0)
                return 0;
        }
        ERR_clear_error();
        int w = SSL_write(a->ssl, a->out + a->outoff, (int)(a->outlen - a->outoff));
        if (w > 0) {
            a->outoff += (size_t)w;
            continue;
        }
        int e = SSL_get_error(a->ssl, w);
        if (e == SSL_ERROR_WANT_WRITE) {
            a->want_pollout = 1;
            return 0;
        }
        if (e == SSL_ERROR_WANT_READ)
            return 0;
        return -1;
    }
}

/* Reads what arrived and feeds nghttp2. 0, or -1 on a dead connection. */
static int conn_read(apns_t *a)
{
    uint8_t buf[16384];
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(a->ssl, buf, sizeof(buf));
        if (n > 0) {
            a->last_progress_ms = pd_now_ms();
            if (nghttp2_session_mem_recv(a->sess, buf, (size_t)n) < 0)
                return -1;
            continue;
        }
        int e = SSL_get_error(a->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            return 0;
        if (e == SSL_ERROR_WANT_WRITE) {
            a->want_pollout = 1;
            return 0;
        }
        return -1; /* EOF or error */
    }
}

static const char *current_jwt(apns_t *a)
{
    int64_t now = pd_now_ms();
    /* A forced renewal still waits a minute so a server that keeps refusing cannot make us
     * sign (and APNs throttle) on every request. */
    if (!a->jwt || now - a->jwt_at_ms >= a->jwt_refresh_ms ||
        (a->jwt_renew && now - a->jwt_at_ms >= 60000)) {
        char hdr[128], claims[160], *jwt = NULL;
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"kid\":\"%s\"}", a->key_id);
        snprintf(claims, sizeof(claims), "{\"iss\":\"%s\",\"iat\":%" PRId64 "}", a->team_id,
                 now / 1000);
        if (pd_jwt_sign(a->key, 1, hdr, claims, &jwt) == 0) {
            free(a->jwt);
            a->jwt = jwt;
            a->jwt_at_ms = now;
            a->jwt_renew = 0;
            CM_DEBUG(NULL, "apns: new provider token");
        }
    }
    return a->jwt;
}

static int token_ok(const char *t)
{
    size_t n = 0;
    for (; t[n]; n++) {
        char c = t[n];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return 0;
    }
    return n >= 16 && n <= 200;
}

/* Starts |j| on the connection. 0, 1 when the connection cannot take streams (requeue), or -1
 * when the job was completed here. */
static int submit(apns_t *a, job_t *j)
{
    const char *jwt = current_jwt(a);
    if (!jwt) {
        job_complete(a, j, PD_R_RETRY, 0, "jwt");
        return -1;
    }
    char path[220], auth[1024], exp[24], clen[16];
    snprintf(path, sizeof(path), "/3/device/%s", j->e->token);
    snprintf(auth, sizeof(auth), "bearer %s", jwt);
    snprintf(exp, sizeof(exp), "%" PRId64, j->e->expires_ms / 1000);
    snprintf(clen, sizeof(clen), "%zu", sizeof(BODY) - 1);
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nva[] = {
        NV(":method", "POST"),
        NV(":scheme", "https"),
        NV(":authority", a->authority),
        NV(":path", path),
        NV("authorization", auth),
        NV("apns-topic", a->topic),
        NV("apns-push-type", "background"),
        NV("apns-priority", "5"),
        NV("apns-expiration", exp),
        NV("content-type", "application/json"),
        NV("content-length", clen),
    };
#undef NV
    nghttp2_data_provider dp = {.source.ptr = j, .read_callback = read_body};
    j->sent = 0;
    j->status = 0;
    j->body_len = 0;
    j->retry_after_ms = -1;
    int32_t sid = nghttp2_submit_request(a->sess, NULL, nva, sizeof(nva) / sizeof(nva[0]), &dp, j);
    if (sid < 0) {
        if (sid == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
            a->goaway = 1; /* stream ids used up: a fresh connection is needed */
            return 1;
        }
        job_complete(a, j, PD_R_RETRY, 0, "submit");
        return -1;
    }
    j->stream_id = sid;
    if (a->ninflight == a->capinflight) {
        a->capinflight = a->capinflight ? a->capinflight * 2 : 64;
        a->inflight = cm_xreallocarray(a->inflight, a->capinflight, sizeof(*a->inflight));
    }
    a->inflight[a->ninflight++] = j;
    return 0;
}

static size_t stream_limit(apns_t *a)
{
    if (!a->settings_seen)
        return 1;
    uint32_t m =
        nghttp2_session_get_remote_settings(a->sess, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return m > MAX_STREAMS_CAP ? MAX_STREAMS_CAP : (m ? m : 1);
}

static job_t *pop_pending(apns_t *a)
{
    pthread_mutex_lock(&a->lock);
    job_t *j = a->pending_head;
    if (j) {
        a->pending_head = j->next;
        if (!a->pending_head)
            a->pending_tail = NULL;
        j->next = NULL;
    }
    pthread_mutex_unlock(&a->lock);
    return j;
}

static void push_front(apns_t *a, job_t *j)
{
    pthread_mutex_lock(&a->lock);
    j->next = a->pending_head;
    a->pending_head = j;
    if (!a->pending_tail)
        a->pending_tail = j;
    pthread_mutex_unlock(&a->lock);
}

static void fail_pending(apns_t *a, const char *why)
{
    job_t *j;
    while ((j = pop_pending(a)) != NULL)
        job_complete(a, j, PD_R_RETRY, 0, why);
}

static void *conn_thread(void *arg)
{
    apns_t *a = arg;
    for (;;) {
        int64_t now = pd_now_ms();
        pthread_mutex_lock(&a->lock);
        int has_pending = a->pending_head != NULL, stopping = a->stop;
        int64_t abort_at = a->abort_at_ms;
        pthread_mutex_unlock(&a->lock);
        if (stopping && (now >= abort_at || (a->ninflight == 0 && !has_pending)))
            break;

        if (!a->sess && has_pending) {
            if (now >= a->reconnect_at_ms && conn_open(a) != 0) {
                /* The delivery loop backs off per notification; here only avoid a tight
                 * reconnect loop. */
                a->reconnect_at_ms = now + 500;
                fail_pending(a, "connect");
            } else if (!a->sess) {
                fail_pending(a, "connect");
            }
        }
        if (a->sess && !a->goaway) {
            job_t *j;
            while (a->ninflight < stream_limit(a) && (j = pop_pending(a)) != NULL) {
                if (submit(a, j) == 1) {
                    push_front(a, j);
                    break;
                }
            }
        }
        if (a->sess && conn_flush(a) != 0)
            conn_close(a, "write");
        if (a->sess && a->goaway && a->ninflight == 0)
            conn_close(a, "goaway");
        if (a->sess && !nghttp2_session_want_read(a->sess) && !nghttp2_session_want_write(a->sess))
            conn_close(a, "closed");
        if (a->sess && a->ninflight > 0 && now - a->last_progress_ms > a->timeout_ms) {
            CM_WARN(NULL, "apns: no answer for %" PRId64 " ms, reconnecting", a->timeout_ms);
            conn_close(a, "timeout");
        }

        struct pollfd p[2] = {{.fd = a->efd, .events = POLLIN}, {.fd = a->fd, .events = POLLIN}};
        if (a->want_pollout)
            p[1].events |= POLLOUT;
        int nfds = a->sess ? 2 : 1;
        int wait = stopping ? 50 : 1000;
        if (poll(p, (nfds_t)nfds, wait) < 0 && errno != EINTR)
            continue;
        if (p[0].revents & POLLIN) {
            uint64_t v;
            if (read(a->efd, &v, sizeof(v)) < 0) {
                /* nothing: the counter is only a wake-up */
            }
        }
        if (a->sess && nfds == 2 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (conn_read(a) != 0)
                conn_close(a, "read");
        }
    }
    conn_close(a, "shutdown");
    pthread_mutex_lock(&a->lock);
    a->exited = 1;
    pthread_mutex_unlock(&a->lock);
    fail_pending(a, "shutdown");
    return NULL;
}

/* ---- provider interface ---- */

static int apns_send(void *impl, const pd_entry_t *e, pd_result_t *r)
{
    apns_t *a = impl;
    job_t j;
    memset(&j, 0, sizeof(j));
    j.e = e;
    j.r = r;
    j.retry_after_ms = -1;
    r->retry_after_ms = -1;
    if (!token_ok(e->token)) {
        pd_result_set(r, PD_R_INVALID, 0, "malformed_token");
        return 0;
    }
    pthread_cond_init(&j.cv, NULL);
    pthread_mutex_lock(&a->lock);
    if (a->exited) {
        pthread_mutex_unlock(&a->lock);
        pthread_cond_destroy(&j.cv);
        pd_result_set(r, PD_R_RETRY, 0, "shutdown");
        return 0;
    }
    if (a->pending_tail)
        a->pending_tail->next = &j;
    else
        a->pending_head = &j;
    a->pending_tail = &j;
    pthread_mutex_unlock(&a->lock);
    uint64_t one = 1;
    if (write(a->efd, &one, sizeof(one)) < 0) {
        /* eventfd writes only fail on overflow, and then the thread is awake anyway */
    }
    pthread_mutex_lock(&a->lock);
    while (!j.done)
        pthread_cond_wait(&j.cv, &a->lock);
    pthread_mutex_unlock(&a->lock);
    pthread_cond_destroy(&j.cv);
    return 0;
}

static void apns_shutdown(void *impl, int64_t grace_ms)
{
    apns_t *a = impl;
    pthread_mutex_lock(&a->lock);
    if (!a->stop) {
        a->stop = 1;
        a->abort_at_ms = pd_now_ms() + (grace_ms > 0 ? grace_ms : 1);
    }
    pthread_mutex_unlock(&a->lock);
    uint64_t one = 1;
    if (write(a->efd, &one, sizeof(one)) < 0) {
        /* see apns_send */
    }
}

static void apns_del(void *impl)
{
    apns_t *a = impl;
    if (!a)
        return;
    if (a->thread_started) {
        apns_shutdown(a, 1);
        pthread_join(a->thread, NULL);
    }
    if (a->efd >= 0)
        close(a->efd);
    EVP_PKEY_free(a->key);
    SSL_CTX_free(a->ctx);
    free(a->inflight);
    free(a->out);
    free(a->jwt);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

static int parse_url(apns_t *a, const char *url)
{
    const char *p = url;
    if (strncmp(p, "https://", 8) != 0)
        return -1;
    p += 8;
    size_t hl;
    const char *port = NULL;
    if (*p == '[') {
        const char *end = strchr(p, ']');
        if (!end)
            return -1;
        hl = (size_t)(end - p - 1);
        if (hl == 0 || hl >= sizeof(a->host))
            return -1;
        memcpy(a->host, p + 1, hl);
        a->host[hl] = '\0';
        p = end + 1;
    } else {
        hl = strcspn(p, ":/");
        if (hl == 0 || hl >= sizeof(a->host))
            return -1;
        memcpy(a->host, p, hl);
        a->host[hl] = '\0';
        p += hl;
    }
    if (*p == ':') {
        port = p + 1;
        size_t pl = strcspn(port, "/");
        if (pl == 0 || pl >= sizeof(a->port))
            return -1;
        memcpy(a->port, port, pl);
        a->port[pl] = '\0';
        p = port + pl;
    } else {
        strcpy(a->port, "443");
    }
    if (*p && strcmp(p, "/") != 0)
        return -1;
    int v6 = strchr(a->host, ':') != NULL;
    if (strcmp(a->port, "443") == 0)
        snprintf(a->authority, sizeof(a->authority), v6 ? "[%s]" : "%s", a->host);
    else
        snprintf(a->authority, sizeof(a->authority), v6 ? "[%s]:%s" : "%s:%s", a->host, a->port);
    return 0;
}

static int plain_field(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n > 0 && n < max && !strpbrk(s, "\"\\\r\n ");
}

int pd_apns_new(const pd_apns_opts_t *o, pd_provider_t **out)
{
    char *pem = NULL;
    size_t len = 0;
    apns_t *a = cm_xcalloc(1, sizeof(*a));
    a->fd = -1;
    a->efd = -1;
    pthread_mutex_init(&a->lock, NULL);
    if (!plain_field(o->key_id, sizeof(a->key_id)) ||
        !plain_field(o->team_id, sizeof(a->team_id)) || !plain_field(o->topic, sizeof(a->topic))) {
        CM_ERROR(NULL, "apns: --apns-key-id, --apns-team-id and --apns-topic are required");
        goto fail;
    }
    snprintf(a->key_id, sizeof(a->key_id), "%s", o->key_id);
    snprintf(a->team_id, sizeof(a->team_id), "%s", o->team_id);
    snprintf(a->topic, sizeof(a->topic), "%s", o->topic);
    if (parse_url(a, o->url && *o->url ? o->url : "https://api.push.apple.com") != 0) {
        CM_ERROR(NULL, "apns: --apns-url must be https://host[:port]");
        goto fail;
    }
    if (cm_config_read_file(o->key_file, 16 * 1024, &pem, &len) != 0) {
        CM_ERROR(NULL, "apns: cannot read the key file");
        goto fail;
    }
    a->key = pd_jwt_load_key(pem, len);
    OPENSSL_cleanse(pem, len);
    free(pem);
    if (!a->key || EVP_PKEY_get_base_id(a->key) != EVP_PKEY_EC) {
        CM_ERROR(NULL, "apns: the key file is not a P-256 private key");
        goto fail;
    }
    a->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
    a->jwt_refresh_ms = (o->jwt_refresh_s > 0 ? o->jwt_refresh_s : 3000) * 1000;
    a->ctx = SSL_CTX_new(TLS_client_method());
    if (!a->ctx)
        goto fail;
    SSL_CTX_set_min_proto_version(a->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(a->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(a->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (o->ca_file && *o->ca_file) {
        if (SSL_CTX_load_verify_locations(a->ctx, o->ca_file, NULL) != 1) {
            CM_ERROR(NULL, "apns: cannot load --ca-file");
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(a->ctx) != 1) {
        goto fail;
    }
    if (SSL_CTX_set_alpn_protos(a->ctx, (const unsigned char *)"\x02h2", 3) != 0)
        goto fail;
    a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->efd < 0)
        goto fail;
    a->prov = (pd_provider_t){.name = "apns",
                              .token_type = "com.apple.apns",
                              .send = apns_send,
                              .shutdown = apns_shutdown,
                              .del = apns_del,
                              .impl = a};
    if (pthread_create(&a->thread, NULL, conn_thread, a) != 0)
        goto fail;
    a->thread_started = 1;
    *out = &a->prov;
    return 0;
fail:
    apns_del(a);
    return -1;
}
