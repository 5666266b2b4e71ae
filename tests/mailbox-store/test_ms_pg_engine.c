/* The PostgreSQL engine (ms_engine_pg) through the engine interface, on a real PostgreSQL 15
 * cluster (th_pg), with two engine instances standing for two store replicas on one database:
 * schema creation by replicas starting at once, transactions (read-your-writes, delete and
 * re-create in place, all-or-nothing), a binding race with exactly one winner, concurrent
 * creates of one id, sweepers and outbox claims of two replicas never taking the same row, and
 * what an unreachable database looks like (UNAVAILABLE, unhealthy, recovery without reopening,
 * statement timeouts). The store-level rules run against this engine in the parametrised store
 * tests. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "ms_engine.h"
#include "ms_engine_pg.h"
#include "th.h"
#include "th_pg.h"

static th_pg_t pg;
static int db_counter;

typedef struct {
    char url_file[600];
    char db[32];
    ms_engine_t *a, *b; /* two replicas */
} fx_t;

static ms_engine_t *open_engine(const char *url_file, int64_t timeout_ms)
{
    ms_pg_opts_t o = {
        .database_url_file = url_file, .pool_size = 4, .statement_timeout_ms = timeout_ms};
    ms_engine_t *e = NULL;
    char err[256];
    ms_err_t rc = ms_engine_pg_open(&o, &e, err, sizeof(err));
    if (rc != MS_OK)
        fprintf(stderr, "open: %s\n", err);
    return rc == MS_OK ? e : NULL;
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    snprintf(fx->db, sizeof(fx->db), "eng_%d", ++db_counter);
    *state = fx;
    if (th_pg_create_db(&pg, fx->db, fx->url_file, sizeof(fx->url_file)) != 0)
        return -1;
    fx->a = open_engine(fx->url_file, 2000);
    fx->b = open_engine(fx->url_file, 2000);
    return fx->a && fx->b ? 0 : -1;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    ms_engine_close(fx->a);
    ms_engine_close(fx->b);
    free(fx);
    return 0;
}

static long long q(fx_t *fx, const char *sql)
{
    return th_pg_query_int(&pg, 0, fx->db, sql);
}

static void free_entries(ms_outbox_entry_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(e[i].blob);
}

/* ---- transaction bodies ---- */

typedef struct {
    ms_engine_t *e;
    const char *blob; /* what to store */
    int64_t expires_ms;
    int found;   /* out: record existed */
    int created; /* out */
} put_arg_t;

/* Create-like: when absent, record + idempotency record + a notify entry. */
static ms_err_t create_body(ms_txn_t *t, void *argp)
{
    put_arg_t *a = argp;
    const ms_engine_ops_t *o = a->e->ops;
    a->found = a->created = 0;
    uint8_t *b = NULL;
    size_t n = 0;
    ms_err_t err = o->get_record(t, &b, &n);
    free(b);
    if (err == MS_OK) {
        a->found = 1;
        return MS_OK;
    }
    if (err != MS_ERR_NOT_FOUND)
        return err;
    if ((err = o->put_record(t, a->expires_ms, (const uint8_t *)a->blob, strlen(a->blob))) != MS_OK)
        return err;
    if ((err = o->put_idem(t, (const uint8_t *)"h1", 2, (const uint8_t *)"i1", 2)) != MS_OK)
        return err;
    if ((err = o->add_outbox(t, MS_OUTBOX_NOTIFY, (const uint8_t *)"n", 1)) != MS_OK)
        return err;
    a->created = 1;
    return MS_OK;
}

static ms_err_t create(ms_engine_t *e, const char *id, const char *blob, int64_t expires_ms)
{
    put_arg_t a = {.e = e, .blob = blob, .expires_ms = expires_ms};
    ms_err_t err = e->ops->run(e, id, create_body, &a);
    return err == MS_OK && !a.created ? MS_ERR_EXISTS : err;
}

static char *read_rec(ms_engine_t *e, const char *id)
{
    uint8_t *b = NULL;
    size_t n = 0;
    if (e->ops->read_record(e, id, &b, &n) != MS_OK)
        return NULL;
    char *s = strndup((const char *)b, n);
    free(b);
    return s;
}

static void make_id(int i, char id[MS_ID_LEN + 1])
{
    snprintf(id, MS_ID_LEN + 1, "00000000-0000-4000-8000-%012d", i);
}

static const char *ID1 = "0b7e7e5c-1d2a-4c55-9a0e-6f1c1e2a3b4c";

/* ---- schema ---- */

typedef struct {
    const char *url_file;
    ms_engine_t *e;
} open_arg_t;

