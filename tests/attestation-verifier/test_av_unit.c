/* attestation-verifier core, in process: the bounded CBOR decoder's limits, the DER reader,
 * and tamper properties of the verification pipeline on the shared vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "av_authdata.h"
#include "av_cbor.h"
#include "av_clientdata.h"
#include "av_der.h"
#include "av_tcases.h"
#include "av_verify.h"
#include "th.h"

static int dec(const uint8_t *b, size_t n)
{
    av_cbor_item_t *it = NULL;
    int rc = av_cbor_decode(b, n, &it, NULL);
    av_cbor_free(it);
    return rc;
}

static void test_cbor_limits(void **state)
{
    (void)state;
    /* libcbor 0.8 allocates 2 GiB for this; declared counts beyond the input are refused */
    static const uint8_t bomb1[] = {0x9a, 0x10, 0x00, 0x00, 0x00};
    static const uint8_t bomb2[] = {0x9a, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t bomb3[] = {0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t bigstr[] = {0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    long long t0 = th_now_ms();
    assert_int_equal(dec(bomb1, sizeof(bomb1)), -1);
    assert_int_equal(dec(bomb2, sizeof(bomb2)), -1);
    assert_int_equal(dec(bomb3, sizeof(bomb3)), -1);
    assert_int_equal(dec(bigstr, sizeof(bigstr)), -1);
    assert_true(th_now_ms() - t0 < 100);

    static const uint8_t indef_arr[] = {0x9f, 0x01, 0xff};
    static const uint8_t indef_str[] = {0x5f, 0x41, 0x00, 0xff};
    static const uint8_t dup_key[] = {0xa2, 0x01, 0x00, 0x01, 0x00};
    static const uint8_t dup_text[] = {0xa2, 0x61, 'a', 0x00, 0x61, 'a', 0x01};
    static const uint8_t trailing[] = {0xa0, 0x00};
    static const uint8_t tag[] = {0xc0, 0x60};
    static const uint8_t map_arr_key[] = {0xa1, 0x80, 0x00};
    static const uint8_t ok[] = {0xa3, 0x63, 'f',  'm',  't',  0x64, 'n',  'o', 'n',
                                 'e',  0x01, 0x20, 0x38, 0x18, 0x42, 0xaa, 0xbb};
    assert_int_equal(dec(indef_arr, sizeof(indef_arr)), -1);
    assert_int_equal(dec(indef_str, sizeof(indef_str)), -1);
    assert_int_equal(dec(dup_key, sizeof(dup_key)), -1);
    assert_int_equal(dec(dup_text, sizeof(dup_text)), -1);
    assert_int_equal(dec(trailing, sizeof(trailing)), -1);
    assert_int_equal(dec(tag, sizeof(tag)), -1);
    assert_int_equal(dec(map_arr_key, sizeof(map_arr_key)), -1);
    assert_int_equal(dec(ok, sizeof(ok)), 0);

    /* with |used|, trailing bytes are the caller's */
    av_cbor_item_t *it = NULL;
    size_t used = 0;
    assert_int_equal(av_cbor_decode(trailing, sizeof(trailing), &it, &used), 0);
    assert_int_equal(used, 1);
    av_cbor_free(it);

    assert_int_equal(av_cbor_decode(ok, sizeof(ok), &it, NULL), 0);
    assert_true(av_cbor_text_eq(av_cbor_map_get_text(it, "fmt"), "none"));
    int64_t v;
    assert_int_equal(av_cbor_int(av_cbor_map_get_int(it, 1), &v), 0);
    assert_int_equal(v, -1);
    const av_cbor_item_t *b = av_cbor_map_get_int(it, -25);
    assert_non_null(b);
    assert_int_equal(b->type, AV_CBOR_BYTES);
    assert_int_equal(b->len, 2);
    av_cbor_free(it);

    /* depth: 8 nested arrays decode, 9 do not */
    uint8_t nest[16];
    memset(nest, 0x81, sizeof(nest));
    nest[7] = 0x00;
    assert_int_equal(dec(nest, 8), 0);
    nest[7] = 0x81;
    nest[8] = 0x00;
    assert_int_equal(dec(nest, 9), -1);

    /* size cap */
    uint8_t *huge = calloc(1, AV_CBOR_MAX_INPUT + 8);
    huge[0] = 0x5a; /* bstr with a 4-byte length */
    huge[3] = 0x01, huge[4] = 0x00, huge[5] = 0x03;
    assert_int_equal(dec(huge, AV_CBOR_MAX_INPUT + 8), -1);
    free(huge);
}

static void test_der(void **state)
{
    (void)state;
    av_der_tlv_t t;
    static const uint8_t hi_tag[] = {0xbf, 0x84, 0x58, 0x02, 0x05, 0x00}; /* [600] { NULL } */
    assert_int_equal(av_der_whole(hi_tag, sizeof(hi_tag), &t), 0);
    assert_int_equal(t.cls, AV_DER_CONTEXT);
    assert_int_equal(t.tag, 600);
    assert_int_equal(t.len, 2);
    static const uint8_t long_nonmin[] = {0x04, 0x81, 0x01, 0x00};
    assert_int_equal(av_der_whole(long_nonmin, sizeof(long_nonmin), &t), -1);
    static const uint8_t indef[] = {0x30, 0x80, 0x00, 0x00};
    assert_int_equal(av_der_whole(indef, sizeof(indef), &t), -1);
    static const uint8_t overlong[] = {0x04, 0x05, 0x00};
    assert_int_equal(av_der_whole(overlong, sizeof(overlong), &t), -1);
}

static av_code_t cd(const char *json, int cross)
{
    static const uint8_t chal[3] = {0, 0, 0}; /* "AAAA" */
    const char *origin = "https://example.org", *top = "https://top.example";
    av_clientdata_policy_t p = {.challenge = chal,
                                .challenge_len = 3,
                                .origins = &origin,
                                .norigins = 1,
                                .rp_id = "example.org",
                                .allow_cross_origin = cross,
                                .top_origins = &top,
                                .ntop_origins = 1};
    return av_clientdata_check((const uint8_t *)json, strlen(json), &p);
}

static void test_clientdata(void **state)
{
    (void)state;
#define CD(extra)                                                                                  \
    "{\"type\":\"webauthn.create\",\"challenge\":\"AAAA\",\"origin\":\"https://"                   \
    "example.org\"" extra "}"
    assert_int_equal(cd(CD(""), 0), AV_OK);
    assert_int_equal(cd(CD(",\"unknown\":[1,{}]"), 0), AV_OK);
    assert_int_equal(cd(CD(",\"type\":\"webauthn.get\""), 0), AV_CLIENTDATA_MALFORMED);
    assert_int_equal(cd(CD("") " x", 0), AV_CLIENTDATA_MALFORMED);
    assert_int_equal(cd(CD("") "\n", 0), AV_OK);
    assert_int_equal(cd("[1]", 0), AV_CLIENTDATA_MALFORMED);
    assert_int_equal(cd("{\"type\":\"webauthn.get\",\"challenge\":\"AAAA\",\"origin\":\"x\"}", 0),
                     AV_CLIENTDATA_TYPE_MISMATCH);
    assert_int_equal(
        cd("{\"type\":\"webauthn.create\",\"challenge\":\"AAAB\",\"origin\":\"x\"}", 0),
        AV_CHALLENGE_MISMATCH);
    assert_int_equal(
        cd("{\"type\":\"webauthn.create\",\"challenge\":\"AAAA=\",\"origin\":\"x\"}", 0),
        AV_CHALLENGE_MISMATCH);
    assert_int_equal(cd("{\"type\":\"webauthn.create\",\"challenge\":\"AAAA\",\"origin\":\"https://"
                        "example.org.evil\"}",
                        0),
                     AV_ORIGIN_MISMATCH);
    assert_int_equal(cd(CD(",\"crossOrigin\":true"), 0), AV_CROSS_ORIGIN_NOT_ALLOWED);
    assert_int_equal(cd(CD(",\"crossOrigin\":true"), 1), AV_OK);
    assert_int_equal(cd(CD(",\"crossOrigin\":true,\"topOrigin\":\"https://top.example\""), 1),
                     AV_OK);
    assert_int_equal(cd(CD(",\"crossOrigin\":true,\"topOrigin\":\"https://other.example\""), 1),
                     AV_ORIGIN_MISMATCH);
    assert_int_equal(cd(CD(",\"crossOrigin\":\"yes\""), 0), AV_CLIENTDATA_MALFORMED);
    assert_int_equal(cd(CD(",\"tokenBinding\":{\"status\":\"not-supported\"}"), 0),
                     AV_TOKEN_BINDING_INVALID);
    assert_int_equal(cd(CD(",\"tokenBinding\":{\"status\":\"present\",\"id\":\"x\"}"), 0), AV_OK);
    assert_int_equal(cd(CD(",\"tokenBinding\":\"unused\""), 0), AV_OK);
#undef CD
}

/* Runs |c| in process with its own anchors and time; returns the code. */
static av_code_t run_case(const tc_case_t *c, const uint8_t *att, size_t att_len,
                          const uint8_t *chal, size_t chal_len)
{
    uint8_t *cdj;
    size_t cdj_len;
    assert_int_equal(tc_b64(c, "clientDataJSON", &cdj, &cdj_len), 0);
    av_trust_t *t = av_trust_new();
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(c->json, "rootCertsPem"))
    {
        assert_true(av_trust_add_pem(t, NULL, e->valuestring, strlen(e->valuestring)) > 0);
    }
    const char *origin = cJSON_GetObjectItem(c->json, "expectedOrigin")->valuestring;
    av_request_t rq;
    memset(&rq, 0, sizeof(rq));
    rq.att_obj = att, rq.att_obj_len = att_len;
    rq.client_data = cdj, rq.client_data_len = cdj_len;
    rq.cd.challenge = chal, rq.cd.challenge_len = chal_len;
    rq.cd.origins = &origin, rq.cd.norigins = 1;
    rq.cd.rp_id = cJSON_GetObjectItem(c->json, "rpId")->valuestring;
    rq.trust = t;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    strptime(cJSON_GetObjectItem(c->json, "verifyTime")->valuestring, "%Y-%m-%dT%H:%M:%SZ", &tm);
    rq.verify_time = timegm(&tm);
    av_result_t res;
    av_verify(&rq, &res);
    av_trust_free(t);
    free(cdj);
    return res.code;
}

/* Apple AAA covers authData through the nonce: changing any authData byte (flags, counter,
 * AAGUID, credential id, key) must never verify. Also the challenge binding: the same
 * attestation under a challenge one bit off is CHALLENGE_MISMATCH. */
static void test_apple_tamper(void **state)
{
    (void)state;
    tc_case_t *cases = NULL;
    int n = tc_load(&cases);
    tc_case_t *c = NULL;
    for (int i = 0; i < n; i++) {
        if (strcmp(cases[i].id, "w3c-apple-es256") == 0)
            c = &cases[i];
    }
    assert_non_null(c);
    uint8_t *att, *chal;
    size_t att_len, chal_len;
    assert_int_equal(tc_b64(c, "attestationObject", &att, &att_len), 0);
    assert_int_equal(tc_b64(c, "expectedChallenge", &chal, &chal_len), 0);
    assert_int_equal(run_case(c, att, att_len, chal, chal_len), AV_OK);

    av_cbor_item_t *obj = NULL;
    assert_int_equal(av_cbor_decode(att, att_len, &obj, NULL), 0);
    const av_cbor_item_t *ad = av_cbor_map_get_text(obj, "authData");
    size_t off = (size_t)(ad->ptr - att), adlen = ad->len;
    av_cbor_free(obj);
    int tried = 0;
    for (size_t i = off; i < off + adlen; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            att[i] ^= (uint8_t)(1u << bit);
            av_code_t rc = run_case(c, att, att_len, chal, chal_len);
            att[i] ^= (uint8_t)(1u << bit);
            if (rc == AV_OK)
                fail_msg("authData byte %zu bit %d flipped still verifies", i - off, bit);
            tried++;
        }
    }
    assert_true(tried > 100);
    chal[0] ^= 1;
    assert_int_equal(run_case(c, att, att_len, chal, chal_len), AV_CHALLENGE_MISMATCH);
    /* every truncation of the attestation object is refused cleanly */
    for (size_t l = 0; l < att_len; l += 7)
        assert_int_not_equal(run_case(c, att, l, chal, chal_len), AV_OK);
    free(att);
    free(chal);
    tc_free(cases, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cbor_limits),
        cmocka_unit_test(test_der),
        cmocka_unit_test(test_clientdata),
        cmocka_unit_test(test_apple_tamper),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
