/* push-dispatch keeps notification tokens sealed at rest: its whole data directory (RocksDB
 * tables, WAL, manifest, logs) holds no token in any form; every queued entry names its key id;
 * rotation keeps older entries deliverable with the right token while new ones are sealed under
 * the new key; entries stored in clear by an older version are sealed when loaded. Against the
 * real binary, real RocksDB and the fake APNs (real HTTP/2 + TLS). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <openssl/sha.h>
#include <rocksdb/c.h>

#include "cm_seal.h"
#include "pdt.h"
#include "pv_scan.h"
#include "tigress/push/v1/push_dispatch.pb-c.h"

static const char K1[] = "1111111111111111111111111111111111111111111111111111111111111111";
static const char K2[] = "2222222222222222222222222222222222222222222222222222222222222222";

typedef struct {
    pdt_t t;
    char ring1[700], ring12[700], ring2[700];
} st_t;

/* A token that looks like a real APNs one: 64 random-looking hex digits (SHA-256 of |i|). Not
 * pdt_token: its runs of zeros would be compressed away in RocksDB's table files, and a scan
 * would then miss a clear copy. */
static void token(int i, char out[65])
{
    uint8_t h[SHA256_DIGEST_LENGTH];
    char in[32];
    int n = snprintf(in, sizeof(in), "token-%d", i);
    SHA256((const uint8_t *)in, (size_t)n, h);
    for (int j = 0; j < 32; j++)
        snprintf(out + 2 * j, 3, "%02x", h[j]);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    st_t *s = calloc(1, sizeof(*s));
    char text[300];
    if (!s || pdt_init(&s->t) != 0)
        return -1;
    snprintf(s->ring1, sizeof(s->ring1), "%s/ring1", s->t.dir);
    snprintf(s->ring12, sizeof(s->ring12), "%s/ring12", s->t.dir);
    snprintf(s->ring2, sizeof(s->ring2), "%s/ring2", s->t.dir);
    snprintf(text, sizeof(text), "1 %s\n", K1);
    write_file(s->ring1, text);
    snprintf(text, sizeof(text), "# rotated\n1 %s\n2 %s\n", K1, K2);
    write_file(s->ring12, text);
    snprintf(text, sizeof(text), "2 %s\n", K2);
    write_file(s->ring2, text);
    if (pdt_fake_start(&s->t, "apns", 0, 0) != 0)
        return -1;
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    st_t *s = *state;
    pdt_fini(&s->t);
    free(s);
    return 0;
}

static int pd_start(st_t *s, const char *ring)
{
    char flag[800];
    snprintf(flag, sizeof(flag), "--token-key-file=%s", ring);
    /* Entries must stay queued while APNs refuses, however slow the machine. */
    const char *extra[] = {flag, "--max-attempts=100000", NULL};
    return pdt_pd_start(&s->t, extra);
}

/* Per queued entry (the pd must be stopped): counts by the key id of its sealed token, and
 * entries with token_data in clear. Returns the number of q/ entries. */
static int queue_key_ids(st_t *s, int by_id[256], int *clear)
{
    char *err = NULL;
    int n = 0;
    memset(by_id, 0, 256 * sizeof(int));
    *clear = 0;
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_t *db = rocksdb_open_for_read_only(o, s->t.data, 0, &err);
    if (err)
        fail_msg("open %s: %s", s->t.data, err);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator(db, ro);
    for (rocksdb_iter_seek(it, "q/", 2); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < 2 || memcmp(k, "q/", 2) != 0)
            break;
        const char *v = rocksdb_iter_value(it, &vl);
        Tigress__Push__V1__QueuedNotification *qn =
            tigress__push__v1__queued_notification__unpack(NULL, vl, (const uint8_t *)v);
        assert_non_null(qn);
        uint8_t id = 0;
        if (qn->notification->token_data && qn->notification->token_data[0])
            (*clear)++;
        if (cm_seal_key_id(qn->sealed_token.data, qn->sealed_token.len, &id) == CM_SEAL_OK)
            by_id[id]++;
        tigress__push__v1__queued_notification__free_unpacked(qn, NULL);
        n++;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
    return n;
}

