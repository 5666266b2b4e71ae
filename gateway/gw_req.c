/* gw_req: the request object behind gw_http.h (for connections and for loopback requests that
 * no connection carries), plus the access log and request metrics. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_alloc.h"
#include "cm_log.h"
#include "cm_metrics.h"
#include "gw_corr.h"
#include "gw_int.h"

gw_req_t *gw_req_new(gw_conn_t *c, const char *protocol)
{
    gw_req_t *r = cm_xcalloc(1, sizeof(*r));
    gw_loop_t *l = c->loop;
    r->loop = l;
    r->conn = c;
    r->protocol = protocol;
    r->tls = c->tls;
    r->peer = c->peer;
    r->start_us = gw_now_us();
    snprintf(r->id, sizeof(r->id), "%08x%08x", l->rid_prefix, ++l->rid_seq);
    atomic_init(&r->npost, 0);
    r->cnext = c->reqs;
    if (c->reqs)
        c->reqs->cprev = r;
    c->reqs = r;
    return r;
}

gw_req_t *gw_req_new_loopback(gw_loop_t *l, void (*on_response)(gw_req_t *r, void *arg), void *arg)
{
    gw_req_t *r = cm_xcalloc(1, sizeof(*r));
    r->loop = l;
    r->protocol = "loopback";
    r->start_us = gw_now_us();
    snprintf(r->id, sizeof(r->id), "%08x%08x", l->rid_prefix, ++l->rid_seq);
    atomic_init(&r->npost, 0);
    r->on_response = on_response;
    r->on_response_arg = arg;
    r->held = 1;
    return r;
}

void gw_req_loopback_free(gw_req_t *r)
{
    if (!r)
        return;
    r->held = 0;
    r->on_response = NULL; /* an answer that comes later is dropped */
    if (!r->responded)
        r->cancelled = 1;
    gw_req_maybe_free(r);
}

void gw_req_set_method(gw_req_t *r, const char *method)
{
    free(r->method);
    r->method = cm_xstrndup(method, strlen(method));
}

void gw_req_detach(gw_req_t *r)
{
    gw_conn_t *c = r->conn;
    if (!c)
        return;
    if (r->cprev)
        r->cprev->cnext = r->cnext;
    else
        c->reqs = r->cnext;
    if (r->cnext)
        r->cnext->cprev = r->cprev;
    r->cprev = r->cnext = NULL;
    r->conn = NULL;
    if (!r->responded)
        r->cancelled = 1;
    gw_req_maybe_free(r);
}