static void *open_thread(void *argp)
{
    open_arg_t *a = argp;
    a->e = open_engine(a->url_file, 5000);
    return NULL;
}

static void schema_created_once_by_replicas_starting_together(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(q(fx, "SELECT count(*) FROM ms_schema_version"), 1);
    assert_int_equal(q(fx, "SELECT max(version) FROM ms_schema_version"), MS_PG_SCHEMA_VERSION);

    char url_file[600];
    assert_int_equal(th_pg_create_db(&pg, "eng_race", url_file, sizeof(url_file)), 0);
    pthread_t th[8];
    open_arg_t args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (open_arg_t){.url_file = url_file};
        assert_int_equal(pthread_create(&th[i], NULL, open_thread, &args[i]), 0);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 8; i++) {
        assert_non_null(args[i].e);
        ms_err_t rc = create(args[i].e, ID1, "x", INT64_MAX);
        assert_true(rc == MS_OK || rc == MS_ERR_EXISTS);
        ms_engine_close(args[i].e);
    }
    assert_int_equal(th_pg_query_int(&pg, 0, "eng_race", "SELECT count(*) FROM ms_schema_version"),
                     1);

    /* A database from a newer store is refused, not touched. */
    assert_int_equal(
        th_pg_query(&pg, 0, "eng_race", "INSERT INTO ms_schema_version VALUES (99, 0)", NULL, 0),
        0);
    assert_null(open_engine(url_file, 2000));
}

/* ---- transactions ---- */

typedef struct {
    ms_engine_t *e;
    int step;
    ms_err_t fail_with; /* returned at the end (writes discarded) */
} recreate_arg_t;

/* Delete then put again in one run (Create over an expired mailbox); reads in between see the
 * run's own writes. */
static ms_err_t recreate_body(ms_txn_t *t, void *argp)
{
    recreate_arg_t *a = argp;
    const ms_engine_ops_t *o = a->e->ops;
    uint8_t *b = NULL;
    size_t n = 0;
    ms_err_t err = o->get_record(t, &b, &n);
    free(b);
    if (err != MS_OK)
        return err;
    if ((err = o->delete_mailbox(t)) != MS_OK)
        return err;
    if (o->get_record(t, &b, &n) != MS_ERR_NOT_FOUND)
        return MS_ERR_INTERNAL;
    if (o->get_idem(t, (const uint8_t *)"h1", 2, &b, &n) != MS_ERR_NOT_FOUND)
        return MS_ERR_INTERNAL;
    if ((err = o->put_record(t, 123, (const uint8_t *)"second", 6)) != MS_OK)
        return err;
    if ((err = o->get_record(t, &b, &n)) != MS_OK)
        return err;
    int same = n == 6 && memcmp(b, "second", 6) == 0;
    free(b);
    if (!same)
        return MS_ERR_INTERNAL;
    if ((err = o->add_outbox(t, MS_OUTBOX_CANCEL, (const uint8_t *)"c", 1)) != MS_OK)
        return err;
    return a->fail_with;
}

static void run_reads_own_writes_and_is_all_or_nothing(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(create(fx->a, ID1, "first", INT64_MAX), MS_OK);
    assert_int_equal(create(fx->b, ID1, "again", INT64_MAX), MS_ERR_EXISTS);
    char *s = read_rec(fx->b, ID1);
    assert_string_equal(s, "first");
    free(s);
    assert_int_equal(q(fx, "SELECT count(*) FROM ms_idem"), 1);
    assert_int_equal(q(fx, "SELECT count(*) FROM ms_outbox"), 1);

    /* An error from the body: nothing of the run stays. */
    recreate_arg_t a = {.e = fx->b, .fail_with = MS_ERR_DENIED};
    assert_int_equal(fx->b->ops->run(fx->b, ID1, recreate_body, &a), MS_ERR_DENIED);
    s = read_rec(fx->a, ID1);
    assert_string_equal(s, "first");
    free(s);
    assert_int_equal(q(fx, "SELECT count(*) FROM ms_idem"), 1);

    a.fail_with = MS_OK;
    assert_int_equal(fx->b->ops->run(fx->b, ID1, recreate_body, &a), MS_OK);
    s = read_rec(fx->a, ID1);
    assert_string_equal(s, "second");
    free(s);
    /* The idempotency records and the pending notification went; the cancel marker stays. */
    assert_int_equal(q(fx, "SELECT count(*) FROM ms_idem"), 0);
    assert_int_equal(q(fx, "SELECT count(*) FROM ms_outbox WHERE kind = 'N'"), 0);
    assert_int_equal(q(fx, "SELECT count(*) FROM ms_outbox WHERE kind = 'C'"), 1);
    assert_int_equal(q(fx, "SELECT expires_ms FROM ms_mailbox"), 123);
    assert_null(read_rec(fx->a, "11111111-1111-4111-8111-111111111111"));
}

