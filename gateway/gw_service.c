#include "gw_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/thread.h>

#include "cm_alloc.h"
#include "cm_log.h"
#include "cm_service.h"
#include "gw_server.h"

/* The process skeleton (signals, options, logging, gRPC, admin port, ready file, stop signal)
 * is common/cm_service, shared with the other services; this layer adds the server core's
 * options, its event loops in place of a gRPC server and the drain. */
static cm_service_t S;
static const char *o_http_listen, *o_https_listen, *o_tls_cert, *o_tls_key;
static int64_t o_threads, o_max_body, o_max_header_bytes, o_max_headers, o_max_streams, o_idle_ms,
    o_request_ms, o_max_conns, o_max_resets, o_drain_ms;
static int o_access_log;

static cm_opt_t CORE_OPTS[] = {
    {"log-level", CM_OPT_STR, "info", "debug, info, warn or error", &S.log_level},
    {"ready-file", CM_OPT_STR, NULL, "write the bound ports as JSON here once listening",
     &S.ready_file},
    {"admin-listen", CM_OPT_STR, "127.0.0.1:9100", "admin HTTP (/metrics /healthz /readyz)",
     &S.admin_listen},
    {"http-listen", CM_OPT_STR, "127.0.0.1:8080",
     "cleartext listener (h2c prior knowledge and HTTP/1.1); empty = none", &o_http_listen},
    {"https-listen", CM_OPT_STR, "127.0.0.1:8443", "TLS listener (ALPN h2, http/1.1)",
     &o_https_listen},
    {"tls-cert", CM_OPT_STR, NULL, "PEM certificate chain; with --tls-key empty: no TLS listener",
     &o_tls_cert},
    {"tls-key", CM_OPT_STR, NULL, "PEM private key", &o_tls_key},
    {"threads", CM_OPT_INT, "0", "event loops (0 = number of CPUs)", &o_threads},
    {"max-body", CM_OPT_INT, "65536", "request body limit in bytes (beyond: 413)", &o_max_body},
    {"max-header-bytes", CM_OPT_INT, "16384", "request header list size limit (beyond: 431)",
     &o_max_header_bytes},
    {"max-headers", CM_OPT_INT, "100", "request header count limit (beyond: 431)", &o_max_headers},
    {"max-concurrent-streams", CM_OPT_INT, "100", "HTTP/2 streams per connection", &o_max_streams},
    {"idle-timeout-ms", CM_OPT_INT, "60000", "close a connection idle this long", &o_idle_ms},
    {"request-timeout-ms", CM_OPT_INT, "10000",
     "headers and body must arrive within this (beyond: 408 / close)", &o_request_ms},
    {"max-connections", CM_OPT_INT, "10000", "open client connections (beyond: closed at once)",
     &o_max_conns},
    {"max-resets", CM_OPT_INT, "200", "HTTP/2 RST_STREAMs per connection before GOAWAY",
     &o_max_resets},
    {"drain-timeout-ms", CM_OPT_INT, "10000", "on SIGTERM, wait this long for in-flight requests",
     &o_drain_ms},
    {"access-log", CM_OPT_BOOL, "1", "one info log line per request", &o_access_log},
};

static int admin_ready(void *arg)
{
    return gw_server_accepting(arg);
}

static int check_range(const char *prog, const char *name, int64_t v, int64_t lo, int64_t hi)
{
    if (v < lo || v > hi) {
        fprintf(stderr, "%s: --%s must be between %lld and %lld\n", prog, name, (long long)lo,
                (long long)hi);
        return -1;
    }
    return 0;
}

/* Parses the core's and the application's options and sets up logging (cm_service_init: the
 * signals are blocked first). 0, 1 (--help: exit 0) or -1 (exit 2). */
