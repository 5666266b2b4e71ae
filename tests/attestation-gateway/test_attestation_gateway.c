/* Device attestation through the gateway: the real gateway, mailbox-store and
 * attestation-verifier on ephemeral ports, driven by libcurl as a phone would. The attestations are
 * fresh `apple` (Apple Anonymous Attestation format) registrations made by
 * tests/attestation-verifier/make_apple_attestation.py with challenge = SHA-256 of the
 * payload bytes; their throw-away CAs are the verifier's only `apple` anchors. The verifier
 * gets the RP ID and origin the generator used (--rp-id; the default origin https://<rp-id>),
 * since the gateway sends neither. What is asserted is status, error code, and whether the
 * mailbox exists afterwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cJSON.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cm_b64.h"
#include "cm_uuid.h"
#include "th.h"
#include "th_api.h"
#include "th_http.h"
#include "th_stack.h"

#define RP_ID "relay.example"
#define ORIGIN "https://" RP_ID

/* A WebAuthn registration as the header carries it: both members decoded. */
typedef struct {
    uint8_t *ao; /* owned: attestationObject (CBOR) */
    size_t aol;
    uint8_t *cdj; /* owned: clientDataJSON */
    size_t cdjl;
} att_t;

/* The shared fixture: one store, one verifier with the default config, and two gateways in
 * front of them (policy `required` and the default `verify-if-present`). */
typedef struct {
    char dir[512]; /* temp dir: store data, generator output, anchors */
    char anchors[600];
    th_proc_t store, verifier, gw_req, gw_vip;
    int store_port, verifier_port, req_port, vip_port;
    uint8_t p1[48], p2[40]; /* two payloads */
    att_t a1, a2;           /* apple attestations over p1 and over p2 */
    char *h1, *h2;          /* owned: their header values */
    CURL *curl;
} env_t;

static env_t E;

/* Processes one test starts itself; the teardown kills what a failed assertion left. */
static th_proc_t T_verifier, T_gw;

/* ---- processes --------------------------------------------------------------------------- */

static int stop_clean(th_proc_t *p, const char *what)
{
    return th_proc_stop_clean(p, what, 15000);
}

/* A verifier with the test anchors and |extra| flags (NULL-terminated, may be NULL). */
static int verifier_start(th_proc_t *p, const char *const *extra)
{
    char anchors[700];
    snprintf(anchors, sizeof(anchors), "--trust-anchors-dir=%s", E.anchors);
    const char *flags[] = {"--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0", anchors,
                           "--log-level=warn", NULL};
    return th_start(p, "attestation-verifier", flags, extra, 20000);
}

static int gateway_start(th_proc_t *p, int verifier_port, const char *policy)
{
    char store[64], target[64], pol[64];
    snprintf(store, sizeof(store), "--store-target=127.0.0.1:%d", E.store_port);
    snprintf(target, sizeof(target), "--attestation-target=127.0.0.1:%d", verifier_port);
    snprintf(pol, sizeof(pol), "--attestation-policy=%s", policy);
    const char *extra[] = {"--threads=1", "--log-level=warn", store, target, pol, NULL};
    return th_gateway_start(p, extra, 20000);
}

/* ---- attestations ------------------------------------------------------------------------ */

static void att_free(att_t *a)
{
    free(a->ao);
    free(a->cdj);
    memset(a, 0, sizeof(*a));
}

static int b64url_member(const cJSON *j, const char *name, uint8_t **out, size_t *len)
{
    const cJSON *s = cJSON_GetObjectItem(j, name);
    if (!cJSON_IsString(s))
        return -1;
    size_t n = strlen(s->valuestring);
    *out = malloc(cm_b64_decoded_max(n) + 1);
    if (!*out ||
        cm_b64_decode(CM_B64_URL, s->valuestring, n, *out, cm_b64_decoded_max(n) + 1, len) != 0)
        return -1;
    return 0;
}

/* Runs the generator for SHA-256(|payload|) into a fresh directory under the fixture, and
 * appends its CA to the verifier's apple.pem. 0, or -1 (python3-cryptography missing...). */
