/* tg_cmd: the commands of the `tigress` command line. Each takes the arguments after the
 * command name (argv[0] is the command) and returns the process exit code (tg_io.h). */
#ifndef TG_CMD_H
#define TG_CMD_H

#include <getopt.h>

#include "tigress_client.h"

/* UpdateMailbox requires a notification token and a command line has no push channel: this
 * placeholder names a webhook under .invalid (RFC 6761: never resolves), so nothing is ever
 * delivered and nothing identifies the device. --notify gives a real token instead. */
#define TG_POLL_TOKEN_TYPE "webhook"
#define TG_POLL_TOKEN_DATA "https://polling.invalid/tigress-command-line"

/* Options every command accepts. */
typedef struct {
    char state_dir[4096];
    const char *ca_file;
    tc_http_mode_t http;
    long timeout_ms;
} tg_common_t;

enum {
    TG_OPT_STATE_DIR = 1000,
    TG_OPT_CACERT,
    TG_OPT_HTTP1,
    TG_OPT_HTTP2,
    TG_OPT_TIMEOUT,
    TG_OPT_FIRST_OWN, /* commands number their own long options from here */
};

/* The long options of tg_common_t, to end every command's table. */
#define TG_COMMON_LONGOPTS                                                                         \
    {"state-dir", required_argument, NULL, TG_OPT_STATE_DIR},                                      \
        {"cacert", required_argument, NULL, TG_OPT_CACERT},                                        \
        {"http1.1", no_argument, NULL, TG_OPT_HTTP1}, {"http2", no_argument, NULL, TG_OPT_HTTP2},  \
        {"timeout", required_argument, NULL, TG_OPT_TIMEOUT}, {"quiet", no_argument, NULL, 'q'},   \
        {"help", no_argument, NULL, 'h'},                                                          \
    {                                                                                              \
        NULL, 0, NULL, 0                                                                           \
    }

/* Text of the common options for --help. */
extern const char tg_common_help[];

/* Handles a common option |opt| (with |arg|): 1 when it was one, 0 when not, -1 when its
 * value is bad (reported). */
int tg_common_opt(tg_common_t *co, int opt, const char *arg);
/* Applies defaults (state dir, TIGRESS_CACERT) after parsing; 0 or an exit code. */
int tg_common_finish(tg_common_t *co);
/* A client for |co|; NULL after reporting. */
tc_client_t *tg_client(const tg_common_t *co);
/* "TYPE:DATA" into a notification token; 0 or -1 (reported). */
int tg_parse_token(const char *arg, const char **type, const char **data, char *buf, size_t cap);

/* Parses the options of a command: |own| (may be NULL) handles the command's own options
 * (returns 0, or an exit code). Returns 0 with the positional arguments left in
 * argv[optind..], -1 after --help (printed to stdout), or an exit code. */
typedef int (*tg_own_opt_fn)(void *ctx, int opt, const char *arg);
int tg_parse_opts(int argc, char **argv, const char *shortopts, const struct option *longopts,
                  const char *usage, tg_common_t *co, tg_own_opt_fn own, void *ctx);
/* 0 when argv[optind..] holds |need_min|..|need_max| arguments, else an exit code (reported,
 * naming |what|). */
int tg_want_args(int argc, int need_min, int need_max, const char *what);
struct tg_entry; /* tg_state.h */
/* This device's state entry for the mailbox of |s|: 0, or an exit code (reported). */
int tg_need_entry(const tg_common_t *co, const tc_share_t *s, struct tg_entry *ent);

int tg_cmd_send(int argc, char **argv);
int tg_cmd_receive(int argc, char **argv);
int tg_cmd_reply(int argc, char **argv);
int tg_cmd_wait(int argc, char **argv);
int tg_cmd_delete(int argc, char **argv);
int tg_cmd_relinquish(int argc, char **argv);
int tg_cmd_preview(int argc, char **argv);
int tg_cmd_demo(int argc, char **argv);

#endif