/* Writes one entry with its token in clear, as push-dispatch did before sealing. */
static void put_clear_entry(st_t *s, const char *id, const char *mailbox, const char *token)
{
    char *err = NULL, key[300];
    Tigress__Push__V1__Notification n = TIGRESS__PUSH__V1__NOTIFICATION__INIT;
    Tigress__Push__V1__QueuedNotification qn = TIGRESS__PUSH__V1__QUEUED_NOTIFICATION__INIT;
    n.notification_id = (char *)id;
    n.mailbox_id = (char *)mailbox;
    n.token_type = "com.apple.apns";
    n.token_data = (char *)token;
    n.mailbox_expires_at_ms = pdt_now_ms() + 3600000;
    n.created_at_ms = pdt_now_ms();
    qn.notification = &n;
    qn.next_attempt_ms = pdt_now_ms();
    uint8_t buf[1024];
    size_t len = tigress__push__v1__queued_notification__pack(&qn, buf);
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_t *db = rocksdb_open(o, s->t.data, &err);
    if (err)
        fail_msg("open: %s", err);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(wo, 1);
    int kl = snprintf(key, sizeof(key), "q/%s/%s", mailbox, id);
    rocksdb_put(db, wo, key, (size_t)kl, (const char *)buf, len, &err);
    assert_null(err);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
}

static void enqueue_tokens(st_t *s, const char *prefix, int first, int n, char tok[][65])
{
    int64_t exp = pdt_now_ms() + 3600000;
    for (int i = 0; i < n; i++) {
        char id[64], mb[64];
        snprintf(id, sizeof(id), "%s-%d", prefix, i);
        snprintf(mb, sizeof(mb), "%s-mb-%d", prefix, i);
        token(first + i, tok[i]);
        assert_int_equal(pdt_enqueue1(&s->t, id, mb, "com.apple.apns", tok[i], exp), 1);
    }
}

static void assert_no_tokens(st_t *s, char tok[][65], int n)
{
    size_t bytes = 0, files = pv_dir_files(s->t.data, &bytes);
    assert_true(files > 3 && bytes > 0);
    for (int i = 0; i < n; i++)
        assert_int_equal(pv_scan(s->t.data, tok[i]), 0);
}

