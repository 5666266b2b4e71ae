/* push-dispatch: durable outbox and delivery of "mailbox updated" notifications to APNs, FCM
 * and webhooks. The API is proto/tigress/push/v1/push_dispatch.proto. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm_config.h"
#include "cm_log.h"
#include "cm_rpc.h"
#include "cm_seal.h"
#include "cm_service.h"
#include "pd_apns.h"
#include "pd_dispatch.h"
#include "pd_fcm.h"
#include "pd_http.h"
#include "pd_queue.h"
#include "pd_webhook.h"
#include "tigress/push/v1/push_dispatch.pb-c.h"

#define SERVICE_NAME "tigress.push.v1.PushDispatch"
#define MAX_BATCH 1000

static int admin_ready(void *arg);

static cm_service_t svc = {
    .name = "push-dispatch",
    .summary = "Durable queue and delivery of mailbox-update notifications (APNs, FCM, webhooks).",
    .ready = admin_ready,
};

static struct {
    const char *listen, *data_dir, *ca_file;
    int64_t budget, max_attempts, retry_base_ms, retry_max_ms, workers, rpc_workers,
        provider_timeout_ms, shutdown_grace_ms, cancel_ttl_ms, apns_jwt_refresh_s;
    const char *apns_key_file, *apns_key_id, *apns_team_id, *apns_topic, *apns_url;
    const char *fcm_service_account_file, *fcm_project, *fcm_url;
    const char *webhook_secret_file;
    int webhook_allow_private;
    const char *token_key_file;
} cfg;

static cm_opt_t opts[] = {
    {"listen", CM_OPT_STR, "127.0.0.1:7002", "gRPC listen address (port 0 = ephemeral)",
     &cfg.listen},
    {"admin-listen", CM_OPT_STR, "127.0.0.1:9102", "admin HTTP (/metrics /healthz /readyz)",
     &svc.admin_listen},
    {"log-level", CM_OPT_STR, "info", "debug, info, warn or error", &svc.log_level},
    {"ready-file", CM_OPT_STR, NULL, "write bound ports here as JSON once listening",
     &svc.ready_file},
    {"data-dir", CM_OPT_STR, "./.local/data/push-dispatch", "RocksDB directory of the queue",
     &cfg.data_dir},
    {"token-key-file", CM_OPT_STR, NULL,
     "key ring sealing notification tokens at rest (lines \"<id> <64 hex>\"; the highest id "
     "seals); empty = <data-dir>/token-keys, generated (development only)",
     &cfg.token_key_file},
    {"mailbox-budget", CM_OPT_INT, "20", "notifications accepted per mailbox over its life",
     &cfg.budget},
    {"max-attempts", CM_OPT_INT, "8", "delivery attempts before giving up", &cfg.max_attempts},
    {"retry-base-ms", CM_OPT_INT, "1000", "first retry delay (doubles per attempt, jittered)",
     &cfg.retry_base_ms},
    {"retry-max-ms", CM_OPT_INT, "600000", "longest retry delay (also caps Retry-After)",
     &cfg.retry_max_ms},
    {"workers", CM_OPT_INT, "32", "delivery threads (notifications in flight at most)",
     &cfg.workers},
    {"rpc-workers", CM_OPT_INT, "2", "gRPC handler threads", &cfg.rpc_workers},
    {"provider-timeout-ms", CM_OPT_INT, "10000", "per provider request and connect timeout",
     &cfg.provider_timeout_ms},
    {"shutdown-grace-ms", CM_OPT_INT, "3000",
     "on SIGTERM, how long in-flight deliveries may finish", &cfg.shutdown_grace_ms},
    {"cancel-ttl-ms", CM_OPT_INT, "2592000000",
     "how long a CancelMailbox without expiry is remembered", &cfg.cancel_ttl_ms},
    {"ca-file", CM_OPT_STR, NULL, "PEM trust store for providers (empty = system)", &cfg.ca_file},
    {"apns-key-file", CM_OPT_STR, NULL, "APNs token-auth key (.p8); empty = APNs unsupported",
     &cfg.apns_key_file},
    {"apns-key-id", CM_OPT_STR, NULL, "APNs key id (JWT kid)", &cfg.apns_key_id},
    {"apns-team-id", CM_OPT_STR, NULL, "Apple team id (JWT iss)", &cfg.apns_team_id},
    {"apns-topic", CM_OPT_STR, NULL, "apns-topic: the app's bundle id", &cfg.apns_topic},
    {"apns-url", CM_OPT_STR, "https://api.push.apple.com", "APNs endpoint", &cfg.apns_url},
    {"apns-jwt-refresh-s", CM_OPT_INT, "3000", "renew the APNs provider token after (s)",
     &cfg.apns_jwt_refresh_s},
    {"fcm-service-account-file", CM_OPT_STR, NULL,
     "Google service-account JSON; empty = FCM unsupported", &cfg.fcm_service_account_file},
    {"fcm-project", CM_OPT_STR, NULL, "FCM project id (empty = project_id of the file)",
     &cfg.fcm_project},
    {"fcm-url", CM_OPT_STR, "https://fcm.googleapis.com", "FCM endpoint", &cfg.fcm_url},
    {"webhook-secret-file", CM_OPT_STR, NULL,
     "HMAC key for webhook signatures (>= 16 bytes); empty = webhooks unsupported",
     &cfg.webhook_secret_file},
    {"webhook-allow-private", CM_OPT_BOOL, "0",
     "allow webhooks to private/loopback addresses (tests only)", &cfg.webhook_allow_private},
};

static pd_queue_t *queue;
static cm_seal_ring_t *token_ring;  /* owned; outlives |queue| */
static pd_provider_t *providers[3]; /* owned; configured ones only */
static size_t nproviders;
static cm_rpc_server_t *srv;
/* Guards the health flags so the sweeper's reports cannot turn SERVING back on once the drain
 * began. */
