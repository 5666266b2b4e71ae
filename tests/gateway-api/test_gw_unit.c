/* Unit tests of the gateway API's pure half: body validation (gateway/API.md), response bodies,
 * the attestation header format, status mapping, UTF-8, RFC 3339 and the preview page. No
 * server, no backend. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <cmocka.h>
#include <grpc/status.h>

#include "cm_b64.h"
#include "gw_json.h"
#include "gw_preview.h"

#define NOW_MS 1795417200000LL /* 2026-11-23T07:00:00Z */
#define MAX_TTL 172800

/* 32 bytes of base64: "AAEC..." for bytes 0..31 */
static char good_data[64];

static int setup(void **state)
{
    uint8_t raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)i;
    cm_b64_encode(CM_B64_STD, raw, 32, good_data);
    return 0;
}

/* Builds a create body with one member of the standard valid body replaced (or removed, with
 * value NULL). |path| is "a" or "a.b". Values are raw JSON text. */
static char *body_with(const char *path, const char *value)
{
    char base[1024];
    snprintf(base, sizeof(base),
             "{\"mailboxIdentifier\":\"3b241101-e2bb-4255-8caf-4136c566a962\","
             "\"payload\":{\"type\":\"AES128\",\"data\":\"%s\"},"
             "\"displayInformation\":{\"title\":\"Hotel Pass\",\"description\":\"Room 12\","
             "\"imageUrl\":\"https://hotel.example/i.png\"},"
             "\"notificationToken\":{\"type\":\"com.apple.apns\",\"tokenData\":\"abcd\"},"
             "\"mailboxConfiguration\":{\"accessRights\":\"RWD\",\"timeToLive\":\"8640\"}}",
             good_data);
    cJSON *root = cJSON_Parse(base);
    assert_non_null(root);
    if (path) {
        char p[128];
        snprintf(p, sizeof(p), "%s", path);
        char *dot = strchr(p, '.');
        cJSON *parent = root;
        const char *key = p;
        if (dot) {
            *dot = '\0';
            parent = cJSON_GetObjectItemCaseSensitive(root, p);
            key = dot + 1;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(parent, key);
        if (value) {
            cJSON *v = cJSON_Parse(value);
            assert_non_null(v);
            cJSON_AddItemToObject(parent, key, v);
        }
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static int parse(const char *body, gw_create_body_t *out, gw_json_err_t *err)
{
    return gw_json_parse_create((const uint8_t *)body, strlen(body), NOW_MS, MAX_TTL, out, err);
}

/* Expects |body| to be refused with |code|; the message must name |field| when given. */
static void expect_bad(const char *body, const char *code, const char *field)
{
    gw_create_body_t b;
    gw_json_err_t err = {0};
    if (parse(body, &b, &err) == 0) {
        gw_create_body_free(&b);
        fail_msg("accepted: %s", body);
    }
    assert_string_equal(gw_err_code(err.err), code);
    if (field && !strstr(err.message, field))
        fail_msg("message \"%s\" does not name %s", err.message, field);
}

static void expect_bad_with(const char *path, const char *value, const char *code,
                            const char *field)
{
    char *body = body_with(path, value);
    expect_bad(body, code, field);
    free(body);
}

static void create_valid(void **state)
{
    char *body = body_with(NULL, NULL);
    gw_create_body_t b;
    gw_json_err_t err;
    assert_int_equal(parse(body, &b, &err), 0);
    assert_string_equal(b.mailbox_id, "3b241101-e2bb-4255-8caf-4136c566a962");
    assert_int_equal(b.id_generated, 0);
    assert_string_equal(b.payload.type, "AES128");
    assert_int_equal(b.payload.data_len, 32);
    assert_int_equal(b.payload.data[31], 31);
    assert_string_equal(b.title, "Hotel Pass");
    assert_string_equal(b.description, "Room 12");
    assert_string_equal(b.image_url, "https://hotel.example/i.png");
    assert_int_equal(b.token.present, 1);
    assert_string_equal(b.token.type, "com.apple.apns");
    assert_string_equal(b.token.token_data, "abcd");
    assert_string_equal(b.access_rights, "RWD");
    assert_int_equal(b.ttl_seconds, 8640);
    gw_create_body_free(&b);
    free(body);
}

static void create_variants_accepted(void **state)
{
    struct {
        const char *path, *value;
    } ok[] = {
        {"mailboxIdentifier", NULL},                                       /* generated */
        {"mailboxIdentifier", "null"},                                     /* generated */
        {"mailboxIdentifier", "\"3B241101-E2BB-4255-8CAF-4136C566A962\""}, /* upper case */
        {"notificationToken", NULL},
        {"notificationToken", "{\"name\":\"webhook\",\"tokenData\":\"https://x.example/h\"}"},
        {"notificationToken", "{\"type\":\"com.google.fcm\",\"tokenData\":\"t\"}"},
        {"mailboxConfiguration", "{\"timeToLive\":172800}"},
        {"mailboxConfiguration", "{\"timeToLive\":1,\"accessRights\":\"DR\"}"},
        {"mailboxConfiguration", "{\"timeToLive\":\"60\",\"accessRights\":\"W\"}"},
        {"mailboxConfiguration", "{\"timeToLive\":60.0}"},
        {"mailboxConfiguration", "{\"expiration\":\"2026-11-24T07:00:00Z\"}"},
        {"mailboxConfiguration", "{\"expiration\":\"2026-11-23T10:00:00.5+02:00\"}"},
        {"displayInformation", "{\"title\":\"T\",\"imageURL\":\"https://a.example/\"}"},
        {"displayInformation", "{\"title\":\"\"}"},
        {"payload", NULL}, /* replaced below */
        {"unknownField", "{\"deep\":[1,2,3]}"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char *body;
        if (strcmp(ok[i].path, "payload") == 0) {
            /* URL alphabet, no padding, 28 bytes exactly */
            uint8_t raw[28];
            memset(raw, 0xfb, sizeof(raw));
            char enc[64], val[128];
            cm_b64_encode(CM_B64_URL, raw, sizeof(raw), enc);
            snprintf(val, sizeof(val), "{\"type\":\"AEAD_AES_256_GCM\",\"data\":\"%s\"}", enc);
            body = body_with("payload", val);
        } else {
            body = body_with(ok[i].path, ok[i].value);
        }
        gw_create_body_t b;
        gw_json_err_t err = {0};
        if (parse(body, &b, &err) != 0)
            fail_msg("refused (%s: %s): %s", gw_err_code(err.err), err.message, body);
        if (strcmp(ok[i].path, "mailboxIdentifier") == 0) {
            assert_true(cm_uuid_is_v4(b.mailbox_id, strlen(b.mailbox_id)));
            for (const char *p = b.mailbox_id; *p; p++)
                assert_false(*p >= 'A' && *p <= 'F');
        }
        gw_create_body_free(&b);
        free(body);
    }
}

static void create_lifetimes(void **state)
{
    gw_create_body_t b;
    gw_json_err_t err;
    char *body = body_with("mailboxConfiguration", "{\"expiration\":\"2026-11-23T08:00:00.999Z\"}");
    assert_int_equal(parse(body, &b, &err), 0);
    assert_int_equal(b.ttl_seconds, 3600);
    assert_string_equal(b.access_rights, "");
    gw_create_body_free(&b);
    free(body);
    /* timeToLive wins over expiration */
    body = body_with("mailboxConfiguration",
                     "{\"timeToLive\":\"100\",\"expiration\":\"2026-11-23T08:00:00Z\"}");
    assert_int_equal(parse(body, &b, &err), 0);
    assert_int_equal(b.ttl_seconds, 100);
    gw_create_body_free(&b);
    free(body);
    /* access rights are normalised to RWD order */
    body = body_with("mailboxConfiguration", "{\"timeToLive\":5,\"accessRights\":\"DWR\"}");
    assert_int_equal(parse(body, &b, &err), 0);
    assert_string_equal(b.access_rights, "RWD");
    gw_create_body_free(&b);
    free(body);
}

static void create_rejects_json(void **state)
{
    const char *bad[] = {
        "",
        "{",
        "[]",
        "null",
        "\"x\"",
        "{} {}",
        "{}x",
        "{\"a\":1,}",
        "{'a':1}",
        "{\"a\":\"\\u0000\"}",
        "{\"a\":\"x\ty\"}" /* raw tab inside string is fine for cJSON, but check below */,
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]) - 1; i++)
        expect_bad(bad[i], "invalid_json", NULL);
    /* invalid UTF-8 anywhere, also in unknown fields */
    const char *utf8[] = {"{\"x\":\"\xc3\x28\"}", "{\"x\":\"\xed\xa0\x80\"}",
                          "{\"x\":\"\xc0\xaf\"}", "{\"x\":\"\xf4\x90\x80\x80\"}",
                          "{\"x\":\"\xe2\x82\"}"};
    for (size_t i = 0; i < sizeof(utf8) / sizeof(utf8[0]); i++)
        expect_bad(utf8[i], "invalid_json", "UTF-8");
    /* a raw NUL or control byte inside the body */
    const char nul[] = "{\"x\":\"a\0b\"}";
    gw_create_body_t b;
    gw_json_err_t err;
    assert_int_equal(
        gw_json_parse_create((const uint8_t *)nul, sizeof(nul) - 1, NOW_MS, MAX_TTL, &b, &err), -1);
    assert_string_equal(gw_err_code(err.err), "invalid_json");
    expect_bad("{\"x\":\"a\x01\"}", "invalid_json", NULL);
    /* escaped backslash followed by u0000 text is not a NUL escape */
    char *body = body_with("displayInformation", "{\"title\":\"a\\\\u0000\"}");
    assert_int_equal(parse(body, &b, &err), 0);
    assert_string_equal(b.title, "a\\u0000");
    gw_create_body_free(&b);
    free(body);
    /* lone surrogate escapes are refused by cJSON */
    expect_bad("{\"x\":\"\\ud800\"}", "invalid_json", NULL);
}

/* Writes "<prefix><n times c>" as a JSON string literal. */
static void quoted(char *out, char c, size_t n, const char *prefix)
{
    size_t p = strlen(prefix);
    out[0] = '"';
    memcpy(out + 1, prefix, p);
    memset(out + 1 + p, c, n);
    out[1 + p + n] = '"';
    out[2 + p + n] = '\0';
}

static void create_rejects_fields(void **state)
{
    char title257[300], desc1025[1100], url2049[2100];
    quoted(title257, 'a', 257, "");
    quoted(desc1025, 'b', 1025, "");
    quoted(url2049, 'c', 2049 - strlen("https://x/"), "https://x/");
    char dtitle[400], ddesc[1200], durl[2200];
    snprintf(dtitle, sizeof(dtitle), "{\"title\":%s}", title257);
    snprintf(ddesc, sizeof(ddesc), "{\"title\":\"t\",\"description\":%s}", desc1025);
    snprintf(durl, sizeof(durl), "{\"title\":\"t\",\"imageUrl\":%s}", url2049);

    char short_data[128], bad_b64[128];
    uint8_t raw[27] = {0};
    char enc[64];
    cm_b64_encode(CM_B64_STD, raw, sizeof(raw), enc);
    snprintf(short_data, sizeof(short_data), "{\"type\":\"AES128\",\"data\":\"%s\"}", enc);
    snprintf(bad_b64, sizeof(bad_b64), "{\"type\":\"AES128\",\"data\":\"%s!\"}", good_data);

    struct {
        const char *path, *value, *code, *field;
    } cases[] = {
        {"mailboxIdentifier", "\"not-a-uuid\"", "invalid_field", "mailboxIdentifier"},
        {"mailboxIdentifier", "\"3b241101-e2bb-1255-8caf-4136c566a962\"", "invalid_field",
         "mailboxIdentifier"}, /* v1 */
        {"mailboxIdentifier", "42", "invalid_field", "mailboxIdentifier"},
        {"payload", NULL, "missing_field", "payload"},
        {"payload", "\"AES128\"", "invalid_field", "payload"},
        {"payload", "{\"data\":\"AAAA\"}", "missing_field", "payload.type"},
        {"payload", "{\"type\":\"DES\",\"data\":\"AAAA\"}", "invalid_field", "payload.type"},
        {"payload", "{\"type\":\"aes128\",\"data\":\"AAAA\"}", "invalid_field", "payload.type"},
        {"payload", "{\"type\":\"AES128\"}", "missing_field", "payload.data"},
        {"payload", "{\"type\":\"AES128\",\"data\":7}", "invalid_field", "payload.data"},
        {"payload", bad_b64, "invalid_field", "payload.data"},
        {"payload", short_data, "invalid_field", "payload.data"},
        {"displayInformation", NULL, "missing_field", "displayInformation"},
        {"displayInformation", "[]", "invalid_field", "displayInformation"},
        {"displayInformation", "{}", "missing_field", "displayInformation.title"},
        {"displayInformation", "{\"title\":1}", "invalid_field", "displayInformation.title"},
        {"displayInformation", dtitle, "invalid_field", "displayInformation.title"},
        {"displayInformation", ddesc, "invalid_field", "displayInformation.description"},
        {"displayInformation", durl, "invalid_field", "displayInformation.imageUrl"},
        {"notificationToken", "\"x\"", "invalid_field", "notificationToken"},
        {"notificationToken", "{\"tokenData\":\"a\"}", "missing_field", "notificationToken.type"},
        {"notificationToken", "{\"type\":\"com.apple.apns\"}", "missing_field",
         "notificationToken.tokenData"},
        {"notificationToken", "{\"type\":\"com.apple.apns\",\"tokenData\":\"\"}", "invalid_field",
         "notificationToken.tokenData"},
        {"notificationToken", "{\"type\":\"sms\",\"tokenData\":\"a\"}", "invalid_field",
         "notificationToken.type"},
        {"mailboxConfiguration", NULL, "missing_field", "mailboxConfiguration"},
        {"mailboxConfiguration", "{}", "missing_field", "timeToLive"},
        {"mailboxConfiguration", "{\"accessRights\":\"RD\"}", "missing_field", "timeToLive"},
        {"mailboxConfiguration", "{\"timeToLive\":\"0\"}", "invalid_field", "timeToLive"},
        {"mailboxConfiguration", "{\"timeToLive\":0}", "invalid_field", "timeToLive"},
        {"mailboxConfiguration", "{\"timeToLive\":\"-5\"}", "invalid_field", "timeToLive"},
        {"mailboxConfiguration", "{\"timeToLive\":-5}", "invalid_field", "timeToLive"},
        {"mailboxConfiguration", "{\"timeToLive\":\"172801\"}", "invalid_field", "timeToLive"},
        {"mailboxConfiguration", "{\"timeToLive\":172801}", "invalid_field", "timeToLive"},
        {"mailboxConfiguration", "{\"timeToLive\":1e300}", "invalid_field", "timeToLive"},
        {"mailboxConfiguration", "{\"timeToLive\":\"99999999999999999999\"}", "invalid_field",
         "timeToLive"},
        {"mailboxConfiguration", "{\"timeToLive\":\"ten\"}", "invalid_field", "timeToLive"},
        {"mailboxConfiguration", "{\"timeToLive\":\" 10\"}", "invalid_field", "timeToLive"},
        {"mailboxConfiguration", "{\"timeToLive\":\"\"}", "invalid_field", "timeToLive"},
        {"mailboxConfiguration", "{\"timeToLive\":1.5}", "invalid_field", "timeToLive"},
        {"mailboxConfiguration", "{\"timeToLive\":true}", "invalid_field", "timeToLive"},
        {"mailboxConfiguration", "{\"expiration\":\"2026-11-23T06:59:59Z\"}", "invalid_field",
         "expiration"},
        {"mailboxConfiguration", "{\"expiration\":\"2026-11-23T07:00:00Z\"}", "invalid_field",
         "expiration"},
        {"mailboxConfiguration", "{\"expiration\":\"2026-11-25T07:00:01Z\"}", "invalid_field",
         "expiration"},
        {"mailboxConfiguration", "{\"expiration\":\"tomorrow\"}", "invalid_field", "expiration"},
        {"mailboxConfiguration", "{\"expiration\":1795420800}", "invalid_field", "expiration"},
        {"mailboxConfiguration", "{\"timeToLive\":60,\"accessRights\":\"\"}", "invalid_field",
         "accessRights"},
        {"mailboxConfiguration", "{\"timeToLive\":60,\"accessRights\":\"RR\"}", "invalid_field",
         "accessRights"},
        {"mailboxConfiguration", "{\"timeToLive\":60,\"accessRights\":\"RX\"}", "invalid_field",
         "accessRights"},
        {"mailboxConfiguration", "{\"timeToLive\":60,\"accessRights\":\"rw\"}", "invalid_field",
         "accessRights"},
        {"mailboxConfiguration", "{\"timeToLive\":60,\"accessRights\":\"RWDR\"}", "invalid_field",
         "accessRights"},
        {"mailboxConfiguration", "{\"timeToLive\":60,\"accessRights\":[\"R\"]}", "invalid_field",
         "accessRights"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_bad_with(cases[i].path, cases[i].value, cases[i].code, cases[i].field);
    /* a title of exactly 256 bytes of multi-byte characters is fine, 257 is not */
    char t[600] = "{\"title\":\"";
    for (int i = 0; i < 128; i++)
        strcat(t, "\xc3\xa9");
    strcat(t, "\"}");
    char *body = body_with("displayInformation", t);
    gw_create_body_t b;
    gw_json_err_t err;
    assert_int_equal(parse(body, &b, &err), 0);
    assert_int_equal(strlen(b.title), 256);
    gw_create_body_free(&b);
    free(body);
    t[strlen(t) - 2] = '\0';
    strcat(t, "x\"}");
    expect_bad_with("displayInformation", t, "invalid_field", "title");
}

static void update_parse(void **state)
{
    char ok[512];
    snprintf(ok, sizeof(ok),
             "{\"payload\":{\"type\":\"AES256\",\"data\":\"%s\"},"
             "\"notificationToken\":{\"type\":\"webhook\",\"tokenData\":\"https://h.example/\"},"
             "\"extra\":1}",
             good_data);
    gw_update_body_t u;
    gw_json_err_t err;
    assert_int_equal(gw_json_parse_update((const uint8_t *)ok, strlen(ok), &u, &err), 0);
    assert_string_equal(u.payload.type, "AES256");
    assert_int_equal(u.payload.data_len, 32);
    assert_int_equal(u.token.present, 1);
    assert_string_equal(u.token.token_data, "https://h.example/");
    gw_update_body_free(&u);

    char no_token[256];
    snprintf(no_token, sizeof(no_token), "{\"payload\":{\"type\":\"AES256\",\"data\":\"%s\"}}",
             good_data);
    assert_int_equal(gw_json_parse_update((const uint8_t *)no_token, strlen(no_token), &u, &err),
                     -1);
    assert_string_equal(gw_err_code(err.err), "missing_field");
    assert_non_null(strstr(err.message, "notificationToken"));
    const char *no_payload = "{\"notificationToken\":{\"type\":\"webhook\",\"tokenData\":\"x\"}}";
    assert_int_equal(
        gw_json_parse_update((const uint8_t *)no_payload, strlen(no_payload), &u, &err), -1);
    assert_string_equal(gw_err_code(err.err), "missing_field");
    assert_int_equal(gw_json_parse_update((const uint8_t *)"{", 1, &u, &err), -1);
    assert_string_equal(gw_err_code(err.err), "invalid_json");
}

static char *b64url_of(const char *s)
{
    char *out = malloc(cm_b64_encoded_size(strlen(s)));
    cm_b64_encode(CM_B64_URL, (const uint8_t *)s, strlen(s), out);
    return out;
}

static void attestation_header(void **state)
{
    uint8_t *ao, *cd;
    size_t aol, cdl;
    /* attestationObject = bytes a0 ff 00, clientDataJSON = {"x":1} */
    char json[256];
    char *cdj = b64url_of("{\"x\":1}");
    snprintf(json, sizeof(json), "{\"attestationObject\":\"oP8A\",\"clientDataJSON\":\"%s\"}", cdj);
    char *hdr = b64url_of(json);
    assert_int_equal(gw_json_parse_attestation(hdr, &ao, &aol, &cd, &cdl), 0);
    assert_int_equal(aol, 3);
    assert_int_equal(ao[0], 0xa0);
    assert_int_equal(ao[2], 0x00);
    assert_int_equal(cdl, 7);
    assert_memory_equal(cd, "{\"x\":1}", 7);
    free(ao);
    free(cd);
    free(hdr);
    free(cdj);

    const char *bad_json[] = {
        "{\"attestationObject\":\"oP8A\"}",
        "{\"clientDataJSON\":\"oP8A\"}",
        "{\"attestationObject\":\"oP8A\",\"clientDataJSON\":\"***\"}",
        "{\"attestationObject\":\"\",\"clientDataJSON\":\"oP8A\"}",
        "{\"attestationObject\":1,\"clientDataJSON\":\"oP8A\"}",
        "[1]",
        "not json",
    };
    for (size_t i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++) {
        hdr = b64url_of(bad_json[i]);
        assert_int_equal(gw_json_parse_attestation(hdr, &ao, &aol, &cd, &cdl), -1);
        assert_null(ao);
        assert_null(cd);
        free(hdr);
    }
    assert_int_equal(gw_json_parse_attestation("", &ao, &aol, &cd, &cdl), -1);
    assert_int_equal(gw_json_parse_attestation("@@@", &ao, &aol, &cd, &cdl), -1);
    assert_int_equal(gw_json_parse_attestation(NULL, &ao, &aol, &cd, &cdl), -1);
}

static void responses(void **state)
{
    size_t len;
    char *s = gw_json_error_body(GW_ERR_INVALID_FIELD, "payload.data \"x\" <b>", &len);
    assert_string_equal(s, "{\"error\":{\"code\":\"invalid_field\",\"message\":\"payload.data "
                           "\\\"x\\\" <b>\"}}");
    assert_int_equal(len, strlen(s));
    free(s);
    s = gw_json_create_response("http://127.0.0.1:8080/v1/m/abc", 1, &len);
    assert_string_equal(s, "{\"urlLink\":\"http://127.0.0.1:8080/v1/m/abc\","
                           "\"isPushNotificationSupported\":true}");
    free(s);
    s = gw_json_create_response("u", 0, &len);
    assert_string_equal(s, "{\"urlLink\":\"u\",\"isPushNotificationSupported\":false}");
    free(s);
    const uint8_t data[] = {0xfb, 0xff, 0x00, 0x01};
    s = gw_json_read_response("T\xc3\xa9", "D", "", "AES128", data, sizeof(data), NOW_MS + 1999,
                              &len);
    assert_string_equal(
        s, "{\"displayInformation\":{\"title\":\"T\xc3\xa9\",\"description\":\"D\","
           "\"imageUrl\":\"\"},\"payload\":{\"type\":\"AES128\",\"data\":\"+/8AAQ==\"},"
           "\"expiration\":\"2026-11-23T07:00:01Z\"}");
    free(s);
}

static void status_mapping(void **state)
{
    struct {
        int grpc, http;
    } m[] = {
        {GRPC_STATUS_OK, 200},
        {GRPC_STATUS_NOT_FOUND, 404},
        {GRPC_STATUS_ALREADY_EXISTS, 401},
        {GRPC_STATUS_PERMISSION_DENIED, 401},
        {GRPC_STATUS_INVALID_ARGUMENT, 400},
        {GRPC_STATUS_FAILED_PRECONDITION, 400},
        {GRPC_STATUS_UNAVAILABLE, 503},
        {GRPC_STATUS_DEADLINE_EXCEEDED, 504},
        {GRPC_STATUS_INTERNAL, 500},
        {GRPC_STATUS_UNKNOWN, 500},
        {GRPC_STATUS_UNIMPLEMENTED, 500},
        {GRPC_STATUS_CANCELLED, 500},
        {999, 500},
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        gw_err_t e = gw_err_from_grpc(m[i].grpc);
        assert_int_equal(gw_err_http_status(e), m[i].http);
        assert_non_null(gw_err_code(e));
        assert_non_null(gw_err_message(e));
        assert_non_null(gw_err_name(e));
    }
    /* every value of the enum has its row (a missing one would have no name and no code) */
    for (int e = GW_OK; e < GW_ERR_COUNT; e++) {
        assert_non_null(gw_err_name((gw_err_t)e));
        assert_non_null(gw_err_code((gw_err_t)e));
        assert_true(gw_err_http_status((gw_err_t)e) >= 200);
    }
    assert_int_equal(gw_err_http_status(GW_ERR_RATE_LIMITED), 429);
    assert_string_equal(gw_err_code(GW_ERR_RATE_LIMITED), "rate_limited");
}

static void derived_id(void **state)
{
    char a[37], b[37], c[37], d[37];
    gw_derive_mailbox_id("3b241101-e2bb-4255-8caf-4136c566a962", "corr-1", a);
    gw_derive_mailbox_id("3b241101-e2bb-4255-8caf-4136c566a962", "corr-1", b);
    gw_derive_mailbox_id("3b241101-e2bb-4255-8caf-4136c566a962", "corr-2", c);
    gw_derive_mailbox_id("3b241101-e2bb-4255-8caf-4136c566a963", "corr-1", d);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_string_not_equal(a, d);
    assert_true(cm_uuid_is_v4(a, strlen(a)));
    assert_true(cm_uuid_is_v4(c, strlen(c)));
}

static void utf8(void **state)
{
    struct {
        const char *s;
        int ok;
    } v[] = {
        {"", 1},
        {"plain ascii", 1},
        {"\xc3\xa9", 1},
        {"\xe2\x82\xac", 1},
        {"\xf0\x9f\x98\x80", 1},
        {"\xf4\x8f\xbf\xbf", 1}, /* U+10FFFF */
        {"\xef\xbb\xbf", 1},     /* BOM is a character */
        {"\x80", 0},
        {"\xc3", 0},
        {"\xc0\x80", 0}, /* overlong NUL */
        {"\xc1\xbf", 0},
        {"\xe0\x80\xaf", 0}, /* overlong */
        {"\xed\xa0\x80", 0}, /* surrogate */
        {"\xed\xbf\xbf", 0},
        {"\xf0\x80\x80\xaf", 0}, /* overlong */
        {"\xf4\x90\x80\x80", 0}, /* > U+10FFFF */
        {"\xf5\x80\x80\x80", 0},
        {"\xff", 0},
        {"a\xe2\x82", 0},
        {"\xe2\x28\xa1", 0},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        if (gw_utf8_valid((const uint8_t *)v[i].s, strlen(v[i].s)) != v[i].ok)
            fail_msg("case %zu", i);
}

static void rfc3339(void **state)
{
    int64_t ms;
    assert_int_equal(gw_rfc3339_parse("1970-01-01T00:00:00Z", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(gw_rfc3339_parse("2026-11-23T07:00:00Z", &ms), 0);
    assert_int_equal(ms, NOW_MS);
    assert_int_equal(gw_rfc3339_parse("2026-11-23t07:00:00.123z", &ms), 0);
    assert_int_equal(ms, NOW_MS + 123);
    assert_int_equal(gw_rfc3339_parse("2026-11-23T07:00:00.1234567Z", &ms), 0);
    assert_int_equal(ms, NOW_MS + 123);
    assert_int_equal(gw_rfc3339_parse("2026-11-23T08:30:00+01:30", &ms), 0);
    assert_int_equal(ms, NOW_MS);
    assert_int_equal(gw_rfc3339_parse("2026-11-23T05:00:00-02:00", &ms), 0);
    assert_int_equal(ms, NOW_MS);
    assert_int_equal(gw_rfc3339_parse("2024-02-29T00:00:00Z", &ms), 0);
    assert_int_equal(gw_rfc3339_parse("2000-02-29T00:00:00Z", &ms), 0);
    assert_int_equal(ms, 951782400000LL);
    const char *bad[] = {"",
                         "2026-11-23",
                         "2026-11-23T07:00:00",
                         "2026-11-23 07:00:00Z",
                         "2026-13-01T00:00:00Z",
                         "2026-00-01T00:00:00Z",
                         "2026-02-29T00:00:00Z",
                         "1900-02-29T00:00:00Z",
                         "2026-04-31T00:00:00Z",
                         "2026-11-23T24:00:00Z",
                         "2026-11-23T07:60:00Z",
                         "2026-11-23T07:00:61Z",
                         "2026-11-23T07:00:00.Z",
                         "2026-11-23T07:00:00+0100",
                         "2026-11-23T07:00:00+24:00",
                         "2026-11-23T07:00:00Zjunk",
                         "+2026-11-23T07:00:00Z",
                         "2026-1a-23T07:00:00Z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (gw_rfc3339_parse(bad[i], &ms) == 0)
            fail_msg("accepted %s", bad[i]);
    char out[32];
    gw_rfc3339_format(NOW_MS + 999, out);
    assert_string_equal(out, "2026-11-23T07:00:00Z");
    gw_rfc3339_format(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00Z");
    gw_rfc3339_format(951782400000LL + 86399000, out);
    assert_string_equal(out, "2000-02-29T23:59:59Z");
    gw_rfc3339_format(253402300799000LL, out);
    assert_string_equal(out, "9999-12-31T23:59:59Z");
    /* round trip over many days */
    for (int64_t d = -1000; d < 40000; d += 7) {
        int64_t t = d * 86400000LL + 3723000;
        gw_rfc3339_format(t, out);
        assert_int_equal(gw_rfc3339_parse(out, &ms), 0);
        assert_int_equal(ms, t);
    }
}

static void media_type_and_correlation(void **state)
{
    assert_true(gw_media_type_is_json("application/json"));
    assert_true(gw_media_type_is_json("Application/JSON"));
    assert_true(gw_media_type_is_json("application/json; charset=utf-8"));
    assert_true(gw_media_type_is_json("application/json;charset=UTF-8"));
    assert_true(gw_media_type_is_json(" application/json "));
    assert_false(gw_media_type_is_json(NULL));
    assert_false(gw_media_type_is_json(""));
    assert_false(gw_media_type_is_json("text/plain"));
    assert_false(gw_media_type_is_json("application/jsonx"));
    assert_false(gw_media_type_is_json("application/json-patch+json"));
    assert_false(gw_media_type_is_json("application/x-www-form-urlencoded"));
    assert_false(gw_media_type_is_json("multipart/form-data; boundary=x"));

    assert_true(cm_corr_id_valid("3b241101-e2bb-4255-8caf-4136c566a962"));
    assert_true(cm_corr_id_valid("x"));
    assert_false(cm_corr_id_valid(""));
    assert_false(cm_corr_id_valid("a b"));
    assert_false(cm_corr_id_valid("a\x7f"));
    assert_false(cm_corr_id_valid("\xc3\xa9"));
    char long_id[200];
    memset(long_id, 'a', 128);
    long_id[128] = '\0';
    assert_true(cm_corr_id_valid(long_id));
    long_id[128] = 'a';
    long_id[129] = '\0';
    assert_false(cm_corr_id_valid(long_id));
}

static void preview(void **state)
{
    size_t len;
    const char *hostile = "\"><script>alert('x')</script>&amp;";
    char *html = gw_preview_render(hostile, "d<i>", "https://img.example/a.png?x=1&y=\"2\"",
                                   "http://127.0.0.1:8080/v1/m/abc", &len);
    assert_non_null(html);
    assert_int_equal(len, strlen(html));
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "<i>"));
    assert_non_null(strstr(html, "<meta property=\"og:title\" content=\"&quot;&gt;&lt;script&gt;"
                                 "alert(&#39;x&#39;)&lt;/script&gt;&amp;amp;\">"));
    assert_non_null(strstr(html, "<title>&quot;&gt;&lt;script&gt;"));
    assert_non_null(strstr(html, "<meta property=\"og:description\" content=\"d&lt;i&gt;\">"));
    assert_non_null(strstr(
        html, "<meta property=\"og:image\" content=\"https://img.example/a.png?x=1&amp;y=&quot;2"
              "&quot;\">"));
    assert_non_null(
        strstr(html, "<meta property=\"og:url\" content=\"http://127.0.0.1:8080/v1/m/abc\">"));
    assert_non_null(strstr(html, "<meta property=\"og:type\" content=\"website\">"));
    free(html);

    /* og:image only for https */
    const char *no_img[] = {"http://img.example/a.png",
                            "javascript:alert(1)",
                            "https://",
                            "//img.example/a.png",
                            "",
                            NULL,
                            "data:image/png;base64,AAAA"};
    for (size_t i = 0; i < sizeof(no_img) / sizeof(no_img[0]); i++) {
        html = gw_preview_render("t", NULL, no_img[i], "u", &len);
        assert_non_null(html);
        assert_null(strstr(html, "og:image"));
        assert_null(strstr(html, "<img"));
        free(html);
    }
    html = gw_preview_render("t", NULL, "HTTPS://img.example/", "u", &len);
    assert_non_null(strstr(html, "og:image"));
    free(html);

    char out[8];
    assert_int_equal(gw_html_escape("<<", out, sizeof(out)), 8);
    assert_string_equal(out, "&lt;"); /* truncated at a whole entity */
    assert_int_equal(gw_html_escape("a'b", NULL, 0), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_valid),
        cmocka_unit_test(create_variants_accepted),
        cmocka_unit_test(create_lifetimes),
        cmocka_unit_test(create_rejects_json),
        cmocka_unit_test(create_rejects_fields),
        cmocka_unit_test(update_parse),
        cmocka_unit_test(attestation_header),
        cmocka_unit_test(responses),
        cmocka_unit_test(status_mapping),
        cmocka_unit_test(derived_id),
        cmocka_unit_test(utf8),
        cmocka_unit_test(rfc3339),
        cmocka_unit_test(media_type_and_correlation),
        cmocka_unit_test(preview),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
