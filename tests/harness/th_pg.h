/* th_pg: a real PostgreSQL 15 cluster started by a test, on loopback, in a fresh temp dir.
 *
 * The cluster is made with initdb (superuser "relay", trust auth on loopback and on its unix
 * socket, which sits in the temp dir) and runs as the unprivileged "postgres" user when the test
 * runs as root (the server refuses root), else as the test's own user. The postmaster runs in
 * its own process group with PR_SET_PDEATHSIG=SIGKILL, and every group this process started is
 * killed from an atexit hook and from SIGTERM/SIGINT/SIGHUP/SIGALRM/SIGABRT handlers, so a
 * cluster never outlives its test: not when the test fails, not when ctest kills it on a
 * timeout. th_pg_start also makes the test process die with its parent (ctest).
 *
 * The parent-death signal fires when the *thread* that forked the postmaster exits: start
 * clusters from the test's main thread.
 *
 * Server binaries come from $TH_PG_BIN, else /usr/lib/postgresql/15/bin. */
#ifndef TH_PG_H
#define TH_PG_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
    char data_dir[512];
    char log_path[512];
    int port;
    pid_t pid; /* postmaster, also its process group; 0 when not running */
} th_pg_node_t;

typedef struct {
    char root[400];       /* temp dir holding everything below; removed by th_pg_stop */
    char sock_dir[512];   /* unix sockets of both nodes */
    char url_path[512];   /* file with the connection URL of the default database */
    th_pg_node_t primary; /* the writable node at start */
    th_pg_node_t standby; /* synchronous streaming standby (TH_PG_STANDBY), else port 0 */
    int flags;
} th_pg_t;

enum {
    /* fsync on (and full_page_writes): for tests of durability across a crash. Without it the
     * cluster runs with fsync=off for speed. */
    TH_PG_DURABLE = 1,
    /* a synchronous streaming standby (pg_basebackup -R -X stream, synchronous_standby_names
     * '*'): a commit returns only once the standby has it. Implies TH_PG_DURABLE. */
    TH_PG_STANDBY = 2,
};

/* initdb + start (and the standby with TH_PG_STANDBY, waited until it streams synchronously).
 * Returns 0, or -1 after printing why (then nothing is left running). */
int th_pg_start(th_pg_t *pg, int flags);

/* Kills both nodes (SIGKILL to each process group), waits for them and removes the temp dir
 * (unless TH_KEEP is set). Idempotent. */
void th_pg_stop(th_pg_t *pg);

/* Connection URL of database |db| (NULL: "relay") on the primary; with a standby, a multi-host
 * URL listing primary then standby with target_session_attrs=read-write, so a client follows a
 * promotion by itself. Written to |buf|; returns |buf|. */
const char *th_pg_url(const th_pg_t *pg, const char *db, char *buf, size_t cap);

/* Creates database |db| (a fresh one per test keeps tests apart on one cluster) and writes its
 * URL (th_pg_url) to a file in the cluster's temp dir, path in |url_file|. 0 or -1. */
int th_pg_create_db(th_pg_t *pg, const char *db, char *url_file, size_t cap);

/* Runs |sql| on database |db| (NULL: "relay") of the node on |port| (0: the primary) and copies
 * the first column of the first row (or "" when there is none) into |out| (may be NULL). 0, or
 * -1 when the statement failed (the server's message is printed). */
int th_pg_query(const th_pg_t *pg, int port, const char *db, const char *sql, char *out,
                size_t cap);

/* Integer result of th_pg_query, or -1 on error. */
long long th_pg_query_int(const th_pg_t *pg, int port, const char *db, const char *sql);

/* kill -9 of the primary's whole process group (postmaster and every backend at once, like a
 * machine crash), reaped. */
void th_pg_kill_primary(th_pg_t *pg);

/* kill -9 of every server process of |node| (the primary or the standby), reaped. */
void th_pg_kill_node(th_pg_t *pg, th_pg_node_t *node);

/* Promotes the standby (pg_promote, waiting until it accepts writes). 0 or -1. */
int th_pg_promote(th_pg_t *pg);

/* Restarts a node that was killed (same data dir and port), waiting until it accepts
 * connections. 0 or -1. */
int th_pg_restart(th_pg_t *pg, th_pg_node_t *node);

#endif
