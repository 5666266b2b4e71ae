/* attestation-verifier CLI: every shared test vector through `attestation-verifier verify`
 * (the real binary), plus the exit-status contract (0 whatever the verdict, non-zero only for
 * unreadable input). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "av_tcases.h"
#include "th.h"

/* Runs the CLI with |args|; first stdout line into |line|. Returns the exit status or -1. */
static int run_cli(const char *args, char *line, size_t cap)
{
    char bin[1024], cmd[4096];
    th_bin("attestation-verifier", bin, sizeof(bin));
    snprintf(cmd, sizeof(cmd), "'%s' %s 2>/dev/null", bin, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    line[0] = '\0';
    if (!fgets(line, (int)cap, p))
        line[0] = '\0';
    char sink[4096];
    while (fgets(sink, sizeof(sink), p))
        ;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* All cases in one invocation (`verify a.json b.json ...`): one verdict line each, in order,
 * exit 0. Keeps the ASan run short; the per-file exit contract is tested below. */
static void test_all_cases(void **state)
{
    (void)state;
    tc_case_t *cases = NULL;
    int n = tc_load(&cases);
    assert_true(n >= 79);
    size_t cap = 64 * 1024, len = 0;
    char *args = malloc(cap);
    len += (size_t)snprintf(args, cap, "verify");
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(args + len, cap - len, " '%s'", cases[i].path);
        assert_true(len < cap);
    }
    char bin[1024], cmd[70 * 1024];
    th_bin("attestation-verifier", bin, sizeof(bin));
    snprintf(cmd, sizeof(cmd), "'%s' %s", bin, args);
    free(args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[8192];
    for (int i = 0; i < n && fgets(line, sizeof(line), p); i++) {
        tc_case_t *c = &cases[i];
        cJSON *o = cJSON_Parse(line);
        const cJSON *id = cJSON_GetObjectItem(o, "id");
        if (!o || !cJSON_IsString(id) || strcmp(id->valuestring, c->id) != 0) {
            fprintf(stderr, "%s: unexpected output \"%s\"\n", c->id, line);
            cJSON_Delete(o);
            continue;
        }
        const cJSON *code = cJSON_GetObjectItem(o, "code");
        c->ran = 1;
        c->got_valid = cJSON_IsTrue(cJSON_GetObjectItem(o, "valid"));
        snprintf(c->got_code, sizeof(c->got_code), "%s",
                 cJSON_IsString(code) ? code->valuestring : "?");
        /* a valid verdict always names its format and attestation type */
        if (c->got_valid) {
            assert_string_not_equal(cJSON_GetObjectItem(o, "format")->valuestring, "");
            assert_string_not_equal(cJSON_GetObjectItem(o, "attestationType")->valuestring, "");
        }
        cJSON_Delete(o);
    }
    int st = pclose(p);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    int bad = tc_report("CLI", cases, n);
    tc_free(cases, n);
    assert_int_equal(bad, 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_exit_status(void **state)
{
    (void)state;
    char dir[512], path[700], args[1600], line[4096];
    assert_int_equal(th_tempdir("av-cli", dir, sizeof(dir)), 0);

    /* unreadable / not a case: non-zero */
    snprintf(args, sizeof(args), "verify '%s/missing.json'", dir);
    assert_int_not_equal(run_cli(args, line, sizeof(line)), 0);
    snprintf(path, sizeof(path), "%s/notjson.json", dir);
    write_file(path, "this is not json");
    snprintf(args, sizeof(args), "verify '%s'", path);
    assert_int_not_equal(run_cli(args, line, sizeof(line)), 0);

    /* a readable case with garbage inside: exit 0 and an invalid verdict */
    snprintf(path, sizeof(path), "%s/garbage.json", dir);
    write_file(path, "{\"id\":\"g\",\"rpId\":\"example.org\",\"expectedChallenge\":\"AAAA\","
                     "\"expectedOrigin\":\"https://example.org\",\"attestationObject\":\"!!\","
                     "\"clientDataJSON\":\"e30\"}");
    snprintf(args, sizeof(args), "verify '%s'", path);
    assert_int_equal(run_cli(args, line, sizeof(line)), 0);
    assert_non_null(strstr(line, "\"valid\":false"));
    assert_non_null(strstr(line, "\"code\":\"ENCODING\""));

    /* the libcbor-0.8 killer (array of 2^28 declared items in 5 bytes): a fast clean verdict */
    snprintf(path, sizeof(path), "%s/bomb.json", dir);
    write_file(path, "{\"id\":\"b\",\"rpId\":\"example.org\",\"expectedChallenge\":\"AAAA\","
                     "\"expectedOrigin\":\"https://example.org\",\"attestationObject\":\"mhAAAAA\","
                     "\"clientDataJSON\":\"eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIiwiY2hhbGxlbmdlIjoi"
                     "QUFBQSIsIm9yaWdpbiI6Imh0dHBzOi8vZXhhbXBsZS5vcmcifQ\"}");
    snprintf(args, sizeof(args), "verify '%s'", path);
    long long t0 = th_now_ms();
    assert_int_equal(run_cli(args, line, sizeof(line)), 0);
    assert_true(th_now_ms() - t0 < 5000);
    assert_non_null(strstr(line, "\"code\":\"CBOR_MALFORMED\""));

    /* usage errors and --help */
    assert_int_not_equal(run_cli("frobnicate x", line, sizeof(line)), 0);
    assert_int_equal(run_cli("--help", line, sizeof(line)), 0);
    th_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_cases),
        cmocka_unit_test(test_exit_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
