/* cm_alloc: the one out-of-memory policy, with named variants (as Valkey's zmalloc and
 * ztrymalloc).
 *
 *   cm_x*    never return NULL. On out-of-memory they write one error log line naming the size
 *            and abort(): a process that cannot allocate a few bytes cannot serve anyway, and a
 *            clean crash restarts it (Kubernetes) instead of leaving it half-working. Use them
 *            for every allocation whose size the program controls.
 *   cm_try*  return NULL on failure (errno ENOMEM) and log nothing. Use them only where the size
 *            comes from outside (a length field in a request or a peer's answer) and failing
 *            that one request is the right answer.
 *
 * Sizes are checked for overflow (n * size); an overflow counts as out-of-memory. Free with
 * free(). */
#ifndef CM_ALLOC_H
#define CM_ALLOC_H

#include <stddef.h>

void *cm_xmalloc(size_t n);
void *cm_xcalloc(size_t n, size_t size);
/* |n| == 0 is taken as 1, so a caller always gets a usable pointer. */
void *cm_xrealloc(void *p, size_t n);
/* cm_xrealloc(p, n * size) with the multiplication checked. */
void *cm_xreallocarray(void *p, size_t n, size_t size);
/* A copy of |s|; NULL gives an empty string. */
char *cm_xstrdup(const char *s);
/* At most |n| bytes of |s|, NUL-terminated. */
char *cm_xstrndup(const char *s, size_t n);
/* A copy of |n| bytes at |p| (n may be 0). */
void *cm_xmemdup(const void *p, size_t n);

void *cm_trymalloc(size_t n);
void *cm_trycalloc(size_t n, size_t size);
void *cm_tryrealloc(void *p, size_t n);

/* Logs "out of memory (<n> bytes)" and aborts. For allocators the cm_x* functions do not cover
 * (OpenSSL's, cJSON's) whose NULL means out-of-memory. */
__attribute__((noreturn)) void cm_oom(size_t n);

#endif
