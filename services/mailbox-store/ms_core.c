#include "ms_core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cm_alloc.h"
#include "cm_corr.h"
#include "cm_time.h"
#include "cm_seal.h"
#include "cm_uuid.h"
#include "ms_engine.h"
#include "ms_record.h"

#define S(x) ((x) ? (x) : "")

struct ms_core {
    ms_engine_t *eng;             /* not owned */
    const cm_seal_ring_t *claims; /* claim_ring, or |own_claims| */
    const cm_seal_ring_t *tokens; /* token_ring, or |own_tokens| */
    cm_seal_ring_t *own_claims;   /* owned when no claim ring was given (wiped on del) */
    cm_seal_ring_t *own_tokens;   /* owned when no token ring was given (wiped on del) */
    int64_t max_ttl_s;
    int64_t (*now_ms)(void *);
    void *now_arg;
    void (*outbox_hook)(void *);
    void *outbox_arg;
};

const char *ms_err_name(ms_err_t e)
{
    switch (e) {
    case MS_OK:
        return "OK";
    case MS_ERR_INVALID:
        return "INVALID";
    case MS_ERR_NOT_FOUND:
        return "NOT_FOUND";
    case MS_ERR_EXISTS:
        return "EXISTS";
    case MS_ERR_DENIED:
        return "DENIED";
    case MS_ERR_PRECONDITION:
        return "PRECONDITION";
    case MS_ERR_UNAVAILABLE:
        return "UNAVAILABLE";
    case MS_ERR_RETRY:
        return "RETRY";
    case MS_ERR_CORRUPT:
        return "CORRUPT";
    case MS_ERR_INTERNAL:
        return "INTERNAL";
    }
    return "UNKNOWN";
}

static ms_err_t fail(ms_detail_t *d, ms_err_t e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static ms_err_t fail(ms_detail_t *d, ms_err_t e, const char *fmt, ...)
{
    if (d) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
        va_end(ap);
    }
    return e;
}

/* The message for an error the rules did not word themselves (storage). */
static ms_err_t storage_fail(ms_detail_t *d, ms_err_t e)
{
    if (e == MS_ERR_UNAVAILABLE)
        return fail(d, e, "storage unavailable");
    if (e == MS_ERR_CORRUPT)
        return fail(d, e, "stored data unreadable");
    return fail(d, e, "storage error (%s)", ms_err_name(e));
}

static int64_t realtime_ms(void *arg)
{
    (void)arg;
    return cm_time_wall_ms();
}

ms_err_t ms_core_new(const ms_core_opts_t *o, ms_core_t **out)
{
    if (!o->engine || (!o->claim_ring && (!o->claim_key || o->claim_key_len != CM_SEAL_KEY_LEN)))
        return MS_ERR_INVALID;
    ms_core_t *c = cm_xcalloc(1, sizeof(*c));
    c->eng = o->engine;
    if ((!o->claim_ring && cm_seal_ring_from_key(1, o->claim_key, &c->own_claims) != CM_SEAL_OK) ||
        (!o->token_ring && cm_seal_ring_from_key(1, NULL, &c->own_tokens) != CM_SEAL_OK)) {
        ms_core_del(c);
        return MS_ERR_INTERNAL;
    }
    c->claims = o->claim_ring ? o->claim_ring : c->own_claims;
    c->tokens = o->token_ring ? o->token_ring : c->own_tokens;
    c->max_ttl_s = o->max_ttl_s;
    c->now_ms = o->now_ms ? o->now_ms : realtime_ms;
    c->now_arg = o->now_arg;
    c->outbox_hook = o->outbox_hook;
    c->outbox_arg = o->outbox_arg;
    *out = c;
    return MS_OK;
}

void ms_core_del(ms_core_t *c)
{
    if (!c)
        return;
    cm_seal_ring_free(c->own_claims);
    cm_seal_ring_free(c->own_tokens);
    free(c);
}

ms_engine_t *ms_core_engine(ms_core_t *c)
{
    return c->eng;
}

int64_t ms_core_now_ms(ms_core_t *c)
{
    return c->now_ms(c->now_arg);
}

/* ---- the single paths of secrets into stored bytes ---- */

ms_err_t ms_core_claim_hash(ms_core_t *c, const char *claim, size_t len, uint8_t out[MS_HASH_LEN])
{
    return cm_seal_hash(c->claims, claim, len, out) == CM_SEAL_OK ? MS_OK : MS_ERR_INTERNAL;
}

