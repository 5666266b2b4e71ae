/* attestation-verifier: stateless WebAuthn attestation verification.
 *
 *   attestation-verifier [--flags]              gRPC service (tigress.attest.v1)
 *   attestation-verifier verify CASE.json...    one JSON verdict line per case file */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "av_case.h"
#include "av_service.h"
#include "av_trust.h"
#include "av_verify.h"
#include "cm_admin.h"
#include "cm_config.h"
#include "cm_log.h"
#include "cm_rpc.h"

#ifndef AV_DEFAULT_ROOTS_DIR
#define AV_DEFAULT_ROOTS_DIR "/etc/tigress/attestation-roots"
#endif

#define MAX_LIST 32

/* Every supported format except `none`: an attestation without a signature or certificate
 * would let any client pass `--attestation-policy=required` at the gateway. */
#define AV_DEFAULT_FORMATS "apple,packed,tpm,android-key,fido-u2f"

typedef struct {
    char *buf; /* owned: the split copy the entries point into */
    const char *items[MAX_LIST];
    size_t n;
} list_t;

/* Splits "a, b,c" on commas; empty entries are dropped. 0, or -1 with too many entries. */
static int split_list(const char *s, list_t *l)
{
    memset(l, 0, sizeof(*l));
    if (!s || !*s)
        return 0;
    if (!(l->buf = strdup(s)))
        return -1;
    for (char *save = NULL, *tok = strtok_r(l->buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        size_t n = strlen(tok);
        while (n && tok[n - 1] == ' ')
            tok[--n] = '\0';
        if (!*tok)
            continue;
        if (l->n == MAX_LIST)
            return -1;
        l->items[l->n++] = tok;
    }
    return 0;
}

static int ready_cb(void *arg)
{
    return *(volatile int *)arg;
}

static int run_cli(int nfiles, char **files, const av_trust_t *trust)
{
    int bad = 0;
    for (int i = 0; i < nfiles; i++)
        bad |= av_case_run(files[i], trust, stdout) != 0;
    return bad ? 2 : 0;
}

int main(int argc, char **argv)
{
    const char *listen, *admin_listen, *anchors_dir, *rp_id, *origin, *top_origins, *formats,
        *log_level, *ready_file;
    int require_uv = 0, allow_cross = 0, test_overrides = 0, allow_self = 0;
    int64_t workers = 2, drain_ms = 5000;
    cm_opt_t opts[] = {
        {"listen", CM_OPT_STR, "127.0.0.1:7003", "gRPC listen address (port 0: ephemeral)",
         &listen},
        {"admin-listen", CM_OPT_STR, "127.0.0.1:9103",
         "admin HTTP (/metrics /healthz /readyz); empty: off", &admin_listen},
        {"trust-anchors-dir", CM_OPT_STR, AV_DEFAULT_ROOTS_DIR,
         "directory with <format>.pem anchor files (apple, packed, tpm, android-key, fido-u2f); "
         "a format without a file has no anchors and its chains are CHAIN_UNTRUSTED",
         &anchors_dir},
        {"rp-id", CM_OPT_STR, NULL, "default RP ID when a request carries none", &rp_id},
        {"origin", CM_OPT_STR, NULL,
         "allowed origins, comma-separated, exact match; empty: exactly https://<rp-id>. A "
         "request's expected_origin replaces this list",
         &origin},
        {"top-origins", CM_OPT_STR, NULL,
         "allowed topOrigin values for cross-origin registrations, comma-separated", &top_origins},
        {"allow-cross-origin", CM_OPT_BOOL, "false", "accept clientDataJSON.crossOrigin true",
         &allow_cross},
        {"require-uv", CM_OPT_BOOL, "false", "require the UV flag on every registration",
         &require_uv},
        {"formats", CM_OPT_STR, AV_DEFAULT_FORMATS,
         "attestation formats accepted (at least one); others are UNSUPPORTED_FORMAT. `none` "
         "carries no signature and proves nothing about the device: list it only on purpose",
         &formats},
        {"allow-self-attestation", CM_OPT_BOOL, "false",
         "accept packed self attestation (no x5c: signed by the new credential key itself, so "
         "it proves nothing about the device); otherwise it is SELF_ATTESTATION_NOT_ALLOWED",
         &allow_self},
        {"allow-test-overrides", CM_OPT_BOOL, "false",
         "TESTS ONLY: honour VerifyRequest.test_* (fixed verify time, anchors, chain off)",
         &test_overrides},
        {"workers", CM_OPT_INT, "2", "gRPC handler threads", &workers},
        {"drain-timeout-ms", CM_OPT_INT, "5000", "longest wait for in-flight calls on stop",
         &drain_ms},
        {"log-level", CM_OPT_STR, "info", "debug, info, warn or error", &log_level},
        {"ready-file", CM_OPT_STR, NULL,
         "write {\"grpc_port\":N,\"admin_port\":N} here once listening", &ready_file},
    };
    int npos = 0;
    int rc = cm_config_parse("attestation-verifier",
                             "WebAuthn attestation verifier (gRPC service), or\n"
                             "  attestation-verifier verify CASE.json...  (one JSON line each)",
                             opts, sizeof(opts) / sizeof(opts[0]), argc, argv, &npos);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    cm_log_level_t lvl;
    if (cm_log_level_parse(log_level, &lvl) != 0) {
        fprintf(stderr, "attestation-verifier: bad --log-level \"%s\"\n", log_level);
        return 2;
    }
    if (npos > 0 && (strcmp(argv[1], "verify") != 0 || npos < 2)) {
        fprintf(stderr, "attestation-verifier: usage: attestation-verifier verify CASE.json...\n");
        return 2;
    }

    list_t lorigins, ltops, lformats;
    if (split_list(origin, &lorigins) || split_list(top_origins, &ltops) ||
        split_list(formats, &lformats)) {
        fprintf(stderr, "attestation-verifier: a list option has over %d entries\n", MAX_LIST);
        return 2;
    }
    for (size_t i = 0; i < lformats.n; i++) {
        if (!av_format_supported(lformats.items[i])) {
            fprintf(stderr, "attestation-verifier: --formats: unknown format \"%s\"\n",
                    lformats.items[i]);
            return 2;
        }
    }

    struct stat sb;
    if (*anchors_dir && (stat(anchors_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))) {
        /* a typo here would silently turn every attestation into CHAIN_UNTRUSTED */
        fprintf(stderr,
                "attestation-verifier: --trust-anchors-dir \"%s\" is not a directory (use "
                "--trust-anchors-dir= for none)\n",
                anchors_dir);
        return 2;
    }
    av_trust_t *trust = av_trust_new();
    char err[512] = "";
    int nfiles =
        trust && *anchors_dir ? av_trust_load_dir(trust, anchors_dir, err, sizeof(err)) : 0;
    if (!trust || nfiles < 0) {
        fprintf(stderr, "attestation-verifier: trust anchors: %s\n", err);
        av_trust_free(trust);
        return 2;
    }

    if (npos > 0) {
        rc = run_cli(npos - 1, argv + 2, trust);
        av_trust_free(trust);
        free(lorigins.buf), free(ltops.buf), free(lformats.buf);
        return rc;
    }

    /* ---- service ---- */
    if (lformats.n == 0) {
        /* av_verify reads an empty list as "all formats", `none` included */
        fprintf(stderr, "attestation-verifier: --formats must name at least one format\n");
        av_trust_free(trust);
        free(lorigins.buf), free(ltops.buf), free(lformats.buf);
        return 2;
    }
    cm_rpc_signals_block();
    cm_log_init("attestation-verifier", lvl);
    cm_rpc_init();
    for (size_t i = 0; i < lformats.n; i++) {
        if (strcmp(lformats.items[i], "none") == 0)
            CM_WARN(NULL, "--formats includes none: unsigned attestations are accepted, so "
                          "they prove nothing about the device");
    }
    if (allow_self)
        CM_WARN(NULL, "--allow-self-attestation is on: packed self attestations (signed only by "
                      "the new credential key) are accepted, so they prove nothing about the "
                      "device");
    if (!rp_id || !*rp_id)
        CM_WARN(NULL, "no --rp-id: requests that carry no rp_id (all of the gateway's) are "
                      "refused with UNAVAILABLE");
    if (nfiles == 0)
        CM_WARN(NULL,
                "no trust anchors loaded from \"%s\": every certificate chain is "
                "CHAIN_UNTRUSTED",
                anchors_dir);
    if (test_overrides)
        CM_WARN(NULL, "--allow-test-overrides is on: requests may choose the verify time and "
                      "anchors; never run this in production");

    av_service_cfg_t cfg = {
        .trust = trust,
        .rp_id = rp_id,
        .origins = lorigins.items,
        .norigins = lorigins.n,
        .top_origins = ltops.items,
        .ntop_origins = ltops.n,
        .formats = lformats.items,
        .nformats = lformats.n,
        .require_uv = require_uv,
        .allow_cross_origin = allow_cross,
        .allow_test_overrides = test_overrides,
        .allow_self_attestation = allow_self,
    };
    cm_rpc_server_opts_t sopts = {
        .listen = listen, .workers = (int)workers, .drain_timeout_ms = (int)drain_ms};
    cm_rpc_server_t *srv = NULL;
    cm_admin_t *admin = NULL;
    int grpc_port = 0, admin_port = 0, exit_code = 1;
    volatile int ready = 0;
    if (cm_rpc_server_new(&sopts, &srv) != 0 || av_service_register(srv, &cfg) != 0) {
        CM_ERROR(NULL, "cannot create the gRPC server");
        goto out;
    }
    cm_rpc_server_set_health(srv, AV_SERVICE_NAME, 1);
    if (cm_rpc_server_start(srv, &grpc_port) != 0) {
        CM_ERROR(NULL, "cannot listen on %s", listen);
        goto out;
    }
    if (*admin_listen &&
        cm_admin_start(admin_listen, ready_cb, (void *)&ready, &admin, &admin_port) != 0) {
        CM_ERROR(NULL, "cannot start the admin listener on %s", admin_listen);
        goto out;
    }
    char ready_json[128];
    snprintf(ready_json, sizeof(ready_json), "{\"grpc_port\":%d,\"admin_port\":%d}", grpc_port,
             admin_port);
    if (cm_config_write_ready(ready_file, ready_json) != 0) {
        CM_ERROR(NULL, "cannot write the ready file %s", ready_file);
        goto out;
    }
    ready = 1;
    CM_INFO(NULL, "serving on %s (grpc port %d, admin port %d, %d anchor files)", listen, grpc_port,
            admin_port, nfiles);
    int sig = cm_rpc_signals_wait(NULL, NULL);
    CM_INFO(NULL, "signal %d: draining", sig);
    ready = 0;
    exit_code = 0;
out:
    if (srv)
        cm_rpc_server_stop(srv);
    if (admin)
        cm_admin_stop(admin);
    cm_rpc_server_del(srv);
    cm_rpc_shutdown();
    av_trust_free(trust);
    free(lorigins.buf), free(ltops.buf), free(lformats.buf);
    return exit_code;
}
