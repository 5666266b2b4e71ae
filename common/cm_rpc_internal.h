/* Private to cm_rpc.c and cm_rpc_client.c: the protobuf-c <-> grpc_byte_buffer codec. */
#ifndef CM_RPC_INTERNAL_H
#define CM_RPC_INTERNAL_H

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <protobuf-c/protobuf-c.h>

/* Returns a new byte buffer holding |msg| packed (caller destroys it). */
grpc_byte_buffer *cm_rpc__pack(const ProtobufCMessage *msg);
/* Returns the unpacked message (free with protobuf_c_message_free_unpacked), or NULL when
 * |bb| does not parse as |desc|. */
ProtobufCMessage *cm_rpc__unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb);

#endif