static int gen_apple(const uint8_t *payload, size_t plen, const char *name, att_t *a)
{
    uint8_t chal[SHA256_DIGEST_LENGTH];
    SHA256(payload, plen, chal);
    char hex[2 * SHA256_DIGEST_LENGTH + 1];
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(hex + 2 * i, 3, "%02x", chal[i]);
    char out[700], cmd[2400];
    snprintf(out, sizeof(out), "%s/%s", E.dir, name);
    const char *src = getenv("TIGRESS_SRC_DIR");
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 '%s/tests/attestation-verifier/make_apple_attestation.py' "
             "--challenge-hex %s --rp-id " RP_ID " --origin " ORIGIN " --out-dir '%s' && "
             "cat '%s/apple.pem' >> '%s/apple.pem'",
             src ? src : ".", hex, out, out, E.anchors);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char json[16384];
    size_t n = fread(json, 1, sizeof(json) - 1, p);
    json[n] = '\0';
    if (pclose(p) != 0 || n == 0)
        return -1;
    cJSON *j = cJSON_Parse(json);
    int rc = j && b64url_member(j, "attestationObject", &a->ao, &a->aol) == 0 &&
                     b64url_member(j, "clientDataJSON", &a->cdj, &a->cdjl) == 0
                 ? 0
                 : -1;
    cJSON_Delete(j);
    return rc;
}

/* The header value: base64url of {"attestationObject": b64url, "clientDataJSON": b64url}. */
static char *header_of(const att_t *a)
{
    char *ao = malloc(cm_b64_encoded_size(a->aol)), *cd = malloc(cm_b64_encoded_size(a->cdjl));
    assert_non_null(ao);
    assert_non_null(cd);
    cm_b64_encode(CM_B64_URL, a->ao, a->aol, ao);
    cm_b64_encode(CM_B64_URL, a->cdj, a->cdjl, cd);
    size_t jl = strlen(ao) + strlen(cd) + 64;
    char *json = malloc(jl);
    assert_non_null(json);
    jl = (size_t)snprintf(json, jl, "{\"attestationObject\":\"%s\",\"clientDataJSON\":\"%s\"}", ao,
                          cd);
    char *out = malloc(cm_b64_encoded_size(jl));
    assert_non_null(out);
    cm_b64_encode(CM_B64_URL, (const uint8_t *)json, jl, out);
    free(ao);
    free(cd);
    free(json);
    return out;
}

/* The same registration as `none`: {"fmt":"none","attStmt":{},"authData":<a's authData>},
 * same clientDataJSON. Well-formed and bound to the payload, but unsigned: anyone can make it.
 * authData is found as the byte string after the text key "authData" (the generator's
 * encoding; its length has a 1- or 2-byte head). */
static void none_of(const att_t *a, att_t *out)
{
    static const uint8_t key[] = {0x68, 'a', 'u', 't', 'h', 'D', 'a', 't', 'a'};
    const uint8_t *ad = NULL;
    for (size_t i = 0; i + sizeof(key) < a->aol && !ad; i++) {
        if (memcmp(a->ao + i, key, sizeof(key)) == 0)
            ad = a->ao + i + sizeof(key);
    }
    assert_non_null(ad);
    size_t left = a->aol - (size_t)(ad - a->ao), len, head;
    if (ad[0] == 0x58) {
        len = ad[1], head = 2;
    } else {
        assert_int_equal(ad[0], 0x59);
        len = (size_t)ad[1] << 8 | ad[2], head = 3;
    }
    assert_int_equal(head + len, left); /* authData is the last member */
    static const uint8_t prefix[] = {0xa3, 0x63, 'f', 'm', 't', 0x64, 'n', 'o', 'n',  'e',
                                     0x67, 'a',  't', 't', 'S', 't',  'm', 't', 0xa0, 0x68,
                                     'a',  'u',  't', 'h', 'D', 'a',  't', 'a'};
    out->aol = sizeof(prefix) + left;
    out->ao = malloc(out->aol);
    out->cdj = malloc(a->cdjl);
    assert_non_null(out->ao);
    assert_non_null(out->cdj);
    memcpy(out->ao, prefix, sizeof(prefix));
    memcpy(out->ao + sizeof(prefix), ad, left);
    memcpy(out->cdj, a->cdj, a->cdjl);
    out->cdjl = a->cdjl;
}

