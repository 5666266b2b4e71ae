/* gw_http: the protocol-independent request/response seam between the gateway's server core
 * (listeners, TLS, HTTP/2 via nghttp2, HTTP/1.1, limits: gw_server.c and friends) and the
 * request handler it was configured with (gw_server_config_t.handler; the gateway's is the
 * API, gw_api.c).
 *
 * The core parses a request of any protocol, enforces the transport limits (header size and
 * count, body limit -> 413, slow body -> 408, stream/connection caps), and once the whole body
 * is in, calls the handler on the connection's loop thread. The handler answers exactly once
 * with gw_req_respond(), synchronously or later from the same loop thread (use gw_loop_post()
 * on gw_req_loop() to get back there from another thread, e.g. a gRPC completion).
 *
 * Lifetime: a gw_req_t stays valid until it has been answered AND every gw_req_post() callback
 * for it has run, even if the client went away meanwhile (then the response is dropped and
 * gw_req_cancelled() is 1). */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_req gw_req_t;
typedef struct gw_loop gw_loop_t; /* one event loop thread of the core */
struct sockaddr;

/* The request handler a server is configured with: called once per complete request, on the
 * request's loop thread, with the |ctx| given next to it in the configuration. */
typedef void (*gw_handler_fn)(void *ctx, gw_req_t *r);

const char *gw_req_method(const gw_req_t *r); /* "GET", "POST", ... */
const char *gw_req_path(const gw_req_t *r);   /* decoded of nothing, query string removed */
const char *gw_req_query(const gw_req_t *r);  /* after '?', or "" */
/* Request header by lowercase name; NULL when absent. With repeated headers, the first. */
const char *gw_req_header(const gw_req_t *r, const char *lname);
/* The |idx|-th (from 0) header named |lname|, for one that may repeat; NULL past the last. */
const char *gw_req_header_at(const gw_req_t *r, const char *lname, int idx);
/* The TCP peer's address (the client, or the nearest proxy); NULL when unknown. */
const struct sockaddr *gw_req_peer(const gw_req_t *r);
const uint8_t *gw_req_body(const gw_req_t *r, size_t *len); /* complete body; may be len 0 */
size_t gw_req_max_body(const gw_req_t *r);      /* the body limit the core enforces (--max-body) */
int gw_req_has_body(const gw_req_t *r);         /* a body was sent (even an empty chunked one) */
const char *gw_req_protocol(const gw_req_t *r); /* "h2", "h2c" or "http/1.1" */
int gw_req_is_tls(const gw_req_t *r);
/* Server-chosen id for logs and x-request-id to backends (never derived from the client). */
const char *gw_req_id(const gw_req_t *r);

/* Echoes the request's correlation id onto the response under the name it came with, when
 * valid (gw_corr.h). Call before gw_req_respond. */
void gw_req_echo_correlation(gw_req_t *r);

/* Route label for the access log and metrics, e.g. "create" (a static string). */
void gw_req_set_route(gw_req_t *r, const char *route);

/* Adds a response header (copied). Call before gw_req_respond. */
void gw_req_add_header(gw_req_t *r, const char *name, const char *value);
/* Sends the response (body copied). Exactly once per request; on the request's loop thread. */
void gw_req_respond(gw_req_t *r, int status, const char *content_type, const void *body,
                    size_t len);
int gw_req_cancelled(const gw_req_t *r);

/* The loop thread |r| belongs to: where it must be answered. */
gw_loop_t *gw_req_loop(const gw_req_t *r);

/* Runs |fn(arg)| on |l|'s thread soon. Callable from any thread. Returns 0, or -1 when the loop
 * is gone (then |fn| never runs). Unlike gw_req_post(), holds no request alive: a request
 * that the handler has not answered yet stays alive anyway. */
int gw_loop_post(gw_loop_t *l, void (*fn)(void *arg), void *arg);

/* Runs |fn(arg)| on |l| once the events of the current loop iteration have been handled
 * (before the loop waits again). Only from |l|'s own thread. Returns 0 or -1 (loop gone). */
int gw_loop_defer(gw_loop_t *l, void (*fn)(void *arg), void *arg);

/* Runs |fn(arg)| on |r|'s loop thread soon. Callable from any thread. Holds |r| alive until
 * |fn| has run. Returns 0, or -1 when the loop is gone (then |fn| never runs). */
int gw_req_post(gw_req_t *r, void (*fn)(void *arg), void *arg);

/* Runs |fn(arg)| on |r|'s loop thread once the events of the current loop iteration have been
 * handled (before the loop waits again). Only from |r|'s loop thread. Holds |r| alive until
 * |fn| has run. Returns 0, or -1 when the loop is gone (then |fn| never runs). */
int gw_req_defer(gw_req_t *r, void (*fn)(void *arg), void *arg);

#endif
