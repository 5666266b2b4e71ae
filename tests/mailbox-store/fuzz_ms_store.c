/* libFuzzer target: arbitrary bytes as gRPC request bodies of every MailboxStore method, mapped
 * to the core's domain requests and run through the real rules (ms_core) on the real RocksDB
 * engine (temporary directory), plus the stored-record decoders. The first byte picks the
 * method; the rest is the protobuf body, exactly what a client can send. Invariants: no crash,
 * no leak, no sanitizer report; every answer is a known ms_err_t with a reason. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ftw.h>

#include "ms_core.h"
#include "ms_engine.h"
#include "ms_keys.h"
#include "ms_record.h"
#include "tigress/mailbox/v1/mailbox_store.pb-c.h"

static ms_engine_t *g_eng;
static ms_core_t *g_core;
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
    ms_core_del(g_core);
    ms_engine_close(g_eng);
    nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof(g_dir), "%s/fuzz-ms-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir))
        abort();
    static const uint8_t key[32] = "fuzz-claim-key-fuzz-claim-key-32";
    ms_rocks_opts_t ro = {.path = g_dir, .sync = 0};
    char err[256];
    if (ms_engine_rocks_open(&ro, &g_eng, err, sizeof(err)) != MS_OK) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    ms_core_opts_t o = {.engine = g_eng,
                        .max_ttl_s = 172800,
                        .claim_key = key,
                        .claim_key_len = sizeof(key),
                        .now_ms = fake_now};
    if (ms_core_new(&o, &g_core) != MS_OK)
        abort();
    atexit(cleanup);
    return 0;
}

/* ---- wire -> domain, as ms_service maps it ---- */

static ms_payload_t payload_in(const Tigress__Mailbox__V1__Payload *m)
{
    ms_payload_t p = {NULL, {NULL, 0}};
    if (m) {
        p.type = m->type;
        p.data.p = m->data.data;
        p.data.n = m->data.len;
    }
    return p;
}

static ms_token_t token_in(const Tigress__Mailbox__V1__NotificationToken *m)
{
    ms_token_t t = {NULL, NULL};
    if (m) {
        t.type = m->type;
        t.data = m->token_data;
    }
    return t;
}

static ms_err_t run_create(const ProtobufCMessage *in, ms_detail_t *d)
{
    const Tigress__Mailbox__V1__CreateRequest *r = (const void *)in;
    ms_create_req_t q = {.mailbox_id = r->mailbox_id,
                         .device_claim = r->device_claim,
                         .correlation_id = r->correlation_id,
                         .ttl_seconds = r->ttl_seconds,
                         .access_rights = r->access_rights,
                         .payload = payload_in(r->payload),
                         .token = token_in(r->notification_token)};
    if (r->display) {
        q.display.title = r->display->title;
        q.display.description = r->display->description;
        q.display.image_url = r->display->image_url;
    }
    ms_create_resp_t a;
    ms_err_t rc = ms_core_create(g_core, &q, &a, d);
    if (rc == MS_OK && strlen(a.mailbox_id) != MS_ID_LEN)
        abort();
    return rc;
}

static ms_err_t run_read_display(const ProtobufCMessage *in, ms_detail_t *d)
{
    const Tigress__Mailbox__V1__ReadDisplayRequest *r = (const void *)in;
    ms_read_display_req_t q = {r->mailbox_id};
    ms_read_display_resp_t a;
    ms_err_t rc = ms_core_read_display(g_core, &q, &a, d);
    if (rc == MS_OK)
        ms_read_display_resp_free(&a);
    return rc;
}

static ms_err_t run_read_secure(const ProtobufCMessage *in, ms_detail_t *d)
{
    const Tigress__Mailbox__V1__ReadSecureRequest *r = (const void *)in;
    ms_read_secure_req_t q = {r->mailbox_id, r->device_claim, r->correlation_id};
    ms_read_secure_resp_t a;
    ms_err_t rc = ms_core_read_secure(g_core, &q, &a, d);
    if (rc == MS_OK)
        ms_read_secure_resp_free(&a);
    return rc;
}

