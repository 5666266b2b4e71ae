#include "pd_webhook.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>

#include "cm_alloc.h"
#include "cm_config.h"
#include "cm_log.h"
#include "pd_http.h"

typedef struct {
    unsigned char *secret; /* owned */
    size_t secret_len;
    int allow_private;
    char *ca_file; /* owned; NULL = system */
    int64_t timeout_ms;
    volatile int64_t abort_at_ms;
    pd_provider_t prov;
} webhook_t;

static int v4_forbidden(uint32_t a)
{
    static const struct {
        uint32_t net;
        int bits;
    } bad[] = {
        {0x00000000, 8},  /* "this network" */
        {0x0A000000, 8},  /* 10/8 private */
        {0x64400000, 10}, /* 100.64/10 CGNAT */
        {0x7F000000, 8},  /* loopback */
        {0xA9FE0000, 16}, /* link-local (cloud metadata lives here) */
        {0xAC100000, 12}, /* 172.16/12 private */
        {0xC0000000, 24}, /* IETF protocol assignments */
        {0xC0000200, 24}, /* TEST-NET-1 */
        {0xC0A80000, 16}, /* 192.168/16 private */
        {0xC6120000, 15}, /* benchmarking */
        {0xC6336400, 24}, /* TEST-NET-2 */
        {0xCB007100, 24}, /* TEST-NET-3 */
        {0xE0000000, 4},  /* multicast */
        {0xF0000000, 4},  /* reserved + broadcast */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint32_t mask = bad[i].bits ? 0xFFFFFFFFu << (32 - bad[i].bits) : 0;
        if ((a & mask) == bad[i].net)
            return 1;
    }
    return 0;
}

int pd_webhook_addr_forbidden(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return v4_forbidden(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family != AF_INET6)
        return 1;
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t zero[16];
    if (memcmp(b, zero, 15) == 0 && (b[15] == 0 || b[15] == 1))
        return 1; /* :: and ::1 */
    /* v4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::a.b.c.d and deprecated v4-compatible ::a.b.c.d
     * reach an IPv4 address: judge that address. */
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0 || memcmp(b, zero, 12) == 0) {
        uint32_t a =
            ((uint32_t)b[12] << 24) | ((uint32_t)b[13] << 16) | ((uint32_t)b[14] << 8) | b[15];
        return v4_forbidden(a);
    }
    if ((b[0] & 0xfe) == 0xfc)
        return 1; /* fc00::/7 unique local */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return 1; /* fe80::/10 link-local */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
        return 1; /* fec0::/10 site-local (deprecated) */
    if (b[0] == 0xff)
        return 1; /* multicast */
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
        return 1; /* 2001:db8::/32 documentation */
    if (b[0] == 0x01 && b[1] == 0 && memcmp(b + 2, zero, 6) == 0)
        return 1; /* 100::/64 discard */
    if (b[0] == 0x20 && b[1] == 0x02)
        return 1; /* 6to4 can wrap any IPv4 address */
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0)
        return 1; /* Teredo */
    return 0;
}

/* Splits an https URL into host and port. 0, or -1 when it is not a usable https URL. */
static int parse_url(const char *url, char *host, size_t hcap, char *port, size_t pcap)
{
    int rc = -1;
    CURLU *u = curl_url();
    char *scheme = NULL, *h = NULL, *p = NULL;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK || strcmp(scheme, "https") != 0)
        goto out;
    if (curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) != CURLUE_OK)
        goto out;
    size_t hl = strlen(h);
    /* curl keeps IPv6 literals in brackets; getaddrinfo wants them bare. */
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        if (hl - 2 >= hcap)
            goto out;
        memcpy(host, h + 1, hl - 2);
        host[hl - 2] = '\0';
    } else {
        if (hl >= hcap)
            goto out;
        memcpy(host, h, hl + 1);
    }
    snprintf(port, pcap, "%s", p);
    rc = 0;
out:
    curl_free(scheme);
    curl_free(h);
    curl_free(p);
    curl_url_cleanup(u);
    return rc;
}

