#include "tg_io.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

const char *tg_cmd_name = "";
int tg_quiet = 0;

static void vline(const char *prefix, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
            *p = '?'; /* relay- or file-supplied text must not drive the terminal */
    fprintf(stderr, "%s%s%s%s\n", prefix, tg_cmd_name, *tg_cmd_name ? ": " : "", msg);
}

void tg_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline("tigress ", fmt, ap);
    va_end(ap);
}

void tg_progress(const char *fmt, ...)
{
    if (tg_quiet || !isatty(STDERR_FILENO))
        return;
    va_list ap;
    va_start(ap, fmt);
    vline("tigress ", fmt, ap);
    va_end(ap);
}

void tg_notice(const char *fmt, ...)
{
    if (tg_quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vline("tigress ", fmt, ap);
    va_end(ap);
}

static int exit_code_for(tc_err_t e)
{
    switch (e) {
    case TC_ERR_INTEGRITY:
    case TC_ERR_SECRET:
        return TG_EXIT_INTEGRITY;
    case TC_ERR_NOT_FOUND:
        return TG_EXIT_NOT_FOUND;
    case TC_ERR_UNAUTHORIZED:
    case TC_ERR_ATTESTATION:
        return TG_EXIT_DENIED;
    case TC_ERR_UNREACHABLE:
    case TC_ERR_TLS:
    case TC_ERR_TIMEOUT:
    case TC_ERR_UNAVAILABLE:
        return TG_EXIT_UNREACHABLE;
    case TC_ERR_TOO_LARGE:
        return TG_EXIT_TOO_LARGE;
    case TC_ERR_URL:
    case TC_ERR_INSECURE:
    case TC_ERR_INVALID_ARG:
        return TG_EXIT_USAGE;
    default:
        return TG_EXIT_FAIL;
    }
}

int tg_fail(tc_err_t e, const tc_client_t *c, const char *what)
{
    const tc_call_info_t *ci = c ? tc_client_last_call(c) : NULL;
    char detail[600] = "";
    if (ci && ci->status && (e != TC_OK))
        snprintf(detail, sizeof(detail), " (relay: %ld%s%s%s%s)", ci->status,
                 ci->code[0] ? " " : "", ci->code, ci->message[0] ? ": " : "", ci->message);
    else if (ci && ci->transport[0])
        snprintf(detail, sizeof(detail), " (%s%s)", ci->transport,
                 ci->attempts > 1 ? ", after retries" : "");
    tg_err("%s%s%s%s", what ? what : "", what ? ": " : "", tc_err_text(e), detail);
    return exit_code_for(e);
}

int tg_read_input(const char *path, size_t limit, uint8_t **buf, size_t *len)
{
    int is_stdin = strcmp(path, "-") == 0;
    int fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        tg_err("cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size > limit) {
        *len = (size_t)st.st_size;
        if (!is_stdin)
            close(fd);
        return 1;
    }
    size_t cap = limit + 1, n = 0;
    uint8_t *b = malloc(cap ? cap : 1);
    int rc = -1;
    if (!b) {
        tg_err("out of memory");
        goto done;
    }
    for (;;) {
        ssize_t k = read(fd, b + n, cap - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            tg_err("cannot read %s: %s", is_stdin ? "stdin" : path, strerror(errno));
            goto done;
        }
        if (k == 0)
            break;
        n += (size_t)k;
        if (n > limit) {
            *len = n;
            rc = 1;
            goto done;
        }
    }
    *buf = b;
    *len = n;
    b = NULL;
    rc = 0;
done:
    tc_free(b, cap);
    if (!is_stdin && fd >= 0)
        close(fd);
    return rc;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int tg_write_output(const char *path, const uint8_t *buf, size_t len)
{
    if (!path || strcmp(path, "-") == 0) {
        if (write_all(STDOUT_FILENO, buf, len) != 0) {
            tg_err("cannot write to stdout: %s", strerror(errno));
            return -1;
        }
        return 0;
    }
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= (int)sizeof(tmp)) {
        tg_err("output path too long");
        return -1;
    }
    int fd = mkstemp(tmp); /* mode 0600: the plaintext is nobody else's business */
    if (fd < 0) {
        tg_err("cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    if (write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
        tg_err("cannot write %s: %s", path, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        tg_err("cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

void tg_sha256_hex(const uint8_t *p, size_t n, char out[65])
{
    uint8_t d[SHA256_DIGEST_LENGTH];
    SHA256(p, n, d);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

int tg_parse_duration(const char *s, long *seconds)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || v <= 0)
        return -1;
    long mul = 1;
    if (*end == 'm')
        mul = 60;
    else if (*end == 'h')
        mul = 3600;
    else if (*end == 'd')
        mul = 86400;
    else if (*end != 's' && *end != '\0')
        return -1;
    if (*end && end[1])
        return -1;
    if (v > 100L * 365 * 86400 / mul)
        return -1;
    *seconds = v * mul;
    return 0;
}

static int read_url_file(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        tg_err("cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    int ok = fgets(out, (int)cap, f) != NULL;
    fclose(f);
    if (!ok) {
        tg_err("%s is empty", path);
        return -1;
    }
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

int tg_share_arg(char *arg, int need_secret, tc_share_t *out)
{
    char url[TC_URL_MAX + 2];
    if (arg[0] == '@') {
        if (read_url_file(arg + 1, url, sizeof(url)) != 0)
            return TG_EXIT_USAGE;
    } else {
        snprintf(url, sizeof(url), "%s", arg);
        char *hash = strchr(arg, '#');
        if (hash) /* keep the Secret out of /proc/<pid>/cmdline from now on */
            memset(hash + 1, 'x', strlen(hash + 1));
    }
    tc_err_t e = tc_share_parse(url, out);
    OPENSSL_cleanse(url, sizeof(url));
    if (e == TC_OK && need_secret && out->secret_len == 0)
        e = TC_ERR_SECRET;
    if (e != TC_OK) {
        tg_err("%s", e == TC_ERR_SECRET ? "the share URL has no valid Secret after '#' (base64 "
                                          "of 16 or 32 bytes)"
                                        : tc_err_text(e));
        return TG_EXIT_USAGE;
    }
    return 0;
}

int tg_relay_base(const char *relay, char base[TC_URL_MAX])
{
    if (!relay)
        relay = getenv("TIGRESS_RELAY");
    if (relay && tc_relay_base_parse(relay, base) == TC_OK)
        return 0;
    tg_err("%s", relay ? "--relay wants https://HOST[:PORT][/PATH]"
                       : "no relay: give --relay URL or set TIGRESS_RELAY");
    return TG_EXIT_USAGE;
}
