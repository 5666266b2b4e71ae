#include "gw_h1.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <http_parser.h>

#include "cm_alloc.h"

/* Buffered responses beyond which pipelined requests wait (see h1_process). */
#define OUT_HIGH_WATER (256 * 1024)

struct gw_h1 {
    http_parser parser;
    gw_conn_t *conn;
    gw_req_t *cur; /* request being parsed or with the API; attached to conn */
    int ready;     /* cur fully received, not yet dispatched */
    int waiting;   /* cur dispatched, no response yet */
    int keepalive; /* of cur */
    int processing;
    int draining;
    gw_err_t error; /* set by a callback that aborted the parse */
    long long idle_since_ms;
    /* header field/value being accumulated (http-parser may deliver them in pieces) */
    char *hn, *hv, *url; /* owned */
    size_t hnlen, hncap, hvlen, hvcap, ulen, ucap;
    int in_value;
};

static int append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 64;
        while (c < *len + n + 1)
            c *= 2;
        *buf = cm_xrealloc(*buf, c); /* bounded by --max-header-bytes (head_too_big) */
        *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = 0;
    return 0;
}

static gw_h1_t *H(http_parser *p)
{
    return p->data;
}

/* Bytes of the head so far, to stop a slow or huge head before it is all buffered. */
static int head_too_big(gw_h1_t *h)
{
    const gw_server_config_t *cfg = h->conn->loop->cfg;
    return h->cur->hdr_bytes + h->ulen + h->hnlen + h->hvlen > cfg->max_header_bytes;
}

static int on_message_begin(http_parser *p)
{
    gw_h1_t *h = H(p);
    h->cur = gw_req_new(h->conn, "http/1.1");
    h->ulen = h->hnlen = h->hvlen = 0;
    h->in_value = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    gw_h1_t *h = H(p);
    append(&h->url, &h->ulen, &h->ucap, at, len);
    if (head_too_big(h)) {
        h->error = GW_ERR_HEADERS_TOO_LARGE;
        return 1;
    }
    return 0;
}

static void commit_header(gw_h1_t *h)
{
    /* http-parser drops leading whitespace of a value but keeps trailing (RFC 9110 OWS) */
    while (h->hvlen && (h->hv[h->hvlen - 1] == ' ' || h->hv[h->hvlen - 1] == '\t'))
        h->hvlen--;
    if (h->hnlen)
        gw_req_store_header(h->cur, h->hn, h->hnlen, h->hv ? h->hv : "", h->hvlen);
    h->hnlen = h->hvlen = 0;
    h->in_value = 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    gw_h1_t *h = H(p);
    if (h->in_value)
        commit_header(h);
    append(&h->hn, &h->hnlen, &h->hncap, at, len);
    if (h->cur->limit_err || head_too_big(h)) {
        h->error = GW_ERR_HEADERS_TOO_LARGE;
        return 1;
    }
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    gw_h1_t *h = H(p);
    h->in_value = 1;
    append(&h->hv, &h->hvlen, &h->hvcap, at, len);
    if (head_too_big(h)) {
        h->error = GW_ERR_HEADERS_TOO_LARGE;
        return 1;
    }
    return 0;
}

static int set_target(gw_req_t *r, const char *url, size_t len)
{
    if (len && url[0] == '/')
        return gw_req_set_target(r, url, len);
    /* absolute-form (proxies): keep path and query only */
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(url, len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH)))
        return -1;
    size_t off = u.field_data[UF_PATH].off;
    return gw_req_set_target(r, url + off, len - off);
}

