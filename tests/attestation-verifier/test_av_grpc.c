/* attestation-verifier over gRPC: the real binary on an ephemeral port, every shared test
 * vector through tigress.attest.v1.AttestationVerifier/Verify (test overrides on, so each
 * case's anchors and verify time apply), then the production policy (overrides refused,
 * receipt-time verification, configured anchors), health, metrics and shutdown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "av_tcases.h"
#include "cm_rpc.h"
#include "th.h"
#include "tigress/attest/v1/attestation_verifier.pb-c.h"

/* The service's default --formats leaves out `none`; the shared vectors include `none` cases
 * with expected verdicts, so the runs that check them list every format explicitly. */
#define ALL_FORMATS "--formats=apple,packed,tpm,android-key,fido-u2f,none"
/* Likewise packed self attestations (no x5c) are refused by default; the vectors expect
 * them judged on their statement. */
#define SELF_OK "--allow-self-attestation=1"

#define VERIFY_PATH "/tigress.attest.v1.AttestationVerifier/Verify"
#define SERVICE "tigress.attest.v1.AttestationVerifier"

static int start3(th_proc_t *p, const char *extra1, const char *extra2, const char *extra3)
{
    char bin[1024], anchors[1200];
    th_bin("attestation-verifier", bin, sizeof(bin));
    const char *src = getenv("TIGRESS_SRC_DIR");
    snprintf(anchors, sizeof(anchors), "--trust-anchors-dir=%s/services/attestation-verifier/roots",
             src ? src : ".");
    char *argv[9];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--listen=127.0.0.1:0";
    argv[n++] = "--admin-listen=127.0.0.1:0";
    argv[n++] = anchors;
    if (extra1)
        argv[n++] = (char *)extra1;
    if (extra2)
        argv[n++] = (char *)extra2;
    if (extra3)
        argv[n++] = (char *)extra3;
    argv[n] = NULL;
    return th_proc_start(p, argv, 20000);
}

static int start(th_proc_t *p, const char *extra1, const char *extra2)
{
    return start3(p, extra1, extra2, NULL);
}

static cm_rpc_channel_t *channel(const th_proc_t *p)
{
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", th_proc_port(p, "grpc_port"));
    cm_rpc_channel_t *ch = NULL;
    assert_int_equal(cm_rpc_channel_new(target, NULL, &ch), 0);
    return ch;
}

/* The request a case describes. |overrides|: carry its anchors / verify time / chain-off.
 * Buffers in |bufs| (3) are the caller's to free. */
static void case_request(const tc_case_t *c, int overrides, Tigress__Attest__V1__VerifyRequest *rq,
                         uint8_t **bufs, const char **pems, const char **tops)
{
    tigress__attest__v1__verify_request__init(rq);
    size_t len;
    if (tc_b64(c, "attestationObject", &bufs[0], &len) == 0)
        rq->attestation_object.data = bufs[0], rq->attestation_object.len = len;
    if (tc_b64(c, "clientDataJSON", &bufs[1], &len) == 0)
        rq->client_data_json.data = bufs[1], rq->client_data_json.len = len;
    if (tc_b64(c, "expectedChallenge", &bufs[2], &len) == 0)
        rq->expected_challenge.data = bufs[2], rq->expected_challenge.len = len;
    const cJSON *o = cJSON_GetObjectItem(c->json, "expectedOrigin");
    if (cJSON_IsString(o))
        rq->expected_origin = o->valuestring;
    rq->rp_id = cJSON_GetObjectItem(c->json, "rpId")->valuestring;
    rq->require_user_verification =
        cJSON_IsTrue(cJSON_GetObjectItem(c->json, "requireUserVerification"));
    const cJSON *vo = cJSON_GetObjectItem(c->json, "verifyOptions");
    rq->allow_cross_origin = cJSON_IsTrue(cJSON_GetObjectItem(vo, "allowCrossOrigin"));
    const cJSON *e;
    size_t nt = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(vo, "allowedTopOrigins"))
    {
        if (cJSON_IsString(e) && nt < 8)
            tops[nt++] = e->valuestring;
    }
    rq->allowed_top_origins = (char **)tops;
    rq->n_allowed_top_origins = nt;
    if (!overrides)
        return;
    const cJSON *vt = cJSON_GetObjectItem(c->json, "verifyTime");
    if (cJSON_IsString(vt)) {
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        assert_non_null(strptime(vt->valuestring, "%Y-%m-%dT%H:%M:%SZ", &tm));
        rq->test_verify_time_unix = (int64_t)timegm(&tm);
    }
    size_t np = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(c->json, "rootCertsPem"))
    {
        if (cJSON_IsString(e) && np < 8)
            pems[np++] = e->valuestring;
    }
    rq->test_root_certs_pem = (char **)pems;
    rq->n_test_root_certs_pem = np;
    const cJSON *ta = cJSON_GetObjectItem(c->json, "trustAnchor");
    rq->test_skip_chain = cJSON_IsString(ta) && !strncmp(ta->valuestring, "none-available", 14);
}

