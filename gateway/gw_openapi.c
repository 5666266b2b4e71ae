/* GET /v1/openapi.json; see gw_openapi.h. */
#include "gw_openapi.h"

#include <string.h>

#include "gw_json.h"

static void echo_correlation(gw_req_t *r)
{
    static const char *const names[] = {"mailbox-correlation-id", "mailbox-request-id"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = gw_req_header(r, names[i]);
        if (v && gw_correlation_id_valid(v))
            gw_req_add_header(r, names[i], v);
    }
}

void gw_openapi_handle(gw_req_t *r)
{
    gw_req_set_route(r, "openapi");
    echo_correlation(r);
    gw_req_add_header(r, "x-content-type-options", "nosniff");
    if (strcmp(gw_req_method(r), "GET") != 0) {
        static const char body[] = "{\"error\":{\"code\":\"method_not_allowed\",\"message\":"
                                   "\"method not allowed on this resource\"}}";
        gw_req_add_header(r, "allow", "GET");
        gw_req_add_header(r, "cache-control", "no-store");
        gw_req_respond(r, 405, "application/json", body, sizeof(body) - 1);
        return;
    }
    /* the document changes only with the binary */
    gw_req_add_header(r, "cache-control", "public, max-age=300");
    gw_req_respond(r, 200, "application/json", gw_openapi_doc, gw_openapi_doc_len);
}
