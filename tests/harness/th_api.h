/* th_api: the public API's test helpers, one set for every gateway test, whether it drives the
 * API in-process (th_gwapi) or a gateway process over the network (th_http: h2c, HTTP/1.1,
 * TLS). A th_api_t names the target; the helpers send the requests a phone sends and assert
 * what it must see (cmocka: a failed check fails the calling test). */
#ifndef TH_API_H
#define TH_API_H

#include <stddef.h>

#include "th.h"
#include "th_gwapi.h"
#include "th_http.h"

typedef struct {
    th_gwapi_t *inproc;    /* the in-process API; NULL: over the network with the fields below */
    CURL *curl;            /* network: the handle (keeps its connection alive) */
    th_http_proto_t proto; /* network: h1, h2c or TLS; the answer must come in that version */
    int port;              /* network: on 127.0.0.1 */
    const char *ca_file;   /* network, TLS: the CA the server's certificate is checked with */
    int empty_post;        /* a POST without a body sends an empty one (Content-Length: 0) */
} th_api_t;

/* "in-process", "h2c", "http/1.1" or "https(h2)". */
const char *th_api_name(const th_api_t *t);

/* One request (|body| NULL: none; "Name: value" |headers|, NULL-terminated, may be NULL).
 * A transport error, no answer within 15 s, or (network) an HTTP version other than the one
 * asked for fails the test. Free |out| with th_http_resp_free. */
void th_api_do(const th_api_t *t, const char *method, const char *path, const char *const *headers,
               const char *body, th_http_resp_t *out);

/* Asserts an error answer: |status|, a JSON content type, a JSON error body with a message and
 * a code, the code equal to |code| when not NULL. */
void th_api_expect_error(const th_http_resp_t *r, long status, const char *code);

/* Asserts |status| and, when |code| is not NULL, the error code; names |what| on failure.
 * Frees |r|. */
void th_api_expect(th_http_resp_t *r, long status, const char *code, const char *what);

/* Header lines built in |slot| (0..7) of a static buffer: valid until the slot is reused. */
const char *th_api_hdr(int slot, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A fresh version 4 UUID (asserted to succeed). */
void th_api_uuid(char out[37]);

/* base64 of |n| (<= 256) bytes all equal to |fill|. */
void th_api_payload_b64(int fill, size_t n, char *out);

/* A mailbox a test created: its id and its creator's claim. */
typedef struct {
    char id[37];
    char sender[37];
} th_mbx_t;

/* Creates a mailbox with 40 payload bytes |fill|, display title |title| (NULL: "Car Key"), a
 * push token and a one-hour lifetime; asserts 200, the echoed correlation id, urlLink under
 * https://relay.example/ and isPushNotificationSupported false. */
void th_api_create(const th_api_t *t, th_mbx_t *m, int fill, const char *title);

/* POST read as |claim|: returns the status; on 200 asserts the answer's shape and sets *fill
 * (may be NULL) to the first payload byte; otherwise asserts a JSON error. */
long th_api_read_secure(const th_api_t *t, const char *id, const char *claim, int *fill);

/* PUT with 48 payload bytes |fill| and an FCM token as |claim|; returns the status. */
long th_api_update(const th_api_t *t, const char *id, const char *claim, int fill);

/* DELETE as |claim|; returns the status. */
long th_api_delete(const th_api_t *t, const char *id, const char *claim);

/* GET (the preview page) into |r| (free it); returns the status. */
long th_api_preview(const th_api_t *t, const char *id, th_http_resp_t *r);

/* ---- fixture: a real mailbox-store and the API in-process -------------------------------- */

/* mailbox-store on 127.0.0.1:|port| (0: ephemeral) over |data_dir| with the flags the API
 * tests use (2 workers, no fsync, warnings only). 0 or -1. */
int th_api_store_start(th_proc_t *p, const char *data_dir, int port);

typedef struct {
    char dir[512];   /* temp dir: store data and whatever the test writes */
    th_proc_t store; /* the shared store */
    int store_port;
    th_gwapi_t *gw; /* owned: the API with th_gwapi_defaults against |store| */
    th_api_t api;   /* in-process target on |gw| */
} th_api_env_t;

/* Temp dir named after |prefix|, the store, the in-process API. 0 or -1. */
int th_api_env_start(th_api_env_t *e, const char *prefix);
/* Frees the API, stops the store (a non-zero exit fails: -1) and removes the temp dir. */
int th_api_env_stop(th_api_env_t *e);

#endif
