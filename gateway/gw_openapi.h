/* gw_openapi: GET /v1/openapi.json, the OpenAPI 3.1 description of the public API. The
 * document is gateway/openapi.json, compiled into the binary at build time (embed.cmake), so
 * the served contract is always the one of this build; tests/openapi validates it and checks
 * the real answers against it. */
#ifndef GW_OPENAPI_H
#define GW_OPENAPI_H

#include <stddef.h>

#include "gw_http.h"

/* The embedded document (generated gw_openapi_doc.c; not NUL-terminated). */
extern const unsigned char gw_openapi_doc[];
extern const size_t gw_openapi_doc_len;

/* Answers GET /v1/openapi.json (the router answers other methods). On |r|'s loop thread. */
void gw_openapi_handle(gw_req_t *r);

#endif