static pthread_mutex_t health_mu = PTHREAD_MUTEX_INITIALIZER;
static int serving;        /* 0 before start and from SIGTERM on */
static int storage_ok = 1; /* the queue can write (pd_queue_healthy) */

static void set_health(int draining, int ok)
{
    pthread_mutex_lock(&health_mu);
    if (draining)
        serving = 0;
    if (ok >= 0)
        storage_ok = ok;
    if (srv) {
        cm_rpc_server_set_health(srv, "", serving && storage_ok);
        cm_rpc_server_set_health(srv, SERVICE_NAME, serving && storage_ok);
    }
    pthread_mutex_unlock(&health_mu);
}

static void on_health(void *arg, int healthy)
{
    (void)arg;
    set_health(0, healthy);
}

static int supported(const char *type)
{
    for (size_t i = 0; i < nproviders; i++)
        if (strcmp(providers[i]->token_type, type) == 0)
            return 1;
    return 0;
}

static grpc_status_code h_enqueue(cm_rpc_call_t *call, void *user, const ProtobufCMessage *req_,
                                  ProtobufCMessage *resp_)
{
    const Tigress__Push__V1__EnqueueRequest *req = (const void *)req_;
    Tigress__Push__V1__EnqueueResponse *resp = (void *)resp_;
    const char *rid = cm_rpc_request_id(call);
    (void)user;
    if (req->n_notifications > MAX_BATCH)
        return cm_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "at most %d notifications per call",
                           MAX_BATCH);
    for (size_t i = 0; i < req->n_notifications; i++) {
        const Tigress__Push__V1__Notification *n = req->notifications[i];
        if (!pd_id_valid(n->notification_id) || !pd_id_valid(n->mailbox_id))
            return cm_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                               "notification %zu: notification_id and mailbox_id must be 1..%d "
                               "characters of [A-Za-z0-9._-]",
                               i, PD_ID_MAX);
    }
    Tigress__Push__V1__Notification **keep =
        cm_rpc_alloc(call, (req->n_notifications + 1) * sizeof(*keep));
    size_t nkeep = 0;
    for (size_t i = 0; i < req->n_notifications; i++) {
        Tigress__Push__V1__Notification *n = req->notifications[i];
        /* A bad token is the client's doing, not the caller's: drop just this one, so one
         * client cannot make a whole batch of other mailboxes' notifications fail. */
        if (!n->token_data || !n->token_data[0] || strlen(n->token_data) > PD_TOKEN_MAX ||
            !n->token_type || strlen(n->token_type) >= 32) {
            CM_WARN(rid, "notification %s dropped: token missing or over %d bytes",
                    n->notification_id, PD_TOKEN_MAX);
            pd_metric_dropped(n->token_type ? n->token_type : "", "invalid_token");
            continue;
        }
        if (supported(n->token_type)) {
            keep[nkeep++] = n;
            continue;
        }
        /* Unconfigured provider: nothing to deliver with, now or later. */
        CM_WARN(rid, "notification %s undeliverable: no provider configured for token type %s",
                n->notification_id, pd_provider_label(n->token_type));
        pd_metric_dropped(n->token_type, "unsupported");
    }
    pd_enq_result_t *res = cm_rpc_alloc(call, (nkeep + 1) * sizeof(*res));
    if (pd_queue_enqueue(queue, keep, nkeep, pd_now_ms(), res) != 0) {
        /* Not serving from now on (not just at the sweeper's next look), so probes and
         * /readyz agree with this answer. The caller keeps its outbox and retries. */
        set_health(0, pd_queue_healthy(queue));
        return cm_rpc_fail(call, GRPC_STATUS_UNAVAILABLE, "queue write failed; retry");
    }
    static const char *const why[] = {"", "duplicate", "expired", "cancelled", "budget"};
    for (size_t i = 0; i < nkeep; i++) {
        if (res[i] == PD_ENQ_QUEUED) {
            resp->accepted++;
            pd_metric_queued(keep[i]->token_type);
        } else {
            pd_metric_dropped(keep[i]->token_type, why[res[i]]);
            if (res[i] == PD_ENQ_OVER_BUDGET)
                CM_INFO(rid, "notification %s dropped: mailbox over its budget",
                        keep[i]->notification_id);
        }
    }
    return GRPC_STATUS_OK;
}

