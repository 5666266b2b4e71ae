/* Private to cm_rpc.c and cm_rpc_client.c: the protobuf-c <-> grpc_byte_buffer codec, and the
 * completion-queue tag hand-off as ThreadSanitizer needs to see it. */
#ifndef CM_RPC_INTERNAL_H
#define CM_RPC_INTERNAL_H

#include <stdatomic.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>

#include "cm_metrics.h"

/* ThreadSanitizer does not see the synchronisation inside gRPC core (the Debian library is not
 * instrumented, so its atomics and lock-free queues are invisible). A completion-queue tag
 * hands its call from the thread that starts a batch to the thread that polls the event, so
 * that hand-off is declared: CM_RPC__TAG_OUT before giving a tag to gRPC, CM_RPC__TAG_IN when
 * it comes back from a completion queue. Without ThreadSanitizer both are no-ops. */
#if defined(__SANITIZE_THREAD__)
#define CM_RPC__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CM_RPC__TSAN 1
#endif
#endif
#ifdef CM_RPC__TSAN
#include <sanitizer/tsan_interface.h>
#define CM_RPC__TAG_OUT(tag) __tsan_release(tag)
#define CM_RPC__TAG_IN(tag) __tsan_acquire(tag)
#else
#define CM_RPC__TAG_OUT(tag) ((void)(tag))
#define CM_RPC__TAG_IN(tag) ((void)(tag))
#endif

/* Returns a new byte buffer holding |msg| packed (caller destroys it). */
grpc_byte_buffer *cm_rpc__pack(const ProtobufCMessage *msg);
/* Returns the unpacked message (free with protobuf_c_message_free_unpacked), or NULL when
 * |bb| does not parse as |desc|. */
ProtobufCMessage *cm_rpc__unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb);

/* Request metrics of one method: the counter per status code is looked up in the registry on
 * its first use and cached, so counting a call is an atomic load and add. */
typedef struct {
    const char *name; /* counter family name, static */
    const char *help; /* static */
    char method[160]; /* label value */
    _Atomic(cm_counter_t *) codes[17];
    cm_histogram_t *duration; /* NULL when the family has no latency histogram */
} cm_rpc__metrics_t;

/* |hist_name| NULL: no histogram. Thread-safe only before the struct is shared. */
void cm_rpc__metrics_init(cm_rpc__metrics_t *mx, const char *name, const char *help,
                          const char *method, const char *hist_name, const char *hist_help);
/* Counts one call with |code|; observes |seconds| when >= 0 and there is a histogram. */
void cm_rpc__metrics_count(cm_rpc__metrics_t *mx, grpc_status_code code, double seconds);
/* Seconds on CLOCK_MONOTONIC since |t0|. */
double cm_rpc__seconds_since(const struct timespec *t0);

#endif