static void free_hdrs(gw_hdr_t *h, int n)
{
    for (int i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

void gw_req_maybe_free(gw_req_t *r)
{
    if (r->conn || r->held || atomic_load(&r->npost) > 0 || (r->dispatched && !r->responded))
        return;
    free(r->method);
    free(r->path);
    free(r->query);
    free_hdrs(r->hdrs, r->nhdrs);
    free(r->body);
    free_hdrs(r->rhdrs, r->nrhdrs);
    free(r->rctype);
    free(r->rbody);
    free(r);
}

void gw_req_store_header(gw_req_t *r, const char *name, size_t nlen, const char *value, size_t vlen)
{
    const gw_server_config_t *cfg = r->loop->cfg;
    /* RFC 9113 §6.5.2 accounting: name + value + 32 per field. */
    r->hdr_bytes += nlen + vlen + 32;
    if (r->limit_err)
        return;
    if (r->hdr_bytes > cfg->max_header_bytes || r->nhdrs >= cfg->max_headers) {
        r->limit_err = GW_ERR_HEADERS_TOO_LARGE;
        return;
    }
    if (r->nhdrs == r->caphdrs) {
        r->caphdrs = r->caphdrs ? r->caphdrs * 2 : 16;
        r->hdrs = cm_xrealloc(r->hdrs, (size_t)r->caphdrs * sizeof(*r->hdrs));
    }
    gw_hdr_t *h = &r->hdrs[r->nhdrs++];
    h->name = cm_xstrndup(name, nlen);
    for (size_t i = 0; i < nlen; i++)
        h->name[i] = (char)tolower((unsigned char)h->name[i]);
    h->value = cm_xstrndup(value, vlen);
}

int gw_req_set_target(gw_req_t *r, const char *t, size_t len)
{
    if (len == 0 || t[0] != '/')
        return -1;
    const char *q = memchr(t, '?', len);
    const char *hash = memchr(t, '#', len);
    size_t end = hash ? (size_t)(hash - t) : len;
    size_t plen = q && (size_t)(q - t) < end ? (size_t)(q - t) : end;
    free(r->path);
    free(r->query);
    r->path = cm_xstrndup(t, plen);
    r->query = plen < end ? cm_xstrndup(t + plen + 1, end - plen - 1) : cm_xstrndup("", 0);
    return 0;
}

void gw_req_append_body(gw_req_t *r, const uint8_t *p, size_t len)
{
    size_t max = r->loop->cfg->max_body;
    r->has_body = 1;
    if (r->limit_err)
        return;
    if (r->body_len + len > max) {
        r->limit_err = GW_ERR_PAYLOAD_TOO_LARGE;
        free(r->body);
        r->body = NULL;
        r->body_len = r->body_cap = 0;
        return;
    }
    if (r->body_len + len > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        while (cap < r->body_len + len)
            cap *= 2;
        if (cap > max)
            cap = max;
        /* the size is the client's (up to --max-body): failing it fails this request only */
        uint8_t *grown = cm_tryrealloc(r->body, cap);
        if (!grown) {
            r->limit_err = GW_ERR_INTERNAL;
            free(r->body);
            r->body = NULL;
            r->body_len = r->body_cap = 0;
            return;
        }
        r->body = grown;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, p, len);
    r->body_len += len;
}

const char *gw_status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

/* The correlation id is echoed on every answer, errors included (gw_corr.h); a header dropped
 * after the 431 limit was reached is simply not there. */
void gw_req_echo_correlation(gw_req_t *r)
{
    for (size_t i = 0; i < sizeof(gw_correlation_headers) / sizeof(gw_correlation_headers[0]);
         i++) {
        const char *v = gw_req_header(r, gw_correlation_headers[i]);
        if (v && cm_corr_id_valid(v))
            gw_req_add_header(r, gw_correlation_headers[i], v);
    }
}

void gw_req_respond_error(gw_req_t *r, gw_err_t err)
{
    if (err == GW_OK)
        err = GW_ERR_BAD_REQUEST;
    char body[256];
    /* code and message are fixed strings without quotes or backslashes */
    int n = snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
                     gw_err_code(err), gw_err_message(err));
    gw_req_echo_correlation(r);
    if (!r->route)
        r->route = "core";
    r->dispatched = 1; /* an answer now exists, whoever gave it */
    gw_req_respond(r, gw_err_http_status(err), "application/json", body, (size_t)n);
}

void gw_req_dispatch(gw_req_t *r)
{
    if (r->dispatched)
        return;
    if (r->limit_err != GW_OK) {
        gw_req_respond_error(r, r->limit_err);
        return;
    }
    r->dispatched = 1;
    if (!r->method)
        r->method = cm_xstrndup("GET", 3);
    if (!r->path) {
        r->path = cm_xstrndup("/", 1);
        r->query = cm_xstrndup("", 0);
    }
    const gw_server_config_t *cfg = r->loop->cfg;
    cfg->handler(cfg->handler_ctx, r);
}

/* ---- metrics and access log ---- */

static gw_metric_slot_t *metric_slot(gw_loop_t *l, const char *route, int status,
                                     gw_metric_slot_t *tmp)
{
    for (int i = 0; i < l->nmetrics; i++)
        if (l->metrics[i].route == route && l->metrics[i].status == status)
            return &l->metrics[i];
    gw_metric_slot_t *s = l->nmetrics < GW_METRIC_CACHE ? &l->metrics[l->nmetrics++] : tmp;
    char labels[160];
    s->route = route;
    s->status = status;
    snprintf(labels, sizeof(labels), "route=\"%s\",code=\"%d\"", route, status);
    s->counter = cm_metrics_counter("gateway_http_requests_total",
                                    "HTTP requests by route and status", labels);
    snprintf(labels, sizeof(labels), "route=\"%s\"", route);
    s->hist =
        cm_metrics_histogram("gateway_http_request_duration_seconds",
                             "Time from the first request byte to the response", labels, NULL, 0);
    return s;
}

static void account(gw_req_t *r)
{
    double secs = (double)(gw_now_us() - r->start_us) / 1e6;
    const char *route = r->route ? r->route : "none";
    gw_metric_slot_t tmp, *s = metric_slot(r->loop, route, r->status, &tmp);
    cm_counter_add(s->counter, 1);
    cm_histogram_observe(s->hist, secs);
    if (r->loop->cfg->access_log) {
        /* Route label only, never the path: it carries the mailbox id. */
        CM_INFO(r->id, "access route=%s method=%.16s status=%d protocol=%s duration_ms=%.3f%s",
                route, r->method ? r->method : "-", r->status, r->protocol, secs * 1e3,
                r->cancelled ? " cancelled=1" : "");
    }
}

/* ---- gw_http.h ---- */

const char *gw_req_method(const gw_req_t *r)
{
    return r->method;
}

const char *gw_req_path(const gw_req_t *r)
{
    return r->path;
}

const char *gw_req_query(const gw_req_t *r)
{
    return r->query ? r->query : "";
}

const char *gw_req_header(const gw_req_t *r, const char *lname)
{
    for (int i = 0; i < r->nhdrs; i++)
        if (strcmp(r->hdrs[i].name, lname) == 0)
            return r->hdrs[i].value;
    return NULL;
}

const char *gw_req_header_at(const gw_req_t *r, const char *lname, int idx)
{
    for (int i = 0; i < r->nhdrs; i++)
        if (strcmp(r->hdrs[i].name, lname) == 0 && idx-- == 0)
            return r->hdrs[i].value;
    return NULL;
}

size_t gw_req_max_body(const gw_req_t *r)
{
    return r->loop->cfg->max_body;
}

const struct sockaddr *gw_req_peer(const gw_req_t *r)
{
    return r->peer.ss_family ? (const struct sockaddr *)&r->peer : NULL;
}

const uint8_t *gw_req_body(const gw_req_t *r, size_t *len)
{
    *len = r->body_len;
    return r->body ? r->body : (const uint8_t *)"";
}

int gw_req_has_body(const gw_req_t *r)
{
    return r->has_body;
}

const char *gw_req_protocol(const gw_req_t *r)
{
    return r->protocol;
}

int gw_req_is_tls(const gw_req_t *r)
{
    return r->tls;
}

const char *gw_req_id(const gw_req_t *r)
{
    return r->id;
}

void gw_req_set_route(gw_req_t *r, const char *route)
{
    r->route = route;
}

int gw_req_cancelled(const gw_req_t *r)
{
    return r->cancelled;
}

void gw_req_add_header(gw_req_t *r, const char *name, const char *value)
{
    if (r->responded)
        return;
    if (r->nrhdrs == r->caprhdrs) {
        r->caprhdrs = r->caprhdrs ? r->caprhdrs * 2 : 8;
        r->rhdrs = cm_xrealloc(r->rhdrs, (size_t)r->caprhdrs * sizeof(*r->rhdrs));
    }
    gw_hdr_t *h = &r->rhdrs[r->nrhdrs++];
    size_t nlen = strlen(name);
    h->name = cm_xstrndup(name, nlen);
    /* HTTP/2 wants lower case; HTTP/1.1 does not care. */
    for (size_t i = 0; i < nlen; i++)
        h->name[i] = (char)tolower((unsigned char)h->name[i]);
    h->value = cm_xstrndup(value, strlen(value));
}

void gw_req_respond(gw_req_t *r, int status, const char *content_type, const void *body, size_t len)
{
    if (r->responded)
        return; /* a second answer is a caller bug; ignoring it keeps the connection sane */
    r->responded = 1;
    r->status = status;
    r->responded_ms = gw_now_ms();
    account(r);
    gw_conn_t *c = r->conn;
    if (!c && !r->on_response) {
        gw_req_maybe_free(r);
        return;
    }
    r->rctype = content_type ? cm_xstrndup(content_type, strlen(content_type)) : NULL;
    if (len) {
        r->rbody = cm_xmemdup(body, len);
    }
    r->rlen = len;
    if (!c) {
        r->on_response(r, r->on_response_arg);
        return;
    }
    gw_conn_enter(c);
    if (c->proto == GW_PROTO_H2)
        gw_h2_respond(r);
    else
        gw_h1_respond(r);
    gw_conn_leave(c);
}

gw_loop_t *gw_req_loop(const gw_req_t *r)
{
    return r->loop;
}

int gw_req_responded(const gw_req_t *r)
{
    return r->responded;
}

int gw_req_response_status(const gw_req_t *r)
{
    return r->status;
}

const char *gw_req_response_type(const gw_req_t *r)
{
    return r->rctype;
}

const char *gw_req_response_header(const gw_req_t *r, const char *lname)
{
    for (int i = 0; i < r->nrhdrs; i++)
        if (strcmp(r->rhdrs[i].name, lname) == 0)
            return r->rhdrs[i].value;
    return NULL;
}

const uint8_t *gw_req_response_body(const gw_req_t *r, size_t *len)
{
    *len = r->rlen;
    return r->rbody ? r->rbody : (const uint8_t *)"";
}

int gw_req_post(gw_req_t *r, void (*fn)(void *arg), void *arg)
{
    atomic_fetch_add(&r->npost, 1);
    if (gw_loop_post_req(r->loop, r, fn, arg) != 0) {
        atomic_fetch_sub(&r->npost, 1);
        return -1;
    }
    return 0;
}

int gw_req_defer(gw_req_t *r, void (*fn)(void *arg), void *arg)
{
    atomic_fetch_add(&r->npost, 1);
    if (gw_loop_defer_req(r->loop, r, fn, arg) != 0) {
        atomic_fetch_sub(&r->npost, 1);
        return -1;
    }
    return 0;
}
