#include "api_flows.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

void flow_stateless(const th_api_t *t, int fill_byte)
{
    th_mbx_t m;
    th_api_create(t, &m, fill_byte, NULL);

    th_http_resp_t r;
    assert_int_equal(th_api_preview(t, m.id, &r), 200);
    assert_string_equal(th_http_header(&r, "content-type"), "text/html; charset=utf-8");
    assert_string_equal(th_http_header(&r, "cache-control"), "no-store");
    assert_string_equal(th_http_header(&r, "content-security-policy"),
                        "default-src 'none'; img-src https:; style-src 'unsafe-inline'");
    assert_string_equal(th_http_header(&r, "x-content-type-options"), "nosniff");
    assert_string_equal(th_http_header(&r, "referrer-policy"), "no-referrer");
    assert_non_null(strstr(r.body, "<meta property=\"og:title\" content=\"Car Key\">"));
    assert_non_null(strstr(r.body, "<meta property=\"og:description\" content=\"A key\">"));
    assert_non_null(
        strstr(r.body, "<meta property=\"og:image\" content=\"https://img.example/k.png\">"));
    assert_non_null(strstr(r.body, "<meta property=\"og:type\" content=\"website\">"));
    char og_url[200];
    snprintf(og_url, sizeof(og_url),
             "<meta property=\"og:url\" content=\"https://relay.example/v1/m/%s\">", m.id);
    assert_non_null(strstr(r.body, og_url));
    assert_null(strstr(r.body, "<script"));
    th_http_resp_free(&r);

    char receiver[37];
    th_api_uuid(receiver);
    int fill = 0;
    assert_int_equal(th_api_read_secure(t, m.id, receiver, &fill), 200);
    assert_int_equal(fill, fill_byte);
    /* the preview has no side effect and needs no claim: still there */
    assert_int_equal(th_api_preview(t, m.id, &r), 200);
    th_http_resp_free(&r);
    assert_int_equal(th_api_delete(t, m.id, receiver), 200);
    assert_int_equal(th_api_preview(t, m.id, &r), 404);
    th_api_expect_error(&r, 404, "not_found");
    th_http_resp_free(&r);
    assert_int_equal(th_api_read_secure(t, m.id, receiver, NULL), 404);
    assert_int_equal(th_api_delete(t, m.id, receiver), 404);
}

void flow_stateful(const th_api_t *t)
{
    th_mbx_t m;
    char receiver[37], third[37];
    th_api_uuid(receiver);
    th_api_uuid(third);
    int fill = 0;
    th_api_create(t, &m, 0x10, NULL);
    /* the sender reads its own mailbox: allowed, binds nothing */
    assert_int_equal(th_api_read_secure(t, m.id, m.sender, &fill), 200);
    assert_int_equal(fill, 0x10);
    /* receiver binds, then answers */
    assert_int_equal(th_api_read_secure(t, m.id, receiver, &fill), 200);
    assert_int_equal(fill, 0x10);
    assert_int_equal(th_api_update(t, m.id, receiver, 0x20), 200);
    /* a third device is neither sender nor receiver */
    assert_int_equal(th_api_read_secure(t, m.id, third, NULL), 401);
    assert_int_equal(th_api_update(t, m.id, third, 0x66), 401);
    assert_int_equal(th_api_delete(t, m.id, third), 401);
    /* exchange 2: sender reads the receiver's answer, writes back */
    assert_int_equal(th_api_read_secure(t, m.id, m.sender, &fill), 200);
    assert_int_equal(fill, 0x20);
    assert_int_equal(th_api_update(t, m.id, m.sender, 0x30), 200);
    /* exchange 3: receiver reads the final payload, then deletes */
    assert_int_equal(th_api_read_secure(t, m.id, receiver, &fill), 200);
    assert_int_equal(fill, 0x30);
    assert_int_equal(th_api_delete(t, m.id, receiver), 200);
    assert_int_equal(th_api_read_secure(t, m.id, m.sender, NULL), 404);
}