static void rotation(void **state)
{
    st_t *s = *state;
    pdt_t *t = &s->t;
    enum { N = 20 };
    char old[N][65], fresh[N][65];
    int by_id[256], clear = 0;

    /* Key 1; APNs refuses for now, so everything stays queued (and is re-written per retry). */
    pdt_ctl(t, "apns", "{\"default\":503}");
    assert_int_equal(pd_start(s, s->ring1), 0);
    enqueue_tokens(s, "old", 100, N, old);
    assert_true(pdt_wait(t, "apns", 503, NULL, N, 30000) >= N);
    assert_int_equal(pdt_pd_stop(t), 0);
    assert_int_equal(queue_key_ids(s, by_id, &clear), N);
    assert_int_equal(by_id[1], N);
    assert_int_equal(clear, 0);
    assert_no_tokens(s, old, N);

    /* A ring without key 1 (removed too early): the entries cannot be opened, are not
     * delivered, and are kept for when the key is put back. */
    pdt_ctl(t, "apns", "{}");
    assert_int_equal(pd_start(s, s->ring2), 0);
    pdt_sleep_ms(1500);
    assert_int_equal(pdt_count(t, "apns", 200, NULL), 0);
    assert_int_equal(pdt_pd_stop(t), 0);
    assert_int_equal(queue_key_ids(s, by_id, &clear), N);

    /* Rotated to {1, 2}: every old entry is delivered with its own token. */
    assert_int_equal(pd_start(s, s->ring12), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(pdt_wait(t, "apns", 200, old[i], 1, 30000), 1);
    /* New entries are sealed under key 2. */
    pdt_ctl(t, "apns", "{\"default\":503}");
    enqueue_tokens(s, "new", 200, N, fresh);
    assert_true(pdt_wait(t, "apns", 503, NULL, N, 30000) >= N);
    assert_int_equal(pdt_pd_stop(t), 0);
    assert_int_equal(queue_key_ids(s, by_id, &clear), N);
    assert_int_equal(by_id[2], N);
    assert_int_equal(by_id[1], 0);
    assert_no_tokens(s, old, N);
    assert_no_tokens(s, fresh, N);

    /* Only key 2 left: the new entries go out. */
    pdt_ctl(t, "apns", "{}");
    assert_int_equal(pd_start(s, s->ring2), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(pdt_wait(t, "apns", 200, fresh[i], 1, 30000), 1);
    assert_int_equal(pdt_pd_stop(t), 0);
}

/* An entry stored in clear (older version) is sealed at load and its clear copy leaves the
 * table files; it is still delivered with its token. */
static void legacy_entries_sealed(void **state)
{
    st_t *s = *state;
    pdt_t *t = &s->t;
    char tok[2][65];
    int by_id[256], clear = 0;
    token(777, tok[0]);
    token(778, tok[1]);
    /* Create the database with the current layout first. */
    pdt_ctl(t, "apns", "{\"default\":503}");
    assert_int_equal(pd_start(s, s->ring1), 0);
    assert_int_equal(pdt_pd_stop(t), 0);
    put_clear_entry(s, "legacy-1", "legacy-mb", tok[0]);
    put_clear_entry(s, "legacy-2", "legacy-mb", tok[1]);
    assert_true(pv_scan(t->data, tok[0]) > 0); /* the scan does see a clear token */

    assert_int_equal(pd_start(s, s->ring1), 0);
    assert_true(pdt_wait(t, "apns", 503, NULL, 2, 30000) >= 2);
    assert_int_equal(pdt_pd_stop(t), 0);
    assert_int_equal(queue_key_ids(s, by_id, &clear), 2);
    assert_int_equal(clear, 0);
    assert_int_equal(by_id[1], 2);
    assert_no_tokens(s, tok, 2);

    pdt_ctl(t, "apns", "{}");
    assert_int_equal(pd_start(s, s->ring1), 0);
    assert_int_equal(pdt_wait(t, "apns", 200, tok[0], 1, 30000), 1);
    assert_int_equal(pdt_wait(t, "apns", 200, tok[1], 1, 30000), 1);
    assert_int_equal(pdt_pd_stop(t), 0);
}

/* Without --token-key-file a ring is generated in the data dir (development), with a warning,
 * and reused on the next start. */
static void generated_key(void **state)
{
    st_t *s = *state;
    pdt_t *t = &s->t;
    char tok[1][65], path[800];
    const char *keep[] = {"--max-attempts=100000", NULL};
    token(900, tok[0]);
    pdt_ctl(t, "apns", "{\"default\":503}");
    assert_int_equal(pdt_pd_start(t, keep), 0);
    assert_int_equal(
        pdt_enqueue1(t, "g-1", "g-mb", "com.apple.apns", tok[0], pdt_now_ms() + 3600000), 1);
    assert_true(pdt_wait(t, "apns", 503, NULL, 1, 30000) >= 1);
    char *log = th_read_file(t->pd.log_path, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "no --token-key-file"));
    free(log);
    assert_int_equal(pdt_pd_stop(t), 0);
    snprintf(path, sizeof(path), "%s/token-keys", t->data);
    cm_seal_ring_t *r = NULL;
    char err[256];
    assert_int_equal(cm_seal_ring_load(path, &r, err, sizeof(err)), CM_SEAL_OK);
    cm_seal_ring_free(r);
    pdt_ctl(t, "apns", "{}");
    assert_int_equal(pdt_pd_start(t, keep), 0);
    assert_int_equal(pdt_wait(t, "apns", 200, tok[0], 1, 30000), 1);
    assert_int_equal(pdt_pd_stop(t), 0);
}

/* A bad ring file stops the start with exit 2 and says where, never what. */
static void bad_ring(void **state)
{
    st_t *s = *state;
    char path[700], flag[800], bin[600];
    snprintf(path, sizeof(path), "%s/bad-ring", s->t.dir);
    write_file(path, "1 0123456789abcdef\n");
    snprintf(flag, sizeof(flag), "--token-key-file=%s", path);
    th_bin("push-dispatch", bin, sizeof(bin));
    char cmd[4000];
    snprintf(cmd, sizeof(cmd), "%s %s --listen=127.0.0.1:0 --admin-listen= --data-dir=%s 2>%s.log",
             bin, flag, s->t.data, path);
    int st = system(cmd);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 2);
    char logp[800];
    snprintf(logp, sizeof(logp), "%s.log", path);
    char *log = th_read_file(logp, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "line 1"));
    assert_null(strstr(log, "0123456789abcdef"));
    free(log);
}