int ms_core_claim_matches(ms_core_t *c, const char *claim, size_t len,
                          const uint8_t stored[MS_HASH_LEN])
{
    return cm_seal_hash_verify(c->claims, claim, len, stored) == CM_SEAL_OK;
}

ms_err_t ms_core_token_seal(ms_core_t *c, const char *mailbox_id, ms_blob_t plain, uint8_t **out,
                            size_t *len)
{
    *len = 0;
    if (plain.n == 0) {
        *out = cm_xmalloc(0);
        return MS_OK;
    }
    *out = cm_xmalloc(cm_seal_sealed_len(plain.n));
    if (cm_seal_encrypt(c->tokens, mailbox_id, strlen(mailbox_id), plain.p, plain.n, *out) !=
        CM_SEAL_OK) {
        free(*out);
        *out = NULL;
        return MS_ERR_INTERNAL;
    }
    *len = cm_seal_sealed_len(plain.n);
    return MS_OK;
}

ms_err_t ms_core_token_open(ms_core_t *c, const char *mailbox_id, ms_blob_t sealed, uint8_t **out,
                            size_t *len)
{
    *len = 0;
    *out = cm_xmalloc(sealed.n);
    if (sealed.n == 0)
        return MS_OK;
    /* Written in clear by a version before sealing: tokens are text, so their first byte is
     * never the (binary) seal version. Read as they are; sealed when next written. */
    if (sealed.p[0] != CM_SEAL_VERSION) {
        memcpy(*out, sealed.p, sealed.n);
        *len = sealed.n;
        return MS_OK;
    }
    cm_seal_err_t rc = cm_seal_decrypt(c->tokens, mailbox_id, strlen(mailbox_id), sealed.p,
                                       sealed.n, *out, len, NULL);
    if (rc != CM_SEAL_OK) {
        free(*out);
        *out = NULL;
        return MS_ERR_CORRUPT;
    }
    return MS_OK;
}

/* ---- input checks ---- */

static ms_blob_t blob_str(const char *s)
{
    ms_blob_t b = {(const uint8_t *)S(s), strlen(S(s))};
    return b;
}

static ms_err_t check_id(const char *in, char id[MS_ID_LEN + 1], ms_detail_t *d)
{
    in = S(in);
    if (!cm_uuid_is_v4(in, strlen(in)))
        return fail(d, MS_ERR_INVALID, "mailbox_id must be a UUID v4");
    cm_uuid_canonical(in, id);
    return MS_OK;
}

static ms_err_t check_claim(ms_core_t *c, const char *claim, uint8_t h[MS_HASH_LEN], ms_detail_t *d)
{
    size_t n = strlen(S(claim));
    if (n == 0)
        return fail(d, MS_ERR_INVALID, "device_claim is required");
    if (n > MS_MAX_CLAIM_LEN)
        return fail(d, MS_ERR_INVALID, "device_claim is too long");
    if (ms_core_claim_hash(c, claim, n, h) != MS_OK)
        return fail(d, MS_ERR_INTERNAL, "claim hashing failed");
    return MS_OK;
}

_Static_assert(CM_CORR_ID_MAX <= MS_MAX_CORR_LEN, "a valid correlation id fits a stored record");

/* Empty: the call is not idempotent. Otherwise the shared rule (cm_corr.h), which also keeps
 * every stored id within MS_MAX_CORR_LEN. */
static ms_err_t check_corr(const char *corr, ms_detail_t *d)
{
    if (*S(corr) && !cm_corr_id_valid(corr))
        return fail(d, MS_ERR_INVALID,
                    "correlation_id must be 1..%d visible ASCII characters (or empty)",
                    CM_CORR_ID_MAX);
    return MS_OK;
}

static ms_err_t check_payload_token(const ms_payload_t *p, const ms_token_t *t, ms_detail_t *d)
{
    if (!*S(p->type))
        return fail(d, MS_ERR_INVALID, "payload with a type is required");
    if (*S(t->type) && !*S(t->data))
        return fail(d, MS_ERR_INVALID, "notification token without data");
    return MS_OK;
}

/* ---- one operation: its inputs, and what one run of its transaction found ---- */