/* ---- HTTP -------------------------------------------------------------------------------- */

/* The shared client on |port| over HTTP/1.1 (|h2c| 0) or h2c with prior knowledge (1). */
static th_api_t target(int port, int h2c)
{
    return (th_api_t){.curl = E.curl, .proto = h2c ? TH_HTTP_H2C : TH_HTTP_H1, .port = port};
}

/* A mailbox this test creates: id, claim, and the header line buffers. */
typedef struct {
    char id[37], claim[37];
    char hclaim[64];
    char *hatt; /* owned: "deviceAttestation: ..." or NULL */
} mbx_t;

static void mbx_init(mbx_t *m, const char *att_header_value)
{
    memset(m, 0, sizeof(*m));
    assert_int_equal(cm_uuid_v4(m->id), 0);
    assert_int_equal(cm_uuid_v4(m->claim), 0);
    snprintf(m->hclaim, sizeof(m->hclaim), "deviceClaim: %s", m->claim);
    if (att_header_value) {
        size_t n = strlen(att_header_value) + 32;
        m->hatt = malloc(n);
        assert_non_null(m->hatt);
        snprintf(m->hatt, n, "deviceAttestation: %s", att_header_value);
    }
}

static void mbx_set_att(mbx_t *m, const char *name, const char *value)
{
    free(m->hatt);
    size_t n = strlen(value) + 64;
    m->hatt = malloc(n);
    assert_non_null(m->hatt);
    snprintf(m->hatt, n, "%s: %s", name, value);
}

/* POST /v1/m with payload |p| (the bytes the attestation must cover). */
static void create(int port, int h2c, const mbx_t *m, const uint8_t *p, size_t plen,
                   th_http_resp_t *r)
{
    char data[256], body[1024];
    cm_b64_encode(CM_B64_STD, p, plen, data);
    snprintf(body, sizeof(body),
             "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"Car Key\"},"
             "\"mailboxConfiguration\":{\"accessRights\":\"RWD\",\"timeToLive\":600}}",
             m->id, data);
    const char *h[] = {m->hclaim, m->hatt, NULL};
    th_api_t t = target(port, h2c);
    th_api_do(&t, "POST", "/v1/m", h, body, r);
}

/* PUT /v1/m/<id> with payload |p|. */
static void update(int port, const mbx_t *m, const uint8_t *p, size_t plen, th_http_resp_t *r)
{
    char data[256], body[1024], path[64];
    cm_b64_encode(CM_B64_STD, p, plen, data);
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"notificationToken\":{\"type\":\"com.google.fcm\",\"tokenData\":\"tok\"}}",
             data);
    snprintf(path, sizeof(path), "/v1/m/%s", m->id);
    const char *h[] = {m->hclaim, m->hatt, NULL};
    th_api_t t = target(port, 0);
    th_api_do(&t, "PUT", path, h, body, r);
}

/* GET preview status of |id| (200: stored, 404: not). */
static long preview(int port, const char *id)
{
    char path[64];
    snprintf(path, sizeof(path), "/v1/m/%s", id);
    th_http_resp_t r;
    th_api_t t = target(port, 0);
    th_api_do(&t, "GET", path, NULL, NULL, &r);
    long st = r.status;
    th_http_resp_free(&r);
    return st;
}

/* Secure read: asserts 200 and that the stored payload is exactly |p|. */
static void expect_payload(int port, const mbx_t *m, const uint8_t *p, size_t plen)
{
    char path[64], want[256];
    snprintf(path, sizeof(path), "/v1/m/%s", m->id);
    const char *h[] = {m->hclaim, NULL};
    th_http_resp_t r;
    th_api_t t = target(port, 0);
    th_api_do(&t, "POST", path, h, NULL, &r);
    if (r.status != 200)
        fail_msg("read %s: %ld %s", m->id, r.status, r.body);
    cm_b64_encode(CM_B64_STD, p, plen, want);
    cJSON *j = cJSON_Parse(r.body);
    const cJSON *d = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "payload"), "data");
    assert_true(cJSON_IsString(d));
    assert_string_equal(d->valuestring, want);
    cJSON_Delete(j);
    th_http_resp_free(&r);
}

