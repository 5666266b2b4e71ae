/* th: test harness for integration tests that run the real binaries on ephemeral ports.
 *
 * th_proc_start() runs a binary with --ready-file pointing into a fresh temp directory and
 * waits until the process wrote it (all listeners bound); ports are then read from it.
 *
 * Nothing a test starts outlives it: each proc runs in its own process group, gets SIGKILL from
 * the kernel when the test process dies (even by SIGKILL, e.g. a ctest timeout), and its whole
 * group is killed when the test process exits or gets a fatal signal (SIGTERM, SIGINT, SIGABRT,
 * ...). Start procs from the test's main thread: the kernel's death signal follows the thread
 * that forked. tests/harness/th_proc.py does the same for Python tests. */
#ifndef TH_H
#define TH_H

#include <stddef.h>
#include <sys/types.h>

#define TH_MAX_ARGS 48

typedef struct {
    pid_t pid;
    char ready_path[512];
    char log_path[512]; /* the child's stderr (JSON log lines) */
    char *ready_json;   /* contents of the ready file, malloc'd */
} th_proc_t;

/* Path of a built binary: $TIGRESS_BIN_DIR/<name> (set by ctest), e.g. "mailbox-store". */
const char *th_bin(const char *name, char *buf, size_t cap);

/* A fresh directory under $TMPDIR; path written to |buf|. Returns 0 or -1. */
int th_tempdir(const char *prefix, char *buf, size_t cap);

/* Removes a directory tree (rm -rf). */
void th_rmtree(const char *path);

/* Starts |argv| (NULL-terminated; argv[0] is the binary path) with "--ready-file=..." added and
 * waits up to |timeout_ms| for the ready file. Returns 0 or -1 (the process is then killed).
 * The process gets SIGKILL when the thread that started it exits (PR_SET_PDEATHSIG), so a test
 * killed on a timeout leaves none behind: start processes from the test's main thread. */
int th_proc_start(th_proc_t *p, char *const argv[], int timeout_ms);

/* Integer field |key| of the ready JSON (e.g. "grpc_port"), or -1. */
int th_proc_port(const th_proc_t *p, const char *key);

/* Sends |sig|, waits up to |timeout_ms| for exit. Returns the exit status as from waitpid
 * (use WIFEXITED etc.), or -1 on timeout (then the process is SIGKILLed and reaped). */
int th_proc_stop(th_proc_t *p, int sig, int timeout_ms);

/* SIGTERM, waits up to |timeout_ms|, and returns 0 when the process exited 0 (so a sanitizer
 * report or a hang fails the test); otherwise -1, after printing |what|, the status and the
 * log path to stderr (the log is kept). */
int th_proc_stop_clean(th_proc_t *p, const char *what, int timeout_ms);

/* SIGKILL and reap, no questions. */
void th_proc_kill9(th_proc_t *p);

/* The proc's temp dir (ready file, stderr log) outlives th_proc_stop/th_proc_kill9 so a test
 * can still read p->log_path; it is removed when the test process exits, or earlier by
 * th_proc_cleanup (which also kills the proc if it still runs and clears the paths). Set
 * TH_KEEP=1 to keep every dir (the paths are printed) for a post-mortem. */
void th_proc_cleanup(th_proc_t *p);

/* A test that kills a server and starts it again on the same port must keep that port while
 * the server is down. Ports handed out by the kernel come from the ephemeral range, so another
 * process's outgoing connection may take it in the meantime, or a peer that keeps retrying
 * connects to itself (a loopback "self-connect"); the restart then fails with EADDRINUSE.
 * th_port_hold binds 127.0.0.1:|port| without listening: connects to it are still refused, and
 * the kernel never picks an explicitly bound port for an outgoing connection. The restarted
 * server binds beside it (it must set SO_REUSEADDR, as gRPC core, PostgreSQL and Python's
 * servers do); th_port_release then closes the hold. Returns the socket, or -1. */
int th_port_hold(int port);
void th_port_release(int fd);

/* th_proc_kill9, then th_port_hold(|port|). Returns the hold (or -1). */
int th_proc_kill9_hold(th_proc_t *p, int port);

/* Milliseconds on a monotonic clock. */
long long th_now_ms(void);

/* Reads a whole file; malloc'd, NUL-terminated, or NULL. */
char *th_read_file(const char *path, size_t *len);

#endif
