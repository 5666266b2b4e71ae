/* rpc_echo_server: a test fixture (not a product binary) that serves cm_rpc over real TCP so
 * that foreign gRPC clients (test_rpc_foreign.py, python3-grpcio) can check the wire format,
 * and so that the SIGTERM drain runs in a real process.
 *
 * Usage: rpc_echo_server --ready-file=PATH [--listen=127.0.0.1:0] [--workers=1]
 *                        [--drain-ms=5000]
 * Method "/test.Echo/Echo" takes tigress.mailbox.v1.ReadDisplayRequest; mailbox_id is a command:
 * "fail:<msg>" -> FAILED_PRECONDITION "boom <msg>", "sleep:<ms>" -> sleeps, then echoes;
 * anything else is echoed in display.title, with the x-request-id in display.description.
 * SIGUSR1 toggles the health of "" between SERVING and NOT_SERVING. */
#include "cm_log.h"
#include "cm_rpc.h"
#include "tigress/mailbox/v1/mailbox_store.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static grpc_status_code echo(cm_rpc_call_t *call, void *user, const ProtobufCMessage *req,
                             ProtobufCMessage *resp)
{
    const Tigress__Mailbox__V1__ReadDisplayRequest *rq = (const void *)req;
    Tigress__Mailbox__V1__ReadDisplayResponse *rs = (void *)resp;
    const char *cmd = rq->mailbox_id;
    if (strncmp(cmd, "fail:", 5) == 0)
        return cm_rpc_fail(call, GRPC_STATUS_FAILED_PRECONDITION, "boom %s", cmd + 5);
    if (strncmp(cmd, "sleep:", 6) == 0)
        usleep((useconds_t)atoi(cmd + 6) * 1000);
    Tigress__Mailbox__V1__DisplayInformation *d = cm_rpc_alloc(call, sizeof(*d));
    tigress__mailbox__v1__display_information__init(d);
    d->title = cm_rpc_strdup(call, cmd);
    d->description = cm_rpc_strdup(call, cm_rpc_request_id(call));
    rs->display = d;
    rs->expires_at_ms = cm_rpc_remaining_ms(call);
    return GRPC_STATUS_OK;
}

typedef struct {
    cm_rpc_server_t *srv;
    int serving;
} toggle_t;

static void on_usr1(void *arg)
{
    toggle_t *t = arg;
    t->serving = !t->serving;
    cm_rpc_server_set_health(t->srv, "", t->serving);
    CM_INFO(NULL, "health of \"\" is now %s", t->serving ? "SERVING" : "NOT_SERVING");
}

static const char *flag(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && arg[n] == '=' ? arg + n + 1 : NULL;
}

int main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:0", *ready = NULL, *v;
    int workers = 1, drain_ms = 5000;
    for (int i = 1; i < argc; i++) {
        if ((v = flag(argv[i], "--listen")))
            listen = v;
        else if ((v = flag(argv[i], "--ready-file")))
            ready = v;
        else if ((v = flag(argv[i], "--workers")))
            workers = atoi(v);
        else if ((v = flag(argv[i], "--drain-ms")))
            drain_ms = atoi(v);
        else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    cm_log_init("rpc_echo_server", CM_LOG_INFO);
    cm_rpc_signals_block();
    cm_rpc_init();
    int rc = 1;
    cm_rpc_server_opts_t o = {.listen = listen, .workers = workers, .drain_timeout_ms = drain_ms};
    toggle_t t = {.serving = 1};
    int port = 0;
    if (cm_rpc_server_new(&o, &t.srv) != 0 ||
        cm_rpc_server_add_method(
            t.srv, "/test.Echo/Echo", &tigress__mailbox__v1__read_display_request__descriptor,
            &tigress__mailbox__v1__read_display_response__descriptor, echo, NULL) != 0 ||
        cm_rpc_server_start(t.srv, &port) != 0)
        goto out;
    if (ready) {
        /* Written to a temporary name and renamed, so a reader never sees half a file. */
        char tmp[1024];
        snprintf(tmp, sizeof(tmp), "%s.tmp", ready);
        FILE *f = fopen(tmp, "w");
        if (!f)
            goto out;
        fprintf(f, "{\"grpc_port\":%d}\n", port);
        if (fclose(f) != 0 || rename(tmp, ready) != 0)
            goto out;
    }
    CM_INFO(NULL, "serving on port %d", port);
    int sig = cm_rpc_signals_wait(on_usr1, &t);
    CM_INFO(NULL, "signal %d: draining", sig);
    cm_rpc_server_stop(t.srv);
    CM_INFO(NULL, "stopped");
    rc = 0;
out:
    cm_rpc_server_del(t.srv);
    cm_rpc_shutdown();
    return rc;
}