typedef struct {
    ms_core_t *c;
    char id[MS_ID_LEN + 1];
    const char *claim; /* the request's (borrowed) */
    size_t claim_len;
    uint8_t h_new[MS_HASH_LEN]; /* the claim's hash under the primary claim key */
    uint8_t method;
    const char *corr;
    const void *req; /* the method's request */
    ms_detail_t *detail;
    /* per run (reset by op_reset) */
    uint8_t h[MS_HASH_LEN]; /* the claim's hash as this mailbox knows it: its binding's, or
                             * |h_new| for a claim not bound (yet) */
    uint8_t *raw;           /* owned: the record blob |rec| points into */
    ms_record_t rec;
    uint8_t *idem_raw; /* owned: the idempotency blob |idem| points into */
    ms_idem_t idem;
    int dup; /* |idem| answers this request */
    int is_creator, is_receiver;
    int added;          /* outbox entries queued */
    uint8_t *tmp[4];    /* owned: sealed tokens of this run */
    int64_t expires_ms; /* Create: the new mailbox's expiry */
} op_t;

static void op_reset(op_t *op)
{
    free(op->raw);
    free(op->idem_raw);
    for (size_t i = 0; i < sizeof(op->tmp) / sizeof(op->tmp[0]); i++)
        free(op->tmp[i]);
    op->raw = op->idem_raw = NULL;
    memset(op->tmp, 0, sizeof(op->tmp));
    memset(&op->rec, 0, sizeof(op->rec));
    memset(&op->idem, 0, sizeof(op->idem));
    op->dup = op->is_creator = op->is_receiver = op->added = 0;
    memcpy(op->h, op->h_new, MS_HASH_LEN);
}

static uint8_t *op_keep(op_t *op, uint8_t *p)
{
    for (size_t i = 0; i < sizeof(op->tmp) / sizeof(op->tmp[0]); i++)
        if (!op->tmp[i])
            return op->tmp[i] = p;
    abort(); /* more than the fixed number of sealed tokens per run: a bug */
}

static ms_err_t op_init(op_t *op, ms_core_t *c, const char *id, const char *claim, const char *corr,
                        uint8_t method, const void *req, ms_detail_t *d)
{
    memset(op, 0, sizeof(*op));
    if (d)
        d->msg[0] = '\0'; /* op_run words storage errors only when the rules did not */
    op->c = c;
    op->method = method;
    op->corr = S(corr);
    op->req = req;
    op->detail = d;
    op->claim = S(claim);
    op->claim_len = strlen(op->claim);
    ms_err_t rc = check_id(id, op->id, d);
    if (rc == MS_OK)
        rc = check_claim(c, claim, op->h_new, d);
    if (rc == MS_OK)
        rc = check_corr(corr, d);
    return rc;
}

/* Loads the record into |op|: MS_OK, MS_ERR_NOT_FOUND (absent), or a storage error. */
static ms_err_t load_record(ms_txn_t *t, op_t *op)
{
    size_t len;
    ms_err_t rc = op->c->eng->ops->get_record(t, &op->raw, &len);
    if (rc != MS_OK)
        return rc;
    if (ms_record_decode(op->raw, len, &op->rec) != 0)
        return MS_ERR_CORRUPT;
    return MS_OK;
}

static int is_live(ms_core_t *c, const ms_record_t *r)
{
    return r->expires_ms > ms_core_now_ms(c);
}

/* The claim's idempotency record: under op->h, else (during a claim key rotation) under the
 * claim's hash with any other key of the ring. */
static ms_err_t idem_get(ms_txn_t *t, op_t *op, size_t *len)
{
    ms_err_t rc = op->c->eng->ops->get_idem(t, op->h, MS_HASH_LEN, &op->idem_raw, len);
    uint8_t ids[255], h[MS_HASH_LEN];
    size_t n = rc == MS_ERR_NOT_FOUND ? cm_seal_ring_ids(op->c->claims, ids) : 0;
    for (size_t i = 0; i < n && rc == MS_ERR_NOT_FOUND; i++) {
        if (ids[i] == op->h[0])
            continue;
        if (cm_seal_hash_with(op->c->claims, ids[i], op->claim, op->claim_len, h) != CM_SEAL_OK)
            return MS_ERR_INTERNAL;
        rc = op->c->eng->ops->get_idem(t, h, MS_HASH_LEN, &op->idem_raw, len);
    }
    return rc;
}

