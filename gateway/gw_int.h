/* gw_int: internal types shared by the gateway's server core (gw_server.c, gw_req.c, gw_h1.c,
 * gw_h2.c). Not for gw_api.c: the API sees only gw_http.h.
 *
 * Threads: every gw_loop_t runs one libevent loop on its own thread; a connection, its
 * protocol state and its requests are touched only from that thread. The only cross-thread
 * entry points are gw_loop_post() / gw_req_post() (locked queue + event_active). */
#ifndef GW_INT_H
#define GW_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "gw_err.h"
#include "gw_http.h"
#include "gw_server.h"

typedef struct gw_conn gw_conn_t;
typedef struct gw_h1 gw_h1_t;
typedef struct gw_h2 gw_h2_t;
typedef struct gw_post gw_post_t;

/* Counters and histograms looked up once per (route, status), per loop, without locks. */
#define GW_METRIC_CACHE 64
typedef struct {
    const char *route; /* static string (pointer compared) */
    int status;
    void *counter; /* cm_counter_t *, process-wide, never freed */
    void *hist;    /* cm_histogram_t * */
} gw_metric_slot_t;

struct gw_post {
    gw_post_t *next;
    gw_req_t *req; /* NULL for posts not tied to a request; else held (npost) until fn ran */
    void (*fn)(void *arg);
    void *arg;
};

struct gw_loop {
    gw_server_t *srv;              /* not owned */
    const gw_server_config_t *cfg; /* not owned; the server's copy */
    int idx;
    struct event_base *base; /* owned */
    pthread_t thread;
    int thread_started;
    struct evconnlistener *lis[2];      /* owned; [0] cleartext, [1] TLS; NULL once draining */
    struct event *post_ev;              /* owned; user event run by gw_loop_post() */
    struct event *tick_ev;              /* owned; periodic timeout scan */
    struct event *defer_ev;             /* owned; zero timeout that runs the deferred list */
    gw_post_t *defer_head, *defer_tail; /* owned queue of gw_req_defer(); loop thread only */
    pthread_mutex_t mu;                 /* guards post_head/post_tail/closed */
    gw_post_t *post_head, *post_tail;   /* owned queue */
    int closed;                         /* loop exited: posts are refused */
    gw_conn_t *conns;                   /* list of live connections (owned) */
    int draining;
    uint32_t rid_prefix;
    uint32_t rid_seq;
    gw_metric_slot_t metrics[GW_METRIC_CACHE];
    int nmetrics;
    void *detached; /* owned by gw_loop_free_detached: the config copy of a detached loop */
};

typedef enum { GW_PROTO_NONE = 0, GW_PROTO_H1, GW_PROTO_H2 } gw_proto_t;

struct gw_conn {
    gw_loop_t *loop;
    gw_conn_t *prev, *next;  /* in loop->conns */
    struct bufferevent *bev; /* owned (closes the fd and frees the SSL) */
    int tls;
    /* the TCP peer (ss_family 0 when unknown) */
    struct sockaddr_storage peer;
    gw_proto_t proto;
    gw_h1_t *h1;    /* owned when proto == H1 */
    gw_h2_t *h2;    /* owned when proto == H2 */
    gw_req_t *reqs; /* requests attached to this connection (not owned: see gw_req) */
    long long created_ms;
    long long active_ms;  /* last byte read */
    int depth;            /* nesting of entry points; free only at depth 0 */
    int dead;             /* free at the end of the outermost entry point */
    int closing;          /* close once the output is flushed (2: then linger) */
    long long closing_ms; /* when closing started */
    int lingering;        /* write side shut: discard input until EOF or linger_until_ms */
    long long linger_until_ms;
};

/* One HTTP request. Freed by gw_req_maybe_free() once it is detached from its connection
 * (stream closed, h1 response written, or connection gone), every post ran, and it was either
 * answered or never handed to the API. */
typedef struct {
    char *name;  /* owned, lower case */
    char *value; /* owned */
} gw_hdr_t;

struct gw_req {
    gw_loop_t *loop;
    gw_conn_t *conn;         /* NULL once detached */
    gw_req_t *cprev, *cnext; /* in conn->reqs while attached */
    int32_t stream_id;       /* h2; 0 for h1 */
    char id[20];
    const char *protocol; /* static */
    int tls;
    char *method;   /* owned */
    char *path;     /* owned */
    char *query;    /* owned */
    gw_hdr_t *hdrs; /* owned array */
    int nhdrs, caphdrs;
    size_t hdr_bytes;
    uint8_t *body; /* owned */
    size_t body_len, body_cap;
    int has_body;
    int input_done;     /* whole request received */
    gw_err_t limit_err; /* refusal decided by the core (400/408/413/431), GW_OK if none */
    const char *route;  /* static */
    long long start_us;
    /* the TCP peer, copied from the connection (which may go first) */
    struct sockaddr_storage peer;
    /* response */
    int status;
    gw_hdr_t *rhdrs; /* owned */
    int nrhdrs, caprhdrs;
    char *rctype;   /* owned */
    uint8_t *rbody; /* owned */
    size_t rlen, roff;
    long long responded_ms;
    int dispatched; /* handed to the handler (or answered by the core) */
    int responded;
    int cancelled;
    atomic_int npost;
    /* loopback (no connection): the response goes to |on_response| instead of a client, and
     * the request lives until gw_req_loopback_free (|held|) */
    void (*on_response)(gw_req_t *r, void *arg);
    void *on_response_arg;
    int held;
};

