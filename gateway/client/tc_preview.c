/* tc_preview: reads the OpenGraph tags a link preview shows (og:title, og:description,
 * og:image) out of the relay's ReadDisplayInformation page. A tolerant scanner, not an HTML
 * parser: it looks only at <meta property=... content=...> tags. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tc_int.h"

/* Finds attribute |name| inside the tag [p, end): the value's start and length. */
static int attr(const char *p, const char *end, const char *name, const char **v, size_t *vl)
{
    size_t nl = strlen(name);
    for (const char *s = p; s + nl < end; s++) {
        if (strncasecmp(s, name, nl) != 0 || (s > p && !isspace((unsigned char)s[-1])))
            continue;
        const char *q = s + nl;
        while (q < end && isspace((unsigned char)*q))
            q++;
        if (q >= end || *q != '=')
            continue;
        q++;
        while (q < end && isspace((unsigned char)*q))
            q++;
        if (q >= end || (*q != '"' && *q != '\''))
            continue;
        const char *close = memchr(q + 1, *q, (size_t)(end - q - 1));
        if (!close)
            return 0;
        *v = q + 1;
        *vl = (size_t)(close - q - 1);
        return 1;
    }
    return 0;
}

/* Decodes the HTML entities the relay writes (&amp; &lt; &gt; &quot; &#NN; &#xHH;) for ASCII
 * characters; anything else is kept as written. malloc'd or NULL. */
static char *unescape(const char *s, size_t len)
{
    static const struct {
        const char *name;
        char ch;
    } named[] = {{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}};
    char *out = malloc(len + 1);
    size_t w = 0;
    for (size_t i = 0; out && i < len; i++) {
        char ch = s[i];
        if (ch == '&') {
            size_t rest = len - i - 1;
            const char *e = s + i + 1;
            int done = 0;
            for (size_t k = 0; k < sizeof(named) / sizeof(named[0]) && !done; k++) {
                size_t nl = strlen(named[k].name);
                if (rest >= nl && strncmp(e, named[k].name, nl) == 0) {
                    ch = named[k].ch;
                    i += nl;
                    done = 1;
                }
            }
            if (!done && rest >= 3 && e[0] == '#') {
                size_t j = 1;
                int hex = e[1] == 'x' || e[1] == 'X', digits = 0;
                long v = 0;
                j += (size_t)hex;
                for (; j < rest && digits < 6; j++, digits++) {
                    int d = isdigit((unsigned char)e[j]) ? e[j] - '0'
                            : (hex && isxdigit((unsigned char)e[j]))
                                ? tolower((unsigned char)e[j]) - 'a' + 10
                                : -1;
                    if (d < 0)
                        break;
                    v = v * (hex ? 16 : 10) + d;
                }
                if (digits && j < rest && e[j] == ';' && v > 0 && v < 0x80) {
                    ch = (char)v;
                    i += j + 1;
                }
            }
        }
        out[w++] = ch;
    }
    if (out)
        out[w] = '\0';
    return out;
}

void tc_preview_free(tc_preview_t *p)
{
    if (!p)
        return;
    free(p->title);
    free(p->description);
    free(p->image_url);
    memset(p, 0, sizeof(*p));
}

tc_err_t tc_preview_parse(const char *html, size_t len, tc_preview_t *out)
{
    if (!out)
        return TC_ERR_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    const char *end = html ? html + len : NULL;
    for (const char *p = html; p && p + 5 < end; p++) {
        if (*p != '<' || strncasecmp(p + 1, "meta", 4) != 0)
            continue;
        const char *close = memchr(p, '>', (size_t)(end - p));
        if (!close)
            break;
        const char *prop, *content;
        size_t pl, cl;
        if (attr(p + 5, close, "property", &prop, &pl) &&
            attr(p + 5, close, "content", &content, &cl)) {
            char **slot = NULL;
            if (pl == 8 && strncmp(prop, "og:title", 8) == 0)
                slot = &out->title;
            else if (pl == 14 && strncmp(prop, "og:description", 14) == 0)
                slot = &out->description;
            else if (pl == 8 && strncmp(prop, "og:image", 8) == 0)
                slot = &out->image_url;
            if (slot && !*slot && !(*slot = unescape(content, cl))) {
                tc_preview_free(out);
                return TC_ERR_NOMEM;
            }
        }
        p = close;
    }
    return TC_OK;
}
