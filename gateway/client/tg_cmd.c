/* The commands of one device: send, receive, reply, wait, delete, relinquish, preview. */
#include "tg_cmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "cm_uuid.h"
#include "tg_io.h"
#include "tg_state.h"

const char tg_common_help[] =
    "Common options:\n"
    "  --state-dir DIR   this device's state (claims per mailbox; env TIGRESS_STATE_DIR;\n"
    "                    default $XDG_CONFIG_HOME/tigress or ~/.config/tigress)\n"
    "  --cacert FILE     trust these PEM certificates for https (env TIGRESS_CACERT;\n"
    "                    default: the system store)\n"
    "  --http1.1         HTTP/1.1 only (default: HTTP/2 over https by ALPN, HTTP/1.1 over\n"
    "                    http)\n"
    "  --http2           HTTP/2 also over plain http (prior knowledge)\n"
    "  --timeout SECS    per request attempt (default 15); failed attempts are retried with\n"
    "                    the same Mailbox-Correlation-ID\n"
    "  -q, --quiet       no notices; progress goes to stderr only when it is a terminal\n"
    "  -h, --help        this help\n";

int tg_common_opt(tg_common_t *co, int opt, const char *arg)
{
    long v;
    char *end;
    switch (opt) {
    case TG_OPT_STATE_DIR:
        snprintf(co->state_dir, sizeof(co->state_dir), "%s", arg);
        return 1;
    case TG_OPT_CACERT:
        co->ca_file = arg;
        return 1;
    case TG_OPT_HTTP1:
        co->http = TC_HTTP_1_1;
        return 1;
    case TG_OPT_HTTP2:
        co->http = TC_HTTP_2;
        return 1;
    case TG_OPT_TIMEOUT:
        v = strtol(arg, &end, 10);
        if (end == arg || *end || v <= 0 || v > 3600) {
            tg_err("--timeout wants seconds (1..3600)");
            return -1;
        }
        co->timeout_ms = v * 1000;
        return 1;
    case 'q':
        tg_quiet = 1;
        return 1;
    default:
        return 0;
    }
}

int tg_common_finish(tg_common_t *co)
{
    char given[4096];
    snprintf(given, sizeof(given), "%s", co->state_dir);
    if (tg_state_dir(given, co->state_dir, sizeof(co->state_dir)) != 0)
        return TG_EXIT_USAGE;
    if (!co->ca_file && getenv("TIGRESS_CACERT") && *getenv("TIGRESS_CACERT"))
        co->ca_file = getenv("TIGRESS_CACERT");
    return 0;
}

tc_client_t *tg_client(const tg_common_t *co)
{
    tc_options_t o = {.ca_file = co->ca_file, .http = co->http, .timeout_ms = co->timeout_ms};
    tc_client_t *c = NULL;
    tc_err_t e = tc_client_new(&o, &c);
    if (e != TC_OK)
        tg_fail(e, NULL, "client");
    return c;
}

int tg_parse_token(const char *arg, const char **type, const char **data, char *buf, size_t cap)
{
    const char *colon = strchr(arg, ':');
    if (!colon || colon == arg || !colon[1] || (size_t)(colon - arg) >= cap) {
        tg_err("--notify wants TYPE:TOKEN (e.g. com.apple.apns:<hex>)");
        return -1;
    }
    snprintf(buf, cap, "%.*s", (int)(colon - arg), arg);
    *type = buf;
    *data = colon + 1;
    return 0;
}

int tg_parse_opts(int argc, char **argv, const char *shortopts, const struct option *longopts,
                  const char *usage, tg_common_t *co, tg_own_opt_fn own, void *ctx)
{
    char so[32];
    snprintf(so, sizeof(so), ":%s", shortopts); /* ':' tells a missing value from an unknown */
    optind = 0;
    opterr = 0; /* one error line, ours */
    int opt;
    while ((opt = getopt_long(argc, argv, so, longopts, NULL)) != -1) {
        if (opt == 'h') {
            printf("%s\n%s", usage, tg_common_help);
            return -1;
        }
        if (opt == '?' || opt == ':') {
            tg_err("%s %s (see --help)", opt == ':' ? "missing value for" : "unknown option",
                   argv[optind - 1]);
            return TG_EXIT_USAGE;
        }
        int r = tg_common_opt(co, opt, optarg);
        if (r < 0)
            return TG_EXIT_USAGE;
        if (r == 0 && (!own || (r = own(ctx, opt, optarg)) != 0))
            return own ? r : TG_EXIT_USAGE;
    }
    return tg_common_finish(co);
}

