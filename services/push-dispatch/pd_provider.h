/* pd_provider: what the delivery loop knows about a provider (APNs, FCM, webhook).
 *
 * A provider turns one queued notification into one delivery attempt and classifies the
 * outcome; the delivery loop (pd_dispatch) owns retries, budgets and the queue. send() is
 * called from several delivery threads at once and must be thread-safe. */
#ifndef PD_PROVIDER_H
#define PD_PROVIDER_H

#include <stddef.h>
#include <stdint.h>

#define PD_ID_MAX 128     /* notification and mailbox ids */
#define PD_TOKEN_MAX 4096 /* tokenData */

/* One queued notification, as held in memory by pd_queue. */
typedef struct pd_entry {
    char id[PD_ID_MAX + 1];
    char mailbox[PD_ID_MAX + 1];
    char type[32];
    char *token; /* owned; NUL-terminated tokenData (never logged) */
    int64_t expires_ms;
    int64_t created_ms;
    int64_t next_ms;   /* not before this */
    uint32_t attempts; /* attempts made so far */
    int cancelled;     /* set by pd_queue while the entry is being delivered */
} pd_entry_t;

typedef enum {
    PD_R_OK = 0,    /* the provider accepted the notification */
    PD_R_RETRY,     /* 429, 5xx, network error, refreshable auth: try again later */
    PD_R_DEAD,      /* the provider says the token is dead: drop, never retry */
    PD_R_REJECTED,  /* any other permanent refusal (4xx): drop */
    PD_R_INVALID,   /* tokenData malformed for this provider: drop */
    PD_R_FORBIDDEN, /* webhook target refused (private address, not https): drop */
} pd_result_kind_t;

/* The outcome's name as metrics and logs show it: "ok", "retry", "dead_token", "rejected",
 * "invalid_token", "forbidden_target". */
static inline const char *pd_result_kind_name(pd_result_kind_t k)
{
    switch (k) {
    case PD_R_OK:
        return "ok";
    case PD_R_RETRY:
        return "retry";
    case PD_R_DEAD:
        return "dead_token";
    case PD_R_INVALID:
        return "invalid_token";
    case PD_R_FORBIDDEN:
        return "forbidden_target";
    case PD_R_REJECTED:
        break;
    }
    return "rejected";
}

typedef struct {
    pd_result_kind_t kind;
    int http_status;        /* 0 when no response was received */
    int64_t retry_after_ms; /* from Retry-After, or -1 */
    char reason[64];        /* short machine reason for logs and metrics (never a token) */
} pd_result_t;

typedef struct pd_provider {
    const char *name;       /* metrics label: "apns", "fcm", "webhook" */
    const char *token_type; /* notificationToken.type it serves */
    int (*send)(void *impl, const pd_entry_t *e, pd_result_t *r); /* fills |r|; returns 0 */
    /* Asks in-flight sends to finish within |grace_ms| and then to give up (as PD_R_RETRY). */
    void (*shutdown)(void *impl, int64_t grace_ms);
    void (*del)(void *impl);
    void *impl; /* owned; freed by del */
} pd_provider_t;

/* Milliseconds since the epoch (wall clock: expiries are wall-clock times). */
int64_t pd_now_ms(void);

/* Parses a Retry-After value (delta seconds or HTTP-date) into milliseconds from now, or -1. */
int64_t pd_retry_after_ms(const char *v, size_t len);

static inline void pd_result_set(pd_result_t *r, pd_result_kind_t k, int status, const char *why)
{
    r->kind = k;
    r->http_status = status;
    r->reason[0] = '\0';
    if (why) {
        size_t n = 0;
        for (; why[n] && n + 1 < sizeof(r->reason); n++)
            r->reason[n] = (why[n] >= 'A' && why[n] <= 'Z') || (why[n] >= 'a' && why[n] <= 'z') ||
                                   (why[n] >= '0' && why[n] <= '9') || why[n] == '_'
                               ? why[n]
                               : '_';
        r->reason[n] = '\0';
    }
}

#endif
