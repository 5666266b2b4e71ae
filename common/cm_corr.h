/* cm_corr: the one rule for client-supplied correlation ids (the mailbox-correlation-id and
 * mailbox-request-id headers, the correlation_id fields): 1..CM_CORR_ID_MAX bytes of visible
 * ASCII (0x21..0x7e). An id that breaks it is neither echoed, forwarded, logged nor stored. */
#ifndef CM_CORR_H
#define CM_CORR_H

#include <stddef.h>

#define CM_CORR_ID_MAX 128

/* 1 when |s| (NUL-terminated; NULL is invalid) follows the rule, else 0. */
int cm_corr_id_valid(const char *s);

/* The same for |n| bytes at |s| (no NUL needed; a NUL byte makes it invalid). */
int cm_corr_id_valid_n(const char *s, size_t n);

#endif