static grpc_status_code h_cancel(cm_rpc_call_t *call, void *user, const ProtobufCMessage *req_,
                                 ProtobufCMessage *resp_)
{
    const Tigress__Push__V1__CancelMailboxRequest *req = (const void *)req_;
    Tigress__Push__V1__CancelMailboxResponse *resp = (void *)resp_;
    (void)user;
    if (!pd_id_valid(req->mailbox_id))
        return cm_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                           "mailbox_id must be 1..%d characters of [A-Za-z0-9._-]", PD_ID_MAX);
    int64_t now = pd_now_ms();
    int64_t until =
        req->mailbox_expires_at_ms > 0 ? req->mailbox_expires_at_ms : now + cfg.cancel_ttl_ms;
    uint32_t dropped = 0;
    if (pd_queue_cancel(queue, req->mailbox_id, until, now, &dropped) != 0) {
        set_health(0, pd_queue_healthy(queue));
        return cm_rpc_fail(call, GRPC_STATUS_UNAVAILABLE, "queue write failed; retry");
    }
    resp->dropped = dropped;
    if (dropped)
        CM_DEBUG(cm_rpc_request_id(call), "mailbox cancelled: %" PRIu32 " queued dropped", dropped);
    return GRPC_STATUS_OK;
}

static grpc_status_code h_cancel_recipient(cm_rpc_call_t *call, void *user,
                                           const ProtobufCMessage *req_, ProtobufCMessage *resp_)
{
    const Tigress__Push__V1__CancelRecipientRequest *req = (const void *)req_;
    Tigress__Push__V1__CancelMailboxResponse *resp = (void *)resp_;
    (void)user;
    if (!pd_id_valid(req->mailbox_id))
        return cm_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                           "mailbox_id must be 1..%d characters of [A-Za-z0-9._-]", PD_ID_MAX);
    if (!req->token_type || !req->token_type[0] || !req->token_data || !req->token_data[0])
        return cm_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                           "token_type and token_data are required");
    uint32_t dropped = 0;
    if (pd_queue_cancel_recipient(queue, req->mailbox_id, req->token_type, req->token_data,
                                  &dropped) != 0) {
        set_health(0, pd_queue_healthy(queue));
        return cm_rpc_fail(call, GRPC_STATUS_UNAVAILABLE, "queue write failed; retry");
    }
    resp->dropped = dropped;
    for (uint32_t i = 0; i < dropped; i++)
        pd_metric_dropped(req->token_type, "cancelled");
    return GRPC_STATUS_OK;
}

static grpc_status_code h_supported(cm_rpc_call_t *call, void *user, const ProtobufCMessage *req_,
                                    ProtobufCMessage *resp_)
{
    Tigress__Push__V1__SupportedResponse *resp = (void *)resp_;
    (void)user, (void)req_;
    resp->token_types = cm_rpc_alloc(call, (nproviders + 1) * sizeof(char *));
    for (size_t i = 0; i < nproviders; i++)
        resp->token_types[resp->n_token_types++] = cm_rpc_strdup(call, providers[i]->token_type);
    return GRPC_STATUS_OK;
}

