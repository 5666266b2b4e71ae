/* tc_url: share URLs (draft 001 §8.3: the Secret travels in the fragment, which never reaches
 * the relay) and relay base URLs. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "cm_b64.h"
#include "cm_uuid.h"
#include "tc_int.h"

/* scheme://authority, split off |url|. */
typedef struct {
    char origin[TC_URL_MAX]; /* "scheme://authority", scheme lower case */
    const char *path;        /* the rest of |url| after the authority (may be "") */
    size_t path_len;         /* up to the query or fragment */
    const char *query;       /* after '?', NULL when none (up to the fragment) */
    size_t query_len;
    const char *fragment; /* after '#', NULL when none */
} url_parts_t;

static int host_char(int ch)
{
    return isalnum(ch) || ch == '-' || ch == '.' || ch == ':' || ch == '[' || ch == ']' ||
           ch == '_';
}

static int path_char(int ch)
{
    return isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '/';
}

/* Checks the authority: a host (name, IPv4 or [IPv6]) and an optional port 1..65535. */
static int authority_ok(const char *a, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!host_char((unsigned char)a[i]))
            return 0;
    const char *end = a + len, *colon = NULL;
    if (a[0] == '[') {
        const char *rb = memchr(a, ']', len);
        if (!rb || rb == a + 1)
            return 0;
        colon = (rb + 1 < end) ? rb + 1 : NULL;
        if (colon && *colon != ':')
            return 0;
    } else {
        colon = memchr(a, ':', len);
        if (colon == a || (colon && memchr(colon + 1, ':', (size_t)(end - colon - 1))) ||
            memchr(a, '[', len) || memchr(a, ']', len))
            return 0;
    }
    if (!colon)
        return 1;
    size_t pl = (size_t)(end - colon - 1);
    if (pl == 0 || pl > 5)
        return 0;
    long port = 0;
    for (const char *p = colon + 1; p < end; p++) {
        if (!isdigit((unsigned char)*p))
            return 0;
        port = port * 10 + (*p - '0');
    }
    return port >= 1 && port <= 65535;
}

