/* cm_log: structured JSON-line logging to stderr.
 *
 * One line per event: {"ts":"2026-11-23T07:00:00.123Z","level":"info","service":"gateway",
 * "msg":"...","request_id":"..."}. Never pass a device claim, notification token, payload or
 * secret into a log call: the logger cannot tell them apart from other text. */
#ifndef CM_LOG_H
#define CM_LOG_H

#include <stdarg.h>

typedef enum {
    CM_LOG_DEBUG = 0,
    CM_LOG_INFO = 1,
    CM_LOG_WARN = 2,
    CM_LOG_ERROR = 3,
} cm_log_level_t;

/* Sets the service name stamped on every line and the minimum level. Call once at start. */
void cm_log_init(const char *service, cm_log_level_t min_level);

/* Parses "debug", "info", "warn" or "error". Returns 0, or -1 for anything else. */
int cm_log_level_parse(const char *s, cm_log_level_t *out);

int cm_log_enabled(cm_log_level_t level);

/* |request_id| may be NULL. |fmt| is printf-style; the result is JSON-escaped. */
void cm_log(cm_log_level_t level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cm_logv(cm_log_level_t level, const char *request_id, const char *fmt, va_list ap);

#define CM_DEBUG(rid, ...)                                                                         \
    do {                                                                                           \
        if (cm_log_enabled(CM_LOG_DEBUG))                                                          \
            cm_log(CM_LOG_DEBUG, rid, __VA_ARGS__);                                                \
    } while (0)
#define CM_INFO(rid, ...) cm_log(CM_LOG_INFO, rid, __VA_ARGS__)
#define CM_WARN(rid, ...) cm_log(CM_LOG_WARN, rid, __VA_ARGS__)
#define CM_ERROR(rid, ...) cm_log(CM_LOG_ERROR, rid, __VA_ARGS__)

#endif
