#include "av_service.h"

#include <string.h>
#include <time.h>

#include "av_verify.h"
#include "cm_log.h"
#include "cm_metrics.h"
#include "tigress/attest/v1/attestation_verifier.pb-c.h"

#define MAX_LIST 32

/* Only aggregate counts by format and result leave the process: nothing from the
 * attestation itself is logged or labelled. */
static void count(const av_result_t *r)
{
    char labels[160];
    const char *fmt = r->known_format ? r->format : "other";
    snprintf(labels, sizeof(labels), "format=\"%s\",result=\"%s\",code=\"%s\"", fmt,
             r->valid ? "valid" : "invalid", av_code_name(r->code));
    cm_counter_add(cm_metrics_counter("tigress_attestation_verifications_total",
                                      "Attestation verifications by format and result.", labels),
                   1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static grpc_status_code verify(cm_rpc_call_t *call, void *user, const ProtobufCMessage *reqm,
                               ProtobufCMessage *respm)
{
    const av_service_cfg_t *cfg = user;
    const Tigress__Attest__V1__VerifyRequest *rq = (const void *)reqm;
    Tigress__Attest__V1__VerifyResponse *rs = (void *)respm;
    double t0 = now_s();

    int overrides =
        rq->test_verify_time_unix != 0 || rq->n_test_root_certs_pem > 0 || rq->test_skip_chain;
    if (overrides && !cfg->allow_test_overrides)
        return cm_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                           "test_* fields need --allow-test-overrides");
    if (rq->expected_challenge.len == 0)
        return cm_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "expected_challenge is required");
    const char *rp = rq->rp_id && *rq->rp_id ? rq->rp_id : cfg->rp_id;
    if (!rp || !*rp) /* a deployment error, not the client's: the gateway answers 503 */
        return cm_rpc_fail(call, GRPC_STATUS_UNAVAILABLE,
                           "no rp_id in the request and no --rp-id configured");
    if (rq->n_allowed_top_origins > MAX_LIST || rq->n_test_root_certs_pem > MAX_LIST)
        return cm_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "too many list entries");

    av_request_t req;
    memset(&req, 0, sizeof(req));
    req.att_obj = rq->attestation_object.data;
    req.att_obj_len = rq->attestation_object.len;
    req.client_data = rq->client_data_json.data;
    req.client_data_len = rq->client_data_json.len;
    req.cd.challenge = rq->expected_challenge.data;
    req.cd.challenge_len = rq->expected_challenge.len;
    req.cd.rp_id = rp;
    const char *one_origin[1];
    if (rq->expected_origin && *rq->expected_origin) {
        one_origin[0] = rq->expected_origin;
        req.cd.origins = one_origin;
        req.cd.norigins = 1;
    } else {
        req.cd.origins = cfg->origins;
        req.cd.norigins = cfg->norigins;
    }
    req.cd.allow_cross_origin = cfg->allow_cross_origin || rq->allow_cross_origin;
    if (rq->n_allowed_top_origins) {
        req.cd.top_origins = (const char *const *)rq->allowed_top_origins;
        req.cd.ntop_origins = rq->n_allowed_top_origins;
    } else {
        req.cd.top_origins = cfg->top_origins;
        req.cd.ntop_origins = cfg->ntop_origins;
    }
    req.require_uv = cfg->require_uv || rq->require_user_verification;
    req.formats = cfg->formats;
    req.nformats = cfg->nformats;
    req.refuse_self = !cfg->allow_self_attestation;
    req.trust = cfg->trust;

    av_trust_t *own = NULL;
    if (overrides) {
        req.verify_time = (time_t)rq->test_verify_time_unix;
        if (rq->n_test_root_certs_pem) {
            if (!(own = av_trust_new()))
                return cm_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            for (size_t i = 0; i < rq->n_test_root_certs_pem; i++) {
                const char *pem = rq->test_root_certs_pem[i];
                if (av_trust_add_pem(own, NULL, pem, strlen(pem)) <= 0) {
                    av_trust_free(own);
                    return cm_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                                       "test_root_certs_pem[%zu] is not PEM", i);
                }
            }
            req.trust = own;
        }
        if (rq->test_skip_chain)
            req.trust = NULL;
    }

    av_result_t res;
    av_verify(&req, &res);
    av_trust_free(own);

    rs->valid = res.valid;
    rs->code = cm_rpc_strdup(call, av_code_name(res.code));
    rs->format = cm_rpc_strdup(call, res.format);
    rs->attestation_type = cm_rpc_strdup(call, res.att_type);
    if (res.has_aaguid) {
        rs->aaguid.data = cm_rpc_memdup(call, res.aaguid, 16);
        rs->aaguid.len = 16;
    }
    rs->root_fingerprint = cm_rpc_strdup(call, res.root_fp);
    count(&res);
    static cm_histogram_t *lat;
    if (!__atomic_load_n(&lat, __ATOMIC_ACQUIRE))
        __atomic_store_n(&lat,
                         cm_metrics_histogram("tigress_attestation_verify_seconds",
                                              "Time to verify one attestation.", NULL, NULL, 0),
                         __ATOMIC_RELEASE);
    cm_histogram_observe(lat, now_s() - t0);
    return GRPC_STATUS_OK;
}

int av_service_register(cm_rpc_server_t *s, const av_service_cfg_t *cfg)
{
    return cm_rpc_server_add_method(
        s, AV_VERIFY_PATH, &tigress__attest__v1__verify_request__descriptor,
        &tigress__attest__v1__verify_response__descriptor, verify, (void *)cfg);
}