static int webhook_send(void *impl, const pd_entry_t *e, pd_result_t *r)
{
    webhook_t *w = impl;
    char host[256], port[16], resolve[400], addr[INET6_ADDRSTRLEN];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    r->retry_after_ms = -1;
    if (strlen(e->token) > 2048 ||
        parse_url(e->token, host, sizeof(host), port, sizeof(port)) != 0) {
        pd_result_set(r, PD_R_FORBIDDEN, 0, "not_https_url");
        return 0;
    }
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0 || !ai) {
        /* A name that does not resolve now may resolve later (DNS outage): retry. */
        pd_result_set(r, PD_R_RETRY, 0, "dns");
        if (ai)
            freeaddrinfo(ai);
        return 0;
    }
    const struct addrinfo *pick = NULL;
    for (const struct addrinfo *a = ai; a; a = a->ai_next) {
        if (!w->allow_private && pd_webhook_addr_forbidden(a->ai_addr)) {
            freeaddrinfo(ai);
            pd_result_set(r, PD_R_FORBIDDEN, 0, "private_address");
            return 0;
        }
        if (!pick)
            pick = a;
    }
    if (pick->ai_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)pick->ai_addr)->sin_addr, addr, sizeof(addr));
        snprintf(resolve, sizeof(resolve), "%s:%s:%s", host, port, addr);
    } else {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)pick->ai_addr)->sin6_addr, addr, sizeof(addr));
        snprintf(resolve, sizeof(resolve), "%s:%s:[%s]", host, port, addr);
    }
    freeaddrinfo(ai);

    char body[256], ts[32], tosign[320], hex[2 * EVP_MAX_MD_SIZE + 1];
    int64_t now = pd_now_ms() / 1000;
    int bl =
        snprintf(body, sizeof(body),
                 "{\"type\":\"mailbox_updated\",\"deliveryId\":\"%s\",\"timestamp\":%" PRId64 "}",
                 e->id, now);
    snprintf(ts, sizeof(ts), "%" PRId64, now);
    int sl = snprintf(tosign, sizeof(tosign), "%s.%s", ts, body);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), w->secret, (int)w->secret_len, (const unsigned char *)tosign, (size_t)sl,
         mac, &maclen);
    for (unsigned int i = 0; i < maclen; i++)
        sprintf(hex + 2 * i, "%02x", mac[i]);
    char h_id[200], h_ts[64], h_sig[200];
    snprintf(h_id, sizeof(h_id), "Tigress-Webhook-Id: %s", e->id);
    snprintf(h_ts, sizeof(h_ts), "Tigress-Webhook-Timestamp: %s", ts);
    snprintf(h_sig, sizeof(h_sig), "Tigress-Webhook-Signature: v1=%s", hex);
    const char *hdrs[] = {"Content-Type: application/json", h_id, h_ts, h_sig, NULL};
    pd_http_req_t req = {.url = e->token,
                         .headers = hdrs,
                         .body = body,
                         .body_len = (size_t)bl,
                         .ca_file = w->ca_file,
                         .resolve = resolve,
                         .https_only = 1,
                         .timeout_ms = w->timeout_ms,
                         .abort_at_ms = &w->abort_at_ms};
    pd_http_resp_t *resp = cm_xcalloc(1, sizeof(*resp));
    if (pd_http_post(&req, resp) != 0) {
        pd_result_set(r, PD_R_RETRY, 0,
                      strcmp(resp->error, "shutdown") == 0 ? "shutdown" : "network");
    } else {
        int st = resp->status;
        if (st >= 200 && st < 300)
            pd_result_set(r, PD_R_OK, st, "ok");
        else if (st == 410)
            pd_result_set(r, PD_R_DEAD, st, "gone");
        else if (st == 408 || st == 429 || st >= 500)
            pd_result_set(r, PD_R_RETRY, st, "unavailable");
        else
            pd_result_set(r, PD_R_REJECTED, st, "rejected");
        r->retry_after_ms = resp->retry_after_ms;
    }
    free(resp);
    return 0;
}

static void webhook_shutdown(void *impl, int64_t grace_ms)
{
    webhook_t *w = impl;
    w->abort_at_ms = pd_now_ms() + (grace_ms > 0 ? grace_ms : 1);
}

static void webhook_del(void *impl)
{
    webhook_t *w = impl;
    if (!w)
        return;
    if (w->secret) {
        OPENSSL_cleanse(w->secret, w->secret_len);
        free(w->secret);
    }
    free(w->ca_file);
    free(w);
}

int pd_webhook_new(const pd_webhook_opts_t *o, pd_provider_t **out)
{
    webhook_t *w = cm_xcalloc(1, sizeof(*w));
    char *s = NULL;
    size_t len = 0;
    if (cm_config_read_file(o->secret_file, 4096, &s, &len) != 0 || len < 16) {
        CM_ERROR(NULL, "webhook: cannot read the secret file, or the secret is under 16 bytes");
        if (s) {
            OPENSSL_cleanse(s, len);
            free(s);
        }
        free(w);
        return -1;
    }
    w->secret = (unsigned char *)s;
    w->secret_len = len;
    w->allow_private = o->allow_private;
    w->ca_file = o->ca_file && *o->ca_file ? cm_xstrdup(o->ca_file) : NULL;
    w->timeout_ms = o->timeout_ms;
    w->prov = (pd_provider_t){.name = "webhook",
                              .token_type = "webhook",
                              .send = webhook_send,
                              .shutdown = webhook_shutdown,
                              .del = webhook_del,
                              .impl = w};
    *out = &w->prov;
    return 0;
}