static tc_err_t split_url(const char *url, url_parts_t *u)
{
    memset(u, 0, sizeof(*u));
    if (!url)
        return TC_ERR_URL;
    size_t len = strlen(url);
    if (len >= TC_URL_MAX)
        return TC_ERR_URL;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return TC_ERR_URL; /* spaces, controls, raw non-ASCII: not a URL as sent */
    size_t scheme = strncasecmp(url, "https://", 8) == 0  ? 8
                    : strncasecmp(url, "http://", 7) == 0 ? 7
                                                          : 0;
    if (!scheme)
        return TC_ERR_URL;
    const char *auth = url + scheme;
    size_t alen = strcspn(auth, "/?#");
    if (!authority_ok(auth, alen))
        return TC_ERR_URL; /* also refuses user info ('@') */
    snprintf(u->origin, sizeof(u->origin), "%s%.*s", scheme == 8 ? "https://" : "http://",
             (int)alen, auth);
    for (char *p = u->origin + scheme; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    u->path = auth + alen;
    const char *hash = strchr(u->path, '#');
    if (hash)
        u->fragment = hash + 1;
    size_t before_frag = hash ? (size_t)(hash - u->path) : strlen(u->path);
    const char *q = memchr(u->path, '?', before_frag);
    u->path_len = q ? (size_t)(q - u->path) : before_frag;
    if (q) {
        u->query = q + 1;
        u->query_len = before_frag - u->path_len - 1;
    }
    for (size_t i = 0; i < u->path_len; i++)
        if (!path_char((unsigned char)u->path[i]))
            return TC_ERR_URL;
    return TC_OK;
}

/* A path prefix ("" or "/a/b") without empty, "." or ".." segments: what a request is sent
 * to must be what the URL shows. */
static int path_prefix_ok(const char *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (p[i] != '/')
            return 0;
        size_t s = ++i;
        while (i < len && p[i] != '/')
            i++;
        size_t seg = i - s;
        if (seg == 0 || (seg == 1 && p[s] == '.') || (seg == 2 && p[s] == '.' && p[s + 1] == '.'))
            return 0;
    }
    return 1;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = tolower(ch);
    return (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10 : -1;
}

/* Percent-decodes |in| (|len|) into |out| (capacity |cap|, NUL-terminated). -1 on a bad escape
 * or overflow. */
static int pct_decode(const char *in, size_t len, char *out, size_t cap)
{
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        int ch = (unsigned char)in[i];
        if (ch == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = hexval((unsigned char)in[i + 1]), lo = hexval((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = hi * 16 + lo;
            i += 2;
        }
        if (w + 1 >= cap)
            return -1;
        out[w++] = (char)ch;
    }
    out[w] = '\0';
    return 0;
}

/* The `v` parameter of |q| into |out| (kept only when it is short and plain). */
static void read_vertical(const char *q, size_t len, char *out, size_t cap)
{
    out[0] = '\0';
    while (q && len) {
        size_t n = 0;
        while (n < len && q[n] != '&')
            n++;
        if (n >= 2 && q[0] == 'v' && q[1] == '=') {
            char tmp[64];
            if (pct_decode(q + 2, n - 2, tmp, sizeof(tmp)) == 0)
                tc_sanitize(out, cap, tmp, strlen(tmp));
            return;
        }
        q += n < len ? n + 1 : n;
        len -= n < len ? n + 1 : n;
    }
}

static tc_err_t parse_secret(const char *frag, tc_share_t *out)
{
    char dec[128];
    size_t flen = strlen(frag);
    if (flen == 0 || pct_decode(frag, flen, dec, sizeof(dec)) != 0)
        return TC_ERR_SECRET;
    uint8_t key[96];
    size_t klen = 0;
    tc_err_t e = TC_ERR_SECRET;
    if (cm_b64_decode(CM_B64_ANY, dec, strlen(dec), key, sizeof(key), &klen) == 0 &&
        (klen == 16 || klen == 32)) {
        memcpy(out->secret, key, klen);
        out->secret_len = klen;
        e = TC_OK;
    }
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(dec, sizeof(dec));
    return e;
}

tc_err_t tc_share_parse(const char *url, tc_share_t *out)
{
    if (!out)
        return TC_ERR_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    url_parts_t u;
    tc_err_t e = split_url(url, &u);
    if (e != TC_OK)
        return e;
    size_t plen = u.path_len;
    while (plen && u.path[plen - 1] == '/')
        plen--;
    static const char tail[] = "/v1/m/";
    size_t tl = sizeof(tail) - 1;
    if (plen < tl + TC_UUID_LEN)
        return TC_ERR_URL;
    const char *id = u.path + plen - TC_UUID_LEN;
    if (memcmp(id - tl, tail, tl) != 0 || !cm_uuid_is_v4(id, TC_UUID_LEN))
        return TC_ERR_URL;
    size_t prefix = plen - TC_UUID_LEN - tl;
    if (!path_prefix_ok(u.path, prefix))
        return TC_ERR_URL;
    cm_uuid_canonical(id, out->mailbox_id);
    int n =
        snprintf(out->relay_base, sizeof(out->relay_base), "%s%.*s", u.origin, (int)prefix, u.path);
    if (n < 0 || (size_t)n >= sizeof(out->relay_base))
        return TC_ERR_URL;
    n = snprintf(out->api_url, sizeof(out->api_url), "%s/v1/m/%s", out->relay_base,
                 out->mailbox_id);
    if (n < 0 || (size_t)n >= sizeof(out->api_url))
        return TC_ERR_URL;
    read_vertical(u.query, u.query_len, out->vertical, sizeof(out->vertical));
    if (u.fragment) {
        e = parse_secret(u.fragment, out);
        if (e != TC_OK) {
            tc_share_wipe(out);
            return e;
        }
    }
    return TC_OK;
}

void tc_share_wipe(tc_share_t *s)
{
    if (s) {
        OPENSSL_cleanse(s->secret, sizeof(s->secret));
        s->secret_len = 0;
    }
}

tc_err_t tc_share_build(const char *url_link, const uint8_t *secret, size_t secret_len, char **out)
{
    if (!out)
        return TC_ERR_INVALID_ARG;
    *out = NULL;
    if (!secret || (secret_len != 16 && secret_len != 32))
        return TC_ERR_SECRET;
    if (!url_link || strchr(url_link, '#'))
        return TC_ERR_URL;
    tc_share_t s;
    tc_err_t e = tc_share_parse(url_link, &s);
    if (e != TC_OK)
        return e;
    char frag[64];
    cm_b64_encode(CM_B64_URL, secret, secret_len, frag);
    size_t cap = strlen(s.api_url) + strlen(s.vertical) + strlen(frag) + 8;
    char *u = malloc(cap);
    if (u)
        snprintf(u, cap, "%s%s%s#%s", s.api_url, s.vertical[0] ? "?v=" : "", s.vertical, frag);
    OPENSSL_cleanse(frag, sizeof(frag));
    if (!u)
        return TC_ERR_NOMEM;
    *out = u;
    return TC_OK;
}

tc_err_t tc_relay_base_parse(const char *url, char out[TC_URL_MAX])
{
    url_parts_t u;
    tc_err_t e = split_url(url, &u);
    if (e != TC_OK)
        return e;
    if (u.query || u.fragment)
        return TC_ERR_URL;
    size_t plen = u.path_len;
    while (plen && u.path[plen - 1] == '/')
        plen--;
    if (!path_prefix_ok(u.path, plen))
        return TC_ERR_URL;
    int n = snprintf(out, TC_URL_MAX, "%s%.*s", u.origin, (int)plen, u.path);
    return (n < 0 || n >= TC_URL_MAX) ? TC_ERR_URL : TC_OK;
}

int tc_url_is_loopback(const char *url)
{
    url_parts_t u;
    if (split_url(url, &u) != TC_OK)
        return 0;
    const char *host = strstr(u.origin, "://") + 3;
    char h[TC_URL_MAX];
    if (host[0] == '[') {
        const char *rb = strchr(host, ']');
        snprintf(h, sizeof(h), "%.*s", (int)(rb - host - 1), host + 1);
        struct in6_addr a6;
        return inet_pton(AF_INET6, h, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    }
    snprintf(h, sizeof(h), "%.*s", (int)strcspn(host, ":"), host);
    if (strcmp(h, "localhost") == 0)
        return 1;
    struct in_addr a4;
    return inet_pton(AF_INET, h, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}