/* Sets op->dup when the claim's idempotency record answers this request. */
static ms_err_t idem_check(ms_txn_t *t, op_t *op)
{
    size_t len, cl = strlen(op->corr);
    if (cl == 0)
        return MS_OK;
    ms_err_t rc = idem_get(t, op, &len);
    if (rc == MS_ERR_NOT_FOUND)
        return MS_OK;
    if (rc != MS_OK)
        return rc;
    /* An unreadable record (e.g. of an older format) only means "no duplicate". */
    if (ms_idem_decode(op->idem_raw, len, &op->idem) == 0 && op->idem.method == op->method &&
        op->idem.corr.n == cl && memcmp(op->idem.corr.p, op->corr, cl) == 0)
        op->dup = 1;
    return MS_OK;
}

/* Common start of the operations on an existing mailbox: a live record, duplicates served
 * (op->dup), the caller's role. */
static ms_err_t op_begin(ms_txn_t *t, op_t *op)
{
    op_reset(op);
    ms_err_t rc = load_record(t, op);
    if (rc == MS_ERR_NOT_FOUND || (rc == MS_OK && !is_live(op->c, &op->rec)))
        return fail(op->detail, MS_ERR_NOT_FOUND, "mailbox not found");
    if (rc != MS_OK)
        return rc;
    /* A binding made under an older claim key still matches; the claim's idempotency record
     * sits under the binding's hash. */
    op->is_creator = ms_core_claim_matches(op->c, op->claim, op->claim_len, op->rec.creator);
    op->is_receiver = !op->is_creator && op->rec.has_receiver &&
                      ms_core_claim_matches(op->c, op->claim, op->claim_len, op->rec.receiver);
    if (op->is_creator)
        memcpy(op->h, op->rec.creator, MS_HASH_LEN);
    else if (op->is_receiver)
        memcpy(op->h, op->rec.receiver, MS_HASH_LEN);
    return idem_check(t, op);
}

static ms_err_t require(op_t *op, uint8_t right, const char *what)
{
    if (!op->is_creator && !op->is_receiver)
        return fail(op->detail, MS_ERR_DENIED, "claim is not bound to this mailbox");
    if (!(op->rec.rights & right))
        return fail(op->detail, MS_ERR_DENIED, "mailbox does not grant %s access", what);
    return MS_OK;
}

static ms_err_t put_record(ms_txn_t *t, op_t *op)
{
    uint8_t *v;
    size_t vl;
    ms_record_encode(&op->rec, &v, &vl);
    ms_err_t rc = op->c->eng->ops->put_record(t, op->rec.expires_ms, v, vl);
    free(v);
    return rc;
}

/* Stores |r| (method and correlation id filled in here) as the claim's last request. */
static ms_err_t put_idem(ms_txn_t *t, op_t *op, ms_idem_t *r)
{
    if (!*op->corr)
        return MS_OK;
    r->method = op->method;
    r->corr = blob_str(op->corr);
    uint8_t *v;
    size_t vl;
    if (ms_idem_encode(r, &v, &vl) != 0)
        return MS_ERR_INTERNAL; /* the correlation id's length was checked on entry */
    ms_err_t rc = op->c->eng->ops->put_idem(t, op->h, MS_HASH_LEN, v, vl);
    free(v);
    return rc;
}

/* Seals |plain| for storage; the sealed bytes live as long as this run of |op|. */
static ms_err_t seal(op_t *op, ms_blob_t plain, ms_blob_t *sealed)
{
    uint8_t *p;
    ms_err_t rc = ms_core_token_seal(op->c, op->id, plain, &p, &sealed->n);
    if (rc != MS_OK)
        return rc;
    sealed->p = op_keep(op, p);
    return MS_OK;
}

/* Queues an outbox entry of |kind| for this mailbox; a notification (or a cancel for one
 * party) names the token sealed in the record as |tok_type| / |tok_data|, sealed afresh. A
 * cancel without a token cancels the whole mailbox. */
