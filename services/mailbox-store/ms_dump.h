/* ms_dump: prints every key of a RocksDB-engine store (stopped, or live: read-only open is
 * allowed alongside the server) as JSON lines, for operators and tests ("mailbox-store --dump").
 *
 *   {"kind":"mailbox","mailbox_id":..,"created_ms":..,"expires_ms":..,"rights":"RD",
 *    "receiver_bound":true,"creator_token_type":..,"receiver_token_type":..,
 *    "payload_type":..,"payload_len":..}
 *   {"kind":"idempotency","mailbox_id":..,"method":4,"correlation_id":..}
 *   {"kind":"outbox_ref","mailbox_id":..,"seq":..}
 *   {"kind":"expiry","mailbox_id":..,"expires_ms":..}
 *   {"kind":"outbox","seq":..,"type":"notify"|"cancel","notification_id":..,"mailbox_id":..,
 *    "token_type":..,"token_data":..,"mailbox_expires_at_ms":..,"created_at_ms":..}
 *
 * Payloads and claim hashes are never printed. Outbox token data is printed as stored, i.e.
 * sealed (ms_core_token_seal); sealing is the identity today, so that is the token that gets
 * sent. Once tokens are encrypted at rest the dump must open them with the core's key. */
#ifndef MS_DUMP_H
#define MS_DUMP_H

#include <stdio.h>

/* |db_path| is the RocksDB directory. Returns the number of keys printed, or -1. */
long ms_dump(const char *db_path, FILE *out, char *err, size_t errcap);

#endif
