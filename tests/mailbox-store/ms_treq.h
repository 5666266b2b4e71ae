/* ms_treq: the MailboxStore wire requests the gRPC suites build (test_ms_integration). Each
 * request is kept together with the messages it points to: keep the struct alive while it is
 * used. */
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

#endif