static ms_err_t add_outbox(ms_txn_t *t, op_t *op, ms_outbox_kind_t kind, const ms_blob_t *tok_type,
                           const ms_blob_t *tok_data)
{
    ms_outbox_rec_t r;
    memset(&r, 0, sizeof(r));
    r.kind = (uint8_t)kind;
    if (cm_uuid_v4(r.notification_id) != 0)
        return MS_ERR_INTERNAL;
    memcpy(r.mailbox_id, op->id, MS_ID_LEN + 1);
    r.mailbox_expires_at_ms = op->rec.expires_ms;
    r.created_at_ms = ms_core_now_ms(op->c);
    if (tok_data) {
        uint8_t *plain;
        size_t pl;
        ms_err_t rc = ms_core_token_open(op->c, op->id, *tok_data, &plain, &pl);
        if (rc != MS_OK)
            return rc;
        ms_blob_t pb = {plain, pl};
        rc = seal(op, pb, &r.token_data);
        free(plain);
        if (rc != MS_OK)
            return rc;
        r.token_type = *tok_type;
    }
    uint8_t *v;
    size_t vl;
    ms_outbox_rec_encode(&r, &v, &vl);
    ms_err_t rc = op->c->eng->ops->add_outbox(t, kind, v, vl);
    free(v);
    if (rc == MS_OK)
        op->added++;
    return rc;
}

/* Runs |fn| over |op| as one transaction on its mailbox; wakes the forwarder after a commit
 * that added outbox entries. */
static ms_err_t op_run(op_t *op, ms_txn_fn fn)
{
    ms_err_t rc = op->c->eng->ops->run(op->c->eng, op->id, fn, op);
    if (rc == MS_OK && op->added > 0 && !op->dup && op->c->outbox_hook)
        op->c->outbox_hook(op->c->outbox_arg);
    if (rc == MS_ERR_RETRY)
        rc = MS_ERR_UNAVAILABLE; /* an engine breaking its contract: still never RETRY */
    if (rc != MS_OK && op->detail && !op->detail->msg[0])
        storage_fail(op->detail, rc);
    return rc;
}

/* ---- Create ---- */

static ms_err_t create_fn(ms_txn_t *t, void *arg)
{
    op_t *op = arg;
    const ms_create_req_t *req = op->req;
    op_reset(op);
    ms_err_t rc = load_record(t, op);
    if (rc == MS_OK && is_live(op->c, &op->rec)) {
        rc = idem_check(t, op);
        if (rc != MS_OK || op->dup)
            return rc;
        return fail(op->detail, MS_ERR_EXISTS, "mailbox already exists");
    }
    /* An expired mailbox not yet swept: its rows go in the same transaction as the new one. */
    if (rc == MS_OK)
        rc = op->c->eng->ops->delete_mailbox(t);
    else if (rc == MS_ERR_NOT_FOUND)
        rc = MS_OK;
    if (rc != MS_OK)
        return rc;
    ms_record_t *r = &op->rec;
    memset(r, 0, sizeof(*r));
    int64_t now = ms_core_now_ms(op->c);
    r->created_ms = now;
    r->expires_ms = op->expires_ms = now + req->ttl_seconds * 1000;
    ms_rights_parse(S(req->access_rights), &r->rights); /* checked on entry */
    memcpy(r->creator, op->h, MS_HASH_LEN);
    if (*S(req->token.type)) {
        r->creator_tok_type = blob_str(req->token.type);
        rc = seal(op, blob_str(req->token.data), &r->creator_tok_data);
        if (rc != MS_OK)
            return rc;
    }
    r->title = blob_str(req->display.title);
    r->description = blob_str(req->display.description);
    r->image_url = blob_str(req->display.image_url);
    r->payload_type = blob_str(req->payload.type);
    r->payload_data = req->payload.data;
    rc = put_record(t, op);
    if (rc != MS_OK)
        return rc;
    ms_idem_t idem = {.expires_at_ms = r->expires_ms};
    return put_idem(t, op, &idem);
}

ms_err_t ms_core_create(ms_core_t *c, const ms_create_req_t *req, ms_create_resp_t *resp,
                        ms_detail_t *d)
{
    op_t op;
    uint8_t rights;
    ms_err_t rc = op_init(&op, c, req->mailbox_id, req->device_claim, req->correlation_id,
                          MS_METHOD_CREATE, req, d);
    if (rc != MS_OK)
        return rc;
    if (req->ttl_seconds < 1 || req->ttl_seconds > c->max_ttl_s)
        return fail(d, MS_ERR_INVALID, "ttl_seconds must be 1..%lld", (long long)c->max_ttl_s);
    if (ms_rights_parse(S(req->access_rights), &rights) != 0)
        return fail(d, MS_ERR_INVALID, "access_rights must be a non-empty subset of \"RWD\"");
    rc = check_payload_token(&req->payload, &req->token, d);
    if (rc != MS_OK)
        return rc;
    rc = op_run(&op, create_fn);
    if (rc == MS_OK) {
        memcpy(resp->mailbox_id, op.id, MS_ID_LEN + 1);
        resp->expires_at_ms = op.dup ? op.idem.expires_at_ms : op.expires_ms;
        resp->duplicate = op.dup;
    }
    op_reset(&op);
    return rc;
}

