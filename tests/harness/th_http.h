/* th_http: one libcurl request against a local server (the gateway, an admin listener), as the
 * integration tests make them: HTTP/1.1, h2c with prior knowledge, or h2 over TLS verified
 * against a CA file. The status, the negotiated HTTP version, the final response's header
 * lines and the body are captured; nothing is asserted here, so a test says what it expects
 * (and reports a transport error with its own fail_msg). */
#ifndef TH_HTTP_H
#define TH_HTTP_H

#include <stddef.h>

#include <curl/curl.h>

typedef enum {
    TH_HTTP_H1 = 0, /* http://, HTTP/1.1 */
    TH_HTTP_H2C,    /* http://, HTTP/2 with prior knowledge, a fresh connection per request */
    TH_HTTP_TLS,    /* https://, HTTP/2 over TLS (ALPN), peer and host verified with |ca_file| */
} th_http_proto_t;

typedef struct {
    th_http_proto_t proto;
    int port;           /* on 127.0.0.1 */
    const char *source; /* local address to connect from, e.g. "127.0.0.2" (all of 127.0.0.0/8
                         * is loopback on Linux: another client); NULL: any */
    const char *method;
    const char *path;           /* with the query, e.g. "/v1/m/<id>" */
    const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
    const char *body;           /* NULL: none. Sent as application/json unless |headers| has a
                                 * Content-Type; "Expect:" is always suppressed */
    size_t body_len;            /* bytes of |body|; 0 means strlen(body) */
    const char *ca_file;        /* TH_HTTP_TLS only */
    long timeout_ms;            /* whole request; 0 means 20000 */
    int empty_post;             /* a POST without |body| sends an empty one (Content-Length: 0)
                                 * instead of none */
} th_http_req_t;

typedef struct {
    long status;
    long version; /* CURL_HTTP_VERSION_* actually used (CURLINFO_HTTP_VERSION) */
    char *body;   /* owned, NUL-terminated; "" when the answer had none */
    size_t len;
    char headers[16384]; /* header lines of the final response (after a 1xx), truncated */
    size_t hlen;
    char err[256]; /* why th_http_request failed */
} th_http_resp_t;

/* Performs |rq| on |c| (reset first: a keep-alive handle may be reused across calls). |out| is
 * overwritten; free it with th_http_resp_free whatever the result. Returns 0 when an answer
 * came (any status), -1 on a transport error (described in out->err). */
int th_http_request(CURL *c, const th_http_req_t *rq, th_http_resp_t *out);

/* Value of response header |name| (case-insensitive), in a static buffer that the next call
 * overwrites, or NULL. */
const char *th_http_header(const th_http_resp_t *r, const char *name);

/* Frees the body and zeroes |r|. */
void th_http_resp_free(th_http_resp_t *r);

#endif