/* ---- races between replicas ---- */

typedef struct {
    ms_engine_t *e;
    int me;
    int won; /* out */
} bind_arg_t;

/* "The first other reader binds": the record holds the bound reader's number, "-" when none. */
static ms_err_t bind_body(ms_txn_t *t, void *argp)
{
    bind_arg_t *a = argp;
    const ms_engine_ops_t *o = a->e->ops;
    a->won = 0;
    uint8_t *b = NULL;
    size_t n = 0;
    ms_err_t err = o->get_record(t, &b, &n);
    if (err != MS_OK)
        return err;
    int unbound = n == 1 && b[0] == '-';
    free(b);
    if (!unbound)
        return MS_OK;
    char me[16];
    int len = snprintf(me, sizeof(me), "%d", a->me);
    if ((err = o->put_record(t, INT64_MAX, (const uint8_t *)me, (size_t)len)) != MS_OK)
        return err;
    a->won = 1;
    return MS_OK;
}

typedef struct {
    pthread_barrier_t *go;
    bind_arg_t *bind;
    put_arg_t *create;
    const char *id;
    ms_err_t rc;
} race_arg_t;

static void *race_thread(void *argp)
{
    race_arg_t *r = argp;
    pthread_barrier_wait(r->go);
    if (r->bind) {
        r->rc = r->bind->e->ops->run(r->bind->e, r->id, bind_body, r->bind);
    } else {
        r->rc = r->create->e->ops->run(r->create->e, r->id, create_body, r->create);
    }
    return NULL;
}

static void binding_race_over_two_replicas_has_one_winner(void **state)
{
    fx_t *fx = *state;
    enum { N = 24 };
    for (int round = 0; round < 3; round++) {
        char id[MS_ID_LEN + 1];
        make_id(100 + round, id);
        assert_int_equal(create(fx->a, id, "-", INT64_MAX), MS_OK);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, N);
        pthread_t th[N];
        bind_arg_t b[N];
        race_arg_t r[N];
        for (int i = 0; i < N; i++) {
            b[i] = (bind_arg_t){.e = i % 2 ? fx->b : fx->a, .me = i};
            r[i] = (race_arg_t){.go = &go, .bind = &b[i], .id = id};
            assert_int_equal(pthread_create(&th[i], NULL, race_thread, &r[i]), 0);
        }
        int winners = 0, winner = -1;
        for (int i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            assert_int_equal(r[i].rc, MS_OK);
            if (b[i].won) {
                winners++;
                winner = i;
            }
        }
        pthread_barrier_destroy(&go);
        assert_int_equal(winners, 1);
        char *s = read_rec(fx->a, id);
        char want[16];
        snprintf(want, sizeof(want), "%d", winner);
        assert_string_equal(s, want);
        free(s);
    }
}

static void concurrent_creates_of_one_id_one_wins(void **state)
{
    fx_t *fx = *state;
    enum { N = 12 };
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    pthread_t th[N];
    put_arg_t c[N];
    race_arg_t r[N];
    char blobs[N][8];
    for (int i = 0; i < N; i++) {
        snprintf(blobs[i], sizeof(blobs[i]), "c%d", i);
        c[i] = (put_arg_t){.e = i % 2 ? fx->b : fx->a, .blob = blobs[i], .expires_ms = INT64_MAX};
        r[i] = (race_arg_t){.go = &go, .create = &c[i], .id = ID1};
        assert_int_equal(pthread_create(&th[i], NULL, race_thread, &r[i]), 0);
    }
    int created = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(r[i].rc, MS_OK);
        created += c[i].created;
        assert_int_equal(c[i].created + c[i].found, 1);
    }
    pthread_barrier_destroy(&go);
    assert_int_equal(created, 1);
    assert_int_equal(q(fx, "SELECT count(*) FROM ms_outbox"), 1);
}

typedef struct {
    ms_engine_t *e;
    size_t deleted;
    ms_err_t rc;
} sweep_arg_t;

static void *sweep_thread(void *argp)
{
    sweep_arg_t *s = argp;
    int more = 1;
    while (more && s->rc == MS_OK) {
        size_t d = 0;
        s->rc = s->e->ops->sweep(s->e, 1000000, 16, &d, &more);
        s->deleted += d;
    }
    return NULL;
}

