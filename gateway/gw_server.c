#include "gw_server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/thread.h>
#include <openssl/rand.h>

#include "cm_alloc.h"
#include "cm_config.h"
#include "cm_log.h"
#include "cm_metrics.h"
#include "cm_time.h"
#include "gw_int.h"
#include "gw_tls.h"

/* Period of the timeout scan: timeouts fire up to this late, which is fine for limits
 * measured in seconds, and one timer per loop is cheaper than one per connection. */
#define TICK_MS 200
/* How long a closing HTTP/1.1 connection keeps discarding input so that the peer reads the
 * response (e.g. a 413 while it still sends the body) instead of a TCP reset. */
#define LINGER_MS 2000
/* Input that an HTTP/1.1 connection buffers while its request is with the API; beyond, the
 * socket is not read (back-pressure on pipelining). HTTP/2 always consumes its input. */
#define READ_HIGH_WATER (256 * 1024)

struct gw_server {
    gw_server_config_t cfg; /* strings not owned (config lives for the process) */
    SSL_CTX *ssl_ctx;       /* owned; NULL without TLS */
    int nloops;
    gw_loop_t **loops; /* owned */
    int http_port, https_port;
    atomic_int nconns;
    atomic_int draining;
    cm_gauge_t *g_conns;
    cm_counter_t *c_rejected;
};

static const char H2_PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN 24

static cm_gauge_t *g_conns_detached;

long long gw_now_ms(void)
{
    return cm_time_mono_ms();
}

long long gw_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- connections --------------------------------------------------------------------------- */

static void conn_free(gw_conn_t *c)
{
    gw_loop_t *l = c->loop;
    if (c->proto == GW_PROTO_H2)
        gw_h2_free(c);
    else if (c->proto == GW_PROTO_H1)
        gw_h1_free(c);
    while (c->reqs)
        gw_req_detach(c->reqs);
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    bufferevent_free(c->bev);
    if (l->srv) {
        atomic_fetch_sub(&l->srv->nconns, 1);
        cm_gauge_add(l->srv->g_conns, -1);
    } else {
        cm_gauge_add(g_conns_detached, -1);
    }
    free(c);
}

void gw_conn_enter(gw_conn_t *c)
{
    c->depth++;
}

void gw_conn_leave(gw_conn_t *c)
{
    if (--c->depth == 0 && c->dead)
        conn_free(c);
}

void gw_conn_kill(gw_conn_t *c)
{
    if (c->dead)
        return;
    c->dead = 1;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    if (c->depth == 0)
        conn_free(c);
}

static void finish_close(gw_conn_t *c)
{
    if (!c->lingering && c->closing == 2) {
        /* Half-close: the peer gets EOF after the response; we read and drop what it still
         * sends for a while, then close for good. */
        c->lingering = 1;
        c->linger_until_ms = gw_now_ms() + LINGER_MS;
        shutdown(bufferevent_getfd(c->bev), SHUT_WR);
        evbuffer_drain(bufferevent_get_input(c->bev),
                       evbuffer_get_length(bufferevent_get_input(c->bev)));
        bufferevent_enable(c->bev, EV_READ);
        return;
    }
    gw_conn_kill(c);
}

void gw_conn_close_after_flush(gw_conn_t *c, int linger)
{
    if (c->dead || c->closing || c->lingering)
        return;
    c->closing = linger ? 2 : 1;
    c->closing_ms = gw_now_ms();
    if (!linger)
        bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        finish_close(c);
}

