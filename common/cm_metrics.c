#include "cm_metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM } kind_t;

struct cm_counter {
    _Atomic uint64_t v;
};

struct cm_gauge {
    _Atomic int64_t v;
};

struct cm_histogram {
    double *bounds; /* owned; ascending upper bounds, |nbounds| of them (+Inf is implicit) */
    size_t nbounds;
    /* owned; nbounds + 1 non-cumulative counts, the last one for (bounds[n-1], +Inf]. Stored
     * non-cumulative so one observation is one atomic increment; render sums them. */
    _Atomic uint64_t *counts;
    _Atomic uint64_t sum_bits; /* the double sum, as bits, updated by compare-and-swap */
};

typedef struct series {
    char *labels; /* owned; pre-rendered label set, "" when none */
    union {
        struct cm_counter counter;
        struct cm_gauge gauge;
        struct cm_histogram hist;
    } u;
    struct series *next; /* owned; registration order, so output is stable between scrapes */
} series_t;

typedef struct family {
    char *name; /* owned */
    char *help; /* owned */
    kind_t kind;
    series_t *series;    /* owned list */
    series_t **tail;     /* where the next series is linked */
    struct family *next; /* owned */
} family_t;

/* The registry only grows; series live until exit, which is what makes the returned pointers
 * stable and lets hot paths update values with atomics alone, without the lock. The lock
 * serialises registration and rendering. Memory stays reachable from |families|, so leak
 * checkers do not report it. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static family_t *families;
static family_t **families_tail = &families;

static const double default_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                        0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};

/* Prometheus metric names: [a-zA-Z_:][a-zA-Z0-9_:]*. A bad name would make the whole scrape
 * unparseable, so it is refused at registration rather than rendered. */
