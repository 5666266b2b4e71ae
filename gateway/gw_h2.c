#include "gw_h2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <nghttp2/nghttp2.h>

#include "cm_alloc.h"
#include "cm_log.h"
#include "cm_metrics.h"

/* Output queued per connection before we stop asking nghttp2 for more (resumed by the write
 * callback once the socket took it): bounds memory for a client that does not read. */
#define OUT_HIGH_WATER (64 * 1024)

struct gw_h2 {
    nghttp2_session *s; /* owned */
    gw_conn_t *conn;
    int defer_flush; /* inside mem_recv or a scan: flush once at the end */
    int nresets;
    long long idle_since_ms;
};

static nghttp2_session_callbacks *g_cbs;
static nghttp2_option *g_opt;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static cm_counter_t *g_reset_floods;

static gw_req_t *stream_req(nghttp2_session *s, int32_t id)
{
    return nghttp2_session_get_stream_user_data(s, id);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    gw_conn_t *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    gw_req_t *r = gw_req_new(c, c->tls ? "h2" : "h2c");
    r->stream_id = f->hd.stream_id;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, r);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    gw_req_t *r = stream_req(s, f->hd.stream_id);
    if (!r || r->input_done)
        return 0; /* trailers are ignored */
    if (nlen && name[0] == ':') {
        r->hdr_bytes += nlen + vlen + 32;
        if (r->hdr_bytes > r->loop->cfg->max_header_bytes && !r->limit_err)
            r->limit_err = GW_ERR_HEADERS_TOO_LARGE;
        if (r->limit_err)
            return 0;
        if (nlen == 7 && memcmp(name, ":method", 7) == 0) {
            free(r->method);
            r->method = cm_xstrndup((const char *)value, vlen);
        } else if (nlen == 5 && memcmp(name, ":path", 5) == 0) {
            if (gw_req_set_target(r, (const char *)value, vlen) != 0)
                r->limit_err = GW_ERR_BAD_REQUEST;
        }
        return 0;
    }
    gw_req_store_header(r, (const char *)name, nlen, (const char *)value, vlen);
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    gw_req_t *r = stream_req(s, id);
    if (!r || r->dispatched)
        return 0;
    gw_req_append_body(r, data, len);
    if (r->limit_err)
        gw_req_dispatch(r); /* answers 413 (or 500) now; the rest of the body is discarded */
    return 0;
}

static void reset_flood(gw_conn_t *c)
{
    cm_counter_add(g_reset_floods, 1);
    CM_WARN(NULL, "h2: client reset more than %d streams, sending GOAWAY",
            c->loop->cfg->max_resets);
    nghttp2_session_terminate_session(c->h2->s, NGHTTP2_ENHANCE_YOUR_CALM);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    gw_conn_t *c = ud;
    gw_req_t *r;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        r = stream_req(s, f->hd.stream_id);
        if (!r || r->dispatched)
            break;
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            r->input_done = 1;
            gw_req_dispatch(r);
        } else if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
            r->has_body = 1;
            const char *cl = gw_req_header(r, "content-length");
            if (cl && strtoull(cl, NULL, 10) > r->loop->cfg->max_body)
                r->limit_err = GW_ERR_PAYLOAD_TOO_LARGE; /* refuse before reading the body */
            if (r->limit_err)
                gw_req_dispatch(r);
        }
        break;
    case NGHTTP2_DATA:
        r = stream_req(s, f->hd.stream_id);
        if (r && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            r->input_done = 1;
            gw_req_dispatch(r);
        }
        break;
    case NGHTTP2_RST_STREAM:
        /* CVE-2023-44487: nghttp2's token bucket limits the rate; this caps the total a
         * connection may make us start and abandon. */
        if (++c->h2->nresets == c->loop->cfg->max_resets + 1)
            reset_flood(c);
        break;
    default:
        break;
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
    gw_req_t *r = stream_req(s, id);
    if (r) {
        nghttp2_session_set_stream_user_data(s, id, NULL);
        gw_req_detach(r);
    }
    return 0;
}

static void init_once(void)
{
    nghttp2_session_callbacks_new(&g_cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(g_cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(g_cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(g_cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(g_cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(g_cbs, on_stream_close);
    nghttp2_option_new(&g_opt);
    /* The library defaults (reset token bucket 1000/33 s, 8 CONTINUATIONs, 1000 queued
     * ACKs) are the hardened ones; only the application limits are ours. */
    g_reset_floods = cm_metrics_counter("gateway_h2_reset_floods_total",
                                        "HTTP/2 connections closed for too many RST_STREAM", NULL);
}

int gw_h2_start(gw_conn_t *c)
{
    pthread_once(&g_once, init_once);
    gw_h2_t *h = cm_xcalloc(1, sizeof(*h));
    h->conn = c;
    h->idle_since_ms = gw_now_ms();
    if (nghttp2_session_server_new2(&h->s, g_cbs, c, g_opt) != 0) {
        free(h);
        return -1;
    }
    c->h2 = h;
    const gw_server_config_t *cfg = c->loop->cfg;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)cfg->max_concurrent_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)cfg->max_header_bytes},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 65535},
    };
    if (nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0)
        return -1;
    return 0;
}

void gw_h2_free(gw_conn_t *c)
{
    gw_h2_t *h = c->h2;
    if (!h)
        return;
    /* nghttp2_session_del does not report stream closes: detach our requests first. */
    while (c->reqs)
        gw_req_detach(c->reqs);
    nghttp2_session_del(h->s);
    free(h);
    c->h2 = NULL;
}

