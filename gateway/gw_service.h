/* gw_service: runs a gateway-style process around a request handler. It is the shared service
 * skeleton common/cm_service (signals blocked before any thread, options, logging, gRPC for the
 * backends, the admin listener, the ready file, the wait for SIGTERM/SIGINT) plus what only the
 * gateway has: the server core's options (listeners, TLS, limits, drain), its event loops in
 * place of a gRPC server, http_port/https_port in the ready file, /readyz following the core's
 * accepting state, and the graceful drain. The gateway's main.c runs the public API with it;
 * tests/gateway-core runs a test handler with it, so both exercise the same process. */
#ifndef GW_SERVICE_H
#define GW_SERVICE_H

#include <stddef.h>

#include "cm_config.h"
#include "gw_http.h"

typedef struct {
    const char *name;    /* program name for --help and errors, e.g. "gateway" */
    const char *summary; /* one line for --help */
    cm_opt_t *opts;      /* the application's own options, parsed with the core's; may be NULL */
    size_t nopts;
    void *app; /* passed to the callbacks below */
    /* After the options are parsed and logging is up, before listeners are bound: sets the
     * handler and its context. Returns 0 or -1 (logged; the process exits 1). */
    int (*start)(void *app, int nloops, gw_handler_fn *handler, void **handler_ctx);
    /* After the server drained (its loops still run, so the completions of backends that stop
     * here are still delivered), also when a later start step failed: stops the backends.
     * May be NULL. */
    void (*stop)(void *app);
    /* After the server and its loops are gone: frees what is left (the handler's context).
     * May be NULL. */
    void (*destroy)(void *app);
} gw_service_t;

/* The whole process: returns the exit code for main (0 after a clean stop or --help, 1 on a
 * start failure, 2 on bad options). */
int gw_service_main(const gw_service_t *svc, int argc, char **argv);

#endif
