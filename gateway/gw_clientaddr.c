/* Client addresses for the rate limits: parsing, CIDR lists, /64 grouping, forwarded headers.
 * See gw_clientaddr.h. Address literals go through inet_pton, never a hand-written parser. */
#include "gw_clientaddr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "cm_alloc.h"

/* Longest text of one address with brackets and port: "[" 45 "]:" 5. */
#define ADDR_TEXT_MAX 56

static const uint8_t V4_MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void set_v6(gw_addr_t *out, const uint8_t b[16])
{
    memset(out, 0, sizeof(*out));
    if (!memcmp(b, V4_MAPPED, sizeof(V4_MAPPED))) {
        out->family = 4;
        memcpy(out->b, b + 12, 4);
        return;
    }
    out->family = 6;
    memcpy(out->b, b, 16);
}

static int parse_plain(const char *s, size_t len, gw_addr_t *out)
{
    char buf[ADDR_TEXT_MAX];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    uint8_t b[16];
    if (inet_pton(AF_INET, buf, b) == 1) {
        memset(out, 0, sizeof(*out));
        out->family = 4;
        memcpy(out->b, b, 4);
        return 0;
    }
    if (inet_pton(AF_INET6, buf, b) == 1) {
        set_v6(out, b);
        return 0;
    }
    return -1;
}

static int port_valid(const char *p, size_t len)
{
    if (len == 0 || len > 5)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)p[i]))
            return 0;
    return 1;
}

int gw_addr_parse(const char *s, size_t len, int allow_port, gw_addr_t *out)
{
    if (!s)
        return -1;
    if (!allow_port)
        return parse_plain(s, len, out);
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return -1;
        size_t inner = (size_t)(close - s) - 1, rest = len - inner - 2;
        if (rest > 0 && (close[1] != ':' || !port_valid(close + 2, rest - 1)))
            return -1;
        gw_addr_t a;
        if (parse_plain(s + 1, inner, &a) != 0)
            return -1;
        *out = a;
        return 0;
    }
    /* one colon: IPv4 with a port; more: a bare IPv6 literal */
    const char *colon = memchr(s, ':', len);
    if (colon && !memchr(colon + 1, ':', len - (size_t)(colon - s) - 1)) {
        size_t host = (size_t)(colon - s);
        if (!port_valid(colon + 1, len - host - 1))
            return -1;
        gw_addr_t a;
        if (parse_plain(s, host, &a) != 0 || a.family != 4)
            return -1;
        *out = a;
        return 0;
    }
    return parse_plain(s, len, out);
}

int gw_addr_from_sockaddr(const struct sockaddr *sa, gw_addr_t *out)
{
    if (!sa)
        return -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memset(out, 0, sizeof(*out));
        out->family = 4;
        memcpy(out->b, &in->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        set_v6(out, in6->sin6_addr.s6_addr);
        return 0;
    }
    return -1;
}

size_t gw_addr_group_key(const gw_addr_t *a, uint8_t out[9])
{
    out[0] = a->family;
    size_t n = a->family == 6 ? 8 : 4;
    memcpy(out + 1, a->b, n);
    return n + 1;
}

/* ---- CIDR lists ---------------------------------------------------------------------------- */

static int prefix_match(const gw_addr_t *net, int bits, const gw_addr_t *a)
{
    if (net->family != a->family)
        return 0;
    int whole = bits / 8, rem = bits % 8;
    if (memcmp(net->b, a->b, (size_t)whole) != 0)
        return 0;
    if (rem == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rem));
    return (net->b[whole] & mask) == (a->b[whole] & mask);
}

static int parse_cidr(const char *s, size_t len, gw_cidr_t *out)
{
    const char *slash = memchr(s, '/', len);
    size_t alen = slash ? (size_t)(slash - s) : len;
    gw_addr_t a;
    if (gw_addr_parse(s, alen, 0, &a) != 0)
        return -1;
    int max = a.family == 4 ? 32 : 128, bits = max;
    if (slash) {
        size_t plen = len - alen - 1;
        if (plen == 0 || plen > 3)
            return -1;
        bits = 0;
        for (size_t i = 0; i < plen; i++) {
            if (!isdigit((unsigned char)slash[1 + i]))
                return -1;
            bits = bits * 10 + (slash[1 + i] - '0');
        }
        if (bits > max)
            return -1;
    }
    /* host bits set ("10.1.2.3/8") is almost always a typo for something else: refuse it */
    gw_addr_t net = a;
    for (int i = bits; i < max; i++)
        net.b[i / 8] &= (uint8_t) ~(0x80 >> (i % 8));
    if (memcmp(net.b, a.b, sizeof(a.b)) != 0)
        return -1;
    out->net = net;
    out->bits = bits;
    return 0;
}

int gw_cidr_list_parse(const char *s, gw_cidr_list_t *out)
{
    out->v = NULL;
    out->n = 0;
    if (!s)
        return 0;
    size_t cap = 0;
    const char *p = s;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, ", \t");
        if (out->n == cap) {
            cap = cap ? cap * 2 : 4;
            gw_cidr_t *v = cm_xreallocarray(out->v, cap, sizeof(*v));
            if (!v)
                goto fail;
            out->v = v;
        }
        if (parse_cidr(p, len, &out->v[out->n]) != 0)
            goto fail;
        out->n++;
        p += len;
    }
    return 0;
