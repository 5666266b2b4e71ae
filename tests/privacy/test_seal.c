/* Unit tests of cm_seal: key ring files, AEAD round trip, tampering, wrong associated data,
 * unknown key ids, rotation, keyed hashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "cm_seal.h"
#include "th.h"

static char dir[512];

static const char K1[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
static const char K2[] = "f0e0d0c0b0a090807060504030201000ffeeddccbbaa99887766554433221100";

/* Writes |text| to DIR/|name| and returns the path (static buffer, one at a time). */
static const char *ring_file(const char *name, const char *text)
{
    static char path[700];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static cm_seal_ring_t *ring(const char *text)
{
    cm_seal_ring_t *r = NULL;
    char err[256];
    cm_seal_err_t rc = cm_seal_ring_load(ring_file("ring", text), &r, err, sizeof(err));
    if (rc != CM_SEAL_OK)
        fail_msg("load: %s: %s", cm_seal_err_name(rc), err);
    return r;
}

static cm_seal_err_t ring_err(const char *text, char *err, size_t cap)
{
    cm_seal_ring_t *r = NULL;
    cm_seal_err_t rc = cm_seal_ring_load(ring_file("bad", text), &r, err, cap);
    assert_null(r);
    return rc;
}

static void ring_files(void **state)
{
    char text[400], err[256];
    snprintf(text, sizeof(text), "# deployment keys\n\n1 %s\n  2 %s  # newest\n", K1, K2);
    cm_seal_ring_t *r = ring(text);
    assert_int_equal(cm_seal_ring_count(r), 2);
    assert_int_equal(cm_seal_ring_primary(r), 2);
    cm_seal_ring_free(r);

    /* Order does not matter; "primary" overrides the highest id. */
    snprintf(text, sizeof(text), "7 %s\r\n3 %s\r\nprimary 3\r\n", K2, K1);
    r = ring(text);
    assert_int_equal(cm_seal_ring_primary(r), 3);
    cm_seal_ring_free(r);

    /* A bare key (older single-key files) is key 1. */
    snprintf(text, sizeof(text), "%s\n", K2);
    r = ring(text);
    assert_int_equal(cm_seal_ring_count(r), 1);
    assert_int_equal(cm_seal_ring_primary(r), 1);
    cm_seal_ring_free(r);

    const char *bad[] = {
        "1 00\n",          /* short key */
        "0 %s\n",          /* id 0 */
        "256 %s\n",        /* id too large */
        "x %s\n",          /* not a number */
        "1 %s extra\n",    /* extra field */
        "1 %s\n1 %s\n",    /* duplicate id */
        "1 %s\nprimary\n", /* primary without id */
        "1 %s\nprimary 1\nprimary 1\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        snprintf(text, sizeof(text), bad[i], K1, K1);
        assert_int_equal(ring_err(text, err, sizeof(err)), CM_SEAL_ERR_SYNTAX);
        assert_non_null(strstr(err, "line"));
        /* Never key material in the message. */
        assert_null(strstr(err, "0001020304"));
    }
    /* The line number counts blank and comment lines too. */
    snprintf(text, sizeof(text), "# ring\n\n1 %s\n\n2 zz\n", K1);
    assert_int_equal(ring_err(text, err, sizeof(err)), CM_SEAL_ERR_SYNTAX);
    assert_non_null(strstr(err, "line 5:"));
    snprintf(text, sizeof(text), "1 %s\nprimary 2\n", K1);
    assert_int_equal(ring_err(text, err, sizeof(err)), CM_SEAL_ERR_EMPTY);
    assert_int_equal(ring_err("# nothing\n\n", err, sizeof(err)), CM_SEAL_ERR_EMPTY);
    assert_int_equal(ring_err("", err, sizeof(err)), CM_SEAL_ERR_EMPTY);
    cm_seal_ring_t *none = NULL;
    char missing[700];
    snprintf(missing, sizeof(missing), "%s/absent", dir);
    assert_int_equal(cm_seal_ring_load(missing, &none, err, sizeof(err)), CM_SEAL_ERR_FILE);
    assert_null(none);
}

static void generated_ring(void **state)
{
    char sub[700], path[800], err[256];
    int generated = 0;
    cm_seal_ring_t *r = NULL, *r2 = NULL;
    snprintf(sub, sizeof(sub), "%s/data/pd", dir);
    assert_int_equal(
        cm_seal_ring_load_or_create(NULL, sub, "token-keys", &r, &generated, err, sizeof(err)),
        CM_SEAL_OK);
    assert_int_equal(generated, 1);
    assert_int_equal(cm_seal_ring_primary(r), 1);
    snprintf(path, sizeof(path), "%s/token-keys", sub);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Second start: the same key, no new file. */
    assert_int_equal(
        cm_seal_ring_load_or_create("", sub, "token-keys", &r2, &generated, err, sizeof(err)),
        CM_SEAL_OK);
    assert_int_equal(generated, 0);
    uint8_t sealed[64], plain[64];
    size_t n = 0;
    assert_int_equal(cm_seal_encrypt(r, "m", 1, "hello", 5, sealed), CM_SEAL_OK);
    assert_int_equal(cm_seal_decrypt(r2, "m", 1, sealed, cm_seal_sealed_len(5), plain, &n, NULL),
                     CM_SEAL_OK);
    assert_memory_equal(plain, "hello", 5);
    cm_seal_ring_free(r);
    cm_seal_ring_free(r2);
    /* A configured path wins and must exist. */
    assert_int_equal(
        cm_seal_ring_load_or_create(path, "/nonexistent/x", "k", &r, &generated, err, sizeof(err)),
        CM_SEAL_OK);
    cm_seal_ring_free(r);
}

static void aead(void **state)
{
    char text[400];
    snprintf(text, sizeof(text), "1 %s\n", K1);
    cm_seal_ring_t *r = ring(text);
    const char *ad = "7d3c1b44-2f51-4c8e-9a7a-0e5f4c2b9d10";
    const char *tok = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    size_t tl = strlen(tok), sl = cm_seal_sealed_len(tl), n = 0;
    uint8_t s1[200], s2[200], out[200];
    uint8_t id = 0;
    assert_int_equal(sl, tl + 30);
    assert_int_equal(cm_seal_encrypt(r, ad, strlen(ad), tok, tl, s1), CM_SEAL_OK);
    assert_int_equal(cm_seal_encrypt(r, ad, strlen(ad), tok, tl, s2), CM_SEAL_OK);
    assert_int_equal(s1[0], CM_SEAL_VERSION);
    assert_int_equal(s1[1], 1);
    /* Random nonces: the same token twice gives unrelated bytes (nothing to correlate). */
    assert_memory_not_equal(s1 + 2, s2 + 2, sl - 2);
    assert_null(memmem(s1, sl, tok, tl));
    assert_int_equal(cm_seal_decrypt(r, ad, strlen(ad), s1, sl, out, &n, &id), CM_SEAL_OK);
    assert_int_equal(n, tl);
    assert_int_equal(id, 1);
    assert_memory_equal(out, tok, tl);

    /* Every single-bit flip anywhere is refused. */
    for (size_t i = 0; i < sl; i++) {
        for (int b = 0; b < 8; b++) {
            s1[i] ^= (uint8_t)(1 << b);
            memset(out, 0xAA, sizeof(out));
            cm_seal_err_t rc = cm_seal_decrypt(r, ad, strlen(ad), s1, sl, out, &n, NULL);
            assert_int_not_equal(rc, CM_SEAL_OK);
            if (i >= 2) {
                assert_int_equal(rc, CM_SEAL_ERR_AUTH);
                /* Nothing of the plaintext is left behind. */
                assert_null(memmem(out, sizeof(out), "a1b2c3d4", 8));
            }
            s1[i] ^= (uint8_t)(1 << b);
        }
    }
    /* Truncated, extended, wrong associated data (another mailbox), no associated data. */
    assert_int_equal(cm_seal_decrypt(r, ad, strlen(ad), s1, sl - 1, out, &n, NULL),
                     CM_SEAL_ERR_AUTH);
    assert_int_equal(cm_seal_decrypt(r, ad, strlen(ad), s1, CM_SEAL_OVERHEAD - 1, out, &n, NULL),
                     CM_SEAL_ERR_FORMAT);
    const char *other = "7d3c1b44-2f51-4c8e-9a7a-0e5f4c2b9d11";
    assert_int_equal(cm_seal_decrypt(r, other, strlen(other), s1, sl, out, &n, NULL),
                     CM_SEAL_ERR_AUTH);
    assert_int_equal(cm_seal_decrypt(r, NULL, 0, s1, sl, out, &n, NULL), CM_SEAL_ERR_AUTH);
    /* Unknown version; unknown key id (even with a matching key under another id). */
    s1[0] = 2;
    assert_int_equal(cm_seal_decrypt(r, ad, strlen(ad), s1, sl, out, &n, NULL), CM_SEAL_ERR_FORMAT);
    s1[0] = CM_SEAL_VERSION;
    s1[1] = 9;
    assert_int_equal(cm_seal_decrypt(r, ad, strlen(ad), s1, sl, out, &n, NULL),
                     CM_SEAL_ERR_UNKNOWN_KEY);
    s1[1] = 1;

    /* Empty plaintext and empty associated data work too. */
    uint8_t e[CM_SEAL_OVERHEAD];
    assert_int_equal(cm_seal_encrypt(r, NULL, 0, "", 0, e), CM_SEAL_OK);
    assert_int_equal(cm_seal_decrypt(r, NULL, 0, e, sizeof(e), out, &n, NULL), CM_SEAL_OK);
    assert_int_equal(n, 0);
    cm_seal_ring_free(r);
}

static void rotation(void **state)
{
    char text[400];
    const char *ad = "mb-1";
    uint8_t old[100], fresh[100], out[100], id = 0;
    size_t n = 0;
    snprintf(text, sizeof(text), "1 %s\n", K1);
    cm_seal_ring_t *r1 = ring(text);
    assert_int_equal(cm_seal_encrypt(r1, ad, 4, "token-one", 9, old), CM_SEAL_OK);
    uint8_t h_old[CM_SEAL_HASH_LEN];
    assert_int_equal(cm_seal_hash(r1, "claim", 5, h_old), CM_SEAL_OK);
    assert_int_equal(h_old[0], 1);

    /* Rotate: the ring holds 1 and 2; new values go under 2, old ones still open. */
    snprintf(text, sizeof(text), "1 %s\n2 %s\n", K1, K2);
    cm_seal_ring_t *r12 = ring(text);
    assert_int_equal(cm_seal_decrypt(r12, ad, 4, old, cm_seal_sealed_len(9), out, &n, &id),
                     CM_SEAL_OK);
    assert_int_equal(id, 1);
    assert_memory_equal(out, "token-one", 9);
    assert_int_equal(cm_seal_encrypt(r12, ad, 4, "token-two", 9, fresh), CM_SEAL_OK);
    assert_int_equal(cm_seal_key_id(fresh, cm_seal_sealed_len(9), &id), CM_SEAL_OK);
    assert_int_equal(id, 2);
    assert_int_equal(cm_seal_hash_verify(r12, "claim", 5, h_old), CM_SEAL_OK);
    assert_int_equal(cm_seal_hash_verify(r12, "claim!", 6, h_old), CM_SEAL_ERR_AUTH);
    uint8_t h_new[CM_SEAL_HASH_LEN];
    assert_int_equal(cm_seal_hash(r12, "claim", 5, h_new), CM_SEAL_OK);
    assert_int_equal(h_new[0], 2);
    assert_memory_not_equal(h_new + 1, h_old + 1, CM_SEAL_MAC_LEN);
    assert_int_equal(cm_seal_hash_verify(r12, "claim", 5, h_new), CM_SEAL_OK);
    /* The hash an older binding has, for lookups keyed by it. */
    uint8_t h_with[CM_SEAL_HASH_LEN], ids[255];
    assert_int_equal(cm_seal_hash_with(r12, 1, "claim", 5, h_with), CM_SEAL_OK);
    assert_memory_equal(h_with, h_old, CM_SEAL_HASH_LEN);
    assert_int_equal(cm_seal_hash_with(r12, 3, "claim", 5, h_with), CM_SEAL_ERR_UNKNOWN_KEY);
    assert_int_equal(cm_seal_ring_ids(r12, ids), 2);
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[1], 1);
    /* The old ring cannot read the new values: a clear error, not garbage. */
    assert_int_equal(cm_seal_decrypt(r1, ad, 4, fresh, cm_seal_sealed_len(9), out, &n, NULL),
                     CM_SEAL_ERR_UNKNOWN_KEY);
    assert_int_equal(cm_seal_hash_verify(r1, "claim", 5, h_new), CM_SEAL_ERR_UNKNOWN_KEY);

    /* Key 1 removed (after the longest lifetime): its values are gone for good. */
    snprintf(text, sizeof(text), "2 %s\n", K2);
    cm_seal_ring_t *r2 = ring(text);
    assert_int_equal(cm_seal_decrypt(r2, ad, 4, old, cm_seal_sealed_len(9), out, &n, NULL),
                     CM_SEAL_ERR_UNKNOWN_KEY);
    assert_int_equal(cm_seal_decrypt(r2, ad, 4, fresh, cm_seal_sealed_len(9), out, &n, NULL),
                     CM_SEAL_OK);
    assert_int_equal(cm_seal_hash_verify(r2, "claim", 5, h_old), CM_SEAL_ERR_UNKNOWN_KEY);

    /* A key moved to another id is another key as far as stored values go: a swapped id must
     * not open (the id is authenticated). */
    snprintf(text, sizeof(text), "1 %s\n2 %s\n", K2, K1);
    cm_seal_ring_t *swapped = ring(text);
    assert_int_equal(cm_seal_decrypt(swapped, ad, 4, old, cm_seal_sealed_len(9), out, &n, NULL),
                     CM_SEAL_ERR_AUTH);
    cm_seal_ring_free(swapped);
    cm_seal_ring_free(r1);
    cm_seal_ring_free(r12);
    cm_seal_ring_free(r2);
}

