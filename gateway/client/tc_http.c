/* tc_http: the client object and one API call over libcurl: correlation id, retries that reuse
 * it, the answer's status mapped to the library's error. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cm_uuid.h"
#include "tc_int.h"

tc_err_t tc_client_new(const tc_options_t *opt, tc_client_t **out)
{
    tc_options_t d = {0};
    if (!out)
        return TC_ERR_INVALID_ARG;
    *out = NULL;
    if (!opt)
        opt = &d;
    if (opt->timeout_ms < 0 || opt->max_attempts < 0 || opt->retry_base_ms < 0 ||
        opt->max_body < 0 || opt->http < TC_HTTP_AUTO || opt->http > TC_HTTP_2)
        return TC_ERR_INVALID_ARG;
    tc_client_t *c = calloc(1, sizeof(*c));
    if (!c)
        return TC_ERR_NOMEM;
    c->curl = curl_easy_init();
    if (!c->curl)
        goto fail;
    if (opt->ca_file && !(c->ca_file = strdup(opt->ca_file)))
        goto fail;
    c->http = opt->http;
    c->timeout_ms = opt->timeout_ms ? opt->timeout_ms : 15000;
    c->max_attempts = opt->max_attempts ? opt->max_attempts : 4;
    c->retry_base_ms = opt->retry_base_ms ? opt->retry_base_ms : 250;
    c->allow_insecure_http = opt->allow_insecure_http;
    c->max_body = opt->max_body ? opt->max_body : TC_DEFAULT_MAX_BODY;
    *out = c;
    return TC_OK;
fail:
    tc_client_free(c);
    return TC_ERR_NOMEM;
}

void tc_client_free(tc_client_t *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->ca_file);
    free(c);
}

const tc_call_info_t *tc_client_last_call(const tc_client_t *c)
{
    return c ? &c->last : NULL;
}

void tc_sanitize(char *dst, size_t cap, const char *src, size_t len)
{
    if (!cap)
        return;
    size_t w = 0;
    for (size_t i = 0; src && i < len && src[i] && w + 1 < cap; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[w++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    dst[w] = '\0';
}

tc_err_t tc_join(char out[TC_URL_MAX], const char *base, const char *suffix)
{
    int n = snprintf(out, TC_URL_MAX, "%s%s", base, suffix);
    return (n < 0 || n >= TC_URL_MAX) ? TC_ERR_URL : TC_OK;
}

void tc_resp_free(tc_resp_t *r)
{
    if (!r)
        return;
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* ---- one attempt ------------------------------------------------------------------------- */

/* What the callbacks collect for one attempt. */
typedef struct {
    char *body; /* owned until handed to the caller */
    size_t len, cap;
    int too_big;
    char corr[160];   /* the Mailbox-Correlation-ID echoed by the final answer, "" if none */
    long retry_after; /* seconds from Retry-After, -1 if none */
} attempt_t;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    attempt_t *a = ud;
    size_t k = size * n;
    if (a->len + k + 1 > (size_t)TC_MAX_ANSWER) {
        a->too_big = 1;
        return 0;
    }
    if (a->len + k + 1 > a->cap) {
        size_t ncap = a->cap ? a->cap : 4096;
        while (ncap < a->len + k + 1)
            ncap *= 2;
        char *np = realloc(a->body, ncap);
        if (!np)
            return 0;
        a->body = np;
        a->cap = ncap;
    }
    memcpy(a->body + a->len, p, k);
    a->len += k;
    a->body[a->len] = '\0';
    return k;
}

/* Header value of |line| when its name is |name|, trimmed into |out|; else 0. */
static int header_value(const char *line, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return 0;
    const char *v = line + nl + 1;
    size_t vl = len - nl - 1;
    while (vl && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    tc_sanitize(out, cap, v, vl);
    return 1;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    attempt_t *a = ud;
    size_t k = size * n;
    char tmp[32];
    if (k >= 5 && strncmp(p, "HTTP/", 5) == 0) { /* a new answer (after a 1xx): start over */
        a->corr[0] = '\0';
        a->retry_after = -1;
    } else if (!header_value(p, k, "Mailbox-Correlation-ID", a->corr, sizeof(a->corr)) &&
               header_value(p, k, "Retry-After", tmp, sizeof(tmp))) {
        char *end;
        long v = strtol(tmp, &end, 10);
        a->retry_after = (end != tmp && *end == '\0' && v >= 0) ? v : -1;
    }
    return k;
}

static struct curl_slist *request_headers(const tc_req_t *rq, const char *corr)
{
    char line[256];
    struct curl_slist *h = NULL, *t;
    snprintf(line, sizeof(line), "Mailbox-Correlation-ID: %s", corr);
    if (!(t = curl_slist_append(h, line)))
        goto fail;
    h = t;
    if (rq->claim) {
        snprintf(line, sizeof(line), "deviceClaim: %s", rq->claim);
        if (!(t = curl_slist_append(h, line)))
            goto fail;
        h = t;
    }
    /* curl would label a POST body form-urlencoded; a request without a body needs none */
    if (!(t = curl_slist_append(h, rq->body ? "Content-Type: application/json" : "Content-Type:")))
        goto fail;
    h = t;
    if (!(t = curl_slist_append(h, "Expect:")))
        goto fail;
    return t;
fail:
    curl_slist_free_all(h);
    return NULL;
}

static void set_protocol(tc_client_t *c, const char *url)
{
    int https = strncasecmp(url, "https://", 8) == 0;
    long v = CURL_HTTP_VERSION_1_1;
    if (c->http == TC_HTTP_2)
        v = https ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
    else if (c->http == TC_HTTP_AUTO && https)
        v = CURL_HTTP_VERSION_2TLS;
    curl_easy_setopt(c->curl, CURLOPT_HTTP_VERSION, v);
    /* libcurl 7.88 cannot reuse an h2c prior-knowledge connection: one per request there */
    long fresh = (!https && c->http == TC_HTTP_2) ? 1L : 0L;
    curl_easy_setopt(c->curl, CURLOPT_FRESH_CONNECT, fresh);
    curl_easy_setopt(c->curl, CURLOPT_FORBID_REUSE, fresh);
    if (https) {
        curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, 2L);
        curl_easy_setopt(c->curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
        if (c->ca_file)
            curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->ca_file);
    }
}