static int cancel_recipient(pdt_t *t, const char *mailbox, const char *token, uint32_t *dropped)
{
    Tigress__Push__V1__CancelRecipientRequest rq =
        TIGRESS__PUSH__V1__CANCEL_RECIPIENT_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    cm_rpc_call_opts_t o = {.timeout_ms = 30000};
    cm_rpc_status_t st;
    rq.mailbox_id = (char *)mailbox;
    rq.token_type = "com.apple.apns";
    rq.token_data = (char *)token;
    int rc = cm_rpc_call(t->ch, "/tigress.push.v1.PushDispatch/CancelRecipient", &rq.base,
                         &tigress__push__v1__cancel_mailbox_response__descriptor, &o, &resp, &st);
    if (rc != 0)
        return -(int)st.code;
    *dropped = ((Tigress__Push__V1__CancelMailboxResponse *)resp)->dropped;
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

/* A receiver that left a mailbox loses its queued notifications there; the other party's stay,
 * and so do the receiver's notifications of other mailboxes. Survives a restart (the entries
 * are gone from disk, their ids count as handled). */
static void recipient_cancelled(void **state)
{
    st_t *s = *state;
    pdt_t *t = &s->t;
    char left[65], other[65], stay[65];
    uint32_t dropped = 0;
    int64_t exp = pdt_now_ms() + 3600000;
    token(301, left);
    token(302, other);
    token(303, stay);
    pdt_ctl(t, "apns", "{\"default\":503}");
    assert_int_equal(pd_start(s, s->ring1), 0);
    assert_int_equal(pdt_enqueue1(t, "n1", "mb-a", "com.apple.apns", left, exp), 1);
    assert_int_equal(pdt_enqueue1(t, "n2", "mb-a", "com.apple.apns", left, exp), 1);
    assert_int_equal(pdt_enqueue1(t, "n3", "mb-a", "com.apple.apns", other, exp), 1);
    assert_int_equal(pdt_enqueue1(t, "n4", "mb-b", "com.apple.apns", left, exp), 1);
    assert_true(pdt_wait(t, "apns", 503, NULL, 4, 30000) >= 4);
    assert_int_equal(cancel_recipient(t, "mb-a", left, &dropped), 0);
    /* An entry may be in flight at this moment: then it is flagged instead of counted. */
    assert_true(dropped <= 2);
    assert_int_equal(cancel_recipient(t, "mb-a", "", &dropped), -GRPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(cancel_recipient(t, "mb/a", left, &dropped), -GRPC_STATUS_INVALID_ARGUMENT);
    /* A re-sent Enqueue of a dropped id is a duplicate. */
    assert_int_equal(pdt_enqueue1(t, "n1", "mb-a", "com.apple.apns", left, exp), 0);
    assert_int_equal(pdt_pd_stop(t), 0);

    pdt_ctl(t, "apns", "{}");
    assert_int_equal(pd_start(s, s->ring1), 0);
    assert_int_equal(pdt_wait(t, "apns", 200, other, 1, 30000), 1);
    assert_int_equal(pdt_wait(t, "apns", 200, NULL, 2, 30000), 2);
    pdt_sleep_ms(1500);
    assert_int_equal(pdt_count(t, "apns", 200, left), 1); /* mb-b's only */
    assert_int_equal(pdt_pd_stop(t), 0);
}

int main(void)
{
    cm_rpc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(legacy_entries_sealed, setup, teardown),
        cmocka_unit_test_setup_teardown(generated_key, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(recipient_cancelled, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cm_rpc_shutdown();
    return rc;
}
