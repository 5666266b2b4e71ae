#include "pd_http.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "pd_provider.h"

/* One connection cache shared by every delivery thread, so FCM sees a few long-lived
 * connections rather than one handshake per notification. */
static CURLSH *share;
static pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *u)
{
    (void)h, (void)a, (void)u;
    pthread_mutex_lock(&share_locks[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *u)
{
    (void)h, (void)u;
    pthread_mutex_unlock(&share_locks[d]);
}

int pd_http_global_init(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&share_locks[i], NULL);
    share = curl_share_init();
    if (!share)
        return -1;
    curl_share_setopt(share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    return 0;
}

void pd_http_global_cleanup(void)
{
    if (share)
        curl_share_cleanup(share);
    share = NULL;
    curl_global_cleanup();
}

int64_t pd_retry_after_ms(const char *v, size_t len)
{
    char buf[64];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    char *end;
    long long s = strtoll(buf, &end, 10);
    if (end != buf && *end == '\0') {
        if (s < 0)
            return -1;
        /* Absurd values would overflow; the caller caps at --retry-max-ms anyway. */
        return s > 100000000 ? 100000000000LL : s * 1000;
    }
    time_t t = curl_getdate(buf, NULL);
    if (t < 0)
        return -1;
    int64_t now_s = pd_now_ms() / 1000;
    if ((int64_t)t - now_s > 100000000)
        return 100000000000LL; /* far future: the caller caps it */
    int64_t d = (int64_t)t * 1000 - pd_now_ms();
    return d < 0 ? 0 : d;
}

static size_t on_body(char *p, size_t size, size_t n, void *u)
{
    pd_http_resp_t *r = u;
    size_t len = size * n, room = sizeof(r->body) - 1 - r->body_len;
    size_t c = len < room ? len : room;
    memcpy(r->body + r->body_len, p, c);
    r->body_len += c;
    r->body[r->body_len] = '\0';
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *u)
{
    pd_http_resp_t *r = u;
    size_t len = size * n;
    if (len > 12 && strncasecmp(p, "retry-after:", 12) == 0) {
        const char *v = p + 12;
        size_t vl = len - 12;
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            vl--;
        r->retry_after_ms = pd_retry_after_ms(v, vl);
    }
    return len;
}

static int on_progress(void *u, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    const volatile int64_t *abort_at = u;
    (void)a, (void)b, (void)c, (void)d;
    return abort_at && *abort_at && pd_now_ms() >= *abort_at;
}

int pd_http_post(const pd_http_req_t *req, pd_http_resp_t *resp)
{
    memset(resp, 0, sizeof(*resp));
    resp->retry_after_ms = -1;
    CURL *h = curl_easy_init();
    struct curl_slist *hl = NULL, *rl = NULL;
    int rc = -1;
    if (!h) {
        snprintf(resp->error, sizeof(resp->error), "curl init failed");
        return -1;
    }
    for (size_t i = 0; req->headers && req->headers[i]; i++)
        hl = curl_slist_append(hl, req->headers[i]);
    hl = curl_slist_append(hl, "Expect:"); /* no 100-continue round trip */
    if (req->resolve)
        rl = curl_slist_append(rl, req->resolve);
    curl_easy_setopt(h, CURLOPT_SHARE, share);
    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)req->body_len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    if (rl)
        curl_easy_setopt(h, CURLOPT_RESOLVE, rl);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, req->https_only ? "https" : "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "tigress-relay-push/1");
    if (req->ca_file && *req->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, req->ca_file);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)req->timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)req->abort_at_ms);
    CURLcode cc = curl_easy_perform(h);
    if (cc == CURLE_OK) {
        long st = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
        resp->status = (int)st;
        rc = 0;
    } else {
        /* "shutdown" tells the delivery loop the attempt was ours to cut, not a failure. */
        snprintf(resp->error, sizeof(resp->error), "%s",
                 cc == CURLE_ABORTED_BY_CALLBACK ? "shutdown" : curl_easy_strerror(cc));
    }
    curl_slist_free_all(hl);
    curl_slist_free_all(rl);
    curl_easy_cleanup(h);
    return rc;
}
