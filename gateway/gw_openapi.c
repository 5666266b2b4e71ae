/* GET /v1/openapi.json; see gw_openapi.h. */
#include "gw_openapi.h"

void gw_openapi_handle(gw_req_t *r)
{
    gw_req_echo_correlation(r);
    gw_req_add_header(r, "x-content-type-options", "nosniff");
    /* the document changes only with the binary */
    gw_req_add_header(r, "cache-control", "public, max-age=300");
    gw_req_respond(r, 200, "application/json", gw_openapi_doc, gw_openapi_doc_len);
}
