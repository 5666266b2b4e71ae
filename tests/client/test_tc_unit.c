/* Unit tests of the client library's pure parts: AES-GCM sealing against the published GCM
 * test vectors (McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 1-4 for
 * AES-128 and 13-16 for AES-256, 96-bit IVs, as used for NIST SP 800-38D), the payload format,
 * share URL parsing and building, the relay error mapping, the preview parser and the body
 * size arithmetic. No network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <cmocka.h>

#include "cm_b64.h"
#include "tigress_client.h"

/* ---- helpers ----------------------------------------------------------------------------- */

static size_t unhex(const char *h, uint8_t *out)
{
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

/* ---- GCM known answers ------------------------------------------------------------------- */

typedef struct {
    const char *name, *key, *iv, *aad, *pt, *ct, *tag;
} gcm_vector_t;

#define P64                                                                                        \
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6" \
    "b525b16aedf5aa0de657ba637b391aafd255"
#define P60                                                                                        \
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6" \
    "b525b16aedf5aa0de657ba637b39"
#define K128 "feffe9928665731c6d6a8f9467308308"
#define IVC "cafebabefacedbaddecaf888"
#define AAD "feedfacedeadbeeffeedfacedeadbeefabaddad2"
#define Z16 "00000000000000000000000000000000"
#define Z12 "000000000000000000000000"

static const gcm_vector_t vectors[] = {
    {"TC1 AES-128", Z16, Z12, "", "", "", "58e2fccefa7e3061367f1d57a4e7455a"},
    {"TC2 AES-128", Z16, Z12, "", Z16, "0388dace60b6a392f328c2b971b2fe78",
     "ab6e47d42cec13bdf53a67b21257bddf"},
    {"TC3 AES-128", K128, IVC, "", P64,
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac8"
     "4aa051ba30b396a0aac973d58e091473f5985",
     "4d5c2af327cd64a62cf35abd2ba6fab4"},
    {"TC4 AES-128", K128, IVC, AAD, P60,
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac8"
     "4aa051ba30b396a0aac973d58e091",
     "5bc94fbc3221a5db94fae95ae7121a47"},
    {"TC13 AES-256", Z16 Z16, Z12, "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"TC14 AES-256", Z16 Z16, Z12, "", Z16, "cea7403d4d606b6e074ec5d3baf39d18",
     "d0d1c8a799996bf0265b98b5d48ab919"},
    {"TC15 AES-256", K128 K128, IVC, "", P64,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b10568"
     "28838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"TC16 AES-256", K128 K128, IVC, AAD, P60,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b10568"
     "28838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

/* Each vector under both names of its key size: the same bytes, IV || C || T. */
static void gcm_vectors(void **state)
{
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        const gcm_vector_t *v = &vectors[i];
        uint8_t key[32], iv[12], aad[64], pt[64], ct[64], tag[16];
        size_t kl = unhex(v->key, key), al = unhex(v->aad, aad), pl = unhex(v->pt, pt);
        size_t cl = unhex(v->ct, ct);
        unhex(v->iv, iv);
        unhex(v->tag, tag);
        tc_payload_type_t names[2] = {kl == 16 ? TC_AES128 : TC_AES256,
                                      kl == 16 ? TC_AEAD_AES_128_GCM : TC_AEAD_AES_256_GCM};
        for (int k = 0; k < 2; k++) {
            uint8_t *out = NULL, *back = NULL;
            size_t ol = 0, bl = 0;
            assert_int_equal(
                tc_seal_with_iv(names[k], key, kl, iv, al ? aad : NULL, al, pt, pl, &out, &ol),
                TC_OK);
            print_message("%s as %s\n", v->name, tc_payload_type_name(names[k]));
            assert_int_equal(ol, 12 + cl + 16);
            assert_memory_equal(out, iv, 12);
            if (cl)
                assert_memory_equal(out + 12, ct, cl);
            assert_memory_equal(out + 12 + cl, tag, 16);
            assert_int_equal(tc_open(names[k], key, kl, out, ol, al ? aad : NULL, al, &back, &bl),
                             TC_OK);
            assert_int_equal(bl, pl);
            if (pl)
                assert_memory_equal(back, pt, pl);
            tc_free(back, bl);
            /* any flipped bit (IV, ciphertext or tag) fails the check */
            for (size_t pos = 0; pos < ol; pos += 7) {
                out[pos] ^= 0x01;
                back = (uint8_t *)1;
                assert_int_equal(
                    tc_open(names[k], key, kl, out, ol, al ? aad : NULL, al, &back, &bl),
                    TC_ERR_INTEGRITY);
                assert_ptr_equal(back, (uint8_t *)1); /* nothing handed out */
                out[pos] ^= 0x01;
            }
            tc_free(out, ol);
        }
    }
}

static void seal_roundtrip_and_errors(void **state)
{
    const char *names[] = {"AES128", "AES256", "AEAD_AES_128_GCM", "AEAD_AES_256_GCM"};
    for (int i = 0; i < 4; i++) {
        tc_payload_type_t t;
        assert_int_equal(tc_payload_type_parse(names[i], &t), TC_OK);
        assert_string_equal(tc_payload_type_name(t), names[i]);
        uint8_t secret[TC_SECRET_MAX], *sealed = NULL, *pt = NULL;
        size_t sl = 0, n = 0, pl = 0;
        assert_int_equal(tc_secret_new(t, secret, &sl), TC_OK);
        assert_int_equal(sl, (i % 2) ? 32 : 16);
        const uint8_t msg[] = "a car key";
        assert_int_equal(tc_seal(t, secret, sl, msg, sizeof(msg), &sealed, &n), TC_OK);
        assert_int_equal(n, sizeof(msg) + TC_SEAL_OVERHEAD);
        assert_int_equal(tc_open(t, secret, sl, sealed, n, NULL, 0, &pt, &pl), TC_OK);
        assert_memory_equal(pt, msg, sizeof(msg));
        tc_free(pt, pl);
        /* a wrong Secret of the right length is an integrity failure, not a crash */
        secret[0] ^= 0x80;
        assert_int_equal(tc_open(t, secret, sl, sealed, n, NULL, 0, &pt, &pl), TC_ERR_INTEGRITY);
        /* a Secret of the other length does not fit the type */
        assert_int_equal(tc_open(t, secret, sl == 16 ? 32 : 16, sealed, n, NULL, 0, &pt, &pl),
                         TC_ERR_SECRET);
        /* shorter than IV + tag */
        assert_int_equal(tc_open(t, secret, sl, sealed, TC_SEAL_OVERHEAD - 1, NULL, 0, &pt, &pl),
                         TC_ERR_INTEGRITY);
        tc_free(sealed, n);
    }
    tc_payload_type_t t;
    assert_int_equal(tc_payload_type_parse("aes128", &t), TC_ERR_INVALID_ARG);
    assert_int_equal(tc_payload_type_parse("AES192", &t), TC_ERR_INVALID_ARG);
    /* two seals of the same plaintext differ (fresh IV) */
    uint8_t key[16] = {0}, *a, *b;
    size_t al, bl;
    assert_int_equal(tc_seal(TC_AES128, key, 16, key, 16, &a, &al), TC_OK);
    assert_int_equal(tc_seal(TC_AES128, key, 16, key, 16, &b, &bl), TC_OK);
    assert_memory_not_equal(a, b, 12);
    tc_free(a, al);
    tc_free(b, bl);
}

/* ---- share URLs -------------------------------------------------------------------------- */

#define ID "2bba630e-519b-4aec-bf63-0242ac130002"

static void url_parse_good(void **state)
{
    tc_share_t s;
    /* the sample implementation's form: ?v= vertical, standard base64 with padding */
    assert_int_equal(
        tc_share_parse("https://www.example.com/v1/m/" ID "?v=c#hXlr6aRC7KgJpOLTNZaLsw==", &s),
        TC_OK);
    assert_string_equal(s.api_url, "https://www.example.com/v1/m/" ID);
    assert_string_equal(s.relay_base, "https://www.example.com");
    assert_string_equal(s.mailbox_id, ID);
    assert_string_equal(s.vertical, "c");
    assert_int_equal(s.secret_len, 16);
    uint8_t want[16];
    size_t n;
    assert_int_equal(cm_b64_decode(CM_B64_STD, "hXlr6aRC7KgJpOLTNZaLsw==", 24, want, 16, &n), 0);
    assert_memory_equal(s.secret, want, 16);
    /* the same Secret base64url without padding, and percent-encoded padding */
    tc_share_t u, p;
    assert_int_equal(
        tc_share_parse("https://www.example.com/v1/m/" ID "#hXlr6aRC7KgJpOLTNZaLsw", &u), TC_OK);
    assert_memory_equal(u.secret, want, 16);
    assert_int_equal(
        tc_share_parse("https://www.example.com/v1/m/" ID "#hXlr6aRC7KgJpOLTNZaLsw%3D%3D", &p),
        TC_OK);
    assert_memory_equal(p.secret, want, 16);
    assert_string_equal(u.vertical, "");
    /* trailing slashes, upper-case id and host, a port, a path prefix, other query params */
    assert_int_equal(tc_share_parse("HTTPS://Relay.Example:8443/tigress/v1/m/"
                                    "2BBA630E-519B-4AEC-BF63-0242AC130002///?x=1&v=hotel%2Dkey",
                                    &s),
                     TC_OK);
    assert_string_equal(s.api_url, "https://relay.example:8443/tigress/v1/m/" ID);
    assert_string_equal(s.relay_base, "https://relay.example:8443/tigress");
    assert_string_equal(s.vertical, "hotel-key");
    assert_int_equal(s.secret_len, 0); /* no fragment: fine for delete/preview */
    /* 32-byte Secret, IPv6 loopback */
    assert_int_equal(tc_share_parse("http://[::1]:8080/v1/m/" ID
                                    "#AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
                                    &s),
                     TC_OK);
    assert_int_equal(s.secret_len, 32);
    assert_int_equal(s.secret[31], 31);
    tc_share_wipe(&s);
    assert_int_equal(s.secret_len, 0);
    assert_int_equal(s.secret[31], 0);
}

static void url_parse_bad(void **state)
{
    static const struct {
        const char *url;
        tc_err_t want;
    } bad[] = {
        {"", TC_ERR_URL},
        {"relay.example/v1/m/" ID, TC_ERR_URL},               /* no scheme */
        {"ftp://relay.example/v1/m/" ID, TC_ERR_URL},         /* other scheme */
        {"https:///v1/m/" ID, TC_ERR_URL},                    /* no host */
        {"https://user@relay.example/v1/m/" ID, TC_ERR_URL},  /* user info */
        {"https://relay.example:0/v1/m/" ID, TC_ERR_URL},     /* port 0 */
        {"https://relay.example:65536/v1/m/" ID, TC_ERR_URL}, /* port too big */
        {"https://relay.example/v1/m/", TC_ERR_URL},          /* no id */
        {"https://relay.example/v1/" ID, TC_ERR_URL},         /* not /v1/m/ */
        {"https://relay.example/v2/m/" ID, TC_ERR_URL},       /* another version */
        {"https://relay.example/v1/m/2bba630e-519b-11ec-bf63-0242ac130002", TC_ERR_URL}, /* v1 */
        {"https://relay.example/v1/m/" ID "/extra", TC_ERR_URL}, /* more after the id */
        {"https://relay.example/a/../v1/m/" ID, TC_ERR_URL},     /* dot segments */
        {"https://relay.example//v1/m/" ID, TC_ERR_URL},         /* empty segment */
        {"https://relay.example/v1/m/" ID " #x", TC_ERR_URL},    /* space */
        {"https://relay.example/v1/m/" ID "#", TC_ERR_SECRET},   /* empty fragment */
        {"https://relay.example/v1/m/" ID "#hXlr6aRC7KgJ!OLTNZaLsw", TC_ERR_SECRET},  /* char */
        {"https://relay.example/v1/m/" ID "#hXlr6aRC7KgJpOLTNZaL", TC_ERR_SECRET},    /* 15 B */
        {"https://relay.example/v1/m/" ID "#hXlr6aRC7KgJpOLTNZaLsw=", TC_ERR_SECRET}, /* pad */
        {"https://relay.example/v1/m/" ID "#hXlr6aRC7KgJpOLTNZaLsx", TC_ERR_SECRET},  /* bits */
        {"https://relay.example/v1/m/" ID "#%3", TC_ERR_SECRET},  /* bad escape */
        {"https://relay.example/v1/m/" ID "#a#b", TC_ERR_SECRET}, /* second '#' */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tc_share_t s;
        tc_err_t e = tc_share_parse(bad[i].url, &s);
        if (e != bad[i].want)
            fail_msg("%s: got %s, want %s", bad[i].url, tc_err_name(e), tc_err_name(bad[i].want));
        assert_int_equal(s.secret_len, 0);
    }
    tc_share_t s;
    assert_int_equal(tc_share_parse(NULL, &s), TC_ERR_URL);
    char longurl[TC_URL_MAX + 10];
    memset(longurl, 'a', sizeof(longurl) - 1);
    longurl[sizeof(longurl) - 1] = '\0';
    memcpy(longurl, "https://", 8);
    assert_int_equal(tc_share_parse(longurl, &s), TC_ERR_URL);
}

static void url_build_and_relay_base(void **state)
{
    uint8_t secret[32];
    for (int i = 0; i < 32; i++)
        secret[i] = (uint8_t)(0xf0 + i);
    char *u = NULL;
    assert_int_equal(tc_share_build("https://relay.example/v1/m/" ID, secret, 16, &u), TC_OK);
    assert_string_equal(u, "https://relay.example/v1/m/" ID "#8PHy8_T19vf4-fr7_P3-_w");
    tc_share_t s;
    assert_int_equal(tc_share_parse(u, &s), TC_OK);
    assert_memory_equal(s.secret, secret, 16);
    tc_free(u, strlen(u) + 1);
    assert_int_equal(tc_share_build("https://relay.example/v1/m/" ID "/", secret, 32, &u), TC_OK);
    assert_int_equal(tc_share_parse(u, &s), TC_OK);
    assert_int_equal(s.secret_len, 32);
    assert_memory_equal(s.secret, secret, 32);
    tc_free(u, strlen(u) + 1);
    assert_int_equal(tc_share_build("https://relay.example/v1/m/" ID, secret, 24, &u),
                     TC_ERR_SECRET);
    assert_int_equal(tc_share_build("https://relay.example/v1/m/" ID "#x", secret, 16, &u),
                     TC_ERR_URL);
    assert_int_equal(tc_share_build("https://relay.example/m/" ID, secret, 16, &u), TC_ERR_URL);

    char base[TC_URL_MAX];
    assert_int_equal(tc_relay_base_parse("https://Relay.Example:8443///", base), TC_OK);
    assert_string_equal(base, "https://relay.example:8443");
    assert_int_equal(tc_relay_base_parse("http://127.0.0.1:8080/prefix/", base), TC_OK);
    assert_string_equal(base, "http://127.0.0.1:8080/prefix");
    assert_int_equal(tc_relay_base_parse("https://relay.example/?q", base), TC_ERR_URL);
    assert_int_equal(tc_relay_base_parse("https://relay.example/#f", base), TC_ERR_URL);
    assert_int_equal(tc_relay_base_parse("relay.example", base), TC_ERR_URL);

    assert_true(tc_url_is_loopback("http://127.0.0.1:8080/"));
    assert_true(tc_url_is_loopback("http://127.9.9.9/"));
    assert_true(tc_url_is_loopback("http://localhost:1/"));
    assert_true(tc_url_is_loopback("http://[::1]:80/"));
    assert_false(tc_url_is_loopback("http://128.0.0.1/"));
    assert_false(tc_url_is_loopback("http://relay.example/"));
    assert_false(tc_url_is_loopback("http://localhost.example/"));
}

/* ---- relay errors, preview, sizes ---------------------------------------------------------- */

static void relay_errors(void **state)
{
    static const struct {
        long status;
        const char *body;
        tc_err_t want;
        const char *code;
    } cases[] = {
        {200, "{}", TC_OK, ""},
        {201, "", TC_OK, ""},
        {404, "{\"error\":{\"code\":\"not_found\",\"message\":\"mailbox not found\"}}",
         TC_ERR_NOT_FOUND, "not_found"},
        {401, "{\"error\":{\"code\":\"unauthorized\",\"message\":\"x\"}}", TC_ERR_UNAUTHORIZED,
         "unauthorized"},
        {401, "{\"error\":{\"code\":\"invalid_attestation\"}}", TC_ERR_ATTESTATION,
         "invalid_attestation"},
        {413, "{\"error\":{\"code\":\"payload_too_large\"}}", TC_ERR_TOO_LARGE,
         "payload_too_large"},
        {400, "{\"error\":{\"code\":\"invalid_field\",\"message\":\"payload.data\"}}",
         TC_ERR_REJECTED, "invalid_field"},
        {415, "not json", TC_ERR_REJECTED, ""},
        {429, "{\"error\":{\"code\":\"rate_limited\"}}", TC_ERR_RATE_LIMITED, "rate_limited"},
        {503, "", TC_ERR_UNAVAILABLE, ""},
        {504, "{\"error\":{\"code\":\"timeout\"}}", TC_ERR_UNAVAILABLE, "timeout"},
        {500, "{\"error\":[]}", TC_ERR_RELAY, ""},
        {302, "", TC_ERR_PROTOCOL, ""},
        {404, "{\"error\":{\"code\":\"a\\u0001\\u001b[31mb\"}}", TC_ERR_NOT_FOUND, "a??[31mb"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tc_call_info_t ci;
        memset(&ci, 0x55, sizeof(ci));
        tc_err_t e =
            tc_relay_error_parse(cases[i].status, cases[i].body, strlen(cases[i].body), &ci);
        assert_int_equal(e, cases[i].want);
        assert_string_equal(ci.code, cases[i].code);
    }
    assert_int_equal(tc_relay_error_parse(404, NULL, 0, NULL), TC_ERR_NOT_FOUND);
    assert_string_equal(tc_err_name(TC_ERR_INTEGRITY), "TC_ERR_INTEGRITY");
    assert_non_null(strstr(tc_err_text(TC_ERR_INTEGRITY), "integrity check failed"));
    assert_string_equal(tc_err_name((tc_err_t)999), "TC_ERR_UNKNOWN");
}

static void preview_parse(void **state)
{
    const char html[] =
        "<!DOCTYPE html><html><head><title>x</title>\n"
        "<meta property=\"og:title\" content=\"Car &amp; Key &lt;3&#39;s\">\n"
        "<META content='A key to &quot;my&quot; car&#x21;' property='og:description' />\n"
        "<meta property=\"og:type\" content=\"website\">\n"
        "<meta property=\"og:image\" content=\"https://example.com/k.png\">\n"
        "<meta property=\"og:title\" content=\"second title ignored\">\n";
    tc_preview_t p;
    assert_int_equal(tc_preview_parse(html, strlen(html), &p), TC_OK);
    assert_string_equal(p.title, "Car & Key <3's");
    assert_string_equal(p.description, "A key to \"my\" car!");
    assert_string_equal(p.image_url, "https://example.com/k.png");
    tc_preview_free(&p);
    const char cut[] = "<meta property=\"og:title\" content=\"unterminated";
    assert_int_equal(tc_preview_parse(cut, strlen(cut), &p), TC_OK);
    assert_null(p.title);
    assert_int_equal(tc_preview_parse(NULL, 0, &p), TC_OK);
    assert_null(p.description);
}

static void body_sizes(void **state)
{
    tc_create_t in = {.type = TC_AEAD_AES_256_GCM,
                      .title = "Car \"Key\"\n",
                      .description = "\xc3\xa9t\xc3\xa9",
                      .access_rights = "RWD",
                      .ttl_seconds = 3600,
                      .token_type = "webhook",
                      .token_data = "https://x.example/"};
    for (long limit = 1000; limit < 70000; limit += 6553) {
        size_t max = tc_create_max_plaintext(&in, limit);
        assert_true(tc_create_body_size(&in, max) <= (size_t)limit);
        assert_true(tc_create_body_size(&in, max + 1) > (size_t)limit);
    }
    assert_int_equal(tc_create_max_plaintext(&in, 100), 0);
}

static void config_max_body(void **state)
{
    static const struct {
        const char *json;
        long want;
    } cases[] = {
        {"{\"apiVersion\":\"v1\",\"maxBodyBytes\":65536}", 65536},
        {"{\"limits\":{\"maxTitleBytes\":256,\"maxBodySize\":131072}}", 131072},
        {"{\"max_body\":2048}", 2048},
        {"{\"apiVersion\":\"v1\",\"lifetime\":{\"maximumSeconds\":172800},\"limits\":{"
         "\"maxBodyBytes\":16384,\"titleMaxBytes\":256,\"descriptionMaxBytes\":1024}}",
         16384},
        {"{\"maxBodyBytes\":\"65536\"}", 0},
        {"{\"maxBodyBytes\":10}", 0},
        {"{\"bodyBytes\":65536}", 0},
        {"{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"maxBody\":5000}}}}}}", 0},
        {"not json", 0},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(tc_config_max_body(cases[i].json, strlen(cases[i].json)), cases[i].want);
    assert_int_equal(tc_config_max_body(NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gcm_vectors),
        cmocka_unit_test(seal_roundtrip_and_errors),
        cmocka_unit_test(url_parse_good),
        cmocka_unit_test(url_parse_bad),
        cmocka_unit_test(url_build_and_relay_base),
        cmocka_unit_test(relay_errors),
        cmocka_unit_test(preview_parse),
        cmocka_unit_test(body_sizes),
        cmocka_unit_test(config_max_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
