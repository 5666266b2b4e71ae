#include "ms_tengine.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <rocksdb/c.h>

#include "ms_engine_rocks.h"
#include "th.h"

static const ms_tengine_ops_t *g_ops = &ms_tengine_rocks_ops;

/* ---- RocksDB: the database in <dir>/db, as the binary keeps it under --data-dir ---- */

static void rocks_path(const ms_tengine_t *fx, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/db", fx->dir);
}

static int rocks_setup(ms_tengine_t *fx)
{
    return 0; /* RocksDB creates the directory at the first open */
}

static int rocks_open(ms_tengine_t *fx)
{
    char path[600], err[256];
    rocks_path(fx, path, sizeof(path));
    ms_rocks_opts_t o = {.path = path, .sync = 0};
    if (ms_engine_rocks_open(&o, &fx->engine, err, sizeof(err)) != MS_OK) {
        fprintf(stderr, "ms_tengine: %s\n", err);
        return -1;
    }
    return 0;
}

static void rocks_teardown(ms_tengine_t *fx)
{
}

static int rocks_count(ms_tengine_t *fx, const void *needle, size_t n)
{
    rocksdb_t *db = NULL;
    rocksdb_options_t *o = NULL;
    if (fx->engine) {
        db = ms_engine_rocks_db(fx->engine);
    } else {
        char path[600], *err = NULL;
        rocks_path(fx, path, sizeof(path));
        o = rocksdb_options_create();
        db = rocksdb_open_for_read_only(o, path, 0, &err);
        if (err) {
            free(err);
            rocksdb_options_destroy(o);
            return -1;
        }
    }
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator(db, ro);
    int count = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl), *v = rocksdb_iter_value(it, &vl);
        if (memmem(k, kl, needle, n) || memmem(v, vl, needle, n))
            count++;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (o) {
        rocksdb_close(db);
        rocksdb_options_destroy(o);
    }
    return count;
}

static int rocks_server_args(ms_tengine_t *fx, const char **args, int max)
{
    if (max < 1)
        return 0;
    args[0] = "--engine=rocksdb";
    return 1;
}

const ms_tengine_ops_t ms_tengine_rocks_ops = {
    .name = "rocksdb",
    .setup = rocks_setup,
    .open = rocks_open,
    .teardown = rocks_teardown,
    .count_mentions = rocks_count,
    .server_args = rocks_server_args,
};

/* ---- choosing the engine ---- */

static int choose(const char *name)
{
    ms_engine_kind_t kind;
    if (ms_engine_kind_parse(name, &kind) != 0)
        return -1;
    if (kind == MS_ENGINE_ROCKSDB) {
        g_ops = &ms_tengine_rocks_ops;
        return 0;
    }
#ifdef MS_TEST_HAVE_POSTGRES
    g_ops = &ms_tengine_pg_ops;
    return 0;
#else
    return -1;
#endif
}

void ms_tengine_init(int *argc, char **argv)
{
    const char *name = getenv("TEST_ENGINE");
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        if (strncmp(argv[i], "--engine=", 9) == 0)
            name = argv[i] + 9;
        else
            argv[out++] = argv[i];
    }
    *argc = out;
    argv[out] = NULL;
    if (name && *name && choose(name) != 0) {
        fprintf(stderr, "unknown or not built storage engine \"%s\" (rocksdb%s)\n", name,
#ifdef MS_TEST_HAVE_POSTGRES
                ", postgres"
#else
                ""
#endif
        );
        exit(2);
    }
    fprintf(stderr, "storage engine: %s\n", g_ops->name);
}

ms_engine_kind_t ms_tengine_kind(void)
{
    ms_engine_kind_t kind = MS_ENGINE_ROCKSDB;
    ms_engine_kind_parse(g_ops->name, &kind);
    return kind;
}

const char *ms_tengine_name(void)
{
    return g_ops->name;
}

/* ---- the fixture ---- */

int ms_tengine_setup(ms_tengine_t *fx, int open_engine)
{
    memset(fx, 0, sizeof(*fx));
    fx->ops = g_ops;
    fx->kind = ms_tengine_kind();
    if (th_tempdir("ms-engine", fx->dir, sizeof(fx->dir)) != 0)
        return -1;
    if (fx->ops->setup(fx) != 0)
        return -1;
    return open_engine ? ms_tengine_open(fx) : 0;
}

int ms_tengine_open(ms_tengine_t *fx)
{
    return fx->engine ? 0 : fx->ops->open(fx);
}

void ms_tengine_close(ms_tengine_t *fx)
{
    ms_engine_close(fx->engine);
    fx->engine = NULL;
}

void ms_tengine_teardown(ms_tengine_t *fx)
{
    ms_tengine_close(fx);
    fx->ops->teardown(fx);
    if (fx->dir[0])
        th_rmtree(fx->dir);
    fx->dir[0] = '\0';
}

int ms_tengine_count_mentions(ms_tengine_t *fx, const void *needle, size_t n)
{
    return fx->ops->count_mentions(fx, needle, n);
}

int ms_tengine_server_args(ms_tengine_t *fx, const char **args, int max)
{
    return fx->ops->server_args(fx, args, max);
}

/* ---- the binding race ---- */

typedef struct {
    int (*read_secure)(void *ctx, int who);
    void *ctx;
    int who;
    pthread_barrier_t *bar;
    int code;
} racer_t;

static void *racer(void *arg)
{
    racer_t *r = arg;
    pthread_barrier_wait(r->bar);
    r->code = r->read_secure(r->ctx, r->who);
    return NULL;
}

int ms_tengine_binding_race(int n, int base, int (*read_secure)(void *ctx, int who), void *ctx,
                            int denied)
{
    assert_true(n > 0 && n <= MS_TENGINE_RACERS);
    pthread_t t[MS_TENGINE_RACERS];
    racer_t r[MS_TENGINE_RACERS];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        r[i] = (racer_t){read_secure, ctx, base + i, &bar, -1};
        assert_int_equal(pthread_create(&t[i], NULL, racer, &r[i]), 0);
    }
    int winners = 0, winner = -1;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        if (r[i].code == 0) {
            winners++;
            winner = r[i].who;
        } else {
            assert_int_equal(r[i].code, denied);
        }
    }
    pthread_barrier_destroy(&bar);
    assert_int_equal(winners, 1);
    return winner;
}
