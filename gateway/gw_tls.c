#include "gw_tls.h"

#include <string.h>

#include <openssl/err.h>

#include "cm_log.h"

/* Mozilla intermediate, TLS 1.2 part (1.3 suites are OpenSSL's default three). */
static const char TLS12_CIPHERS[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
static const char TLS13_SUITES[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    /* Our preference wins: h2 when offered, else http/1.1. A client offering neither gets no
     * ALPN and is served HTTP/1.1, which is what a client without ALPN gets too. */
    static const char *prefs[] = {"h2", "http/1.1"};
    for (size_t k = 0; k < 2; k++) {
        size_t plen = strlen(prefs[k]);
        for (unsigned int i = 0; i < inlen;) {
            unsigned int l = in[i];
            if (i + 1 + l > inlen)
                break;
            if (l == plen && memcmp(in + i + 1, prefs[k], plen) == 0) {
                *out = in + i + 1;
                *outlen = (unsigned char)l;
                return SSL_TLSEXT_ERR_OK;
            }
            i += 1 + l;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static void log_ssl_error(const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    CM_ERROR(NULL, "tls: %s: %s", what, buf);
    ERR_clear_error();
}

int gw_tls_ctx_new(const char *cert_path, const char *key_path, SSL_CTX **out)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        log_ssl_error("SSL_CTX_new");
        return -1;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
        log_ssl_error("protocol versions");
        goto fail;
    }
    if (!SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) ||
        !SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES)) {
        log_ssl_error("ciphers");
        goto fail;
    }
    if (!SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384")) {
        log_ssl_error("groups");
        goto fail;
    }
    /* DH 2048 for the DHE suites, as Mozilla asks (OpenSSL picks the RFC 7919 group). */
    SSL_CTX_set_dh_auto(ctx, 1);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_clear_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        CM_ERROR(NULL, "tls: cannot load certificate chain %s", cert_path);
        ERR_clear_error();
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        CM_ERROR(NULL, "tls: cannot load private key %s or it does not match the certificate",
                 key_path);
        ERR_clear_error();
        goto fail;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return -1;
}

int gw_tls_is_h2(SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl, &p, &len);
    return p && len == 2 && memcmp(p, "h2", 2) == 0;
}
