#include "cm_service.h"

#include <stdio.h>

#include "cm_log.h"
#include "cm_rpc.h"

int cm_service_init(cm_service_t *svc, cm_opt_t *opts, size_t nopts, int argc, char **argv,
                    int *npos)
{
    cm_rpc_signals_block();
    atomic_store(&svc->_serving, 0);
    int rc = cm_config_parse(svc->name, svc->summary, opts, nopts, argc, argv, npos);
    if (rc != 0)
        return rc > 0 ? CM_SERVICE_HELP : CM_SERVICE_USAGE;
    cm_log_level_t lvl;
    const char *level = svc->log_level && *svc->log_level ? svc->log_level : "info";
    if (cm_log_level_parse(level, &lvl) != 0) {
        fprintf(stderr, "%s: bad --log-level \"%s\" (debug, info, warn or error)\n", svc->name,
                level);
        return CM_SERVICE_USAGE;
    }
    cm_log_init(svc->name, lvl);
    return CM_SERVICE_RUN;
}

int cm_service_exit_code(int init_result)
{
    return init_result == CM_SERVICE_HELP ? 0 : init_result == CM_SERVICE_RUN ? 0 : 2;
}

void cm_service_rpc_init(cm_service_t *svc)
{
    cm_rpc_init();
    svc->_rpc_up = 1;
}

static int admin_ready(void *arg)
{
    cm_service_t *svc = arg;
    return cm_service_serving(svc) && (!svc->ready || svc->ready(svc->ready_arg));
}

/* Appends ,"key":port (no comma after the opening brace). 0, or -1 when it does not fit. */
static int append_port(char *buf, size_t cap, size_t *n, const char *key, int port)
{
    int k = snprintf(buf + *n, cap - *n, "%s\"%s\":%d", *n > 1 ? "," : "", key, port);
    if (k < 0 || (size_t)k >= cap - *n)
        return -1;
    *n += (size_t)k;
    return 0;
}

/* {"a":1,"b":2,"admin_port":3} into |buf|. 0, or -1 when it does not fit. */
static int ready_json(const cm_service_t *svc, const cm_service_port_t *ports, char *buf,
                      size_t cap)
{
    size_t n = 1;
    buf[0] = '{';
    for (size_t i = 0; ports && ports[i].name; i++)
        if (append_port(buf, cap, &n, ports[i].name, ports[i].port) != 0)
            return -1;
    if (svc->_admin && append_port(buf, cap, &n, "admin_port", svc->_admin_port) != 0)
        return -1;
    if (cap - n < 2)
        return -1;
    buf[n++] = '}';
    buf[n] = '\0';
    return 0;
}

int cm_service_ready(cm_service_t *svc, const cm_service_port_t *ports)
{
    if (svc->admin_listen && *svc->admin_listen &&
        cm_admin_start(svc->admin_listen, admin_ready, svc, &svc->_admin, &svc->_admin_port) != 0) {
        CM_ERROR(NULL, "cannot start the admin listener on %s", svc->admin_listen);
        return -1;
    }
    atomic_store(&svc->_serving, 1);
    char json[512];
    if (ready_json(svc, ports, json, sizeof(json)) != 0 ||
        cm_config_write_ready(svc->ready_file, json) != 0) {
        CM_ERROR(NULL, "cannot write the ready file %s", svc->ready_file);
        atomic_store(&svc->_serving, 0);
        return -1;
    }
    return 0;
}

int cm_service_admin_port(const cm_service_t *svc)
{
    return svc->_admin ? svc->_admin_port : 0;
}

int cm_service_wait(cm_service_t *svc, void (*on_usr1)(void *arg), void *arg)
{
    int sig = cm_rpc_signals_wait(on_usr1, arg);
    atomic_store(&svc->_serving, 0);
    return sig;
}

int cm_service_serving(const cm_service_t *svc)
{
    return atomic_load(&((cm_service_t *)svc)->_serving);
}

void cm_service_admin_stop(cm_service_t *svc)
{
    atomic_store(&svc->_serving, 0);
    if (svc->_admin) {
        cm_admin_stop(svc->_admin);
        svc->_admin = NULL;
    }
}

void cm_service_end(cm_service_t *svc)
{
    cm_service_admin_stop(svc);
    if (svc->_rpc_up) {
        cm_rpc_shutdown();
        svc->_rpc_up = 0;
    }
}
