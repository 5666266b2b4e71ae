/* libFuzzer target: the gateway core's HTTP/1.1 request path (sniffing, http-parser callbacks,
 * header/body limits, pipelining, responses) on a real connection object fed through a
 * libevent bufferevent pair. The API answers synchronously. Built and run by fuzz_h1.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "cm_log.h"
#include "gw_int.h"

static void handle(void *ctx, gw_req_t *r);

static gw_server_config_t cfg = {
    .handler = handle,
    .max_body = 4096,
    .max_header_bytes = 2048,
    .max_headers = 20,
    .max_concurrent_streams = 10,
    .idle_timeout_ms = 1000,
    .request_timeout_ms = 1000,
    .max_connections = 10,
    .max_resets = 10,
    .access_log = 0,
};

static void handle(void *ctx, gw_req_t *r)
{
    size_t n;
    const uint8_t *b = gw_req_body(r, &n);
    const char *h = gw_req_header(r, "x-test");
    gw_req_set_route(r, "fuzz");
    if (h)
        gw_req_add_header(r, "x-test", h);
    gw_req_add_header(r, "x-id", gw_req_id(r));
    char out[64];
    int k = snprintf(out, sizeof(out), "%s %zu %s %d", gw_req_method(r), n, gw_req_query(r),
                     gw_req_has_body(r));
    (void)b;
    gw_req_respond(r, 200, "text/plain", out, (size_t)(k > 0 && k < 64 ? k : 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gw_loop_t *loop;
    if (!loop) {
        cm_log_init("fuzz", CM_LOG_ERROR);
        loop = gw_loop_new_detached(&cfg);
        if (!loop)
            abort();
    }
    struct bufferevent *pair[2];
    if (bufferevent_pair_new(loop->base, 0, pair) != 0)
        abort();
    /* The first byte picks how the input is split into reads, to reach the paths where a
     * head or a chunk straddles two reads. */
    size_t split = size ? (size_t)data[0] % (size + 1) : 0;
    gw_conn_t *c = gw_conn_adopt(loop, pair[0], 0);
    (void)c;
    bufferevent_enable(pair[1], EV_READ | EV_WRITE);
    bufferevent_write(pair[1], data, split);
    for (int i = 0; i < 4; i++)
        event_base_loop(loop->base, EVLOOP_NONBLOCK);
    bufferevent_write(pair[1], data + split, size - split);
    for (int i = 0; i < 8; i++)
        event_base_loop(loop->base, EVLOOP_NONBLOCK);
    gw_conn_t *next;
    for (gw_conn_t *k = loop->conns; k; k = next) {
        next = k->next;
        gw_conn_kill(k);
    }
    bufferevent_free(pair[1]);
    event_base_loop(loop->base, EVLOOP_NONBLOCK);
    return 0;
}
