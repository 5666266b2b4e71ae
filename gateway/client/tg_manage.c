/* The commands on a mailbox this device takes part in: reply, delete, relinquish; and preview,
 * which needs no part in it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_cmd.h"
#include "tg_io.h"
#include "tg_state.h"

enum { O_NOTIFY = TG_OPT_FIRST_OWN + 40 };

static int reply_opt(void *ctx, int opt, const char *arg)
{
    if (opt != O_NOTIFY)
        return TG_EXIT_USAGE;
    *(const char **)ctx = arg;
    return 0;
}

static const char reply_usage[] =
    "usage: tigress reply SHARE_URL|@FILE FILE|- [--notify TYPE:TOKEN]\n"
    "Encrypts FILE (or stdin) with the Secret of SHARE_URL and writes it to the mailbox as this\n"
    "device (the stateful flow: the mailbox needs the W right, `send --rights RWD`). This\n"
    "device must have sent or received the mailbox before. The other side gets it with `wait`.\n"
    "  --notify TYPE:TOKEN   this device's push token; the relay requires one on every write,\n"
    "                        so without it a placeholder that is never delivered is sent\n"
    "                        (" TG_POLL_TOKEN_TYPE " " TG_POLL_TOKEN_DATA ")\n";

/* Seals |pt| with the share's Secret under the type this device last saw and writes it. */
static int reply_sealed(tc_client_t *c, const tc_share_t *s, const tg_common_t *co, tg_entry_t *ent,
                        const char *notify, const uint8_t *pt, size_t pt_len)
{
    tc_payload_type_t type = s->secret_len == 32 ? TC_AES256 : TC_AES128;
    tc_payload_type_t seen;
    if (tc_payload_type_parse(ent->type, &seen) == TC_OK &&
        tc_payload_type_key_len(seen) == s->secret_len)
        type = seen;
    const char *tt = TG_POLL_TOKEN_TYPE, *td = TG_POLL_TOKEN_DATA;
    char tbuf[64];
    if (notify && tg_parse_token(notify, &tt, &td, tbuf, sizeof(tbuf)) != 0)
        return TG_EXIT_USAGE;
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    int dup = 0, rc;
    tc_err_t e = tc_seal(type, s->secret, s->secret_len, pt, pt_len, &sealed, &sealed_len);
    if (e != TC_OK)
        return tg_fail(e, NULL, "sealing");
    tg_progress("uploading %zu bytes sealed with %s", sealed_len, tc_payload_type_name(type));
    e = tc_update(c, s->api_url, ent->claim, type, sealed, sealed_len, tt, td, &dup);
    if (e != TC_OK) {
        rc = tg_fail(e, c, "update");
    } else {
        tg_sha256_hex(sealed, sealed_len, ent->seen);
        snprintf(ent->type, sizeof(ent->type), "%s", tc_payload_type_name(type));
        rc = tg_state_put(co->state_dir, s->mailbox_id, ent) == 0 ? TG_EXIT_OK : TG_EXIT_FAIL;
        tg_progress("written%s", dup ? " (a lost answer was retried: already stored)" : "");
    }
    tc_free(sealed, sealed_len);
    return rc;
}

int tg_cmd_reply(int argc, char **argv)
{
    static const struct option lo[] = {{"notify", required_argument, NULL, O_NOTIFY},
                                       TG_COMMON_LONGOPTS};
    const char *notify = NULL;
    tg_common_t co = {0};
    tc_share_t s;
    tg_entry_t ent;
    int rc = tg_parse_opts(argc, argv, "qh", lo, reply_usage, &co, reply_opt, &notify);
    if (rc)
        return rc < 0 ? TG_EXIT_OK : rc;
    if ((rc = tg_want_args(argc, 2, 2, "SHARE_URL and FILE or -")) != 0 ||
        (rc = tg_share_arg(argv[optind], 1, &s)) != 0)
        return rc;
    tc_client_t *c = NULL;
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    long max_body = 0;
    if ((rc = tg_need_entry(&co, &s, &ent)) != 0)
        goto done;
    rc = TG_EXIT_FAIL;
    if (!(c = tg_client(&co)))
        goto done;
    tc_err_t e = tc_relay_max_body(c, s.relay_base, &max_body);
    if (e != TC_OK) {
        rc = tg_fail(e, c, "relay");
        goto done;
    }
    /* an upper bound: base64 alone makes 4 of 3; tc_update refuses the exact excess */
    int r = tg_read_input(argv[optind + 1], (size_t)max_body / 4 * 3, &pt, &pt_len);
    if (r == 1) {
        tg_err("%s is too large for this relay (request limit %ld bytes, base64 and JSON "
               "included); nothing was uploaded",
               argv[optind + 1], max_body);
        rc = TG_EXIT_TOO_LARGE;
    } else if (r == 0) {
        rc = reply_sealed(c, &s, &co, &ent, notify, pt, pt_len);
    }
done:
    tc_free(pt, pt_len);
    tc_client_free(c);
    tc_share_wipe(&s);
    return rc;
}

