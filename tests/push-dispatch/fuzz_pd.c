/* libFuzzer target for what push-dispatch parses from the outside: webhook URLs (tokenData),
 * APNs error bodies, FCM error bodies, Retry-After values and socket addresses. The first
 * input byte picks the parser. The .c files are included to reach their static parsers. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define parse_url webhook_parse_url
#include "../../services/push-dispatch/pd_webhook.c"
#undef parse_url
#define parse_url apns_parse_url
#include "../../services/push-dispatch/pd_apns.c"
#undef parse_url
#include "../../services/push-dispatch/pd_fcm.c"

int64_t pd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n < 1)
        return 0;
    uint8_t sel = d[0] % 5;
    d++, n--;
    char *s = malloc(n + 1);
    memcpy(s, d, n);
    s[n] = '\0';
    switch (sel) {
    case 0: { /* webhook tokenData */
        char host[256], port[16];
        if (webhook_parse_url(s, host, sizeof(host), port, sizeof(port)) == 0) {
            if (strlen(host) >= sizeof(host) || strlen(port) >= sizeof(port))
                abort();
        }
        apns_t a;
        memset(&a, 0, sizeof(a));
        apns_parse_url(&a, s);
        token_ok(s);
        token_char_ok(s);
        break;
    }
    case 1: { /* APNs response: 2 bytes of status, then the body */
        apns_t *a = calloc(1, sizeof(*a));
        pthread_mutex_init(&a->lock, NULL);
        pd_result_t r;
        job_t j;
        memset(&j, 0, sizeof(j));
        j.r = &r;
        pthread_cond_init(&j.cv, NULL);
        j.retry_after_ms = -1;
        j.status = n >= 2 ? 100 + (d[0] << 8 | d[1]) % 500 : 200;
        j.body_len = n > 2 ? (n - 2 < sizeof(j.body) ? n - 2 : sizeof(j.body)) : 0;
        memcpy(j.body, d + (n > 2 ? 2 : 0), j.body_len);
        job_finish_response(a, &j);
        if (!j.done || r.kind > PD_R_FORBIDDEN || strlen(r.reason) >= sizeof(r.reason))
            abort();
        pthread_mutex_destroy(&a->lock);
        pthread_cond_destroy(&j.cv);
        free(a);
        break;
    }
    case 2: { /* FCM error body */
        char code[64];
        cJSON *j = cJSON_ParseWithLength(s, n);
        fcm_error_code(j, code, sizeof(code));
        cJSON_Delete(j);
        break;
    }
    case 3: /* Retry-After */
        pd_retry_after_ms(s, n);
        break;
    case 4: { /* resolved addresses */
        struct sockaddr_in6 s6;
        struct sockaddr_in s4;
        memset(&s6, 0, sizeof(s6));
        memset(&s4, 0, sizeof(s4));
        s6.sin6_family = AF_INET6;
        s4.sin_family = AF_INET;
        memcpy(&s6.sin6_addr, d, n < 16 ? n : 16);
        memcpy(&s4.sin_addr, d, n < 4 ? n : 4);
        pd_webhook_addr_forbidden((struct sockaddr *)&s6);
        pd_webhook_addr_forbidden((struct sockaddr *)&s4);
        break;
    }
    }
    free(s);
    return 0;
}