int tg_want_args(int argc, int need_min, int need_max, const char *what)
{
    int n = argc - optind;
    if (n < need_min || n > need_max) {
        tg_err("expects %s (see --help)", what);
        return TG_EXIT_USAGE;
    }
    return 0;
}

/* ---- send -------------------------------------------------------------------------------- */

typedef struct {
    const char *relay, *title, *description, *image, *rights, *notify;
    long ttl;
    tc_payload_type_t type;
} send_opts_t;

enum { O_RELAY = TG_OPT_FIRST_OWN, O_TITLE, O_DESC, O_IMAGE, O_TTL, O_RIGHTS, O_TYPE, O_NOTIFY };

static int send_opt(void *ctx, int opt, const char *arg)
{
    send_opts_t *o = ctx;
    switch (opt) {
    case O_RELAY:
        o->relay = arg;
        return 0;
    case O_TITLE:
        o->title = arg;
        return 0;
    case O_DESC:
        o->description = arg;
        return 0;
    case O_IMAGE:
        o->image = arg;
        return 0;
    case O_RIGHTS:
        o->rights = arg;
        return 0;
    case O_NOTIFY:
        o->notify = arg;
        return 0;
    case O_TTL:
        if (tg_parse_duration(arg, &o->ttl) == 0)
            return 0;
        tg_err("--ttl wants a duration such as 90s, 15m, 1h, 2d");
        return TG_EXIT_USAGE;
    case O_TYPE:
        if (tc_payload_type_parse(arg, &o->type) == TC_OK)
            return 0;
        tg_err("--type wants AES128, AES256, AEAD_AES_128_GCM or AEAD_AES_256_GCM");
        return TG_EXIT_USAGE;
    default:
        return TG_EXIT_USAGE;
    }
}

static const char send_usage[] =
    "usage: tigress send --relay URL [--title T] [--description D] [--image-url URL]\n"
    "                    [--ttl 1h] [--rights RD|RWD] [--type AES128] [--notify TYPE:TOKEN]\n"
    "                    FILE|-\n"
    "Encrypts FILE (or stdin) with a fresh Secret (AES-GCM), stores it in a new mailbox on the\n"
    "relay and prints the share URL, with the Secret after '#', on stdout (nothing else goes\n"
    "there). Send that URL to the receiver; the relay never sees the part after '#'.\n"
    "  --relay URL         the relay, e.g. https://relay.example (env TIGRESS_RELAY)\n"
    "  --title, --description, --image-url   what a link preview shows (not encrypted:\n"
    "                      nothing that identifies you; default title \"Shared file\")\n"
    "  --ttl DURATION      mailbox lifetime (default 1h; the relay caps it, 48h by default)\n"
    "  --rights RD|RWD     what each device may do: Read, Write (needed for `reply`), Delete\n"
    "                      (default RD)\n"
    "  --type NAME         AES128 (default), AES256, AEAD_AES_128_GCM, AEAD_AES_256_GCM\n"
    "  --notify TYPE:TOKEN a push token for this device (default none: `wait` polls)\n"
    "The content may be as large as the relay's request limit allows once encrypted, base64\n"
    "encoded and wrapped in JSON (about 48 KiB for the default 64 KiB); the limit is read from\n"
    "the relay (GET /v1/config) when it publishes one, and a larger file is refused before\n"
    "anything is uploaded.\n";

