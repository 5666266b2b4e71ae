/* The mailbox-store core across key rotations, on every engine ("--engine=rocksdb|postgres",
 * see tests/mailbox-store/ms_tengine.h): state written under claim and token key 1 is used by a
 * core whose rings hold keys 1 and 2. Bound devices still match, their idempotency records are
 * still found (a retried request stays a duplicate), tokens sealed under key 1 still reach the
 * outbox, new bindings and tokens go under key 2, a token moved to another mailbox does not
 * open, and no token is in the storage in clear. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cm_seal.h"
#include "ms_core.h"
#include "ms_engine.h"
#include "ms_record.h"
#include "ms_tengine.h"

#define ID1 "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"
#define ID2 "7a2b3c4d-5e6f-4a1b-9c2d-3e4f5a6b7c8d"
#define CLAIM_A "aaaaaaaa-0000-4000-8000-00000000000a"
#define CLAIM_B "bbbbbbbb-0000-4000-8000-00000000000b"
#define CLAIM_C "cccccccc-0000-4000-8000-00000000000c"

static const char KC1[] = "1111111111111111111111111111111111111111111111111111111111111111";
static const char KC2[] = "2222222222222222222222222222222222222222222222222222222222222222";
static const char KT1[] = "3333333333333333333333333333333333333333333333333333333333333333";
static const char KT2[] = "4444444444444444444444444444444444444444444444444444444444444444";

typedef struct {
    ms_tengine_t eng;
    ms_core_t *core;
    cm_seal_ring_t *claims, *tokens; /* owned; outlive |core| */
} fx_t;

/* A ring of key 1, or keys |first|..2 (first 1: both; first 2: key 2 only). */
static cm_seal_ring_t *ring(fx_t *fx, const char *k1, const char *k2, int first)
{
    char path[700], text[300], err[256];
    snprintf(path, sizeof(path), "%s/ring", fx->eng.dir);
    snprintf(text, sizeof(text), "%s%s%s%s%s%s", first == 1 ? "1 " : "", first == 1 ? k1 : "",
             first == 1 ? "\n" : "", k2 ? "2 " : "", k2 ? k2 : "", k2 ? "\n" : "");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    cm_seal_ring_t *r = NULL;
    assert_int_equal(cm_seal_ring_load(path, &r, err, sizeof(err)), CM_SEAL_OK);
    return r;
}

/* Opens the core with rings of key 1 only (|keys| 1), keys 1 and 2 (12) or key 2 only (2). */
static void open_core(fx_t *fx, int keys)
{
    int first = keys == 2 ? 2 : 1;
    fx->claims = ring(fx, KC1, keys == 1 ? NULL : KC2, first);
    fx->tokens = ring(fx, KT1, keys == 1 ? NULL : KT2, first);
    assert_int_equal(ms_tengine_open(&fx->eng), 0);
    ms_core_opts_t o = {.engine = fx->eng.engine,
                        .max_ttl_s = 3600,
                        .claim_ring = fx->claims,
                        .token_ring = fx->tokens};
    assert_int_equal(ms_core_new(&o, &fx->core), MS_OK);
}

