/* cutproxy: a TCP proxy on loopback in front of the gateway's cleartext HTTP/1.1 port, for
 * the test of a lost answer. It counts CreateMailbox requests ("POST /v1/m HTTP/1.1") and, when
 * armed, forwards the next one to the relay but cuts the connection as soon as the relay
 * answers, so the client never sees that answer: exactly "the request was applied, the
 * response was dropped". */
#ifndef CUTPROXY_H
#define CUTPROXY_H

typedef struct cp_proxy cp_proxy_t;

/* Listens on 127.0.0.1:<ephemeral> and forwards to 127.0.0.1:|upstream_port|. NULL on error. */
cp_proxy_t *cp_start(int upstream_port);
int cp_port(const cp_proxy_t *p);
/* Cut the answer of the next CreateMailbox request. */
void cp_arm(cp_proxy_t *p);
/* CreateMailbox requests seen so far. */
int cp_creates(cp_proxy_t *p);
/* Stops listening, cuts every connection, joins every thread, frees. */
void cp_stop(cp_proxy_t *p);

#endif