static void h2_flush(gw_conn_t *c)
{
    gw_h2_t *h = c->h2;
    if (c->dead || c->closing || c->lingering)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    while (evbuffer_get_length(out) < OUT_HIGH_WATER) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(h->s, &data);
        if (n < 0) {
            gw_conn_kill(c);
            return;
        }
        if (n == 0)
            break;
        evbuffer_add(out, data, (size_t)n);
    }
    if (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s))
        gw_conn_close_after_flush(c, 0);
}

void gw_h2_on_read(gw_conn_t *c)
{
    gw_h2_t *h = c->h2;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    h->defer_flush = 1;
    while (!c->dead && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        ssize_t n = nghttp2_session_mem_recv(h->s, v.iov_base, v.iov_len);
        if (n < 0) {
            /* Protocol error: nghttp2 queued a GOAWAY; send it, then close. */
            h->defer_flush = 0;
            h2_flush(c);
            gw_conn_close_after_flush(c, 0);
            return;
        }
        evbuffer_drain(in, (size_t)n);
    }
    h->defer_flush = 0;
    h2_flush(c);
}

void gw_h2_on_flushed(gw_conn_t *c)
{
    h2_flush(c);
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    gw_req_t *r = src->ptr;
    size_t n = r->rlen - r->roff;
    if (n > len)
        n = len;
    memcpy(buf, r->rbody + r->roff, n);
    r->roff += n;
    if (r->roff == r->rlen)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define NV(n, v, vl)                                                                               \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NONE                  \
    }

void gw_h2_respond(gw_req_t *r)
{
    gw_conn_t *c = r->conn;
    gw_h2_t *h = c->h2;
    char status[8], clen[24];
    snprintf(status, sizeof(status), "%d", r->status);
    int cl = snprintf(clen, sizeof(clen), "%zu", r->rlen);
    nghttp2_nv stack[16], *nva = stack;
    size_t cap = 3 + (size_t)r->nrhdrs, n = 0;
    if (cap > 16) {
        nva = cm_xcalloc(cap, sizeof(*nva));
    }
    nva[n++] = (nghttp2_nv)NV(":status", status, strlen(status));
    if (r->rctype)
        nva[n++] = (nghttp2_nv)NV("content-type", r->rctype, strlen(r->rctype));
    nva[n++] = (nghttp2_nv)NV("content-length", clen, (size_t)cl);
    for (int i = 0; i < r->nrhdrs; i++) {
        const char *nm = r->rhdrs[i].name;
        /* connection-specific headers are illegal in HTTP/2 */
        if (!strcmp(nm, "connection") || !strcmp(nm, "content-length") ||
            !strcmp(nm, "keep-alive") || !strcmp(nm, "transfer-encoding"))
            continue;
        nva[n++] = (nghttp2_nv){(uint8_t *)nm, (uint8_t *)r->rhdrs[i].value, strlen(nm),
                                strlen(r->rhdrs[i].value), NGHTTP2_NV_FLAG_NONE};
    }
    nghttp2_data_provider prd = {.source.ptr = r, .read_callback = read_body};
    int body = r->rlen && strcmp(r->method ? r->method : "", "HEAD") != 0;
    int rv = nghttp2_submit_response(h->s, r->stream_id, nva, n, body ? &prd : NULL);
    if (nva != stack)
        free(nva);
    if (rv != 0) {
        nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, r->stream_id, NGHTTP2_INTERNAL_ERROR);
    }
    if (!h->defer_flush)
        h2_flush(c);
}

void gw_h2_drain(gw_conn_t *c)
{
    gw_h2_t *h = c->h2;
    /* Streams up to the last one we saw finish; newer ones are refused (the client may
     * retry them elsewhere). */
    nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->s),
                          NGHTTP2_NO_ERROR, NULL, 0);
    if (!h->defer_flush)
        h2_flush(c);
}

void gw_h2_tick(gw_conn_t *c, long long now)
{
    gw_h2_t *h = c->h2;
    const gw_server_config_t *cfg = c->loop->cfg;
    if (c->closing) {
        if (now - c->closing_ms >= cfg->request_timeout_ms)
            gw_conn_kill(c);
        return;
    }
    h->defer_flush = 1;
    gw_req_t *next;
    int open = 0;
    for (gw_req_t *r = c->reqs; r && !c->dead; r = next) {
        next = r->cnext;
        open++;
        if (!r->dispatched && now - r->start_us / 1000 >= cfg->request_timeout_ms) {
            r->limit_err = GW_ERR_REQUEST_TIMEOUT; /* slow headers or body */
            gw_req_dispatch(r);
        } else if (r->responded && !r->input_done &&
                   now - r->responded_ms >= cfg->request_timeout_ms) {
            /* Answered early (413, 408, 431) and the client still sends: the rest of the
             * body is discarded for a while so the client can read the answer (an immediate
             * RST_STREAM makes curl drop it), then the stream is reset. */
            r->input_done = 1;
            nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, r->stream_id, NGHTTP2_NO_ERROR);
        } else if (r->responded && now - r->responded_ms >= cfg->idle_timeout_ms) {
            /* The client does not read its response (zero window): give up on it. */
            gw_conn_kill(c);
        }
    }
    h->defer_flush = 0;
    if (c->dead)
        return;
    if (open == 0) {
        long long since = c->active_ms;
        if (now - since >= cfg->idle_timeout_ms)
            nghttp2_session_terminate_session(h->s, NGHTTP2_NO_ERROR);
    }
    h2_flush(c);
}
