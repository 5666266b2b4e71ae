/* gw_tls: the public TLS context. Mozilla "intermediate" (guidelines 5.7): TLS 1.2 and 1.3
 * only, AEAD ECDHE/DHE suites for 1.2, the three 1.3 suites, X25519/P-256/P-384, client's
 * cipher order, no renegotiation; ALPN h2 then http/1.1 (no ALPN means HTTP/1.1). */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <openssl/ssl.h>

/* Loads |cert_path| (PEM chain) and |key_path| (PEM key). Returns 0 and a new context in *out
 * (SSL_CTX_free), or -1 (logged without key material). */
int gw_tls_ctx_new(const char *cert_path, const char *key_path, SSL_CTX **out);

/* 1 when the handshake of |ssl| selected ALPN "h2". */
int gw_tls_is_h2(SSL *ssl);

#endif
