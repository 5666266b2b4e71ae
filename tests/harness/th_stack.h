/* th_stack: the relay's binaries started for a test with the flags every test gives them
 * (loopback, ephemeral admin port), the rest from the caller. Built on th_proc_start. */
#ifndef TH_STACK_H
#define TH_STACK_H

#include "th.h"

/* Starts the built binary |name| (see th_bin) with |flags| then |more| (each NULL-terminated,
 * either may be NULL; at most TH_MAX_ARGS in all) and waits up to |timeout_ms| for its ready
 * file. Returns 0 or -1 (as th_proc_start). */
int th_start(th_proc_t *p, const char *name, const char *const *flags, const char *const *more,
             int timeout_ms);

/* mailbox-store with --listen=127.0.0.1:<grpc_port> (0: ephemeral), --admin-listen=127.0.0.1:0,
 * --data-dir=<data_dir> and |extra| (NULL-terminated or NULL). 0, or -1 also when the ready
 * file has no grpc_port. */
int th_store_start(th_proc_t *p, const char *data_dir, int grpc_port, const char *const *extra,
                   int timeout_ms);

/* gateway with --http-listen=127.0.0.1:0, --admin-listen=127.0.0.1:0, --access-log=0,
 * --rate-limit-exempt=127.0.0.0/8,::1/128 and
 * |extra| (NULL-terminated or NULL: the backends, policies, ...). 0, or -1 also when the ready
 * file has no http_port. */
int th_gateway_start(th_proc_t *p, const char *const *extra, int timeout_ms);

#endif