/* Seals, records the claim, creates the mailbox and prints the share URL. */
static int send_sealed(tc_client_t *c, const send_opts_t *o, const char *base,
                       const tg_common_t *co, tc_create_t *in, const uint8_t *pt, size_t pt_len)
{
    uint8_t secret[TC_SECRET_MAX], *sealed = NULL;
    size_t slen = 0, sealed_len = 0;
    tg_entry_t ent = {0};
    tc_created_t res;
    char id[CM_UUID_STRLEN + 1], *url = NULL;
    int rc;
    tc_err_t e = tc_secret_new(o->type, secret, &slen);
    if (e == TC_OK)
        e = tc_seal(o->type, secret, slen, pt, pt_len, &sealed, &sealed_len);
    if (e == TC_OK && (cm_uuid_v4(id) != 0 || cm_uuid_v4(ent.claim) != 0))
        e = TC_ERR_CRYPTO;
    if (e != TC_OK) {
        rc = tg_fail(e, NULL, "sealing");
        goto done;
    }
    /* the claim is on disk before the relay can bind it: a crash cannot lock us out */
    snprintf(ent.role, sizeof(ent.role), "sender");
    snprintf(ent.type, sizeof(ent.type), "%s", tc_payload_type_name(o->type));
    tg_sha256_hex(sealed, sealed_len, ent.seen);
    rc = TG_EXIT_FAIL;
    if (tg_state_put(co->state_dir, id, &ent) != 0)
        goto done;
    in->mailbox_id = id;
    in->sealed = sealed;
    in->sealed_len = sealed_len;
    tg_progress("uploading %zu bytes sealed with %s", sealed_len, tc_payload_type_name(o->type));
    e = tc_create(c, base, ent.claim, in, &res);
    if (e == TC_OK)
        e = tc_share_build(res.url_link, secret, slen, &url);
    if (e != TC_OK) {
        tg_state_remove(co->state_dir, id);
        rc = tg_fail(e, c, "create");
        goto done;
    }
    if (res.duplicate)
        tg_progress("a lost answer was retried: the relay reported the mailbox already stored");
    printf("%s\n", url);
    rc = fflush(stdout) == 0 ? TG_EXIT_OK : TG_EXIT_FAIL;
    tg_progress("mailbox %s created; it expires in %ld s", res.mailbox_id, o->ttl);
done:
    OPENSSL_cleanse(secret, sizeof(secret));
    tc_free(sealed, sealed_len);
    tc_free(url, url ? strlen(url) + 1 : 0);
    return rc;
}

int tg_cmd_send(int argc, char **argv)
{
    static const struct option lo[] = {{"relay", required_argument, NULL, O_RELAY},
                                       {"title", required_argument, NULL, O_TITLE},
                                       {"description", required_argument, NULL, O_DESC},
                                       {"image-url", required_argument, NULL, O_IMAGE},
                                       {"ttl", required_argument, NULL, O_TTL},
                                       {"rights", required_argument, NULL, O_RIGHTS},
                                       {"type", required_argument, NULL, O_TYPE},
                                       {"notify", required_argument, NULL, O_NOTIFY},
                                       TG_COMMON_LONGOPTS};
    send_opts_t o = {.title = "Shared file", .ttl = 3600, .type = TC_AES128};
    tg_common_t co = {0};
    char base[TC_URL_MAX], tok_type[64];
    int rc = tg_parse_opts(argc, argv, "qh", lo, send_usage, &co, send_opt, &o);
    if (rc)
        return rc < 0 ? TG_EXIT_OK : rc;
    if ((rc = tg_want_args(argc, 1, 1, "one FILE or -")) != 0)
        return rc;
    if ((rc = tg_relay_base(o.relay, base)) != 0)
        return rc;
    tc_create_t in = {.type = o.type,
                      .title = o.title,
                      .description = o.description,
                      .image_url = o.image,
                      .access_rights = o.rights,
                      .ttl_seconds = o.ttl};
    if (o.notify &&
        tg_parse_token(o.notify, &in.token_type, &in.token_data, tok_type, sizeof(tok_type)) != 0)
        return TG_EXIT_USAGE;
    tc_client_t *c = tg_client(&co);
    if (!c)
        return TG_EXIT_FAIL;
    long max_body = 0;
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    tc_err_t e = tc_relay_max_body(c, base, &max_body);
    if (e != TC_OK) {
        rc = tg_fail(e, c, "relay");
        goto done;
    }
    size_t max_pt = tc_create_max_plaintext(&in, max_body);
    const char *path = argv[optind];
    int r = tg_read_input(path, max_pt, &pt, &pt_len);
    if (r == 1) {
        tg_err("%s is too large: %s%zu bytes; this relay accepts at most %zu bytes of content (its "
               "request limit is %ld bytes, base64 and JSON included); nothing was uploaded",
               strcmp(path, "-") ? path : "the input", strcmp(path, "-") ? "" : "over ",
               strcmp(path, "-") ? pt_len : max_pt, max_pt, max_body);
        rc = TG_EXIT_TOO_LARGE;
        goto done;
    }
    rc = r ? TG_EXIT_FAIL : send_sealed(c, &o, base, &co, &in, pt, pt_len);
done:
    tc_free(pt, pt_len);
    tc_client_free(c);
    return rc;
}

/* ---- receive / wait ------------------------------------------------------------------------ */

typedef struct {
    const char *out;
    int delete_after;
    long max_wait;
} recv_opts_t;

enum { O_OUT = 'o', O_DELETE = TG_OPT_FIRST_OWN + 20, O_MAX_WAIT };

