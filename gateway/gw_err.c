#include "gw_err.h"

#include <grpc/status.h>

static const struct {
    const char *name;
    int status;
    const char *code;
    const char *message;
} ERRS[GW_ERR_COUNT] = {
    [GW_OK] = {"GW_OK", 200, "", ""},
    [GW_ERR_BAD_REQUEST] = {"GW_ERR_BAD_REQUEST", 400, "bad_request",
                            "the request is not valid HTTP"},
    [GW_ERR_INVALID_JSON] = {"GW_ERR_INVALID_JSON", 400, "invalid_json", "body is not valid JSON"},
    [GW_ERR_MISSING_FIELD] = {"GW_ERR_MISSING_FIELD", 400, "missing_field",
                              "a required field is missing"},
    [GW_ERR_INVALID_FIELD] = {"GW_ERR_INVALID_FIELD", 400, "invalid_field",
                              "a field has an invalid value"},
    [GW_ERR_MISSING_HEADER] = {"GW_ERR_MISSING_HEADER", 400, "missing_header",
                               "a required header is missing"},
    [GW_ERR_INVALID_HEADER] = {"GW_ERR_INVALID_HEADER", 400, "invalid_header",
                               "a header has an invalid value"},
    [GW_ERR_INVALID_MAILBOX_ID] = {"GW_ERR_INVALID_MAILBOX_ID", 400, "invalid_mailbox_id",
                                   "mailbox identifier must be a version 4 UUID"},
    [GW_ERR_REQUEST_REJECTED] = {"GW_ERR_REQUEST_REJECTED", 400, "invalid_request",
                                 "request rejected"},
    [GW_ERR_NOT_POSSIBLE] = {"GW_ERR_NOT_POSSIBLE", 400, "invalid_request",
                             "operation not possible on this mailbox"},
    [GW_ERR_UNAUTHORIZED] = {"GW_ERR_UNAUTHORIZED", 401, "unauthorized",
                             "device not authorized for this mailbox"},
    [GW_ERR_ID_TAKEN] = {"GW_ERR_ID_TAKEN", 401, "unauthorized",
                         "mailbox identifier not available"},
    [GW_ERR_ATTESTATION_REQUIRED] = {"GW_ERR_ATTESTATION_REQUIRED", 401, "attestation_required",
                                     "device attestation required"},
    [GW_ERR_INVALID_ATTESTATION] = {"GW_ERR_INVALID_ATTESTATION", 401, "invalid_attestation",
                                    "device attestation not accepted"},
    [GW_ERR_NOT_FOUND] = {"GW_ERR_NOT_FOUND", 404, "not_found", "mailbox not found"},
    [GW_ERR_METHOD_NOT_ALLOWED] = {"GW_ERR_METHOD_NOT_ALLOWED", 405, "method_not_allowed",
                                   "method not allowed on this resource"},
    [GW_ERR_REQUEST_TIMEOUT] = {"GW_ERR_REQUEST_TIMEOUT", 408, "request_timeout",
                                "the request did not arrive in time"},
    [GW_ERR_PAYLOAD_TOO_LARGE] = {"GW_ERR_PAYLOAD_TOO_LARGE", 413, "payload_too_large",
                                  "the request body is larger than the server accepts"},
    [GW_ERR_UNSUPPORTED_MEDIA] = {"GW_ERR_UNSUPPORTED_MEDIA", 415, "unsupported_media_type",
                                  "request bodies must be application/json"},
    [GW_ERR_RATE_LIMITED] = {"GW_ERR_RATE_LIMITED", 429, "rate_limited",
                             "too many requests from this client; retry after Retry-After "
                             "seconds"},
    [GW_ERR_HEADERS_TOO_LARGE] = {"GW_ERR_HEADERS_TOO_LARGE", 431, "headers_too_large",
                                  "the request headers are too large or too many"},
    [GW_ERR_INTERNAL] = {"GW_ERR_INTERNAL", 500, "internal", "internal error"},
    [GW_ERR_UNAVAILABLE] = {"GW_ERR_UNAVAILABLE", 503, "unavailable",
                            "service temporarily unavailable"},
    [GW_ERR_SHUTTING_DOWN] = {"GW_ERR_SHUTTING_DOWN", 503, "unavailable",
                              "the server is shutting down"},
    [GW_ERR_TIMEOUT] = {"GW_ERR_TIMEOUT", 504, "timeout", "backend did not answer in time"},
};

static int known(gw_err_t e)
{
    return (unsigned)e < GW_ERR_COUNT;
}

const char *gw_err_name(gw_err_t e)
{
    return known(e) ? ERRS[e].name : "GW_ERR_?";
}

int gw_err_http_status(gw_err_t e)
{
    return known(e) ? ERRS[e].status : 500;
}

const char *gw_err_code(gw_err_t e)
{
    return known(e) ? ERRS[e].code : ERRS[GW_ERR_INTERNAL].code;
}

const char *gw_err_message(gw_err_t e)
{
    return known(e) ? ERRS[e].message : ERRS[GW_ERR_INTERNAL].message;
}

gw_err_t gw_err_from_grpc(int grpc_code)
{
    switch ((grpc_status_code)grpc_code) {
    case GRPC_STATUS_OK:
        return GW_OK;
    case GRPC_STATUS_NOT_FOUND:
        return GW_ERR_NOT_FOUND;
    case GRPC_STATUS_ALREADY_EXISTS: /* the API answers an existing id with 401 */
        return GW_ERR_ID_TAKEN;
    case GRPC_STATUS_PERMISSION_DENIED:
    case GRPC_STATUS_UNAUTHENTICATED:
        return GW_ERR_UNAUTHORIZED;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_OUT_OF_RANGE:
        return GW_ERR_REQUEST_REJECTED;
    case GRPC_STATUS_FAILED_PRECONDITION: /* e.g. the creator tries to relinquish */
        return GW_ERR_NOT_POSSIBLE;
    case GRPC_STATUS_UNAVAILABLE:
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return GW_ERR_UNAVAILABLE;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return GW_ERR_TIMEOUT;
    default:
        return GW_ERR_INTERNAL;
    }
}
