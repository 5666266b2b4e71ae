/* pd_apns: Apple Push Notification service over HTTP/2 (nghttp2 client, OpenSSL TLS), with
 * token-based auth: an ES256 JWT {"alg":"ES256","kid":key id}.{"iss":team id,"iat":now} from
 * the .p8 key, cached and renewed every |jwt_refresh_s| (APNs refuses tokens older than an hour
 * and refreshes more frequent than every 20 minutes).
 *
 * One dedicated thread owns one long-lived connection and multiplexes up to the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS requests on it (one stream until its SETTINGS arrive). On
 * GOAWAY it stops opening streams, lets the open ones finish and reconnects for the next
 * request; refused and reset streams are retried by the delivery loop. Delivery threads call
 * send(), which queues the request for that thread and waits for its stream to close.
 *
 * Request: POST /3/device/<hex token> with apns-topic, apns-push-type: background,
 * apns-priority: 5, apns-expiration: the mailbox's expiry (APNs keeps it no longer), and body
 *   {"aps":{"content-available":1},"type":"mailbox_updated"}
 * The mailbox id is deliberately NOT included: the device already knows its mailboxes (it
 * holds their URLs) and re-reads them when woken, while the id is the capability that names a
 * mailbox (its share URL). Putting it in the push would hand Apple/Google, and anyone reading
 * notification logs on the device, a link between a device token and a transfer (Req-
 * NonCorelation) plus the key to the mailbox's preview. The same choice holds for FCM and
 * webhooks. */
#ifndef PD_APNS_H
#define PD_APNS_H

#include <stdint.h>

#include "pd_provider.h"

typedef struct {
    const char *key_file; /* .p8 (PKCS#8 PEM, P-256) */
    const char *key_id;
    const char *team_id;
    const char *topic;   /* the app's bundle id */
    const char *url;     /* https://host[:port], default https://api.push.apple.com */
    const char *ca_file; /* empty = system trust store */
    int64_t timeout_ms;  /* per request, and for connecting */
    int64_t jwt_refresh_s;
} pd_apns_opts_t;

/* Loads the key and starts the connection thread (it connects on the first request). Returns
 * 0, or -1 when the configuration is unusable (logged without secrets). */
int pd_apns_new(const pd_apns_opts_t *o, pd_provider_t **out);

#endif
