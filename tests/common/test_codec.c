/* Unit tests of the small common codecs: base64, UUID, config parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cm_b64.h"
#include "cm_config.h"
#include "cm_uuid.h"

static void b64_roundtrip(void **state)
{
    uint8_t in[64], out[64];
    char enc[100];
    for (size_t len = 0; len < 40; len++) {
        for (size_t i = 0; i < len; i++)
            in[i] = (uint8_t)(i * 37 + len);
        for (int v = CM_B64_STD; v <= CM_B64_URL; v++) {
            size_t n = cm_b64_encode((cm_b64_variant_t)v, in, len, enc), outlen = 0;
            assert_int_equal(strlen(enc), n);
            assert_int_equal(cm_b64_decode((cm_b64_variant_t)v, enc, n, out, sizeof(out), &outlen),
                             0);
            assert_int_equal(outlen, len);
            assert_memory_equal(in, out, len);
            assert_int_equal(cm_b64_decode(CM_B64_ANY, enc, n, out, sizeof(out), &outlen), 0);
        }
    }
}

static void b64_rejects(void **state)
{
    uint8_t out[64];
    size_t n;
    const char *bad_std[] = {"QQ", "Q===", "QR==", "Zm9v YmFy", "Zm9v\n", "-_-_", "A", "QQ=a"};
    for (size_t i = 0; i < sizeof(bad_std) / sizeof(*bad_std); i++)
        assert_int_equal(cm_b64_decode(CM_B64_STD, bad_std[i], strlen(bad_std[i]), out, 64, &n),
                         -1);
    assert_int_equal(cm_b64_decode(CM_B64_URL, "+/+/", 4, out, 64, &n), -1);
    assert_int_equal(cm_b64_decode(CM_B64_STD, "Zm9vYmFy", 8, out, 5, &n), -1); /* capacity */
    assert_int_equal(cm_b64_decode(CM_B64_STD, "Zm9vYg==", 8, out, 64, &n), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "foob", 4);
}

static void uuid_checks(void **state)
{
    const char *v4 = "3F2504E0-4F89-41D3-9A0C-0305E82C3301";
    assert_true(cm_uuid_valid(v4, strlen(v4)));
    assert_true(cm_uuid_is_v4(v4, strlen(v4)));
    const char *v1 = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
    assert_true(cm_uuid_valid(v1, strlen(v1)));
    assert_false(cm_uuid_is_v4(v1, strlen(v1)));
    assert_false(cm_uuid_valid("3f2504e04f8911d39a0c0305e82c3301", 32));
    assert_false(cm_uuid_valid("3f2504e0-4f89-11d3-9a0c-0305e82c330g", 36));
    char c[37];
    cm_uuid_canonical(v4, c);
    assert_string_equal(c, "3f2504e0-4f89-41d3-9a0c-0305e82c3301");
    char a[37], b[37];
    assert_int_equal(cm_uuid_v4(a), 0);
    assert_int_equal(cm_uuid_v4(b), 0);
    assert_true(cm_uuid_is_v4(a, strlen(a)));
    assert_string_not_equal(a, b);
}

static void config_precedence(void **state)
{
    const char *listen = NULL;
    int64_t workers = 0;
    int sync = 0;
    cm_opt_t opts[] = {
        {"listen", CM_OPT_STR, "127.0.0.1:1", "address", &listen},
        {"workers", CM_OPT_INT, "1", "threads", &workers},
        {"sync", CM_OPT_BOOL, "true", "fsync", &sync},
    };
    setenv("TIGRESS_WORKERS", "3", 1);
    setenv("TIGRESS_LISTEN", "from-env", 1);
    char *argv[] = {"prog", "--listen", "from-flag", "--sync=off", NULL};
    assert_int_equal(cm_config_parse("prog", "test", opts, 3, 4, argv, NULL), 0);
    assert_string_equal(listen, "from-flag");
    assert_int_equal(workers, 3);
    assert_int_equal(sync, 0);

    char *bad[] = {"prog", "--workers=x", NULL};
    assert_int_equal(cm_config_parse("prog", "test", opts, 3, 2, bad, NULL), -1);
    char *unknown[] = {"prog", "--nope=1", NULL};
    assert_int_equal(cm_config_parse("prog", "test", opts, 3, 2, unknown, NULL), -1);
    unsetenv("TIGRESS_WORKERS");
    unsetenv("TIGRESS_LISTEN");
    char env[64];
    cm_config_env_name("data-dir", env, sizeof(env));
    assert_string_equal(env, "TIGRESS_DATA_DIR");
}

static void split_listen(void **state)
{
    char host[64];
    int port = -1;
    assert_int_equal(cm_config_split_listen("127.0.0.1:8080", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(cm_config_split_listen("[::1]:0", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    assert_int_equal(cm_config_split_listen(":9100", host, sizeof(host), &port), 0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(port, 9100);
    const char *bad[] = {"",          "127.0.0.1", "127.0.0.1:", "127.0.0.1:x", "1.2.3.4:65536",
                         "[::1]8080", "h:-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        assert_int_equal(cm_config_split_listen(bad[i], host, sizeof(host), &port), -1);
    assert_int_equal(cm_config_split_listen("averyveryverylonghostname:1", host, 8, &port), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(b64_roundtrip), cmocka_unit_test(b64_rejects),
        cmocka_unit_test(uuid_checks),   cmocka_unit_test(config_precedence),
        cmocka_unit_test(split_listen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
