/* cm_uuid: RFC 4122 UUID text checks and random (version 4) generation. */
#ifndef CM_UUID_H
#define CM_UUID_H

#include <stddef.h>

#define CM_UUID_STRLEN 36

/* 1 when |s| (length |len|) is 8-4-4-4-12 hex digits, either case; else 0. */
int cm_uuid_valid(const char *s, size_t len);

/* 1 when valid and version 4 with the RFC 4122 variant; else 0. */
int cm_uuid_is_v4(const char *s, size_t len);

/* Writes the lowercase canonical form of a valid UUID into |out| (37 bytes). */
void cm_uuid_canonical(const char *s, char out[CM_UUID_STRLEN + 1]);

/* A fresh random v4 UUID, lowercase, from the OpenSSL CSPRNG. Returns 0, or -1. */
int cm_uuid_v4(char out[CM_UUID_STRLEN + 1]);

#endif
