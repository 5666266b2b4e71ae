#include "gw_preview.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cm_alloc.h"

size_t gw_html_escape(const char *s, char *out, size_t cap)
{
    size_t n = 0, w = 0; /* needed, written (stops at the first piece that does not fit) */
    int full = 0;
    for (const char *p = s ? s : ""; *p; p++) {
        const char *rep = NULL;
        switch (*p) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            break;
        }
        size_t k = rep ? strlen(rep) : 1;
        if (!full && w + k < cap) {
            memcpy(out + w, rep ? rep : p, k);
            w += k;
        } else {
            full = 1;
        }
        n += k;
    }
    if (cap)
        out[w] = '\0';
    return n;
}

int gw_url_is_https(const char *url)
{
    if (!url || strncasecmp(url, "https://", 8) != 0)
        return 0;
    const char *host = url + 8;
    return *host && *host != '/' && *host != '?' && *host != '#';
}

/* A growable output buffer; |fail| latches the first allocation failure. */
typedef struct {
    char *p; /* owned */
    size_t len, cap;
    int fail;
} buf_t;

static void put(buf_t *b, const char *s, size_t n)
{
    if (b->fail)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 1024;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *np = cm_tryrealloc(b->p, ncap);
        if (!np) {
            b->fail = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(buf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_esc(buf_t *b, const char *s)
{
    size_t need = gw_html_escape(s, NULL, 0);
    char *tmp = cm_trymalloc(need + 1);
    if (!tmp) {
        b->fail = 1;
        return;
    }
    gw_html_escape(s, tmp, need + 1);
    put(b, tmp, need);
    free(tmp);
}

static void meta(buf_t *b, const char *prop, const char *value)
{
    puts_(b, "<meta property=\"");
    puts_(b, prop);
    puts_(b, "\" content=\"");
    put_esc(b, value);
    puts_(b, "\">\n");
}

char *gw_preview_render(const char *title, const char *description, const char *image_url,
                        const char *page_url, size_t *len)
{
    buf_t b = {0};
    int img = gw_url_is_https(image_url);
    title = title ? title : "";
    description = description ? description : "";

    puts_(&b, "<!DOCTYPE html>\n<html lang=\"en\" prefix=\"og: https://ogp.me/ns#\">\n<head>\n"
              "<meta charset=\"utf-8\">\n"
              "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
              "<meta name=\"robots\" content=\"noindex, nofollow\">\n<title>");
    put_esc(&b, title);
    puts_(&b, "</title>\n");
    meta(&b, "og:title", title);
    meta(&b, "og:description", description);
    meta(&b, "og:type", "website");
    meta(&b, "og:url", page_url ? page_url : "");
    if (img)
        meta(&b, "og:image", image_url);
    puts_(&b, "<style>body{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}"
              "img{max-width:100%}</style>\n</head>\n<body>\n<h1>");
    put_esc(&b, title);
    puts_(&b, "</h1>\n<p>");
    put_esc(&b, description);
    puts_(&b, "</p>\n");
    if (img) {
        puts_(&b, "<img src=\"");
        put_esc(&b, image_url);
        puts_(&b, "\" alt=\"\">\n");
    }
    puts_(&b, "</body>\n</html>\n");
    if (b.fail) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.p;
}