static int on_headers_complete(http_parser *p)
{
    gw_h1_t *h = H(p);
    gw_req_t *r = h->cur;
    const gw_server_config_t *cfg = h->conn->loop->cfg;
    commit_header(h);
    if (r->limit_err) {
        h->error = r->limit_err;
        return -1;
    }
    const char *m = http_method_str((enum http_method)p->method);
    r->method = cm_xstrdup(m);
    if (set_target(r, h->url ? h->url : "", h->ulen) != 0) {
        h->error = GW_ERR_BAD_REQUEST;
        return -1;
    }
    int chunked = (p->flags & F_CHUNKED) != 0;
    int has_cl = p->content_length != ULLONG_MAX;
    if (has_cl && p->content_length > cfg->max_body) {
        /* Refuse before reading a byte of it. */
        h->error = GW_ERR_PAYLOAD_TOO_LARGE;
        return -1;
    }
    r->has_body = chunked || (has_cl && p->content_length > 0);
    const char *expect = gw_req_header(r, "expect");
    if (r->has_body && expect && strcasecmp(expect, "100-continue") == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        evbuffer_add(bufferevent_get_output(h->conn->bev), cont, sizeof(cont) - 1);
    }
    /* Upgrade (h2c, websocket) and CONNECT are not supported: the request is served as a
     * plain one and the connection closed after it (see h1_process). */
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    gw_h1_t *h = H(p);
    gw_req_append_body(h->cur, (const uint8_t *)at, len);
    if (h->cur->limit_err) {
        h->error = h->cur->limit_err;
        return 1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    gw_h1_t *h = H(p);
    h->cur->input_done = 1;
    h->keepalive = http_should_keep_alive(p) && !p->upgrade;
    h->ready = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings SETTINGS = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

int gw_h1_start(gw_conn_t *c)
{
    gw_h1_t *h = cm_xcalloc(1, sizeof(*h));
    http_parser_init(&h->parser, HTTP_REQUEST);
    h->parser.data = h;
    h->conn = c;
    h->idle_since_ms = gw_now_ms();
    c->h1 = h;
    return 0;
}

void gw_h1_free(gw_conn_t *c)
{
    gw_h1_t *h = c->h1;
    if (!h)
        return;
    free(h->hn);
    free(h->hv);
    free(h->url);
    free(h);
    c->h1 = NULL;
}

/* Answers a request the core refuses (limits, bad syntax, timeout), then closes: the stream
 * position in the byte stream is unknown after an aborted parse. */
static void fail(gw_conn_t *c, gw_err_t err)
{
    gw_h1_t *h = c->h1;
    h->keepalive = 0;
    h->ready = 0;
    if (!h->cur)
        h->cur = gw_req_new(c, "http/1.1"); /* garbage before a request line */
    if (!h->cur->dispatched) {
        h->cur->limit_err = err;
        gw_req_respond_error(h->cur, err);
    }
}

static void h1_process(gw_conn_t *c)
{
    gw_h1_t *h = c->h1;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    h->processing = 1;
    while (!c->dead && !c->closing && !c->lingering && !h->waiting) {
        /* A client that pipelines without reading its responses: stop parsing (and, through
         * the read watermark, reading) until the socket took what we have. */
        if (evbuffer_get_length(out) > OUT_HIGH_WATER)
            break;
        if (h->ready) {
            h->ready = 0;
            h->waiting = 1;
            gw_req_dispatch(h->cur);
            continue;
        }
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            break;
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t n = http_parser_execute(&h->parser, &SETTINGS, v.iov_base, v.iov_len);
        enum http_errno err = HTTP_PARSER_ERRNO(&h->parser);
        evbuffer_drain(in, n);
        if (err == HPE_PAUSED) {
            http_parser_pause(&h->parser, 0);
            if (h->parser.upgrade) {
                /* The bytes after an Upgrade/CONNECT head are not HTTP: serve the request
                 * and close. */
                h->keepalive = 0;
                evbuffer_drain(in, evbuffer_get_length(in));
            }
            continue;
        }
        if (err != HPE_OK) {
            gw_err_t e = h->error                     ? h->error
                         : err == HPE_HEADER_OVERFLOW ? GW_ERR_HEADERS_TOO_LARGE
                                                      : GW_ERR_BAD_REQUEST;
            fail(c, e);
            break;
        }
        if (h->parser.upgrade && h->ready) {
            h->keepalive = 0;
            evbuffer_drain(in, evbuffer_get_length(in));
        } else if (n < v.iov_len) {
            fail(c, GW_ERR_BAD_REQUEST);
            break;
        }
    }
    h->processing = 0;
}

void gw_h1_on_read(gw_conn_t *c)
{
    h1_process(c);
}

void gw_h1_on_flushed(gw_conn_t *c)
{
    /* Output drained: parse what pipelining left waiting. */
    gw_h1_t *h = c->h1;
    if (!h->processing && !h->waiting && evbuffer_get_length(bufferevent_get_input(c->bev)))
        h1_process(c);
}

static int header_ok(const char *s)
{
    return !strpbrk(s, "\r\n");
}

void gw_h1_respond(gw_req_t *r)
{
    gw_conn_t *c = r->conn;
    gw_h1_t *h = c->h1;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    int close = !h->keepalive || h->draining || c->loop->draining || r->limit_err;
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", r->status, gw_status_text(r->status));
    if (r->rctype && header_ok(r->rctype))
        evbuffer_add_printf(out, "content-type: %s\r\n", r->rctype);
    evbuffer_add_printf(out, "content-length: %zu\r\n", r->rlen);
    for (int i = 0; i < r->nrhdrs; i++) {
        if (header_ok(r->rhdrs[i].name) && header_ok(r->rhdrs[i].value) &&
            strcmp(r->rhdrs[i].name, "connection") != 0 &&
            strcmp(r->rhdrs[i].name, "content-length") != 0)
            evbuffer_add_printf(out, "%s: %s\r\n", r->rhdrs[i].name, r->rhdrs[i].value);
    }
    if (close)
        evbuffer_add(out, "connection: close\r\n", 19);
    evbuffer_add(out, "\r\n", 2);
    if (r->rlen && strcmp(r->method ? r->method : "", "HEAD") != 0)
        evbuffer_add(out, r->rbody, r->rlen);
    int input_done = r->input_done;
    if (h->cur == r) {
        h->cur = NULL;
        h->waiting = 0;
        h->ready = 0;
    }
    gw_req_detach(r);
    h->idle_since_ms = gw_now_ms();
    if (close) {
        /* Linger when the client may still be sending (a refused body) so it reads the
         * response instead of a reset. */
        gw_conn_close_after_flush(c, !input_done);
        return;
    }
    if (!h->processing)
        h1_process(c);
}

void gw_h1_drain(gw_conn_t *c)
{
    gw_h1_t *h = c->h1;
    h->draining = 1;
    if (!h->cur && evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
        gw_conn_close_after_flush(c, 0);
}

void gw_h1_tick(gw_conn_t *c, long long now)
{
    gw_h1_t *h = c->h1;
    const gw_server_config_t *cfg = c->loop->cfg;
    if (c->closing) {
        /* A client that does not read its response does not keep the connection. */
        if (now - c->closing_ms >= cfg->request_timeout_ms)
            gw_conn_kill(c);
        return;
    }
    if (h->cur && !h->cur->dispatched) {
        /* Slowloris: the head and the body have request_timeout_ms to arrive in full. */
        if (now - h->cur->start_us / 1000 >= cfg->request_timeout_ms)
            fail(c, GW_ERR_REQUEST_TIMEOUT);
        return;
    }
    if (!h->cur) {
        long long since = h->idle_since_ms > c->active_ms ? h->idle_since_ms : c->active_ms;
        if (now - since >= cfg->idle_timeout_ms)
            gw_conn_kill(c);
    }
}
