/* av_code: the stable verdict codes of the attestation verifier.
 *
 * The names are part of the API (VerifyResponse.code, the CLI's "code", metrics labels) and
 * are the codes used by the shared attestation test vectors (expected.code). Never renumber the
 * names; append new ones. */
#ifndef AV_CODE_H
#define AV_CODE_H

typedef enum {
    AV_OK = 0,
    AV_INPUT_TOO_LARGE,            /* an input over its size cap */
    AV_ENCODING,                   /* base64url or JSON framing of the input */
    AV_CBOR_MALFORMED,             /* attestation object does not decode / wrong shape */
    AV_ATTSTMT_MALFORMED,          /* attStmt members missing, extra or of the wrong type */
    AV_UNSUPPORTED_FORMAT,         /* fmt not known or not allowed by policy: never valid */
    AV_UNSUPPORTED_ALG,            /* algorithm or key type not supported */
    AV_CLIENTDATA_MALFORMED,       /* clientDataJSON is not a JSON object with the members */
    AV_CLIENTDATA_TYPE_MISMATCH,   /* type != "webauthn.create" */
    AV_CHALLENGE_MISMATCH,         /* clientDataJSON.challenge != the expected challenge */
    AV_ORIGIN_MISMATCH,            /* origin (or topOrigin) not allowed */
    AV_CROSS_ORIGIN_NOT_ALLOWED,   /* crossOrigin true while policy forbids it */
    AV_TOKEN_BINDING_INVALID,      /* tokenBinding.status not present/supported (L2 rule) */
    AV_RPID_HASH_MISMATCH,         /* authData.rpIdHash != SHA-256(rpId) */
    AV_USER_PRESENT_MISSING,       /* UP flag clear */
    AV_USER_VERIFICATION_REQUIRED, /* UV flag clear while required */
    AV_AUTHDATA_MALFORMED,         /* authData structure, flags or COSE key malformed */
    AV_SIGNATURE_INVALID,          /* attestation signature does not verify */
    AV_ALG_MISMATCH,               /* attStmt alg does not fit the signing key */
    AV_NONCE_MISSING,              /* apple: nonce extension absent */
    AV_NONCE_MALFORMED,            /* apple: nonce extension not the exact DER shape */
    AV_NONCE_MISMATCH,             /* apple nonce / android attestationChallenge mismatch */
    AV_PUBKEY_MISMATCH,            /* certificate or TPM key != credential public key */
    AV_AAGUID_MISMATCH,            /* AAGUID extension != authData AAGUID */
    AV_CERT_REQUIREMENTS,          /* format's certificate requirements not met */
    AV_ANDROID_KEY_AUTHORIZATION,  /* android key description authorization lists */
    AV_CHAIN_UNTRUSTED,            /* no path to a configured trust anchor */
    AV_CHAIN_INVALID,              /* path found but invalid (other X509 errors) */
    AV_CERT_SIGNATURE_INVALID,     /* a certificate signature in the path fails */
    AV_CERT_EXPIRED,               /* a certificate in the path expired at verify time */
    AV_CERT_NOT_YET_VALID,         /* a certificate in the path not yet valid at verify time */
    AV_INTERNAL,                   /* out of memory or library failure: not a verdict on input */
    /* a valid statement without a certificate chain (packed self) while policy wants one */
    AV_SELF_ATTESTATION_NOT_ALLOWED,
    AV_CODE_COUNT
} av_code_t;

/* Stable name, e.g. "NONCE_MISMATCH". */
const char *av_code_name(av_code_t c);

#endif
