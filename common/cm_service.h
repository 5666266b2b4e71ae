/* cm_service: the skeleton every service's main() shares: signals, options, logging, gRPC
 * start and stop, the admin port, the ready file and the wait for a stop signal.
 *
 *   static cm_service_t svc = {.name = "push-dispatch", .summary = "..."};
 *   static cm_opt_t opts[] = {
 *       {"listen", ...},
 *       {"admin-listen", CM_OPT_STR, "127.0.0.1:9102", "...", &svc.admin_listen},
 *       {"log-level", CM_OPT_STR, "info", "...", &svc.log_level},
 *       {"ready-file", CM_OPT_STR, NULL, "...", &svc.ready_file},
 *       ... the service's own options ...
 *   };
 *   int main(int argc, char **argv) {
 *       int rc = cm_service_init(&svc, opts, n, argc, argv, NULL);
 *       if (rc != CM_SERVICE_RUN)
 *           return cm_service_exit_code(rc);        // --help: 0, bad options: 2
 *       ... check the service's own options (exit 2 on a bad one) ...
 *       cm_service_rpc_init(&svc);                  // grpc_init: threads start from here on
 *       ... open storage, create and start the gRPC server (port 0 allowed) ...
 *       cm_service_port_t ports[] = {{"grpc_port", port}, {NULL, 0}};
 *       if (cm_service_ready(&svc, ports) != 0) goto out;   // admin listener, ready file
 *       int sig = cm_service_wait(&svc, NULL, NULL);         // SIGTERM or SIGINT
 *       ... drain: stop the server, let work finish ...
 *   out:
 *       ... free the service's parts ...
 *       cm_service_end(&svc);                       // admin listener, grpc_shutdown
 *   }
 *
 * Order matters: the signals are blocked before any thread exists (gRPC starts its own in
 * grpc_init and they inherit the mask), so SIGTERM reaches only cm_service_wait's sigwait and
 * never kills the process halfway through a write. The ready file is written last, once every
 * listener is bound: test harnesses and supervisors wait for it and read the ports from it.
 * /readyz answers 200 from cm_service_ready until the stop signal, and only while |ready|
 * (when set) says so; /healthz answers 200 while the process runs. The gateway and other
 * binaries that listen on more than a gRPC port list each port in |ports|. */
#ifndef CM_SERVICE_H
#define CM_SERVICE_H

#include <stdatomic.h>

#include "cm_admin.h"
#include "cm_config.h"

typedef struct {
    /* Set by the caller before cm_service_init. */
    const char *name;    /* binary name: --help title, log "service" field; static */
    const char *summary; /* one line for --help; static */
    /* Optional readiness check for /readyz (runs on the admin thread): 1 when ready. NULL:
     * ready from cm_service_ready until the stop signal. */
    int (*ready)(void *arg);
    void *ready_arg;

    /* Filled from the options table (point its entries here); NULL or "" where not given. */
    const char *log_level;    /* NULL: "info" */
    const char *ready_file;   /* NULL/"": no ready file */
    const char *admin_listen; /* NULL/"": no admin listener */

    /* Private. */
    cm_admin_t *_admin; /* owned */
    int _admin_port;
    int _rpc_up;
    atomic_int _serving;
} cm_service_t;

typedef struct {
    const char *name; /* JSON key in the ready file, e.g. "grpc_port"; NULL ends a list */
    int port;
} cm_service_port_t;

enum {
    CM_SERVICE_RUN = 0,  /* go on */
    CM_SERVICE_HELP = 1, /* --help was printed: exit 0 */
    CM_SERVICE_USAGE = 2 /* bad options, message printed: exit 2 */
};

/* Blocks SIGINT, SIGTERM and SIGUSR1 for this thread and every thread created later, parses
 * |argv| and the environment into |opts| (see cm_config_parse; |npos| as there) and sets up
 * logging at svc->log_level. Returns CM_SERVICE_RUN, CM_SERVICE_HELP or CM_SERVICE_USAGE. */
int cm_service_init(cm_service_t *svc, cm_opt_t *opts, size_t nopts, int argc, char **argv,
                    int *npos);

/* The process exit code for a cm_service_init result other than CM_SERVICE_RUN. */
int cm_service_exit_code(int init_result);

/* grpc_init(), with gRPC's own log lines routed through cm_log. A mode that needs no gRPC (a
 * command-line tool mode) skips it; cm_service_end then skips grpc_shutdown. */
void cm_service_rpc_init(cm_service_t *svc);

/* Starts the admin listener (unless svc->admin_listen is empty), marks the service ready and
 * writes the ready file: {"<ports[0].name>":N,...,"admin_port":N} (admin_port only with an
 * admin listener). |ports| ends with a NULL name; may be NULL. Returns 0, or -1 (logged). */
int cm_service_ready(cm_service_t *svc, const cm_service_port_t *ports);

/* The admin listener's bound port; 0 without one. */
int cm_service_admin_port(const cm_service_t *svc);

/* Waits for SIGTERM or SIGINT (SIGUSR1 calls |on_usr1| when not NULL and keeps waiting), then
 * marks the service not ready (/readyz 503) and returns the signal: the caller drains. */
int cm_service_wait(cm_service_t *svc, void (*on_usr1)(void *arg), void *arg);

/* 1 between cm_service_ready and the stop signal. Thread-safe. */
int cm_service_serving(const cm_service_t *svc);

/* Stops the admin listener now rather than in cm_service_end: for a service whose |ready| check
 * reads state it frees before gRPC may shut down (the gateway's server core). Idempotent. */
void cm_service_admin_stop(cm_service_t *svc);

/* Stops the admin listener and, after cm_service_rpc_init, shuts gRPC down: call last, after
 * every server and channel is gone. Safe after a failed or partial start. */
void cm_service_end(cm_service_t *svc);

#endif
