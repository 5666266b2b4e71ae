/* libFuzzer target: arbitrary bytes as gRPC request bodies of every MailboxStore method, run
 * through the real store logic on a real RocksDB (temporary directory), plus the stored-record
 * decoders. The first byte picks the method; the rest is the protobuf body, exactly what a
 * client can send. Invariants: no crash, no leak, no sanitizer report; every reply is a known
 * status code; a successful reply is a valid response message. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ftw.h>

#include "ms_keys.h"
#include "ms_record.h"
#include "ms_store.h"

static ms_store_t *g_st;
static char g_dir[256];
static int64_t g_now = 1790000000000LL;

static int64_t fake_now(void *arg)
{
    return g_now;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void cleanup(void)
{
    ms_store_close(g_st);
    nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof(g_dir), "%s/fuzz-ms-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir))
        abort();
    static const uint8_t key[32] = "fuzz-claim-key-fuzz-claim-key-32";
    ms_store_opts_t o = {.path = g_dir,
                         .sync = 0,
                         .max_ttl_s = 172800,
                         .claim_key = key,
                         .claim_key_len = sizeof(key),
                         .now_ms = fake_now};
    char err[256];
    if (ms_store_open(&o, &g_st, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    atexit(cleanup);
    return 0;
}

typedef struct {
    const ProtobufCMessageDescriptor *req, *resp;
    int (*fn)(ms_store_t *, const void *, ms_result_t *);
} op_t;

static const op_t OPS[] = {
    {&tigress__mailbox__v1__create_request__descriptor,
     &tigress__mailbox__v1__create_response__descriptor, (void *)ms_store_create},
    {&tigress__mailbox__v1__read_display_request__descriptor,
     &tigress__mailbox__v1__read_display_response__descriptor, (void *)ms_store_read_display},
    {&tigress__mailbox__v1__read_secure_request__descriptor,
     &tigress__mailbox__v1__read_secure_response__descriptor, (void *)ms_store_read_secure},
    {&tigress__mailbox__v1__update_request__descriptor,
     &tigress__mailbox__v1__update_response__descriptor, (void *)ms_store_update},
    {&tigress__mailbox__v1__delete_request__descriptor,
     &tigress__mailbox__v1__delete_response__descriptor, (void *)ms_store_delete},
    {&tigress__mailbox__v1__relinquish_request__descriptor,
     &tigress__mailbox__v1__relinquish_response__descriptor, (void *)ms_store_relinquish},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    if (sel >= 0xf0) { /* the decoders of what the store itself wrote */
        ms_record_t r;
        uint8_t m;
        ms_blob_t c, resp;
        ms_record_decode(data, size, &r);
        ms_idem_decode(data, size, &m, &c, &resp);
        int64_t e;
        uint64_t seq;
        char id[MS_ID_LEN + 1];
        ms_key_parse_expiry((const char *)data, size, &e, id);
        ms_key_parse_outbox((const char *)data, size, &seq);
        ms_key_parse_outref((const char *)data, size, &seq);
        return 0;
    }
    if (sel == 0xe0) { /* time passes; the sweeper runs */
        g_now += 1000 * (int64_t)(size % 4000);
        ms_store_sweep(g_st, g_now, 16, NULL);
        return 0;
    }
    const op_t *op = &OPS[sel % 6];
    ProtobufCMessage *req = protobuf_c_message_unpack(op->req, NULL, size, data);
    if (!req)
        return 0;
    ms_result_t res;
    op->fn(g_st, req, &res);
    if (res.code == GRPC_STATUS_OK) {
        ProtobufCMessage *r = protobuf_c_message_unpack(op->resp, NULL, res.resp_len, res.resp);
        if (!r)
            abort();
        protobuf_c_message_free_unpacked(r, NULL);
    } else if (res.code <= 0 || res.code > 16 || !res.msg[0]) {
        abort();
    }
    ms_result_free(&res);
    protobuf_c_message_free_unpacked(req, NULL);
    return 0;
}