static int parse_options(const gw_service_t *svc, int argc, char **argv)
{
    size_t ncore = sizeof(CORE_OPTS) / sizeof(CORE_OPTS[0]);
    cm_opt_t *opts = cm_xcalloc(ncore + svc->nopts, sizeof(*opts));
    memcpy(opts, CORE_OPTS, sizeof(CORE_OPTS));
    if (svc->nopts)
        memcpy(opts + ncore, svc->opts, svc->nopts * sizeof(*opts));
    S.name = svc->name;
    S.summary = svc->summary;
    S.ready = admin_ready;
    int rc = cm_service_init(&S, opts, ncore + svc->nopts, argc, argv, NULL);
    free(opts);
    if (rc != CM_SERVICE_RUN)
        return rc == CM_SERVICE_HELP ? 1 : -1;
    const char *p = svc->name;
    if (check_range(p, "threads", o_threads, 0, 256) ||
        check_range(p, "max-body", o_max_body, 0, 1 << 30) ||
        check_range(p, "max-header-bytes", o_max_header_bytes, 256, 1 << 20) ||
        check_range(p, "max-headers", o_max_headers, 1, 10000) ||
        check_range(p, "max-concurrent-streams", o_max_streams, 1, 10000) ||
        check_range(p, "idle-timeout-ms", o_idle_ms, 1, 86400000) ||
        check_range(p, "request-timeout-ms", o_request_ms, 1, 86400000) ||
        check_range(p, "max-connections", o_max_conns, 1, 1000000) ||
        check_range(p, "max-resets", o_max_resets, 1, 1000000) ||
        check_range(p, "drain-timeout-ms", o_drain_ms, 0, 3600000))
        return -1;
    return 0;
}

static int threads_wanted(void)
{
    if (o_threads > 0)
        return (int)o_threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* The ready file's ports: http_port, https_port (with a TLS listener), then admin_port. */
static void ready_ports(gw_server_t *srv, cm_service_port_t ports[3])
{
    size_t n = 0;
    ports[n++] = (cm_service_port_t){"http_port", gw_server_http_port(srv)};
    if (gw_server_https_port(srv))
        ports[n++] = (cm_service_port_t){"https_port", gw_server_https_port(srv)};
    ports[n] = (cm_service_port_t){NULL, 0};
}

int gw_service_main(const gw_service_t *svc, int argc, char **argv)
{
    int rc = parse_options(svc, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    cm_service_rpc_init(&S); /* the backends' gRPC channels */
    evthread_use_pthreads();

    gw_server_config_t cfg = {
        .http_listen = o_http_listen,
        .https_listen = o_https_listen,
        .tls_cert = o_tls_cert,
        .tls_key = o_tls_key,
        .threads = threads_wanted(),
        .max_body = (size_t)o_max_body,
        .max_header_bytes = (size_t)o_max_header_bytes,
        .max_headers = (int)o_max_headers,
        .max_concurrent_streams = (int)o_max_streams,
        .idle_timeout_ms = (int)o_idle_ms,
        .request_timeout_ms = (int)o_request_ms,
        .max_connections = (int)o_max_conns,
        .max_resets = (int)o_max_resets,
        .access_log = o_access_log,
    };
    gw_server_t *srv = NULL;
    int exit_code = 1, started = 0;
    if (svc->start(svc->app, cfg.threads, &cfg.handler, &cfg.handler_ctx) != 0) {
        CM_ERROR(NULL, "cannot start the request handler");
        goto out;
    }
    started = 1;
    if (gw_server_new(&cfg, &srv) != 0)
        goto out;
    S.ready_arg = srv;
    if (gw_server_start(srv) != 0)
        goto out;
    cm_service_port_t ports[3];
    ready_ports(srv, ports);
    if (cm_service_ready(&S, ports) != 0)
        goto out;
    CM_INFO(NULL, "%s listening: http %d, https %d, admin %d, %d loops", svc->name,
            gw_server_http_port(srv), gw_server_https_port(srv), cm_service_admin_port(&S),
            gw_server_threads(srv));

    int sig = cm_service_wait(&S, NULL, NULL);
    CM_INFO(NULL, "signal %d: draining", sig);
    int forced = gw_server_drain(srv, (int)o_drain_ms);
    CM_INFO(NULL, "stopped%s", forced ? " (some connections closed at the drain timeout)" : "");
    exit_code = 0;
out:
    /* the handler's backends stop while the loops still run: their last completions can
     * still be posted there */
    if (started && svc->stop)
        svc->stop(svc->app);
    cm_service_admin_stop(&S); /* its /readyz asks srv: gone before srv goes */
    gw_server_free(srv);
    if (started && svc->destroy)
        svc->destroy(svc->app);
    cm_service_end(&S); /* gRPC, last: the backends' channels are gone */
    return exit_code;
}
