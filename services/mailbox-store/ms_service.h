/* ms_service: the tigress.mailbox.v1.MailboxStore gRPC methods over cm_rpc, backed by
 * ms_store. Counts requests per method and status code in cm_metrics
 * (tigress_mailbox_store_requests_total{method,code}). */
#ifndef MS_SERVICE_H
#define MS_SERVICE_H

#include "cm_rpc.h"
#include "ms_store.h"

#define MS_SERVICE_NAME "tigress.mailbox.v1.MailboxStore"

/* Registers the six methods and Batch (several of them in one call) on |srv| (before
 * cm_rpc_server_start). |st| must outlive |srv|. Returns 0 or -1. */
int ms_service_register(cm_rpc_server_t *srv, ms_store_t *st);

#endif
