/* pd-load: enqueues N notifications into a running push-dispatch (for tests/bench/push-bench).
 *   pd-load TARGET N [PREFIX] [TOKEN_TYPE]   prints the accepted count */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdt.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: pd-load HOST:PORT N [PREFIX] [TOKEN_TYPE]\n");
        return 2;
    }
    pdt_t t;
    memset(&t, 0, sizeof(t));
    cm_rpc_init();
    if (cm_rpc_channel_new(argv[1], NULL, &t.ch) != 0)
        return 1;
    int n = atoi(argv[2]);
    const char *prefix = argc > 3 ? argv[3] : "load";
    const char *type = argc > 4 ? argv[4] : "com.apple.apns";
    int acc = pdt_enqueue_many(&t, prefix, 0, n, n, 100, type, pdt_now_ms() + 3600 * 1000LL);
    printf("%d\n", acc);
    cm_rpc_channel_del(t.ch);
    cm_rpc_shutdown();
    return acc == n ? 0 : 1;
}
