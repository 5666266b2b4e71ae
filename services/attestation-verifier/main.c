/* attestation-verifier: stateless WebAuthn attestation verification.
 *
 *   attestation-verifier [--flags]              gRPC service (tigress.attest.v1)
 *   attestation-verifier verify CASE.json...    one JSON verdict line per case file */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cm_alloc.h"
#include "av_case.h"
#include "av_service.h"
#include "av_trust.h"
#include "av_verify.h"
#include "cm_config.h"
#include "cm_log.h"
#include "cm_rpc.h"
#include "cm_service.h"

/* Where the public attestation roots are installed, relative to the binary's directory:
 * <prefix>/bin/attestation-verifier reads <prefix>/share/tigress/attestation-roots (the build
 * tree has the same layout, and the container image sets TIGRESS_TRUST_ANCHORS_DIR). */
#define AV_ROOTS_FROM_BIN "../share/tigress/attestation-roots"
#define AV_DEFAULT_ROOTS_DIR "<binary dir>/" AV_ROOTS_FROM_BIN

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
    l->buf = cm_xstrdup(s);
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

static int run_cli(int nfiles, char **files, const av_trust_t *trust)
{
    int bad = 0;
    for (int i = 0; i < nfiles; i++)
        bad |= av_case_run(files[i], trust, stdout) != 0;
    return bad ? 2 : 0;
}

static cm_service_t svc = {
    .name = "attestation-verifier",
    .summary = "WebAuthn attestation verifier (gRPC service), or\n"
               "  attestation-verifier verify CASE.json...  (one JSON line each)",
};

static struct {
    const char *listen, *anchors_dir, *rp_id, *origin, *top_origins, *formats;
    int require_uv, allow_cross, test_overrides, allow_self;
    int64_t workers, drain_ms;
} o;

static cm_opt_t opts[] = {
    {"listen", CM_OPT_STR, "127.0.0.1:7003", "gRPC listen address (port 0: ephemeral)", &o.listen},
    {"admin-listen", CM_OPT_STR, "127.0.0.1:9103",
     "admin HTTP (/metrics /healthz /readyz); empty: off", &svc.admin_listen},
    {"trust-anchors-dir", CM_OPT_STR, AV_DEFAULT_ROOTS_DIR,
     "directory with <format>.pem anchor files (apple, packed, tpm, android-key, fido-u2f); "
     "a format without a file has no anchors and its chains are CHAIN_UNTRUSTED",
     &o.anchors_dir},
    {"rp-id", CM_OPT_STR, NULL, "default RP ID when a request carries none", &o.rp_id},
    {"origin", CM_OPT_STR, NULL,
     "allowed origins, comma-separated, exact match; empty: exactly https://<rp-id>. A "
     "request's expected_origin replaces this list",
     &o.origin},
    {"top-origins", CM_OPT_STR, NULL,
     "allowed topOrigin values for cross-origin registrations, comma-separated", &o.top_origins},
    {"allow-cross-origin", CM_OPT_BOOL, "false", "accept clientDataJSON.crossOrigin true",
     &o.allow_cross},
    {"require-uv", CM_OPT_BOOL, "false", "require the UV flag on every registration",
     &o.require_uv},
    {"formats", CM_OPT_STR, AV_DEFAULT_FORMATS,
     "attestation formats accepted (at least one); others are UNSUPPORTED_FORMAT. `none` "
     "carries no signature and proves nothing about the device: list it only on purpose",
     &o.formats},
    {"allow-self-attestation", CM_OPT_BOOL, "false",
     "accept packed self attestation (no x5c: signed by the new credential key itself, so "
     "it proves nothing about the device); otherwise it is SELF_ATTESTATION_NOT_ALLOWED",
     &o.allow_self},
    {"allow-test-overrides", CM_OPT_BOOL, "false",
     "TESTS ONLY: honour VerifyRequest.test_* (fixed verify time, anchors, chain off)",
     &o.test_overrides},
    {"workers", CM_OPT_INT, "2", "gRPC handler threads", &o.workers},
    {"drain-timeout-ms", CM_OPT_INT, "5000", "longest wait for in-flight calls on stop",
     &o.drain_ms},
    {"log-level", CM_OPT_STR, "info", "debug, info, warn or error", &svc.log_level},
    {"ready-file", CM_OPT_STR, NULL, "write {\"grpc_port\":N,\"admin_port\":N} here once listening",
     &svc.ready_file},
};

typedef struct {
    list_t origins, tops, formats;
    av_trust_t *trust; /* owned */
    int nanchor_files;
    char roots[4096]; /* the default anchors directory, resolved */
} setup_t;

static void setup_free(setup_t *st)
{
    av_trust_free(st->trust);
    free(st->origins.buf), free(st->tops.buf), free(st->formats.buf);
}

/* The default anchors directory: AV_ROOTS_FROM_BIN next to this binary's directory. */
static const char *default_roots(char *buf, size_t cap)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return "";
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return "";
    *slash = '\0';
    if ((size_t)snprintf(buf, cap, "%s/%s", exe, AV_ROOTS_FROM_BIN) >= cap)
        return "";
    return buf;
}