/* ---- reads ---- */

/* Copies NUL-terminated strings and bytes into one block that a response owns. */
typedef struct {
    uint8_t *mem, *p;
} pack_t;

static void pack_init(pack_t *pk, const ms_blob_t *const *b, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += b[i]->n + 1;
    pk->mem = pk->p = cm_xmalloc(total);
}

static const char *pack_str(pack_t *pk, ms_blob_t b)
{
    char *s = (char *)pk->p;
    if (b.n)
        memcpy(s, b.p, b.n);
    s[b.n] = '\0';
    pk->p += b.n + 1;
    return s;
}

static void fill_display(ms_display_t *out, pack_t *pk, const ms_blob_t *title,
                         const ms_blob_t *desc, const ms_blob_t *url)
{
    out->title = pack_str(pk, *title);
    out->description = pack_str(pk, *desc);
    out->image_url = pack_str(pk, *url);
}

ms_err_t ms_core_read_display(ms_core_t *c, const ms_read_display_req_t *req,
                              ms_read_display_resp_t *resp, ms_detail_t *d)
{
    char id[MS_ID_LEN + 1];
    ms_err_t rc = check_id(req->mailbox_id, id, d);
    if (rc != MS_OK)
        return rc;
    uint8_t *raw = NULL;
    size_t len;
    ms_record_t r;
    rc = c->eng->ops->read_record(c->eng, id, &raw, &len);
    if (rc == MS_OK && ms_record_decode(raw, len, &r) != 0)
        rc = MS_ERR_CORRUPT;
    if (rc == MS_ERR_NOT_FOUND || (rc == MS_OK && !is_live(c, &r))) {
        free(raw);
        return fail(d, MS_ERR_NOT_FOUND, "mailbox not found");
    }
    if (rc != MS_OK) {
        free(raw);
        return storage_fail(d, rc);
    }
    const ms_blob_t *parts[] = {&r.title, &r.description, &r.image_url};
    pack_t pk;
    pack_init(&pk, parts, 3);
    fill_display(&resp->display, &pk, &r.title, &r.description, &r.image_url);
    resp->expires_at_ms = r.expires_ms;
    resp->mem = pk.mem;
    free(raw);
    return MS_OK;
}

void ms_read_display_resp_free(ms_read_display_resp_t *r)
{
    free(r->mem);
    r->mem = NULL;
}

static ms_err_t read_secure_fn(ms_txn_t *t, void *arg)
{
    op_t *op = arg;
    ms_err_t rc = op_begin(t, op);
    if (rc != MS_OK || op->dup)
        return rc;
    int bind = 0;
    if (!op->is_creator && !op->is_receiver) {
        if (op->rec.has_receiver)
            return fail(op->detail, MS_ERR_DENIED, "claim is not bound to this mailbox");
        bind = 1;
    }
    if (!(op->rec.rights & MS_RIGHT_R))
        return fail(op->detail, MS_ERR_DENIED, "mailbox does not grant read access");
    if (bind) {
        op->rec.has_receiver = 1;
        memcpy(op->rec.receiver, op->h, MS_HASH_LEN);
        rc = put_record(t, op);
        if (rc != MS_OK)
            return rc;
    }
    ms_idem_t idem = {.expires_at_ms = op->rec.expires_ms,
                      .title = op->rec.title,
                      .description = op->rec.description,
                      .image_url = op->rec.image_url,
                      .payload_type = op->rec.payload_type,
                      .payload_data = op->rec.payload_data};
    return put_idem(t, op, &idem);
}

