#include "cm_alloc.h"
#include "cm_admin.h"
#include "cm_config.h"

#include "cm_log.h"
#include "cm_metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

struct cm_admin {
    struct event_base *base; /* owned; used only by the admin thread once it runs */
    struct evhttp *http;     /* owned */
    struct event *wake_ev;   /* owned; read side of |wake| */
    int wake[2];             /* owned pipe: cm_admin_stop writes, the loop breaks */
    pthread_t thread;
    int thread_started;
    int (*ready)(void *arg);
    void *arg;
};

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *ctype,
                       const char *body, size_t len)
{
    struct evkeyvalq *hdrs = evhttp_request_get_output_headers(req);
    evhttp_add_header(hdrs, "Content-Type", ctype);
    evhttp_add_header(hdrs, "Cache-Control", "no-store");
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    /* evhttp 2.1 would send the body to a HEAD request too; a HEAD reply carries only the
     * headers (with the length a GET would get). */
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        char cl[32];
        snprintf(cl, sizeof(cl), "%zu", len);
        evhttp_add_header(hdrs, "Content-Length", cl);
    } else {
        evbuffer_add(b, body, len);
    }
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    cm_admin_t *a = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evhttp_uri *parsed = evhttp_uri_parse(uri);
    const char *path = parsed ? evhttp_uri_get_path(parsed) : NULL;
    const char *text = "text/plain; charset=utf-8";

    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply_text(req, 405, "Method Not Allowed", text, "method not allowed\n", 19);
    } else if (!path) {
        reply_text(req, HTTP_BADREQUEST, "Bad Request", text, "bad request\n", 12);
    } else if (strcmp(path, "/metrics") == 0) {
        size_t len = 0;
        char *body = cm_metrics_render(&len);
        if (body)
            reply_text(req, HTTP_OK, "OK", "text/plain; version=0.0.4; charset=utf-8", body, len);
        else
            reply_text(req, HTTP_INTERNAL, "Internal Server Error", text, "error\n", 6);
        free(body);
    } else if (strcmp(path, "/healthz") == 0) {
        reply_text(req, HTTP_OK, "OK", text, "ok\n", 3);
    } else if (strcmp(path, "/readyz") == 0) {
        if (!a->ready || a->ready(a->arg) == 1)
            reply_text(req, HTTP_OK, "OK", text, "ready\n", 6);
        else
            reply_text(req, 503, "Service Unavailable", text, "not ready\n", 10);
    } else {
        reply_text(req, HTTP_NOTFOUND, "Not Found", text, "not found\n", 10);
    }
    if (parsed)
        evhttp_uri_free(parsed);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    cm_admin_t *a = arg;
    event_base_loopbreak(a->base);
}

static void *admin_thread(void *arg)
{
    cm_admin_t *a = arg;
    event_base_dispatch(a->base);
    return NULL;
}

static void admin_free(cm_admin_t *a)
{
    if (a->http)
        evhttp_free(a->http);
    if (a->wake_ev)
        event_free(a->wake_ev);
    if (a->base)
        event_base_free(a->base);
    for (int i = 0; i < 2; i++) {
        if (a->wake[i] >= 0)
            close(a->wake[i]);
    }
    free(a);
}

int cm_admin_start(const char *listen, int (*ready)(void *arg), void *arg, cm_admin_t **out,
                   int *port)
{
    char host[256];
    int p;
    *out = NULL;
    if (cm_config_split_listen(listen, host, sizeof(host), &p) != 0) {
        CM_ERROR(NULL, "admin: bad listen address '%s' (want host:port)", listen ? listen : "");
        return -1;
    }
    cm_admin_t *a = cm_xcalloc(1, sizeof(*a));
    a->wake[0] = a->wake[1] = -1;
    a->ready = ready;
    a->arg = arg;

    /* A self-pipe rather than event_base_loopbreak from another thread: that would need
     * evthread_use_pthreads(), a process-wide libevent setting that is not ours to make. */
    if (pipe2(a->wake, O_CLOEXEC | O_NONBLOCK) != 0)
        goto fail;
    if (!(a->base = event_base_new()))
        goto fail;
    if (!(a->wake_ev = event_new(a->base, a->wake[0], EV_READ, on_wake, a)) ||
        event_add(a->wake_ev, NULL) != 0)
        goto fail;
    if (!(a->http = evhttp_new(a->base)))
        goto fail;
    /* Scrapers and probes send tiny requests; anything big or slow is not one of them. */
    /* Every method reaches on_request so that others get a proper 405, not evhttp's 501. */
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                            EVHTTP_REQ_OPTIONS);
    evhttp_set_max_headers_size(a->http, 8192);
    evhttp_set_max_body_size(a->http, 1024);
    evhttp_set_timeout(a->http, 10);
    evhttp_set_gencb(a->http, on_request, a);

    errno = 0;
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(a->http, host, (uint16_t)p);
    if (!bs) {
        CM_ERROR(NULL, "admin: cannot listen on %s: %s", listen,
                 errno ? strerror(errno) : "address not resolvable");
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl) != 0)
        goto fail;
    int bound = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&ss)->sin_port);

    if (pthread_create(&a->thread, NULL, admin_thread, a) != 0)
        goto fail;
    a->thread_started = 1;
    if (port)
        *port = bound;
    *out = a;
    return 0;
fail:
    admin_free(a);
    return -1;
}

void cm_admin_stop(cm_admin_t *a)
{
    if (!a)
        return;
    if (a->thread_started) {
        ssize_t w;
        do {
            w = write(a->wake[1], "x", 1);
        } while (w < 0 && errno == EINTR);
        pthread_join(a->thread, NULL);
    }
    admin_free(a);
}
