/* Unit tests of the rate limiter's pure parts: token-bucket math, address and CIDR parsing,
 * /64 grouping, the forwarded-header walk, and the table (admission, charges, eviction, key
 * rotation, many threads at once). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gw_clientaddr.h"
#include "gw_rltable.h"

#define MIN_US 60000000LL

static gw_addr_t addr(const char *s)
{
    gw_addr_t a;
    assert_int_equal(gw_addr_parse(s, strlen(s), 1, &a), 0);
    return a;
}

/* ---- bucket math ---- */

static void test_refill(void **state)
{
    gw_rl_rate_t r = {.per_min = 60, .burst = 10}; /* one token a second */
    assert_int_equal(gw_rl_refill(0, 1000000, &r), GW_RL_UNIT);
    assert_int_equal(gw_rl_refill(0, 500000, &r), GW_RL_UNIT / 2);
    assert_int_equal(gw_rl_refill(0, 10 * 1000000, &r), 10 * GW_RL_UNIT);
    assert_int_equal(gw_rl_refill(0, 11 * 1000000, &r), 10 * GW_RL_UNIT); /* capped */
    assert_int_equal(gw_rl_refill(3, 0, &r), 3);
    assert_int_equal(gw_rl_refill(3, -5, &r), 3); /* a clock going back adds nothing */
    /* a year idle at the largest rate: no overflow, just full */
    gw_rl_rate_t big = {.per_min = GW_RL_MAX_RATE, .burst = GW_RL_MAX_RATE};
    assert_int_equal(gw_rl_refill(0, 365LL * 86400 * 1000000, &big), GW_RL_MAX_RATE * GW_RL_UNIT);
}

static void test_wait(void **state)
{
    gw_rl_rate_t r = {.per_min = 60, .burst = 10};
    assert_int_equal(gw_rl_wait_s(0, &r), 1);
    assert_int_equal(gw_rl_wait_s(GW_RL_UNIT, &r), 1); /* never 0 */
    gw_rl_rate_t slow = {.per_min = 6, .burst = 1};    /* one token per 10 s */
    assert_int_equal(gw_rl_wait_s(0, &slow), 10);
    assert_int_equal(gw_rl_wait_s(GW_RL_UNIT / 2, &slow), 5);
    assert_int_equal(gw_rl_wait_s(GW_RL_UNIT - 1, &slow), 1);
    gw_rl_rate_t hourly = {.per_min = 1, .burst = 1};
    assert_int_equal(gw_rl_wait_s(0, &hourly), 60);
}

/* ---- addresses ---- */

