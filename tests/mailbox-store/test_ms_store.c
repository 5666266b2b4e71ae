/* Rule tests of the store core (ms_core) through the engine interface, on a real engine: every
 * rule of services/mailbox-store/README.md "Rules", with an injected clock for expiry. One
 * source for every engine: "--engine=rocksdb|postgres" (ms_tengine.h); the few engine-specific
 * checks skip themselves on other engines. No protobuf here. */
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

#include "cm_corr.h"
#include "cm_seal.h"
#include "ms_core.h"
#include "ms_engine.h"
#include "ms_engine_rocks.h"
#include "ms_keys.h"
#include "ms_record.h"
#include "ms_tengine.h"

static const uint8_t KEY[32] = "0123456789abcdef0123456789abcdef";
#define ID1 "0b4a4c2e-5a3f-4d6e-8f10-1a2b3c4d5e6f"
#define ID2 "1c5b5d3f-6b40-4e7f-9021-2b3c4d5e6f70"
#define CLAIM_A "aaaaaaaa-0000-4000-8000-000000000001"
#define CLAIM_B "bbbbbbbb-0000-4000-8000-000000000002"
#define CLAIM_C "cccccccc-0000-4000-8000-000000000003"
#define LEASE_MS 60000

typedef struct {
    ms_tengine_t eng;
    ms_core_t *core;
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

/* One token key for the whole run, so a reopened core reads what an earlier one sealed. */
static const cm_seal_ring_t *token_ring(void)
{
    static cm_seal_ring_t *ring;
    if (!ring)
        assert_int_equal(cm_seal_ring_from_key(1, KEY, &ring), CM_SEAL_OK);
    return ring;
}

static void open_core(fx_t *fx)
{
    assert_int_equal(ms_tengine_open(&fx->eng), 0);
    ms_core_opts_t o = {.engine = fx->eng.engine,
                        .max_ttl_s = 172800,
                        .claim_key = KEY,
                        .claim_key_len = sizeof(KEY),
                        .token_ring = token_ring(),
                        .now_ms = fake_now,
                        .now_arg = fx,
                        .outbox_hook = hook,
                        .outbox_arg = fx};
    assert_int_equal(ms_core_new(&o, &fx->core), MS_OK);
}

static void close_core(fx_t *fx)
{
    ms_core_del(fx->core);
    fx->core = NULL;
    ms_tengine_close(&fx->eng);
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    assert_int_equal(ms_tengine_setup(&fx->eng, 0), 0);
    fx->now = 1790000000000LL;
    open_core(fx);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    ms_core_del(fx->core);
    ms_tengine_teardown(&fx->eng);
    free(fx);
    return 0;
}

static ms_engine_t *eng(fx_t *fx)
{
    return fx->eng.engine;
}

/* ---- request helpers ---- */

static int create(fx_t *fx, const char *id, const char *claim, const char *corr, const char *rights,
                  int64_t ttl, const char *tok_type, const char *tok_data, ms_create_resp_t *out)
{
    ms_create_req_t q = {.mailbox_id = id,
                         .device_claim = claim,
                         .correlation_id = corr,
                         .ttl_seconds = ttl,
                         .access_rights = rights,
                         .display = {"Car Key", "a key", "https://example.com/i.png"},
                         .payload = {"AES128", {(const uint8_t *)"ciphertext-1", 12}},
                         .token = {tok_type, tok_data}};
    ms_create_resp_t r;
    ms_detail_t d = {""};
    ms_err_t rc = ms_core_create(fx->core, &q, out ? out : &r, &d);
    if (rc != MS_OK)
        assert_true(d.msg[0] != '\0'); /* every error says why */
    return rc;
}

static int mk(fx_t *fx, const char *id, const char *rights)
{
    return create(fx, id, CLAIM_A, "", rights, 3600, NULL, NULL, NULL);
}

/* ReadSecure; the response (when |out|) must be freed with ms_read_secure_resp_free. */
static int read_secure(fx_t *fx, const char *id, const char *claim, const char *corr,
                       ms_read_secure_resp_t *out)
{
    ms_read_secure_req_t q = {id, claim, corr};
    ms_read_secure_resp_t r;
    ms_err_t rc = ms_core_read_secure(fx->core, &q, out ? out : &r, NULL);
    if (rc == MS_OK && !out)
        ms_read_secure_resp_free(&r);
    return rc;
}

static int rs(fx_t *fx, const char *id, const char *claim)
{
    return read_secure(fx, id, claim, "", NULL);
}

static int update(fx_t *fx, const char *id, const char *claim, const char *corr, const char *data,
                  const char *tok_type, const char *tok_data, int *dup)
{
    ms_update_req_t q = {.mailbox_id = id,
                         .device_claim = claim,
                         .correlation_id = corr,
                         .payload = {"AES128", {(const uint8_t *)data, strlen(data)}},
                         .token = {tok_type, tok_data}};
    ms_ack_resp_t r;
    ms_err_t rc = ms_core_update(fx->core, &q, &r, NULL);
    if (dup && rc == MS_OK)
        *dup = r.duplicate;
    return rc;
}

static int del(fx_t *fx, const char *id, const char *claim, const char *corr)
{
    ms_delete_req_t q = {id, claim, corr};
    ms_ack_resp_t r;
    return ms_core_delete(fx->core, &q, &r, NULL);
}

static int relinquish(fx_t *fx, const char *id, const char *claim, const char *corr, int *dup)
{
    ms_relinquish_req_t q = {id, claim, corr};
    ms_ack_resp_t r;
    ms_err_t rc = ms_core_relinquish(fx->core, &q, &r, NULL);
    if (dup && rc == MS_OK)
        *dup = r.duplicate;
    return rc;
}

static int read_display(fx_t *fx, const char *id)
{
    ms_read_display_req_t q = {id};
    ms_read_display_resp_t r;
    ms_err_t rc = ms_core_read_display(fx->core, &q, &r, NULL);
    if (rc == MS_OK) {
        assert_string_equal(r.display.title, "Car Key");
        ms_read_display_resp_free(&r);
    }
    return rc;
}

static int sweep(fx_t *fx, size_t batch, size_t *deleted)
{
    int more = -1;
    ms_err_t rc = ms_core_sweep(fx->core, batch, deleted, &more);
    assert_int_equal(rc, MS_OK);
    return more;
}

static int64_t depth(fx_t *fx)
{
    int64_t n = -1;
    assert_int_equal(eng(fx)->ops->outbox_depth(eng(fx), &n), MS_OK);
    return n;
}

/* Stored items that mention |s| (keys or values). */
static int db_mentions(fx_t *fx, const char *s)
{
    int n = ms_tengine_count_mentions(&fx->eng, s, strlen(s));
    assert_true(n >= 0);
    return n;
}

/* ---- outbox as the forwarder sees it ---- */

typedef struct {
    ms_outbox_entry_t e[16];
    ms_notification_t n[16];
    size_t cnt;
} box_t;

/* Claims every entry (at most 16) and decodes it; hand them back with box_release or
 * box_ack. */
static size_t box_claim(fx_t *fx, box_t *b)
{
    memset(b, 0, sizeof(*b));
    assert_int_equal(eng(fx)->ops->outbox_claim(eng(fx), 16, LEASE_MS, b->e, &b->cnt), MS_OK);
    for (size_t i = 0; i < b->cnt; i++) {
        assert_int_equal(ms_core_outbox_decode(fx->core, &b->e[i], &b->n[i]), MS_OK);
        assert_int_equal((int)b->n[i].kind, (int)b->e[i].kind);
        assert_string_equal(b->n[i].mailbox_id, b->e[i].mailbox_id);
        if (i > 0)
            assert_true(b->e[i - 1].seq < b->e[i].seq);
    }
    return b->cnt;
}

static void box_free(box_t *b)
{
    for (size_t i = 0; i < b->cnt; i++)
        ms_notification_free(&b->n[i]);
    ms_outbox_entries_free(b->e, b->cnt);
}

static void box_release(fx_t *fx, box_t *b)
{
    assert_int_equal(eng(fx)->ops->outbox_release(eng(fx), b->e, b->cnt), MS_OK);
    box_free(b);
}

/* Acknowledges the first |k| entries (twice: counted once) and releases the rest. */
static void box_ack(fx_t *fx, box_t *b, size_t k)
{
    assert_int_equal(eng(fx)->ops->outbox_ack(eng(fx), b->e, k), MS_OK);
    assert_int_equal(eng(fx)->ops->outbox_ack(eng(fx), b->e, k), MS_OK);
    assert_int_equal(eng(fx)->ops->outbox_release(eng(fx), b->e + k, b->cnt - k), MS_OK);
    box_free(b);
}

/* ---- tests ---- */

static void create_and_read(void **state)
{
    fx_t *fx = *state;
    ms_create_resp_t c;
    assert_int_equal(create(fx, ID1, CLAIM_A, "corr-1", "RWD", 60, NULL, NULL, &c), MS_OK);
    assert_string_equal(c.mailbox_id, ID1);
    assert_int_equal(c.expires_at_ms, fx->now + 60000);
    assert_false(c.duplicate);
    assert_int_equal(read_display(fx, ID1), MS_OK);
    ms_read_secure_resp_t r;
    assert_int_equal(read_secure(fx, ID1, CLAIM_A, "", &r), MS_OK);
    assert_string_equal(r.payload.type, "AES128");
    assert_int_equal(r.payload.data.n, 12);
    assert_memory_equal(r.payload.data.p, "ciphertext-1", 12);
    assert_string_equal(r.display.image_url, "https://example.com/i.png");
    assert_int_equal(r.expires_at_ms, fx->now + 60000);
    ms_read_secure_resp_free(&r);
    /* upper case id is the same mailbox */
    char up[37];
    for (int i = 0; i < 36; i++)
        up[i] = (char)(ID1[i] >= 'a' && ID1[i] <= 'f' ? ID1[i] - 32 : ID1[i]);
    up[36] = 0;
    assert_int_equal(read_display(fx, up), MS_OK);
    assert_int_equal(read_display(fx, ID2), MS_ERR_NOT_FOUND);
    assert_int_equal(read_display(fx, "not-a-uuid"), MS_ERR_INVALID);
}

static void create_validation(void **state)
{
    fx_t *fx = *state;
    const int INV = MS_ERR_INVALID;
    assert_int_equal(create(fx, "not-a-uuid", CLAIM_A, "", "", 60, 0, 0, 0), INV);
    assert_int_equal(create(fx, "", CLAIM_A, "", "", 60, 0, 0, 0), INV);
    assert_int_equal(create(fx, NULL, CLAIM_A, "", "", 60, 0, 0, 0), INV);
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
    /* the shared correlation-id rule (cm_corr.h): 1..CM_CORR_ID_MAX visible ASCII characters */
    longcorr[CM_CORR_ID_MAX + 1] = 0;
    assert_int_equal(create(fx, ID1, CLAIM_A, longcorr, "", 60, 0, 0, 0), INV);
    const char *bad_corr[] = {"has space", "tab\t", "nl\n", "caf\xc3\xa9", "\x7f"};
    for (size_t i = 0; i < sizeof(bad_corr) / sizeof(bad_corr[0]); i++)
        assert_int_equal(create(fx, ID1, CLAIM_A, bad_corr[i], "", 60, 0, 0, 0), INV);
    char longclaim[MS_MAX_CLAIM_LEN + 2];
    memset(longclaim, 'x', sizeof(longclaim) - 1);
    longclaim[sizeof(longclaim) - 1] = 0;
    assert_int_equal(create(fx, ID1, longclaim, "", "", 60, 0, 0, 0), INV);
    ms_create_req_t nopayload = {.mailbox_id = ID1, .device_claim = CLAIM_A, .ttl_seconds = 60};
    ms_create_resp_t cr;
    assert_int_equal(ms_core_create(fx->core, &nopayload, &cr, NULL), INV);
    /* nothing was written by any of them */
    assert_int_equal(read_display(fx, ID1), MS_ERR_NOT_FOUND);
    assert_int_equal(db_mentions(fx, ID1), 0);
    /* bounds are inclusive */
    longcorr[CM_CORR_ID_MAX] = 0;
    assert_int_equal(create(fx, ID1, CLAIM_A, longcorr, "DWR", 172800, 0, 0, 0), MS_OK);
    assert_int_equal(create(fx, ID2, CLAIM_A, "", "", 1, 0, 0, 0), MS_OK);
}

static void create_existing(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(mk(fx, ID1, ""), MS_OK);
    assert_int_equal(create(fx, ID1, CLAIM_B, "", "", 60, 0, 0, 0), MS_ERR_EXISTS);
    assert_int_equal(create(fx, ID1, CLAIM_A, "", "", 60, 0, 0, 0), MS_ERR_EXISTS);
    assert_int_equal(create(fx, ID1, CLAIM_A, "x", "", 60, 0, 0, 0), MS_ERR_EXISTS);
}

static void binding(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(mk(fx, ID1, ""), MS_OK);
    assert_int_equal(rs(fx, ID1, CLAIM_B), MS_OK);         /* binds B */
    assert_int_equal(rs(fx, ID1, CLAIM_C), MS_ERR_DENIED); /* third party */
    assert_int_equal(rs(fx, ID1, CLAIM_B), MS_OK);
    assert_int_equal(rs(fx, ID1, CLAIM_A), MS_OK);
    assert_int_equal(del(fx, ID1, CLAIM_C, ""), MS_ERR_DENIED);
    assert_int_equal(relinquish(fx, ID1, CLAIM_C, "", NULL), MS_ERR_DENIED);
    /* a creator's claim reading its own mailbox does not bind it as receiver */
    assert_int_equal(mk(fx, ID2, ""), MS_OK);
    assert_int_equal(rs(fx, ID2, CLAIM_A), MS_OK);
    assert_int_equal(rs(fx, ID2, CLAIM_C), MS_OK);
    assert_int_equal(rs(fx, ID2, CLAIM_B), MS_ERR_DENIED);
    /* the raw claims are nowhere in the database */
    assert_int_equal(db_mentions(fx, CLAIM_A), 0);
    assert_int_equal(db_mentions(fx, CLAIM_B), 0);
    assert_int_equal(db_mentions(fx, CLAIM_C), 0);
    /* an unbound claim may not update or delete, even with the right */
    assert_int_equal(update(fx, ID2, CLAIM_B, "", "x", NULL, NULL, NULL), MS_ERR_DENIED);
}

static void access_rights(void **state)
{
    fx_t *fx = *state;
    const int PD = MS_ERR_DENIED;
    assert_int_equal(mk(fx, ID1, ""), MS_OK); /* default RD */
    assert_int_equal(rs(fx, ID1, CLAIM_B), MS_OK);
    assert_int_equal(update(fx, ID1, CLAIM_A, "", "x", NULL, NULL, NULL), PD);
    assert_int_equal(update(fx, ID1, CLAIM_B, "", "x", NULL, NULL, NULL), PD);
    assert_int_equal(del(fx, ID1, CLAIM_B, ""), MS_OK);
    assert_int_equal(rs(fx, ID1, CLAIM_A), MS_ERR_NOT_FOUND);

    assert_int_equal(mk(fx, ID1, "W"), MS_OK);
    assert_int_equal(rs(fx, ID1, CLAIM_A), PD);
    assert_int_equal(rs(fx, ID1, CLAIM_B), PD); /* no R: no binding either */
    assert_int_equal(update(fx, ID1, CLAIM_A, "", "x", NULL, NULL, NULL), MS_OK);
    assert_int_equal(del(fx, ID1, CLAIM_A, ""), PD);

    assert_int_equal(mk(fx, ID2, "RW"), MS_OK);
    assert_int_equal(rs(fx, ID2, CLAIM_B), MS_OK);
    assert_int_equal(update(fx, ID2, CLAIM_B, "", "y", NULL, NULL, NULL), MS_OK);
    assert_int_equal(del(fx, ID2, CLAIM_A, ""), PD);
    assert_int_equal(del(fx, ID2, CLAIM_B, ""), PD);
}

static void update_notifies_other_party(void **state)
{
    fx_t *fx = *state;
    box_t b;
    assert_int_equal(create(fx, ID1, CLAIM_A, "", "RWD", 600, "com.apple.apns", "TOK-A", NULL),
                     MS_OK);
    /* no receiver yet: nobody to notify */
    assert_int_equal(update(fx, ID1, CLAIM_A, "", "p1", NULL, NULL, NULL), MS_OK);
    assert_int_equal(depth(fx), 0);
    assert_int_equal(rs(fx, ID1, CLAIM_B), MS_OK);
    /* receiver updates with its token: the creator's token gets a notification */
    int hooks = fx->hooks;
    assert_int_equal(update(fx, ID1, CLAIM_B, "", "p2", "com.google.fcm", "TOK-B", NULL), MS_OK);
    assert_int_equal(fx->hooks, hooks + 1);
    assert_int_equal(box_claim(fx, &b), 1);
    assert_int_equal(b.e[0].kind, MS_OUTBOX_NOTIFY);
    assert_string_equal(b.e[0].mailbox_id, ID1);
    assert_string_equal(b.n[0].token_type, "com.apple.apns");
    assert_string_equal(b.n[0].token_data, "TOK-A");
    assert_int_equal(b.n[0].mailbox_expires_at_ms, fx->now + 600000);
    assert_int_equal(b.n[0].created_at_ms, fx->now);
    assert_int_equal(strlen(b.n[0].notification_id), 36);
    box_release(fx, &b);
    ms_read_secure_resp_t r;
    assert_int_equal(read_secure(fx, ID1, CLAIM_A, "", &r), MS_OK);
    assert_memory_equal(r.payload.data.p, "p2", 2);
    ms_read_secure_resp_free(&r);
    /* creator updates with a new token: the receiver's stored token gets one */
    assert_int_equal(update(fx, ID1, CLAIM_A, "", "p3", "webhook", "https://hook/a", NULL), MS_OK);
    assert_int_equal(box_claim(fx, &b), 2);
    assert_string_equal(b.n[1].token_type, "com.google.fcm");
    assert_string_equal(b.n[1].token_data, "TOK-B");
    assert_string_not_equal(b.n[0].notification_id, b.n[1].notification_id);
    box_release(fx, &b);
    /* receiver again: the creator's NEW token */
    assert_int_equal(update(fx, ID1, CLAIM_B, "", "p4", NULL, NULL, NULL), MS_OK);
    assert_int_equal(box_claim(fx, &b), 3);
    assert_string_equal(b.n[2].token_type, "webhook");
    assert_string_equal(b.n[2].token_data, "https://hook/a");
    assert_int_equal(depth(fx), 3);
    /* acknowledging removes them (twice: counted once) */
    box_ack(fx, &b, 2);
    assert_int_equal(depth(fx), 1);
    assert_int_equal(box_claim(fx, &b), 1);
    assert_string_equal(b.n[0].token_data, "https://hook/a");
    box_release(fx, &b);
    /* tokens are stored only through the seal hook, sealed: their text is nowhere in the
     * storage (record, outbox entries) */
    assert_int_equal(db_mentions(fx, "https://hook/a"), 0);
    assert_int_equal(db_mentions(fx, "TOK-B"), 0);
}

static void delete_removes_everything(void **state)
{
    fx_t *fx = *state;
    box_t b;
    assert_int_equal(create(fx, ID1, CLAIM_A, "c1", "RWD", 600, "com.apple.apns", "TOK-A", NULL),
                     MS_OK);
    assert_int_equal(mk(fx, ID2, "RWD"), MS_OK);
    assert_int_equal(read_secure(fx, ID1, CLAIM_B, "c2", NULL), MS_OK);
    assert_int_equal(update(fx, ID1, CLAIM_B, "c3", "p2", "com.google.fcm", "TOK-B", NULL), MS_OK);
    assert_int_equal(depth(fx), 1);
    assert_true(db_mentions(fx, ID1) >= 2);
    int hooks = fx->hooks;
    assert_int_equal(del(fx, ID1, CLAIM_B, "c4"), MS_OK);
    assert_int_equal(fx->hooks, hooks + 1);
    /* only the cancel marker still names the mailbox */
    assert_int_equal(db_mentions(fx, ID1), 1);
    assert_int_equal(db_mentions(fx, "TOK-A"), 0);
    assert_int_equal(box_claim(fx, &b), 1);
    assert_int_equal(b.e[0].kind, MS_OUTBOX_CANCEL);
    assert_string_equal(b.n[0].mailbox_id, ID1);
    assert_int_equal(b.n[0].mailbox_expires_at_ms, fx->now + 600000);
    assert_string_equal(b.n[0].token_data, "");
    assert_int_equal(depth(fx), 1);
    box_ack(fx, &b, 1);
    assert_int_equal(db_mentions(fx, ID1), 0);
    assert_int_equal(depth(fx), 0);
    assert_int_equal(read_display(fx, ID1), MS_ERR_NOT_FOUND);
    assert_int_equal(rs(fx, ID1, CLAIM_A), MS_ERR_NOT_FOUND);
    /* a repeated Delete (same correlation id) finds nothing: 404 as 001 §6.3.3 allows */
    assert_int_equal(del(fx, ID1, CLAIM_B, "c4"), MS_ERR_NOT_FOUND);
    assert_int_equal(update(fx, ID1, CLAIM_A, "", "x", NULL, NULL, NULL), MS_ERR_NOT_FOUND);
    /* the other mailbox is untouched, and the id can be used again */
    assert_int_equal(rs(fx, ID2, CLAIM_A), MS_OK);
    assert_int_equal(mk(fx, ID1, ""), MS_OK);
    assert_int_equal(rs(fx, ID1, CLAIM_C), MS_OK);
}

static void relinquish_rebind(void **state)
{
    fx_t *fx = *state;
    int dup = -1;
    assert_int_equal(mk(fx, ID1, ""), MS_OK);
    assert_int_equal(relinquish(fx, ID1, CLAIM_B, "", NULL), MS_ERR_DENIED);
    assert_int_equal(rs(fx, ID1, CLAIM_B), MS_OK);
    assert_int_equal(relinquish(fx, ID1, CLAIM_A, "", NULL), MS_ERR_PRECONDITION);
    assert_int_equal(relinquish(fx, ID1, CLAIM_C, "", NULL), MS_ERR_DENIED);
    assert_int_equal(relinquish(fx, ID1, CLAIM_B, "r1", &dup), MS_OK);
    assert_false(dup);
    /* a retry with the same correlation id is a duplicate even though B is no longer bound */
    assert_int_equal(relinquish(fx, ID1, CLAIM_B, "r1", &dup), MS_OK);
    assert_true(dup);
    assert_int_equal(relinquish(fx, ID1, CLAIM_B, "r2", NULL), MS_ERR_DENIED);
    assert_int_equal(rs(fx, ID1, CLAIM_C), MS_OK); /* another device binds */
    assert_int_equal(rs(fx, ID1, CLAIM_B), MS_ERR_DENIED);
    assert_int_equal(rs(fx, ID1, CLAIM_A), MS_OK);
}

static void idempotency(void **state)
{
    fx_t *fx = *state;
    ms_create_resp_t c1, c2;
    assert_int_equal(create(fx, ID1, CLAIM_A, "k1", "RWD", 60, NULL, NULL, &c1), MS_OK);
    fx->now += 5000;
    /* same claim + correlation id: the stored response, marked duplicate */
    assert_int_equal(create(fx, ID1, CLAIM_A, "k1", "RWD", 99, NULL, NULL, &c2), MS_OK);
    assert_false(c1.duplicate);
    assert_true(c2.duplicate);
    assert_string_equal(c2.mailbox_id, ID1);
    assert_int_equal(c2.expires_at_ms, c1.expires_at_ms);
    /* another claim with the same correlation id is not a duplicate */
    assert_int_equal(create(fx, ID1, CLAIM_B, "k1", "", 60, 0, 0, 0), MS_ERR_EXISTS);

    int dup = -1;
    assert_int_equal(update(fx, ID1, CLAIM_A, "k2", "first", NULL, NULL, &dup), MS_OK);
    assert_false(dup);
    assert_int_equal(update(fx, ID1, CLAIM_A, "k2", "second", NULL, NULL, &dup), MS_OK);
    assert_true(dup);
    ms_read_secure_resp_t r;
    assert_int_equal(read_secure(fx, ID1, CLAIM_B, "k3", &r), MS_OK);
    assert_false(r.duplicate);
    assert_int_equal(r.payload.data.n, 5); /* "first": the duplicate changed nothing */
    ms_read_secure_resp_free(&r);
    /* the last processed id only: k2 was replaced by k4 for claim A */
    assert_int_equal(update(fx, ID1, CLAIM_A, "k4", "third", NULL, NULL, &dup), MS_OK);
    assert_false(dup);
    assert_int_equal(update(fx, ID1, CLAIM_A, "k2", "fourth", NULL, NULL, &dup), MS_OK);
    assert_false(dup);
    /* read duplicate returns the stored response (taken before the later updates) */
    assert_int_equal(read_secure(fx, ID1, CLAIM_B, "k3", &r), MS_OK);
    assert_true(r.duplicate);
    assert_int_equal(r.payload.data.n, 5);
    assert_memory_equal(r.payload.data.p, "first", 5);
    assert_string_equal(r.payload.type, "AES128");
    assert_string_equal(r.display.title, "Car Key");
    assert_int_equal(r.expires_at_ms, c1.expires_at_ms);
    ms_read_secure_resp_free(&r);
    /* the same id on another method is a new request */
    assert_int_equal(update(fx, ID1, CLAIM_B, "k3", "fifth", NULL, NULL, &dup), MS_OK);
    assert_false(dup);
    /* a failed request does not become the stored one */
    assert_int_equal(relinquish(fx, ID1, CLAIM_A, "k5", NULL), MS_ERR_PRECONDITION);
    assert_int_equal(update(fx, ID1, CLAIM_A, "k2", "sixth", NULL, NULL, &dup), MS_OK);
    assert_true(dup);
}

static void expiry_and_sweep(void **state)
{
    fx_t *fx = *state;
    box_t b;
    size_t deleted = 99;
    assert_int_equal(create(fx, ID1, CLAIM_A, "c1", "RWD", 10, "com.apple.apns", "T", NULL), 0);
    assert_int_equal(create(fx, ID2, CLAIM_A, "c1", "RWD", 20, NULL, NULL, NULL), 0);
    assert_int_equal(read_secure(fx, ID1, CLAIM_B, "c2", NULL), 0);
    assert_int_equal(update(fx, ID1, CLAIM_B, "c3", "x", NULL, NULL, NULL), 0);
    assert_int_equal(depth(fx), 1);
    fx->now += 9999;
    assert_int_equal(rs(fx, ID1, CLAIM_A), 0);
    fx->now += 1; /* exactly at expiry: gone for every path */
    const int NF = MS_ERR_NOT_FOUND;
    assert_int_equal(read_display(fx, ID1), NF);
    assert_int_equal(rs(fx, ID1, CLAIM_A), NF);
    assert_int_equal(rs(fx, ID1, CLAIM_C), NF);
    assert_int_equal(update(fx, ID1, CLAIM_A, "", "y", NULL, NULL, NULL), NF);
    assert_int_equal(del(fx, ID1, CLAIM_A, ""), NF);
    assert_int_equal(relinquish(fx, ID1, CLAIM_B, "", NULL), NF);
    assert_int_equal(read_display(fx, ID2), 0);
    /* still stored until swept */
    assert_true(db_mentions(fx, ID1) > 0);
    assert_int_equal(sweep(fx, 256, &deleted), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(db_mentions(fx, ID1), 0);
    assert_int_equal(depth(fx), 0);
    assert_int_equal(box_claim(fx, &b), 0); /* no cancel marker on expiry */
    box_release(fx, &b);
    assert_int_equal(read_display(fx, ID2), 0);
    assert_int_equal(sweep(fx, 256, &deleted), 0);
    assert_int_equal(deleted, 0);

    /* an expired, not yet swept id can be created again; the old rows go at once */
    fx->now += 10000;
    assert_int_equal(read_display(fx, ID2), NF);
    assert_int_equal(create(fx, ID2, CLAIM_C, "c9", "", 30, NULL, NULL, NULL), 0);
    assert_int_equal(rs(fx, ID2, CLAIM_A), 0); /* A is a stranger now: binds as receiver */
    assert_int_equal(rs(fx, ID2, CLAIM_B), MS_ERR_DENIED);
    assert_int_equal(sweep(fx, 256, &deleted), 0);
    assert_int_equal(deleted, 0); /* the new mailbox is kept */
    assert_int_equal(read_display(fx, ID2), 0);
    fx->now += 30000;
    assert_int_equal(sweep(fx, 256, &deleted), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(db_mentions(fx, ID2), 0);
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
    int rounds = 0, more;
    do {
        more = sweep(fx, 256, &deleted);
        assert_true(deleted <= 256);
        total += deleted;
        rounds++;
    } while (more);
    assert_int_equal(total, 600);
    assert_int_equal(rounds, 3);
    for (int i = 0; i < 600; i += 7) {
        snprintf(id, sizeof(id), "%08x-0000-4000-8000-000000000000", i);
        assert_int_equal(db_mentions(fx, id), 0);
    }
    snprintf(id, sizeof(id), "%08x-0000-4000-8000-000000000000", 9999);
    assert_true(db_mentions(fx, id) > 0);
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
        int winner = ms_tengine_binding_race(N, 0, race_read, fx, MS_ERR_DENIED);
        char claim[64];
        snprintf(claim, sizeof(claim), "racer-%d-0000-4000-8000-000000000000", winner);
        assert_int_equal(rs(fx, ID1, claim), 0);
    }
}

static void reopen_keeps_state(void **state)
{
    fx_t *fx = *state;
    box_t b;
    assert_int_equal(create(fx, ID1, CLAIM_A, "", "RWD", 600, "com.apple.apns", "TOK-A", NULL), 0);
    assert_int_equal(rs(fx, ID1, CLAIM_B), 0);
    assert_int_equal(update(fx, ID1, CLAIM_B, "", "p", NULL, NULL, NULL), 0);
    assert_int_equal(update(fx, ID1, CLAIM_B, "", "q", NULL, NULL, NULL), 0);
    close_core(fx);
    open_core(fx);
    assert_int_equal(depth(fx), 2);
    assert_int_equal(rs(fx, ID1, CLAIM_C), MS_ERR_DENIED);
    assert_int_equal(rs(fx, ID1, CLAIM_B), 0);
    assert_int_equal(update(fx, ID1, CLAIM_B, "", "r", NULL, NULL, NULL), 0);
    assert_int_equal(box_claim(fx, &b), 3); /* in order: the sequence continues */
    box_release(fx, &b);
}

/* The engine's side of the transaction contract, which the core relies on. */
typedef struct {
    ms_engine_t *e;
    int calls;
    ms_err_t first, then;
} txn_probe_t;

static ms_err_t probe_fn(ms_txn_t *t, void *arg)
{
    txn_probe_t *p = arg;
    static const uint8_t blob[] = "probe-record";
    uint8_t *got = NULL;
    size_t len;
    ms_err_t rc = p->e->ops->get_record(t, &got, &len);
    free(got);
    if (rc != MS_ERR_NOT_FOUND)
        return MS_ERR_INTERNAL; /* a write of an earlier, discarded run became visible */
    rc = p->e->ops->put_record(t, 1790000600000LL, blob, sizeof(blob));
    if (rc != MS_OK)
        return rc;
    return p->calls++ == 0 ? p->first : p->then;
}

static void engine_txn_contract(void **state)
{
    fx_t *fx = *state;
    txn_probe_t p = {eng(fx), 0, MS_ERR_DENIED, MS_OK};
    /* an error discards the queued writes and comes back as it is */
    assert_int_equal(eng(fx)->ops->run(eng(fx), ID1, probe_fn, &p), MS_ERR_DENIED);
    assert_int_equal(p.calls, 1);
    assert_int_equal(db_mentions(fx, "probe-record"), 0);
    /* RETRY re-runs the callback on a clean transaction, and is never returned */
    p = (txn_probe_t){eng(fx), 0, MS_ERR_RETRY, MS_OK};
    assert_int_equal(eng(fx)->ops->run(eng(fx), ID1, probe_fn, &p), MS_OK);
    assert_int_equal(p.calls, 2);
    assert_int_equal(db_mentions(fx, "probe-record"), 1);
    uint8_t *blob = NULL;
    size_t len = 0;
    assert_int_equal(eng(fx)->ops->read_record(eng(fx), ID1, &blob, &len), MS_OK);
    assert_int_equal(len, sizeof("probe-record"));
    assert_memory_equal(blob, "probe-record", len);
    free(blob);
    assert_int_equal(eng(fx)->ops->read_record(eng(fx), ID2, &blob, &len), MS_ERR_NOT_FOUND);
    /* endless conflicts end as UNAVAILABLE after a bounded number of tries */
    p = (txn_probe_t){eng(fx), 0, MS_ERR_RETRY, MS_ERR_RETRY};
    assert_int_equal(eng(fx)->ops->run(eng(fx), ID2, probe_fn, &p), MS_ERR_UNAVAILABLE);
    assert_int_equal(p.calls, MS_ENGINE_RUN_MAX_TRIES);
    assert_int_equal(eng(fx)->ops->healthy(eng(fx)), 1);
}

/* RocksDB data written before the engine boundary: a record value that is the bare record
 * (no format byte and expiry) stays readable, writable and deletable. */
static void rocks_reads_older_records(void **state)
{
    fx_t *fx = *state;
    if (ms_tengine_kind() != MS_ENGINE_ROCKSDB)
        skip();
    uint8_t creator[MS_HASH_LEN];
    assert_int_equal(ms_core_claim_hash(fx->core, CLAIM_A, strlen(CLAIM_A), creator), MS_OK);
    ms_record_t r = {.created_ms = fx->now,
                     .expires_ms = fx->now + 60000,
                     .rights = MS_RIGHT_R | MS_RIGHT_D,
                     .title = {(const uint8_t *)"Car Key", 7},
                     .payload_type = {(const uint8_t *)"AES128", 6},
                     .payload_data = {(const uint8_t *)"old", 3}};
    memcpy(r.creator, creator, MS_HASH_LEN);
    uint8_t *v;
    size_t vl;
    assert_int_equal(ms_record_encode(&r, &v, &vl), 0);
    char key[MS_KEY_MAX], *err = NULL;
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, key, ms_key_record(key, ID1), (const char *)v, vl);
    rocksdb_writebatch_put(wb, key, ms_key_expiry(key, r.expires_ms, ID1), "", 0);
    rocksdb_write(ms_engine_rocks_db(eng(fx)), wo, wb, &err);
    assert_null(err);
    rocksdb_writebatch_destroy(wb);
    rocksdb_writeoptions_destroy(wo);
    free(v);
    assert_int_equal(read_display(fx, ID1), MS_OK);
    assert_int_equal(rs(fx, ID1, CLAIM_B), MS_OK); /* binds: rewritten in the current format */
    assert_int_equal(rs(fx, ID1, CLAIM_C), MS_ERR_DENIED);
    assert_int_equal(del(fx, ID1, CLAIM_A, ""), MS_OK);
    assert_int_equal(db_mentions(fx, ID1), 1); /* the cancel marker only */
}

static void claim_hash_and_key(void **state)
{
    fx_t *fx = *state;
    uint8_t a[MS_HASH_LEN], b[MS_HASH_LEN], c[MS_HASH_LEN];
    assert_int_equal(ms_core_claim_hash(fx->core, "x", 1, a), MS_OK);
    assert_int_equal(ms_core_claim_hash(fx->core, "x", 1, b), MS_OK);
    assert_int_equal(ms_core_claim_hash(fx->core, "y", 1, c), MS_OK);
    assert_memory_equal(a, b, MS_HASH_LEN);
    assert_memory_not_equal(a, c, MS_HASH_LEN);
    assert_int_equal(a[0], 1); /* the key id: KEY is the ring's only key, id 1 */
    assert_true(ms_core_claim_matches(fx->core, "x", 1, a));
    assert_false(ms_core_claim_matches(fx->core, "y", 1, a));
    /* Without a key file a ring is generated once in the data dir and then reused. */
    cm_seal_ring_t *r1 = NULL, *r2 = NULL;
    int gen = 0;
    char err[256], dir[700];
    snprintf(dir, sizeof(dir), "%s/keydir/sub", fx->eng.dir);
    assert_int_equal(
        cm_seal_ring_load_or_create(NULL, dir, "claim.key", &r1, &gen, err, sizeof(err)),
        CM_SEAL_OK);
    assert_true(gen);
    assert_int_equal(cm_seal_ring_load_or_create("", dir, "claim.key", &r2, &gen, err, sizeof(err)),
                     CM_SEAL_OK);
    assert_false(gen);
    assert_int_equal(cm_seal_hash(r1, "x", 1, a), CM_SEAL_OK);
    assert_int_equal(cm_seal_hash_verify(r2, "x", 1, a), CM_SEAL_OK);
    cm_seal_ring_free(r1);
    cm_seal_ring_free(r2);
    char path[800];
    snprintf(path, sizeof(path), "%s/short.key", fx->eng.dir);
    FILE *f = fopen(path, "w");
    fputs("too-short", f);
    fclose(f);
    assert_int_equal(
        cm_seal_ring_load_or_create(path, dir, "claim.key", &r1, &gen, err, sizeof(err)),
        CM_SEAL_ERR_SYNTAX);
    snprintf(path, sizeof(path), "%s/missing.key", fx->eng.dir);
    assert_int_equal(
        cm_seal_ring_load_or_create(path, dir, "claim.key", &r1, &gen, err, sizeof(err)),
        CM_SEAL_ERR_FILE);
}

static void record_codecs(void **state)
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

    ms_idem_t i = {.method = MS_METHOD_READ_SECURE,
                   .corr = {(const uint8_t *)"k1", 2},
                   .expires_at_ms = 42,
                   .payload_data = {(const uint8_t *)"pp", 2}},
              di;
    assert_int_equal(ms_idem_encode(&i, &buf, &len), 0);
    assert_int_equal(ms_idem_decode(buf, len, &di), 0);
    assert_int_equal(di.method, MS_METHOD_READ_SECURE);
    assert_int_equal(di.expires_at_ms, 42);
    assert_memory_equal(di.corr.p, "k1", 2);
    assert_memory_equal(di.payload_data.p, "pp", 2);
    for (size_t k = 0; k < len; k++)
        assert_int_equal(ms_idem_decode(buf, k, &di), -1);
    buf[0] = 4; /* the unversioned format of earlier releases began with the method */
    assert_int_equal(ms_idem_decode(buf, len, &di), -1);
    free(buf);

    ms_outbox_rec_t o = {.kind = MS_OUTBOX_NOTIFY,
                         .notification_id = ID1,
                         .mailbox_id = ID2,
                         .mailbox_expires_at_ms = 7,
                         .created_at_ms = 3,
                         .token_type = {(const uint8_t *)"webhook", 7},
                         .token_data = {(const uint8_t *)"tok", 3}},
                    dout;
    assert_int_equal(ms_outbox_rec_encode(&o, &buf, &len), 0);
    assert_int_equal(ms_outbox_rec_decode(buf, len, &dout), 0);
    assert_string_equal(dout.notification_id, ID1);
    assert_string_equal(dout.mailbox_id, ID2);
    assert_int_equal(dout.mailbox_expires_at_ms, 7);
    assert_memory_equal(dout.token_data.p, "tok", 3);
    for (size_t k = 0; k < len; k++)
        assert_int_equal(ms_outbox_rec_decode(buf, k, &dout), -1);
    free(buf);

    uint8_t bits;
    assert_int_equal(ms_rights_parse("", &bits), 0);
    assert_int_equal(bits, MS_RIGHT_R | MS_RIGHT_D);
    assert_int_equal(ms_rights_parse("WDR", &bits), 0);
    assert_int_equal(bits, 7);
    assert_string_equal(ms_err_name(MS_ERR_DENIED), "DENIED");
    assert_string_equal(ms_err_name((ms_err_t)-99), "UNKNOWN");
}

int main(int argc, char **argv)
{
    ms_tengine_init(&argc, argv);
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
        cmocka_unit_test_setup_teardown(engine_txn_contract, setup, teardown),
        cmocka_unit_test_setup_teardown(rocks_reads_older_records, setup, teardown),
        cmocka_unit_test_setup_teardown(claim_hash_and_key, setup, teardown),
        cmocka_unit_test(record_codecs),
    };
    return cmocka_run_group_tests_name(ms_tengine_name(), tests, NULL, NULL);
}
