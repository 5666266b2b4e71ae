#include "th_stack.h"

#include <stdio.h>

int th_start(th_proc_t *p, const char *name, const char *const *flags, const char *const *more,
             int timeout_ms)
{
    char bin[512];
    th_bin(name, bin, sizeof(bin));
    char *argv[TH_MAX_ARGS + 1];
    int n = 0;
    argv[n++] = bin;
    for (size_t i = 0; flags && flags[i]; i++) {
        if (n >= TH_MAX_ARGS)
            return -1;
        argv[n++] = (char *)flags[i];
    }
    for (size_t i = 0; more && more[i]; i++) {
        if (n >= TH_MAX_ARGS)
            return -1;
        argv[n++] = (char *)more[i];
    }
    argv[n] = NULL;
    return th_proc_start(p, argv, timeout_ms);
}

int th_store_start(th_proc_t *p, const char *data_dir, int grpc_port, const char *const *extra,
                   int timeout_ms)
{
    char listen[64], data[700];
    snprintf(listen, sizeof(listen), "--listen=127.0.0.1:%d", grpc_port);
    snprintf(data, sizeof(data), "--data-dir=%s", data_dir);
    const char *flags[] = {listen, "--admin-listen=127.0.0.1:0", data, NULL};
    if (th_start(p, "mailbox-store", flags, extra, timeout_ms) != 0)
        return -1;
    return th_proc_port(p, "grpc_port") > 0 ? 0 : -1;
}

int th_gateway_start(th_proc_t *p, const char *const *extra, int timeout_ms)
{
    /* tests hammer the API from loopback: exempt from the rate limits unless a test passes
     * its own --rate-limit-exempt (the last flag wins) */
    const char *flags[] = {"--http-listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0",
                           "--access-log=0", "--rate-limit-exempt=127.0.0.0/8,::1/128", NULL};
    if (th_start(p, "gateway", flags, extra, timeout_ms) != 0)
        return -1;
    return th_proc_port(p, "http_port") > 0 ? 0 : -1;
}
