/* av_trust: trust anchors per attestation format, certificate path validation (OpenSSL 3
 * X509_verify_cert) and the x5c / certificate helpers the format procedures share. */
#ifndef AV_TRUST_H
#define AV_TRUST_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>

#include "av_cbor.h"
#include "av_code.h"

#define AV_X5C_MAX 8

/* The formats that carry certificates, i.e. those with an anchor set. */
#define AV_TRUST_FORMATS                                                                           \
    {                                                                                              \
        "apple", "packed", "tpm", "android-key", "fido-u2f"                                        \
    }
#define AV_TRUST_NFORMATS 5

typedef struct av_trust av_trust_t;

/* An empty set (every chain is CHAIN_UNTRUSTED until anchors are added). NULL on OOM. */
av_trust_t *av_trust_new(void);
void av_trust_free(av_trust_t *t);

/* Adds every certificate of the PEM text to the anchors of |fmt| (NULL: of every format).
 * Returns the number of certificates added (0 when the text holds none), or -1 when a PEM
 * block does not parse. */
int av_trust_add_pem(av_trust_t *t, const char *fmt, const char *pem, size_t len);

/* Loads "<dir>/<format>.pem" for every format in AV_TRUST_FORMATS; a missing file leaves
 * that format without anchors. Returns the number of files loaded, or -1 when a file exists
 * but cannot be read or parsed (message in |err|). */
int av_trust_load_dir(av_trust_t *t, const char *dir, char *err, size_t errcap);

/* Number of anchors for |fmt|. */
int av_trust_count(const av_trust_t *t, const char *fmt);

/* Validates |leaf| -> |untrusted| -> an anchor of |fmt| at time |at| (0: now). Never takes an
 * anchor from |untrusted|. Returns AV_OK and the anchor's SHA-256 (hex) in |fp_hex| (65
 * bytes), or AV_CHAIN_UNTRUSTED, AV_CERT_EXPIRED, AV_CERT_NOT_YET_VALID,
 * AV_CERT_SIGNATURE_INVALID, AV_CHAIN_INVALID (OpenSSL error code in *|x509_err| when not
 * NULL). The set is not modified, so threads may share it. */
av_code_t av_trust_verify(const av_trust_t *t, const char *fmt, X509 *leaf,
                          STACK_OF(X509) * untrusted, time_t at, char fp_hex[65], int *x509_err);

/* Decodes the x5c array (1..AV_X5C_MAX DER certificates, each byte string exactly one
 * certificate). Returns AV_OK with *|leaf| = x5c[0] and *|rest| = x5c[1..] (both owned by the
 * caller: X509_free, sk_X509_pop_free), or AV_ATTSTMT_MALFORMED. */
av_code_t av_x5c_parse(const av_cbor_item_t *x5c, X509 **leaf, STACK_OF(X509) * *rest);

/* Finds the extension |oid| (dotted text) in |cert|. Returns 1 and its value bytes (the DER
 * inside the extnValue OCTET STRING) and criticality, 0 when absent, -1 when it occurs more
 * than once. */
int av_cert_ext(X509 *cert, const char *oid, const uint8_t **val, size_t *len, int *critical);

/* id-fido-gen-ce-aaguid (1.3.6.1.4.1.45724.1.1.4): AV_OK when absent, or present, not
 * critical and equal to |aaguid|; AV_AAGUID_MISMATCH when different; AV_CERT_REQUIREMENTS when
 * critical or malformed. */
av_code_t av_cert_check_aaguid(X509 *cert, const uint8_t aaguid[16]);

/* 1 when Basic Constraints says CA=true. */
int av_cert_is_ca(X509 *cert);

#endif
