/* mailbox-store: the tigress.mailbox.v1.MailboxStore gRPC service over a storage engine
 * (--engine rocksdb|postgres). Process wiring only: configuration, start-up order, signals,
 * drain. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cm_config.h"
#include "cm_fs.h"
#include "cm_log.h"
#include "cm_rpc.h"
#include "cm_seal.h"
#include "cm_service.h"
#include "ms_core.h"
#include "ms_dump.h"
#include "ms_engine.h"
#include "ms_outbox.h"
#include "ms_service.h"
#include "ms_sweeper.h"

typedef struct {
    const char *listen, *engine, *data_dir, *database_url_file, *claim_key_file, *token_key_file,
        *push_target, *lb_policy;
    int64_t max_ttl, workers, sweep_interval_ms, sweep_batch, drain_timeout_ms, drain_delay_ms,
        push_timeout_ms, db_pool_size, db_statement_timeout_ms;
    int sync, dump;
} config_t;

/* Shared between the signal wait in main, the sweeper's health callback and the admin thread. */
typedef struct {
    cm_rpc_server_t *srv;
    ms_engine_t *eng;
    ms_core_t *core;
    cm_seal_ring_t *claim_ring, *token_ring; /* owned; outlive |core| */
    /* Guards the check of |draining| together with the health update, so that a sweeper pass
     * racing the start of the drain cannot turn the server back to SERVING. */
    pthread_mutex_t health_mu;
    _Atomic int draining;
    _Atomic int healthy;
} app_t;

static void on_health(void *arg, int healthy)
{
    app_t *app = arg;
    app->healthy = healthy;
    pthread_mutex_lock(&app->health_mu);
    if (!app->draining) {
        cm_rpc_server_set_health(app->srv, "", healthy);
        cm_rpc_server_set_health(app->srv, MS_SERVICE_NAME, healthy);
    }
    pthread_mutex_unlock(&app->health_mu);
}

/* From here on health stays NOT_SERVING (cm_rpc_server_stop would say so too, but only once it
 * also stops accepting; with --drain-delay-ms the two are apart). */
static void begin_drain(app_t *app)
{
    pthread_mutex_lock(&app->health_mu);
    app->draining = 1;
    if (app->srv) {
        cm_rpc_server_set_health(app->srv, "", 0);
        cm_rpc_server_set_health(app->srv, MS_SERVICE_NAME, 0);
    }
    pthread_mutex_unlock(&app->health_mu);
}

static int is_ready(void *arg)
{
    app_t *app = arg;
    return !app->draining && app->healthy;
}

/* Refuses contradictory or out-of-range settings. 0, or 2 (logged). */
static int check_config(const config_t *c)
{
    ms_engine_kind_t kind;
    if (c->max_ttl < 1 || c->workers < 1 || c->workers > 64 || c->sweep_interval_ms < 1 ||
        c->sweep_batch < 1 || c->drain_timeout_ms < 1 || c->push_timeout_ms < 1 ||
        c->drain_delay_ms < 0 || c->drain_delay_ms > 600000 || c->db_pool_size < 1 ||
        c->db_pool_size > 256 || c->db_statement_timeout_ms < 1) {
        CM_ERROR(NULL, "invalid configuration: --max-ttl, --workers (1..64), --sweep-interval-ms, "
                       "--sweep-batch, --db-pool-size (1..256) and the timeouts must be "
                       "positive, --drain-delay-ms 0..600000");
        return 2;
    }
    if (c->lb_policy && *c->lb_policy && strcmp(c->lb_policy, "pick_first") != 0 &&
        strcmp(c->lb_policy, "round_robin") != 0) {
        CM_ERROR(NULL, "invalid configuration: --lb-policy must be empty, pick_first or "
                       "round_robin");
        return 2;
    }
    if (ms_engine_kind_parse(c->engine, &kind) != 0) {
        CM_ERROR(NULL, "invalid configuration: --engine must be rocksdb or postgres");
        return 2;
    }
#ifndef MS_HAVE_POSTGRES
    if (kind == MS_ENGINE_POSTGRES) {
        CM_ERROR(NULL, "invalid configuration: --engine=postgres, but this mailbox-store was "
                       "built without the PostgreSQL engine");
        return 2;
    }
#endif
    if (kind == MS_ENGINE_POSTGRES && (!c->database_url_file || !*c->database_url_file)) {
        CM_ERROR(NULL, "invalid configuration: --engine=postgres needs --database-url-file");
        return 2;
    }
    /* Replicas on one database must hash claims and seal tokens alike: keys generated per
     * process would not. */
    if (kind == MS_ENGINE_POSTGRES &&
        (!c->claim_key_file || !*c->claim_key_file || !c->token_key_file || !*c->token_key_file)) {
        CM_ERROR(NULL, "invalid configuration: --engine=postgres needs --claim-key-file and "
                       "--token-key-file (every replica must use the same keys)");
        return 2;
    }
    if (kind != MS_ENGINE_ROCKSDB && c->dump) {
        CM_ERROR(NULL, "invalid configuration: --dump reads a RocksDB data directory");
        return 2;
    }
    return 0;
}

