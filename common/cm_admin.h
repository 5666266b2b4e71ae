/* cm_admin: the admin HTTP/1.1 listener every process runs (libevent evhttp, own thread).
 *
 *   GET /metrics  Prometheus text from cm_metrics
 *   GET /healthz  200 while the process serves
 *   GET /readyz   200 when |ready| says so (or when no callback is given), else 503
 *
 * Keep it off the public network: it is for probes and scrapers. */
#ifndef CM_ADMIN_H
#define CM_ADMIN_H

typedef struct cm_admin cm_admin_t;

/* |ready| returns 1 when ready; it runs on the admin thread. Bound port in *port (may be NULL).
 * Returns 0 or -1. */
int cm_admin_start(const char *listen, int (*ready)(void *arg), void *arg, cm_admin_t **out,
                   int *port);
void cm_admin_stop(cm_admin_t *a);

#endif
