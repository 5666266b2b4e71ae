/* gw_clientaddr: who a request comes from, for the rate limits (gw_ratelimit). Pure functions
 * over addresses: literal parsing, CIDR lists, the grouping of IPv6 addresses by /64 (one
 * subscriber usually owns a whole /64, so a per-address limit would be trivial to dodge), and
 * the client address behind trusted reverse proxies taken from X-Forwarded-For or Forwarded
 * (RFC 7239). Nothing here logs or keeps an address. */
#ifndef GW_CLIENTADDR_H
#define GW_CLIENTADDR_H

#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* An IP address. IPv4 (also when it arrived as an IPv4-mapped IPv6 address) keeps its four
 * bytes in b[0..3], the rest zero. */
typedef struct {
    uint8_t family; /* 4 or 6; 0 = none */
    uint8_t b[16];
} gw_addr_t;

typedef struct {
    gw_addr_t net; /* host bits cleared */
    int bits;      /* prefix length: 0..32 (IPv4) or 0..128 (IPv6) */
} gw_cidr_t;

typedef struct {
    gw_cidr_t *v; /* owned array */
    size_t n;
} gw_cidr_list_t;

/* Which header a trusted proxy sets. */
typedef enum { GW_FWD_XFF = 0, GW_FWD_FORWARDED } gw_fwd_kind_t;

/* Hops considered in a forwarded header: the rightmost ones (a longer list is cut from the
 * left, which only matters when all of these are trusted proxies). */
#define GW_FWD_MAX_HOPS 32

/* Parses an address literal of |len| bytes: dotted IPv4, or IPv6 (no zone id). With
 * |allow_port|, also "1.2.3.4:port", "[v6]" and "[v6]:port". Returns 0, or -1. */
int gw_addr_parse(const char *s, size_t len, int allow_port, gw_addr_t *out);

/* From a socket address (AF_INET / AF_INET6); 0, or -1 for another family. */
int gw_addr_from_sockaddr(const struct sockaddr *sa, gw_addr_t *out);

/* The bytes that identify a client for the limits: a family tag and the IPv4 address, or the
 * tag and the first 64 bits of an IPv6 address. Writes at most 9 bytes; returns the count. */
size_t gw_addr_group_key(const gw_addr_t *a, uint8_t out[9]);

/* Parses "10.0.0.0/8, 192.168.1.7,2001:db8::/32" (comma and/or space separated; an address
 * without /len is a single host; host bits after the prefix must be zero). Empty or NULL gives
 * an empty list. Returns 0, or -1 (nothing allocated) naming nothing: the caller says which
 * flag was wrong. Free with gw_cidr_list_free. */
int gw_cidr_list_parse(const char *s, gw_cidr_list_t *out);
void gw_cidr_list_free(gw_cidr_list_t *l);

/* 1 when |a| lies in one of the list's prefixes. */
int gw_cidr_list_match(const gw_cidr_list_t *l, const gw_addr_t *a);

/* The client of a request that arrived from |peer|. Unless |peer| is in |trusted|, that is
 * |peer|: a header from anyone else is ignored, as anyone can write it. From a trusted peer,
 * the header's hops (the |n| header lines |values| in order, each a comma-separated list) are
 * walked from the right: each trusted hop is skipped, the first untrusted one is the client.
 * A hop that is not an address ("unknown", an obfuscated Forwarded node, garbage) ends the
 * walk at the last address known, as nothing left of it can be believed. All hops trusted:
 * the leftmost. No header: |peer|. Never fails. */
void gw_client_resolve(const gw_addr_t *peer, const gw_cidr_list_t *trusted, gw_fwd_kind_t kind,
                       const char *const *values, size_t n, gw_addr_t *client);

#endif