ms_err_t ms_core_read_secure(ms_core_t *c, const ms_read_secure_req_t *req,
                             ms_read_secure_resp_t *resp, ms_detail_t *d)
{
    op_t op;
    ms_err_t rc = op_init(&op, c, req->mailbox_id, req->device_claim, req->correlation_id,
                          MS_METHOD_READ_SECURE, req, d);
    if (rc == MS_OK)
        rc = op_run(&op, read_secure_fn);
    if (rc == MS_OK) {
        /* A duplicate answers what the first request saw, the record may have changed since. */
        const ms_idem_t *i = &op.idem;
        const ms_record_t *r = &op.rec;
        const ms_blob_t *parts[] = {
            op.dup ? &i->title : &r->title, op.dup ? &i->description : &r->description,
            op.dup ? &i->image_url : &r->image_url, op.dup ? &i->payload_type : &r->payload_type,
            op.dup ? &i->payload_data : &r->payload_data};
        pack_t pk;
        pack_init(&pk, parts, 5);
        fill_display(&resp->display, &pk, parts[0], parts[1], parts[2]);
        resp->payload.type = pack_str(&pk, *parts[3]);
        resp->payload.data.p = pk.p;
        resp->payload.data.n = parts[4]->n;
        pack_str(&pk, *parts[4]);
        resp->expires_at_ms = op.dup ? i->expires_at_ms : r->expires_ms;
        resp->duplicate = op.dup;
        resp->mem = pk.mem;
    }
    op_reset(&op);
    return rc;
}

void ms_read_secure_resp_free(ms_read_secure_resp_t *r)
{
    free(r->mem);
    r->mem = NULL;
}

/* ---- Update, Delete, Relinquish ---- */

static ms_err_t update_fn(ms_txn_t *t, void *arg)
{
    op_t *op = arg;
    const ms_update_req_t *req = op->req;
    ms_err_t rc = op_begin(t, op);
    if (rc != MS_OK || op->dup)
        return rc;
    rc = require(op, MS_RIGHT_W, "write");
    if (rc != MS_OK)
        return rc;
    ms_record_t *r = &op->rec;
    r->payload_type = blob_str(req->payload.type);
    r->payload_data = req->payload.data;
    if (*S(req->token.type)) {
        ms_blob_t *type = op->is_creator ? &r->creator_tok_type : &r->receiver_tok_type;
        ms_blob_t *data = op->is_creator ? &r->creator_tok_data : &r->receiver_tok_data;
        *type = blob_str(req->token.type);
        rc = seal(op, blob_str(req->token.data), data);
        if (rc != MS_OK)
            return rc;
    }
    rc = put_record(t, op);
    if (rc != MS_OK)
        return rc;
    /* The other party learns of the update through its own token, in the same transaction. */
    const ms_blob_t *ot = op->is_creator ? &r->receiver_tok_type : &r->creator_tok_type;
    const ms_blob_t *od = op->is_creator ? &r->receiver_tok_data : &r->creator_tok_data;
    int other_bound = op->is_creator ? r->has_receiver : 1;
    if (other_bound && ot->n > 0 && od->n > 0) {
        rc = add_outbox(t, op, MS_OUTBOX_NOTIFY, ot, od);
        if (rc != MS_OK)
            return rc;
    }
    ms_idem_t idem = {.expires_at_ms = 0};
    return put_idem(t, op, &idem);
}

ms_err_t ms_core_update(ms_core_t *c, const ms_update_req_t *req, ms_ack_resp_t *resp,
                        ms_detail_t *d)
{
    op_t op;
    ms_err_t rc = check_payload_token(&req->payload, &req->token, d);
    if (rc == MS_OK)
        rc = op_init(&op, c, req->mailbox_id, req->device_claim, req->correlation_id,
                     MS_METHOD_UPDATE, req, d);
    if (rc != MS_OK)
        return rc;
    rc = op_run(&op, update_fn);
    if (rc == MS_OK)
        resp->duplicate = op.dup;
    op_reset(&op);
    return rc;
}

static ms_err_t delete_fn(ms_txn_t *t, void *arg)
{
    op_t *op = arg;
    ms_err_t rc = op_begin(t, op);
    if (rc != MS_OK || op->dup)
        return rc;
    rc = require(op, MS_RIGHT_D, "delete");
    if (rc == MS_OK)
        rc = op->c->eng->ops->delete_mailbox(t);
    /* push-dispatch drops what it already queued for this mailbox. */
    if (rc == MS_OK)
        rc = add_outbox(t, op, MS_OUTBOX_CANCEL, NULL, NULL);
    return rc;
}

