/* av_tcases: the attestation test vectors of $TIGRESS_SHARED_DIR/testdata/attestation as C
 * data, the expected-vs-got comparison, and the verdict table the tests print. */
#ifndef AV_TCASES_H
#define AV_TCASES_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

typedef struct {
    char id[128];
    char path[1024]; /* absolute path of the case file */
    int optional;    /* expected.strictness == "optional" */
    int expect_valid;
    char codes[8][48]; /* expected.code then acceptableCodes */
    int ncodes;
    cJSON *json; /* the whole case file (owned) */
    /* filled by the test */
    int got_valid;
    char got_code[48];
    int ran;
} tc_case_t;

/* Loads every case of cases-index.json. Returns the count (> 0) and a malloc'd array, or -1. */
int tc_load(tc_case_t **out);
void tc_free(tc_case_t *cases, int n);

/* 1 when the verdict matches: same validity and, for invalid cases, a listed code. */
int tc_match(const tc_case_t *c);

/* Prints the table (expected vs got) to stdout, returns the number of REQUIRED mismatches;
 * optional mismatches are listed but not counted. |label| names the path (CLI / gRPC). */
int tc_report(const char *label, tc_case_t *cases, int n);

/* base64url member of the case -> malloc'd bytes (0) or -1. */
int tc_b64(const tc_case_t *c, const char *member, uint8_t **out, size_t *len);

#endif
