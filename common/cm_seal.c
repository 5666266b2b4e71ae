#include "cm_seal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "cm_config.h"

struct cm_seal_ring {
    /* keys[id] is valid when present[id]; id 0 is never used. Wiped by cm_seal_ring_free. */
    uint8_t keys[256][CM_SEAL_KEY_LEN];
    uint8_t present[256];
    uint8_t primary;
    size_t count;
};

const char *cm_seal_err_name(cm_seal_err_t e)
{
    switch (e) {
    case CM_SEAL_OK:
        return "ok";
    case CM_SEAL_ERR_FILE:
        return "file";
    case CM_SEAL_ERR_SYNTAX:
        return "syntax";
    case CM_SEAL_ERR_EMPTY:
        return "empty";
    case CM_SEAL_ERR_FORMAT:
        return "format";
    case CM_SEAL_ERR_UNKNOWN_KEY:
        return "unknown_key";
    case CM_SEAL_ERR_AUTH:
        return "auth";
    case CM_SEAL_ERR_CRYPTO:
        return "crypto";
    }
    return "unknown";
}

/* ---- key ring file ---- */

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Exactly 2 * CM_SEAL_KEY_LEN hex digits in |s| (|n| chars) into |key|. 0 or -1. */
static int parse_hex_key(const char *s, size_t n, uint8_t key[CM_SEAL_KEY_LEN])
{
    if (n != 2 * CM_SEAL_KEY_LEN)
        return -1;
    for (size_t i = 0; i < CM_SEAL_KEY_LEN; i++) {
        int hi = hex_nibble(s[2 * i]), lo = hex_nibble(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* A decimal id 1..255 in |s| (|n| chars). 0 or -1. */
static int parse_id(const char *s, size_t n, uint8_t *id)
{
    unsigned v = 0;
    if (n == 0 || n > 3)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v < 1 || v > 255)
        return -1;
    *id = (uint8_t)v;
    return 0;
}

/* Splits |line| into at most 3 whitespace-separated fields. Returns the field count (3 means
 * "3 or more"). */
static int split_fields(char *line, const char *f[3], size_t fl[3])
{
    int nf = 0;
    char *p = line;
    while (*p) {
        while (*p && isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        if (nf == 3)
            return 3 + 1;
        f[nf] = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        fl[nf] = (size_t)(p - f[nf]);
        nf++;
    }
    return nf;
}

/* One non-comment line into |r|. |*want_primary| collects a "primary" line. */
static cm_seal_err_t parse_line(cm_seal_ring_t *r, char *line, int *want_primary)
{
    const char *f[3];
    size_t fl[3];
    int nf = split_fields(line, f, fl);
    uint8_t id;
    if (nf == 0)
        return CM_SEAL_OK;
    if (nf == 2 && fl[0] == 7 && memcmp(f[0], "primary", 7) == 0) {
        if (parse_id(f[1], fl[1], &id) != 0 || *want_primary)
            return CM_SEAL_ERR_SYNTAX;
        *want_primary = id;
        return CM_SEAL_OK;
    }
    if (nf != 2 || parse_id(f[0], fl[0], &id) != 0 || r->present[id] ||
        parse_hex_key(f[1], fl[1], r->keys[id]) != 0)
        return CM_SEAL_ERR_SYNTAX;
    r->present[id] = 1;
    r->count++;
    return CM_SEAL_OK;
}

/* Parses the ring text |buf| (NUL-terminated; modified). On a syntax error *bad_line = its
 * number (1-based). */
static cm_seal_err_t parse_ring(cm_seal_ring_t *r, char *buf, size_t *bad_line)
{
    int want_primary = 0;
    size_t lineno = 0;
    char *save = NULL;
    /* An older single-key file: one bare key, no id. */
    const char *f[3];
    size_t fl[3];
    char probe[2 * CM_SEAL_KEY_LEN + 8];
    if (strlen(buf) < sizeof(probe)) {
        snprintf(probe, sizeof(probe), "%s", buf);
        if (split_fields(probe, f, fl) == 1 && parse_hex_key(f[0], fl[0], r->keys[1]) == 0) {
            r->present[1] = 1;
            r->count = 1;
            r->primary = 1;
            OPENSSL_cleanse(probe, sizeof(probe));
            return CM_SEAL_OK;
        }
        OPENSSL_cleanse(probe, sizeof(probe));
    }
    for (char *line = buf; line; line = save) {
        /* Line by line, blank ones included, so an error names the right line number. */
        save = strchr(line, '\n');
        if (save)
            *save++ = '\0';
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        if (parse_line(r, line, &want_primary) != CM_SEAL_OK) {
            *bad_line = lineno;
            return CM_SEAL_ERR_SYNTAX;
        }
    }
    if (r->count == 0)
        return CM_SEAL_ERR_EMPTY;
    if (want_primary) {
        if (!r->present[want_primary])
            return CM_SEAL_ERR_EMPTY;
        r->primary = (uint8_t)want_primary;
    } else {
        for (int id = 255; id >= 1 && !r->primary; id--)
            if (r->present[id])
                r->primary = (uint8_t)id;
    }
    return CM_SEAL_OK;
}

cm_seal_err_t cm_seal_ring_load(const char *path, cm_seal_ring_t **out, char *err, size_t errcap)
{
    char *buf = NULL;
    size_t len = 0, bad_line = 0;
    cm_seal_err_t rc;
    cm_seal_ring_t *r = NULL;
    *out = NULL;
    if (!path || !*path || cm_config_read_file(path, CM_SEAL_FILE_MAX, &buf, &len) != 0) {
        snprintf(err, errcap, "cannot read key ring file %s", path ? path : "(none)");
        return CM_SEAL_ERR_FILE;
    }
    r = calloc(1, sizeof(*r));
    if (!r)
        abort();
    rc = parse_ring(r, buf, &bad_line);
    OPENSSL_cleanse(buf, len);
    free(buf);
    if (rc == CM_SEAL_ERR_SYNTAX)
        snprintf(err, errcap,
                 "key ring file %s line %zu: want \"<id 1..255> <64 hex digits>\" (ids unique) "
                 "or \"primary <id>\"",
                 path, bad_line);
    else if (rc == CM_SEAL_ERR_EMPTY)
        snprintf(err, errcap, "key ring file %s holds no key, or its primary id has no key", path);
    if (rc != CM_SEAL_OK) {
        cm_seal_ring_free(r);
        return rc;
    }
    *out = r;
    return CM_SEAL_OK;
}

cm_seal_err_t cm_seal_ring_generate(const char *path, uint8_t id)
{
    uint8_t raw[CM_SEAL_KEY_LEN];
    char line[2 * CM_SEAL_KEY_LEN + 16];
    if (id == 0 || RAND_bytes(raw, sizeof(raw)) != 1)
        return CM_SEAL_ERR_CRYPTO;
    int n = snprintf(line, sizeof(line), "%u ", (unsigned)id);
    for (size_t i = 0; i < sizeof(raw); i++)
        n += snprintf(line + n, sizeof(line) - (size_t)n, "%02x", raw[i]);
    line[n++] = '\n';
    OPENSSL_cleanse(raw, sizeof(raw));
    /* O_EXCL: two processes starting on one data dir must not overwrite each other's key. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        OPENSSL_cleanse(line, sizeof(line));
        return CM_SEAL_ERR_FILE;
    }
    int ok = write(fd, line, (size_t)n) == n && fsync(fd) == 0;
    close(fd);
    OPENSSL_cleanse(line, sizeof(line));
    return ok ? CM_SEAL_OK : CM_SEAL_ERR_FILE;
}

static int mkdir_p(const char *path)
{
    char tmp[1024];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

cm_seal_err_t cm_seal_ring_load_or_create(const char *path, const char *dir, const char *name,
                                          cm_seal_ring_t **out, int *generated, char *err,
                                          size_t errcap)
{
    char dev[1024];
    *generated = 0;
    if (path && *path)
        return cm_seal_ring_load(path, out, err, errcap);
    if (mkdir_p(dir) != 0) {
        snprintf(err, errcap, "cannot create %s: %s", dir, strerror(errno));
        return CM_SEAL_ERR_FILE;
    }
    snprintf(dev, sizeof(dev), "%s/%s", dir, name);
    if (access(dev, F_OK) != 0) {
        cm_seal_err_t rc = cm_seal_ring_generate(dev, 1);
        /* Lost a race with another process creating it: use theirs. */
        if (rc != CM_SEAL_OK && access(dev, F_OK) != 0) {
            snprintf(err, errcap, "cannot write %s: %s", dev, strerror(errno));
            return rc;
        }
        *generated = rc == CM_SEAL_OK;
    }
    return cm_seal_ring_load(dev, out, err, errcap);
}

cm_seal_err_t cm_seal_ring_from_key(uint8_t id, const uint8_t *key, cm_seal_ring_t **out)
{
    *out = NULL;
    if (id == 0)
        return CM_SEAL_ERR_EMPTY;
    cm_seal_ring_t *r = calloc(1, sizeof(*r));
    if (!r)
        abort();
    if (key)
        memcpy(r->keys[id], key, CM_SEAL_KEY_LEN);
    else if (RAND_bytes(r->keys[id], CM_SEAL_KEY_LEN) != 1) {
        cm_seal_ring_free(r);
        return CM_SEAL_ERR_CRYPTO;
    }
    r->present[id] = 1;
    r->count = 1;
    r->primary = id;
    *out = r;
    return CM_SEAL_OK;
}

void cm_seal_ring_free(cm_seal_ring_t *r)
{
    if (!r)
        return;
    OPENSSL_cleanse(r, sizeof(*r));
    free(r);
}

uint8_t cm_seal_ring_primary(const cm_seal_ring_t *r)
{
    return r->primary;
}

size_t cm_seal_ring_count(const cm_seal_ring_t *r)
{
    return r->count;
}

/* ---- AEAD ---- */

/* One AES-256-GCM pass. |enc| 1 seals, 0 opens. |hdr| (the version and key id) and |ad| are
 * both authenticated. For opening, |tag| is the expected tag; for sealing it receives it. */
static cm_seal_err_t gcm(int enc, const uint8_t key[CM_SEAL_KEY_LEN], const uint8_t *nonce,
                         const uint8_t hdr[2], const void *ad, size_t adlen, const uint8_t *in,
                         size_t n, uint8_t *out, uint8_t tag[CM_SEAL_TAG_LEN])
{
    cm_seal_err_t rc = CM_SEAL_ERR_CRYPTO;
    int len = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return CM_SEAL_ERR_CRYPTO;
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CM_SEAL_NONCE_LEN, NULL) != 1 ||
        EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) != 1 ||
        EVP_CipherUpdate(ctx, NULL, &len, hdr, 2) != 1)
        goto fail;
    if (adlen && EVP_CipherUpdate(ctx, NULL, &len, ad, (int)adlen) != 1)
        goto fail;
    if (n && EVP_CipherUpdate(ctx, out, &len, in, (int)n) != 1)
        goto fail;
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CM_SEAL_TAG_LEN, tag) != 1)
        goto fail;
    if (EVP_CipherFinal_ex(ctx, out + len, &len) != 1) {
        rc = enc ? CM_SEAL_ERR_CRYPTO : CM_SEAL_ERR_AUTH;
        goto fail;
    }
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CM_SEAL_TAG_LEN, tag) != 1)
        goto fail;
    rc = CM_SEAL_OK;
