#include "th_gwapi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/thread.h>

#include "cm_metrics.h"
#include "cm_rpc.h"
#include "gw_int.h"

struct th_gwapi {
    gw_loop_t *loop;       /* owned; run by the caller's thread */
    gw_backend_t *backend; /* owned */
    gw_api_t *api;         /* owned */
};

/* One request of a burst and where its answer goes. */
typedef struct {
    gw_req_t *r; /* owned until answered and copied */
    th_http_resp_t *out;
    int answered;
} slot_t;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void th_gwapi_defaults(int store_port, gw_backend_config_t *bc, gw_api_config_t *ac)
{
    static __thread char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", store_port);
    *bc = (gw_backend_config_t){.store_target = target, .timeout_ms = 2000, .store_batch = 1};
    *ac = (gw_api_config_t){.public_base_url = "https://relay.example/",
                            .attestation_policy = "verify-if-present",
                            .timeout_ms = 2000,
                            .max_ttl = 172800};
}

int th_gwapi_new(const gw_backend_config_t *bc, const gw_api_config_t *ac, th_gwapi_t **out)
{
    static int once;
    if (!once) {
        once = 1;
        cm_rpc_init();
        evthread_use_pthreads();
    }
    th_gwapi_t *g = calloc(1, sizeof(*g));
    if (!g)
        abort();
    if (gw_backend_new(bc, &g->backend) != 0 || gw_api_new(ac, g->backend, &g->api) != 0)
        goto fail;
    /* the gateway's defaults for the limits the handler's requests go through */
    gw_server_config_t cfg = {.max_body = 65536,
                              .max_header_bytes = 16384,
                              .max_headers = 100,
                              .max_concurrent_streams = 100,
                              .idle_timeout_ms = 60000,
                              .request_timeout_ms = 10000,
                              .max_connections = 10,
                              .max_resets = 200,
                              .access_log = 0,
                              .handler = gw_api_handle,
                              .handler_ctx = g->api};
    g->loop = gw_loop_new_detached(&cfg);
    if (!g->loop)
        goto fail;
    *out = g;
    return 0;
fail:
    th_gwapi_free(g);
    return -1;
}

void th_gwapi_free(th_gwapi_t *g)
{
    if (!g)
        return;
    /* the backend's cancelled calls are posted to the loop, which runs them as it closes;
     * they may still call into the API, freed last */
    gw_backend_free(g->backend);
    if (g->loop)
        gw_loop_free_detached(g->loop);
    gw_api_free(g->api);
    free(g);
}

static void on_response(gw_req_t *r, void *arg)
{
    slot_t *s = arg;
    th_http_resp_t *out = s->out;
    out->status = gw_req_response_status(r);
    size_t len = 0;
    const uint8_t *body = gw_req_response_body(r, &len);
    out->body = malloc(len + 1);
    if (!out->body)
        abort();
    memcpy(out->body, body, len);
    out->body[len] = '\0';
    out->len = len;
    const char *ct = gw_req_response_type(r);
    if (ct)
        out->hlen += (size_t)snprintf(out->headers + out->hlen, sizeof(out->headers) - out->hlen,
                                      "content-type: %s\r\n", ct);
    for (int i = 0; i < r->nrhdrs && out->hlen < sizeof(out->headers); i++)
        out->hlen += (size_t)snprintf(out->headers + out->hlen, sizeof(out->headers) - out->hlen,
                                      "%s: %s\r\n", r->rhdrs[i].name, r->rhdrs[i].value);
    if (out->hlen >= sizeof(out->headers))
        out->hlen = sizeof(out->headers) - 1;
    s->answered = 1;
}

/* Builds |rq| as a loopback request answering into |s| (not dispatched yet). */
static gw_req_t *build(th_gwapi_t *g, const th_http_req_t *rq, slot_t *s)
{
    memset(s->out, 0, sizeof(*s->out));
    gw_req_t *r = gw_req_new_loopback(g->loop, on_response, s);
    gw_req_set_method(r, rq->method);
    if (gw_req_set_target(r, rq->path, strlen(rq->path)) != 0)
        r->limit_err = GW_ERR_BAD_REQUEST;
    int has_ct = 0;
    for (size_t i = 0; rq->headers && rq->headers[i]; i++) {
        const char *h = rq->headers[i], *colon = strchr(h, ':');
        if (!colon)
            continue;
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        has_ct |= (size_t)(colon - h) == 12 && strncasecmp(h, "content-type", 12) == 0;
        gw_req_store_header(r, h, (size_t)(colon - h), v, strlen(v));
    }
    if (rq->body) {
        if (!has_ct)
            gw_req_store_header(r, "content-type", 12, "application/json", 16);
        size_t blen = rq->body_len ? rq->body_len : strlen(rq->body);
        gw_req_append_body(r, (const uint8_t *)rq->body, blen);
    } else if (rq->empty_post && !strcmp(rq->method, "POST")) {
        gw_req_append_body(r, (const uint8_t *)"", 0);
    }
    r->input_done = 1;
    s->r = r;
    return r;
}

size_t th_gwapi_burst(th_gwapi_t *g, const th_http_req_t *rqs, size_t n, th_http_resp_t *out,
                      long timeout_ms)
{
    slot_t *slots = calloc(n ? n : 1, sizeof(*slots));
    if (!slots)
        abort();
    for (size_t i = 0; i < n; i++) {
        slots[i].out = &out[i];
        build(g, &rqs[i], &slots[i]);
    }
    /* all handed over before the loop runs: their store reads meet in one iteration */
    for (size_t i = 0; i < n; i++)
        gw_req_dispatch(slots[i].r);
    long long end = now_ms() + (timeout_ms > 0 ? timeout_ms : 20000);
    size_t done = 0;
    for (;;) {
        done = 0;
        for (size_t i = 0; i < n; i++)
            done += slots[i].answered ? 1 : 0;
        if (done == n || now_ms() >= end)
            break;
        gw_loop_run_once(g->loop, 1);
    }
    for (size_t i = 0; i < n; i++) {
        if (!slots[i].answered) {
            snprintf(out[i].err, sizeof(out[i].err), "no answer within %ld ms", timeout_ms);
            out[i].body = calloc(1, 1);
        }
        gw_req_loopback_free(slots[i].r);
    }
    free(slots);
    return done;
}

int th_gwapi_request(th_gwapi_t *g, const th_http_req_t *rq, th_http_resp_t *out)
{
    return th_gwapi_burst(g, rq, 1, out, rq->timeout_ms) == 1 ? 0 : -1;
}

char *th_gwapi_metrics(void)
{
    size_t len = 0;
    return cm_metrics_render(&len);
}