static int admin_ready(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&health_mu);
    int r = serving && storage_ok;
    pthread_mutex_unlock(&health_mu);
    return r;
}

/* A credentials path that does not exist means "not configured": deployments mount the
 * provider secrets optionally (deploy/k8s). A file that exists but is unusable is an error. */
static int configured(const char *path, const char *provider)
{
    if (!path || !*path)
        return 0;
    if (access(path, F_OK) != 0 && errno == ENOENT) {
        CM_WARN(NULL, "%s credentials file is absent: %s unsupported", provider, provider);
        return 0;
    }
    return 1;
}

static int setup_providers(void)
{
    pd_provider_t *p;
    if (configured(cfg.apns_key_file, "apns")) {
        pd_apns_opts_t o = {.key_file = cfg.apns_key_file,
                            .key_id = cfg.apns_key_id ? cfg.apns_key_id : "",
                            .team_id = cfg.apns_team_id ? cfg.apns_team_id : "",
                            .topic = cfg.apns_topic ? cfg.apns_topic : "",
                            .url = cfg.apns_url,
                            .ca_file = cfg.ca_file,
                            .timeout_ms = cfg.provider_timeout_ms,
                            .jwt_refresh_s = cfg.apns_jwt_refresh_s};
        if (pd_apns_new(&o, &p) != 0)
            return -1;
        providers[nproviders++] = p;
    }
    if (configured(cfg.fcm_service_account_file, "fcm")) {
        pd_fcm_opts_t o = {.service_account_file = cfg.fcm_service_account_file,
                           .project = cfg.fcm_project,
                           .url = cfg.fcm_url,
                           .ca_file = cfg.ca_file,
                           .timeout_ms = cfg.provider_timeout_ms};
        if (pd_fcm_new(&o, &p) != 0)
            return -1;
        providers[nproviders++] = p;
    }
    if (configured(cfg.webhook_secret_file, "webhook")) {
        pd_webhook_opts_t o = {.secret_file = cfg.webhook_secret_file,
                               .allow_private = cfg.webhook_allow_private,
                               .ca_file = cfg.ca_file,
                               .timeout_ms = cfg.provider_timeout_ms};
        if (pd_webhook_new(&o, &p) != 0)
            return -1;
        providers[nproviders++] = p;
        if (cfg.webhook_allow_private)
            CM_WARN(NULL, "webhooks may reach private and loopback addresses (tests only)");
    }
    if (nproviders == 0)
        CM_WARN(NULL, "no push provider configured: every notification will be dropped as "
                      "undeliverable");
    for (size_t i = 0; i < nproviders; i++)
        CM_INFO(NULL, "provider %s configured", providers[i]->name);
    return 0;
}

static int options_valid(void)
{
    return cfg.budget >= 1 && cfg.budget <= 1000000 && cfg.max_attempts >= 1 && cfg.workers >= 1 &&
           cfg.workers <= 1024 && cfg.retry_base_ms >= 1 && cfg.retry_max_ms >= cfg.retry_base_ms &&
           cfg.provider_timeout_ms >= 100 && cfg.cancel_ttl_ms >= 1 && cfg.rpc_workers >= 1;
}

