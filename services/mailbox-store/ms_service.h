/* ms_service: the tigress.mailbox.v1.MailboxStore gRPC methods over cm_rpc, backed by ms_core.
 * The only place that maps protobuf messages to the core's domain types and ms_err_t to gRPC
 * status codes. Counts requests per method and status code in cm_metrics
 * (tigress_mailbox_store_requests_total{method,code}). */
#ifndef MS_SERVICE_H
#define MS_SERVICE_H

#include "cm_rpc.h"
#include "ms_core.h"

#define MS_SERVICE_NAME "tigress.mailbox.v1.MailboxStore"

/* Registers the six methods and Batch (several of them in one call) on |srv| (before
 * cm_rpc_server_start). |core| must outlive |srv|. Returns 0 or -1. */
int ms_service_register(cm_rpc_server_t *srv, ms_core_t *core);

#endif
