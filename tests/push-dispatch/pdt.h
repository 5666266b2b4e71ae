/* pdt: helpers for the push-dispatch tests: fake providers (fakes.py) and push-dispatch
 * processes in a per-test directory, Enqueue/CancelMailbox calls over cm_rpc, and counting
 * the lines the fakes log per request. */
#ifndef PDT_H
#define PDT_H

#include <stddef.h>
#include <stdint.h>

#include "cm_rpc.h"
#include "th.h"

typedef struct {
    char dir[512];  /* per-test directory: keys (symlinked), fake logs and control files */
    char data[600]; /* push-dispatch --data-dir */
    th_proc_t apns, fcm, webhook, pd;
    int apns_port, fcm_port, webhook_port, grpc_port, admin_port;
    int pd_listen_port; /* push-dispatch gRPC port to bind; 0 = ephemeral */
    cm_rpc_channel_t *ch;
} pdt_t;

/* Generates the keys once per process (fakes.py gen) and makes a fresh test directory. */
int pdt_init(pdt_t *t);
/* Kills everything still running, frees, removes the directory. */
void pdt_fini(pdt_t *t);
/* Kills |p| and removes its th temp directory (ready file, log) unless PDT_KEEP is set. */
void pdt_proc_cleanup(th_proc_t *p);

/* Starts a fake ("apns", "fcm", "webhook") on |port| (0 = ephemeral). 0 or -1. */
int pdt_fake_start(pdt_t *t, const char *kind, int port, int max_streams);
th_proc_t *pdt_fake(pdt_t *t, const char *kind);

/* Starts push-dispatch configured for the fakes that run (or for |apns_port| etc. when set),
 * plus |extra| flags (NULL-terminated, may be NULL). Connects t->ch. 0 or -1. */
int pdt_pd_start(pdt_t *t, const char *const *extra);
void pdt_pd_kill9(pdt_t *t);
int pdt_pd_stop(pdt_t *t); /* SIGTERM; returns the exit code or -1 */

/* Writes DIR/<kind>.ctl. */
void pdt_ctl(pdt_t *t, const char *kind, const char *json);

/* Enqueues one notification; returns accepted (0/1) or -1 on RPC error. */
int pdt_enqueue1(pdt_t *t, const char *id, const char *mailbox, const char *type, const char *token,
                 int64_t expires_ms);
/* Enqueues |n| notifications id "<prefix>-<i>" for mailbox "<prefix>-mb-<i % nmb>", token
 * pdt_token(prefix_no, i), in batches of |batch|. Returns accepted total or -1. */
int pdt_enqueue_many(pdt_t *t, const char *prefix, int first, int n, int nmb, int batch,
                     const char *type, int64_t expires_ms);
int pdt_cancel(pdt_t *t, const char *mailbox, int64_t expires_ms, uint32_t *dropped);

/* A 64-hex-digit APNs-like token for number |i|. */
void pdt_token(int i, char out[65]);

/* Lines of DIR/<kind>.log whose first field is |status| (0 = any) and that contain |needle|
 * (NULL = any). */
int pdt_count(pdt_t *t, const char *kind, int status, const char *needle);
/* Distinct tokens with a line of |status|. */
int pdt_count_distinct(pdt_t *t, const char *kind, int status);
/* Waits until pdt_count(...) >= |n|; returns the last count. */
int pdt_wait(pdt_t *t, const char *kind, int status, const char *needle, int n, int timeout_ms);

/* Value of a metric line (exact name with labels, e.g.
 * "push_dispatch_dropped_total{provider=\"apns\",reason=\"dead_token\"}") from /metrics, or -1. */
long long pdt_metric(pdt_t *t, const char *series);

int64_t pdt_now_ms(void);
void pdt_sleep_ms(int ms);

#endif
