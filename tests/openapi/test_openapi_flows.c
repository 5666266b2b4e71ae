/* Driver of the contract check (tests/openapi/check-openapi runs it after validating the
 * document): starts the real mailbox-store and gateway on ephemeral ports and runs flows.mjs
 * against them, which checks every answer against gateway/openapi.json. The gateway trusts
 * 127.0.0.1 as a proxy and exempts loopback from the limits, with a failure budget of 3, so
 * flows.mjs reaches 429 by naming a client behind the "proxy" in X-Forwarded-For.
 * Env: OPENAPI_NPM_DIR (node_modules and the scripts), TIGRESS_SRC_DIR, TIGRESS_BIN_DIR. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "th.h"
#include "th_stack.h"

static struct {
    char dir[512];
    th_proc_t store, gw;
} E;

static int teardown(void **state)
{
    if (E.gw.pid > 0)
        th_proc_kill9(&E.gw);
    if (E.store.pid > 0)
        th_proc_kill9(&E.store);
    if (E.dir[0])
        th_rmtree(E.dir);
    return 0;
}

static void test_flows_match_document(void **state)
{
    const char *npm = getenv("OPENAPI_NPM_DIR"), *src = getenv("TIGRESS_SRC_DIR");
    assert_non_null(npm);
    assert_non_null(src);
    assert_int_equal(th_tempdir("openapi", E.dir, sizeof(E.dir)), 0);
    char data[600];
    snprintf(data, sizeof(data), "%s/store", E.dir);
    static const char *const sextra[] = {"--log-level=warn", "--sync=0", NULL};
    assert_int_equal(th_store_start(&E.store, data, 0, sextra, 20000), 0);
    char store[64];
    snprintf(store, sizeof(store), "--store-target=127.0.0.1:%d",
             th_proc_port(&E.store, "grpc_port"));
    const char *gextra[] = {store,
                            "--https-listen=",
                            "--log-level=warn",
                            "--backend-timeout-ms=8000",
                            "--rate-limit-failure-burst=3",
                            "--trusted-proxies=127.0.0.1/32",
                            NULL};
    assert_int_equal(th_gateway_start(&E.gw, gextra, 20000), 0);

    char cmd[2400];
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && node flows.mjs --base http://127.0.0.1:%d --doc '%s/gateway/openapi.json'",
             npm, th_proc_port(&E.gw, "http_port"), src);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc));
    assert_int_equal(WEXITSTATUS(rc), 0);

    assert_int_equal(th_proc_stop_clean(&E.gw, "gateway", 15000), 0);
    assert_int_equal(th_proc_stop_clean(&E.store, "mailbox-store", 15000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_flows_match_document, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