fail:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

cm_seal_err_t cm_seal_encrypt(const cm_seal_ring_t *r, const void *ad, size_t adlen,
                              const void *plain, size_t n, uint8_t *out)
{
    if (n > (size_t)1 << 30 || adlen > (size_t)1 << 30)
        return CM_SEAL_ERR_FORMAT;
    out[0] = CM_SEAL_VERSION;
    out[1] = r->primary;
    if (RAND_bytes(out + 2, CM_SEAL_NONCE_LEN) != 1)
        return CM_SEAL_ERR_CRYPTO;
    return gcm(1, r->keys[r->primary], out + 2, out, ad, adlen, plain, n, out + CM_SEAL_HEADER_LEN,
               out + CM_SEAL_HEADER_LEN + n);
}

cm_seal_err_t cm_seal_key_id(const uint8_t *sealed, size_t n, uint8_t *key_id)
{
    if (n < CM_SEAL_OVERHEAD || sealed[0] != CM_SEAL_VERSION)
        return CM_SEAL_ERR_FORMAT;
    *key_id = sealed[1];
    return CM_SEAL_OK;
}

cm_seal_err_t cm_seal_decrypt(const cm_seal_ring_t *r, const void *ad, size_t adlen,
                              const uint8_t *sealed, size_t n, uint8_t *out, size_t *outlen,
                              uint8_t *key_id)
{
    uint8_t id;
    uint8_t tag[CM_SEAL_TAG_LEN];
    cm_seal_err_t rc = cm_seal_key_id(sealed, n, &id);
    if (rc != CM_SEAL_OK)
        return rc;
    if (n > ((size_t)1 << 30) + CM_SEAL_OVERHEAD || adlen > (size_t)1 << 30)
        return CM_SEAL_ERR_FORMAT;
    if (!r->present[id])
        return CM_SEAL_ERR_UNKNOWN_KEY;
    size_t plen = n - CM_SEAL_OVERHEAD;
    memcpy(tag, sealed + n - CM_SEAL_TAG_LEN, CM_SEAL_TAG_LEN);
    rc = gcm(0, r->keys[id], sealed + 2, sealed, ad, adlen, sealed + CM_SEAL_HEADER_LEN, plen, out,
             tag);
    if (rc != CM_SEAL_OK) {
        OPENSSL_cleanse(out, plen);
        return rc;
    }
    *outlen = plen;
    if (key_id)
        *key_id = id;
    return CM_SEAL_OK;
}