/* Lists, formats and trust anchors from the options. 0, or 2 (the exit code; printed). */
static int setup(setup_t *st)
{
    memset(st, 0, sizeof(*st));
    if (split_list(o.origin, &st->origins) || split_list(o.top_origins, &st->tops) ||
        split_list(o.formats, &st->formats)) {
        fprintf(stderr, "attestation-verifier: a list option has over %d entries\n", MAX_LIST);
        return 2;
    }
    for (size_t i = 0; i < st->formats.n; i++) {
        if (!av_format_supported(st->formats.items[i])) {
            fprintf(stderr, "attestation-verifier: --formats: unknown format \"%s\"\n",
                    st->formats.items[i]);
            return 2;
        }
    }
    if (strcmp(o.anchors_dir, AV_DEFAULT_ROOTS_DIR) == 0)
        o.anchors_dir = default_roots(st->roots, sizeof(st->roots));
    struct stat sb;
    if (*o.anchors_dir && (stat(o.anchors_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))) {
        /* a typo here would silently turn every attestation into CHAIN_UNTRUSTED */
        fprintf(stderr,
                "attestation-verifier: --trust-anchors-dir \"%s\" is not a directory (use "
                "--trust-anchors-dir= for none)\n",
                o.anchors_dir);
        return 2;
    }
    st->trust = av_trust_new();
    char err[512] = "";
    st->nanchor_files =
        *o.anchors_dir ? av_trust_load_dir(st->trust, o.anchors_dir, err, sizeof(err)) : 0;
    if (st->nanchor_files < 0) {
        fprintf(stderr, "attestation-verifier: trust anchors: %s\n", err);
        return 2;
    }
    return 0;
}

/* The warnings a risky configuration deserves, once at start. */
static void warn_about(const setup_t *st)
{
    for (size_t i = 0; i < st->formats.n; i++) {
        if (strcmp(st->formats.items[i], "none") == 0)
            CM_WARN(NULL, "--formats includes none: unsigned attestations are accepted, so "
                          "they prove nothing about the device");
    }
    if (o.allow_self)
        CM_WARN(NULL, "--allow-self-attestation is on: packed self attestations (signed only by "
                      "the new credential key) are accepted, so they prove nothing about the "
                      "device");
    if (!o.rp_id || !*o.rp_id)
        CM_WARN(NULL, "no --rp-id: requests that carry no rp_id (all of the gateway's) are "
                      "refused with UNAVAILABLE");
    if (st->nanchor_files == 0)
        CM_WARN(NULL,
                "no trust anchors loaded from \"%s\": every certificate chain is "
                "CHAIN_UNTRUSTED",
                o.anchors_dir);
    if (o.test_overrides)
        CM_WARN(NULL, "--allow-test-overrides is on: requests may choose the verify time and "
                      "anchors; never run this in production");
}

/* The gRPC service until SIGTERM/SIGINT. Returns the exit code. */
static int serve(const setup_t *st)
{
    cm_service_rpc_init(&svc);
    warn_about(st);
    av_service_cfg_t cfg = {
        .trust = st->trust,
        .rp_id = o.rp_id,
        .origins = st->origins.items,
        .norigins = st->origins.n,
        .top_origins = st->tops.items,
        .ntop_origins = st->tops.n,
        .formats = st->formats.items,
        .nformats = st->formats.n,
        .require_uv = o.require_uv,
        .allow_cross_origin = o.allow_cross,
        .allow_test_overrides = o.test_overrides,
        .allow_self_attestation = o.allow_self,
    };
    cm_rpc_server_opts_t sopts = {
        .listen = o.listen, .workers = (int)o.workers, .drain_timeout_ms = (int)o.drain_ms};
    cm_rpc_server_t *srv = NULL;
    int grpc_port = 0, exit_code = 1;
    if (cm_rpc_server_new(&sopts, &srv) != 0 || av_service_register(srv, &cfg) != 0) {
        CM_ERROR(NULL, "cannot create the gRPC server");
        goto out;
    }
    cm_rpc_server_set_health(srv, AV_SERVICE_NAME, 1);
    if (cm_rpc_server_start(srv, &grpc_port) != 0) {
        CM_ERROR(NULL, "cannot listen on %s", o.listen);
        goto out;
    }
    cm_service_port_t ports[] = {{"grpc_port", grpc_port}, {NULL, 0}};
    if (cm_service_ready(&svc, ports) != 0)
        goto out;
    CM_INFO(NULL, "serving on %s (grpc port %d, admin port %d, %d anchor files)", o.listen,
            grpc_port, cm_service_admin_port(&svc), st->nanchor_files);
    int sig = cm_service_wait(&svc, NULL, NULL);
    CM_INFO(NULL, "signal %d: draining", sig);
    exit_code = 0;
out:
    if (srv)
        cm_rpc_server_stop(srv);
    cm_rpc_server_del(srv);
    cm_service_end(&svc);
    return exit_code;
}

int main(int argc, char **argv)
{
    int npos = 0;
    int init = cm_service_init(&svc, opts, sizeof(opts) / sizeof(opts[0]), argc, argv, &npos);
    if (init != CM_SERVICE_RUN)
        return cm_service_exit_code(init);
    if (npos > 0 && (strcmp(argv[1], "verify") != 0 || npos < 2)) {
        fprintf(stderr, "attestation-verifier: usage: attestation-verifier verify CASE.json...\n");
        return 2;
    }
    setup_t st;
    int rc = setup(&st);
    if (rc == 0 && npos > 0) {
        rc = run_cli(npos - 1, argv + 2, st.trust);
    } else if (rc == 0 && st.formats.n == 0) {
        /* av_verify reads an empty list as "all formats", `none` included */
        fprintf(stderr, "attestation-verifier: --formats must name at least one format\n");
        rc = 2;
    } else if (rc == 0) {
        rc = serve(&st);
    }
    setup_free(&st);
    return rc;
}
