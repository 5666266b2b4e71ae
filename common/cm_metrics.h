/* cm_metrics: process-wide Prometheus metrics (text exposition format 0.0.4).
 *
 * Series are registered on first use and live until exit; the returned pointers are stable,
 * so hot paths look a series up once and keep it. Label sets are passed pre-rendered, e.g.
 * "route=\"create\",code=\"200\"" (never an id, claim or token). All calls are thread-safe. */
#ifndef CM_METRICS_H
#define CM_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct cm_counter cm_counter_t;
typedef struct cm_gauge cm_gauge_t;
typedef struct cm_histogram cm_histogram_t;

/* |labels| may be NULL or "". Same name+labels returns the same series. */
cm_counter_t *cm_metrics_counter(const char *name, const char *help, const char *labels);
void cm_counter_add(cm_counter_t *c, uint64_t n);
uint64_t cm_counter_value(const cm_counter_t *c);

cm_gauge_t *cm_metrics_gauge(const char *name, const char *help, const char *labels);
void cm_gauge_set(cm_gauge_t *g, int64_t v);
void cm_gauge_add(cm_gauge_t *g, int64_t delta);
int64_t cm_gauge_value(const cm_gauge_t *g);

/* |bounds| are the upper bounds of the buckets, ascending, in the unit observed (seconds
 * for latencies); NULL uses a latency default from 100 µs to 10 s. */
cm_histogram_t *cm_metrics_histogram(const char *name, const char *help, const char *labels,
                                     const double *bounds, size_t nbounds);
void cm_histogram_observe(cm_histogram_t *h, double v);

/* Renders every series. Returns a malloc'd NUL-terminated text (free()), or NULL. */
char *cm_metrics_render(size_t *len);

#endif
