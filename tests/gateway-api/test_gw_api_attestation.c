/* Device attestation through the public API, in-process against the real mailbox-store: the
 * policies (off, verify-if-present, required) and, with the real attestation-verifier, a WebAuthn
 * "packed" self attestation made here over the payload. Apple-format attestations are in
 * tests/attestation-gateway. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "cm_b64.h"
#include "th_api.h"

static th_api_env_t E; /* the shared store and the API in-process (default policy) */
#define API (&E.api)

/* What one test starts; the teardown frees what a failed assertion left. */
static th_gwapi_t *T_gw;
static th_proc_t T_verifier;

static int group_setup(void **state)
{
    return th_api_env_start(&E, "gwatt");
}

static int group_teardown(void **state)
{
    return th_api_env_stop(&E);
}

static int test_teardown(void **state)
{
    th_gwapi_free(T_gw);
    T_gw = NULL;
    if (T_verifier.pid > 0)
        th_proc_kill9(&T_verifier);
    return 0;
}

/* With the default policy (verify-if-present) and no verifier configured, a request carrying
 * an attestation cannot be checked: 503 and nothing stored. Without one it goes through. */
static void attestation_without_verifier(void **state)
{
    char claim[37], id[37], data[100], body[1024];
    th_api_uuid(claim);
    th_api_uuid(id);
    th_api_payload_b64(4, 32, data);
    snprintf(
        body, sizeof(body),
        "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
        "\"displayInformation\":{\"title\":\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60}}",
        id, data);
    const char *h[] = {th_api_hdr(0, "deviceClaim: %s", claim), "deviceAttestation: e30", NULL};
    th_http_resp_t r;
    th_api_do(API, "POST", "/v1/m", h, body, &r);
    th_api_expect_error(&r, 503, NULL);
    th_http_resp_free(&r);
    assert_int_equal(th_api_preview(API, id, &r), 404);
    th_http_resp_free(&r);
    const char *h2[] = {h[0], NULL};
    th_api_do(API, "POST", "/v1/m", h2, body, &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);
}

/* Policy "required" against a verifier address where nothing listens: a missing or malformed
 * attestation is refused (401) before any backend is asked; a well-formed one that cannot be
 * verified is a 503; nothing is stored in any case. "required" without a verifier, or an
 * unknown policy, is a configuration the API refuses. */
static void attestation_required(void **state)
{
    gw_backend_config_t bc;
    gw_api_config_t ac;
    th_gwapi_defaults(E.store_port, &bc, &ac);
    th_gwapi_t *bad = NULL;
    fprintf(stderr, "(expected below: two configurations refused)\n");
    ac.attestation_policy = "required";
    assert_int_equal(th_gwapi_new(&bc, &ac, &bad), -1);
    ac.attestation_policy = "maybe";
    assert_int_equal(th_gwapi_new(&bc, &ac, &bad), -1);

    ac.attestation_policy = "required";
    bc.attest_target = "127.0.0.1:1";
    assert_int_equal(th_gwapi_new(&bc, &ac, &T_gw), 0);
    th_api_t t = {.inproc = T_gw};
    char claim[37], id[37], data[100], body[1024];
    th_api_uuid(claim);
    th_api_uuid(id);
    th_api_payload_b64(4, 32, data);
    snprintf(
        body, sizeof(body),
        "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
        "\"displayInformation\":{\"title\":\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60}}",
        id, data);
    th_http_resp_t r;
    const char *h0[] = {th_api_hdr(0, "deviceClaim: %s", claim), NULL};
    th_api_do(&t, "POST", "/v1/m", h0, body, &r);
    th_api_expect_error(&r, 401, "attestation_required");
    th_http_resp_free(&r);
    const char *h1[] = {h0[0], "Mailbox-Device-Attestation: !!notbase64!!", NULL};
    th_api_do(&t, "POST", "/v1/m", h1, body, &r);
    th_api_expect_error(&r, 401, "invalid_attestation");
    th_http_resp_free(&r);
    /* {"attestationObject":"oP8A","clientDataJSON":"e30"} */
    const char *h2[] = {h0[0],
                        "deviceAttestation: "
                        "eyJhdHRlc3RhdGlvbk9iamVjdCI6Im9QOEEiLCJjbGllbnREYXRhSlNPTiI6ImUzMCJ9",
                        NULL};
    th_api_do(&t, "POST", "/v1/m", h2, body, &r);
    th_api_expect_error(&r, 503, "unavailable");
    th_http_resp_free(&r);
    /* reads need no attestation */
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", id);
    th_api_do(&t, "GET", path, NULL, NULL, &r);
    th_api_expect_error(&r, 404, "not_found");
    th_http_resp_free(&r);
    th_gwapi_free(T_gw);
    T_gw = NULL;
}

