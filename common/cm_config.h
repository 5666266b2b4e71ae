/* cm_config: configuration from flags and environment variables, one table per binary.
 *
 * Every option has a flag (--name), an environment variable (TIGRESS_NAME: upper case, '-'
 * becomes '_') and a documented default. Precedence: flag, then environment, then default.
 * --help prints the table (flag, variable, default, help) and makes cm_config_parse return 1. */
#ifndef CM_CONFIG_H
#define CM_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CM_OPT_STR,  /* dst: const char ** (points into argv/environ or the default; never freed) */
    CM_OPT_INT,  /* dst: int64_t * */
    CM_OPT_BOOL, /* dst: int *; accepts 1/0, true/false, yes/no, on/off */
} cm_opt_type_t;

typedef struct {
    const char *name; /* flag without the leading "--", e.g. "data-dir" */
    cm_opt_type_t type;
    const char *def; /* default as text; NULL for an empty string option */
    const char *help;
    void *dst;
} cm_opt_t;

/* Parses |argv| and the environment into the |opts| table. Positional arguments (those not
 * starting with "--") are left in order in |argv| and their count returned in *|npos| when
 * |npos| is not NULL; without |npos| a positional argument is an error.
 * Returns 0 on success, 1 when --help was printed (exit 0), -1 on error (message printed). */
int cm_config_parse(const char *prog, const char *summary, cm_opt_t *opts, size_t nopts, int argc,
                    char **argv, int *npos);

/* Writes the environment variable name for |flag| into |buf|. */
void cm_config_env_name(const char *flag, char *buf, size_t cap);

/* Reads a small secret file (e.g. a key) whole. Returns 0 and a malloc'd buffer in *out (NUL
 * terminated, trailing newline stripped, length in *len), or -1. */
int cm_config_read_file(const char *path, size_t max, char **out, size_t *len);

/* Writes |json| to |path| atomically (temp file + rename) so a test harness or supervisor
 * polling for it never reads half of it. Used for --ready-file: every binary writes its bound
 * ports there once all listeners are up. No-op when |path| is NULL or empty. 0 or -1. */
int cm_config_write_ready(const char *path, const char *json);

/* Splits a listen address "host:port", "[v6]:port" or ":port" (":port" = all IPv4
 * interfaces, host "0.0.0.0") into |host| (capacity |hcap|) and *|port| (0..65535; 0 = any
 * free port). Returns 0, or -1 for anything else. */
int cm_config_split_listen(const char *listen, char *host, size_t hcap, int *port);

#endif
