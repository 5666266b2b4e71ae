/* Unit tests of ms_store on a real RocksDB in a temporary directory: every rule of issue 2 §3,
 * with an injected clock for expiry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>
#include <rocksdb/c.h>

#include "th.h"
#include "ms_claim.h"
#include "ms_keys.h"
#include "ms_record.h"
#include "ms_store.h"
#include "ms_treq.h"
#include "tigress/push/v1/push_dispatch.pb-c.h"

typedef Tigress__Mailbox__V1__CreateRequest CreateReq;
typedef Tigress__Mailbox__V1__CreateResponse CreateResp;
typedef Tigress__Mailbox__V1__ReadSecureRequest ReadReq;
typedef Tigress__Mailbox__V1__ReadSecureResponse ReadResp;
typedef Tigress__Mailbox__V1__UpdateRequest UpdReq;
typedef Tigress__Mailbox__V1__DeleteRequest DelReq;
typedef Tigress__Mailbox__V1__RelinquishRequest RelReq;

static const uint8_t KEY[32] = "0123456789abcdef0123456789abcdef";
#define ID1 "0b4a4c2e-5a3f-4d6e-8f10-1a2b3c4d5e6f"
#define ID2 "1c5b5d3f-6b40-4e7f-9021-2b3c4d5e6f70"
#define CLAIM_A "aaaaaaaa-0000-4000-8000-000000000001"
#define CLAIM_B "bbbbbbbb-0000-4000-8000-000000000002"
#define CLAIM_C "cccccccc-0000-4000-8000-000000000003"

typedef struct {
    char dir[512];
    ms_store_t *st;
    int64_t now;
    int hooks;
} fx_t;

static int64_t fake_now(void *arg)
{
    return __atomic_load_n(&((fx_t *)arg)->now, __ATOMIC_SEQ_CST);
}

static void hook(void *arg)
{
    __atomic_add_fetch(&((fx_t *)arg)->hooks, 1, __ATOMIC_SEQ_CST);
}

static void open_store(fx_t *fx)
{
    ms_store_opts_t o = {.path = fx->dir,
                         .sync = 0,
                         .max_ttl_s = 172800,
                         .claim_key = KEY,
                         .claim_key_len = sizeof(KEY),
                         .now_ms = fake_now,
                         .now_arg = fx,
                         .outbox_hook = hook,
                         .outbox_arg = fx};
    char err[256];
    assert_int_equal(ms_store_open(&o, &fx->st, err, sizeof(err)), 0);
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    assert_int_equal(th_tempdir("ms-unit", fx->dir, sizeof(fx->dir)), 0);
    fx->now = 1790000000000LL;
    open_store(fx);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    ms_store_close(fx->st);
    th_rmtree(fx->dir);
    free(fx);
    return 0;
}

/* ---- request helpers ---- */

static const ms_treq_content_t CONTENT = {.data = "ciphertext-1",
                                          .title = "Car Key",
                                          .description = "a key",
                                          .image_url = "https://example.com/i.png"};

static int create(fx_t *fx, const char *id, const char *claim, const char *corr, const char *rights,
                  int64_t ttl, const char *tok_type, const char *tok_data, CreateResp **out)
{
    ms_treq_create_t c;
    ms_treq_create(&c, &CONTENT, id, claim, corr, rights, ttl, tok_type, tok_data);
    ms_result_t res;
    ms_store_create(fx->st, &c.req, &res);
    if (out && res.code == GRPC_STATUS_OK)
        *out = tigress__mailbox__v1__create_response__unpack(NULL, res.resp_len, res.resp);
    ms_result_free(&res);
    return res.code;
}

static int mk(fx_t *fx, const char *id, const char *rights)
{
    return create(fx, id, CLAIM_A, "", rights, 3600, NULL, NULL, NULL);
}

static int read_secure(fx_t *fx, const char *id, const char *claim, const char *corr,
                       ReadResp **out)
{
    ReadReq r = TIGRESS__MAILBOX__V1__READ_SECURE_REQUEST__INIT;
    r.mailbox_id = (char *)id;
    r.device_claim = (char *)claim;
    r.correlation_id = (char *)corr;
    ms_result_t res;
    ms_store_read_secure(fx->st, &r, &res);
    if (out && res.code == GRPC_STATUS_OK)
        *out = tigress__mailbox__v1__read_secure_response__unpack(NULL, res.resp_len, res.resp);
    ms_result_free(&res);
    return res.code;
}

static int rs(fx_t *fx, const char *id, const char *claim)
{
    return read_secure(fx, id, claim, "", NULL);
}

