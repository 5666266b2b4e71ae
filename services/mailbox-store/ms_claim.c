#include "ms_claim.h"

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

static int write_new_key(const char *path)
{
    uint8_t raw[32];
    char hex[65];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -1;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    /* O_EXCL: two processes starting on one data dir must not overwrite each other's key. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return errno == EEXIST ? 0 : -1;
    int ok = write(fd, hex, 64) == 64 && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    close(fd);
    return ok ? 0 : -1;
}

int ms_claim_key_load(const char *key_file, const char *data_dir, uint8_t **key, size_t *len,
                      int *generated, char *err, size_t errcap)
{
    char path[1024];
    *generated = 0;
    if (key_file && *key_file) {
        snprintf(path, sizeof(path), "%s", key_file);
    } else {
        if (mkdir_p(data_dir) != 0) {
            snprintf(err, errcap, "cannot create data dir: %s", strerror(errno));
            return -1;
        }
        snprintf(path, sizeof(path), "%s/claim.key", data_dir);
        if (access(path, F_OK) != 0) {
            if (write_new_key(path) != 0) {
                snprintf(err, errcap, "cannot write %s: %s", path, strerror(errno));
                return -1;
            }
            *generated = 1;
        }
    }
    char *buf = NULL;
    size_t n = 0;
    if (cm_config_read_file(path, MS_CLAIM_KEY_MAX, &buf, &n) != 0) {
        snprintf(err, errcap, "cannot read claim key file %s", path);
        return -1;
    }
    if (n < MS_CLAIM_KEY_MIN) {
        snprintf(err, errcap, "claim key file %s holds %zu bytes, at least %d needed", path, n,
                 MS_CLAIM_KEY_MIN);
        OPENSSL_cleanse(buf, n);
        free(buf);
        return -1;
    }
    *key = (uint8_t *)buf;
    *len = n;
    return 0;
}

int ms_claim_hash(const uint8_t *key, size_t key_len, const char *claim, size_t claim_len,
                  uint8_t out[MS_HASH_LEN])
{
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)claim, claim_len, out, &n) ||
        n != MS_HASH_LEN)
        return -1;
    return 0;
}

int ms_claim_equal(const uint8_t a[MS_HASH_LEN], const uint8_t b[MS_HASH_LEN])
{
    return CRYPTO_memcmp(a, b, MS_HASH_LEN) == 0;
}
