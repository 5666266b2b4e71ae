#include "th_http.h"

#include "cm_alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static size_t on_body(char *p, size_t sz, size_t n, void *u)
{
    th_http_resp_t *r = u;
    size_t k = sz * n;
    char *nb = cm_tryrealloc(r->body, r->len + k + 1); /* a peer's size: fail the transfer */
    if (!nb)
        return 0;
    memcpy(nb + r->len, p, k);
    r->body = nb;
    r->len += k;
    r->body[r->len] = '\0';
    return k;
}

static size_t on_header(char *p, size_t sz, size_t n, void *u)
{
    th_http_resp_t *r = u;
    size_t k = sz * n;
    if (k >= 5 && strncmp(p, "HTTP/", 5) == 0)
        r->hlen = 0; /* a new response (e.g. after 100-continue) */
    if (r->hlen + k < sizeof(r->headers)) {
        memcpy(r->headers + r->hlen, p, k);
        r->hlen += k;
        r->headers[r->hlen] = '\0';
    }
    return k;
}

int th_http_request(CURL *c, const th_http_req_t *rq, th_http_resp_t *out)
{
    memset(out, 0, sizeof(*out));
    char url[512];
    snprintf(url, sizeof(url), "%s://127.0.0.1:%d%s", rq->proto == TH_HTTP_TLS ? "https" : "http",
             rq->port, rq->path);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, rq->method);
    if (rq->source) {
        char iface[80];
        snprintf(iface, sizeof(iface), "host!%s", rq->source); /* libcurl copies it */
        curl_easy_setopt(c, CURLOPT_INTERFACE, iface);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, rq->timeout_ms > 0 ? rq->timeout_ms : 20000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION,
                     rq->proto == TH_HTTP_H2C  ? (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                     : rq->proto == TH_HTTP_H1 ? (long)CURL_HTTP_VERSION_1_1
                                               : (long)CURL_HTTP_VERSION_2TLS);
    if (rq->proto == TH_HTTP_H2C) {
        /* libcurl 7.88.1 (Debian 12) fails every request after the first on a reused
         * prior-knowledge h2c connection ("Error in the HTTP2 framing layer", reproduced
         * against nghttpd too): one connection per request there. TLS h2 reuses fine. */
        curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
    }
    if (rq->proto == TH_HTTP_TLS) {
        curl_easy_setopt(c, CURLOPT_CAINFO, rq->ca_file);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    }
    if (!strcmp(rq->method, "GET"))
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    struct curl_slist *sl = NULL;
    int has_ct = 0;
    for (size_t i = 0; rq->headers && rq->headers[i]; i++) {
        sl = curl_slist_append(sl, rq->headers[i]);
        has_ct |= strncasecmp(rq->headers[i], "content-type:", 13) == 0;
    }
    if (rq->body) {
        if (!has_ct)
            sl = curl_slist_append(sl, "Content-Type: application/json");
        sl = curl_slist_append(sl, "Expect:");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(rq->body_len ? rq->body_len : strlen(rq->body)));
    } else if (rq->empty_post && !strcmp(rq->method, "POST")) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, sl);
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(sl);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_getinfo(c, CURLINFO_HTTP_VERSION, &out->version);
    if (!out->body)
        out->body = calloc(1, 1);
    if (rc != CURLE_OK) {
        snprintf(out->err, sizeof(out->err), "curl error %s", curl_easy_strerror(rc));
        return -1;
    }
    return 0;
}

const char *th_http_header(const th_http_resp_t *r, const char *name)
{
    static char val[4096];
    size_t nl = strlen(name);
    const char *line = r->headers;
    while (line && *line) {
        const char *eol = strstr(line, "\r\n");
        size_t ll = eol ? (size_t)(eol - line) : strlen(line);
        if (ll > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = ll - (size_t)(v - line);
            if (vl >= sizeof(val))
                vl = sizeof(val) - 1;
            memcpy(val, v, vl);
            val[vl] = '\0';
            return val;
        }
        line = eol ? eol + 2 : NULL;
    }
    return NULL;
}

void th_http_resp_free(th_http_resp_t *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}
