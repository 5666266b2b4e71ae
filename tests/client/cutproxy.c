#include "cutproxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CP_MAX_CONNS 64

typedef struct {
    struct cp_proxy *p;
    int fd; /* client side; -1 once closed (under p->mu) */
    pthread_t thr;
} conn_t;

struct cp_proxy {
    int lfd, port, upstream;
    pthread_t thr;
    pthread_mutex_t mu;
    int stop, armed, creates;
    conn_t conns[CP_MAX_CONNS];
    int nconns;
};

static int connect_upstream(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static int write_all(int fd, const char *b, size_t n)
{
    while (n) {
        ssize_t k = write(fd, b, n);
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Counts the creates in a chunk from the client; 1 when this connection must lose the next
 * answer. */
static int saw_request(struct cp_proxy *p, const char *b, size_t n)
{
    static const char create[] = "POST /v1/m HTTP/1.1";
    int cut = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i + sizeof(create) - 1 <= n; i++) {
        if (memcmp(b + i, create, sizeof(create) - 1) == 0) {
            p->creates++;
            if (p->armed) {
                p->armed = 0;
                cut = 1;
            }
        }
    }
    pthread_mutex_unlock(&p->mu);
    return cut;
}

static void *conn_main(void *arg)
{
    conn_t *c = arg;
    struct cp_proxy *p = c->p;
    int up = connect_upstream(p->upstream), cut = 0;
    char buf[65536];
    struct pollfd fds[2] = {{.fd = c->fd, .events = POLLIN}, {.fd = up, .events = POLLIN}};
    while (up >= 0) {
        if (poll(fds, 2, 200) < 0)
            break;
        pthread_mutex_lock(&p->mu);
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;
        if (fds[0].revents) {
            ssize_t n = read(c->fd, buf, sizeof(buf));
            if (n <= 0)
                break;
            cut |= saw_request(p, buf, (size_t)n);
            if (write_all(up, buf, (size_t)n) != 0)
                break;
        }
        if (fds[1].revents) {
            ssize_t n = read(up, buf, sizeof(buf));
            if (n <= 0 || cut) /* the relay answered: that answer is lost with the connection */
                break;
            if (write_all(c->fd, buf, (size_t)n) != 0)
                break;
        }
    }
    if (up >= 0)
        close(up);
    pthread_mutex_lock(&p->mu);
    close(c->fd);
    c->fd = -1;
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct cp_proxy *p = arg;
    for (;;) {
        int fd = accept(p->lfd, NULL, NULL);
        if (fd < 0)
            return NULL; /* cp_stop shut the socket down */
        pthread_mutex_lock(&p->mu);
        if (p->stop || p->nconns >= CP_MAX_CONNS) {
            pthread_mutex_unlock(&p->mu);
            close(fd);
            continue;
        }
        conn_t *c = &p->conns[p->nconns];
        c->p = p;
        c->fd = fd;
        if (pthread_create(&c->thr, NULL, conn_main, c) == 0)
            p->nconns++;
        else
            close(fd);
        pthread_mutex_unlock(&p->mu);
    }
}

cp_proxy_t *cp_start(int upstream_port)
{
    struct cp_proxy *p = calloc(1, sizeof(*p));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    p->upstream = upstream_port;
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(p->lfd, 16) != 0 || getsockname(p->lfd, (struct sockaddr *)&a, &l) != 0 ||
        pthread_create(&p->thr, NULL, accept_main, p) != 0) {
        if (p->lfd >= 0)
            close(p->lfd);
        free(p);
        return NULL;
    }
    p->port = ntohs(a.sin_port);
    return p;
}

int cp_port(const cp_proxy_t *p)
{
    return p->port;
}

void cp_arm(cp_proxy_t *p)
{
    pthread_mutex_lock(&p->mu);
    p->armed = 1;
    pthread_mutex_unlock(&p->mu);
}

int cp_creates(cp_proxy_t *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->creates;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void cp_stop(cp_proxy_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_mutex_unlock(&p->mu);
    shutdown(p->lfd, SHUT_RDWR);
    pthread_join(p->thr, NULL);
    close(p->lfd);
    for (int i = 0; i < p->nconns; i++)
        pthread_join(p->conns[i].thr, NULL); /* each sees p->stop within its poll timeout */
    pthread_mutex_destroy(&p->mu);
    free(p);
}