static int update(fx_t *fx, const char *id, const char *claim, const char *corr, const char *data,
                  const char *tok_type, const char *tok_data, int *dup)
{
    ms_treq_update_t u;
    ms_treq_update(&u, id, claim, corr, data, tok_type, tok_data);
    ms_result_t res;
    ms_store_update(fx->st, &u.req, &res);
    if (dup && res.code == GRPC_STATUS_OK) {
        Tigress__Mailbox__V1__UpdateResponse *u =
            tigress__mailbox__v1__update_response__unpack(NULL, res.resp_len, res.resp);
        *dup = u->duplicate;
        tigress__mailbox__v1__update_response__free_unpacked(u, NULL);
    }
    ms_result_free(&res);
    return res.code;
}

static int del(fx_t *fx, const char *id, const char *claim, const char *corr)
{
    DelReq r = TIGRESS__MAILBOX__V1__DELETE_REQUEST__INIT;
    r.mailbox_id = (char *)id;
    r.device_claim = (char *)claim;
    r.correlation_id = (char *)corr;
    ms_result_t res;
    ms_store_delete(fx->st, &r, &res);
    ms_result_free(&res);
    return res.code;
}

static int relinquish(fx_t *fx, const char *id, const char *claim, const char *corr, int *dup)
{
    RelReq r = TIGRESS__MAILBOX__V1__RELINQUISH_REQUEST__INIT;
    r.mailbox_id = (char *)id;
    r.device_claim = (char *)claim;
    r.correlation_id = (char *)corr;
    ms_result_t res;
    ms_store_relinquish(fx->st, &r, &res);
    if (dup && res.code == GRPC_STATUS_OK) {
        Tigress__Mailbox__V1__RelinquishResponse *u =
            tigress__mailbox__v1__relinquish_response__unpack(NULL, res.resp_len, res.resp);
        *dup = u->duplicate;
        tigress__mailbox__v1__relinquish_response__free_unpacked(u, NULL);
    }
    ms_result_free(&res);
    return res.code;
}

static int read_display(fx_t *fx, const char *id)
{
    Tigress__Mailbox__V1__ReadDisplayRequest r = TIGRESS__MAILBOX__V1__READ_DISPLAY_REQUEST__INIT;
    r.mailbox_id = (char *)id;
    ms_result_t res;
    ms_store_read_display(fx->st, &r, &res);
    if (res.code == GRPC_STATUS_OK) {
        Tigress__Mailbox__V1__ReadDisplayResponse *d =
            tigress__mailbox__v1__read_display_response__unpack(NULL, res.resp_len, res.resp);
        assert_non_null(d);
        assert_string_equal(d->display->title, "Car Key");
        tigress__mailbox__v1__read_display_response__free_unpacked(d, NULL);
    }
    ms_result_free(&res);
    return res.code;
}

/* Keys (and values) anywhere in the DB that mention |needle|. */
static int db_count(fx_t *fx, const void *needle, size_t nlen)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator(ms_store_db(fx->st), ro);
    int n = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl), *v = rocksdb_iter_value(it, &vl);
        if (memmem(k, kl, needle, nlen) || memmem(v, vl, needle, nlen))
            n++;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return n;
}

static int db_mentions(fx_t *fx, const char *s)
{
    return db_count(fx, s, strlen(s));
}

/* ---- tests ---- */

static void create_and_read(void **state)
{
    fx_t *fx = *state;
    CreateResp *c = NULL;
    assert_int_equal(create(fx, ID1, CLAIM_A, "corr-1", "RWD", 60, NULL, NULL, &c), 0);
    assert_string_equal(c->mailbox_id, ID1);
    assert_int_equal(c->expires_at_ms, fx->now + 60000);
    assert_false(c->duplicate);
    tigress__mailbox__v1__create_response__free_unpacked(c, NULL);
    assert_int_equal(read_display(fx, ID1), GRPC_STATUS_OK);
    ReadResp *r = NULL;
    assert_int_equal(read_secure(fx, ID1, CLAIM_A, "", &r), 0);
    assert_string_equal(r->payload->type, "AES128");
    assert_int_equal(r->payload->data.len, 12);
    assert_memory_equal(r->payload->data.data, "ciphertext-1", 12);
    assert_string_equal(r->display->image_url, "https://example.com/i.png");
    tigress__mailbox__v1__read_secure_response__free_unpacked(r, NULL);
    /* upper case id is the same mailbox */
    char up[37];
    for (int i = 0; i < 36; i++)
        up[i] = (char)(ID1[i] >= 'a' && ID1[i] <= 'f' ? ID1[i] - 32 : ID1[i]);
    up[36] = 0;
    assert_int_equal(read_display(fx, up), GRPC_STATUS_OK);
    assert_int_equal(read_display(fx, ID2), GRPC_STATUS_NOT_FOUND);
}

