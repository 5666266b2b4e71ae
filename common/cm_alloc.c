#include "cm_alloc.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"

void cm_oom(size_t n)
{
    /* cm_log formats into a stack buffer: safe to call with the heap exhausted. */
    CM_ERROR(NULL, "out of memory (%zu bytes): aborting", n);
    abort();
}

void *cm_trymalloc(size_t n)
{
    return malloc(n ? n : 1);
}

void *cm_trycalloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    return calloc(n ? n : 1, size ? size : 1);
}

void *cm_tryrealloc(void *p, size_t n)
{
    return realloc(p, n ? n : 1);
}

void *cm_xmalloc(size_t n)
{
    void *p = cm_trymalloc(n);
    if (!p)
        cm_oom(n);
    return p;
}

void *cm_xcalloc(size_t n, size_t size)
{
    void *p = cm_trycalloc(n, size);
    if (!p)
        cm_oom(size && n > SIZE_MAX / size ? SIZE_MAX : n * size);
    return p;
}

void *cm_xrealloc(void *p, size_t n)
{
    void *r = cm_tryrealloc(p, n);
    if (!r)
        cm_oom(n);
    return r;
}

void *cm_xreallocarray(void *p, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        cm_oom(SIZE_MAX);
    return cm_xrealloc(p, n * size);
}

char *cm_xstrdup(const char *s)
{
    return cm_xstrndup(s ? s : "", SIZE_MAX);
}

char *cm_xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *r = cm_xmalloc(len + 1);
    memcpy(r, s, len);
    r[len] = '\0';
    return r;
}

void *cm_xmemdup(const void *p, size_t n)
{
    void *r = cm_xmalloc(n);
    if (n)
        memcpy(r, p, n);
    return r;
}
