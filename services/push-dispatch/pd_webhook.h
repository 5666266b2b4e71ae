/* pd_webhook: HTTPS POST of {"type":"mailbox_updated","deliveryId":...,"timestamp":...} to the
 * URL in tokenData, signed like GitHub/Stripe webhooks:
 *   Tigress-Webhook-Id:        the delivery id (the notification id; same on every retry, so
 *                              receivers can drop duplicates)
 *   Tigress-Webhook-Timestamp: unix seconds when this attempt was signed
 *   Tigress-Webhook-Signature: v1=<hex HMAC-SHA-256(secret, timestamp + "." + body)>
 * Receivers should check the signature with a constant-time compare and reject old timestamps
 * (e.g. > 5 minutes) against replay. Only https URLs. The host is resolved here and every
 * address checked: loopback, private (RFC 1918, ULA), link-local, CGNAT, multicast,
 * unspecified and other special ranges are refused unless allow_private; the connection is
 * pinned to the checked address so a second DNS answer cannot redirect it (DNS rebinding).
 * Redirects are never followed. 2xx = delivered, 410 = dead URL, 429/5xx/network = retry,
 * other 4xx = rejected. */
#ifndef PD_WEBHOOK_H
#define PD_WEBHOOK_H

#include <stdint.h>

#include "pd_provider.h"

typedef struct {
    const char *secret_file; /* HMAC key (file contents, trailing newline stripped) */
    int allow_private;       /* tests only */
    const char *ca_file;     /* empty = system trust store */
    int64_t timeout_ms;
} pd_webhook_opts_t;

int pd_webhook_new(const pd_webhook_opts_t *o, pd_provider_t **out);

/* 1 when |sa| is an address a webhook must never reach (see above). Exposed for tests. */
struct sockaddr;
int pd_webhook_addr_forbidden(const struct sockaddr *sa);

#endif
