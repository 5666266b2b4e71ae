/* Unit checks of push-dispatch pieces that need no process: the webhook SSRF address filter,
 * Retry-After parsing and JWT signatures (verified with OpenSSL). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "../../services/push-dispatch/pd_jwt.h"
#include "../../services/push-dispatch/pd_provider.h"
#include "../../services/push-dispatch/pd_webhook.h"
#include "cm_b64.h"

int64_t pd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int forbidden(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (void *)&ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (void *)&ss;
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    }
    return pd_webhook_addr_forbidden((struct sockaddr *)&ss);
}

static void test_ssrf_filter(void **state)
{
    (void)state;
    const char *bad[] = {"127.0.0.1",
                         "127.1.2.3",
                         "10.0.0.1",
                         "172.16.5.4",
                         "172.31.255.255",
                         "192.168.1.1",
                         "169.254.169.254",
                         "100.64.0.1",
                         "0.0.0.0",
                         "224.0.0.1",
                         "255.255.255.255",
                         "::1",
                         "::",
                         "fe80::1",
                         "fc00::1",
                         "fd12:3456::1",
                         "ff02::1",
                         "::ffff:127.0.0.1",
                         "::ffff:10.1.2.3",
                         "64:ff9b::a9fe:a9fe",
                         "2001:db8::1",
                         "2002:7f00:1::1",
                         "198.18.0.1"};
    const char *good[] = {"17.188.166.10", "142.250.185.78",           "8.8.8.8",
                          "172.32.0.1",    "2a00:1450:4001:82b::200e", "2620:149:a44::10",
                          "::ffff:8.8.8.8"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (!forbidden(bad[i]))
            fail_msg("%s should be refused", bad[i]);
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (forbidden(good[i]))
            fail_msg("%s should be allowed", good[i]);
    }
}

static void test_retry_after(void **state)
{
    (void)state;
    assert_int_equal(pd_retry_after_ms("5", 1), 5000);
    assert_int_equal(pd_retry_after_ms("0", 1), 0);
    assert_int_equal(pd_retry_after_ms("", 0), -1);
    assert_int_equal(pd_retry_after_ms("soon", 4), -1);
    assert_int_equal(pd_retry_after_ms("-3", 2), -1);
    /* Found by fuzz_pd: no overflow on huge values. */
    const char *huge = "18446744073709551615";
    assert_true(pd_retry_after_ms(huge, strlen(huge)) > 0);
    const char *big = "9223372036854775";
    assert_true(pd_retry_after_ms(big, strlen(big)) > 0);
    /* An HTTP-date in the past means "now". */
    const char *d = "Wed, 21 Oct 2015 07:28:00 GMT";
    assert_int_equal(pd_retry_after_ms(d, strlen(d)), 0);
}

static void verify(EVP_PKEY *pub, const char *jwt, int es256)
{
    const char *dot2 = strrchr(jwt, '.');
    assert_non_null(dot2);
    size_t slen = strlen(dot2 + 1);
    uint8_t sig[600];
    size_t sl = 0;
    assert_int_equal(cm_b64_decode(CM_B64_URL, dot2 + 1, slen, sig, sizeof(sig), &sl), 0);
    unsigned char der[128], *dp = der;
    const unsigned char *vsig = sig;
    size_t vlen = sl;
    if (es256) {
        assert_int_equal(sl, 64);
        ECDSA_SIG *s = ECDSA_SIG_new();
        ECDSA_SIG_set0(s, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
        int n = i2d_ECDSA_SIG(s, &dp);
        ECDSA_SIG_free(s);
        vsig = der;
        vlen = (size_t)n;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub), 1);
    assert_int_equal(
        EVP_DigestVerify(md, vsig, vlen, (const unsigned char *)jwt, (size_t)(dot2 - jwt)), 1);
    EVP_MD_CTX_free(md);
}

static void test_jwt(void **state)
{
    (void)state;
    for (int es = 0; es <= 1; es++) {
        EVP_PKEY *k = es ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048);
        assert_non_null(k);
        BIO *b = BIO_new(BIO_s_mem());
        PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
        char *pem;
        long pl = BIO_get_mem_data(b, &pem);
        EVP_PKEY *loaded = pd_jwt_load_key(pem, (size_t)pl);
        assert_non_null(loaded);
        char *jwt = NULL;
        assert_int_equal(pd_jwt_sign(loaded, es, "{\"alg\":\"x\"}", "{\"iss\":\"t\"}", &jwt), 0);
        verify(k, jwt, es);
        /* Tampered claims fail. */
        jwt[strlen("eyJhbGciOiJ4In0.") + 2] ^= 1;
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        free(jwt);
        EVP_MD_CTX_free(md);
        EVP_PKEY_free(loaded);
        EVP_PKEY_free(k);
        BIO_free(b);
    }
    assert_null(pd_jwt_load_key("not a key", 9));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ssrf_filter),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_jwt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