static int name_valid(const char *n)
{
    if (!n || !*n)
        return 0;
    for (const char *p = n; *p; p++) {
        char c = *p;
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p != n && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

/* Must hold reg_lock. Finds or creates the family; NULL when the name is taken by another
 * kind or on allocation failure. */
static family_t *family_get(const char *name, const char *help, kind_t kind)
{
    for (family_t *f = families; f; f = f->next) {
        if (strcmp(f->name, name) == 0)
            return f->kind == kind ? f : NULL;
    }
    family_t *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    if (!f->name || !f->help)
        goto fail;
    f->kind = kind;
    f->tail = &f->series;
    *families_tail = f;
    families_tail = &f->next;
    return f;
fail:
    free(f->name);
    free(f->help);
    free(f);
    return NULL;
}

/* Must hold reg_lock. */
static series_t *series_find(family_t *f, const char *labels)
{
    for (series_t *s = f->series; s; s = s->next) {
        if (strcmp(s->labels, labels) == 0)
            return s;
    }
    return NULL;
}

static series_t *series_new(const char *labels)
{
    series_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->labels = strdup(labels);
    if (!s->labels) {
        free(s);
        return NULL;
    }
    return s;
}

static void series_link(family_t *f, series_t *s)
{
    *f->tail = s;
    f->tail = &s->next;
}

static series_t *lookup_simple(const char *name, const char *help, const char *labels, kind_t kind)
{
    if (!name_valid(name))
        return NULL;
    if (!labels)
        labels = "";
    pthread_mutex_lock(&reg_lock);
    series_t *s = NULL;
    family_t *f = family_get(name, help, kind);
    if (f) {
        s = series_find(f, labels);
        if (!s && (s = series_new(labels)))
            series_link(f, s);
    }
    pthread_mutex_unlock(&reg_lock);
    return s;
}

cm_counter_t *cm_metrics_counter(const char *name, const char *help, const char *labels)
{
    series_t *s = lookup_simple(name, help, labels, KIND_COUNTER);
    return s ? &s->u.counter : NULL;
}

/* The value operations accept NULL (a failed registration) as a no-op so a metrics problem
 * can never take a request path down. */
void cm_counter_add(cm_counter_t *c, uint64_t n)
{
    if (c)
        atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

uint64_t cm_counter_value(const cm_counter_t *c)
{
    return c ? atomic_load_explicit(&((cm_counter_t *)c)->v, memory_order_relaxed) : 0;
}

cm_gauge_t *cm_metrics_gauge(const char *name, const char *help, const char *labels)
{
    series_t *s = lookup_simple(name, help, labels, KIND_GAUGE);
    return s ? &s->u.gauge : NULL;
}

void cm_gauge_set(cm_gauge_t *g, int64_t v)
{
    if (g)
        atomic_store_explicit(&g->v, v, memory_order_relaxed);
}

void cm_gauge_add(cm_gauge_t *g, int64_t delta)
{
    if (g)
        atomic_fetch_add_explicit(&g->v, delta, memory_order_relaxed);
}

int64_t cm_gauge_value(const cm_gauge_t *g)
{
    return g ? atomic_load_explicit(&((cm_gauge_t *)g)->v, memory_order_relaxed) : 0;
}

cm_histogram_t *cm_metrics_histogram(const char *name, const char *help, const char *labels,
                                     const double *bounds, size_t nbounds)
{
    if (!bounds || nbounds == 0) {
        bounds = default_bounds;
        nbounds = sizeof(default_bounds) / sizeof(*default_bounds);
    }
    for (size_t i = 0; i < nbounds; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
            return NULL;
    }
    if (!name_valid(name))
        return NULL;
    if (!labels)
        labels = "";

    pthread_mutex_lock(&reg_lock);
    series_t *s = NULL;
    family_t *f = family_get(name, help, KIND_HISTOGRAM);
    if (!f)
        goto out;
    s = series_find(f, labels);
    if (s)
        goto out;
    s = series_new(labels);
    if (!s)
        goto out;
    s->u.hist.bounds = malloc(nbounds * sizeof(double));
    s->u.hist.counts = calloc(nbounds + 1, sizeof(*s->u.hist.counts));
    if (!s->u.hist.bounds || !s->u.hist.counts) {
        free(s->u.hist.bounds);
        free(s->u.hist.counts);
        free(s->labels);
        free(s);
        s = NULL;
        goto out;
    }
    memcpy(s->u.hist.bounds, bounds, nbounds * sizeof(double));
    s->u.hist.nbounds = nbounds;
    series_link(f, s);
out:
    pthread_mutex_unlock(&reg_lock);
    return s ? &s->u.hist : NULL;
}

void cm_histogram_observe(cm_histogram_t *h, double v)
{
    if (!h || isnan(v))
        return;
    /* Linear scan: bucket lists are short (default 16) and mostly hit early for latencies. */
    size_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&h->sum_bits, memory_order_relaxed), nb;
    do {
        double d;
        memcpy(&d, &old, sizeof(d));
        d += v;
        memcpy(&nb, &d, sizeof(nb));
    } while (!atomic_compare_exchange_weak_explicit(&h->sum_bits, &old, nb, memory_order_relaxed,
                                                    memory_order_relaxed));
}

/* Growable output buffer; |failed| latches an allocation failure so callers check once. */
typedef struct {
    char *buf; /* owned until handed to the caller of cm_metrics_render */
    size_t len, cap;
    int failed;
} out_t;

__attribute__((format(printf, 2, 3))) static void out_printf(out_t *o, const char *fmt, ...)
{
    if (o->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t ncap = o->cap * 2;
        while (ncap - o->len <= (size_t)n)
            ncap *= 2;
        char *nb = realloc(o->buf, ncap);
        if (!nb) {
            o->failed = 1;
            return;
        }
        o->buf = nb;
        o->cap = ncap;
    }
}

/* HELP text escaping per the 0.0.4 format: backslash and newline only. */
static void out_help(out_t *o, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            out_printf(o, "\\\\");
        else if (*s == '\n')
            out_printf(o, "\\n");
        else
            out_printf(o, "%c", *s);
    }
}

/* Shortest text that reads back as the same double, so "le" values stay as written (0.005,
 * not 0.0050000000000000001). */
static void fmt_double(double d, char *buf, size_t cap)
{
    if (isinf(d)) {
        snprintf(buf, cap, d > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (isnan(d)) {
        snprintf(buf, cap, "NaN");
        return;
    }
    /* Plain decimals in the usual range: "le" is compared as a string by queries, and other
     * client libraries write 10, not 1e+01. */
    if (d == 0 || (fabs(d) >= 1e-6 && fabs(d) < 1e15)) {
        for (int dec = 0; dec <= 30; dec++) {
            snprintf(buf, cap, "%.*f", dec, d);
            if (strtod(buf, NULL) == d)
                return;
        }
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

/* One bucket line: the series labels (if any) plus le. */
static void out_bucket(out_t *o, const char *name, const char *labels, const char *le, uint64_t cum)
{
    out_printf(o, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, *labels ? "," : "", le,
               (unsigned long long)cum);
}

static void render_family(out_t *o, const family_t *f)
{
    static const char *types[] = {"counter", "gauge", "histogram"};
    if (!f->series)
        return;
    out_printf(o, "# HELP %s ", f->name);
    out_help(o, f->help);
    out_printf(o, "\n# TYPE %s %s\n", f->name, types[f->kind]);
    for (const series_t *s = f->series; s; s = s->next) {
        const char *lb = s->labels;
        const char *open = *lb ? "{" : "", *close = *lb ? "}" : "";
        if (f->kind == KIND_COUNTER) {
            out_printf(o, "%s%s%s%s %llu\n", f->name, open, lb, close,
                       (unsigned long long)cm_counter_value(&s->u.counter));
        } else if (f->kind == KIND_GAUGE) {
            out_printf(o, "%s%s%s%s %lld\n", f->name, open, lb, close,
                       (long long)cm_gauge_value(&s->u.gauge));
        } else {
            const struct cm_histogram *h = &s->u.hist;
            char num[64];
            uint64_t cum = 0;
            for (size_t i = 0; i < h->nbounds; i++) {
                cum += atomic_load_explicit(&((struct cm_histogram *)h)->counts[i],
                                            memory_order_relaxed);
                fmt_double(h->bounds[i], num, sizeof(num));
                out_bucket(o, f->name, lb, num, cum);
            }
            cum += atomic_load_explicit(&((struct cm_histogram *)h)->counts[h->nbounds],
                                        memory_order_relaxed);
            out_bucket(o, f->name, lb, "+Inf", cum);
            uint64_t bits =
                atomic_load_explicit(&((struct cm_histogram *)h)->sum_bits, memory_order_relaxed);
            double sum;
            memcpy(&sum, &bits, sizeof(sum));
            fmt_double(sum, num, sizeof(num));
            out_printf(o, "%s_sum%s%s%s %s\n", f->name, open, lb, close, num);
            /* _count is the +Inf bucket by definition; reusing |cum| keeps the two equal even
             * while observations race with the scrape. */
            out_printf(o, "%s_count%s%s%s %llu\n", f->name, open, lb, close,
                       (unsigned long long)cum);
        }
    }
}

char *cm_metrics_render(size_t *len)
{
    out_t o = {.cap = 4096};
    o.buf = malloc(o.cap);
    if (!o.buf)
        return NULL;
    o.buf[0] = '\0';
    pthread_mutex_lock(&reg_lock);
    for (const family_t *f = families; f; f = f->next)
        render_family(&o, f);
    pthread_mutex_unlock(&reg_lock);
    if (o.failed) {
        free(o.buf);
        return NULL;
    }
    if (len)
        *len = o.len;
    return o.buf;
}
