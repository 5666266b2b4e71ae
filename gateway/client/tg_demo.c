/* `tigress demo`: the stateful digital car key exchange of the sample implementation between
 * two simulated devices (owner and friend), each with its own device claim, through a real
 * relay: KeyCreationRequest -> KeySigningRequest -> KeyImportRequest as opaque blobs, every
 * step printed, ending with the mailbox deleted. The devices live in this process only: no
 * state files, and the Secret is never printed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cm_uuid.h"
#include "tg_cmd.h"
#include "tg_io.h"

typedef struct {
    const char *name;
    char claim[CM_UUID_STRLEN + 1];
    char seen[65]; /* digest of the last payload this device read or wrote */
} device_t;

/* The shared transfer: what both devices know once the share URL went from one to the other. */
typedef struct {
    tc_client_t *c;
    tc_payload_type_t type;
    uint8_t secret[TC_SECRET_MAX];
    size_t secret_len;
    char api_url[TC_URL_MAX];
    int step;
} demo_t;

static void say(demo_t *d, const device_t *dev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(demo_t *d, const device_t *dev, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%2d. %-8s ", ++d->step, dev ? dev->name : "");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
}

/* An opaque blob standing in for a CCC message: its name, then random bytes. */
static uint8_t *make_blob(const char *label, size_t n, size_t *len)
{
    size_t ll = strlen(label);
    uint8_t *b = malloc(ll + 1 + n);
    if (!b || RAND_bytes(b + ll + 1, (int)n) != 1) {
        free(b);
        return NULL;
    }
    memcpy(b, label, ll);
    b[ll] = ':';
    *len = ll + 1 + n;
    return b;
}

static void short_digest(const uint8_t *p, size_t n, char out[17])
{
    char full[65];
    tg_sha256_hex(p, n, full);
    snprintf(out, 17, "%.16s", full);
}

/* Seals |blob| and writes it: CreateMailbox when |create| (the owner), else UpdateMailbox. */
static tc_err_t put_blob(demo_t *d, device_t *dev, const uint8_t *blob, size_t len,
                         const char *relay, tc_created_t *created)
{
    uint8_t *sealed = NULL;
    size_t sl = 0;
    tc_err_t e = tc_seal(d->type, d->secret, d->secret_len, blob, len, &sealed, &sl);
    if (e != TC_OK)
        return e;
    tg_sha256_hex(sealed, sl, dev->seen);
    if (created) {
        tc_create_t in = {.type = d->type,
                          .sealed = sealed,
                          .sealed_len = sl,
                          .title = "Car Key",
                          .description = "You have been invited to add a shared car key (demo)",
                          .access_rights = "RWD",
                          .ttl_seconds = 600};
        e = tc_create(d->c, relay, dev->claim, &in, created);
    } else {
        e = tc_update(d->c, d->api_url, dev->claim, d->type, sealed, sl, TG_POLL_TOKEN_TYPE,
                      TG_POLL_TOKEN_DATA, NULL);
    }
    tc_free(sealed, sl);
    return e;
}

/* Reads until the mailbox holds something |dev| has not seen (what a push would announce),
 * opens it and checks it is |want|. */
static tc_err_t get_blob(demo_t *d, device_t *dev, const uint8_t *want, size_t want_len)
{
    for (int polls = 0;; polls++) {
        tc_content_t ct;
        tc_err_t e = tc_read(d->c, d->api_url, dev->claim, &ct);
        if (e != TC_OK)
            return e;
        char dg[65];
        tg_sha256_hex(ct.sealed, ct.sealed_len, dg);
        if (strcmp(dg, dev->seen) != 0) {
            uint8_t *pt = NULL;
            size_t pl = 0;
            e = tc_open(ct.type, d->secret, d->secret_len, ct.sealed, ct.sealed_len, NULL, 0, &pt,
                        &pl);
            if (e == TC_OK && (pl != want_len || memcmp(pt, want, pl) != 0))
                e = TC_ERR_INTEGRITY;
            memcpy(dev->seen, dg, sizeof(dg));
            tc_free(pt, pl);
            tc_content_free(&ct);
            return e;
        }
        tc_content_free(&ct);
        if (polls >= 30)
            return TC_ERR_TIMEOUT;
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Steps 1-5: the owner creates the mailbox, the friend previews and reads it, a stranger is
 * refused. */
static int first_half(demo_t *d, device_t *owner, device_t *friend, const char *relay,
                      const uint8_t *kcr, size_t kcr_len)
{
    char dg[17];
    tc_created_t cr;
    short_digest(kcr, kcr_len, dg);
    say(d, owner,
        "KeyCreationRequest: %zu opaque bytes (sha256 %s...), sealed with a fresh %s "
        "Secret",
        kcr_len, dg, tc_payload_type_name(d->type));
    tc_err_t e = put_blob(d, owner, kcr, kcr_len, relay, &cr);
    if (e != TC_OK)
        return tg_fail(e, d->c, "CreateMailbox");
    snprintf(d->api_url, sizeof(d->api_url), "%s", cr.url_link);
    say(d, owner, "CreateMailbox (RWD, 10 min): share URL %s#<Secret: %zu bytes, not shown>",
        cr.url_link, d->secret_len);
    tc_preview_t p;
    if ((e = tc_preview(d->c, d->api_url, &p)) != TC_OK)
        return tg_fail(e, d->c, "ReadDisplayInformation");
    say(d, friend, "link preview (GET, no claim): \"%s\"", p.title ? p.title : "");
    tc_preview_free(&p);
    if ((e = get_blob(d, friend, kcr, kcr_len)) != TC_OK)
        return tg_fail(e, d->c, "ReadSecureContent");
    say(d, friend,
        "ReadSecureContent: bound as the receiver; tag verified; KeyCreationRequest "
        "(sha256 %s...) extracted",
        dg);
    tc_content_t ct;
    char stranger[CM_UUID_STRLEN + 1];
    if (cm_uuid_v4(stranger) != 0)
        return tg_fail(TC_ERR_CRYPTO, NULL, NULL);
    e = tc_read(d->c, d->api_url, stranger, &ct);
    tc_content_free(&ct);
    if (e != TC_ERR_UNAUTHORIZED) {
        tg_err("a third device was not refused: %s", tc_err_text(e));
        return TG_EXIT_FAIL;
    }
    printf("    %-8s a third device tries to read: refused (%ld), the mailbox is bound to two\n",
           "", tc_client_last_call(d->c)->status);
    return 0;
}

/* Steps 6-11: KeySigningRequest up, KeyImportRequest down, the friend deletes the mailbox. */
static int second_half(demo_t *d, device_t *owner, device_t *friend)
{
    size_t ksr_len = 0, kir_len = 0;
    uint8_t *ksr = make_blob("KeySigningRequest", 120, &ksr_len);
    uint8_t *kir = make_blob("KeyImportRequest", 480, &kir_len);
    char dg[17];
    int rc = TG_EXIT_FAIL;
    tc_err_t e;
    if (!ksr || !kir)
        goto done;
    short_digest(ksr, ksr_len, dg);
    if ((e = put_blob(d, friend, ksr, ksr_len, NULL, NULL)) != TC_OK) {
        rc = tg_fail(e, d->c, "UpdateMailbox");
        goto done;
    }
    say(d, friend, "KeySigningRequest: %zu bytes (sha256 %s...) sealed -> UpdateMailbox", ksr_len,
        dg);
    if ((e = get_blob(d, owner, ksr, ksr_len)) != TC_OK) {
        rc = tg_fail(e, d->c, "ReadSecureContent");
        goto done;
    }
    say(d, owner,
        "ReadSecureContent (a push would wake it; here it polls): KeySigningRequest "
        "verified");
    short_digest(kir, kir_len, dg);
    if ((e = put_blob(d, owner, kir, kir_len, NULL, NULL)) != TC_OK) {
        rc = tg_fail(e, d->c, "UpdateMailbox");
        goto done;
    }
    say(d, owner,
        "signs the friend's key: KeyImportRequest %zu bytes (sha256 %s...) -> "
        "UpdateMailbox",
        kir_len, dg);
    if ((e = get_blob(d, friend, kir, kir_len)) != TC_OK) {
        rc = tg_fail(e, d->c, "ReadSecureContent");
        goto done;
    }
    say(d, friend, "ReadSecureContent: KeyImportRequest verified; the key is provisioned");
    if ((e = tc_delete(d->c, d->api_url, friend->claim)) != TC_OK) {
        rc = tg_fail(e, d->c, "DeleteMailbox");
        goto done;
    }
    say(d, friend, "DeleteMailbox: done");
    tc_content_t ct;
    e = tc_read(d->c, d->api_url, owner->claim, &ct);
    tc_content_free(&ct);
    if (e != TC_ERR_NOT_FOUND) {
        tg_err("the mailbox is still there after DeleteMailbox: %s", tc_err_text(e));
        goto done;
    }
    say(d, owner, "ReadSecureContent: 404, the mailbox is gone");
    rc = TG_EXIT_OK;
done:
    tc_free(ksr, ksr_len);
    tc_free(kir, kir_len);
    return rc;
}

static const char demo_usage[] =
    "usage: tigress demo --relay URL [--type AES128]\n"
    "Runs the stateful car key exchange of the Tigress sample implementation between two\n"
    "simulated devices (owner and friend) through the relay: KeyCreationRequest ->\n"
    "KeySigningRequest -> KeyImportRequest as opaque blobs, each step printed, ending with the\n"
    "mailbox deleted. Exit status 0 only when every step verified. No state is written.\n"
    "  --relay URL   the relay (env TIGRESS_RELAY)\n"
    "  --type NAME   AES128 (default), AES256, AEAD_AES_128_GCM, AEAD_AES_256_GCM\n";

enum { O_RELAY = TG_OPT_FIRST_OWN + 60, O_TYPE };

typedef struct {
    const char *relay;
    tc_payload_type_t type;
} demo_opts_t;

static int demo_opt(void *ctx, int opt, const char *arg)
{
    demo_opts_t *o = ctx;
    if (opt == O_RELAY) {
        o->relay = arg;
        return 0;
    }
    if (opt == O_TYPE && tc_payload_type_parse(arg, &o->type) == TC_OK)
        return 0;
    tg_err("--type wants AES128, AES256, AEAD_AES_128_GCM or AEAD_AES_256_GCM");
    return TG_EXIT_USAGE;
}

int tg_cmd_demo(int argc, char **argv)
{
    static const struct option lo[] = {{"relay", required_argument, NULL, O_RELAY},
                                       {"type", required_argument, NULL, O_TYPE},
                                       TG_COMMON_LONGOPTS};
    demo_opts_t o = {.type = TC_AES128};
    tg_common_t co = {0};
    char base[TC_URL_MAX];
    int rc = tg_parse_opts(argc, argv, "qh", lo, demo_usage, &co, demo_opt, &o);
    if (rc)
        return rc < 0 ? TG_EXIT_OK : rc;
    if ((rc = tg_want_args(argc, 0, 0, "no arguments")) != 0)
        return rc;
    if ((rc = tg_relay_base(o.relay, base)) != 0)
        return rc;
    demo_t d = {.type = o.type};
    device_t owner = {.name = "owner"}, friend = {.name = "friend"};
    size_t kcr_len = 0;
    uint8_t *kcr = make_blob("KeyCreationRequest", 200, &kcr_len);
    if (!kcr || !(d.c = tg_client(&co)) || cm_uuid_v4(owner.claim) != 0 ||
        cm_uuid_v4(friend.claim) != 0 || tc_secret_new(d.type, d.secret, &d.secret_len) != TC_OK) {
        rc = TG_EXIT_FAIL;
        goto done;
    }
    printf("Tigress car key demo against %s (two simulated devices, one claim each)\n", base);
    rc = first_half(&d, &owner, &friend, base, kcr, kcr_len);
    if (rc == 0)
        rc = second_half(&d, &owner, &friend);
    if (rc == 0)
        printf("demo complete: every payload verified, the mailbox is deleted\n");
done:
    OPENSSL_cleanse(d.secret, sizeof(d.secret));
    tc_free(kcr, kcr_len);
    tc_client_free(d.c);
    return rc;
}
