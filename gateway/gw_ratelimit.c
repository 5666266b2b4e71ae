/* Per-client rate limits of the public API; see gw_ratelimit.h. The defaults and the reasons
 * for them are in README.md (gateway configuration). */
#include "gw_ratelimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cm_alloc.h"
#include "cm_log.h"
#include "cm_metrics.h"
#include "gw_clientaddr.h"
#include "gw_err.h"

/* Header lines of the forwarded header looked at (a proxy adds one; more is an attacker's). */
#define MAX_FWD_LINES 16

static const char *o_exempt, *o_trusted, *o_header;
static int64_t o_write_per_min, o_write_burst, o_failure_per_min, o_failure_burst, o_table_size,
    o_rotate_s;

static cm_opt_t rl_opts[] = {
    {"rate-limit-write-per-min", CM_OPT_INT, "60",
     "Creates and Updates a client may make per minute, on average (0: no write limit)",
     &o_write_per_min},
    {"rate-limit-write-burst", CM_OPT_INT, "120", "writes a client may make at once",
     &o_write_burst},
    {"rate-limit-failure-per-min", CM_OPT_INT, "30",
     "400/401/404 answers on /v1/m... a client may get per minute before it is refused (0: no "
     "failure limit)",
     &o_failure_per_min},
    {"rate-limit-failure-burst", CM_OPT_INT, "60", "failed requests a client may make at once",
     &o_failure_burst},
    {"rate-limit-exempt", CM_OPT_STR, NULL,
     "comma-separated CIDRs of clients never limited (monitoring, load tests)", &o_exempt},
    {"trusted-proxies", CM_OPT_STR, NULL,
     "comma-separated CIDRs of reverse proxies whose --client-ip-header is believed; empty: the "
     "TCP peer is the client",
     &o_trusted},
    {"client-ip-header", CM_OPT_STR, "x-forwarded-for",
     "header a trusted proxy names the client in: x-forwarded-for or forwarded", &o_header},
    {"rate-limit-table-size", CM_OPT_INT, "65536",
     "clients tracked at once (32 bytes each); past it the fullest buckets are forgotten",
     &o_table_size},
    {"rate-limit-key-rotation-s", CM_OPT_INT, "3600",
     "the client hash key is replaced, and every bucket dropped, this often (s)", &o_rotate_s},
};

struct gw_rl {
    gw_rltable_t *table;            /* owned; NULL when both budgets are unlimited */
    gw_cidr_list_t exempt, trusted; /* owned (gw_cidr_list_free) */
    gw_fwd_kind_t kind;
    const char *header; /* lower-case header name, static */
    gw_rl_rate_t rate[GW_RL_NBUDGETS];
    cm_counter_t *limited[GW_RL_NBUDGETS]; /* process-wide, never freed */
};

cm_opt_t *gw_rl_options(size_t *n)
{
    *n = sizeof(rl_opts) / sizeof(rl_opts[0]);
    return rl_opts;
}

static int check_rate(const char *what, int64_t per_min, int64_t burst)
{
    if (per_min < 0 || per_min > GW_RL_MAX_RATE || burst < 1 || burst > GW_RL_MAX_RATE) {
        CM_ERROR(NULL,
                 "gateway: --rate-limit-%s-per-min must be 0..%lld and --rate-limit-%s-burst "
                 "1..%lld",
                 what, GW_RL_MAX_RATE, what, GW_RL_MAX_RATE);
        return -1;
    }
    return 0;
}

/* The client header option into |rl|. 0 or -1 (logged). */
static int parse_header(gw_rl_t *rl)
{
    if (!strcasecmp(o_header ? o_header : "", "x-forwarded-for")) {
        rl->kind = GW_FWD_XFF;
        rl->header = "x-forwarded-for";
    } else if (!strcasecmp(o_header ? o_header : "", "forwarded")) {
        rl->kind = GW_FWD_FORWARDED;
        rl->header = "forwarded";
    } else {
        CM_ERROR(NULL, "gateway: --client-ip-header must be x-forwarded-for or forwarded");
        return -1;
    }
    return 0;
}