static void create_validation(void **state)
{
    fx_t *fx = *state;
    const int INV = GRPC_STATUS_INVALID_ARGUMENT;
    assert_int_equal(create(fx, "not-a-uuid", CLAIM_A, "", "", 60, 0, 0, 0), INV);
    assert_int_equal(create(fx, "", CLAIM_A, "", "", 60, 0, 0, 0), INV);
    /* version 1 UUID */
    assert_int_equal(
        create(fx, "3f2504e0-4f89-11d3-9a0c-0305e82c3301", CLAIM_A, "", "", 60, 0, 0, 0), INV);
    assert_int_equal(create(fx, ID1, "", "", "", 60, 0, 0, 0), INV);
    assert_int_equal(create(fx, ID1, CLAIM_A, "", "", 0, 0, 0, 0), INV);
    assert_int_equal(create(fx, ID1, CLAIM_A, "", "", -5, 0, 0, 0), INV);
    assert_int_equal(create(fx, ID1, CLAIM_A, "", "", 172801, 0, 0, 0), INV);
    const char *bad_rights[] = {"X", "RR", "rw", "RWDX", "R D"};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(create(fx, ID1, CLAIM_A, "", bad_rights[i], 60, 0, 0, 0), INV);
    assert_int_equal(create(fx, ID1, CLAIM_A, "", "", 60, "com.apple.apns", "", 0), INV);
    char longcorr[300];
    memset(longcorr, 'c', sizeof(longcorr) - 1);
    longcorr[299] = 0;
    assert_int_equal(create(fx, ID1, CLAIM_A, longcorr, "", 60, 0, 0, 0), INV);
    /* nothing was written by any of them */
    assert_int_equal(read_display(fx, ID1), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(db_mentions(fx, ID1), 0);
    /* bounds are inclusive */
    assert_int_equal(create(fx, ID1, CLAIM_A, "", "DWR", 172800, 0, 0, 0), 0);
    assert_int_equal(create(fx, ID2, CLAIM_A, "", "", 1, 0, 0, 0), 0);
}

static void create_existing(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(mk(fx, ID1, ""), 0);
    assert_int_equal(create(fx, ID1, CLAIM_B, "", "", 60, 0, 0, 0), GRPC_STATUS_ALREADY_EXISTS);
    assert_int_equal(create(fx, ID1, CLAIM_A, "", "", 60, 0, 0, 0), GRPC_STATUS_ALREADY_EXISTS);
    assert_int_equal(create(fx, ID1, CLAIM_A, "x", "", 60, 0, 0, 0), GRPC_STATUS_ALREADY_EXISTS);
}

static void binding(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(mk(fx, ID1, ""), 0);
    assert_int_equal(rs(fx, ID1, CLAIM_B), 0);                             /* binds B */
    assert_int_equal(rs(fx, ID1, CLAIM_C), GRPC_STATUS_PERMISSION_DENIED); /* third party */
    assert_int_equal(rs(fx, ID1, CLAIM_B), 0);
    assert_int_equal(rs(fx, ID1, CLAIM_A), 0);
    assert_int_equal(del(fx, ID1, CLAIM_C, ""), GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(relinquish(fx, ID1, CLAIM_C, "", NULL), GRPC_STATUS_PERMISSION_DENIED);
    /* a creator's claim reading its own mailbox does not bind it as receiver */
    assert_int_equal(mk(fx, ID2, ""), 0);
    assert_int_equal(rs(fx, ID2, CLAIM_A), 0);
    assert_int_equal(rs(fx, ID2, CLAIM_C), 0);
    assert_int_equal(rs(fx, ID2, CLAIM_B), GRPC_STATUS_PERMISSION_DENIED);
    /* the raw claims are nowhere in the database */
    assert_int_equal(db_mentions(fx, CLAIM_A), 0);
    assert_int_equal(db_mentions(fx, CLAIM_B), 0);
    assert_int_equal(db_mentions(fx, CLAIM_C), 0);
    /* an unbound claim may not update or delete, even with the right */
    assert_int_equal(update(fx, ID2, CLAIM_B, "", "x", NULL, NULL, NULL),
                     GRPC_STATUS_PERMISSION_DENIED);
}

static void access_rights(void **state)
{
    fx_t *fx = *state;
    const int PD = GRPC_STATUS_PERMISSION_DENIED;
    assert_int_equal(mk(fx, ID1, ""), 0); /* default RD */
    assert_int_equal(rs(fx, ID1, CLAIM_B), 0);
    assert_int_equal(update(fx, ID1, CLAIM_A, "", "x", NULL, NULL, NULL), PD);
    assert_int_equal(update(fx, ID1, CLAIM_B, "", "x", NULL, NULL, NULL), PD);
    assert_int_equal(del(fx, ID1, CLAIM_B, ""), 0);
    assert_int_equal(rs(fx, ID1, CLAIM_A), GRPC_STATUS_NOT_FOUND);

    assert_int_equal(mk(fx, ID1, "W"), 0);
    assert_int_equal(rs(fx, ID1, CLAIM_A), PD);
    assert_int_equal(rs(fx, ID1, CLAIM_B), PD); /* no R: no binding either */
    assert_int_equal(update(fx, ID1, CLAIM_A, "", "x", NULL, NULL, NULL), 0);
    assert_int_equal(del(fx, ID1, CLAIM_A, ""), PD);

    assert_int_equal(mk(fx, ID2, "RW"), 0);
    assert_int_equal(rs(fx, ID2, CLAIM_B), 0);
    assert_int_equal(update(fx, ID2, CLAIM_B, "", "y", NULL, NULL, NULL), 0);
    assert_int_equal(del(fx, ID2, CLAIM_A, ""), PD);
    assert_int_equal(del(fx, ID2, CLAIM_B, ""), PD);
}

/* Decodes every outbox entry into |out| (max 16); returns the count. */
static size_t outbox(fx_t *fx, ms_outbox_entry_t *e, Tigress__Push__V1__Notification **n)
{
    size_t cnt = 0;
    assert_int_equal(ms_store_outbox_read(fx->st, 0, 16, e, &cnt), 0);
    for (size_t i = 0; i < cnt; i++) {
        n[i] = tigress__push__v1__notification__unpack(NULL, e[i].len, e[i].value);
        assert_non_null(n[i]);
    }
    return cnt;
}

static void outbox_done(ms_outbox_entry_t *e, Tigress__Push__V1__Notification **n, size_t cnt)
{
    for (size_t i = 0; i < cnt; i++)
        tigress__push__v1__notification__free_unpacked(n[i], NULL);
    ms_outbox_entries_free(e, cnt);
}

static void update_notifies_other_party(void **state)
{
    fx_t *fx = *state;
    ms_outbox_entry_t e[16];
    Tigress__Push__V1__Notification *n[16];
    assert_int_equal(create(fx, ID1, CLAIM_A, "", "RWD", 600, "com.apple.apns", "TOK-A", NULL), 0);
    /* no receiver yet: nobody to notify */
    assert_int_equal(update(fx, ID1, CLAIM_A, "", "p1", NULL, NULL, NULL), 0);
    assert_int_equal(ms_store_outbox_depth(fx->st), 0);
    assert_int_equal(rs(fx, ID1, CLAIM_B), 0);
    /* receiver updates with its token: the creator's token gets a notification */
    int hooks = fx->hooks;
    assert_int_equal(update(fx, ID1, CLAIM_B, "", "p2", "com.google.fcm", "TOK-B", NULL), 0);
    assert_int_equal(fx->hooks, hooks + 1);
    size_t cnt = outbox(fx, e, n);
    assert_int_equal(cnt, 1);
    assert_int_equal(e[0].kind, MS_OUTBOX_NOTIFY);
    assert_string_equal(e[0].mailbox_id, ID1);
    assert_string_equal(n[0]->mailbox_id, ID1);
    assert_string_equal(n[0]->token_type, "com.apple.apns");
    assert_string_equal(n[0]->token_data, "TOK-A");
    assert_int_equal(n[0]->mailbox_expires_at_ms, fx->now + 600000);
    assert_int_equal(n[0]->created_at_ms, fx->now);
    assert_int_equal(strlen(n[0]->notification_id), 36);
    outbox_done(e, n, cnt);
    ReadResp *r = NULL;
    assert_int_equal(read_secure(fx, ID1, CLAIM_A, "", &r), 0);
    assert_memory_equal(r->payload->data.data, "p2", 2);
    tigress__mailbox__v1__read_secure_response__free_unpacked(r, NULL);
    /* creator updates with a new token: the receiver's stored token gets one */
    assert_int_equal(update(fx, ID1, CLAIM_A, "", "p3", "webhook", "https://hook/a", NULL), 0);
    cnt = outbox(fx, e, n);
    assert_int_equal(cnt, 2);
    assert_true(e[0].seq < e[1].seq);
    assert_string_equal(n[1]->token_type, "com.google.fcm");
    assert_string_equal(n[1]->token_data, "TOK-B");
    assert_string_not_equal(n[0]->notification_id, n[1]->notification_id);
    outbox_done(e, n, cnt);
    /* receiver again: the creator's NEW token */
    assert_int_equal(update(fx, ID1, CLAIM_B, "", "p4", NULL, NULL, NULL), 0);
    cnt = outbox(fx, e, n);
    assert_int_equal(cnt, 3);
    assert_string_equal(n[2]->token_type, "webhook");
    assert_string_equal(n[2]->token_data, "https://hook/a");
    assert_int_equal(ms_store_outbox_depth(fx->st), 3);
    ms_outbox_entry_t tail[16];
    size_t tn = 0;
    assert_int_equal(ms_store_outbox_read(fx->st, e[1].seq, 16, tail, &tn), 0);
    assert_int_equal(tn, 2); /* a cursor skips what came before */
    assert_int_equal(tail[0].seq, e[1].seq);
    ms_outbox_entries_free(tail, tn);
    /* acknowledging removes them and their back-references */
    assert_int_equal(ms_store_outbox_ack(fx->st, e, 2), 0);
    assert_int_equal(ms_store_outbox_ack(fx->st, e, 2), 0); /* twice: counted once */
    assert_int_equal(ms_store_outbox_depth(fx->st), 1);
    outbox_done(e, n, cnt);
    cnt = outbox(fx, e, n);
    assert_int_equal(cnt, 1);
    assert_string_equal(n[0]->token_data, "https://hook/a");
    outbox_done(e, n, cnt);
}

static void delete_removes_everything(void **state)
{
    fx_t *fx = *state;
    ms_outbox_entry_t e[16];
    Tigress__Push__V1__Notification *n[16];
    assert_int_equal(create(fx, ID1, CLAIM_A, "c1", "RWD", 600, "com.apple.apns", "TOK-A", NULL),
                     0);
    assert_int_equal(mk(fx, ID2, "RWD"), 0);
    assert_int_equal(read_secure(fx, ID1, CLAIM_B, "c2", NULL), 0);
    assert_int_equal(update(fx, ID1, CLAIM_B, "c3", "p2", "com.google.fcm", "TOK-B", NULL), 0);
    assert_int_equal(ms_store_outbox_depth(fx->st), 1);
    assert_true(db_mentions(fx, ID1) > 3);
    assert_int_equal(del(fx, ID1, CLAIM_B, "c4"), 0);
    /* only the cancel marker still names the mailbox */
    assert_int_equal(db_mentions(fx, ID1), 1);
    size_t cnt = outbox(fx, e, n);
    assert_int_equal(cnt, 1);
    assert_int_equal(e[0].kind, MS_OUTBOX_CANCEL);
    assert_string_equal(n[0]->mailbox_id, ID1);
    assert_int_equal(ms_store_outbox_depth(fx->st), 1);
    assert_int_equal(ms_store_outbox_ack(fx->st, e, cnt), 0);
    outbox_done(e, n, cnt);
    assert_int_equal(db_mentions(fx, ID1), 0);
    assert_int_equal(ms_store_outbox_depth(fx->st), 0);
    assert_int_equal(read_display(fx, ID1), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(rs(fx, ID1, CLAIM_A), GRPC_STATUS_NOT_FOUND);
    /* a repeated Delete (same correlation id) finds nothing: 404 as 001 §6.3.3 allows */
    assert_int_equal(del(fx, ID1, CLAIM_B, "c4"), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(update(fx, ID1, CLAIM_A, "", "x", NULL, NULL, NULL), GRPC_STATUS_NOT_FOUND);
    /* the other mailbox is untouched, and the id can be used again */
    assert_int_equal(rs(fx, ID2, CLAIM_A), 0);
    assert_int_equal(mk(fx, ID1, ""), 0);
    assert_int_equal(rs(fx, ID1, CLAIM_C), 0);
}

static void relinquish_rebind(void **state)
{
    fx_t *fx = *state;
    int dup = -1;
    assert_int_equal(mk(fx, ID1, ""), 0);
    assert_int_equal(relinquish(fx, ID1, CLAIM_B, "", NULL), GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(rs(fx, ID1, CLAIM_B), 0);
    assert_int_equal(relinquish(fx, ID1, CLAIM_A, "", NULL), GRPC_STATUS_FAILED_PRECONDITION);
    assert_int_equal(relinquish(fx, ID1, CLAIM_C, "", NULL), GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(relinquish(fx, ID1, CLAIM_B, "r1", &dup), 0);
    assert_false(dup);
    /* a retry with the same correlation id is a duplicate even though B is no longer bound */
    assert_int_equal(relinquish(fx, ID1, CLAIM_B, "r1", &dup), 0);
    assert_true(dup);
    assert_int_equal(relinquish(fx, ID1, CLAIM_B, "r2", NULL), GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(rs(fx, ID1, CLAIM_C), 0); /* another device binds */
    assert_int_equal(rs(fx, ID1, CLAIM_B), GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(rs(fx, ID1, CLAIM_A), 0);
}

static void idempotency(void **state)
{
    fx_t *fx = *state;
    CreateResp *c1 = NULL, *c2 = NULL;
    assert_int_equal(create(fx, ID1, CLAIM_A, "k1", "RWD", 60, NULL, NULL, &c1), 0);
    fx->now += 5000;
    /* same claim + correlation id: the stored response, marked duplicate */
    assert_int_equal(create(fx, ID1, CLAIM_A, "k1", "RWD", 99, NULL, NULL, &c2), 0);
    assert_false(c1->duplicate);
    assert_true(c2->duplicate);
    assert_string_equal(c2->mailbox_id, ID1);
    assert_int_equal(c2->expires_at_ms, c1->expires_at_ms);
    tigress__mailbox__v1__create_response__free_unpacked(c1, NULL);
    tigress__mailbox__v1__create_response__free_unpacked(c2, NULL);
    /* another claim with the same correlation id is not a duplicate */
    assert_int_equal(create(fx, ID1, CLAIM_B, "k1", "", 60, 0, 0, 0), GRPC_STATUS_ALREADY_EXISTS);

    int dup = -1;
    assert_int_equal(update(fx, ID1, CLAIM_A, "k2", "first", NULL, NULL, &dup), 0);
    assert_false(dup);
    assert_int_equal(update(fx, ID1, CLAIM_A, "k2", "second", NULL, NULL, &dup), 0);
    assert_true(dup);
    ReadResp *r = NULL;
    assert_int_equal(read_secure(fx, ID1, CLAIM_B, "k3", &r), 0);
    assert_false(r->duplicate);
    assert_int_equal(r->payload->data.len, 5); /* "first": the duplicate changed nothing */
    tigress__mailbox__v1__read_secure_response__free_unpacked(r, NULL);
    /* the last processed id only: k2 was replaced by k4 for claim A */
    assert_int_equal(update(fx, ID1, CLAIM_A, "k4", "third", NULL, NULL, &dup), 0);
    assert_false(dup);
    assert_int_equal(update(fx, ID1, CLAIM_A, "k2", "fourth", NULL, NULL, &dup), 0);
    assert_false(dup);
    /* read duplicate returns the stored response (taken before the later updates) */
    assert_int_equal(read_secure(fx, ID1, CLAIM_B, "k3", &r), 0);
    assert_true(r->duplicate);
    assert_memory_equal(r->payload->data.data, "first", 5);
    tigress__mailbox__v1__read_secure_response__free_unpacked(r, NULL);
    /* the same id on another method is a new request */
    assert_int_equal(update(fx, ID1, CLAIM_B, "k3", "fifth", NULL, NULL, &dup), 0);
    assert_false(dup);
    /* a failed request does not become the stored one */
    assert_int_equal(relinquish(fx, ID1, CLAIM_A, "k5", NULL), GRPC_STATUS_FAILED_PRECONDITION);
    assert_int_equal(update(fx, ID1, CLAIM_A, "k2", "sixth", NULL, NULL, &dup), 0);
    assert_true(dup);
}

static void expiry_and_sweep(void **state)
{
    fx_t *fx = *state;
    ms_outbox_entry_t e[16];
    Tigress__Push__V1__Notification *n[16];
    assert_int_equal(create(fx, ID1, CLAIM_A, "c1", "RWD", 10, "com.apple.apns", "T", NULL), 0);
    assert_int_equal(create(fx, ID2, CLAIM_A, "c1", "RWD", 20, NULL, NULL, NULL), 0);
    assert_int_equal(read_secure(fx, ID1, CLAIM_B, "c2", NULL), 0);
    assert_int_equal(update(fx, ID1, CLAIM_B, "c3", "x", NULL, NULL, NULL), 0);
    assert_int_equal(ms_store_outbox_depth(fx->st), 1);
    fx->now += 9999;
    assert_int_equal(rs(fx, ID1, CLAIM_A), 0);
    fx->now += 1; /* exactly at expiry: gone for every path */
    const int NF = GRPC_STATUS_NOT_FOUND;
    assert_int_equal(read_display(fx, ID1), NF);
    assert_int_equal(rs(fx, ID1, CLAIM_A), NF);
    assert_int_equal(rs(fx, ID1, CLAIM_C), NF);
    assert_int_equal(update(fx, ID1, CLAIM_A, "", "y", NULL, NULL, NULL), NF);
    assert_int_equal(del(fx, ID1, CLAIM_A, ""), NF);
    assert_int_equal(relinquish(fx, ID1, CLAIM_B, "", NULL), NF);
    assert_int_equal(read_display(fx, ID2), 0);
    /* still on disk until swept */
    assert_true(db_mentions(fx, ID1) > 0);
    size_t deleted = 99;
    assert_int_equal(ms_store_sweep(fx->st, fx->now, 256, &deleted), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(db_mentions(fx, ID1), 0);
    assert_int_equal(ms_store_outbox_depth(fx->st), 0);
    size_t cnt = outbox(fx, e, n);
    assert_int_equal(cnt, 0);
    assert_int_equal(read_display(fx, ID2), 0);
    assert_int_equal(ms_store_sweep(fx->st, fx->now, 256, &deleted), 0);
    assert_int_equal(deleted, 0);

    /* an expired, not yet swept id can be created again; the old keys go at once */
    fx->now += 10000;
    assert_int_equal(read_display(fx, ID2), NF);
    assert_int_equal(create(fx, ID2, CLAIM_C, "c9", "", 30, NULL, NULL, NULL), 0);
    assert_int_equal(rs(fx, ID2, CLAIM_A), 0); /* A is a stranger now: binds as receiver */
    assert_int_equal(rs(fx, ID2, CLAIM_B), GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(ms_store_sweep(fx->st, fx->now, 256, &deleted), 0);
    assert_int_equal(deleted, 0); /* the stale index entry is dropped, the new mailbox kept */
    assert_int_equal(read_display(fx, ID2), 0);
    fx->now += 30000;
    assert_int_equal(ms_store_sweep(fx->st, fx->now, 256, &deleted), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(db_mentions(fx, ID2), 0);
    assert_int_equal(db_count(fx, "x/", 2), 0);
}

static void sweep_in_batches(void **state)
{
    fx_t *fx = *state;
    char id[40];
    for (int i = 0; i < 600; i++) {
        snprintf(id, sizeof(id), "%08x-0000-4000-8000-000000000000", i);
        assert_int_equal(create(fx, id, CLAIM_A, "", "", 1 + i % 3, 0, 0, 0), 0);
    }
    snprintf(id, sizeof(id), "%08x-0000-4000-8000-000000000000", 9999);
    assert_int_equal(create(fx, id, CLAIM_A, "", "", 100, 0, 0, 0), 0);
    fx->now += 3000;
    size_t deleted, total = 0;
    int rounds = 0, rc;
    do {
        rc = ms_store_sweep(fx->st, fx->now, 256, &deleted);
        assert_true(rc >= 0);
        assert_true(deleted <= 256);
        total += deleted;
        rounds++;
    } while (rc == 1);
    assert_int_equal(total, 600);
    assert_int_equal(rounds, 3);
    assert_int_equal(db_count(fx, "m/", 2), 1);
    assert_int_equal(db_count(fx, "x/", 2), 1);
    assert_int_equal(read_display(fx, id), 0);
}

static int race_read(void *ctx, int who)
{
    char claim[64];
    snprintf(claim, sizeof(claim), "racer-%d-0000-4000-8000-000000000000", who);
    return rs(ctx, ID1, claim);
}

static void binding_race(void **state)
{
    fx_t *fx = *state;
    enum { N = 32 };
    for (int round = 0; round < 20; round++) {
        if (round > 0)
            assert_int_equal(del(fx, ID1, CLAIM_A, ""), 0);
        assert_int_equal(mk(fx, ID1, ""), 0);
        int winner = ms_treq_binding_race(N, 0, race_read, fx);
        char claim[64];
        snprintf(claim, sizeof(claim), "racer-%d-0000-4000-8000-000000000000", winner);
        assert_int_equal(rs(fx, ID1, claim), 0);
    }
}

static void reopen_keeps_state(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(create(fx, ID1, CLAIM_A, "", "RWD", 600, "com.apple.apns", "TOK-A", NULL), 0);
    assert_int_equal(rs(fx, ID1, CLAIM_B), 0);
    assert_int_equal(update(fx, ID1, CLAIM_B, "", "p", NULL, NULL, NULL), 0);
    assert_int_equal(update(fx, ID1, CLAIM_B, "", "q", NULL, NULL, NULL), 0);
    ms_store_close(fx->st);
    open_store(fx);
    assert_int_equal(ms_store_outbox_depth(fx->st), 2);
    assert_int_equal(rs(fx, ID1, CLAIM_C), GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(rs(fx, ID1, CLAIM_B), 0);
    assert_int_equal(update(fx, ID1, CLAIM_B, "", "r", NULL, NULL, NULL), 0);
    ms_outbox_entry_t e[16];
    Tigress__Push__V1__Notification *n[16];
    size_t cnt = outbox(fx, e, n);
    assert_int_equal(cnt, 3);
    assert_true(e[1].seq < e[2].seq); /* the sequence continues after the restart */
    outbox_done(e, n, cnt);
}

static void claim_hash_and_key(void **state)
{
    fx_t *fx = *state;
    uint8_t a[32], b[32], c[32];
    assert_int_equal(ms_claim_hash(KEY, 32, "x", 1, a), 0);
    assert_int_equal(ms_claim_hash(KEY, 32, "x", 1, b), 0);
    assert_int_equal(ms_claim_hash(KEY, 32, "y", 1, c), 0);
    assert_true(ms_claim_equal(a, b));
    assert_false(ms_claim_equal(a, c));
    uint8_t *k1 = NULL, *k2 = NULL;
    size_t l1, l2;
    int gen = 0;
    char err[256], dir[600];
    snprintf(dir, sizeof(dir), "%s/keydir/sub", fx->dir);
    assert_int_equal(ms_claim_key_load(NULL, dir, &k1, &l1, &gen, err, sizeof(err)), 0);
    assert_true(gen);
    assert_int_equal(ms_claim_key_load("", dir, &k2, &l2, &gen, err, sizeof(err)), 0);
    assert_false(gen);
    assert_int_equal(l1, l2);
    assert_memory_equal(k1, k2, l1);
    free(k1);
    free(k2);
    char path[700];
    snprintf(path, sizeof(path), "%s/short.key", fx->dir);
    FILE *f = fopen(path, "w");
    fputs("too-short", f);
    fclose(f);
    assert_int_equal(ms_claim_key_load(path, dir, &k1, &l1, &gen, err, sizeof(err)), -1);
    snprintf(path, sizeof(path), "%s/missing.key", fx->dir);
    assert_int_equal(ms_claim_key_load(path, dir, &k1, &l1, &gen, err, sizeof(err)), -1);
}

static void record_codec(void **state)
{
    ms_record_t r = {0}, d;
    r.created_ms = 1;
    r.expires_ms = 2;
    r.rights = MS_RIGHT_R | MS_RIGHT_W;
    r.has_receiver = 1;
    memset(r.receiver, 7, 32);
    r.title.p = (const uint8_t *)"t";
    r.title.n = 1;
    uint8_t *buf;
    size_t len;
    assert_int_equal(ms_record_encode(&r, &buf, &len), 0);
    assert_int_equal(ms_record_decode(buf, len, &d), 0);
    assert_int_equal(d.expires_ms, 2);
    assert_int_equal(d.title.n, 1);
    /* every truncation is rejected */
    for (size_t i = 0; i < len; i++)
        assert_int_equal(ms_record_decode(buf, i, &d), -1);
    free(buf);
    uint8_t bits;
    assert_int_equal(ms_rights_parse("", &bits), 0);
    assert_int_equal(bits, MS_RIGHT_R | MS_RIGHT_D);
    assert_int_equal(ms_rights_parse("WDR", &bits), 0);
    assert_int_equal(bits, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(create_and_read, setup, teardown),
        cmocka_unit_test_setup_teardown(create_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(create_existing, setup, teardown),
        cmocka_unit_test_setup_teardown(binding, setup, teardown),
        cmocka_unit_test_setup_teardown(access_rights, setup, teardown),
        cmocka_unit_test_setup_teardown(update_notifies_other_party, setup, teardown),
        cmocka_unit_test_setup_teardown(delete_removes_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(relinquish_rebind, setup, teardown),
        cmocka_unit_test_setup_teardown(idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(expiry_and_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(sweep_in_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(binding_race, setup, teardown),
        cmocka_unit_test_setup_teardown(reopen_keeps_state, setup, teardown),
        cmocka_unit_test_setup_teardown(claim_hash_and_key, setup, teardown),
        cmocka_unit_test(record_codec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