static int start_proto(gw_conn_t *c, gw_proto_t p)
{
    c->proto = p;
    return p == GW_PROTO_H2 ? gw_h2_start(c) : gw_h1_start(c);
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    gw_conn_t *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    gw_conn_enter(c);
    c->active_ms = gw_now_ms();
    if (c->lingering || c->closing || c->dead) {
        evbuffer_drain(in, evbuffer_get_length(in));
        goto out;
    }
    if (c->proto == GW_PROTO_NONE) {
        gw_proto_t p;
        if (c->tls) {
            p = gw_tls_is_h2(bufferevent_openssl_get_ssl(bev)) ? GW_PROTO_H2 : GW_PROTO_H1;
        } else {
            /* h2c with prior knowledge starts with the fixed client preface; anything else on
             * the cleartext port is HTTP/1.1. */
            size_t n = evbuffer_get_length(in);
            size_t k = n < H2_PREFACE_LEN ? n : H2_PREFACE_LEN;
            const unsigned char *d = evbuffer_pullup(in, (ev_ssize_t)k);
            if (memcmp(d, H2_PREFACE, k) != 0)
                p = GW_PROTO_H1;
            else if (k == H2_PREFACE_LEN)
                p = GW_PROTO_H2;
            else
                goto out; /* wait for the rest of the preface */
        }
        if (start_proto(c, p) != 0) {
            gw_conn_kill(c);
            goto out;
        }
    }
    if (c->proto == GW_PROTO_H2)
        gw_h2_on_read(c);
    else
        gw_h1_on_read(c);
out:
    gw_conn_leave(c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    gw_conn_t *c = arg;
    gw_conn_enter(c);
    if (!c->dead && !c->closing && !c->lingering) {
        if (c->proto == GW_PROTO_H2)
            gw_h2_on_flushed(c);
        else if (c->proto == GW_PROTO_H1)
            gw_h1_on_flushed(c);
    }
    if (!c->dead && c->closing && !c->lingering &&
        evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        finish_close(c);
    gw_conn_leave(c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    gw_conn_t *c = arg;
    if (what & BEV_EVENT_CONNECTED)
        return; /* TLS handshake done; the protocol is chosen on the first read */
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        gw_conn_enter(c);
        gw_conn_kill(c);
        gw_conn_leave(c);
    }
}

gw_conn_t *gw_conn_adopt(gw_loop_t *l, struct bufferevent *bev, int tls)
{
    gw_conn_t *c = cm_xcalloc(1, sizeof(*c));
    c->loop = l;
    c->bev = bev;
    c->tls = tls;
    c->created_ms = c->active_ms = gw_now_ms();
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    if (l->srv)
        cm_gauge_add(l->srv->g_conns, 1);
    else
        cm_gauge_add(g_conns_detached, 1);
    bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_setwatermark(bev, EV_READ, 0, READ_HIGH_WATER);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    return c;
}

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    gw_loop_t *l = arg;
    gw_server_t *s = l->srv;
    int tls = lis == l->lis[1];
    if (atomic_fetch_add(&s->nconns, 1) >= s->cfg.max_connections || l->draining) {
        /* Over the cap: accepting and closing at once is cheaper for everyone than leaving
         * the client in the backlog until it times out. */
        atomic_fetch_sub(&s->nconns, 1);
        cm_counter_add(s->c_rejected, 1);
        evutil_closesocket(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct bufferevent *bev;
    if (tls) {
        SSL *ssl = SSL_new(s->ssl_ctx);
        if (!ssl) {
            atomic_fetch_sub(&s->nconns, 1);
            evutil_closesocket(fd);
            return;
        }
        bev = bufferevent_openssl_socket_new(l->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE);
        if (bev)
            bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
        else
            SSL_free(ssl);
    } else {
        bev = bufferevent_socket_new(l->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!bev) {
        atomic_fetch_sub(&s->nconns, 1);
        evutil_closesocket(fd);
        return;
    }
    gw_conn_t *c = gw_conn_adopt(l, bev, tls);
    if (!c)
        atomic_fetch_sub(&s->nconns, 1);
    else if (salen > 0 && (size_t)salen <= sizeof(c->peer))
        memcpy(&c->peer, sa, (size_t)salen);
}

/* ---- loops ---------------------------------------------------------------------------------- */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_loop_t *l = arg;
    long long now = gw_now_ms();
    const gw_server_config_t *cfg = l->cfg;
    gw_conn_t *next;
    for (gw_conn_t *c = l->conns; c; c = next) {
        gw_conn_enter(c);
        if (c->dead) {
            /* nothing */
        } else if (c->lingering) {
            if (now >= c->linger_until_ms)
                gw_conn_kill(c);
        } else if (c->proto == GW_PROTO_NONE) {
            /* TLS handshake or preface not done: a slowloris that never starts gets only the
             * request timeout. */
            if (now - c->created_ms >= cfg->request_timeout_ms)
                gw_conn_kill(c);
        } else if (c->proto == GW_PROTO_H2) {
            gw_h2_tick(c, now);
        } else {
            gw_h1_tick(c, now);
        }
        next = c->next;
        gw_conn_leave(c);
    }
}

static void post_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_loop_t *l = arg;
    pthread_mutex_lock(&l->mu);
    gw_post_t *p = l->post_head;
    l->post_head = l->post_tail = NULL;
    pthread_mutex_unlock(&l->mu);
    while (p) {
        gw_post_t *next = p->next;
        p->fn(p->arg);
        if (p->req) {
            atomic_fetch_sub(&p->req->npost, 1);
            gw_req_maybe_free(p->req);
        }
        free(p);
        p = next;
    }
}

static gw_post_t *post_new(gw_req_t *r, void (*fn)(void *), void *arg)
{
    gw_post_t *p = cm_xmalloc(sizeof(*p));
    *p = (gw_post_t){.req = r, .fn = fn, .arg = arg};
    return p;
}

int gw_loop_post_req(gw_loop_t *l, gw_req_t *r, void (*fn)(void *), void *arg)
{
    gw_post_t *p = post_new(r, fn, arg);
    if (!p)
        return -1;
    pthread_mutex_lock(&l->mu);
    if (l->closed) {
        pthread_mutex_unlock(&l->mu);
        free(p);
        return -1;
    }
    int was_empty = l->post_head == NULL;
    if (l->post_tail)
        l->post_tail->next = p;
    else
        l->post_head = p;
    l->post_tail = p;
    /* Only the first post of a batch wakes the loop: post_cb takes the whole queue under |mu|,
     * so a non-empty queue means an activation is already pending. Under load this saves
     * libevent's lock and notify work for every backend completion but the first. Under the
     * lock: the loop cannot be closed and freed between the check and this. */
    if (was_empty)
        event_active(l->post_ev, EV_READ, 0);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

/* A zero timeout fires after the events already active in this iteration: what they deferred
 * runs once they are all handled. */
static void defer_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_loop_t *l = arg;
    (void)fd;
    (void)what;
    while (l->defer_head) {
        gw_post_t *p = l->defer_head;
        l->defer_head = l->defer_tail = NULL;
        while (p) {
            gw_post_t *next = p->next;
            p->fn(p->arg);
            if (p->req) {
                atomic_fetch_sub(&p->req->npost, 1);
                gw_req_maybe_free(p->req);
            }
            free(p);
            p = next;
        }
    }
}

int gw_loop_defer_req(gw_loop_t *l, gw_req_t *r, void (*fn)(void *), void *arg)
{
    gw_post_t *p = l->closed ? NULL : post_new(r, fn, arg);
    if (!p)
        return -1;
    if (l->defer_tail) {
        l->defer_tail->next = p;
    } else {
        l->defer_head = p;
        static const struct timeval zero = {0, 0};
        event_add(l->defer_ev, &zero);
    }
    l->defer_tail = p;
    return 0;
}

int gw_loop_post(gw_loop_t *l, void (*fn)(void *), void *arg)
{
    return gw_loop_post_req(l, NULL, fn, arg);
}

int gw_loop_defer(gw_loop_t *l, void (*fn)(void *), void *arg)
{
    return gw_loop_defer_req(l, NULL, fn, arg);
}

static gw_loop_t *loop_new(gw_server_t *s, const gw_server_config_t *cfg, int idx)
{
    gw_loop_t *l = cm_xcalloc(1, sizeof(*l));
    l->srv = s;
    l->cfg = cfg;
    l->idx = idx;
    pthread_mutex_init(&l->mu, NULL);
    l->base = event_base_new();
    if (!l->base)
        goto fail;
    l->post_ev = event_new(l->base, -1, 0, post_cb, l);
    l->tick_ev = event_new(l->base, -1, EV_PERSIST, tick_cb, l);
    l->defer_ev = event_new(l->base, -1, 0, defer_cb, l);
    if (!l->post_ev || !l->tick_ev || !l->defer_ev)
        goto fail;
    struct timeval tv = {0, TICK_MS * 1000};
    event_add(l->tick_ev, &tv);
    if (RAND_bytes((unsigned char *)&l->rid_prefix, sizeof(l->rid_prefix)) != 1)
        l->rid_prefix = (uint32_t)gw_now_us() ^ ((uint32_t)idx << 24);
    return l;
fail:
    if (l->post_ev)
        event_free(l->post_ev);
    if (l->tick_ev)
        event_free(l->tick_ev);
    if (l->defer_ev)
        event_free(l->defer_ev);
    if (l->base)
        event_base_free(l->base);
    pthread_mutex_destroy(&l->mu);
    free(l);
    return NULL;
}

/* Runs the posts still queued when the loop stopped (they were accepted, so they must run),
 * then refuses new ones. */
static void loop_close_queue(gw_loop_t *l)
{
    for (;;) {
        defer_cb(-1, 0, l);
        pthread_mutex_lock(&l->mu);
        gw_post_t *p = l->post_head;
        if (!p && !l->defer_head)
            l->closed = 1;
        pthread_mutex_unlock(&l->mu);
        if (l->closed)
            return;
        post_cb(-1, 0, l);
    }
}

static void loop_free(gw_loop_t *l)
{
    loop_close_queue(l);
    gw_conn_t *next;
    for (gw_conn_t *c = l->conns; c; c = next) {
        next = c->next;
        gw_conn_kill(c);
    }
    for (int i = 0; i < 2; i++)
        if (l->lis[i])
            evconnlistener_free(l->lis[i]);
    event_free(l->post_ev);
    event_free(l->tick_ev);
    event_free(l->defer_ev);
    event_base_free(l->base);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* A detached loop with the copy of its configuration it points to. */
typedef struct {
    gw_loop_t *loop; /* owned */
    gw_server_config_t cfg;
} detached_t;

gw_loop_t *gw_loop_new_detached(const gw_server_config_t *cfg)
{
    if (!g_conns_detached)
        g_conns_detached = cm_metrics_gauge("gateway_test_connections", "test loops", NULL);
    detached_t *d = cm_xcalloc(1, sizeof(*d));
    d->cfg = *cfg;
    d->loop = loop_new(NULL, &d->cfg, 0);
    if (!d->loop) {
        free(d);
        return NULL;
    }
    d->loop->detached = d;
    return d->loop;
}

void gw_loop_free_detached(gw_loop_t *l)
{
    detached_t *d = l->detached;
    loop_free(l);
    free(d);
}

void gw_loop_run_once(gw_loop_t *l, int block)
{
    event_base_loop(l->base, EVLOOP_ONCE | (block ? 0 : EVLOOP_NONBLOCK));
}

static void *loop_thread(void *arg)
{
    gw_loop_t *l = arg;
    event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY);
    loop_close_queue(l);
    return NULL;
}

static void loop_break(void *arg)
{
    gw_loop_t *l = arg;
    event_base_loopbreak(l->base);
}

static void loop_drain(void *arg)
{
    gw_loop_t *l = arg;
    l->draining = 1;
    for (int i = 0; i < 2; i++) {
        if (l->lis[i]) {
            evconnlistener_free(l->lis[i]);
            l->lis[i] = NULL;
        }
    }
    gw_conn_t *next;
    for (gw_conn_t *c = l->conns; c; c = next) {
        gw_conn_enter(c);
        if (c->dead || c->closing || c->lingering)
            ;
        else if (c->proto == GW_PROTO_H2)
            gw_h2_drain(c);
        else if (c->proto == GW_PROTO_H1)
            gw_h1_drain(c);
        else
            gw_conn_kill(c);
        next = c->next;
        gw_conn_leave(c);
    }
}

static void loop_force_close(void *arg)
{
    gw_loop_t *l = arg;
    gw_conn_t *next;
    for (gw_conn_t *c = l->conns; c; c = next) {
        next = c->next;
        gw_conn_kill(c);
    }
}

/* ---- listeners ------------------------------------------------------------------------------ */

/* Binds |n| SO_REUSEPORT listening sockets on |listen| (the kernel spreads connections over
 * them by hash, one per loop). Port 0 picks a free port for the first one. */
static int bind_listeners(const char *addr, int n, int *fds, int *bound_port)
{
    char host[256], port[16];
    struct addrinfo hints = {0}, *ai = NULL;
    for (int i = 0; i < n; i++)
        fds[i] = -1;
    int portnum;
    if (cm_config_split_listen(addr, host, sizeof(host), &portnum) != 0) {
        CM_ERROR(NULL, "bad listen address %s (want host:port)", addr);
        return -1;
    }
    snprintf(port, sizeof(port), "%d", portnum);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (getaddrinfo(host[0] ? host : NULL, port, &hints, &ai) != 0 || !ai) {
        CM_ERROR(NULL, "cannot resolve listen address %s", addr);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sslen = (socklen_t)ai->ai_addrlen;
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    int family = ai->ai_family;
    freeaddrinfo(ai);

    /* SO_REUSEPORT would let a second process with our uid share a fixed port silently; a
     * plain bind first makes "address in use" fail loudly as usual. */
    if (atoi(port) != 0) {
        int probe = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (probe < 0 || bind(probe, (struct sockaddr *)&ss, sslen) != 0) {
            CM_ERROR(NULL, "cannot bind %s: %s", addr, strerror(errno));
            if (probe >= 0)
                close(probe);
            return -1;
        }
        close(probe);
    }
    for (int i = 0; i < n; i++) {
        int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int one = 1;
        if (fd < 0)
            goto fail;
        fds[i] = fd;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, 1024) != 0) {
            CM_ERROR(NULL, "cannot bind %s: %s", addr, strerror(errno));
            goto fail;
        }
        if (i == 0) {
            /* The others must join the port the first one got. */
            socklen_t len = sizeof(ss);
            getsockname(fd, (struct sockaddr *)&ss, &len);
            sslen = len;
            *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                         : ((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    return 0;
fail:
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return -1;
}

/* ---- server --------------------------------------------------------------------------------- */

int gw_server_new(const gw_server_config_t *cfg, gw_server_t **out)
{
    gw_server_t *s = cm_xcalloc(1, sizeof(*s));
    int *fds = NULL;
    s->cfg = *cfg;
    if (s->cfg.threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        s->cfg.threads = n > 0 ? (int)n : 1;
    }
    if (s->cfg.max_connections <= 0)
        s->cfg.max_connections = 1;
    s->g_conns = cm_metrics_gauge("gateway_open_connections", "Open client connections", NULL);
    s->c_rejected = cm_metrics_counter("gateway_connections_rejected_total",
                                       "Connections closed at accept (over the cap)", NULL);
    int want_tls = (cfg->tls_cert && *cfg->tls_cert) || (cfg->tls_key && *cfg->tls_key);
    if (want_tls) {
        if (!cfg->tls_cert || !*cfg->tls_cert || !cfg->tls_key || !*cfg->tls_key) {
            CM_ERROR(NULL, "--tls-cert and --tls-key go together");
            goto fail;
        }
        if (!cfg->https_listen || !*cfg->https_listen) {
            CM_ERROR(NULL, "TLS certificate given but --https-listen is empty");
            goto fail;
        }
        if (gw_tls_ctx_new(cfg->tls_cert, cfg->tls_key, &s->ssl_ctx) != 0)
            goto fail;
    }
    s->nloops = s->cfg.threads;
    s->loops = cm_xcalloc((size_t)s->nloops, sizeof(*s->loops));
    fds = cm_xcalloc((size_t)s->nloops, sizeof(int));
    for (int i = 0; i < s->nloops; i++) {
        s->loops[i] = loop_new(s, &s->cfg, i);
        if (!s->loops[i])
            goto fail;
    }
    for (int k = 0; k < 2; k++) {
        const char *addr = k == 0 ? cfg->http_listen : cfg->https_listen;
        if (!addr || !*addr || (k == 1 && !s->ssl_ctx))
            continue;
        int *port = k == 0 ? &s->http_port : &s->https_port;
        if (bind_listeners(addr, s->nloops, fds, port) != 0)
            goto fail;
        for (int i = 0; i < s->nloops; i++) {
            gw_loop_t *l = s->loops[i];
            l->lis[k] = evconnlistener_new(
                l->base, accept_cb, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fds[i]);
            if (!l->lis[k]) {
                for (int j = i; j < s->nloops; j++)
                    close(fds[j]);
                goto fail;
            }
        }
    }
    if (!s->http_port && !s->https_port) {
        CM_ERROR(NULL, "no listener configured");
        goto fail;
    }
    free(fds);
    *out = s;
    return 0;
fail:
    free(fds);
    gw_server_free(s);
    return -1;
}

int gw_server_http_port(const gw_server_t *s)
{
    return s->http_port;
}

int gw_server_https_port(const gw_server_t *s)
{
    return s->https_port;
}

int gw_server_threads(const gw_server_t *s)
{
    return s->nloops;
}

int gw_server_start(gw_server_t *s)
{
    for (int i = 0; i < s->nloops; i++) {
        gw_loop_t *l = s->loops[i];
        if (pthread_create(&l->thread, NULL, loop_thread, l) != 0) {
            CM_ERROR(NULL, "cannot start loop thread");
            return -1;
        }
        l->thread_started = 1;
    }
    return 0;
}

int gw_server_accepting(const gw_server_t *s)
{
    return !atomic_load(&((gw_server_t *)s)->draining);
}

static int wait_conns(gw_server_t *s, long long deadline)
{
    while (atomic_load(&s->nconns) > 0) {
        if (gw_now_ms() >= deadline)
            return -1;
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

int gw_server_drain(gw_server_t *s, int timeout_ms)
{
    atomic_store(&s->draining, 1);
    for (int i = 0; i < s->nloops; i++)
        gw_loop_post(s->loops[i], loop_drain, s->loops[i]);
    if (wait_conns(s, gw_now_ms() + timeout_ms) == 0)
        return 0;
    CM_WARN(NULL, "drain timeout: closing %d connections", atomic_load(&s->nconns));
    for (int i = 0; i < s->nloops; i++)
        gw_loop_post(s->loops[i], loop_force_close, s->loops[i]);
    wait_conns(s, gw_now_ms() + 1000);
    return 1;
}

void gw_server_free(gw_server_t *s)
{
    if (!s)
        return;
    for (int i = 0; s->loops && i < s->nloops; i++) {
        gw_loop_t *l = s->loops[i];
        if (l && l->thread_started) {
            gw_loop_post(l, loop_break, l);
            pthread_join(l->thread, NULL);
        }
    }
    for (int i = 0; s->loops && i < s->nloops; i++)
        if (s->loops[i])
            loop_free(s->loops[i]);
    free(s->loops);
    if (s->ssl_ctx)
        SSL_CTX_free(s->ssl_ctx);
    free(s);
}
