/* The two mailbox exchanges of the public API, run by several tests against different targets
 * (each protocol of a gateway process, the in-process API over store shards, ...). */
#ifndef API_FLOWS_H
#define API_FLOWS_H

#include "th_api.h"

/* Stateless: create (payload bytes |fill|), preview page and its headers, one read by a
 * receiver, delete; then 404 everywhere. */
void flow_stateless(const th_api_t *t, int fill);

/* Stateful: the sender reads its own mailbox, a receiver binds and answers, a third device is
 * refused, three exchanges, delete. */
void flow_stateful(const th_api_t *t);

#endif
