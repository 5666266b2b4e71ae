/* tc_int: what the client library's modules share (not installed, not public). */
#ifndef TC_INT_H
#define TC_INT_H

#include <curl/curl.h>

#include "tigress_client.h"

#define TC_DEFAULT_MAX_BODY 65536L
#define TC_MAX_ANSWER (4L << 20) /* a relay answer larger than this is a protocol error */

struct tc_client {
    CURL *curl;    /* owned: one handle, so HTTP/1.1 and TLS connections are reused */
    char *ca_file; /* owned copy, or NULL */
    tc_http_mode_t http;
    long timeout_ms;
    int max_attempts;
    long retry_base_ms;
    int allow_insecure_http;
    long max_body;
    tc_call_info_t last;
};

/* One API request. |claim| NULL: no deviceClaim header. |body| NULL: no body (a POST then
 * sends an empty one). */
typedef struct {
    const char *method;
    const char *url;
    const char *claim;
    const char *body;
    size_t body_len;
} tc_req_t;

typedef struct {
    long status;
    char *body; /* owned, NUL-terminated, "" when none */
    size_t len;
} tc_resp_t;

/* Sends |rq| with a fresh correlation id, retrying transport failures and 502/503/504 with
 * the same id. TC_OK only for a 2xx answer, in *out (free with tc_resp_free); any other
 * outcome is mapped to an error with c->last filled. *out is zeroed on errors. */
tc_err_t tc_call(tc_client_t *c, const tc_req_t *rq, tc_resp_t *out);
void tc_resp_free(tc_resp_t *r);

/* Copies |src| (|len| bytes) into |dst| (capacity |cap|) keeping printable ASCII only (others
 * become '?'), truncated, NUL-terminated. */
void tc_sanitize(char *dst, size_t cap, const char *src, size_t len);

/* "<base>/v1/m" or "<base>/v1/config" into |out|. TC_ERR_URL when it does not fit. */
tc_err_t tc_join(char out[TC_URL_MAX], const char *base, const char *suffix);

#endif
