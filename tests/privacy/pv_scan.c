#include "pv_scan.h"

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_b64.h"
#include "th.h"

#define MAX_FORMS 8

typedef struct {
    const char *name;
    char *bytes; /* owned */
    size_t len;
} form_t;

/* The forms of |secret|; returns how many. */
static size_t forms_of(const char *secret, form_t *f)
{
    size_t n = 0, sl = strlen(secret);
    f[n++] = (form_t){"as given", strdup(secret), sl};
    char *hex = malloc(2 * sl + 1), *HEX = malloc(2 * sl + 1);
    for (size_t i = 0; i < sl; i++) {
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)secret[i]);
        snprintf(HEX + 2 * i, 3, "%02X", (unsigned char)secret[i]);
    }
    f[n++] = (form_t){"hex of the text", hex, 2 * sl};
    f[n++] = (form_t){"HEX of the text", HEX, 2 * sl};
    char *b64 = malloc(cm_b64_encoded_size(sl));
    f[n++] = (form_t){"base64 of the text", b64,
                      cm_b64_encode(CM_B64_STD, (const uint8_t *)secret, sl, b64)};
    /* Hex text (APNs tokens): its raw bytes and their base64 forms. */
    int is_hex = sl >= 2 && sl % 2 == 0;
    for (size_t i = 0; i < sl && is_hex; i++)
        is_hex = strchr("0123456789abcdefABCDEF", secret[i]) != NULL;
    if (is_hex) {
        uint8_t *raw = malloc(sl / 2);
        for (size_t i = 0; i < sl / 2; i++) {
            unsigned v;
            sscanf(secret + 2 * i, "%2x", &v);
            raw[i] = (uint8_t)v;
        }
        char *rb = malloc(cm_b64_encoded_size(sl / 2)), *ru = malloc(cm_b64_encoded_size(sl / 2));
        f[n++] = (form_t){"base64 of the bytes", rb, cm_b64_encode(CM_B64_STD, raw, sl / 2, rb)};
        f[n++] = (form_t){"base64url of the bytes", ru, cm_b64_encode(CM_B64_URL, raw, sl / 2, ru)};
        f[n++] = (form_t){"raw bytes", (char *)raw, sl / 2};
    }
    return n;
}

static form_t *scan_forms;
static size_t scan_nforms;
static int scan_hits;
static size_t scan_files, scan_bytes;

static int visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type != FTW_F || !S_ISREG(st->st_mode))
        return 0;
    size_t len = 0;
    char *data = th_read_file(path, &len);
    if (!data)
        return 0;
    scan_files++;
    scan_bytes += len;
    for (size_t i = 0; i < scan_nforms; i++) {
        if (scan_forms[i].len && memmem(data, len, scan_forms[i].bytes, scan_forms[i].len)) {
            fprintf(stderr, "pv_scan: found (%s) in %s\n", scan_forms[i].name, path);
            scan_hits++;
        }
    }
    free(data);
    return 0;
}

int pv_scan(const char *dir, const char *secret)
{
    form_t f[MAX_FORMS];
    scan_nforms = forms_of(secret, f);
    scan_forms = f;
    scan_hits = 0;
    nftw(dir, visit, 16, FTW_PHYS);
    for (size_t i = 0; i < scan_nforms; i++)
        free(f[i].bytes);
    return scan_hits;
}

int pv_scan_all(const char *dir, const char *const *secrets, size_t n)
{
    int total = 0;
    for (size_t i = 0; i < n; i++)
        total += pv_scan(dir, secrets[i]);
    return total;
}

size_t pv_dir_files(const char *dir, size_t *bytes)
{
    scan_nforms = 0;
    scan_files = scan_bytes = 0;
    nftw(dir, visit, 16, FTW_PHYS);
    *bytes = scan_bytes;
    return scan_files;
}
