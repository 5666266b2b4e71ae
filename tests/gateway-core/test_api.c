/* gw_core_testd: the gateway's process (gw_service: options, listeners, admin, ready file,
 * drain) around a tiny test handler instead of the API, which the protocol tests of the core
 * run as a real process.
 *
 *   /echo          answered at once: "METHOD PATH[?QUERY] PROTOCOL TLS HAS_BODY\n" + body
 *   /async?ms=N    the same, answered from a worker thread after N ms via gw_req_post
 *   anything else  404
 * Response headers: x-request-id (gw_req_id), x-test (echo of the request's x-test). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cm_config.h"
#include "gw_http.h"
#include "gw_service.h"

typedef struct job {
    struct job *next;
    gw_req_t *req;
    long long due_ms;
} job_t;

static int64_t o_max_delay;
static cm_opt_t API_OPTS[] = {
    {"test-max-delay-ms", CM_OPT_INT, "60000", "longest /async delay", &o_max_delay},
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static job_t *jobs; /* sorted by due_ms */
static int stopping, started;
static pthread_t worker;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void answer(gw_req_t *r)
{
    size_t blen;
    const uint8_t *body = gw_req_body(r, &blen);
    const char *q = gw_req_query(r);
    char head[512];
    int n = snprintf(head, sizeof(head), "%s %s%s%s %s %d %d\n", gw_req_method(r), gw_req_path(r),
                     *q ? "?" : "", q, gw_req_protocol(r), gw_req_is_tls(r), gw_req_has_body(r));
    if (n < 0 || (size_t)n >= sizeof(head))
        n = (int)sizeof(head) - 1;
    char *out = malloc((size_t)n + blen + 1);
    memcpy(out, head, (size_t)n);
    if (blen)
        memcpy(out + n, body, blen);
    gw_req_add_header(r, "X-Request-Id", gw_req_id(r));
    const char *t = gw_req_header(r, "x-test");
    if (t)
        gw_req_add_header(r, "x-test", t);
    gw_req_respond(r, 200, "text/plain", out, (size_t)n + blen);
    free(out);
}

static void on_post(void *arg)
{
    job_t *j = arg;
    answer(j->req); /* dropped by the core when the client went away */
    free(j);
}

static void *worker_main(void *arg)
{
    pthread_mutex_lock(&mu);
    for (;;) {
        if (!jobs) {
            if (stopping)
                break;
            pthread_cond_wait(&cv, &mu);
            continue;
        }
        long long now = now_ms();
        if (!stopping && jobs->due_ms > now) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            long long wait = jobs->due_ms - now;
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (wait % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&cv, &mu, &ts);
            continue;
        }
        job_t *j = jobs;
        jobs = j->next;
        pthread_mutex_unlock(&mu);
        if (gw_req_post(j->req, on_post, j) != 0)
            free(j); /* loop gone: nothing can answer any more */
        pthread_mutex_lock(&mu);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void handle(void *ctx, gw_req_t *r);

static int test_start(void *app, int nloops, gw_handler_fn *handler, void **ctx)
{
    if (pthread_create(&worker, NULL, worker_main, NULL) != 0)
        return -1;
    started = 1;
    *handler = handle;
    *ctx = NULL;
    return 0;
}

static void test_stop(void *app)
{
    if (!started)
        return;
    pthread_mutex_lock(&mu);
    stopping = 1; /* answer what is left at once */
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(worker, NULL);
    started = 0;
}

static void handle(void *ctx, gw_req_t *r)
{
    const char *p = gw_req_path(r);
    if (strcmp(p, "/echo") == 0) {
        gw_req_set_route(r, "echo");
        answer(r);
        return;
    }
    if (strcmp(p, "/async") == 0) {
        gw_req_set_route(r, "async");
        const char *q = gw_req_query(r);
        long long ms = strncmp(q, "ms=", 3) == 0 ? atoll(q + 3) : 0;
        if (ms < 0 || ms > o_max_delay)
            ms = 0;
        job_t *j = calloc(1, sizeof(*j));
        j->req = r;
        j->due_ms = now_ms() + ms;
        pthread_mutex_lock(&mu);
        job_t **pp = &jobs;
        while (*pp && (*pp)->due_ms <= j->due_ms)
            pp = &(*pp)->next;
        j->next = *pp;
        *pp = j;
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&mu);
        return;
    }
    gw_req_set_route(r, "unknown");
    static const char nf[] = "{\"error\":{\"code\":\"not_found\",\"message\":\"no such route\"}}";
    gw_req_respond(r, 404, "application/json", nf, sizeof(nf) - 1);
}

int main(int argc, char **argv)
{
    gw_service_t svc = {
        .name = "gw_core_testd",
        .summary = "the gateway's server core with a test handler",
        .opts = API_OPTS,
        .nopts = sizeof(API_OPTS) / sizeof(API_OPTS[0]),
        .start = test_start,
        .stop = test_stop,
    };
    return gw_service_main(&svc, argc, argv);
}