static void test_addr_parse(void **state)
{
    gw_addr_t a;
    assert_int_equal(gw_addr_parse("192.0.2.7", 9, 0, &a), 0);
    assert_int_equal(a.family, 4);
    assert_memory_equal(a.b, "\xc0\x00\x02\x07", 4);
    assert_int_equal(gw_addr_parse("2001:db8::1", 11, 0, &a), 0);
    assert_int_equal(a.family, 6);
    /* IPv4-mapped IPv6 is the IPv4 client (dual-stack listeners) */
    assert_int_equal(gw_addr_parse("::ffff:192.0.2.7", 16, 0, &a), 0);
    assert_int_equal(a.family, 4);
    assert_memory_equal(a.b, "\xc0\x00\x02\x07", 4);
    /* ports only where allowed */
    assert_int_equal(gw_addr_parse("192.0.2.7:443", 13, 0, &a), -1);
    assert_int_equal(gw_addr_parse("192.0.2.7:443", 13, 1, &a), 0);
    assert_int_equal(gw_addr_parse("[2001:db8::1]:4711", 18, 1, &a), 0);
    assert_int_equal(a.family, 6);
    assert_int_equal(gw_addr_parse("[2001:db8::1]", 13, 1, &a), 0);
    const char *bad[] = {"",          "unknown",   "_hidden",       "1.2.3",
                         "1.2.3.4.5", "256.1.1.1", "1.2.3.4:",      "1.2.3.4:port",
                         "[1::2",     "[1::2]x",   "fe80::1%lo",    "[::1]:123456",
                         "01.2.3.4",  " 1.2.3.4",  "1.2.3.4:99999x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(gw_addr_parse(bad[i], strlen(bad[i]), 1, &a), -1);
}

static void test_group_key(void **state)
{
    uint8_t k1[9], k2[9];
    gw_addr_t a = addr("2001:db8:1:2:aaaa::1"), b = addr("2001:db8:1:2:ffff:1:2:3"),
              c = addr("2001:db8:1:3::1");
    size_t n1 = gw_addr_group_key(&a, k1), n2 = gw_addr_group_key(&b, k2);
    assert_int_equal(n1, 9);
    assert_int_equal(n2, 9);
    assert_memory_equal(k1, k2, 9); /* same /64: same client */
    gw_addr_group_key(&c, k2);
    assert_memory_not_equal(k1, k2, 9); /* next /64: another client */
    gw_addr_t v4a = addr("198.51.100.1"), v4b = addr("198.51.100.2");
    assert_int_equal(gw_addr_group_key(&v4a, k1), 5);
    gw_addr_group_key(&v4b, k2);
    assert_memory_not_equal(k1, k2, 5); /* IPv4: each address its own client */
}

static void test_cidr(void **state)
{
    gw_cidr_list_t l;
    assert_int_equal(gw_cidr_list_parse("10.0.0.0/8, 192.168.1.7 2001:db8::/32,,::1/128", &l), 0);
    assert_int_equal(l.n, 4);
    gw_addr_t in[] = {addr("10.255.1.2"), addr("192.168.1.7"), addr("2001:db8:ffff::9"),
                      addr("::1"), addr("::ffff:10.0.0.1")};
    gw_addr_t out[] = {addr("11.0.0.1"), addr("192.168.1.8"), addr("2001:db9::1"), addr("::2")};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
        assert_true(gw_cidr_list_match(&l, &in[i]));
    for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++)
        assert_false(gw_cidr_list_match(&l, &out[i]));
    gw_cidr_list_free(&l);

    assert_int_equal(gw_cidr_list_parse("0.0.0.0/0", &l), 0);
    gw_addr_t v6 = addr("2001:db8::1"), v4 = addr("1.2.3.4");
    assert_true(gw_cidr_list_match(&l, &v4));
    assert_false(gw_cidr_list_match(&l, &v6)); /* families never mix */
    gw_cidr_list_free(&l);
    assert_int_equal(gw_cidr_list_parse("10.1.0.0/15", &l), -1); /* host bits set */
    assert_int_equal(gw_cidr_list_parse("172.16.0.0/12", &l), 0);
    gw_addr_t edge_in = addr("172.31.255.255"), edge_out = addr("172.32.0.0");
    assert_true(gw_cidr_list_match(&l, &edge_in));
    assert_false(gw_cidr_list_match(&l, &edge_out));
    gw_cidr_list_free(&l);
    const char *bad[] = {"10.0.0.0/33",  "::/129",       "10.0.0.0/", "10.0.0.0/x",
                         "host.example", "10.0.0.0/8/8", "1.2.3.4:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(gw_cidr_list_parse(bad[i], &l), -1);
        assert_null(l.v);
    }
    assert_int_equal(gw_cidr_list_parse("", &l), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(gw_cidr_list_parse(NULL, &l), 0);
}

/* ---- forwarded headers ---- */

static gw_cidr_list_t TRUSTED;

static void resolve(const char *peer, gw_fwd_kind_t kind, const char *h1, const char *h2,
                    const char *want)
{
    gw_addr_t p = addr(peer), got, w = addr(want);
    const char *v[] = {h1, h2};
    gw_client_resolve(&p, &TRUSTED, kind, v, h2 ? 2 : h1 ? 1 : 0, &got);
    if (memcmp(&got, &w, sizeof(w)) != 0)
        fail_msg("peer %s, header \"%s\" / \"%s\": not %s", peer, h1 ? h1 : "-", h2 ? h2 : "-",
                 want);
}

static void test_xff(void **state)
{
    assert_int_equal(gw_cidr_list_parse("10.0.0.0/8,2001:db8:ffff::/48", &TRUSTED), 0);
    /* an untrusted peer's header is ignored */
    resolve("203.0.113.9", GW_FWD_XFF, "198.51.100.1", NULL, "203.0.113.9");
    /* a trusted peer: the rightmost untrusted hop */
    resolve("10.0.0.2", GW_FWD_XFF, "198.51.100.1", NULL, "198.51.100.1");
    resolve("10.0.0.2", GW_FWD_XFF, "6.6.6.6, 198.51.100.1, 10.1.1.1", NULL, "198.51.100.1");
    resolve("10.0.0.2", GW_FWD_XFF, "198.51.100.1:5555", NULL, "198.51.100.1");
    resolve("10.0.0.2", GW_FWD_XFF, " 2001:db8::7 ", NULL, "2001:db8::7");
    resolve("10.0.0.2", GW_FWD_XFF, "[2001:db8::7]:99", NULL, "2001:db8::7");
    /* two header lines are one list, in order (a proxy appending a line of its own) */
    resolve("10.0.0.2", GW_FWD_XFF, "6.6.6.6", "198.51.100.1", "198.51.100.1");
    resolve("10.0.0.2", GW_FWD_XFF, "198.51.100.1", "10.3.3.3", "198.51.100.1");
    /* garbage stops the walk at the last known address */
    resolve("10.0.0.2", GW_FWD_XFF, "198.51.100.1, garbage", NULL, "10.0.0.2");
    resolve("10.0.0.2", GW_FWD_XFF, "198.51.100.1, garbage, 10.4.4.4", NULL, "10.4.4.4");
    resolve("10.0.0.2", GW_FWD_XFF, "198.51.100.1,,", NULL, "10.0.0.2");
    /* all trusted: the leftmost */
    resolve("10.0.0.2", GW_FWD_XFF, "10.9.9.9, 10.8.8.8", NULL, "10.9.9.9");
    /* no header: the peer */
    resolve("10.0.0.2", GW_FWD_XFF, NULL, NULL, "10.0.0.2");
    resolve("10.0.0.2", GW_FWD_XFF, "", NULL, "10.0.0.2");
    /* a very long list keeps only the rightmost hops */
    char longv[2048] = "";
    for (int i = 0; i < 100; i++)
        strcat(longv, "10.1.1.1, ");
    strcat(longv, "10.2.2.2");
    resolve("10.0.0.2", GW_FWD_XFF, longv, NULL, "10.1.1.1");
    gw_cidr_list_free(&TRUSTED);
}

static void test_forwarded(void **state)
{
    assert_int_equal(gw_cidr_list_parse("10.0.0.0/8", &TRUSTED), 0);
    resolve("10.0.0.2", GW_FWD_FORWARDED, "for=198.51.100.1", NULL, "198.51.100.1");
    resolve("10.0.0.2", GW_FWD_FORWARDED, "for=198.51.100.1;proto=https;by=10.0.0.2", NULL,
            "198.51.100.1");
    resolve("10.0.0.2", GW_FWD_FORWARDED, "For=\"[2001:db8:cafe::17]:4711\"", NULL,
            "2001:db8:cafe::17");
    resolve("10.0.0.2", GW_FWD_FORWARDED, "for=6.6.6.6, for=198.51.100.1;proto=http", NULL,
            "198.51.100.1");
    resolve("10.0.0.2", GW_FWD_FORWARDED, "for=198.51.100.1, for=10.7.7.7", NULL, "198.51.100.1");
    /* a comma inside a quoted string does not split elements */
    resolve("10.0.0.2", GW_FWD_FORWARDED, "for=198.51.100.1;x=\"a,for=6.6.6.6\"", NULL,
            "198.51.100.1");
    /* obfuscated or unknown nodes stop the walk */
    resolve("10.0.0.2", GW_FWD_FORWARDED, "for=198.51.100.1, for=unknown", NULL, "10.0.0.2");
    resolve("10.0.0.2", GW_FWD_FORWARDED, "for=_hidden, for=10.5.5.5", NULL, "10.5.5.5");
    resolve("10.0.0.2", GW_FWD_FORWARDED, "proto=https", NULL, "10.0.0.2");
    resolve("10.0.0.2", GW_FWD_FORWARDED, "for=\"unterminated", NULL, "10.0.0.2");
    /* X-Forwarded-For syntax is not Forwarded syntax */
    resolve("10.0.0.2", GW_FWD_FORWARDED, "198.51.100.1", NULL, "10.0.0.2");
    gw_cidr_list_free(&TRUSTED);
}

/* ---- the table ---- */

static const gw_rl_rate_t RATES[GW_RL_NBUDGETS] = {
    [GW_RL_WRITE] = {.per_min = 60, .burst = 3},  /* 1/s, 3 at once */
    [GW_RL_FAILURE] = {.per_min = 6, .burst = 2}, /* 1 per 10 s, 2 at once */
};

static void test_table_write(void **state)
{
    gw_rltable_t *t;
    assert_int_equal(gw_rltable_new(1024, 3600LL * 1000000, RATES, &t), 0);
    const uint8_t a[] = {4, 1, 2, 3, 4}, b[] = {4, 1, 2, 3, 5};
    int64_t now = 1000000000, retry = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_rltable_admit(t, a, sizeof(a), 1, now, &retry), -1);
    assert_int_equal(gw_rltable_admit(t, a, sizeof(a), 1, now, &retry), GW_RL_WRITE);
    assert_int_equal(retry, 1);
    /* reads are not writes; another client is unaffected */
    assert_int_equal(gw_rltable_admit(t, a, sizeof(a), 0, now, &retry), -1);
    assert_int_equal(gw_rltable_admit(t, b, sizeof(b), 1, now, &retry), -1);
    /* one second later one more write */
    now += 1000000;
    assert_int_equal(gw_rltable_admit(t, a, sizeof(a), 1, now, &retry), -1);
    assert_int_equal(gw_rltable_admit(t, a, sizeof(a), 1, now, &retry), GW_RL_WRITE);
    assert_int_equal(gw_rltable_count(t, now), 2);
    gw_rltable_free(t);
}

