/* ms_outbox: forwards the store's durable outbox to push-dispatch.
 *
 * One thread claims entries from the engine (ms_engine.h outbox_claim: in sequence order,
 * leased so that forwarders of other replicas on a shared database skip them): runs of
 * notifications go out as one tigress.push.v1.PushDispatch/Enqueue call (up to MS_OUTBOX_BATCH), a
 * cancel marker as CancelMailbox (with the mailbox's expiry, so push-dispatch refuses late Enqueues
 * until then). Entries are acknowledged (deleted) only after the call returned OK, and released
 * after a failed call, so delivery to push-dispatch is at least once (it drops re-sent notification
 * ids). Failures are retried with exponential backoff (100 ms .. 5 s); INVALID_ARGUMENT is
 * permanent and drops the entry. Notifications whose mailbox already expired are dropped without a
 * call. */
#ifndef MS_OUTBOX_H
#define MS_OUTBOX_H

#include <stdint.h>

#include "ms_core.h"

#define MS_OUTBOX_BATCH 64

typedef struct ms_outbox ms_outbox_t;

/* Allocates the forwarder; its wake function is the core's outbox hook, so create it before
 * the core and start it after. */
ms_outbox_t *ms_outbox_new(void);
/* Store outbox hook: wakes the forwarder (|arg| is the ms_outbox_t). Cheap; any thread. */
void ms_outbox_wake(void *arg);

/* Starts forwarding to |target| ("host:port", "dns:///svc:port"). |lb_policy| NULL or "" is
 * gRPC's default (pick_first); "round_robin" spreads calls over every address of a Kubernetes
 * headless Service. Returns 0 or -1. */
int ms_outbox_start(ms_outbox_t *ob, ms_core_t *core, const char *target, const char *lb_policy,
                    int64_t call_timeout_ms);
/* Stops the thread (waiting for a call in flight, bounded by its timeout) and frees. Works on
 * a never-started forwarder too. */
void ms_outbox_del(ms_outbox_t *ob);

#endif