/* The gRPC server with the three methods, started; published in |srv|. 0 or -1 (logged). */
static int start_server(int *grpc_port)
{
    cm_rpc_server_opts_t so = {
        .listen = cfg.listen, .workers = (int)cfg.rpc_workers, .drain_timeout_ms = 2000};
    cm_rpc_server_t *s = NULL;
    if (cm_rpc_server_new(&so, &s) != 0)
        return -1;
    /* Published under health_mu: the sweeper's health reports already read srv. */
    pthread_mutex_lock(&health_mu);
    srv = s;
    pthread_mutex_unlock(&health_mu);
    if (cm_rpc_server_add_method(
            srv, "/" SERVICE_NAME "/Enqueue", &tigress__push__v1__enqueue_request__descriptor,
            &tigress__push__v1__enqueue_response__descriptor, h_enqueue, NULL) != 0 ||
        cm_rpc_server_add_method(srv, "/" SERVICE_NAME "/CancelMailbox",
                                 &tigress__push__v1__cancel_mailbox_request__descriptor,
                                 &tigress__push__v1__cancel_mailbox_response__descriptor, h_cancel,
                                 NULL) != 0 ||
        cm_rpc_server_add_method(srv, "/" SERVICE_NAME "/CancelRecipient",
                                 &tigress__push__v1__cancel_recipient_request__descriptor,
                                 &tigress__push__v1__cancel_mailbox_response__descriptor,
                                 h_cancel_recipient, NULL) != 0 ||
        cm_rpc_server_add_method(
            srv, "/" SERVICE_NAME "/Supported", &tigress__push__v1__supported_request__descriptor,
            &tigress__push__v1__supported_response__descriptor, h_supported, NULL) != 0)
        return -1;
    if (cm_rpc_server_start(srv, grpc_port) != 0) {
        CM_ERROR(NULL, "cannot listen on %s", cfg.listen);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 1, grpc_port = 0;
    pd_dispatch_t *disp = NULL;

    int init = cm_service_init(&svc, opts, sizeof(opts) / sizeof(opts[0]), argc, argv, NULL);
    if (init != CM_SERVICE_RUN)
        return cm_service_exit_code(init);
    if (!options_valid()) {
        CM_ERROR(NULL, "invalid numeric option (see --help)");
        return 2;
    }
    cm_service_rpc_init(&svc);
    if (pd_http_global_init() != 0) {
        CM_ERROR(NULL, "libcurl initialisation failed");
        goto out;
    }
    if (setup_providers() != 0) {
        rc = 2;
        goto out;
    }
    char kerr[256];
    int generated = 0;
    cm_seal_err_t ke = cm_seal_ring_load_or_create(cfg.token_key_file, cfg.data_dir, "token-keys",
                                                   &token_ring, &generated, kerr, sizeof(kerr));
    if (ke != CM_SEAL_OK) {
        CM_ERROR(NULL, "token key ring: %s", kerr);
        rc = 2;
        goto out;
    }
    if (generated)
        CM_WARN(NULL,
                "no --token-key-file: generated %s/token-keys; use a managed secret in "
                "production",
                cfg.data_dir);
    CM_INFO(NULL, "token key ring: %zu keys, sealing under key %u", cm_seal_ring_count(token_ring),
            (unsigned)cm_seal_ring_primary(token_ring));
    if (pd_queue_open(cfg.data_dir, (uint32_t)cfg.budget, token_ring, &queue) != 0)
        goto out;
    pd_dispatch_opts_t dopts = {.workers = (int)cfg.workers,
                                .max_attempts = (uint32_t)cfg.max_attempts,
                                .retry_base_ms = cfg.retry_base_ms,
                                .retry_max_ms = cfg.retry_max_ms,
                                .health = on_health};
    if (pd_dispatch_start(&dopts, queue, providers, nproviders, &disp) != 0)
        goto out;
    if (start_server(&grpc_port) != 0)
        goto out;
    /* SERVING from before the ready file appears, so whoever waits for it sees SERVING. */
    pthread_mutex_lock(&health_mu);
    serving = 1;
    pthread_mutex_unlock(&health_mu);
    set_health(0, -1);
    cm_service_port_t ports[] = {{"grpc_port", grpc_port}, {NULL, 0}};
    if (cm_service_ready(&svc, ports) != 0)
        goto out;
    CM_INFO(NULL, "push-dispatch serving gRPC on port %d, admin on port %d", grpc_port,
            cm_service_admin_port(&svc));

    int sig = cm_service_wait(&svc, NULL, NULL);
    CM_INFO(NULL, "signal %d: stopping", sig);
    rc = 0;
out:
    set_health(1, -1);
    /* Order: stop taking notifications, then let deliveries finish briefly; whatever is left
     * stays queued on disk for the next start. */
    if (srv)
        cm_rpc_server_stop(srv);
    pd_dispatch_del(disp, cfg.shutdown_grace_ms);
    if (srv) {
        cm_rpc_server_del(srv);
        srv = NULL;
    }
    for (size_t i = 0; i < nproviders; i++)
        providers[i]->del(providers[i]->impl);
    pd_queue_close(queue);
    cm_seal_ring_free(token_ring);
    pd_http_global_cleanup();
    cm_service_end(&svc);
    if (rc == 0)
        CM_INFO(NULL, "stopped");
    return rc;
}
