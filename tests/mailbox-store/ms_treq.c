#include "ms_treq.h"

#include <stddef.h>
#include <string.h>

void ms_treq_create(ms_treq_create_t *c, const ms_treq_content_t *content, const char *id,
                    const char *claim, const char *corr, const char *rights, int64_t ttl,
                    const char *tok_type, const char *tok_data)
{
    *c = (ms_treq_create_t){.req = TIGRESS__MAILBOX__V1__CREATE_REQUEST__INIT,
                            .payload = TIGRESS__MAILBOX__V1__PAYLOAD__INIT,
                            .display = TIGRESS__MAILBOX__V1__DISPLAY_INFORMATION__INIT,
                            .token = TIGRESS__MAILBOX__V1__NOTIFICATION_TOKEN__INIT};
    c->payload.type = "AES128";
    c->payload.data.data = (uint8_t *)content->data;
    c->payload.data.len = strlen(content->data);
    c->display.title = (char *)content->title;
    c->display.description = (char *)content->description;
    c->display.image_url = (char *)content->image_url;
    c->req.mailbox_id = (char *)id;
    c->req.device_claim = (char *)claim;
    c->req.correlation_id = (char *)corr;
    c->req.payload = &c->payload;
    c->req.display = &c->display;
    c->req.access_rights = (char *)rights;
    c->req.ttl_seconds = ttl;
    if (tok_type) {
        c->token.type = (char *)tok_type;
        c->token.token_data = (char *)tok_data;
        c->req.notification_token = &c->token;
    }
}

void ms_treq_update(ms_treq_update_t *u, const char *id, const char *claim, const char *corr,
                    const char *data, const char *tok_type, const char *tok_data)
{
    *u = (ms_treq_update_t){.req = TIGRESS__MAILBOX__V1__UPDATE_REQUEST__INIT,
                            .payload = TIGRESS__MAILBOX__V1__PAYLOAD__INIT,
                            .token = TIGRESS__MAILBOX__V1__NOTIFICATION_TOKEN__INIT};
    u->payload.type = "AES128";
    u->payload.data.data = (uint8_t *)data;
    u->payload.data.len = strlen(data);
    u->req.mailbox_id = (char *)id;
    u->req.device_claim = (char *)claim;
    u->req.correlation_id = (char *)corr;
    u->req.payload = &u->payload;
    if (tok_type) {
        u->token.type = (char *)tok_type;
        u->token.token_data = (char *)tok_data;
        u->req.notification_token = &u->token;
    }
}