/* Reads flags and environment into |cfg| and |svc| (logging is set up from here on). Returns a
 * cm_service_init result: CM_SERVICE_RUN, CM_SERVICE_HELP or CM_SERVICE_USAGE (also for a
 * contradictory configuration, logged). */
static int parse_config(config_t *cfg, cm_service_t *svc, int argc, char **argv)
{
    config_t c;
    cm_opt_t opts[] = {
        {"listen", CM_OPT_STR, "127.0.0.1:7001", "gRPC listen address (port 0: any free port)",
         &c.listen},
        {"admin-listen", CM_OPT_STR, "127.0.0.1:9101", "admin HTTP (/metrics /healthz /readyz)",
         &svc->admin_listen},
        {"engine", CM_OPT_STR, "rocksdb",
         "storage engine: rocksdb (embedded, one process per data directory) or postgres "
         "(shared database, any number of replicas)",
         &c.engine},
        {"data-dir", CM_OPT_STR, "./.local/data/mailbox-store",
         "data directory: RocksDB in <dir>/db (rocksdb engine), generated key rings in "
         "<dir>/claim.key and <dir>/token-keys",
         &c.data_dir},
        {"database-url-file", CM_OPT_STR, NULL,
         "postgres engine: file holding the libpq connection string (a secret; may list several "
         "hosts with target_session_attrs=read-write)",
         &c.database_url_file},
        {"db-pool-size", CM_OPT_INT, "8", "postgres engine: database connections", &c.db_pool_size},
        {"db-statement-timeout-ms", CM_OPT_INT, "2000",
         "postgres engine: longest run of any SQL statement", &c.db_statement_timeout_ms},
        {"claim-key-file", CM_OPT_STR, NULL,
         "key ring for device-claim hashes (lines \"<id> <64 hex>\", or one bare 64-hex key); "
         "the highest id hashes new bindings, every id still matches; empty: generate "
         "<data-dir>/claim.key (development only)",
         &c.claim_key_file},
        {"token-key-file", CM_OPT_STR, NULL,
         "key ring sealing notification tokens at rest (lines \"<id> <64 hex>\"; the highest id "
         "seals); empty: generate <data-dir>/token-keys (development only)",
         &c.token_key_file},
        {"max-ttl", CM_OPT_INT, "172800", "longest mailbox lifetime in seconds", &c.max_ttl},
        {"sync", CM_OPT_BOOL, "1", "rocksdb engine: fsync the WAL before acknowledging a write",
         &c.sync},
        {"workers", CM_OPT_INT, "16",
         "gRPC handler threads; a handler waits out its commit, so more threads mean larger "
         "RocksDB group commits (rocksdb) or more transactions in flight (postgres)",
         &c.workers},
        {"sweep-interval-ms", CM_OPT_INT, "1000", "pause between expiry sweeps",
         &c.sweep_interval_ms},
        {"sweep-batch", CM_OPT_INT, "256", "expired mailboxes per sweeper batch", &c.sweep_batch},
        {"push-target", CM_OPT_STR, NULL,
         "push-dispatch gRPC address; empty: keep notifications in the outbox", &c.push_target},
        {"lb-policy", CM_OPT_STR, NULL,
         "gRPC load balancing towards --push-target: empty (pick_first) or round_robin (for a "
         "Kubernetes headless Service, e.g. dns:///push-dispatch.ns.svc:7002)",
         &c.lb_policy},
        {"push-timeout-ms", CM_OPT_INT, "5000", "deadline of each call to push-dispatch",
         &c.push_timeout_ms},
        {"drain-timeout-ms", CM_OPT_INT, "5000", "longest wait for in-flight calls on SIGTERM",
         &c.drain_timeout_ms},
        {"drain-delay-ms", CM_OPT_INT, "0",
         "on SIGTERM, answer health checks NOT_SERVING but keep serving this long before closing "
         "the listener (lets Kubernetes take the pod out of its endpoints first)",
         &c.drain_delay_ms},
        {"log-level", CM_OPT_STR, "info", "debug, info, warn or error", &svc->log_level},
        {"ready-file", CM_OPT_STR, NULL,
         "write {\"grpc_port\":..,\"admin_port\":..} here once listening", &svc->ready_file},
        {"dump", CM_OPT_BOOL, "0",
         "rocksdb engine: print every key of <data-dir>/db as JSON lines (read-only) and exit",
         &c.dump},
    };
    int rc = cm_service_init(svc, opts, sizeof(opts) / sizeof(opts[0]), argc, argv, NULL);
    *cfg = c;
    if (rc != CM_SERVICE_RUN)
        return rc;
    return check_config(cfg) == 0 ? CM_SERVICE_RUN : CM_SERVICE_USAGE;
}