/* Known-answer checks, so the format is pinned (another implementation can read it). */
static void known_answers(void **state)
{
    char text[400];
    snprintf(text, sizeof(text), "5 %s\n", K1);
    cm_seal_ring_t *r = ring(text);
    uint8_t h[CM_SEAL_HASH_LEN];
    assert_int_equal(cm_seal_hash(r, "abc", 3, h), CM_SEAL_OK);
    /* HMAC-SHA-256(key 00..1f, "abc"), as computed by `openssl dgst -sha256 -mac HMAC
     * -macopt hexkey:000102...1f`. */
    static const uint8_t want[] = {0xf0, 0x13, 0x37, 0x29, 0xc4, 0x16, 0x3d, 0xed, 0xe8, 0x1e, 0x21,
                                   0xcd, 0x47, 0x83, 0x92, 0x56, 0xda, 0x58, 0x17, 0x12, 0x38, 0xc8,
                                   0xa0, 0xd8, 0x74, 0x39, 0x7c, 0x73, 0xb1, 0x4e, 0x1e, 0x47};
    assert_int_equal(h[0], 5);
    assert_memory_equal(h + 1, want, sizeof(want));
    /* Sealed by Python's cryptography AESGCM: key 5, nonce 64..6f, associated data = the
     * header (01 05) followed by "mb", plaintext "token". */
    static const uint8_t sealed[] = {0x01, 0x05, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a,
                                     0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x3c, 0x74, 0xb5, 0x03,
                                     0x17, 0x68, 0x97, 0xd1, 0x32, 0x8b, 0xdd, 0x0e, 0x7a,
                                     0xbc, 0x00, 0xb2, 0x8c, 0xb2, 0x34, 0x3a, 0x80};
    uint8_t out[sizeof(sealed)];
    size_t n = 0;
    assert_int_equal(cm_seal_decrypt(r, "mb", 2, sealed, sizeof(sealed), out, &n, NULL),
                     CM_SEAL_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "token", 5);
    cm_seal_ring_free(r);
}

static int setup(void **state)
{
    return th_tempdir("seal", dir, sizeof(dir));
}

static int teardown(void **state)
{
    th_rmtree(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ring_files), cmocka_unit_test(generated_ring), cmocka_unit_test(aead),
        cmocka_unit_test(rotation),   cmocka_unit_test(known_answers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
