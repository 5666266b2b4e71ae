/* Mailbox exchanges through the public API, in-process against the real mailbox-store:
 * relinquish, wrong claims, and idempotency (a retried Create answers 201 with the same body;
 * an existing id under another request is refused). The exchanges over each protocol of a
 * gateway process are in test_gw_api_http.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ctype.h>

#include <cJSON.h>
#include <cmocka.h>

#include "cm_uuid.h"
#include "th_api.h"

static th_api_env_t E; /* the shared store and the API in-process */
#define API (&E.api)

static int group_setup(void **state)
{
    return th_api_env_start(&E, "gwflow");
}

static int group_teardown(void **state)
{
    return th_api_env_stop(&E);
}

static void relinquish(void **state)
{
    th_mbx_t m;
    char r1[37], r2[37], path[128];
    th_api_uuid(r1);
    th_api_uuid(r2);
    th_api_create(API, &m, 0x11, NULL);
    assert_int_equal(th_api_read_secure(API, m.id, r1, NULL), 200);
    assert_int_equal(th_api_read_secure(API, m.id, r2, NULL), 401);
    snprintf(path, sizeof(path), "/v1/m/%s", m.id);
    const char *h[] = {th_api_hdr(0, "Mailbox-Device-Claim: %s", r1), NULL};
    th_http_resp_t r;
    th_api_do(API, "PATCH", path, h, NULL, &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);
    /* once the receiver let go, another device may bind */
    assert_int_equal(th_api_read_secure(API, m.id, r2, NULL), 200);
    /* the creator cannot relinquish */
    const char *hs[] = {th_api_hdr(0, "deviceClaim: %s", m.sender), NULL};
    th_api_do(API, "PATCH", path, hs, NULL, &r);
    th_api_expect_error(&r, 400, "invalid_request");
    th_http_resp_free(&r);
    assert_int_equal(th_api_delete(API, m.id, m.sender), 200);
}

static void wrong_claim(void **state)
{
    th_mbx_t m;
    char receiver[37], other[37];
    th_api_uuid(receiver);
    th_api_uuid(other);
    th_api_create(API, &m, 5, NULL);
    assert_int_equal(th_api_read_secure(API, m.id, receiver, NULL), 200);
    /* a claim in another case is the same UUID */
    char upper[37];
    for (int i = 0; i < 37; i++)
        upper[i] = (char)toupper((unsigned char)receiver[i]);
    assert_int_equal(th_api_read_secure(API, m.id, upper, NULL), 200);
    assert_int_equal(th_api_read_secure(API, m.id, other, NULL), 401);
    assert_int_equal(th_api_update(API, m.id, other, 9), 401);
    assert_int_equal(th_api_delete(API, m.id, other), 401);
    /* nothing changed */
    int fill = 0;
    assert_int_equal(th_api_read_secure(API, m.id, receiver, &fill), 200);
    assert_int_equal(fill, 5);
    /* conflicting claim headers */
    char path[128];
    snprintf(path, sizeof(path), "/v1/m/%s", m.id);
    const char *h[] = {th_api_hdr(0, "deviceClaim: %s", receiver),
                       th_api_hdr(1, "Mailbox-Device-Claim: %s", other), NULL};
    th_http_resp_t r;
    th_api_do(API, "POST", path, h, NULL, &r);
    th_api_expect_error(&r, 400, "invalid_header");
    th_http_resp_free(&r);
    assert_int_equal(th_api_delete(API, m.id, m.sender), 200);
}

static void duplicate_and_existing(void **state)
{
    char id[37], claim[37], corr[37], data[100], body[1024];
    th_api_uuid(id);
    th_api_uuid(claim);
    th_api_uuid(corr);
    th_api_payload_b64(7, 30, data);
    snprintf(body, sizeof(body),
             "{\"mailboxIdentifier\":\"%s\",\"payload\":{\"type\":\"AES256\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"t\"},"
             "\"mailboxConfiguration\":{\"timeToLive\":600}}",
             id, data);
    const char *h[] = {th_api_hdr(0, "deviceClaim: %s", claim),
                       th_api_hdr(1, "Mailbox-Correlation-ID: %s", corr), NULL};
    th_http_resp_t r1, r2;
    th_api_do(API, "POST", "/v1/m", h, body, &r1);
    assert_int_equal(r1.status, 200);
    /* the same request again (a client retry): 201 with the same body */
    th_api_do(API, "POST", "/v1/m", h, body, &r2);
    if (r2.status != 201)
        fail_msg("retry: %ld %s", r2.status, r2.body);
    assert_string_equal(r1.body, r2.body);
    assert_string_equal(th_http_header(&r2, "mailbox-correlation-id"), corr);
    th_http_resp_free(&r1);
    th_http_resp_free(&r2);
    /* the same id with a new correlation id: the id exists -> 401 (draft §6.1.5) */
    char corr2[37], claim2[37];
    th_api_uuid(corr2);
    th_api_uuid(claim2);
    const char *h2[] = {th_api_hdr(0, "deviceClaim: %s", claim2),
                        th_api_hdr(1, "Mailbox-Correlation-ID: %s", corr2), NULL};
    th_api_do(API, "POST", "/v1/m", h2, body, &r1);
    th_api_expect_error(&r1, 401, "unauthorized");
    assert_string_equal(th_http_header(&r1, "mailbox-correlation-id"), corr2);
    th_http_resp_free(&r1);

    /* a retried Create without mailboxIdentifier (one store, no shards) names the same
     * mailbox: 201 with the same link, not a second mailbox */
    snprintf(body, sizeof(body),
             "{\"payload\":{\"type\":\"AES256\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"t\"},"
             "\"mailboxConfiguration\":{\"timeToLive\":600}}",
             data);
    th_api_do(API, "POST", "/v1/m", h2, body, &r1);
    assert_int_equal(r1.status, 200);
    th_api_do(API, "POST", "/v1/m", h2, body, &r2);
    if (r2.status != 201)
        fail_msg("retry without id: %ld %s", r2.status, r2.body);
    assert_string_equal(r1.body, r2.body);
    th_http_resp_free(&r1);
    th_http_resp_free(&r2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(relinquish),
        cmocka_unit_test(wrong_claim),
        cmocka_unit_test(duplicate_and_existing),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