static void two_sweepers_delete_each_mailbox_once(void **state)
{
    fx_t *fx = *state;
    enum { N = 150 };
    for (int i = 0; i < N; i++) {
        char id[MS_ID_LEN + 1];
        make_id(i, id);
        /* Expired at 1000000 except every tenth. */
        assert_int_equal(create(i % 2 ? fx->a : fx->b, id, "x", i % 10 ? 1000 + i : 2000000),
                         MS_OK);
    }
    sweep_arg_t s[2] = {{.e = fx->a}, {.e = fx->b}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, sweep_thread, &s[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(s[i].rc, MS_OK);
    }
    assert_int_equal(s[0].deleted + s[1].deleted, N - N / 10);
    assert_int_equal(q(fx, "SELECT count(*) FROM ms_mailbox"), N / 10);
    assert_int_equal(q(fx, "SELECT count(*) FROM ms_idem"), N / 10);
    assert_int_equal(q(fx, "SELECT count(*) FROM ms_outbox"), N / 10);
}

static void sweeper_skips_a_mailbox_in_use(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(create(fx->a, ID1, "x", 5), MS_OK);
    /* Another session holds the row (a request in flight): the sweep neither waits nor takes it. */
    char ci[256];
    snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%d user=relay dbname=%s", pg.primary.port,
             fx->db);
    PGconn *c = PQconnectdb(ci);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PQclear(PQexec(c, "BEGIN"));
    PGresult *r = PQexec(c, "SELECT 1 FROM ms_mailbox FOR UPDATE");
    assert_int_equal(PQntuples(r), 1);
    PQclear(r);
    size_t d = 9;
    int more = 9;
    long long t0 = th_now_ms();
    assert_int_equal(fx->b->ops->sweep(fx->b, 100, 16, &d, &more), MS_OK);
    assert_true(th_now_ms() - t0 < 1500);
    assert_int_equal(d, 0);
    assert_int_equal(more, 0);
    PQclear(PQexec(c, "COMMIT"));
    PQfinish(c);
    assert_int_equal(fx->b->ops->sweep(fx->b, 100, 16, &d, &more), MS_OK);
    assert_int_equal(d, 1);
}

static void outbox_claims_are_disjoint_leased_and_acked_once(void **state)
{
    fx_t *fx = *state;
    enum { N = 60 };
    for (int i = 0; i < N; i++) {
        char id[MS_ID_LEN + 1];
        make_id(i, id);
        assert_int_equal(create(fx->a, id, "x", INT64_MAX), MS_OK);
    }
    int64_t depth = 0;
    assert_int_equal(fx->a->ops->outbox_depth(fx->a, &depth), MS_OK);
    assert_int_equal(depth, N);
    ms_outbox_entry_t ea[N], eb[N];
    size_t na = 0, nb = 0;
    assert_int_equal(fx->a->ops->outbox_claim(fx->a, 40, 60000, ea, &na), MS_OK);
    assert_int_equal(fx->b->ops->outbox_claim(fx->b, 40, 60000, eb, &nb), MS_OK);
    assert_int_equal(na, 40);
    assert_int_equal(nb, N - 40);
    for (size_t i = 0; i < na; i++) {
        if (i)
            assert_true(ea[i].seq > ea[i - 1].seq);
        assert_int_equal(ea[i].kind, MS_OUTBOX_NOTIFY);
        assert_int_equal(ea[i].len, 1);
        for (size_t j = 0; j < nb; j++)
            assert_true(ea[i].seq != eb[j].seq);
    }
    /* Leased: nothing more to claim. Released: b's come back at once. */
    size_t n = 9;
    ms_outbox_entry_t more[N];
    assert_int_equal(fx->a->ops->outbox_claim(fx->a, N, 60000, more, &n), MS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(fx->b->ops->outbox_release(fx->b, eb, nb), MS_OK);
    assert_int_equal(fx->a->ops->outbox_claim(fx->a, N, 1, more, &n), MS_OK);
    assert_int_equal(n, nb);
    free_entries(more, n);
    /* A lease that ran out (1 ms): claimable again. */
    usleep(5000);
    assert_int_equal(fx->b->ops->outbox_claim(fx->b, N, 60000, more, &n), MS_OK);
    assert_int_equal(n, nb);
    /* Acks: each entry deleted once, acking twice is no error. */
    assert_int_equal(fx->a->ops->outbox_ack(fx->a, ea, na), MS_OK);
    assert_int_equal(fx->b->ops->outbox_ack(fx->b, ea, na), MS_OK);
    assert_int_equal(fx->b->ops->outbox_ack(fx->b, more, n), MS_OK);
    assert_int_equal(fx->a->ops->outbox_depth(fx->a, &depth), MS_OK);
    assert_int_equal(depth, 0);
    free_entries(ea, na);
    free_entries(eb, nb);
    free_entries(more, n);
}

/* ---- an unreachable database ---- */

static void lock_timeout_answers_unavailable(void **state)
{
    fx_t *fx = *state;
    ms_engine_t *quick = open_engine(fx->url_file, 300);
    assert_non_null(quick);
    assert_int_equal(create(quick, ID1, "x", INT64_MAX), MS_OK);
    char ci[256];
    snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%d user=relay dbname=%s", pg.primary.port,
             fx->db);
    PGconn *c = PQconnectdb(ci);
    PQclear(PQexec(c, "BEGIN"));
    PQclear(PQexec(c, "SELECT 1 FROM ms_mailbox FOR UPDATE"));
    long long t0 = th_now_ms();
    assert_int_equal(create(quick, ID1, "x", INT64_MAX), MS_ERR_UNAVAILABLE);
    long long took = th_now_ms() - t0;
    assert_true(took >= 250 && took < 5000);
    PQclear(PQexec(c, "ROLLBACK"));
    PQfinish(c);
    assert_int_equal(create(quick, ID1, "x", INT64_MAX), MS_ERR_EXISTS);
    ms_engine_close(quick);
}