static void test_table_failure(void **state)
{
    gw_rltable_t *t;
    assert_int_equal(gw_rltable_new(1024, 3600LL * 1000000, RATES, &t), 0);
    const uint8_t a[] = {6, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1};
    int64_t now = 5000000000, retry = 0;
    /* unknown clients are admitted without being recorded */
    assert_int_equal(gw_rltable_admit(t, a, sizeof(a), 0, now, &retry), -1);
    assert_int_equal(gw_rltable_count(t, now), 0);
    gw_rltable_charge(t, a, sizeof(a), GW_RL_FAILURE, now);
    assert_int_equal(gw_rltable_admit(t, a, sizeof(a), 0, now, &retry), -1);
    gw_rltable_charge(t, a, sizeof(a), GW_RL_FAILURE, now);
    gw_rltable_charge(t, a, sizeof(a), GW_RL_FAILURE, now); /* a late one: floor at zero */
    /* failures used up: everything is refused, writes too, for 10 s */
    assert_int_equal(gw_rltable_admit(t, a, sizeof(a), 0, now, &retry), GW_RL_FAILURE);
    assert_int_equal(retry, 10);
    assert_int_equal(gw_rltable_admit(t, a, sizeof(a), 1, now, &retry), GW_RL_FAILURE);
    assert_int_equal(gw_rltable_admit(t, a, sizeof(a), 0, now + 4000000, &retry), GW_RL_FAILURE);
    assert_int_equal(retry, 6);
    assert_int_equal(gw_rltable_admit(t, a, sizeof(a), 0, now + 10000000, &retry), -1);
    /* the refused write took no write token: all three are still there */
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_rltable_admit(t, a, sizeof(a), 1, now + 10000000, &retry), -1);
    gw_rltable_free(t);
}

