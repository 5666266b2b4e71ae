/* pd_http: one HTTPS/1.1 (or h2 when offered) POST with libcurl, for FCM and webhooks. */
#ifndef PD_HTTP_H
#define PD_HTTP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *url;
    const char *const *headers; /* NULL-terminated "Name: value" lines; may be NULL */
    const char *body;
    size_t body_len;
    const char *ca_file; /* trust store override; NULL = system */
    const char *resolve; /* "host:port:addr" pin for curl, or NULL */
    int https_only;      /* refuse any other scheme (no redirects are ever followed) */
    int64_t timeout_ms;
    const volatile int64_t *abort_at_ms; /* give up once the wall clock passes it (0 = never) */
} pd_http_req_t;

typedef struct {
    int status;      /* 0 when no response */
    char body[2048]; /* first bytes of the response body, NUL-terminated */
    size_t body_len;
    int64_t retry_after_ms; /* -1 when absent */
    char error[128];        /* transport error text when status == 0 */
} pd_http_resp_t;

/* Process-wide libcurl set-up; call once before threads use pd_http_post. */
int pd_http_global_init(void);
void pd_http_global_cleanup(void);

/* Returns 0 when an HTTP response arrived (see resp->status), -1 on a transport error. */
int pd_http_post(const pd_http_req_t *req, pd_http_resp_t *resp);

#endif
