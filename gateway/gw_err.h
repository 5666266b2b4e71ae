/* gw_err: the gateway's one error convention. Every failure the gateway answers with, whether
 * found by the server core (limits, bad HTTP), by the API (validation, routing) or reported by
 * a backend (a gRPC status), is a gw_err_t. The answer a client sees is derived from it in one
 * place, gw_err_http_status() and gw_err_code() (the stable machine code of the JSON error
 * body); a backend's gRPC status becomes a gw_err_t once, in gw_err_from_grpc(). */
#ifndef GW_ERR_H
#define GW_ERR_H

typedef enum {
    GW_OK = 0,
    /* 400 */
    GW_ERR_BAD_REQUEST,        /* not valid HTTP (core) */
    GW_ERR_INVALID_JSON,       /* body not UTF-8 JSON, not an object, trailing data */
    GW_ERR_MISSING_FIELD,      /* a required body member is absent */
    GW_ERR_INVALID_FIELD,      /* a body member has a wrong type, format or size */
    GW_ERR_MISSING_HEADER,     /* a required request header is absent */
    GW_ERR_INVALID_HEADER,     /* a request header is malformed or contradicts another */
    GW_ERR_INVALID_MAILBOX_ID, /* the id in the path is not a version 4 UUID */
    GW_ERR_REQUEST_REJECTED,   /* the store refused the request's arguments */
    GW_ERR_NOT_POSSIBLE,       /* the operation does not apply to this mailbox's state */
    /* 401 */
    GW_ERR_UNAUTHORIZED,         /* the device claim does not grant this operation */
    GW_ERR_ID_TAKEN,             /* Create of an id that exists (under another request) */
    GW_ERR_ATTESTATION_REQUIRED, /* the policy wants a device attestation; none came */
    GW_ERR_INVALID_ATTESTATION,  /* the attestation is malformed or does not verify */
    GW_ERR_NOT_FOUND,            /* 404: no such mailbox or route */
    GW_ERR_METHOD_NOT_ALLOWED,   /* 405 */
    GW_ERR_REQUEST_TIMEOUT,      /* 408: head or body too slow (core) */
    GW_ERR_PAYLOAD_TOO_LARGE,    /* 413 (core) */
    GW_ERR_UNSUPPORTED_MEDIA,    /* 415: a body that is not application/json */
    GW_ERR_RATE_LIMITED,         /* 429: the client's budget is spent (Retry-After given) */
    GW_ERR_HEADERS_TOO_LARGE,    /* 431 (core) */
    GW_ERR_INTERNAL,             /* 500 */
    GW_ERR_UNAVAILABLE,          /* 503: a backend is down or not configured */
    GW_ERR_SHUTTING_DOWN,        /* 503: the server drains (core) */
    GW_ERR_TIMEOUT,              /* 504: a backend did not answer before the deadline */
    GW_ERR_COUNT
} gw_err_t;

/* The enum's own name, e.g. "GW_ERR_NOT_FOUND", for logs; "GW_ERR_?" when out of range. */
const char *gw_err_name(gw_err_t e);

/* The HTTP status of |e| (200 for GW_OK, 500 when out of range). */
int gw_err_http_status(gw_err_t e);

/* The "code" member of the JSON error body, e.g. "not_found" ("" for GW_OK). */
const char *gw_err_code(gw_err_t e);

/* A generic human text for |e|, used when the site has nothing more precise; never carries
 * request data or a backend's own message. */
const char *gw_err_message(gw_err_t e);

/* The public meaning of a backend's gRPC status |grpc_code| (a grpc_status_code): answers
 * about the request map to 4xx, outages to 503/504, anything else to GW_ERR_INTERNAL. */
gw_err_t gw_err_from_grpc(int grpc_code);

#endif
