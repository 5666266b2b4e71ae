#include "ms_keys.h"

#include <string.h>

#include "ms_record.h"

static size_t mailbox_key(char *out, const char *id, char kind)
{
    out[0] = 'm';
    out[1] = '/';
    memcpy(out + 2, id, MS_ID_LEN);
    out[2 + MS_ID_LEN] = '/';
    out[3 + MS_ID_LEN] = kind;
    return 4 + MS_ID_LEN;
}

size_t ms_key_record(char *out, const char *id)
{
    return mailbox_key(out, id, 'r');
}

size_t ms_key_mailbox_prefix(char *out, const char *id)
{
    return mailbox_key(out, id, 'r') - 1;
}

size_t ms_key_mailbox_end(char *out, const char *id)
{
    size_t n = ms_key_mailbox_prefix(out, id);
    out[n - 1] = '/' + 1;
    return n;
}

size_t ms_key_idem(char *out, const char *id, const uint8_t *hash, size_t hash_len)
{
    size_t n = mailbox_key(out, id, 'i');
    out[n++] = '/';
    memcpy(out + n, hash, hash_len);
    return n + hash_len;
}

size_t ms_key_outref(char *out, const char *id, uint64_t seq)
{
    size_t n = mailbox_key(out, id, 'o');
    out[n++] = '/';
    ms_be64_put((uint8_t *)out + n, seq);
    return n + 8;
}

size_t ms_key_expiry(char *out, int64_t expires_ms, const char *id)
{
    out[0] = 'x';
    out[1] = '/';
    ms_be64_put((uint8_t *)out + 2, (uint64_t)expires_ms);
    memcpy(out + 10, id, MS_ID_LEN);
    return 10 + MS_ID_LEN;
}

size_t ms_key_expiry_upto(char *out, int64_t expires_ms)
{
    out[0] = 'x';
    out[1] = '/';
    ms_be64_put((uint8_t *)out + 2, (uint64_t)expires_ms + 1);
    return 10;
}

size_t ms_key_outbox(char *out, uint64_t seq)
{
    out[0] = 'o';
    out[1] = '/';
    ms_be64_put((uint8_t *)out + 2, seq);
    return 10;
}

int ms_key_parse_expiry(const char *k, size_t len, int64_t *expires_ms, char id[MS_ID_LEN + 1])
{
    if (len != 10 + MS_ID_LEN || k[0] != 'x' || k[1] != '/')
        return -1;
    *expires_ms = (int64_t)ms_be64_get((const uint8_t *)k + 2);
    memcpy(id, k + 10, MS_ID_LEN);
    id[MS_ID_LEN] = '\0';
    return 0;
}

int ms_key_parse_outbox(const char *k, size_t len, uint64_t *seq)
{
    if (len != 10 || k[0] != 'o' || k[1] != '/')
        return -1;
    *seq = ms_be64_get((const uint8_t *)k + 2);
    return 0;
}

int ms_key_parse_outref(const char *k, size_t len, uint64_t *seq)
{
    if (len != 5 + MS_ID_LEN + 8 || k[0] != 'm' || k[3 + MS_ID_LEN] != 'o' ||
        k[4 + MS_ID_LEN] != '/')
        return -1;
    *seq = ms_be64_get((const uint8_t *)k + 5 + MS_ID_LEN);
    return 0;
}