static void test_table_unlimited(void **state)
{
    gw_rl_rate_t off[GW_RL_NBUDGETS] = {{0, 1}, {0, 1}};
    gw_rltable_t *t;
    assert_int_equal(gw_rltable_new(64, 1000000, off, &t), 0);
    const uint8_t a[] = {4, 9, 9, 9, 9};
    int64_t retry;
    for (int i = 0; i < 1000; i++) {
        gw_rltable_charge(t, a, sizeof(a), GW_RL_FAILURE, 1);
        assert_int_equal(gw_rltable_admit(t, a, sizeof(a), 1, 1, &retry), -1);
    }
    assert_int_equal(gw_rltable_count(t, 1), 0);
    gw_rltable_free(t);
    gw_rl_rate_t badr[GW_RL_NBUDGETS] = {{-1, 1}, {0, 1}};
    assert_int_equal(gw_rltable_new(64, 1000000, badr, &t), -1);
    gw_rl_rate_t badb[GW_RL_NBUDGETS] = {{1, 0}, {0, 1}};
    assert_int_equal(gw_rltable_new(64, 1000000, badb, &t), -1);
    assert_int_equal(gw_rltable_new(64, 0, RATES, &t), -1);
}

/* Bounded memory: many more clients than entries. The drained (abusing) clients are evicted
 * last: the table forgets the full buckets of one-off visitors first. */