/* Loads the key ring |path|, or without it (development) <data_dir>/<dev_name>, generated on
 * first start with a warning. 0 or -1 (logged, never with key material). */
static int load_ring(const char *path, const char *data_dir, const char *dev_name, const char *what,
                     cm_seal_ring_t **out)
{
    char err[512];
    int generated = 0;
    if (cm_seal_ring_load_or_create(path, data_dir, dev_name, out, &generated, err, sizeof(err)) !=
        CM_SEAL_OK) {
        CM_ERROR(NULL, "%s key ring: %s", what, err);
        return -1;
    }
    if (generated)
        CM_WARN(NULL, "no --%s-key-file: generated %s/%s; use a managed secret in production", what,
                data_dir, dev_name);
    CM_INFO(NULL, "%s key ring: %zu keys, new values under key %u", what, cm_seal_ring_count(*out),
            (unsigned)cm_seal_ring_primary(*out));
    return 0;
}

/* Opens the key rings, the engine and the core on it. 0 or -1. */
static int open_storage(const config_t *c, app_t *app, ms_outbox_t *ob)
{
    char db_path[1100], err[512];
    snprintf(db_path, sizeof(db_path), "%s/db", c->data_dir);
    ms_engine_opts_t eo = {.rocksdb = {.path = db_path, .sync = c->sync},
                           .pg = {.database_url_file = c->database_url_file,
                                  .pool_size = (int)c->db_pool_size,
                                  .statement_timeout_ms = c->db_statement_timeout_ms}};
    ms_engine_kind_parse(c->engine, &eo.kind); /* checked by check_config */
    if (eo.kind == MS_ENGINE_ROCKSDB && cm_fs_mkdir_p(c->data_dir, 0700) != 0) {
        CM_ERROR(NULL, "cannot create data dir %s: %s", c->data_dir, strerror(errno));
        return -1;
    }
    if (load_ring(c->claim_key_file, c->data_dir, "claim.key", "claim", &app->claim_ring) != 0 ||
        load_ring(c->token_key_file, c->data_dir, "token-keys", "token", &app->token_ring) != 0)
        return -1;
    if (ms_engine_open(&eo, &app->eng, err, sizeof(err)) != MS_OK) {
        CM_ERROR(NULL, "%s", err);
        return -1;
    }
    ms_core_opts_t co = {.engine = app->eng,
                         .max_ttl_s = c->max_ttl,
                         .claim_ring = app->claim_ring,
                         .token_ring = app->token_ring,
                         .outbox_hook = ms_outbox_wake,
                         .outbox_arg = ob};
    if (ms_core_new(&co, &app->core) != MS_OK) {
        CM_ERROR(NULL, "cannot set up the store core");
        return -1;
    }
    return 0;
}

