/* th_gwapi: the gateway's public API driven in-process, without sockets: requests in,
 * responses out. A th_gwapi_t is the real API (gateway_api) with a real backend instance
 * (gRPC to the real mailbox-store, verifier, push-dispatch a test started), on a core loop
 * that the calling thread runs while it waits for answers. Requests are the core's loopback
 * requests (gw_req_new_loopback): the core's header and body limits, request ids, metrics and
 * the handler see them exactly as they see a request from a connection.
 *
 * Answers come back as th_http_resp_t (status, header lines, body; version 0) so the same
 * assertions serve the in-process and the network tests (th_api.h). */
#ifndef TH_GWAPI_H
#define TH_GWAPI_H

#include <stddef.h>

#include "gw_api.h"
#include "gw_backend.h"
#include "th_http.h"

typedef struct th_gwapi th_gwapi_t;

/* The configuration a test starts from: the store at 127.0.0.1:|store_port|, store batches
 * on, 2000 ms backend deadline, public base URL https://relay.example/, max TTL 172800 s,
 * attestation policy verify-if-present, no push-dispatch or verifier. */
void th_gwapi_defaults(int store_port, gw_backend_config_t *bc, gw_api_config_t *ac);

/* Creates the backend and the API on a fresh loop owned by the calling thread (the only
 * thread that may use the instance). Returns 0, or -1 when the backend or the API refuses
 * the configuration. */
int th_gwapi_new(const gw_backend_config_t *bc, const gw_api_config_t *ac, th_gwapi_t **out);
/* Stops the backend, delivers its last completions and frees everything. NULL is ignored. */
void th_gwapi_free(th_gwapi_t *g);

/* One request. |body| NULL: none; sent with Content-Type: application/json unless |headers|
 * names one (as th_http does). Waits up to |timeout_ms| for the answer. Returns 0, or -1
 * (out->err says why: no answer in time). */
int th_gwapi_request(th_gwapi_t *g, const th_http_req_t *rq, th_http_resp_t *out);

/* |n| requests handed to the API in one loop iteration (the way a burst of HTTP/2 streams
 * arrives), then the loop runs until all are answered or |timeout_ms| passed. |out| has |n|
 * entries. Returns the number answered. */
size_t th_gwapi_burst(th_gwapi_t *g, const th_http_req_t *rqs, size_t n, th_http_resp_t *out,
                      long timeout_ms);

/* The process's metrics in Prometheus text (malloc'd). */
char *th_gwapi_metrics(void);

#endif