/* ---- gw_server.c ---- */
long long gw_now_ms(void);
long long gw_now_us(void);
/* Entry/exit of every callback that may close |c|; gw_conn_leave frees it if it died. */
void gw_conn_enter(gw_conn_t *c);
void gw_conn_leave(gw_conn_t *c);
/* Marks |c| for closing now (freed at depth 0). Requests are detached as cancelled. */
void gw_conn_kill(gw_conn_t *c);
/* Close after the output is flushed (h1 Connection: close, h2 after GOAWAY). |linger| keeps
 * reading and discarding for a moment so the peer sees the response, not a reset. */
void gw_conn_close_after_flush(gw_conn_t *c, int linger);
/* gw_loop_post() / gw_loop_defer() holding |r| alive (npost) until |fn| ran; |r| may be
 * NULL. */
int gw_loop_post_req(gw_loop_t *l, gw_req_t *r, void (*fn)(void *), void *arg);
int gw_loop_defer_req(gw_loop_t *l, gw_req_t *r, void (*fn)(void *), void *arg);

/* Test and fuzz hook: a loop without threads or listeners, run by the caller's thread with
 * gw_loop_run_once (or event_base_loop on |base|). |cfg| is copied. */
gw_loop_t *gw_loop_new_detached(const gw_server_config_t *cfg);
void gw_loop_free_detached(gw_loop_t *l);
/* Runs one iteration of a detached loop, waiting for an event when |block|. */
void gw_loop_run_once(gw_loop_t *l, int block);
/* Adopts |bev| (callbacks are replaced) as a new connection on |l|. Returns it, or NULL. */
gw_conn_t *gw_conn_adopt(gw_loop_t *l, struct bufferevent *bev, int tls);

/* ---- gw_req.c ---- */
gw_req_t *gw_req_new(gw_conn_t *c, const char *protocol);
void gw_req_detach(gw_req_t *r); /* from its connection; marks it cancelled if unanswered */
void gw_req_maybe_free(gw_req_t *r);
/* Stores a header (lower-casing |name|); counts bytes and headers against the limits and sets
 * limit_err past them (then nothing more is stored). */
void gw_req_store_header(gw_req_t *r, const char *name, size_t nlen, const char *value,
                         size_t vlen);
/* A request that no connection carries (like h2o's loopback client): built with
 * gw_req_set_method / gw_req_set_target / gw_req_store_header / gw_req_append_body, handed to
 * the handler with gw_req_dispatch, answered through |on_response(r, arg)| on |l|'s thread.
 * The response stays readable (gw_req_response_*) until the caller frees the request with
 * gw_req_loopback_free, on |l|'s thread. */
gw_req_t *gw_req_new_loopback(gw_loop_t *l, void (*on_response)(gw_req_t *r, void *arg), void *arg);
void gw_req_loopback_free(gw_req_t *r);
void gw_req_set_method(gw_req_t *r, const char *method);
int gw_req_responded(const gw_req_t *r);
int gw_req_response_status(const gw_req_t *r);
const char *gw_req_response_type(const gw_req_t *r); /* content type, or NULL */
/* Response header |lname| (lower case); with repeats the first; NULL when absent. */
const char *gw_req_response_header(const gw_req_t *r, const char *lname);
const uint8_t *gw_req_response_body(const gw_req_t *r, size_t *len);
/* Splits a request target into path and query. 0 or -1 (bad target). */
int gw_req_set_target(gw_req_t *r, const char *target, size_t len);
/* Appends body bytes; sets limit_err past max_body, or GW_ERR_INTERNAL (500) when the buffer
 * cannot grow (then stores nothing more). */
void gw_req_append_body(gw_req_t *r, const uint8_t *p, size_t len);
/* Hands the request to the configured handler, or answers limit_err itself. */
void gw_req_dispatch(gw_req_t *r);
/* Answers with the core's JSON error body for |err| (the core's own refusals: bad HTTP,
 * timeouts, limits, shutdown). */
void gw_req_respond_error(gw_req_t *r, gw_err_t err);
const char *gw_status_text(int status);

/* ---- gw_h1.c ---- */
int gw_h1_start(gw_conn_t *c);
void gw_h1_free(gw_conn_t *c);
void gw_h1_on_read(gw_conn_t *c);
void gw_h1_on_flushed(gw_conn_t *c);
void gw_h1_respond(gw_req_t *r);
void gw_h1_drain(gw_conn_t *c);
void gw_h1_tick(gw_conn_t *c, long long now_ms);

/* ---- gw_h2.c ---- */
int gw_h2_start(gw_conn_t *c);
void gw_h2_free(gw_conn_t *c);
void gw_h2_on_read(gw_conn_t *c);
void gw_h2_on_flushed(gw_conn_t *c);
void gw_h2_respond(gw_req_t *r);
void gw_h2_drain(gw_conn_t *c);
void gw_h2_tick(gw_conn_t *c, long long now_ms);

#endif