int gw_rl_new(gw_rl_t **out)
{
    if (check_rate("write", o_write_per_min, o_write_burst) ||
        check_rate("failure", o_failure_per_min, o_failure_burst))
        return -1;
    if (o_table_size < 8 || o_table_size > 100000000 || o_rotate_s < 1 || o_rotate_s > 604800) {
        CM_ERROR(NULL, "gateway: --rate-limit-table-size must be 8..100000000 and "
                       "--rate-limit-key-rotation-s 1..604800");
        return -1;
    }
    gw_rl_t *rl = cm_xcalloc(1, sizeof(*rl));
    if (parse_header(rl) != 0)
        goto fail;
    if (gw_cidr_list_parse(o_exempt, &rl->exempt) != 0) {
        CM_ERROR(NULL, "gateway: --rate-limit-exempt must be a comma-separated list of CIDRs");
        goto fail;
    }
    if (gw_cidr_list_parse(o_trusted, &rl->trusted) != 0) {
        CM_ERROR(NULL, "gateway: --trusted-proxies must be a comma-separated list of CIDRs");
        goto fail;
    }
    const gw_rl_rate_t rates[GW_RL_NBUDGETS] = {
        [GW_RL_WRITE] = {o_write_per_min, o_write_burst},
        [GW_RL_FAILURE] = {o_failure_per_min, o_failure_burst},
    };
    memcpy(rl->rate, rates, sizeof(rates));
    for (int b = 0; b < GW_RL_NBUDGETS; b++) {
        char labels[40];
        snprintf(labels, sizeof(labels), "budget=\"%s\"", gw_rl_budget_name((gw_rl_budget_t)b));
        rl->limited[b] = cm_metrics_counter("tigress_gateway_rate_limited_total",
                                            "Requests refused with 429, by budget", labels);
    }
    if ((o_write_per_min > 0 || o_failure_per_min > 0) &&
        gw_rltable_new((size_t)o_table_size, o_rotate_s * 1000000, rates, &rl->table) != 0) {
        CM_ERROR(NULL, "gateway: cannot allocate the rate-limit table");
        goto fail;
    }
    /* the lists are logged as counts only: a CIDR may name a person's address */
    CM_INFO(NULL,
            "gateway rate limits: write %lld/min burst %lld, failure %lld/min burst %lld, "
            "table %lld, key rotation %lld s, %zu exempt and %zu trusted-proxy prefixes (%s)",
            (long long)o_write_per_min, (long long)o_write_burst, (long long)o_failure_per_min,
            (long long)o_failure_burst, (long long)o_table_size, (long long)o_rotate_s,
            rl->exempt.n, rl->trusted.n, rl->header);
    *out = rl;
    return 0;
fail:
    gw_rl_free(rl);
    return -1;
}

void gw_rl_free(gw_rl_t *rl)
{
    if (!rl)
        return;
    gw_rltable_free(rl->table);
    gw_cidr_list_free(&rl->exempt);
    gw_cidr_list_free(&rl->trusted);
    free(rl);
}

gw_rl_rate_t gw_rl_budget(const gw_rl_t *rl, gw_rl_budget_t b)
{
    if (!rl || (int)b < 0 || b >= GW_RL_NBUDGETS)
        return (gw_rl_rate_t){0, 1};
    return rl->rate[b];
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int mailbox_route(const char *path)
{
    return path && !strncmp(path, "/v1/m", 5) && (path[5] == '\0' || path[5] == '/');
}

/* The client's key bytes into |key|; 0 when the client is not limited (exempt, or its address
 * is unknown, as on a test loop without sockets). */
static size_t client_key(const gw_rl_t *rl, gw_req_t *r, uint8_t key[9])
{
    gw_addr_t peer, client;
    if (gw_addr_from_sockaddr(gw_req_peer(r), &peer) != 0)
        return 0;
    const char *lines[MAX_FWD_LINES];
    size_t n = 0;
    if (rl->trusted.n)
        while (n < MAX_FWD_LINES && (lines[n] = gw_req_header_at(r, rl->header, (int)n)))
            n++;
    gw_client_resolve(&peer, &rl->trusted, rl->kind, lines, n, &client);
    if (gw_cidr_list_match(&rl->exempt, &client))
        return 0;
    return gw_addr_group_key(&client, key);
}

static void answer_429(gw_req_t *r, int64_t retry_s)
{
    char retry[24];
    snprintf(retry, sizeof(retry), "%lld", (long long)retry_s);
    char body[256];
    /* code and message are fixed strings without quotes or backslashes */
    int len = snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
                       gw_err_code(GW_ERR_RATE_LIMITED), gw_err_message(GW_ERR_RATE_LIMITED));
    gw_req_echo_correlation(r);
    gw_req_add_header(r, "retry-after", retry);
    gw_req_add_header(r, "cache-control", "no-store");
    gw_req_add_header(r, "x-content-type-options", "nosniff");
    gw_req_set_route(r, "rate_limited");
    gw_req_respond(r, gw_err_http_status(GW_ERR_RATE_LIMITED), "application/json", body,
                   (size_t)len);
}

int gw_rl_admit(gw_rl_t *rl, gw_req_t *r)
{
    const char *path = gw_req_path(r), *method = gw_req_method(r);
    if (!rl || !rl->table || !mailbox_route(path))
        return 0;
    uint8_t key[9];
    size_t klen = client_key(rl, r, key);
    if (!klen)
        return 0;
    int write = (!strcmp(method, "POST") && !strcmp(path, "/v1/m")) ||
                (!strcmp(method, "PUT") && path[5] == '/');
    int64_t retry_s = 1;
    int b = gw_rltable_admit(rl->table, key, klen, write, now_us(), &retry_s);
    if (b < 0)
        return 0;
    if (rl->limited[b])
        cm_counter_add(rl->limited[b], 1);
    answer_429(r, retry_s);
    return -1;
}

void gw_rl_observe(gw_rl_t *rl, gw_req_t *r, int status)
{
    if (!rl || !rl->table || (status != 400 && status != 401 && status != 404) ||
        !mailbox_route(gw_req_path(r)))
        return;
    uint8_t key[9];
    size_t klen = client_key(rl, r, key);
    if (klen)
        gw_rltable_charge(rl->table, key, klen, GW_RL_FAILURE, now_us());
}