static void unreachable_database_then_recovery_without_reopen(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(create(fx->a, ID1, "x", INT64_MAX), MS_OK);
    assert_int_equal(fx->a->ops->healthy(fx->a), 1);
    th_pg_kill_primary(&pg);
    /* Every pooled connection is dead now: fast UNAVAILABLE, never another answer. */
    for (int i = 0; i < 5; i++) {
        long long t0 = th_now_ms();
        char id[MS_ID_LEN + 1];
        make_id(i, id);
        assert_int_equal(create(fx->a, id, "x", INT64_MAX), MS_ERR_UNAVAILABLE);
        assert_null(read_rec(fx->b, ID1));
        assert_true(th_now_ms() - t0 < 3000);
    }
    assert_int_equal(fx->a->ops->healthy(fx->a), 0);
    assert_int_equal(fx->b->ops->healthy(fx->b), 0);

    assert_int_equal(th_pg_restart(&pg, &pg.primary), 0);
    assert_int_equal(fx->a->ops->healthy(fx->a), 1);
    char *s = read_rec(fx->a, ID1);
    assert_string_equal(s, "x");
    free(s);
    /* b without a health check: its back-off ends within 2 s and it reconnects by itself. */
    long long end = th_now_ms() + 10000;
    ms_err_t rc = MS_ERR_UNAVAILABLE;
    while (rc != MS_OK && th_now_ms() < end) {
        rc = create(fx->b, "22222222-2222-4222-8222-222222222222", "y", INT64_MAX);
        if (rc != MS_OK)
            usleep(100000);
    }
    assert_int_equal(rc, MS_OK);
}

/* A store started while the database is down comes up unhealthy and creates its schema once
 * the database is there. */
static void open_while_database_down(void **state)
{
    fx_t *fx = *state;
    char url_file[600];
    assert_int_equal(th_pg_create_db(&pg, "eng_late", url_file, sizeof(url_file)), 0);
    th_pg_kill_primary(&pg);
    ms_engine_t *e = open_engine(url_file, 2000);
    assert_non_null(e);
    assert_int_equal(e->ops->healthy(e), 0);
    assert_int_equal(create(e, ID1, "x", INT64_MAX), MS_ERR_UNAVAILABLE);
    assert_int_equal(th_pg_restart(&pg, &pg.primary), 0);
    assert_int_equal(e->ops->healthy(e), 1);
    assert_int_equal(create(e, ID1, "x", INT64_MAX), MS_OK);
    assert_int_equal(th_pg_query_int(&pg, 0, "eng_late", "SELECT count(*) FROM ms_mailbox"), 1);
    ms_engine_close(e);
    (void)fx;
}

static int group_setup(void **state)
{
    (void)state;
    return th_pg_start(&pg, 0);
}

static int group_teardown(void **state)
{
    (void)state;
    th_pg_stop(&pg);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(schema_created_once_by_replicas_starting_together, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(run_reads_own_writes_and_is_all_or_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(binding_race_over_two_replicas_has_one_winner, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(concurrent_creates_of_one_id_one_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(two_sweepers_delete_each_mailbox_once, setup, teardown),
        cmocka_unit_test_setup_teardown(sweeper_skips_a_mailbox_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(outbox_claims_are_disjoint_leased_and_acked_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(lock_timeout_answers_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(unreachable_database_then_recovery_without_reopen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(open_while_database_down, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