/* ---- keyed hash ---- */

static cm_seal_err_t mac(const uint8_t key[CM_SEAL_KEY_LEN], const void *msg, size_t n,
                         uint8_t out[CM_SEAL_MAC_LEN])
{
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key, CM_SEAL_KEY_LEN, msg, n, out, &len) || len != CM_SEAL_MAC_LEN)
        return CM_SEAL_ERR_CRYPTO;
    return CM_SEAL_OK;
}

cm_seal_err_t cm_seal_hash(const cm_seal_ring_t *r, const void *msg, size_t n,
                           uint8_t out[CM_SEAL_HASH_LEN])
{
    out[0] = r->primary;
    return mac(r->keys[r->primary], msg, n, out + 1);
}

cm_seal_err_t cm_seal_hash_with(const cm_seal_ring_t *r, uint8_t key_id, const void *msg, size_t n,
                                uint8_t out[CM_SEAL_HASH_LEN])
{
    if (key_id == 0 || !r->present[key_id])
        return CM_SEAL_ERR_UNKNOWN_KEY;
    out[0] = key_id;
    return mac(r->keys[key_id], msg, n, out + 1);
}

size_t cm_seal_ring_ids(const cm_seal_ring_t *r, uint8_t ids[255])
{
    size_t n = 0;
    ids[n++] = r->primary;
    for (int id = 255; id >= 1; id--)
        if (r->present[id] && id != r->primary)
            ids[n++] = (uint8_t)id;
    return n;
}

cm_seal_err_t cm_seal_hash_verify(const cm_seal_ring_t *r, const void *msg, size_t n,
                                  const uint8_t stored[CM_SEAL_HASH_LEN])
{
    uint8_t h[CM_SEAL_MAC_LEN];
    if (stored[0] == 0 || !r->present[stored[0]])
        return CM_SEAL_ERR_UNKNOWN_KEY;
    cm_seal_err_t rc = mac(r->keys[stored[0]], msg, n, h);
    if (rc != CM_SEAL_OK)
        return rc;
    return CRYPTO_memcmp(h, stored + 1, CM_SEAL_MAC_LEN) == 0 ? CM_SEAL_OK : CM_SEAL_ERR_AUTH;
}
