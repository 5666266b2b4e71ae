/* gw_server: the gateway's server core. Listeners (cleartext h2c + HTTP/1.1 on one port, TLS
 * with ALPN h2/http1.1), one libevent loop per thread, connection and request limits, graceful
 * drain. Complete requests go to the handler of the configuration (gw_http.h). */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include <stddef.h>

#include "gw_http.h"

typedef struct {
    const char *http_listen;  /* "host:port" for h2c + HTTP/1.1; empty = none */
    const char *https_listen; /* "host:port" for TLS; used only with a certificate */
    const char *tls_cert;     /* PEM path; with tls_key empty too, no TLS listener */
    const char *tls_key;
    int threads;                /* loops; <= 0 means the number of online CPUs */
    size_t max_body;            /* bytes; beyond -> 413 */
    size_t max_header_bytes;    /* header list size (RFC 9113 accounting); beyond -> 431 */
    int max_headers;            /* header count; beyond -> 431 */
    int max_concurrent_streams; /* HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS */
    int idle_timeout_ms;        /* connection without an open request */
    int request_timeout_ms;     /* request head + body must arrive within this */
    int max_connections;        /* process-wide; beyond, accepted and closed at once */
    int max_resets;             /* HTTP/2 RST_STREAMs from a client per connection -> GOAWAY */
    int access_log;             /* one info line per request */
    gw_handler_fn handler;      /* answers every complete request; required */
    void *handler_ctx;          /* passed to |handler|; not owned */
} gw_server_config_t;

typedef struct gw_server gw_server_t;

/* Copies |cfg|, loads the TLS certificate and binds the listeners (not accepting yet).
 * Returns 0 and the server in *out, or -1 (logged). */
int gw_server_new(const gw_server_config_t *cfg, gw_server_t **out);

/* Bound ports; 0 for a listener that does not exist. */
int gw_server_http_port(const gw_server_t *s);
int gw_server_https_port(const gw_server_t *s);
int gw_server_threads(const gw_server_t *s);

/* Starts the loop threads; they accept from now on. 0 or -1. */
int gw_server_start(gw_server_t *s);

/* Stops accepting, sends GOAWAY on HTTP/2 and Connection: close on HTTP/1.1, and waits up to
 * |timeout_ms| for in-flight requests; then closes what is left. Loops keep running (so that
 * gw_loop_post still works while the handler's backends stop). Returns 0 when everything finished
 * in time, 1 when connections had to be closed. */
int gw_server_drain(gw_server_t *s, int timeout_ms);

/* 1 while not draining (for readiness). */
int gw_server_accepting(const gw_server_t *s);

/* Stops the loops, joins the threads and frees everything. */
void gw_server_free(gw_server_t *s);

#endif