/* ---- fixture ----------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (th_tempdir("avgw", E.dir, sizeof(E.dir)) != 0)
        return -1;
    snprintf(E.anchors, sizeof(E.anchors), "%s/anchors", E.dir);
    if (mkdir(E.anchors, 0700) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(E.p1); i++)
        E.p1[i] = (uint8_t)(i * 13 + 5);
    for (size_t i = 0; i < sizeof(E.p2); i++)
        E.p2[i] = (uint8_t)(0xa0 ^ i);
    if (gen_apple(E.p1, sizeof(E.p1), "gen1", &E.a1) != 0 ||
        gen_apple(E.p2, sizeof(E.p2), "gen2", &E.a2) != 0) {
        /* python3-cryptography is a test dependency (deploy/install-deps): fail, not skip */
        fprintf(stderr, "make_apple_attestation.py failed (python3-cryptography missing?)\n");
        return -1;
    }
    E.h1 = header_of(&E.a1);
    E.h2 = header_of(&E.a2);

    char data[700];
    snprintf(data, sizeof(data), "%s/store", E.dir);
    const char *sx[] = {"--log-level=warn", "--workers=2", "--sync=0", NULL};
    if (th_store_start(&E.store, data, 0, sx, 20000) != 0)
        return -1;
    E.store_port = th_proc_port(&E.store, "grpc_port");
    /* the default service config: no --formats, so `none` is not accepted */
    const char *vx[] = {"--rp-id=" RP_ID, NULL};
    if (verifier_start(&E.verifier, vx) != 0)
        return -1;
    E.verifier_port = th_proc_port(&E.verifier, "grpc_port");
    if (gateway_start(&E.gw_req, E.verifier_port, "required") != 0 ||
        gateway_start(&E.gw_vip, E.verifier_port, "verify-if-present") != 0)
        return -1;
    E.req_port = th_proc_port(&E.gw_req, "http_port");
    E.vip_port = th_proc_port(&E.gw_vip, "http_port");
    E.curl = curl_easy_init();
    return E.store_port > 0 && E.verifier_port > 0 && E.req_port > 0 && E.vip_port > 0 && E.curl
               ? 0
               : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (E.curl)
        curl_easy_cleanup(E.curl);
    if (E.gw_req.pid > 0 && stop_clean(&E.gw_req, "gateway (required)") != 0)
        rc = -1;
    if (E.gw_vip.pid > 0 && stop_clean(&E.gw_vip, "gateway (verify-if-present)") != 0)
        rc = -1;
    if (E.verifier.pid > 0 && stop_clean(&E.verifier, "attestation-verifier") != 0)
        rc = -1;
    if (E.store.pid > 0 && stop_clean(&E.store, "mailbox-store") != 0)
        rc = -1;
    /* privacy: nothing from the attestations in the verifier's log */
    char *log = E.verifier.log_path[0] ? th_read_file(E.verifier.log_path, NULL) : NULL;
    if (log && (strstr(log, RP_ID) || strstr(log, "test credential"))) {
        fprintf(stderr, "the verifier logged attestation content: %s\n", log);
        rc = -1;
    }
    free(log);
    att_free(&E.a1);
    att_free(&E.a2);
    free(E.h1);
    free(E.h2);
    th_rmtree(E.dir);
    curl_global_cleanup();
    return rc;
}

static int test_teardown(void **state)
{
    (void)state;
    if (T_gw.pid > 0)
        th_proc_kill9(&T_gw);
    if (T_verifier.pid > 0)
        th_proc_kill9(&T_verifier);
    return 0;
}

/* ---- tests ------------------------------------------------------------------------------- */

/* Policy `required`: a valid apple attestation over the payload creates the mailbox (both
 * header names, HTTP/1.1 and h2c); the stored payload is the attested one. */
