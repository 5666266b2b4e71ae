/* gw_preview: the OpenGraph HTML page of ReadDisplayInformation (draft §6.4), rendered from the
 * mailbox's display information. Pure: no I/O. Every value is HTML-escaped; the page has no
 * script and only inline style, so the Content-Security-Policy the API sends with it
 * (GW_PREVIEW_CSP) holds. */
#ifndef GW_PREVIEW_H
#define GW_PREVIEW_H

#include <stddef.h>

#define GW_PREVIEW_CSP "default-src 'none'; img-src https:; style-src 'unsafe-inline'"

/* Renders the page. |title|, |description| and |image_url| come from the mailbox (any of them
 * may be NULL or ""); og:image is emitted only for an https URL. |page_url| is the mailbox's
 * public URL (og:url). Returns a malloc'd NUL-terminated page and its length in *len, or NULL
 * when out of memory. */
char *gw_preview_render(const char *title, const char *description, const char *image_url,
                        const char *page_url, size_t *len);

/* Appends the HTML-escaped form of |s| (& < > " ' become entities) to |out| (capacity |cap|,
 * NUL-terminated). Returns the length the full result needs (excluding NUL), like snprintf. */
size_t gw_html_escape(const char *s, char *out, size_t cap);

/* 1 when |url| is an absolute https URL (scheme case-insensitive, non-empty host); else 0. */
int gw_url_is_https(const char *url);

#endif
