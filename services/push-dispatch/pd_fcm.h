/* pd_fcm: Firebase Cloud Messaging HTTP v1 (POST /v1/projects/{project}/messages:send) with
 * an OAuth2 access token from a service-account JWT grant (RS256, grant type
 * urn:ietf:params:oauth:grant-type:jwt-bearer), cached until shortly before it expires. The
 * message is a data-only, normal-priority message {"type":"mailbox_updated"} (no mailbox id:
 * see pd_apns.h) with an Android TTL up to the mailbox's expiry. */
#ifndef PD_FCM_H
#define PD_FCM_H

#include <stdint.h>

#include "pd_provider.h"

typedef struct {
    const char *service_account_file; /* JSON with client_email, private_key, token_uri */
    const char *project;              /* empty = project_id from the file */
    const char *url;                  /* base, default https://fcm.googleapis.com */
    const char *ca_file;              /* empty = system trust store */
    int64_t timeout_ms;
} pd_fcm_opts_t;

/* Builds the provider (pd_http_global_init must have run). Returns 0, or -1 when the
 * credentials cannot be used (logged, without secrets). */
int pd_fcm_new(const pd_fcm_opts_t *o, pd_provider_t **out);

#endif
