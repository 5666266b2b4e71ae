/* av_service: tigress.attest.v1.AttestationVerifier/Verify on a cm_rpc server. */
#ifndef AV_SERVICE_H
#define AV_SERVICE_H

#include <stddef.h>

#include "av_trust.h"
#include "cm_rpc.h"

#define AV_SERVICE_NAME "tigress.attest.v1.AttestationVerifier"
#define AV_VERIFY_PATH "/tigress.attest.v1.AttestationVerifier/Verify"

typedef struct {
    const av_trust_t *trust;    /* not owned; outlives the server */
    const char *rp_id;          /* default RP ID ("" none: requests must carry one) */
    const char *const *origins; /* default allowed origins; none: "https://" + RP ID */
    size_t norigins;
    const char *const *top_origins;
    size_t ntop_origins;
    const char *const *formats; /* allowed formats; none: all supported */
    size_t nformats;
    int require_uv;
    int allow_cross_origin;
    int allow_test_overrides;   /* honour VerifyRequest.test_* (tests only) */
    int allow_self_attestation; /* accept packed self (no certificate chain) */
} av_service_cfg_t;

/* Registers Verify on |s| (before cm_rpc_server_start). |cfg| must outlive the server.
 * Returns 0 or -1. */
int av_service_register(cm_rpc_server_t *s, const av_service_cfg_t *cfg);

#endif
