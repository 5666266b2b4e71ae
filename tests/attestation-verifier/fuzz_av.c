/* libFuzzer target for the attestation parsers: the bounded CBOR decoder, authenticator data
 * (COSE key, extensions) and every format's statement procedure (x5c DER, Apple nonce,
 * Android key description, TPM structures), chain validation off. Input = an attestation
 * object; it is also fed to the authData parser and the clientDataJSON checks directly. Nothing may
 * crash, leak or allocate without bound (run with -rss_limit_mb). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "av_authdata.h"
#include "av_cbor.h"
#include "av_clientdata.h"
#include "av_formats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t chal[3];
    static const char *const origins[] = {"https://example.org"};
    av_clientdata_policy_t pol = {.challenge = chal,
                                  .challenge_len = 3,
                                  .origins = origins,
                                  .norigins = 1,
                                  .rp_id = "example.org",
                                  .allow_cross_origin = size & 1};
    if ((unsigned)av_clientdata_check(data, size, &pol) >= AV_CODE_COUNT)
        abort();

    av_authdata_t ad;
    if (av_authdata_parse(data, size, &ad) == AV_OK)
        av_authdata_dispose(&ad);

    av_cbor_item_t *obj = NULL;
    if (av_cbor_decode(data, size, &obj, NULL) != 0)
        return 0;
    const av_cbor_item_t *fmt = av_cbor_map_get_text(obj, "fmt");
    const av_cbor_item_t *stmt = av_cbor_map_get_text(obj, "attStmt");
    const av_cbor_item_t *raw = av_cbor_map_get_text(obj, "authData");
    if (fmt && stmt && stmt->type == AV_CBOR_MAP && raw && raw->type == AV_CBOR_BYTES &&
        av_authdata_parse(raw->ptr, raw->len, &ad) == AV_OK) {
        static const uint8_t cdh[32];
        av_fmt_ctx_t c;
        memset(&c, 0, sizeof(c));
        c.ad = &ad;
        c.cdh = cdh;
        c.att_stmt = stmt;
        av_code_t (*fns[])(av_fmt_ctx_t *) = {av_fmt_none,        av_fmt_packed,   av_fmt_apple,
                                              av_fmt_android_key, av_fmt_fido_u2f, av_fmt_tpm};
        for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
            av_code_t rc = fns[i](&c);
            if ((unsigned)rc >= AV_CODE_COUNT)
                abort();
        }
        av_authdata_dispose(&ad);
    }
    av_cbor_free(obj);
    return 0;
}
