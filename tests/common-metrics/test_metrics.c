/* cm_metrics: values, the text format a Prometheus scraper parses, and thread safety. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>

#include "cm_metrics.h"

static size_t count_occurrences(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static char *render(void)
{
    size_t len = 0;
    char *t = cm_metrics_render(&len);
    assert_non_null(t);
    assert_int_equal(strlen(t), len);
    return t;
}

static void counter_and_gauge(void **state)
{
    cm_counter_t *a = cm_metrics_counter("t_requests_total", "Requests.", "route=\"create\"");
    cm_counter_t *b = cm_metrics_counter("t_requests_total", "Requests.", "route=\"read\"");
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_ptr_equal(a, cm_metrics_counter("t_requests_total", "Requests.", "route=\"create\""));
    cm_counter_add(a, 3);
    cm_counter_add(a, 2);
    cm_counter_add(b, 1);
    assert_int_equal(cm_counter_value(a), 5);

    cm_gauge_t *g = cm_metrics_gauge("t_open_connections", "Open connections.", NULL);
    assert_ptr_equal(g, cm_metrics_gauge("t_open_connections", "Open connections.", ""));
    cm_gauge_set(g, 10);
    cm_gauge_add(g, -12);
    assert_int_equal(cm_gauge_value(g), -2);

    char *t = render();
    /* HELP and TYPE once per name, however many series. */
    assert_int_equal(count_occurrences(t, "# HELP t_requests_total Requests.\n"), 1);
    assert_int_equal(count_occurrences(t, "# TYPE t_requests_total counter\n"), 1);
    assert_non_null(strstr(t, "\nt_requests_total{route=\"create\"} 5\n"));
    assert_non_null(strstr(t, "\nt_requests_total{route=\"read\"} 1\n"));
    assert_non_null(strstr(t, "# TYPE t_open_connections gauge\nt_open_connections -2\n"));
    /* The TYPE line comes before the family's samples. */
    assert_true(strstr(t, "# TYPE t_requests_total") < strstr(t, "t_requests_total{"));
    free(t);
}

static void histogram_format(void **state)
{
    const double bounds[] = {0.005, 0.1, 1};
    cm_histogram_t *h =
        cm_metrics_histogram("t_latency_seconds", "Latency.", "route=\"read\"", bounds, 3);
    assert_non_null(h);
    cm_histogram_observe(h, 0.001);
    cm_histogram_observe(h, 0.005); /* on a bound: counts in that bucket (le is <=) */
    cm_histogram_observe(h, 0.05);
    cm_histogram_observe(h, 7);
    cm_histogram_observe(h, 0.0 / 0.0); /* NaN is ignored */
    cm_histogram_t *nl = cm_metrics_histogram("t_plain_seconds", "No labels.", NULL, NULL, 0);
    cm_histogram_observe(nl, 0.0002);

    char *t = render();
    assert_int_equal(count_occurrences(t, "# TYPE t_latency_seconds histogram\n"), 1);
    assert_non_null(strstr(t, "t_latency_seconds_bucket{route=\"read\",le=\"0.005\"} 2\n"
                              "t_latency_seconds_bucket{route=\"read\",le=\"0.1\"} 3\n"
                              "t_latency_seconds_bucket{route=\"read\",le=\"1\"} 3\n"
                              "t_latency_seconds_bucket{route=\"read\",le=\"+Inf\"} 4\n"
                              "t_latency_seconds_sum{route=\"read\"} 7.056\n"
                              "t_latency_seconds_count{route=\"read\"} 4\n"));
    /* Default buckets: 100 µs .. 10 s. */
    assert_non_null(strstr(t, "t_plain_seconds_bucket{le=\"0.0001\"} 0\n"
                              "t_plain_seconds_bucket{le=\"0.00025\"} 1\n"));
    assert_non_null(strstr(t, "t_plain_seconds_bucket{le=\"10\"} 1\n"
                              "t_plain_seconds_bucket{le=\"+Inf\"} 1\n"
                              "t_plain_seconds_sum 0.0002\n"
                              "t_plain_seconds_count 1\n"));
    free(t);
}

static void bad_registrations(void **state)
{
    assert_null(cm_metrics_counter("1starts_with_digit", "x", NULL));
    assert_null(cm_metrics_counter("has-dash", "x", NULL));
    assert_null(cm_metrics_counter("", "x", NULL));
    assert_non_null(cm_metrics_counter("t_kind_clash", "x", NULL));
    assert_null(cm_metrics_gauge("t_kind_clash", "x", NULL));
    const double unsorted[] = {1, 0.5};
    assert_null(cm_metrics_histogram("t_unsorted", "x", NULL, unsorted, 2));
    /* NULL series are no-ops, so a failed registration cannot crash a request path. */
    cm_counter_add(NULL, 1);
    cm_gauge_set(NULL, 1);
    cm_gauge_add(NULL, 1);
    cm_histogram_observe(NULL, 1);
    assert_int_equal(cm_counter_value(NULL), 0);

    cm_metrics_counter("t_help_escape", "Line one\nback\\slash", NULL);
    char *t = render();
    assert_non_null(strstr(t, "# HELP t_help_escape Line one\\nback\\\\slash\n"));
    assert_null(strstr(t, "has-dash"));
    assert_null(strstr(t, "t_unsorted"));
    free(t);
}

#define THREADS 4
#define ITERS 100000

static void *hammer(void *arg)
{
    long id = (long)arg;
    char labels[32];
    snprintf(labels, sizeof(labels), "t=\"%ld\"", id);
    cm_counter_t *shared = cm_metrics_counter("t_mt_total", "Shared.", NULL);
    cm_histogram_t *h = cm_metrics_histogram("t_mt_seconds", "Shared.", NULL, NULL, 0);
    for (int i = 0; i < ITERS; i++) {
        cm_counter_add(shared, 1);
        cm_histogram_observe(h, 0.5);
        if (i % 10000 == 0) {
            /* Registration and rendering race with updates from the other threads. */
            cm_counter_add(cm_metrics_counter("t_mt_per_thread_total", "Per thread.", labels), 1);
            free(cm_metrics_render(NULL));
        }
    }
    return NULL;
}

static void thread_safety(void **state)
{
    pthread_t th[THREADS];
    for (long i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, (void *)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(cm_counter_value(cm_metrics_counter("t_mt_total", "Shared.", NULL)),
                     THREADS * ITERS);
    char *t = render();
    char want[128];
    snprintf(want, sizeof(want), "t_mt_seconds_count %d\n", THREADS * ITERS);
    assert_non_null(strstr(t, want));
    snprintf(want, sizeof(want), "t_mt_seconds_sum %d\n", THREADS * ITERS / 2);
    assert_non_null(strstr(t, want));
    assert_int_equal(count_occurrences(t, "# TYPE t_mt_per_thread_total counter\n"), 1);
    for (int i = 0; i < THREADS; i++) {
        snprintf(want, sizeof(want), "t_mt_per_thread_total{t=\"%d\"} 10\n", i);
        assert_non_null(strstr(t, want));
    }
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counter_and_gauge),
        cmocka_unit_test(histogram_format),
        cmocka_unit_test(bad_registrations),
        cmocka_unit_test(thread_safety),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