static const char delete_usage[] =
    "usage: tigress delete SHARE_URL|@FILE\n"
    "Deletes the mailbox (as the sender or the receiver; the mailbox needs the D right) and\n"
    "forgets this device's claim for it. The Secret is not needed.\n";

static const char relinquish_usage[] =
    "usage: tigress relinquish SHARE_URL|@FILE\n"
    "The receiver lets go of the mailbox: it is no longer bound to this device, and another\n"
    "device may read it. This device forgets its claim for it. The Secret is not needed.\n";

/* delete and relinquish: one call with this device's claim, then the claim is forgotten. */
static int claim_call(int argc, char **argv, int is_delete)
{
    static const struct option lo[] = {TG_COMMON_LONGOPTS};
    tg_common_t co = {0};
    tc_share_t s;
    tg_entry_t ent;
    int rc = tg_parse_opts(argc, argv, "qh", lo, is_delete ? delete_usage : relinquish_usage, &co,
                           NULL, NULL);
    if (rc)
        return rc < 0 ? TG_EXIT_OK : rc;
    if ((rc = tg_want_args(argc, 1, 1, "one SHARE_URL")) != 0 ||
        (rc = tg_share_arg(argv[optind], 0, &s)) != 0)
        return rc;
    tc_share_wipe(&s); /* not needed here */
    if ((rc = tg_need_entry(&co, &s, &ent)) != 0)
        return rc;
    tc_client_t *c = tg_client(&co);
    if (!c)
        return TG_EXIT_FAIL;
    tc_err_t e =
        is_delete ? tc_delete(c, s.api_url, ent.claim) : tc_relinquish(c, s.api_url, ent.claim);
    rc = e == TC_OK ? TG_EXIT_OK : tg_fail(e, c, is_delete ? "delete" : "relinquish");
    if (e == TC_OK || e == TC_ERR_NOT_FOUND) /* gone either way: the claim is of no more use */
        rc = tg_state_remove(co.state_dir, s.mailbox_id) == 0 ? rc : TG_EXIT_FAIL;
    if (e == TC_OK)
        tg_progress("%s", is_delete ? "mailbox deleted" : "mailbox relinquished");
    tc_client_free(c);
    return rc;
}

int tg_cmd_delete(int argc, char **argv)
{
    return claim_call(argc, argv, 1);
}

int tg_cmd_relinquish(int argc, char **argv)
{
    return claim_call(argc, argv, 0);
}

static const char preview_usage[] =
    "usage: tigress preview SHARE_URL|@FILE\n"
    "Shows what a messenger's link preview shows (the relay's OpenGraph page: title,\n"
    "description, image), without binding this device or touching the content.\n";

static void print_field(const char *label, const char *v)
{
    if (!v || !*v)
        return;
    printf("%s: ", label);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        putchar(*p < 0x20 || *p == 0x7f ? '?' : *p); /* relay text must not drive the terminal */
    putchar('\n');
}

int tg_cmd_preview(int argc, char **argv)
{
    static const struct option lo[] = {TG_COMMON_LONGOPTS};
    tg_common_t co = {0};
    tc_share_t s;
    int rc = tg_parse_opts(argc, argv, "qh", lo, preview_usage, &co, NULL, NULL);
    if (rc)
        return rc < 0 ? TG_EXIT_OK : rc;
    if ((rc = tg_want_args(argc, 1, 1, "one SHARE_URL")) != 0 ||
        (rc = tg_share_arg(argv[optind], 0, &s)) != 0)
        return rc;
    tc_share_wipe(&s);
    tc_client_t *c = tg_client(&co);
    if (!c)
        return TG_EXIT_FAIL;
    tc_preview_t p;
    tc_err_t e = tc_preview(c, s.api_url, &p);
    if (e == TC_OK) {
        print_field("title", p.title);
        print_field("description", p.description);
        print_field("image", p.image_url);
        rc = fflush(stdout) == 0 ? TG_EXIT_OK : TG_EXIT_FAIL;
        tc_preview_free(&p);
    } else {
        rc = tg_fail(e, c, "preview");
    }
    tc_client_free(c);
    return rc;
}