static void close_core(fx_t *fx)
{
    ms_core_del(fx->core);
    fx->core = NULL;
    ms_tengine_close(&fx->eng);
    cm_seal_ring_free(fx->claims);
    cm_seal_ring_free(fx->tokens);
    fx->claims = fx->tokens = NULL;
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    assert_int_equal(ms_tengine_setup(&fx->eng, 0), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    if (fx->core)
        close_core(fx);
    ms_tengine_teardown(&fx->eng);
    free(fx);
    return 0;
}

/* Each returns the error; *dup (may be NULL) the duplicate flag. */
static ms_err_t create(fx_t *fx, const char *id, const char *claim, const char *corr,
                       const char *tok, int *dup)
{
    ms_create_req_t q = {.mailbox_id = id,
                         .device_claim = claim,
                         .correlation_id = corr,
                         .ttl_seconds = 600,
                         .access_rights = "RWD",
                         .display = {"Car Key", "a key", "https://example.com/i.png"},
                         .payload = {"AES128", {(const uint8_t *)"ciphertext", 10}},
                         .token = {"com.apple.apns", tok}};
    ms_create_resp_t r;
    ms_err_t rc = ms_core_create(fx->core, &q, &r, NULL);
    if (rc == MS_OK && dup)
        *dup = r.duplicate;
    return rc;
}

static ms_err_t read_secure(fx_t *fx, const char *id, const char *claim, const char *corr, int *dup)
{
    ms_read_secure_req_t q = {id, claim, corr};
    ms_read_secure_resp_t r;
    ms_err_t rc = ms_core_read_secure(fx->core, &q, &r, NULL);
    if (rc == MS_OK) {
        if (dup)
            *dup = r.duplicate;
        ms_read_secure_resp_free(&r);
    }
    return rc;
}

static ms_err_t update(fx_t *fx, const char *id, const char *claim, const char *corr,
                       const char *tok, int *dup)
{
    ms_update_req_t q = {.mailbox_id = id,
                         .device_claim = claim,
                         .correlation_id = corr,
                         .payload = {"AES128", {(const uint8_t *)"next", 4}},
                         .token = {tok ? "com.apple.apns" : NULL, tok}};
    ms_ack_resp_t r;
    ms_err_t rc = ms_core_update(fx->core, &q, &r, NULL);
    if (rc == MS_OK && dup)
        *dup = r.duplicate;
    return rc;
}

static ms_err_t relinquish(fx_t *fx, const char *id, const char *claim, const char *corr)
{
    ms_relinquish_req_t q = {id, claim, corr};
    ms_ack_resp_t r;
    return ms_core_relinquish(fx->core, &q, &r, NULL);
}

/* The stored record of |id|: *raw (free it) backs |r|. */
static void stored_record(fx_t *fx, const char *id, uint8_t **raw, ms_record_t *r)
{
    ms_engine_t *e = fx->eng.engine;
    size_t len = 0;
    assert_int_equal(e->ops->read_record(e, id, raw, &len), MS_OK);
    assert_int_equal(ms_record_decode(*raw, len, r), 0);
}

static int key_of(const ms_blob_t *sealed)
{
    uint8_t id = 0;
    return cm_seal_key_id(sealed->p, sealed->n, &id) == CM_SEAL_OK ? id : -1;
}

static void rotation(void **state)
{
    fx_t *fx = *state;
    int dup = -1;
    open_core(fx, 1);
    assert_int_equal(create(fx, ID1, CLAIM_A, "c1", "TOK-A", &dup), MS_OK);
    assert_int_equal(read_secure(fx, ID1, CLAIM_B, "r1", &dup), MS_OK);
    assert_int_equal(update(fx, ID1, CLAIM_B, "u1", "TOK-B", &dup), MS_OK);
    close_core(fx);

    open_core(fx, 12);
    /* Retried requests from before the rotation (each claim's last one) are still
     * duplicates. */
    assert_int_equal(create(fx, ID1, CLAIM_A, "c1", "TOK-A", &dup), MS_OK);
    assert_int_equal(dup, 1);
    assert_int_equal(update(fx, ID1, CLAIM_B, "u1", "TOK-B", &dup), MS_OK);
    assert_int_equal(dup, 1);
    /* Bound devices still match; a stranger does not. */
    assert_int_equal(read_secure(fx, ID1, CLAIM_A, "", &dup), MS_OK);
    assert_int_equal(dup, 0);
    assert_int_equal(read_secure(fx, ID1, CLAIM_C, "", NULL), MS_ERR_DENIED);
    /* The receiver's update reaches the creator's token sealed under key 1. */
    assert_int_equal(update(fx, ID1, CLAIM_B, "u2", "TOK-B2", &dup), MS_OK);
    assert_int_equal(dup, 0);
    /* The receiver leaves; a new one binds under claim key 2. */
    assert_int_equal(relinquish(fx, ID1, CLAIM_B, "x1"), MS_OK);
    /* Its retry is a duplicate although it is no longer bound (found under its old hash). */
    assert_int_equal(relinquish(fx, ID1, CLAIM_B, "x1"), MS_OK);
    assert_int_equal(relinquish(fx, ID1, CLAIM_B, "x2"), MS_ERR_DENIED);
    assert_int_equal(read_secure(fx, ID1, CLAIM_C, "r2", &dup), MS_OK);
    uint8_t *raw = NULL;
    ms_record_t r;
    stored_record(fx, ID1, &raw, &r);
    assert_int_equal(r.creator[0], 1);
    assert_int_equal(r.receiver[0], 2);
    assert_int_equal(key_of(&r.creator_tok_data), 1);
    /* A sealed token opens only for its own mailbox (the id is the associated data). */
    uint8_t *plain = NULL;
    size_t pl = 0;
    assert_int_equal(ms_core_token_open(fx->core, ID2, r.creator_tok_data, &plain, &pl),
                     MS_ERR_CORRUPT);
    assert_int_equal(ms_core_token_open(fx->core, ID1, r.creator_tok_data, &plain, &pl), MS_OK);
    assert_int_equal(pl, 5);
    assert_memory_equal(plain, "TOK-A", 5);
    free(plain);
    /* A token stored in clear by a version before sealing still opens (as it is). */
    ms_blob_t clear = {(const uint8_t *)"https://hook/x", 14};
    assert_int_equal(ms_core_token_open(fx->core, ID1, clear, &plain, &pl), MS_OK);
    assert_int_equal(pl, 14);
    assert_memory_equal(plain, "https://hook/x", 14);
    free(plain);
    free(raw);

    /* The outbox: the notification written under key 1, the one written after the rotation
     * (the same creator token, now sealed under key 2), and the receiver's cancel marker. */
    ms_engine_t *e = fx->eng.engine;
    ms_outbox_entry_t en[16];
    size_t n = 0;
    assert_int_equal(e->ops->outbox_claim(e, 16, 60000, en, &n), MS_OK);
    assert_int_equal(n, 3);
    static const char *const want_tok[] = {"TOK-A", "TOK-A", "TOK-B2"};
    static const int want_key[] = {1, 2, 2};
    for (size_t i = 0; i < n; i++) {
        ms_notification_t no;
        ms_outbox_rec_t rec;
        assert_int_equal(ms_core_outbox_decode(fx->core, &en[i], &no), MS_OK);
        assert_string_equal(no.token_data, want_tok[i]);
        assert_int_equal(no.kind, i < 2 ? MS_OUTBOX_NOTIFY : MS_OUTBOX_CANCEL);
        ms_notification_free(&no);
        assert_int_equal(ms_outbox_rec_decode(en[i].blob, en[i].len, &rec), 0);
        assert_int_equal(key_of(&rec.token_data), want_key[i]);
    }
    assert_int_equal(e->ops->outbox_release(e, en, n), MS_OK);
    ms_outbox_entries_free(en, n);
    /* No token in clear anywhere in the storage. */
    assert_int_equal(ms_tengine_count_mentions(&fx->eng, "TOK-", 4), 0);
    close_core(fx);

    /* Key 1 gone: the creator bound under it no longer matches (why a key may only be removed
     * after the longest lifetime); the receiver bound under key 2 still does. */
    open_core(fx, 2);
    assert_int_equal(read_secure(fx, ID1, CLAIM_A, "", NULL), MS_ERR_DENIED);
    assert_int_equal(read_secure(fx, ID1, CLAIM_C, "", NULL), MS_OK);
}

int main(int argc, char **argv)
{
    ms_tengine_init(&argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(rotation, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