static void create_valid_apple(void **state)
{
    (void)state;
    for (int h2c = 0; h2c < 2; h2c++) {
        mbx_t m;
        mbx_init(&m, NULL);
        mbx_set_att(&m, h2c ? "Mailbox-Device-Attestation" : "deviceAttestation", E.h1);
        th_http_resp_t r;
        create(E.req_port, h2c, &m, E.p1, sizeof(E.p1), &r);
        th_api_expect(&r, 200, NULL, "create with a valid apple attestation");
        assert_int_equal(preview(E.req_port, m.id), 200);
        expect_payload(E.req_port, &m, E.p1, sizeof(E.p1));
        free(m.hatt);
    }
}

/* The same attestation with one payload byte changed (first, middle, last byte, one bit
 * each): 401 invalid_attestation and nothing stored. */
static void create_payload_byte_changed(void **state)
{
    (void)state;
    static const size_t at[] = {0, sizeof(E.p1) / 2, sizeof(E.p1) - 1};
    for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
        uint8_t p[sizeof(E.p1)];
        memcpy(p, E.p1, sizeof(p));
        p[at[k]] ^= 0x01;
        mbx_t m;
        mbx_init(&m, E.h1);
        th_http_resp_t r;
        create(E.req_port, 0, &m, p, sizeof(p), &r);
        th_api_expect(&r, 401, "invalid_attestation", "one payload byte changed");
        assert_int_equal(preview(E.req_port, m.id), 404);
        /* and under verify-if-present too: present means checked */
        create(E.vip_port, 0, &m, p, sizeof(p), &r);
        th_api_expect(&r, 401, "invalid_attestation",
                      "one payload byte changed (verify-if-present)");
        assert_int_equal(preview(E.vip_port, m.id), 404);
        free(m.hatt);
    }
    /* a payload one byte shorter is another payload too */
    mbx_t m;
    mbx_init(&m, E.h1);
    th_http_resp_t r;
    create(E.req_port, 0, &m, E.p1, sizeof(E.p1) - 1, &r);
    th_api_expect(&r, 401, "invalid_attestation", "payload truncated");
    assert_int_equal(preview(E.req_port, m.id), 404);
    free(m.hatt);
}

/* `required` without a header: 401 attestation_required, nothing stored; `verify-if-present`
 * without a header: 200. */
static void policy_without_header(void **state)
{
    (void)state;
    mbx_t m;
    mbx_init(&m, NULL);
    th_http_resp_t r;
    create(E.req_port, 0, &m, E.p1, sizeof(E.p1), &r);
    th_api_expect(&r, 401, "attestation_required", "required, no header");
    assert_int_equal(preview(E.req_port, m.id), 404);
    create(E.req_port, 1, &m, E.p1, sizeof(E.p1), &r);
    th_api_expect(&r, 401, "attestation_required", "required, no header (h2c)");
    assert_int_equal(preview(E.req_port, m.id), 404);

    create(E.vip_port, 0, &m, E.p2, sizeof(E.p2), &r);
    th_api_expect(&r, 200, NULL, "verify-if-present, no header");
    assert_int_equal(preview(E.vip_port, m.id), 200);
    expect_payload(E.vip_port, &m, E.p2, sizeof(E.p2));
}

/* Update under `required`: the attestation made for the old payload is stale for the new one
 * (401, the old payload stays); one over the new payload is accepted (200, new payload). */
static void update_fresh_and_stale(void **state)
{
    (void)state;
    mbx_t m;
    mbx_init(&m, E.h1);
    th_http_resp_t r;
    create(E.req_port, 0, &m, E.p1, sizeof(E.p1), &r);
    th_api_expect(&r, 200, NULL, "create for update");

    update(E.req_port, &m, E.p2, sizeof(E.p2), &r); /* header still over p1 */
    th_api_expect(&r, 401, "invalid_attestation", "update with a stale attestation");
    expect_payload(E.req_port, &m, E.p1, sizeof(E.p1));

    mbx_set_att(&m, "Mailbox-Device-Attestation", E.h2);
    update(E.req_port, &m, E.p2, sizeof(E.p2), &r);
    th_api_expect(&r, 200, NULL, "update with an attestation over the new payload");
    expect_payload(E.req_port, &m, E.p2, sizeof(E.p2));

    /* no header on Update under `required` either */
    free(m.hatt);
    m.hatt = NULL;
    update(E.req_port, &m, E.p1, sizeof(E.p1), &r);
    th_api_expect(&r, 401, "attestation_required", "update without a header");
    expect_payload(E.req_port, &m, E.p2, sizeof(E.p2));
}