static int recv_opt(void *ctx, int opt, const char *arg)
{
    recv_opts_t *o = ctx;
    if (opt == O_OUT) {
        o->out = arg;
        return 0;
    }
    if (opt == O_DELETE) {
        o->delete_after = 1;
        return 0;
    }
    if (opt == O_MAX_WAIT && tg_parse_duration(arg, &o->max_wait) == 0)
        return 0;
    if (opt == O_MAX_WAIT)
        tg_err("--max-wait wants a duration such as 90s, 15m, 1h");
    return TG_EXIT_USAGE;
}

/* Opens |ct| with the share's Secret and writes the plaintext whole to |out|; on success
 * records what this device has now seen. Nothing is written when the tag does not verify. */
static int open_and_write(const tc_share_t *s, const tc_content_t *ct, const char *out,
                          const char *dir, tg_entry_t *ent)
{
    if (s->secret_len != tc_payload_type_key_len(ct->type)) {
        tg_err("integrity check failed: the Secret is %zu bytes, the payload (%s) needs %zu",
               s->secret_len, tc_payload_type_name(ct->type), tc_payload_type_key_len(ct->type));
        return TG_EXIT_INTEGRITY;
    }
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    tc_err_t e = tc_open(ct->type, s->secret, s->secret_len, ct->sealed, ct->sealed_len, NULL, 0,
                         &pt, &pt_len);
    if (e != TC_OK)
        return tg_fail(e, NULL, NULL);
    int rc = tg_write_output(out, pt, pt_len) == 0 ? TG_EXIT_OK : TG_EXIT_FAIL;
    tc_free(pt, pt_len);
    if (rc == TG_EXIT_OK) {
        tg_sha256_hex(ct->sealed, ct->sealed_len, ent->seen);
        snprintf(ent->type, sizeof(ent->type), "%s", tc_payload_type_name(ct->type));
        if (tg_state_put(dir, s->mailbox_id, ent) != 0)
            rc = TG_EXIT_FAIL;
        tg_progress("%zu bytes verified and written%s%s", pt_len, out ? " to " : "",
                    out ? out : "");
    }
    return rc;
}

static const char receive_usage[] =
    "usage: tigress receive SHARE_URL|@FILE [-o FILE] [--delete]\n"
    "Reads the mailbox of SHARE_URL as this device (the first device to read it, other than\n"
    "the sender, is bound to it for good), checks its integrity with the Secret after '#' and\n"
    "writes the plaintext to FILE (whole, mode 0600) or stdout. Nothing is written and the exit\n"
    "status is 3 when the check fails (wrong Secret or tampered content).\n"
    "  @FILE           read the share URL from FILE (keeps the Secret out of the process list)\n"
    "  -o, --output FILE   write here instead of stdout\n"
    "  --delete        delete the mailbox once the content verified (the stateless flow)\n";

int tg_cmd_receive(int argc, char **argv)
{
    static const struct option lo[] = {{"output", required_argument, NULL, O_OUT},
                                       {"delete", no_argument, NULL, O_DELETE},
                                       TG_COMMON_LONGOPTS};
    recv_opts_t o = {0};
    tg_common_t co = {0};
    tc_share_t s;
    tg_entry_t ent = {0};
    tc_content_t ct = {0};
    int rc = tg_parse_opts(argc, argv, "o:qh", lo, receive_usage, &co, recv_opt, &o);
    if (rc)
        return rc < 0 ? TG_EXIT_OK : rc;
    if ((rc = tg_want_args(argc, 1, 1, "one SHARE_URL")) != 0 ||
        (rc = tg_share_arg(argv[optind], 1, &s)) != 0)
        return rc;
    tc_client_t *c = NULL;
    rc = TG_EXIT_FAIL;
    int have = tg_state_get(co.state_dir, s.mailbox_id, &ent);
    if (have < 0)
        goto done;
    if (!have) { /* a fresh claim for this mailbox, kept before the relay binds it */
        snprintf(ent.role, sizeof(ent.role), "receiver");
        if (cm_uuid_v4(ent.claim) != 0 || tg_state_put(co.state_dir, s.mailbox_id, &ent) != 0)
            goto done;
    }
    if (!(c = tg_client(&co)))
        goto done;
    tc_err_t e = tc_read(c, s.api_url, ent.claim, &ct);
    if (e != TC_OK) {
        rc = tg_fail(e, c, "read");
        /* a claim the relay certainly did not bind is of no use: forget it */
        if (!have && (e == TC_ERR_NOT_FOUND || e == TC_ERR_UNAUTHORIZED))
            tg_state_remove(co.state_dir, s.mailbox_id);
        goto done;
    }
    rc = open_and_write(&s, &ct, o.out, co.state_dir, &ent);
    if (rc == TG_EXIT_OK && o.delete_after) {
        e = tc_delete(c, s.api_url, ent.claim);
        rc = e == TC_OK ? TG_EXIT_OK : tg_fail(e, c, "delete");
        if (e == TC_OK || e == TC_ERR_NOT_FOUND)
            tg_state_remove(co.state_dir, s.mailbox_id);
    }
done:
    tc_content_free(&ct);
    tc_client_free(c);
    tc_share_wipe(&s);
    return rc;
}

