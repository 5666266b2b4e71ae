/* av_case: the command-line mode, `attestation-verifier verify CASE.json...`.
 *
 * Reads the JSON case format of the attestation test vectors (attestationObject and
 * clientDataJSON base64url, expectedChallenge, expectedOrigin, rpId, requireUserVerification,
 * verifyOptions, rootCertsPem, verifyTime, trustAnchor) and prints one JSON line per case:
 * {"id":..., "valid":..., "code":..., "format":..., "attestationType":..., "aaguid":...,
 *  "rootFingerprint":...}.
 * Anchors: the case's rootCertsPem when non-empty (for every format), else |fallback| (the
 * configured --trust-anchors-dir); trustAnchor "none-available..." turns chain validation
 * off. verifyTime is honoured (the operator chose the file; null = now). */
#ifndef AV_CASE_H
#define AV_CASE_H

#include <stdio.h>

#include "av_trust.h"

/* Returns 0 when a verdict line was printed (whatever it says), -1 when the file is
 * unreadable or not a case (message on stderr). */
int av_case_run(const char *path, const av_trust_t *fallback, FILE *out);

#endif