static ms_err_t run_update(const ProtobufCMessage *in, ms_detail_t *d)
{
    const Tigress__Mailbox__V1__UpdateRequest *r = (const void *)in;
    ms_update_req_t q = {.mailbox_id = r->mailbox_id,
                         .device_claim = r->device_claim,
                         .correlation_id = r->correlation_id,
                         .payload = payload_in(r->payload),
                         .token = token_in(r->notification_token)};
    ms_ack_resp_t a;
    return ms_core_update(g_core, &q, &a, d);
}

static ms_err_t run_delete(const ProtobufCMessage *in, ms_detail_t *d)
{
    const Tigress__Mailbox__V1__DeleteRequest *r = (const void *)in;
    ms_delete_req_t q = {r->mailbox_id, r->device_claim, r->correlation_id};
    ms_ack_resp_t a;
    return ms_core_delete(g_core, &q, &a, d);
}

static ms_err_t run_relinquish(const ProtobufCMessage *in, ms_detail_t *d)
{
    const Tigress__Mailbox__V1__RelinquishRequest *r = (const void *)in;
    ms_relinquish_req_t q = {r->mailbox_id, r->device_claim, r->correlation_id};
    ms_ack_resp_t a;
    return ms_core_relinquish(g_core, &q, &a, d);
}

typedef struct {
    const ProtobufCMessageDescriptor *req;
    ms_err_t (*fn)(const ProtobufCMessage *req, ms_detail_t *d);
} op_t;

static const op_t OPS[] = {
    {&tigress__mailbox__v1__create_request__descriptor, run_create},
    {&tigress__mailbox__v1__read_display_request__descriptor, run_read_display},
    {&tigress__mailbox__v1__read_secure_request__descriptor, run_read_secure},
    {&tigress__mailbox__v1__update_request__descriptor, run_update},
    {&tigress__mailbox__v1__delete_request__descriptor, run_delete},
    {&tigress__mailbox__v1__relinquish_request__descriptor, run_relinquish},
};

/* The decoders of what the store itself wrote. */
static void decoders(const uint8_t *data, size_t size)
{
    ms_record_t r;
    ms_idem_t i;
    ms_outbox_rec_t o;
    ms_record_decode(data, size, &r);
    ms_idem_decode(data, size, &i);
    ms_outbox_rec_decode(data, size, &o);
    int64_t e;
    uint64_t seq;
    char id[MS_ID_LEN + 1];
    ms_key_parse_expiry((const char *)data, size, &e, id);
    ms_key_parse_outbox((const char *)data, size, &seq);
    ms_key_parse_outref((const char *)data, size, &seq);
}

/* Drains the outbox as the forwarder does: every entry the rules wrote must decode. */
static void drain_outbox(void)
{
    ms_outbox_entry_t en[16];
    size_t n = 0;
    if (g_eng->ops->outbox_claim(g_eng, 16, 1000, en, &n) != MS_OK)
        abort();
    for (size_t k = 0; k < n; k++) {
        ms_notification_t no;
        if (ms_core_outbox_decode(g_core, &en[k], &no) != MS_OK)
            abort();
        ms_notification_free(&no);
    }
    g_eng->ops->outbox_ack(g_eng, en, n);
    ms_outbox_entries_free(en, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    if (sel >= 0xf0) {
        decoders(data, size);
        return 0;
    }
    if (sel == 0xe0) { /* time passes; the sweeper and the forwarder run */
        g_now += 1000 * (int64_t)(size % 4000);
        size_t deleted;
        int more;
        ms_core_sweep(g_core, 16, &deleted, &more);
        drain_outbox();
        return 0;
    }
    const op_t *op = &OPS[sel % 6];
    ProtobufCMessage *req = protobuf_c_message_unpack(op->req, NULL, size, data);
    if (!req)
        return 0;
    ms_detail_t d = {""};
    ms_err_t rc = op->fn(req, &d);
    if (rc != MS_OK && (rc == MS_ERR_RETRY || !strcmp(ms_err_name(rc), "UNKNOWN") || !d.msg[0]))
        abort();
    protobuf_c_message_free_unpacked(req, NULL);
    return 0;
}