int tg_need_entry(const tg_common_t *co, const tc_share_t *s, tg_entry_t *ent)
{
    int have = tg_state_get(co->state_dir, s->mailbox_id, ent);
    if (have > 0)
        return 0;
    if (have == 0)
        tg_err("this device has no claim for mailbox %s: it neither sent nor received it "
               "(state in %s)",
               s->mailbox_id, co->state_dir);
    return TG_EXIT_FAIL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Polls until the mailbox holds a payload this device neither wrote nor read. */
static int poll_until_changed(tc_client_t *c, const tc_share_t *s, const recv_opts_t *o,
                              const tg_common_t *co, tg_entry_t *ent)
{
    long long deadline = (long long)time(NULL) + o->max_wait;
    long interval_ms = 1000;
    tg_notice("waiting for the other device to write: a command line has no push channel, so "
              "this polls the relay (every 1 s, backing off to 30 s; gives up after %ld s)",
              o->max_wait);
    for (;;) {
        tc_content_t ct;
        tc_err_t e = tc_read(c, s->api_url, ent->claim, &ct);
        if (e != TC_OK)
            return tg_fail(e, c, "read");
        char digest[65];
        tg_sha256_hex(ct.sealed, ct.sealed_len, digest);
        if (strcmp(digest, ent->seen) != 0) {
            int rc = open_and_write(s, &ct, o->out, co->state_dir, ent);
            tc_content_free(&ct);
            return rc;
        }
        tc_content_free(&ct);
        long long left = deadline - (long long)time(NULL);
        if (left <= 0) {
            tg_err("gave up after %ld s: the other device has not written", o->max_wait);
            return TG_EXIT_UNREACHABLE;
        }
        if (interval_ms > left * 1000)
            interval_ms = (long)left * 1000;
        tg_progress("nothing new yet; next check in %ld s", (interval_ms + 999) / 1000);
        sleep_ms(interval_ms);
        interval_ms = interval_ms * 2 > 30000 ? 30000 : interval_ms * 2;
    }
}

static const char wait_usage[] =
    "usage: tigress wait SHARE_URL|@FILE [-o FILE] [--max-wait 10m]\n"
    "Waits until the other device wrote to the mailbox (the stateful flow), then checks and\n"
    "writes that content like `receive`. A command line has no push channel: this polls the\n"
    "relay with backoff (1 s doubling to 30 s) and says so on stderr.\n"
    "  -o, --output FILE   write here instead of stdout\n"
    "  --max-wait DURATION give up after this long (default 10m; exit status 6)\n";

int tg_cmd_wait(int argc, char **argv)
{
    static const struct option lo[] = {{"output", required_argument, NULL, O_OUT},
                                       {"max-wait", required_argument, NULL, O_MAX_WAIT},
                                       TG_COMMON_LONGOPTS};
    recv_opts_t o = {.max_wait = 600};
    tg_common_t co = {0};
    tc_share_t s;
    tg_entry_t ent;
    int rc = tg_parse_opts(argc, argv, "o:qh", lo, wait_usage, &co, recv_opt, &o);
    if (rc)
        return rc < 0 ? TG_EXIT_OK : rc;
    if ((rc = tg_want_args(argc, 1, 1, "one SHARE_URL")) != 0 ||
        (rc = tg_share_arg(argv[optind], 1, &s)) != 0)
        return rc;
    tc_client_t *c = NULL;
    if ((rc = tg_need_entry(&co, &s, &ent)) == 0) {
        c = tg_client(&co);
        rc = c ? poll_until_changed(c, &s, &o, &co, &ent) : TG_EXIT_FAIL;
    }
    tc_client_free(c);
    tc_share_wipe(&s);
    return rc;
}