/* ---- a real WebAuthn "packed" self attestation, made here -------------------------------- */

static size_t put_cbor_bytes_hdr(uint8_t *o, uint8_t major, size_t n)
{
    if (n < 24) {
        o[0] = (uint8_t)(major << 5 | n);
        return 1;
    }
    if (n < 256) {
        o[0] = (uint8_t)(major << 5 | 24);
        o[1] = (uint8_t)n;
        return 2;
    }
    o[0] = (uint8_t)(major << 5 | 25);
    o[1] = (uint8_t)(n >> 8);
    o[2] = (uint8_t)n;
    return 3;
}

/* Builds the deviceAttestation header value for |payload| (the decoded payload.data bytes):
 * a fresh P-256 credential, authData for RP ID "relay.example" (UP, AT), clientDataJSON with
 * challenge = base64url(SHA-256(payload)) and origin https://relay.example, and a packed self
 * attestation signature over authData || SHA-256(clientDataJSON). Returns a malloc'd string. */
static char *make_attestation(const uint8_t *payload, size_t plen)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    uint8_t x[32], y[32];
    BIGNUM *bx = NULL, *by = NULL;
    assert_true(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &bx));
    assert_true(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &by));
    assert_int_equal(BN_bn2binpad(bx, x, 32), 32);
    assert_int_equal(BN_bn2binpad(by, y, 32), 32);
    BN_free(bx);
    BN_free(by);

    uint8_t auth[256];
    size_t al = 0;
    SHA256((const uint8_t *)"relay.example", 13, auth);
    al = 32;
    auth[al++] = 0x41;            /* UP | AT */
    memset(auth + al, 0, 4 + 16); /* signCount, AAGUID */
    al += 20;
    auth[al++] = 0;
    auth[al++] = 16; /* credentialId length */
    for (int i = 0; i < 16; i++)
        auth[al++] = (uint8_t)(0xc0 + i);
    static const uint8_t cose_head[] = {0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20};
    memcpy(auth + al, cose_head, sizeof(cose_head)); /* {1:2, 3:-7, -1:1, -2:x, -3:y} */
    al += sizeof(cose_head);
    memcpy(auth + al, x, 32);
    al += 32;
    auth[al++] = 0x22;
    auth[al++] = 0x58;
    auth[al++] = 0x20;
    memcpy(auth + al, y, 32);
    al += 32;

    uint8_t chal[32];
    SHA256(payload, plen, chal);
    char chal64[64], cdj[256];
    cm_b64_encode(CM_B64_URL, chal, 32, chal64);
    int cl = snprintf(cdj, sizeof(cdj),
                      "{\"type\":\"webauthn.create\",\"challenge\":\"%s\","
                      "\"origin\":\"https://relay.example\",\"crossOrigin\":false}",
                      chal64);

    uint8_t tbs[512], sig[128];
    memcpy(tbs, auth, al);
    SHA256((const uint8_t *)cdj, (size_t)cl, tbs + al);
    size_t sl = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestSign(md, sig, &sl, tbs, al + 32), 1);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key);

    /* {"fmt":"packed","attStmt":{"alg":-7,"sig":h'..'},"authData":h'..'} */
    uint8_t ao[1024];
    size_t n = 0;
    static const uint8_t head[] = {0xa3, 0x63, 'f',  'm', 't', 0x66, 'p',  'a', 'c', 'k',
                                   'e',  'd',  0x67, 'a', 't', 't',  'S',  't', 'm', 't',
                                   0xa2, 0x63, 'a',  'l', 'g', 0x26, 0x63, 's', 'i', 'g'};
    memcpy(ao, head, sizeof(head));
    n = sizeof(head);
    n += put_cbor_bytes_hdr(ao + n, 2, sl);
    memcpy(ao + n, sig, sl);
    n += sl;
    static const uint8_t ad[] = {0x68, 'a', 'u', 't', 'h', 'D', 'a', 't', 'a'};
    memcpy(ao + n, ad, sizeof(ad));
    n += sizeof(ad);
    n += put_cbor_bytes_hdr(ao + n, 2, al);
    memcpy(ao + n, auth, al);
    n += al;

    char ao64[2048], cdj64[512], json[3000];
    cm_b64_encode(CM_B64_URL, ao, n, ao64);
    cm_b64_encode(CM_B64_URL, (const uint8_t *)cdj, (size_t)cl, cdj64);
    int jl = snprintf(json, sizeof(json),
                      "{\"attestationObject\":\"%s\",\"clientDataJSON\":\"%s\"}", ao64, cdj64);
    char *out = malloc(cm_b64_encoded_size((size_t)jl));
    cm_b64_encode(CM_B64_URL, (const uint8_t *)json, (size_t)jl, out);
    return out;
}