static Tigress__Attest__V1__VerifyResponse *
call(cm_rpc_channel_t *ch, const Tigress__Attest__V1__VerifyRequest *rq, cm_rpc_status_t *st)
{
    cm_rpc_call_opts_t o = {.timeout_ms = 10000, .request_id = NULL};
    ProtobufCMessage *resp = NULL;
    cm_rpc_call(ch, VERIFY_PATH, &rq->base, &tigress__attest__v1__verify_response__descriptor, &o,
                &resp, st);
    return (Tigress__Attest__V1__VerifyResponse *)resp;
}

static tc_case_t *find(tc_case_t *cases, int n, const char *id)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(cases[i].id, id) == 0)
            return &cases[i];
    }
    fail_msg("case %s not found", id);
    return NULL;
}

/* Verdict of case |id| against a running server without overrides, with |rp| / |origin|
 * replacing the case's (NULL keeps them). */
static void plain_verdict(cm_rpc_channel_t *ch, tc_case_t *c, const char *rp, const char *origin,
                          const char *want_code, int want_valid)
{
    Tigress__Attest__V1__VerifyRequest rq;
    uint8_t *bufs[3] = {0};
    const char *pems[8], *tops[8];
    case_request(c, 0, &rq, bufs, pems, tops);
    if (rp)
        rq.rp_id = (char *)rp;
    if (origin)
        rq.expected_origin = (char *)origin;
    cm_rpc_status_t st;
    Tigress__Attest__V1__VerifyResponse *r = call(ch, &rq, &st);
    assert_int_equal(st.code, GRPC_STATUS_OK);
    assert_non_null(r);
    if (strcmp(r->code, want_code) != 0 || r->valid != want_valid)
        fail_msg("%s: want %s got %s", c->id, want_code, r->code);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    for (int i = 0; i < 3; i++)
        free(bufs[i]);
}

static void test_all_cases(void **state)
{
    (void)state;
    tc_case_t *cases = NULL;
    int n = tc_load(&cases);
    assert_true(n >= 79);
    th_proc_t p;
    assert_int_equal(start3(&p, "--allow-test-overrides", ALL_FORMATS, SELF_OK), 0);
    cm_rpc_channel_t *ch = channel(&p);
    for (int i = 0; i < n; i++) {
        tc_case_t *c = &cases[i];
        Tigress__Attest__V1__VerifyRequest rq;
        uint8_t *bufs[3] = {0};
        const char *pems[8], *tops[8];
        case_request(c, 1, &rq, bufs, pems, tops);
        cm_rpc_status_t st;
        Tigress__Attest__V1__VerifyResponse *r = call(ch, &rq, &st);
        if (st.code == GRPC_STATUS_OK && r) {
            c->ran = 1;
            c->got_valid = r->valid;
            snprintf(c->got_code, sizeof(c->got_code), "%s", r->code);
            if (r->valid) {
                assert_string_not_equal(r->format, "");
                assert_string_not_equal(r->attestation_type, "");
                assert_int_equal(r->aaguid.len, 16);
            }
            protobuf_c_message_free_unpacked(&r->base, NULL);
        } else {
            fprintf(stderr, "%s: grpc status %d %s\n", c->id, st.code, st.message);
        }
        for (int k = 0; k < 3; k++)
            free(bufs[k]);
    }
    int bad = tc_report("gRPC", cases, n);
    cm_rpc_channel_del(ch);
    int ex = th_proc_stop(&p, SIGTERM, 10000);
    assert_true(WIFEXITED(ex) && WEXITSTATUS(ex) == 0);
    tc_free(cases, n);
    assert_int_equal(bad, 0);
}