/* A well-formed `none` attestation (unsigned) over the right payload: the verifier's default
 * --formats does not accept it, so `required` cannot be passed with one (401, nothing stored;
 * also under verify-if-present). A verifier that lists `none` explicitly accepts the very same
 * header: the refusal is the policy, not a broken test object. */
static void none_refused_by_default(void **state)
{
    (void)state;
    att_t n;
    none_of(&E.a1, &n);
    char *hn = header_of(&n);
    att_free(&n);
    mbx_t m;
    mbx_init(&m, hn);
    th_http_resp_t r;
    create(E.req_port, 0, &m, E.p1, sizeof(E.p1), &r);
    th_api_expect(&r, 401, "invalid_attestation", "fmt none, default verifier, required");
    assert_int_equal(preview(E.req_port, m.id), 404);
    create(E.vip_port, 1, &m, E.p1, sizeof(E.p1), &r);
    th_api_expect(&r, 401, "invalid_attestation", "fmt none, default verifier, verify-if-present");
    assert_int_equal(preview(E.vip_port, m.id), 404);

    /* the verifier's aggregate metrics say why: the format, not a malformed object */
    th_http_resp_t mr;
    th_api_t admin = target(th_proc_port(&E.verifier, "admin_port"), 0);
    th_api_do(&admin, "GET", "/metrics", NULL, NULL, &mr);
    assert_int_equal(mr.status, 200);
    if (!strstr(mr.body, "tigress_attestation_verifications_total{format=\"none\",result="
                         "\"invalid\",code=\"UNSUPPORTED_FORMAT\"} 2"))
        fail_msg("verifier metrics: %s", mr.body);
    th_http_resp_free(&mr);

    const char *vx[] = {"--rp-id=" RP_ID, "--formats=apple,none", NULL};
    assert_int_equal(verifier_start(&T_verifier, vx), 0);
    assert_int_equal(gateway_start(&T_gw, th_proc_port(&T_verifier, "grpc_port"), "required"), 0);
    int port = th_proc_port(&T_gw, "http_port");
    create(port, 0, &m, E.p1, sizeof(E.p1), &r);
    th_api_expect(&r, 200, NULL, "fmt none, verifier with --formats=apple,none");
    assert_int_equal(preview(port, m.id), 200);
    free(m.hatt);
    free(hn);
    assert_int_equal(stop_clean(&T_gw, "gateway"), 0);
    assert_int_equal(stop_clean(&T_verifier, "attestation-verifier"), 0);
}

/* A verifier deployed without --rp-id (the gateway sends none) cannot judge any attestation:
 * the relay answers 503 (an outage the operator sees), never 200, and stores nothing. */
static void verifier_without_rp_id(void **state)
{
    (void)state;
    assert_int_equal(verifier_start(&T_verifier, NULL), 0);
    assert_int_equal(gateway_start(&T_gw, th_proc_port(&T_verifier, "grpc_port"), "required"), 0);
    int port = th_proc_port(&T_gw, "http_port");
    mbx_t m;
    mbx_init(&m, E.h1);
    th_http_resp_t r;
    create(port, 0, &m, E.p1, sizeof(E.p1), &r);
    th_api_expect(&r, 503, "unavailable", "verifier without --rp-id");
    assert_int_equal(preview(port, m.id), 404);
    free(m.hatt);
    assert_int_equal(stop_clean(&T_gw, "gateway"), 0);
    assert_int_equal(stop_clean(&T_verifier, "attestation-verifier"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(create_valid_apple, test_teardown),
        cmocka_unit_test_teardown(create_payload_byte_changed, test_teardown),
        cmocka_unit_test_teardown(policy_without_header, test_teardown),
        cmocka_unit_test_teardown(update_fresh_and_stale, test_teardown),
        cmocka_unit_test_teardown(none_refused_by_default, test_teardown),
        cmocka_unit_test_teardown(verifier_without_rp_id, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