/* Performs one attempt; the libcurl result, with the answer in |a| and *status. */
static CURLcode attempt(tc_client_t *c, const tc_req_t *rq, const char *corr, attempt_t *a,
                        long *status)
{
    CURL *h = c->curl;
    struct curl_slist *hdrs = request_headers(rq, corr);
    if (!hdrs)
        return CURLE_OUT_OF_MEMORY;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, rq->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "tigress-client/1");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
    set_protocol(c, rq->url);
    if (strcmp(rq->method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
        if (rq->body || strcmp(rq->method, "POST") == 0) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)(rq->body ? rq->body_len : 0));
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
        }
    }
    CURLcode rc = curl_easy_perform(h);
    long version = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &version);
    c->last.http_version = version == CURL_HTTP_VERSION_2_0   ? 2
                           : version == CURL_HTTP_VERSION_1_1 ? 11
                           : version == CURL_HTTP_VERSION_1_0 ? 10
                                                              : 0;
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    return rc;
}

/* ---- retries ----------------------------------------------------------------------------- */

/* Transport failures after which the request may or may not have been applied: a retry with
 * the same correlation id is safe (the relay answers a repeat with 201). */
static int transport_retryable(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

static tc_err_t transport_error(CURLcode rc, int too_big)
{
    if (too_big)
        return TC_ERR_PROTOCOL;
    switch (rc) {
    case CURLE_OUT_OF_MEMORY:
        return TC_ERR_NOMEM;
    case CURLE_OPERATION_TIMEDOUT:
        return TC_ERR_TIMEOUT;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return TC_ERR_URL;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        return TC_ERR_TLS;
    case CURLE_WEIRD_SERVER_REPLY:
        return TC_ERR_PROTOCOL;
    default:
        return TC_ERR_UNREACHABLE;
    }
}

static void backoff(const tc_client_t *c, int attempt_no, long retry_after_s)
{
    long ms = c->retry_base_ms;
    for (int i = 1; i < attempt_no && ms < 4000; i++)
        ms *= 2;
    unsigned char r[2] = {0, 0};
    RAND_bytes(r, sizeof(r)); /* jitter: up to half again, so clients do not retry in step */
    ms += (long)(((r[0] << 8) | r[1]) % (unsigned)(ms / 2 + 1));
    if (retry_after_s > 0 && retry_after_s * 1000 > ms)
        ms = retry_after_s * 1000;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int status_retryable(long status, long retry_after)
{
    if (status == 502 || status == 503 || status == 504)
        return 1;
    return status == 429 && retry_after >= 0 && retry_after <= 10;
}

tc_err_t tc_call(tc_client_t *c, const tc_req_t *rq, tc_resp_t *out)
{
    memset(out, 0, sizeof(*out));
    memset(&c->last, 0, sizeof(c->last));
    if (!c->allow_insecure_http && strncasecmp(rq->url, "https://", 8) != 0 &&
        !tc_url_is_loopback(rq->url))
        return TC_ERR_INSECURE;
    if (cm_uuid_v4(c->last.correlation_id) != 0)
        return TC_ERR_CRYPTO;
    for (int n = 1;; n++) {
        attempt_t a = {.retry_after = -1};
        long status = 0;
        c->last.attempts = n;
        CURLcode rc = attempt(c, rq, c->last.correlation_id, &a, &status);
        c->last.status = rc == CURLE_OK ? status : 0;
        c->last.transport[0] = '\0';
        if (rc != CURLE_OK) {
            const char *why = a.too_big ? "answer too large" : curl_easy_strerror(rc);
            tc_sanitize(c->last.transport, sizeof(c->last.transport), why, strlen(why));
            free(a.body);
            if (!a.too_big && transport_retryable(rc) && n < c->max_attempts) {
                backoff(c, n, -1);
                continue;
            }
            return transport_error(rc, a.too_big);
        }
        if (a.corr[0] && strcmp(a.corr, c->last.correlation_id) != 0) {
            free(a.body);
            snprintf(c->last.transport, sizeof(c->last.transport),
                     "the answer carries another Mailbox-Correlation-ID");
            return TC_ERR_PROTOCOL;
        }
        if (status_retryable(status, a.retry_after) && n < c->max_attempts) {
            free(a.body);
            backoff(c, n, a.retry_after);
            continue;
        }
        tc_err_t e = tc_relay_error_parse(status, a.body, a.len, &c->last);
        if (e != TC_OK) {
            free(a.body);
            return e;
        }
        c->last.duplicate = status == 201;
        out->status = status;
        out->body = a.body ? a.body : strdup("");
        out->len = a.len;
        return out->body ? TC_OK : TC_ERR_NOMEM;
    }
}