static char *http_get(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    char req[256];
    int n =
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return NULL;
    }
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap + 1);
    ssize_t r;
    while (len < cap && (r = read(fd, buf + len, cap - len)) > 0)
        len += (size_t)r;
    buf[len] = '\0';
    close(fd);
    return buf;
}

/* Production mode: no overrides, anchors from the shipped roots, receipt-time checks. */
static void test_production_policy(void **state)
{
    (void)state;
    tc_case_t *cases = NULL;
    int n = tc_load(&cases);
    assert_true(n > 0);
    th_proc_t p;
    assert_int_equal(start(&p, "--rp-id=example.org", ALL_FORMATS), 0);
    cm_rpc_channel_t *ch = channel(&p);

    assert_int_equal(cm_rpc_health_check(ch, "", 5000), 1);
    assert_int_equal(cm_rpc_health_check(ch, SERVICE, 5000), 1);
    assert_int_equal(cm_rpc_health_check(ch, "no.such.Service", 5000), -1);

    /* test overrides are refused without --allow-test-overrides */
    Tigress__Attest__V1__VerifyRequest rq;
    uint8_t *bufs[3] = {0};
    const char *pems[8], *tops[8];
    case_request(find(cases, n, "w3c-apple-es256"), 1, &rq, bufs, pems, tops);
    cm_rpc_status_t st;
    Tigress__Attest__V1__VerifyResponse *r = call(ch, &rq, &st);
    assert_int_equal(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    assert_null(r);
    /* no challenge: refused, never verified without one */
    rq.test_verify_time_unix = 0, rq.n_test_root_certs_pem = 0, rq.test_skip_chain = 0;
    rq.expected_challenge.len = 0;
    r = call(ch, &rq, &st);
    assert_int_equal(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    assert_null(r);
    /* an oversized attestation object is a verdict, not a crash */
    uint8_t *big = calloc(1, 70000);
    rq.expected_challenge.len = 32;
    rq.attestation_object.data = big, rq.attestation_object.len = 70000;
    r = call(ch, &rq, &st);
    assert_int_equal(st.code, GRPC_STATUS_OK);
    assert_false(r->valid);
    assert_string_equal(r->code, "INPUT_TOO_LARGE");
    protobuf_c_message_free_unpacked(&r->base, NULL);
    free(big);
    for (int i = 0; i < 3; i++)
        free(bufs[i]);

    /* the W3C test CA is not an Apple anchor */
    plain_verdict(ch, find(cases, n, "w3c-apple-es256"), NULL, NULL, "CHAIN_UNTRUSTED", 0);
    /* a real Apple attestation checked at receipt time: its leaf expired in 2020 */
    plain_verdict(ch, find(cases, n, "go-apple-2020-10"), NULL, NULL, "CERT_EXPIRED", 0);
    /* configured RP ID and the default origin policy (https://<rp-id>) */
    plain_verdict(ch, find(cases, n, "w3c-none-es256"), "", "", "OK", 1);
    plain_verdict(ch, find(cases, n, "w3c-none-es256"), "", "https://evil.example",
                  "ORIGIN_MISMATCH", 0);
    plain_verdict(ch, find(cases, n, "pyw-none-basic"), "", "", "ORIGIN_MISMATCH", 0);
    plain_verdict(ch, find(cases, n, "w3c-unsupported-format"), NULL, NULL, "UNSUPPORTED_FORMAT",
                  0);

    /* aggregate metrics only, by format and result */
    char *m = http_get(th_proc_port(&p, "admin_port"), "/metrics");
    assert_non_null(m);
    assert_non_null(
        strstr(m, "tigress_attestation_verifications_total{format=\"none\",result=\"valid\","
                  "code=\"OK\"} 1"));
    assert_non_null(strstr(m, "format=\"apple\",result=\"invalid\",code=\"CERT_EXPIRED\""));
    free(m);
    char *ready = http_get(th_proc_port(&p, "admin_port"), "/readyz");
    assert_non_null(ready);
    assert_non_null(strstr(ready, " 200 "));
    free(ready);

    cm_rpc_channel_del(ch);
    int ex = th_proc_stop(&p, SIGTERM, 10000);
    assert_true(WIFEXITED(ex) && WEXITSTATUS(ex) == 0);
    /* privacy: nothing from the attestations in the log */
    char *log = th_read_file(p.log_path, NULL);
    if (log) {
        assert_null(strstr(log, "example.org"));
        assert_null(strstr(log, "748210a2"));
        free(log);
    }
    tc_free(cases, n);
}

/* A fresh Apple-format attestation (make_apple_attestation.py, throw-away CA) verifies at
 * the time of receipt in production mode against the configured anchors; the same bytes
 * under another challenge or another RP ID do not. */
static void test_fresh_apple_at_receipt(void **state)
{
    (void)state;
    char dir[512], cmd[2048], anchors[600], json[16384];
    uint8_t chal[32];
    for (int i = 0; i < 32; i++)
        chal[i] = (uint8_t)(i * 7 + 1);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", chal[i]);
    assert_int_equal(th_tempdir("av-gen", dir, sizeof(dir)), 0);
    const char *src = getenv("TIGRESS_SRC_DIR");
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 '%s/tests/attestation-verifier/make_apple_attestation.py' "
             "--challenge-hex %s --rp-id relay.example --origin https://relay.example "
             "--out-dir '%s' 2>/dev/null",
             src ? src : ".", hex, dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(json, 1, sizeof(json) - 1, p);
    json[n] = '\0';
    if (pclose(p) != 0 || n == 0) {
        th_rmtree(dir);
        skip(); /* python3-cryptography missing */
    }
    cJSON *j = cJSON_Parse(json);
    assert_non_null(j);
    tc_case_t c;
    memset(&c, 0, sizeof(c));
    c.json = j;
    uint8_t *att, *cdj;
    size_t att_len, cdj_len;
    assert_int_equal(tc_b64(&c, "attestationObject", &att, &att_len), 0);
    assert_int_equal(tc_b64(&c, "clientDataJSON", &cdj, &cdj_len), 0);

    th_proc_t pr;
    snprintf(anchors, sizeof(anchors), "--trust-anchors-dir=%s", dir);
    char bin[1024];
    th_bin("attestation-verifier", bin, sizeof(bin));
    char *argv[] = {
        bin, "--listen=127.0.0.1:0", "--admin-listen=", anchors, "--rp-id=relay.example", NULL};
    assert_int_equal(th_proc_start(&pr, argv, 20000), 0);
    cm_rpc_channel_t *ch = channel(&pr);
    Tigress__Attest__V1__VerifyRequest rq = TIGRESS__ATTEST__V1__VERIFY_REQUEST__INIT;
    rq.attestation_object.data = att, rq.attestation_object.len = att_len;
    rq.client_data_json.data = cdj, rq.client_data_json.len = cdj_len;
    rq.expected_challenge.data = chal, rq.expected_challenge.len = 32;
    cm_rpc_status_t st;
    Tigress__Attest__V1__VerifyResponse *r = call(ch, &rq, &st);
    assert_int_equal(st.code, GRPC_STATUS_OK);
    assert_true(r->valid);
    assert_string_equal(r->code, "OK");
    assert_string_equal(r->format, "apple");
    assert_string_equal(r->attestation_type, "anonca");
    assert_int_equal(strlen(r->root_fingerprint), 64);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    chal[31] ^= 1; /* one payload byte changed -> another challenge */
    r = call(ch, &rq, &st);
    assert_int_equal(st.code, GRPC_STATUS_OK);
    assert_false(r->valid);
    assert_string_equal(r->code, "CHALLENGE_MISMATCH");
    protobuf_c_message_free_unpacked(&r->base, NULL);
    chal[31] ^= 1;
    rq.rp_id = "other.example";
    rq.expected_origin = "https://relay.example";
    r = call(ch, &rq, &st);
    assert_int_equal(st.code, GRPC_STATUS_OK);
    assert_string_equal(r->code, "RPID_HASH_MISMATCH");
    protobuf_c_message_free_unpacked(&r->base, NULL);

    cm_rpc_channel_del(ch);
    int ex = th_proc_stop(&pr, SIGTERM, 10000);
    assert_true(WIFEXITED(ex) && WEXITSTATUS(ex) == 0);
    free(att);
    free(cdj);
    cJSON_Delete(j);
    th_rmtree(dir);
}

typedef struct {
    cm_rpc_channel_t *ch;
    const Tigress__Attest__V1__VerifyRequest *rq;
    int ok;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < 40; i++) {
        cm_rpc_status_t st;
        Tigress__Attest__V1__VerifyResponse *r = call(w->ch, w->rq, &st);
        if (r && r->valid && strcmp(r->code, "OK") == 0)
            w->ok++;
        if (r)
            protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    return NULL;
}

/* Concurrent calls from several threads on one channel all get the same verdict. */
static void test_concurrent(void **state)
{
    (void)state;
    tc_case_t *cases = NULL;
    int n = tc_load(&cases);
    th_proc_t p;
    assert_int_equal(start(&p, "--allow-test-overrides", "--workers=4"), 0);
    cm_rpc_channel_t *ch = channel(&p);
    Tigress__Attest__V1__VerifyRequest rq;
    uint8_t *bufs[3] = {0};
    const char *pems[8], *tops[8];
    case_request(find(cases, n, "pyw-tpm-dell-xps-13"), 1, &rq, bufs, pems, tops);
    worker_t w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_t){.ch = ch, .rq = &rq, .ok = 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].ok, 40);
    }
    for (int i = 0; i < 3; i++)
        free(bufs[i]);
    cm_rpc_channel_del(ch);
    int ex = th_proc_stop(&p, SIGTERM, 10000);
    assert_true(WIFEXITED(ex) && WEXITSTATUS(ex) == 0);
    tc_free(cases, n);
}

