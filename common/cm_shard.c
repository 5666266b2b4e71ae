#include "cm_alloc.h"
#include "cm_shard.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

struct cm_shards {
    char **addrs; /* owned array of |n| owned strings */
    size_t n;
};

uint64_t cm_shard_score(const char *addr, const char *id, size_t idlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    uint64_t score = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    /* The 0x00 separator keeps ("ab","c") and ("a","bc") apart; it cannot occur in either. */
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, addr, strlen(addr)) != 1 || EVP_DigestUpdate(ctx, "", 1) != 1 ||
        EVP_DigestUpdate(ctx, id, idlen) != 1 || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 ||
        mdlen < 8) {
        /* SHA-256 does not fail short of memory exhaustion; a zero score still yields a
         * deterministic choice (the strcmp tie-break) rather than a crash. */
        EVP_MD_CTX_free(ctx);
        return 0;
    }
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 8; i++)
        score = (score << 8) | md[i];
    return score;
}

size_t cm_shard_rendezvous(const char *const *addrs, size_t n, const char *id, size_t idlen)
{
    size_t best = 0;
    uint64_t best_score = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t sc = cm_shard_score(addrs[i], id, idlen);
        if (i == 0 || sc > best_score || (sc == best_score && strcmp(addrs[i], addrs[best]) < 0)) {
            best = i;
            best_score = sc;
        }
    }
    return best;
}

void cm_shards_free(cm_shards_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->addrs[i]);
    free(s->addrs);
    free(s);
}

int cm_shards_parse(const char *list, cm_shards_t **out)
{
    *out = NULL;
    if (!list)
        return -1;
    cm_shards_t *s = cm_xcalloc(1, sizeof(*s));
    size_t cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    s->addrs = cm_xcalloc(cap, sizeof(char *));
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *b = p, *e = end;
        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (b == e)
            goto fail;
        char *item = strndup(b, (size_t)(e - b));
        if (!item)
            goto fail;
        for (size_t i = 0; i < s->n; i++) {
            if (strcmp(s->addrs[i], item) == 0) {
                free(item);
                goto fail;
            }
        }
        s->addrs[s->n++] = item;
        if (!comma)
            break;
        p = comma + 1;
    }
    *out = s;
    return 0;
fail:
    cm_shards_free(s);
    return -1;
}

size_t cm_shards_count(const cm_shards_t *s)
{
    return s->n;
}

const char *cm_shards_addr(const cm_shards_t *s, size_t i)
{
    return i < s->n ? s->addrs[i] : NULL;
}

size_t cm_shards_pick(const cm_shards_t *s, const char *id, size_t idlen)
{
    return cm_shard_rendezvous((const char *const *)s->addrs, s->n, id, idlen);
}
