/* ms_tengine_pg: the PostgreSQL fixture of the parametrised store tests (ms_tengine.h). One
 * real PostgreSQL cluster per test process (th_pg, started on first use, fsync off, gone when
 * the process exits), a fresh database per fixture, dropped at teardown. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "ms_tengine.h"
#include "th_pg.h"

#define PG_POOL 8
#define PG_TIMEOUT_MS 5000

static th_pg_t cluster;
static int cluster_up;
static int db_seq;

typedef struct {
    char db[48];
    char url_file[600];
    char key_file[600];
    char token_file[600];
} pg_fx_t;

static int setup(ms_tengine_t *fx)
{
    if (!cluster_up) {
        if (th_pg_start(&cluster, 0) != 0)
            return -1;
        cluster_up = 1;
    }
    pg_fx_t *p = calloc(1, sizeof(*p));
    if (!p)
        return -1;
    fx->priv = p;
    snprintf(p->db, sizeof(p->db), "t%d_%d", (int)getpid(), ++db_seq);
    if (th_pg_create_db(&cluster, p->db, p->url_file, sizeof(p->url_file)) != 0)
        return -1;
    /* Every replica of one deployment hashes claims with the same key: a file, not generated. */
    snprintf(p->key_file, sizeof(p->key_file), "%s/claim.key", fx->dir);
    FILE *f = fopen(p->key_file, "w");
    if (!f)
        return -1;
    /* key rings (common/cm_seal.h): one key each, the same for every replica */
    fputs("1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", f);
    if (fclose(f) != 0)
        return -1;
    snprintf(p->token_file, sizeof(p->token_file), "%s/token-keys", fx->dir);
    f = fopen(p->token_file, "w");
    if (!f)
        return -1;
    fputs("1 fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210\n", f);
    return fclose(f) == 0 ? 0 : -1;
}

static int open_engine(ms_tengine_t *fx)
{
    pg_fx_t *p = fx->priv;
    ms_pg_opts_t o = {.database_url_file = p->url_file,
                      .pool_size = PG_POOL,
                      .statement_timeout_ms = PG_TIMEOUT_MS};
    char err[256];
    if (ms_engine_pg_open(&o, &fx->engine, err, sizeof(err)) != MS_OK) {
        fprintf(stderr, "ms_tengine_pg: %s\n", err);
        return -1;
    }
    return 0;
}

static void teardown(ms_tengine_t *fx)
{
    pg_fx_t *p = fx->priv;
    if (p && p->db[0] && cluster_up) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", p->db);
        th_pg_query(&cluster, 0, "postgres", sql, NULL, 0);
    }
    free(p);
    fx->priv = NULL;
}

/* Rows of every table whose key or value holds the needle. */
static int count_mentions(ms_tengine_t *fx, const void *needle, size_t n)
{
    pg_fx_t *p = fx->priv;
    char ci[256];
    snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%d user=relay dbname=%s", cluster.primary.port,
             p->db);
    PGconn *c = PQconnectdb(ci);
    int total = -1;
    if (PQstatus(c) != CONNECTION_OK)
        goto out;
    static const char *const SQL =
        "SELECT (SELECT count(*) FROM ms_mailbox WHERE position($1 IN convert_to(mailbox_id, "
        "'UTF8')) > 0 OR position($1 IN record) > 0)"
        " + (SELECT count(*) FROM ms_idem WHERE position($1 IN convert_to(mailbox_id, 'UTF8')) > 0"
        " OR position($1 IN claim_hash) > 0 OR position($1 IN record) > 0)"
        " + (SELECT count(*) FROM ms_outbox WHERE position($1 IN convert_to(mailbox_id, 'UTF8')) "
        "> 0 OR position($1 IN entry) > 0)";
    const char *vals[1] = {needle};
    int lens[1] = {(int)n};
    int fmts[1] = {1};
    PGresult *r = PQexecParams(c, SQL, 1, NULL, vals, lens, fmts, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        total = atoi(PQgetvalue(r, 0, 0));
    else
        fprintf(stderr, "ms_tengine_pg: count_mentions: %s", PQerrorMessage(c));
    PQclear(r);
out:
    PQfinish(c);
    return total;
}

static int server_args(ms_tengine_t *fx, const char **args, int max)
{
    pg_fx_t *p = fx->priv;
    if (max < 4)
        return 0;
    snprintf(fx->args[0], sizeof(fx->args[0]), "--engine=postgres");
    snprintf(fx->args[1], sizeof(fx->args[1]), "--database-url-file=%s", p->url_file);
    snprintf(fx->args[2], sizeof(fx->args[2]), "--claim-key-file=%s", p->key_file);
    snprintf(fx->args[3], sizeof(fx->args[3]), "--token-key-file=%s", p->token_file);
    for (int i = 0; i < 4; i++)
        args[i] = fx->args[i];
    return 4;
}

const ms_tengine_ops_t ms_tengine_pg_ops = {
    .name = "postgres",
    .setup = setup,
    .open = open_engine,
    .teardown = teardown,
    .count_mentions = count_mentions,
    .server_args = server_args,
};