/* --formats restricts what is accepted: anything else is UNSUPPORTED_FORMAT. */
static void test_formats_policy(void **state)
{
    (void)state;
    tc_case_t *cases = NULL;
    int n = tc_load(&cases);
    th_proc_t p;
    assert_int_equal(start(&p, "--formats=apple", "--rp-id=example.org"), 0);
    cm_rpc_channel_t *ch = channel(&p);
    plain_verdict(ch, find(cases, n, "w3c-none-es256"), NULL, NULL, "UNSUPPORTED_FORMAT", 0);
    cm_rpc_channel_del(ch);
    int ex = th_proc_stop(&p, SIGTERM, 10000);
    assert_true(WIFEXITED(ex) && WEXITSTATUS(ex) == 0);
    tc_free(cases, n);
}

/* Service defaults: `none` (no signature) is not accepted unless listed, nor is a packed
 * self attestation (signed by the new key itself) without --allow-self-attestation; an empty
 * --formats
 * (read by the core as "all") does not start; without --rp-id a request that carries none is
 * a deployment error (UNAVAILABLE), not a verdict on the client's attestation. */
static void test_default_formats(void **state)
{
    (void)state;
    tc_case_t *cases = NULL;
    int n = tc_load(&cases);
    th_proc_t p;
    fprintf(stderr, "(expected below: a verifier that refuses an empty --formats)\n");
    assert_int_equal(start(&p, "--formats=", "--rp-id=example.org"), -1);
    assert_int_equal(start(&p, "--formats= , ", NULL), -1);

    assert_int_equal(start(&p, "--rp-id=example.org", NULL), 0);
    cm_rpc_channel_t *ch = channel(&p);
    plain_verdict(ch, find(cases, n, "w3c-none-es256"), "", "", "UNSUPPORTED_FORMAT", 0);
    plain_verdict(ch, find(cases, n, "w3c-none-es256"), NULL, NULL, "UNSUPPORTED_FORMAT", 0);
    plain_verdict(ch, find(cases, n, "pyw-none-basic"), NULL, NULL, "UNSUPPORTED_FORMAT", 0);
    /* the other formats are still verified (the W3C CA is no configured anchor) */
    plain_verdict(ch, find(cases, n, "w3c-packed-es256"), NULL, NULL, "CHAIN_UNTRUSTED", 0);
    plain_verdict(ch, find(cases, n, "w3c-packed-self-es256"), NULL, NULL,
                  "SELF_ATTESTATION_NOT_ALLOWED", 0);
    /* the statement is still checked first: a broken one keeps its own code */
    plain_verdict(ch, find(cases, n, "w3c-packed-self-bad-signature"), NULL, NULL,
                  "SIGNATURE_INVALID", 0);
    cm_rpc_channel_del(ch);
    int ex = th_proc_stop(&p, SIGTERM, 10000);
    assert_true(WIFEXITED(ex) && WEXITSTATUS(ex) == 0);
    char *log = th_read_file(p.log_path, NULL);
    assert_non_null(log);
    /* the warnings are for opt-ins only */
    assert_null(strstr(log, "--formats includes none"));
    assert_null(strstr(log, "--allow-self-attestation is on"));
    free(log);

    assert_int_equal(start(&p, "--rp-id=example.org", SELF_OK), 0);
    ch = channel(&p);
    plain_verdict(ch, find(cases, n, "w3c-packed-self-es256"), NULL, NULL, "OK", 1);
    plain_verdict(ch, find(cases, n, "w3c-none-es256"), NULL, NULL, "UNSUPPORTED_FORMAT", 0);
    cm_rpc_channel_del(ch);
    ex = th_proc_stop(&p, SIGTERM, 10000);
    assert_true(WIFEXITED(ex) && WEXITSTATUS(ex) == 0);
    log = th_read_file(p.log_path, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "--allow-self-attestation is on"));
    free(log);

    assert_int_equal(start(&p, "--formats=none", NULL), 0);
    ch = channel(&p);
    plain_verdict(ch, find(cases, n, "w3c-none-es256"), NULL, NULL, "OK", 1);
    Tigress__Attest__V1__VerifyRequest rq;
    uint8_t *bufs[3] = {0};
    const char *pems[8], *tops[8];
    case_request(find(cases, n, "w3c-none-es256"), 0, &rq, bufs, pems, tops);
    rq.rp_id = "";
    cm_rpc_status_t st;
    Tigress__Attest__V1__VerifyResponse *r = call(ch, &rq, &st);
    assert_int_equal(st.code, GRPC_STATUS_UNAVAILABLE);
    assert_null(r);
    for (int i = 0; i < 3; i++)
        free(bufs[i]);
    cm_rpc_channel_del(ch);
    ex = th_proc_stop(&p, SIGTERM, 10000);
    assert_true(WIFEXITED(ex) && WEXITSTATUS(ex) == 0);
    log = th_read_file(p.log_path, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "--formats includes none"));
    assert_non_null(strstr(log, "no --rp-id"));
    free(log);
    tc_free(cases, n);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    cm_rpc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_cases),      cmocka_unit_test(test_production_policy),
        cmocka_unit_test(test_formats_policy), cmocka_unit_test(test_default_formats),
        cmocka_unit_test(test_concurrent),     cmocka_unit_test(test_fresh_apple_at_receipt),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cm_rpc_shutdown();
    return rc;
}