fail:
    gw_cidr_list_free(out);
    return -1;
}

void gw_cidr_list_free(gw_cidr_list_t *l)
{
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int gw_cidr_list_match(const gw_cidr_list_t *l, const gw_addr_t *a)
{
    if (!a->family)
        return 0;
    for (size_t i = 0; i < l->n; i++)
        if (prefix_match(&l->v[i].net, l->v[i].bits, a))
            return 1;
    return 0;
}

/* ---- forwarded headers --------------------------------------------------------------------- */

/* The hops of a header, left to right; only the rightmost GW_FWD_MAX_HOPS are kept. A hop that
 * is not an address has family 0. */
typedef struct {
    gw_addr_t hop[GW_FWD_MAX_HOPS];
    size_t total; /* hops seen; hop i (0-based from the left) is at i % GW_FWD_MAX_HOPS */
} hops_t;

static void hops_add(hops_t *h, const gw_addr_t *a)
{
    h->hop[h->total % GW_FWD_MAX_HOPS] = *a;
    h->total++;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && is_ows(**s))
        (*s)++, (*len)--;
    while (*len > 0 && is_ows((*s)[*len - 1]))
        (*len)--;
}

/* X-Forwarded-For: "client, proxy1, proxy2", each an address, maybe with a port. */
static void xff_hops(const char *v, hops_t *h)
{
    const char *p = v;
    for (;;) {
        size_t len = strcspn(p, ",");
        const char *item = p;
        size_t ilen = len;
        trim(&item, &ilen);
        gw_addr_t a = {0};
        if (gw_addr_parse(item, ilen, 1, &a) != 0)
            a.family = 0;
        if (ilen > 0 || p[len] == ',')
            hops_add(h, &a);
        if (!p[len])
            break;
        p += len + 1;
    }
}

/* The address in a Forwarded "for" value: a token or a quoted-string (with \-escapes). */
static void forwarded_for_value(const char *v, size_t len, gw_addr_t *a)
{
    char buf[ADDR_TEXT_MAX];
    size_t n = 0;
    a->family = 0;
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
        for (size_t i = 1; i + 1 < len; i++) {
            if (v[i] == '\\' && i + 2 < len)
                i++;
            if (n == sizeof(buf))
                return;
            buf[n++] = v[i];
        }
    } else {
        if (len > sizeof(buf))
            return;
        memcpy(buf, v, len);
        n = len;
    }
    if (gw_addr_parse(buf, n, 1, a) != 0)
        a->family = 0;
}

/* One Forwarded element "for=...;proto=...;by=...": the address of its "for" pair. */
static void forwarded_element(const char *e, size_t len, gw_addr_t *a)
{
    a->family = 0;
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        int quoted = 0;
        for (; i < len && (quoted || e[i] != ';'); i++) {
            if (e[i] == '\\' && quoted && i + 1 < len)
                i++;
            else if (e[i] == '"')
                quoted = !quoted;
        }
        const char *pair = e + start;
        size_t plen = i - start;
        trim(&pair, &plen);
        const char *eq = memchr(pair, '=', plen);
        if (eq) {
            const char *name = pair, *val = eq + 1;
            size_t nlen = (size_t)(eq - pair), vlen = plen - nlen - 1;
            trim(&name, &nlen);
            trim(&val, &vlen);
            if (nlen == 3 && !strncasecmp(name, "for", 3)) {
                forwarded_for_value(val, vlen, a);
                return;
            }
        }
        i++; /* past ';' */
    }
}

/* Forwarded (RFC 7239): elements separated by commas outside quoted strings. */
static void forwarded_hops(const char *v, hops_t *h)
{
    size_t i = 0, len = strlen(v);
    while (i <= len) {
        size_t start = i;
        int quoted = 0;
        for (; i < len && (quoted || v[i] != ','); i++) {
            if (v[i] == '\\' && quoted && i + 1 < len)
                i++;
            else if (v[i] == '"')
                quoted = !quoted;
        }
        const char *el = v + start;
        size_t elen = i - start;
        trim(&el, &elen);
        if (elen > 0 || i < len) {
            gw_addr_t a;
            forwarded_element(el, elen, &a);
            hops_add(h, &a);
        }
        i++; /* past ',' (or the end) */
    }
}

void gw_client_resolve(const gw_addr_t *peer, const gw_cidr_list_t *trusted, gw_fwd_kind_t kind,
                       const char *const *values, size_t n, gw_addr_t *client)
{
    *client = *peer;
    if (!n || !gw_cidr_list_match(trusted, peer))
        return;
    hops_t *h = cm_xcalloc(1, sizeof(*h));
    for (size_t i = 0; i < n; i++) {
        if (!values[i])
            continue;
        if (kind == GW_FWD_FORWARDED)
            forwarded_hops(values[i], h);
        else
            xff_hops(values[i], h);
    }
    size_t kept = h->total < GW_FWD_MAX_HOPS ? h->total : GW_FWD_MAX_HOPS;
    for (size_t k = 0; k < kept; k++) {
        const gw_addr_t *a = &h->hop[(h->total - 1 - k) % GW_FWD_MAX_HOPS];
        if (!a->family)
            break;
        *client = *a;
        if (!gw_cidr_list_match(trusted, a))
            break;
    }
    free(h);
}
