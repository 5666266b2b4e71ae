#include "cm_log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *service_name = "tigress";
static cm_log_level_t min_level = CM_LOG_INFO;
static const char *level_names[] = {"debug", "info", "warn", "error"};

void cm_log_init(const char *service, cm_log_level_t level)
{
    service_name = service;
    min_level = level;
}

int cm_log_level_parse(const char *s, cm_log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (cm_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

int cm_log_enabled(cm_log_level_t level)
{
    return level >= min_level;
}

/* Appends |s| JSON-escaped; control bytes become \u00XX so a line can never be split. */
static size_t escape(char *dst, size_t cap, size_t pos, const char *s)
{
    for (; *s && pos + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            dst[pos++] = '\\';
            dst[pos++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            pos += (size_t)snprintf(dst + pos, cap - pos, "\\u%04x", c);
        } else {
            dst[pos++] = (char)c;
        }
    }
    return pos;
}

void cm_logv(cm_log_level_t level, const char *request_id, const char *fmt, va_list ap)
{
    if (!cm_log_enabled(level))
        return;
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);

    char line[3072];
    size_t pos =
        (size_t)snprintf(line, sizeof(line),
                         "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\","
                         "\"service\":\"",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                         tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
    pos = escape(line, sizeof(line), pos, service_name);
    pos += (size_t)snprintf(line + pos, sizeof(line) - pos, "\",\"msg\":\"");
    pos = escape(line, sizeof(line), pos, msg);
    if (request_id && *request_id) {
        pos += (size_t)snprintf(line + pos, sizeof(line) - pos, "\",\"request_id\":\"");
        pos = escape(line, sizeof(line), pos, request_id);
    }
    if (pos + 4 > sizeof(line))
        pos = sizeof(line) - 4;
    memcpy(line + pos, "\"}\n", 3);
    pos += 3;
    /* One fwrite per line: stderr is unbuffered, so lines from threads never interleave. */
    fwrite(line, 1, pos, stderr);
}

void cm_log(cm_log_level_t level, const char *request_id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cm_logv(level, request_id, fmt, ap);
    va_end(ap);
}
