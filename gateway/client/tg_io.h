/* tg_io: the command line's input, output and messages: files or stdin/stdout, plaintext
 * written only whole (temp file + rename), one-line errors, progress only on a terminal. */
#ifndef TG_IO_H
#define TG_IO_H

#include <stddef.h>
#include <stdint.h>

#include "tigress_client.h"

/* Exit codes (also in `tigress --help`). */
enum {
    TG_EXIT_OK = 0,
    TG_EXIT_FAIL = 1,        /* anything not listed below */
    TG_EXIT_USAGE = 2,       /* bad command line */
    TG_EXIT_INTEGRITY = 3,   /* wrong Secret or tampered content */
    TG_EXIT_NOT_FOUND = 4,   /* mailbox gone */
    TG_EXIT_DENIED = 5,      /* another device bound, or a right missing */
    TG_EXIT_UNREACHABLE = 6, /* relay unreachable, TLS failure, timeout */
    TG_EXIT_TOO_LARGE = 7,   /* over the relay's limit */
};

/* The command's name for messages ("send"), set once by main. */
extern const char *tg_cmd_name;
/* 1: no progress even on a terminal (--quiet). */
extern int tg_quiet;

/* "tigress <cmd>: <message>\n" on stderr (control characters replaced). */
void tg_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A progress line on stderr, only when stderr is a terminal and not --quiet. */
void tg_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A notice on stderr unless --quiet (what the user must know, e.g. that `wait` polls). */
void tg_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reports |e| from a library call as one line (with the relay's status and code when it
 * answered) and returns the exit code for it. |c| may be NULL. */
int tg_fail(tc_err_t e, const tc_client_t *c, const char *what);

/* Reads |path| ("-": stdin) whole, at most |limit| bytes. Returns 0 with *buf (malloc'd, wipe
 * with tc_free(*buf, *len)) and *len; 1 when the input is larger than |limit| (*len then the
 * file's size when known, else limit + 1; nothing returned); -1 on an I/O error (reported). */
int tg_read_input(const char *path, size_t limit, uint8_t **buf, size_t *len);

/* Writes |len| bytes to |path| whole or not at all (temp file in the same directory, mode
 * 0600, fsync, rename); |path| NULL or "-": stdout. 0, or -1 (reported). */
int tg_write_output(const char *path, const uint8_t *buf, size_t len);

/* Lower-case hex SHA-256 of |p| into |out| (65 bytes). */
void tg_sha256_hex(const uint8_t *p, size_t n, char out[65]);

/* Parses "90", "90s", "15m", "1h", "2d" into seconds (> 0). 0, or -1. */
int tg_parse_duration(const char *s, long *seconds);

/* A share URL argument: the URL itself, or "@FILE" to read it from FILE's first line (which
 * keeps the Secret out of the process list). The Secret in |arg| itself is overwritten once
 * parsed. Returns 0 or an exit code (reported). |need_secret|: fail without a fragment. */
int tg_share_arg(char *arg, int need_secret, tc_share_t *out);

/* The relay base URL into |base|: |relay| (--relay) or else $TIGRESS_RELAY. Returns 0, or
 * TG_EXIT_USAGE (reported) when neither is given or the URL is not a relay URL. */
int tg_relay_base(const char *relay, char base[TC_URL_MAX]);

#endif
