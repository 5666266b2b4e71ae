/* cm_shard: rendezvous hashing spreads mailboxes evenly and moves the fewest on a change. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cm_shard.h"
#include "cm_uuid.h"

#define NIDS 30000

static char (*ids)[CM_UUID_STRLEN + 1];

static int setup(void **state)
{
    ids = malloc(sizeof(*ids) * NIDS);
    for (int i = 0; i < NIDS; i++) {
        if (cm_uuid_v4(ids[i]) != 0)
            return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    free(ids);
    return 0;
}

static const char *addr3[] = {
    "mailbox-store-0.mailbox-store.tigress.svc.cluster.local:7001",
    "mailbox-store-1.mailbox-store.tigress.svc.cluster.local:7001",
    "mailbox-store-2.mailbox-store.tigress.svc.cluster.local:7001",
    "mailbox-store-3.mailbox-store.tigress.svc.cluster.local:7001",
};

static void known_vector(void **state)
{
    /* printf 'mailbox-store-0.mailbox-store:7001\0%s' 0b2d1c1e-6a4f-4f3e-9b1e-2f5a8c7d6e01 |
     *   openssl dgst -sha256   -> 78ae9e07f9e4812e...: the score is its first 8 bytes. Lets a
     * tool in any language reproduce the placement. */
    const char *id = "0b2d1c1e-6a4f-4f3e-9b1e-2f5a8c7d6e01";
    assert_true(cm_shard_score("mailbox-store-0.mailbox-store:7001", id, strlen(id)) ==
                UINT64_C(0x78ae9e07f9e4812e));
}

static void parse(void **state)
{
    cm_shards_t *s = NULL;
    assert_int_equal(cm_shards_parse(" a:1 , b:2,c:3 ", &s), 0);
    assert_int_equal(cm_shards_count(s), 3);
    assert_string_equal(cm_shards_addr(s, 0), "a:1");
    assert_string_equal(cm_shards_addr(s, 1), "b:2");
    assert_string_equal(cm_shards_addr(s, 2), "c:3");
    assert_null(cm_shards_addr(s, 3));
    cm_shards_free(s);
    assert_int_equal(cm_shards_parse("only:7001", &s), 0);
    assert_int_equal(cm_shards_count(s), 1);
    assert_int_equal(cm_shards_pick(s, "x", 1), 0);
    cm_shards_free(s);

    const char *bad[] = {"", ",", "a:1,", ",a:1", "a:1,,b:2", "a:1, ,b:2", "a:1,a:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        s = (cm_shards_t *)1;
        assert_int_equal(cm_shards_parse(bad[i], &s), -1);
        assert_null(s);
    }
    assert_int_equal(cm_shards_parse(NULL, &s), -1);
}

static void balance_and_order_independence(void **state)
{
    int count[3] = {0};
    const char *reversed[] = {addr3[2], addr3[1], addr3[0]};
    for (int i = 0; i < NIDS; i++) {
        size_t k = cm_shard_rendezvous(addr3, 3, ids[i], CM_UUID_STRLEN);
        count[k]++;
        /* Every gateway agrees whatever order its shard list is in. */
        size_t r = cm_shard_rendezvous(reversed, 3, ids[i], CM_UUID_STRLEN);
        assert_string_equal(reversed[r], addr3[k]);
    }
    for (int k = 0; k < 3; k++) {
        /* Expect 10000 each; +-5% is over 8 standard deviations of a binomial here. */
        printf("shard %d: %d of %d\n", k, count[k], NIDS);
        assert_true(count[k] > 9500 && count[k] < 10500);
    }
}

static void minimal_movement(void **state)
{
    int moved = 0, moved_on_remove = 0;
    for (int i = 0; i < NIDS; i++) {
        size_t before = cm_shard_rendezvous(addr3, 3, ids[i], CM_UUID_STRLEN);
        size_t after = cm_shard_rendezvous(addr3, 4, ids[i], CM_UUID_STRLEN);
        if (after != before) {
            /* A mailbox only ever moves to the new shard, never between old ones. */
            assert_int_equal(after, 3);
            moved++;
        }
        /* Removing shard 1: only shard 1's mailboxes move. */
        const char *without1[] = {addr3[0], addr3[2]};
        size_t r = cm_shard_rendezvous(without1, 2, ids[i], CM_UUID_STRLEN);
        if (before != 1)
            assert_string_equal(without1[r], addr3[before]);
        else
            moved_on_remove++;
    }
    printf("adding a 4th shard moved %d of %d mailboxes (ideal %d)\n", moved, NIDS, NIDS / 4);
    assert_true(moved > 7000 && moved < 8000);
    assert_true(moved_on_remove > 9500 && moved_on_remove < 10500);
}

static void case_matters_so_canonicalise(void **state)
{
    /* The contract is bytes in, so callers canonicalise; this shows why. */
    char canon[CM_UUID_STRLEN + 1];
    cm_uuid_canonical("0B2D1C1E-6A4F-4F3E-9B1E-2F5A8C7D6E01", canon);
    assert_string_equal(canon, "0b2d1c1e-6a4f-4f3e-9b1e-2f5a8c7d6e01");
    assert_true(cm_shard_score(addr3[0], canon, CM_UUID_STRLEN) !=
                cm_shard_score(addr3[0], "0B2D1C1E-6A4F-4F3E-9B1E-2F5A8C7D6E01", CM_UUID_STRLEN));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_vector),
        cmocka_unit_test(parse),
        cmocka_unit_test(balance_and_order_independence),
        cmocka_unit_test(minimal_movement),
        cmocka_unit_test(case_matters_so_canonicalise),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
