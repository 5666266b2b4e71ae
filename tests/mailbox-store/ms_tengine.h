/* ms_tengine: storage fixtures for the store tests, so one test source runs against every engine.
 *
 * A test binary is told its engine by "--engine=rocksdb|postgres" on its command line (ctest
 * registers each suite once per engine: <suite>_rocksdb, <suite>_postgres) or by TEST_ENGINE;
 * the default is rocksdb. ms_tengine_init() reads and removes that argument.
 *
 * Each engine kind supplies one ms_tengine_ops_t: ms_tengine_rocks_ops (ms_tengine.c) and, when
 * tests/mailbox-store/ms_tengine_pg.c exists (CMake then defines MS_TEST_HAVE_POSTGRES and
 * compiles it in), ms_tengine_pg_ops, which starts a real PostgreSQL server for the test
 * process (tests/harness/th_pg.h) and gives every fixture a fresh, empty database.
 *
 * Lifecycle per test: setup (fresh empty storage) -> open (engine on it; again after close, to
 * test a restart) -> close -> teardown (storage removed, servers the fixture started stopped). */
#ifndef MS_TENGINE_H
#define MS_TENGINE_H

#include <stddef.h>

#include "ms_engine.h"

typedef struct ms_tengine ms_tengine_t;

typedef struct {
    const char *name; /* "rocksdb", "postgres" */
    /* Fresh, empty storage for |fx| (fx->dir already exists: a temp dir of the fixture). 0/-1. */
    int (*setup)(ms_tengine_t *fx);
    /* Opens fx->engine on the storage. 0/-1. */
    int (*open)(ms_tengine_t *fx);
    /* Removes the storage; fx->engine is already closed. */
    void (*teardown)(ms_tengine_t *fx);
    /* Stored items (RocksDB keys; PostgreSQL rows of every table) whose key or value contains
     * the |n| bytes at |needle|. -1 on error. Works while the engine is open or closed. */
    int (*count_mentions)(ms_tengine_t *fx, const void *needle, size_t n);
    /* Flags that make a mailbox-store process use this storage, e.g. "--engine=rocksdb", or
     * "--engine=postgres" "--database-url-file=..." "--claim-key-file=...". Writes up to |max|
     * pointers (into fx-owned memory) to |args|; returns the count. The caller adds
     * --data-dir itself. */
    int (*server_args)(ms_tengine_t *fx, const char **args, int max);
} ms_tengine_ops_t;

struct ms_tengine {
    const ms_tengine_ops_t *ops;
    ms_engine_kind_t kind;
    char dir[512];       /* temp dir, owned (removed by ms_tengine_teardown) */
    ms_engine_t *engine; /* owned while open */
    char args[4][700];   /* storage for server_args */
    void *priv;          /* kind-specific state, owned by the ops */
};

extern const ms_tengine_ops_t ms_tengine_rocks_ops;
#ifdef MS_TEST_HAVE_POSTGRES
extern const ms_tengine_ops_t ms_tengine_pg_ops;
#endif

/* Reads "--engine=NAME" from argv (removing it) or TEST_ENGINE; exits 2 with a message for an
 * unknown or not-built engine. Call once at the start of main. */
void ms_tengine_init(int *argc, char **argv);
/* The engine chosen by ms_tengine_init. */
ms_engine_kind_t ms_tengine_kind(void);
const char *ms_tengine_name(void);

/* setup + open for the chosen kind (|open_engine| 0: setup only, for tests that start the
 * binary). 0/-1. */
int ms_tengine_setup(ms_tengine_t *fx, int open_engine);
int ms_tengine_open(ms_tengine_t *fx);
void ms_tengine_close(ms_tengine_t *fx);
void ms_tengine_teardown(ms_tengine_t *fx);
int ms_tengine_count_mentions(ms_tengine_t *fx, const void *needle, size_t n);
int ms_tengine_server_args(ms_tengine_t *fx, const char **args, int max);

/* The binding race both store suites run, in-process and over gRPC: |n| threads (at most
 * MS_TENGINE_RACERS) call |read_secure|(ctx, base + i) at the same moment (behind a barrier),
 * each with its own claim. Asserts (cmocka) that exactly one got 0 and every other |denied|;
 * returns the winner's number. */
#define MS_TENGINE_RACERS 64
int ms_tengine_binding_race(int n, int base, int (*read_secure)(void *ctx, int who), void *ctx,
                            int denied);

#endif