/* Serves until SIGTERM/SIGINT. Returns the exit code. */
static int serve(const config_t *c, cm_service_t *svc, app_t *app, ms_outbox_t *ob,
                 ms_sweeper_t **sw)
{
    cm_rpc_server_opts_t ro = {.listen = c->listen,
                               .workers = (int)c->workers,
                               .drain_timeout_ms = (int)c->drain_timeout_ms};
    int port = 0;
    if (cm_rpc_server_new(&ro, &app->srv) != 0 || ms_service_register(app->srv, app->core) != 0) {
        CM_ERROR(NULL, "cannot set up the gRPC server");
        return 1;
    }
    int healthy = app->eng->ops->healthy(app->eng);
    app->healthy = healthy;
    cm_rpc_server_set_health(app->srv, "", healthy);
    cm_rpc_server_set_health(app->srv, MS_SERVICE_NAME, healthy);
    if (cm_rpc_server_start(app->srv, &port) != 0) {
        CM_ERROR(NULL, "cannot listen on %s", c->listen);
        return 1;
    }
    ms_sweeper_opts_t swo = {.core = app->core,
                             .interval_ms = c->sweep_interval_ms,
                             .batch = (size_t)c->sweep_batch,
                             .health = on_health,
                             .health_arg = app};
    if (ms_sweeper_start(&swo, sw) != 0) {
        CM_ERROR(NULL, "cannot start the sweeper");
        return 1;
    }
    if (c->push_target && *c->push_target) {
        if (ms_outbox_start(ob, app->core, c->push_target, c->lb_policy, c->push_timeout_ms) != 0) {
            CM_ERROR(NULL, "cannot start the outbox forwarder to %s", c->push_target);
            return 1;
        }
    } else {
        CM_INFO(NULL, "no --push-target: notifications stay in the outbox");
    }
    cm_service_port_t ports[] = {{"grpc_port", port}, {NULL, 0}};
    if (cm_service_ready(svc, ports) != 0)
        return 1;
    CM_INFO(NULL, "serving on port %d (admin %d), engine %s, %d workers", port,
            cm_service_admin_port(svc), app->eng->ops->name, (int)c->workers);
    int sig = cm_service_wait(svc, NULL, NULL);
    CM_INFO(NULL, "signal %d: draining", sig);
    begin_drain(app);
    if (c->drain_delay_ms > 0) {
        struct timespec d = {c->drain_delay_ms / 1000, (c->drain_delay_ms % 1000) * 1000000};
        while (nanosleep(&d, &d) != 0 && errno == EINTR)
            ;
    }
    return 0;
}

/* --dump: prints the RocksDB data directory and exits; no gRPC, no listener. */
static int dump_data_dir(const config_t *c)
{
    char db_path[1100], err[512];
    snprintf(db_path, sizeof(db_path), "%s/db", c->data_dir);
    if (ms_dump(db_path, stdout, err, sizeof(err)) < 0) {
        fprintf(stderr, "mailbox-store: %s\n", err);
        return 1;
    }
    return 0;
}

static cm_service_t svc = {
    .name = "mailbox-store",
    .summary = "Mailbox store of the Tigress relay: mailboxes, device binding, idempotency and "
               "expiry on RocksDB or PostgreSQL, served over gRPC.",
    .ready = is_ready,
};

int main(int argc, char **argv)
{
    config_t c;
    app_t app = {.healthy = 1};
    int rc = parse_config(&c, &svc, argc, argv);
    if (rc != CM_SERVICE_RUN)
        return cm_service_exit_code(rc);
    if (c.dump)
        return dump_data_dir(&c);
    svc.ready_arg = &app;
    cm_service_rpc_init(&svc);
    int exit_code = 1;
    pthread_mutex_init(&app.health_mu, NULL);
    ms_outbox_t *ob = ms_outbox_new();
    ms_sweeper_t *sw = NULL;
    if (open_storage(&c, &app, ob) == 0)
        exit_code = serve(&c, &svc, &app, ob, &sw);
    begin_drain(&app);
    if (app.srv)
        cm_rpc_server_stop(app.srv); /* NOT_SERVING, stop accepting, drain in-flight calls */
    ms_outbox_del(ob);
    ms_sweeper_stop(sw);
    cm_rpc_server_del(app.srv);
    ms_core_del(app.core);
    ms_engine_close(app.eng);
    cm_seal_ring_free(app.claim_ring);
    cm_seal_ring_free(app.token_ring);
    pthread_mutex_destroy(&app.health_mu);
    cm_service_end(&svc);
    if (exit_code == 0)
        CM_INFO(NULL, "stopped");
    return exit_code;
}