/* Device attestation with the real attestation-verifier: a valid attestation
 * over the payload creates the mailbox; the same attestation with one payload byte changed is
 * refused with 401 and nothing is stored; Update is checked the same way. */
static void attestation_verified(void **state)
{
    char bin[512];
    th_bin("attestation-verifier", bin, sizeof(bin));
    if (access(bin, X_OK) != 0)
        skip();
    char *argv[] = {bin, "--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0",
                    "--rp-id=relay.example", "--log-level=warn",
                    /* this test builds a packed self attestation (refused by default) */
                    "--allow-self-attestation=1", NULL};
    assert_int_equal(th_proc_start(&T_verifier, argv, 20000), 0);
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", th_proc_port(&T_verifier, "grpc_port"));
    gw_backend_config_t bc;
    gw_api_config_t ac;
    th_gwapi_defaults(E.store_port, &bc, &ac);
    bc.attest_target = target;
    ac.attestation_policy = "required";
    assert_int_equal(th_gwapi_new(&bc, &ac, &T_gw), 0);
    th_api_t t = {.inproc = T_gw};

    uint8_t payload[40];
    for (int i = 0; i < 40; i++)
        payload[i] = (uint8_t)(i * 7);
    char *att = make_attestation(payload, sizeof(payload));
    char ahdr[4096];
    snprintf(ahdr, sizeof(ahdr), "deviceAttestation: %s", att);

    char claim[37], id[37], data[100], body[1024];
    th_api_uuid(claim);
    th_api_uuid(id);
    const char *h[] = {th_api_hdr(0, "deviceClaim: %s", claim), ahdr, NULL};
    th_http_resp_t r;
    /* one payload byte changed: the attestation no longer covers it */
    payload[39] ^= 1;
    cm_b64_encode(CM_B64_STD, payload, sizeof(payload), data);
    payload[39] ^= 1;
    snprintf(body, sizeof(body),
             "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60,"
             "\"accessRights\":\"RWD\"}}",
             id, data);
    th_api_do(&t, "POST", "/v1/m", h, body, &r);
    th_api_expect_error(&r, 401, "invalid_attestation");
    th_http_resp_free(&r);
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", id);
    th_api_do(&t, "GET", path, NULL, NULL, &r);
    th_api_expect_error(&r, 404, "not_found");
    th_http_resp_free(&r);
    /* the payload it was made for */
    cm_b64_encode(CM_B64_STD, payload, sizeof(payload), data);
    snprintf(body, sizeof(body),
             "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"t\"},\"mailboxConfiguration\":{\"timeToLive\":60,"
             "\"accessRights\":\"RWD\"}}",
             id, data);
    th_api_do(&t, "POST", "/v1/m", h, body, &r);
    if (r.status != 200)
        fail_msg("valid attestation: %ld %s (verifier log %s)", r.status, r.body,
                 T_verifier.log_path);
    th_http_resp_free(&r);
    free(att);

    /* Update: a new payload needs its own attestation */
    uint8_t p2[32];
    memset(p2, 0x77, sizeof(p2));
    cm_b64_encode(CM_B64_STD, p2, sizeof(p2), data);
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"notificationToken\":{\"type\":\"webhook\",\"tokenData\":\"https://h.example/\"}}",
             data);
    th_api_do(&t, "PUT", path, h, body, &r); /* old attestation */
    th_api_expect_error(&r, 401, "invalid_attestation");
    th_http_resp_free(&r);
    att = make_attestation(p2, sizeof(p2));
    snprintf(ahdr, sizeof(ahdr), "Mailbox-Device-Attestation: %s", att);
    free(att);
    th_api_do(&t, "PUT", path, h, body, &r);
    if (r.status != 200)
        fail_msg("update with a valid attestation: %ld %s", r.status, r.body);
    th_http_resp_free(&r);
    /* reads need none, and see the update */
    const char *hr[] = {h[0], NULL};
    th_api_do(&t, "POST", path, hr, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, data));
    th_http_resp_free(&r);
    th_gwapi_free(T_gw);
    T_gw = NULL;
    assert_int_equal(th_proc_stop_clean(&T_verifier, "attestation-verifier", 15000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(attestation_without_verifier, test_teardown),
        cmocka_unit_test_teardown(attestation_required, test_teardown),
        cmocka_unit_test_teardown(attestation_verified, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