static ms_err_t relinquish_fn(ms_txn_t *t, void *arg)
{
    op_t *op = arg;
    ms_err_t rc = op_begin(t, op);
    if (rc != MS_OK || op->dup)
        return rc;
    if (op->is_creator)
        return fail(op->detail, MS_ERR_PRECONDITION, "the creator cannot relinquish its mailbox");
    if (!op->is_receiver)
        return fail(op->detail, MS_ERR_DENIED, "claim is not bound to this mailbox");
    /* The receiver loses what is still on its way to its token: pending notifications in
     * this outbox are skipped by the forwarder when it meets this marker after them, and
     * push-dispatch drops what it already queued for the token (CancelRecipient). */
    if (op->rec.receiver_tok_type.n > 0 && op->rec.receiver_tok_data.n > 0) {
        rc = add_outbox(t, op, MS_OUTBOX_CANCEL, &op->rec.receiver_tok_type,
                        &op->rec.receiver_tok_data);
        if (rc != MS_OK)
            return rc;
    }
    op->rec.has_receiver = 0;
    memset(op->rec.receiver, 0, MS_HASH_LEN);
    memset(&op->rec.receiver_tok_type, 0, sizeof(ms_blob_t));
    memset(&op->rec.receiver_tok_data, 0, sizeof(ms_blob_t));
    rc = put_record(t, op);
    if (rc != MS_OK)
        return rc;
    ms_idem_t idem = {.expires_at_ms = 0};
    return put_idem(t, op, &idem);
}

static ms_err_t claim_op(ms_core_t *c, const ms_claim_req_t *req, uint8_t method, ms_txn_fn fn,
                         ms_ack_resp_t *resp, ms_detail_t *d)
{
    op_t op;
    ms_err_t rc =
        op_init(&op, c, req->mailbox_id, req->device_claim, req->correlation_id, method, req, d);
    if (rc != MS_OK)
        return rc;
    rc = op_run(&op, fn);
    if (rc == MS_OK)
        resp->duplicate = op.dup;
    op_reset(&op);
    return rc;
}

ms_err_t ms_core_delete(ms_core_t *c, const ms_delete_req_t *req, ms_ack_resp_t *resp,
                        ms_detail_t *d)
{
    return claim_op(c, req, MS_METHOD_DELETE, delete_fn, resp, d);
}

ms_err_t ms_core_relinquish(ms_core_t *c, const ms_relinquish_req_t *req, ms_ack_resp_t *resp,
                            ms_detail_t *d)
{
    return claim_op(c, req, MS_METHOD_RELINQUISH, relinquish_fn, resp, d);
}

/* ---- sweeper and outbox ---- */

ms_err_t ms_core_sweep(ms_core_t *c, size_t batch, size_t *deleted, int *more)
{
    return c->eng->ops->sweep(c->eng, ms_core_now_ms(c), batch, deleted, more);
}

static char *dupz(ms_blob_t b)
{
    char *s = cm_xmalloc(b.n + 1);
    if (b.n)
        memcpy(s, b.p, b.n);
    s[b.n] = '\0';
    return s;
}

ms_err_t ms_core_outbox_decode(ms_core_t *c, const ms_outbox_entry_t *e, ms_notification_t *out)
{
    memset(out, 0, sizeof(*out));
    ms_outbox_rec_t r;
    if (ms_outbox_rec_decode(e->blob, e->len, &r) != 0)
        return MS_ERR_CORRUPT;
    out->kind = (ms_outbox_kind_t)r.kind;
    memcpy(out->notification_id, r.notification_id, sizeof(out->notification_id));
    memcpy(out->mailbox_id, r.mailbox_id, sizeof(out->mailbox_id));
    out->mailbox_expires_at_ms = r.mailbox_expires_at_ms;
    out->created_at_ms = r.created_at_ms;
    uint8_t *plain;
    size_t pl;
    ms_err_t rc = ms_core_token_open(c, r.mailbox_id, r.token_data, &plain, &pl);
    if (rc != MS_OK)
        return rc;
    ms_blob_t pb = {plain, pl};
    out->token_type = dupz(r.token_type);
    out->token_data = dupz(pb);
    free(plain);
    return MS_OK;
}

void ms_notification_free(ms_notification_t *n)
{
    free(n->token_type);
    free(n->token_data);
    n->token_type = n->token_data = NULL;
}
