#include "ms_treq.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <grpc/status.h>

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

typedef struct {
    int (*read_secure)(void *ctx, int who);
    void *ctx;
    int who;
    pthread_barrier_t *bar;
    int code;
} racer_t;

static void *racer(void *arg)
{
    racer_t *r = arg;
    pthread_barrier_wait(r->bar);
    r->code = r->read_secure(r->ctx, r->who);
    return NULL;
}

int ms_treq_binding_race(int n, int base, int (*read_secure)(void *ctx, int who), void *ctx)
{
    assert_true(n > 0 && n <= MS_TREQ_RACERS);
    pthread_t t[MS_TREQ_RACERS];
    racer_t r[MS_TREQ_RACERS];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        r[i] = (racer_t){read_secure, ctx, base + i, &bar, -1};
        assert_int_equal(pthread_create(&t[i], NULL, racer, &r[i]), 0);
    }
    int winners = 0, winner = -1;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        if (r[i].code == 0) {
            winners++;
            winner = r[i].who;
        } else {
            assert_int_equal(r[i].code, GRPC_STATUS_PERMISSION_DENIED);
        }
    }
    pthread_barrier_destroy(&bar);
    assert_int_equal(winners, 1);
    return winner;
}