static void test_table_eviction(void **state)
{
    gw_rltable_t *t;
    assert_int_equal(gw_rltable_new(8, 3600LL * 1000000, RATES, &t), 0); /* one set of 8 */
    int64_t now = 7000000000, retry;
    uint8_t k[5] = {4, 10, 0, 0, 0};
    /* 4 abusers drain their failure budgets */
    for (int i = 0; i < 4; i++) {
        k[4] = (uint8_t)i;
        gw_rltable_charge(t, k, sizeof(k), GW_RL_FAILURE, now);
        gw_rltable_charge(t, k, sizeof(k), GW_RL_FAILURE, now);
    }
    /* 1000 one-off writers pass through */
    for (int i = 0; i < 1000; i++) {
        uint8_t w[5] = {4, 20, (uint8_t)(i >> 8), (uint8_t)i, 0};
        assert_int_equal(gw_rltable_admit(t, w, sizeof(w), 1, now, &retry), -1);
    }
    assert_true(gw_rltable_count(t, now) <= 8);
    for (int i = 0; i < 4; i++) {
        k[4] = (uint8_t)i;
        assert_int_equal(gw_rltable_admit(t, k, sizeof(k), 0, now, &retry), GW_RL_FAILURE);
    }
    gw_rltable_free(t);
}

/* Key rotation drops every bucket: a drained client is forgiven at the next period. */
static void test_table_rotation(void **state)
{
    gw_rltable_t *t;
    int64_t period = 60LL * 1000000;
    assert_int_equal(gw_rltable_new(1024, period, RATES, &t), 0);
    const uint8_t a[] = {4, 1, 1, 1, 1};
    int64_t now = 100 * period + 1, retry;
    gw_rltable_charge(t, a, sizeof(a), GW_RL_FAILURE, now);
    gw_rltable_charge(t, a, sizeof(a), GW_RL_FAILURE, now);
    assert_int_equal(gw_rltable_admit(t, a, sizeof(a), 0, now, &retry), GW_RL_FAILURE);
    assert_int_equal(gw_rltable_count(t, now), 1);
    now = 101 * period;
    assert_int_equal(gw_rltable_count(t, now), 0);
    assert_int_equal(gw_rltable_admit(t, a, sizeof(a), 0, now, &retry), -1);
    gw_rltable_free(t);
}

/* Many threads on few clients: every write token is taken exactly once (run under TSan too). */
typedef struct {
    gw_rltable_t *t;
    int admitted;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    int64_t retry;
    for (int i = 0; i < 4000; i++) {
        uint8_t k[5] = {4, 7, 7, 7, (uint8_t)(i % 16)};
        if (gw_rltable_admit(w->t, k, sizeof(k), 1, 42000000, &retry) < 0)
            w->admitted++;
        uint8_t other[5] = {4, 8, 8, 8, (uint8_t)(i % 16)}; /* same stripes, other clients */
        gw_rltable_charge(w->t, other, sizeof(other), GW_RL_FAILURE, 42000000);
    }
    return NULL;
}

static void test_table_threads(void **state)
{
    gw_rl_rate_t rates[GW_RL_NBUDGETS] = {{60, 500}, {6, 2}};
    gw_rltable_t *t;
    assert_int_equal(gw_rltable_new(4096, 3600LL * 1000000, rates, &t), 0);
    pthread_t th[4];
    worker_t w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_t){t, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += w[i].admitted;
    }
    /* 16 clients, 1000 attempts and 500 tokens each, no time passing: exactly 500 admitted */
    assert_int_equal(total, 16 * 500);
    gw_rltable_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refill),         cmocka_unit_test(test_wait),
        cmocka_unit_test(test_addr_parse),     cmocka_unit_test(test_group_key),
        cmocka_unit_test(test_cidr),           cmocka_unit_test(test_xff),
        cmocka_unit_test(test_forwarded),      cmocka_unit_test(test_table_write),
        cmocka_unit_test(test_table_failure),  cmocka_unit_test(test_table_unlimited),
        cmocka_unit_test(test_table_eviction), cmocka_unit_test(test_table_rotation),
        cmocka_unit_test(test_table_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
