#include "ms_dump.h"

#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <rocksdb/c.h>

#include "cm_alloc.h"
#include "cm_seal.h"
#include "ms_keys.h"
#include "ms_record.h"

static void add_blob(cJSON *o, const char *name, const ms_blob_t *b)
{
    char *s = cm_xstrndup(b->n ? (const char *)b->p : "", b->n);
    cJSON_AddStringToObject(o, name, s);
    free(s);
}

/* The key id a sealed token names (never its bytes): -1 when there is no token, 0 when the
 * bytes are not a sealed value (written in clear by an older version). */
static void add_token_key(cJSON *o, const char *name, const ms_blob_t *b)
{
    uint8_t id = 0;
    if (b->n == 0)
        cJSON_AddNumberToObject(o, name, -1);
    else if (cm_seal_key_id(b->p, b->n, &id) == CM_SEAL_OK)
        cJSON_AddNumberToObject(o, name, id);
    else
        cJSON_AddNumberToObject(o, name, 0);
}

static void add_id(cJSON *o, const char *p)
{
    char id[MS_ID_LEN + 1];
    memcpy(id, p, MS_ID_LEN);
    id[MS_ID_LEN] = '\0';
    cJSON_AddStringToObject(o, "mailbox_id", id);
}

static void add_rights(cJSON *o, uint8_t bits)
{
    char rights[4] = "";
    int n = 0;
    if (bits & MS_RIGHT_R)
        rights[n++] = 'R';
    if (bits & MS_RIGHT_W)
        rights[n++] = 'W';
    if (bits & MS_RIGHT_D)
        rights[n++] = 'D';
    rights[n] = '\0';
    cJSON_AddStringToObject(o, "rights", rights);
}

/* A record value: format byte 'R' + expiry + blob, or (older) the bare blob. */
static void describe_record(cJSON *o, const char *v, size_t vl)
{
    const uint8_t *u = (const uint8_t *)v;
    ms_record_t r;
    if (vl >= 9 && u[0] == 'R') {
        u += 9;
        vl -= 9;
    }
    if (ms_record_decode(u, vl, &r) != 0) {
        cJSON_AddStringToObject(o, "kind", "unknown");
        return;
    }
    cJSON_AddStringToObject(o, "kind", "mailbox");
    cJSON_AddNumberToObject(o, "created_ms", (double)r.created_ms);
    cJSON_AddNumberToObject(o, "expires_ms", (double)r.expires_ms);
    add_rights(o, r.rights);
    cJSON_AddBoolToObject(o, "receiver_bound", r.has_receiver);
    /* Claims and tokens only by the ids of the keys they are under (rotation checks). */
    cJSON_AddNumberToObject(o, "creator_claim_key", r.creator[0]);
    if (r.has_receiver)
        cJSON_AddNumberToObject(o, "receiver_claim_key", r.receiver[0]);
    add_blob(o, "creator_token_type", &r.creator_tok_type);
    add_token_key(o, "creator_token_key", &r.creator_tok_data);
    add_blob(o, "receiver_token_type", &r.receiver_tok_type);
    add_token_key(o, "receiver_token_key", &r.receiver_tok_data);
    add_blob(o, "payload_type", &r.payload_type);
    cJSON_AddNumberToObject(o, "payload_len", (double)r.payload_data.n);
}

/* An outbox value: kind byte + mailbox id + the core's encoded entry. */
static void describe_outbox(cJSON *o, uint64_t seq, const char *v, size_t vl)
{
    ms_outbox_rec_t r;
    cJSON_AddStringToObject(o, "kind", "outbox");
    cJSON_AddNumberToObject(o, "seq", (double)seq);
    cJSON_AddStringToObject(o, "type", v[0] == 'C' ? "cancel" : "notify");
    if (vl < 1 + MS_ID_LEN ||
        ms_outbox_rec_decode((const uint8_t *)v + 1 + MS_ID_LEN, vl - 1 - MS_ID_LEN, &r) != 0)
        return;
    cJSON_AddStringToObject(o, "notification_id", r.notification_id);
    cJSON_AddStringToObject(o, "mailbox_id", r.mailbox_id);
    add_blob(o, "token_type", &r.token_type);
    add_token_key(o, "token_key", &r.token_data);
    cJSON_AddNumberToObject(o, "mailbox_expires_at_ms", (double)r.mailbox_expires_at_ms);
    cJSON_AddNumberToObject(o, "created_at_ms", (double)r.created_at_ms);
}

static cJSON *describe(const char *k, size_t kl, const char *v, size_t vl)
{
    cJSON *o = cJSON_CreateObject();
    uint64_t seq;
    int64_t exp;
    char id[MS_ID_LEN + 1];
    if (kl >= 4 + MS_ID_LEN && k[0] == 'm' && k[1] == '/') {
        char sub = k[3 + MS_ID_LEN];
        add_id(o, k + 2);
        ms_idem_t r;
        if (sub == 'r') {
            describe_record(o, v, vl);
        } else if (sub == 'i') {
            cJSON_AddStringToObject(o, "kind", "idempotency");
            /* m/<id>/i/<claim key id><hmac> */
            if (kl > 5 + MS_ID_LEN)
                cJSON_AddNumberToObject(o, "claim_key", (uint8_t)k[5 + MS_ID_LEN]);
            if (ms_idem_decode((const uint8_t *)v, vl, &r) == 0) {
                cJSON_AddNumberToObject(o, "method", r.method);
                add_blob(o, "correlation_id", &r.corr);
            }
        } else if (ms_key_parse_outref(k, kl, &seq) == 0) {
            cJSON_AddStringToObject(o, "kind", "outbox_ref");
            cJSON_AddNumberToObject(o, "seq", (double)seq);
        } else {
            cJSON_AddStringToObject(o, "kind", "unknown");
        }
    } else if (ms_key_parse_expiry(k, kl, &exp, id) == 0) {
        cJSON_AddStringToObject(o, "kind", "expiry");
        cJSON_AddStringToObject(o, "mailbox_id", id);
        cJSON_AddNumberToObject(o, "expires_ms", (double)exp);
    } else if (ms_key_parse_outbox(k, kl, &seq) == 0 && vl >= 1) {
        describe_outbox(o, seq, v, vl);
    } else {
        cJSON_AddStringToObject(o, "kind", "unknown");
        cJSON_AddNumberToObject(o, "key_len", (double)kl);
    }
    return o;
}

long ms_dump(const char *db_path, FILE *out, char *errbuf, size_t errcap)
{
    rocksdb_options_t *opts = rocksdb_options_create();
    char *err = NULL;
    rocksdb_t *db = rocksdb_open_for_read_only(opts, db_path, 0, &err);
    if (err) {
        snprintf(errbuf, errcap, "open %s: %s", db_path, err);
        rocksdb_free(err);
        rocksdb_options_destroy(opts);
        return -1;
    }
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator(db, ro);
    long n = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl), *v = rocksdb_iter_value(it, &vl);
        cJSON *o = describe(k, kl, v, vl);
        char *s = cJSON_PrintUnformatted(o);
        fprintf(out, "%s\n", s);
        cJSON_free(s);
        cJSON_Delete(o);
        n++;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    rocksdb_close(db);
    rocksdb_options_destroy(opts);
    return n;
}
