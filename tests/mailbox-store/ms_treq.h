/* ms_treq: the MailboxStore requests that both store suites build the same way, test_ms_store
 * for the store logic in-process and test_ms_integration for the binary over gRPC. Each request
 * is kept together with the messages it points to: keep the struct alive while it is used.
 * Also the binding race both run, over either path. */
#ifndef MS_TREQ_H
#define MS_TREQ_H

#include <stdint.h>

#include "tigress/mailbox/v1/mailbox_store.pb-c.h"

/* What a suite stores in every mailbox it creates. */
typedef struct {
    const char *data; /* AES128 payload bytes, as a string */
    const char *title, *description, *image_url;
} ms_treq_content_t;

typedef struct {
    Tigress__Mailbox__V1__CreateRequest req; /* points to the members below */
    Tigress__Mailbox__V1__Payload payload;
    Tigress__Mailbox__V1__DisplayInformation display;
    Tigress__Mailbox__V1__NotificationToken token;
} ms_treq_create_t;

typedef struct {
    Tigress__Mailbox__V1__UpdateRequest req; /* points to the members below */
    Tigress__Mailbox__V1__Payload payload;
    Tigress__Mailbox__V1__NotificationToken token;
} ms_treq_update_t;

/* A Create of |content|; a notification token only when |tok_type| is set. The strings are
 * borrowed, not copied. */
void ms_treq_create(ms_treq_create_t *c, const ms_treq_content_t *content, const char *id,
                    const char *claim, const char *corr, const char *rights, int64_t ttl,
                    const char *tok_type, const char *tok_data);

/* An Update to AES128 payload |data| (a string); a token only when |tok_type| is set. */
void ms_treq_update(ms_treq_update_t *u, const char *id, const char *claim, const char *corr,
                    const char *data, const char *tok_type, const char *tok_data);

/* The binding race of issue 2 §3: |n| threads (at most MS_TREQ_RACERS) call |read_secure|(ctx,
 * base + i) at the same moment (behind a barrier), each with its own claim. Asserts (cmocka)
 * that exactly one got 0 and every other PERMISSION_DENIED; returns the winner's number. */
#define MS_TREQ_RACERS 64
int ms_treq_binding_race(int n, int base, int (*read_secure)(void *ctx, int who), void *ctx);

#endif
