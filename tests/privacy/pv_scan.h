/* pv_scan: looks for secrets in every file under a directory, in every form a careless writer
 * could have left them in: as given, upper/lower-case hex of the text, and when the text is hex
 * itself its raw bytes, their base64 and base64url. */
#ifndef PV_SCAN_H
#define PV_SCAN_H

#include <stddef.h>

/* Number of (file, form) hits of |secret| under |dir| (recursively, every regular file). Each
 * hit is printed to stderr with the file name and the form (never the secret). */
int pv_scan(const char *dir, const char *secret);

/* pv_scan of each of |n| secrets; returns the total. */
int pv_scan_all(const char *dir, const char *const *secrets, size_t n);

/* Number of regular files and their total size under |dir| (to show the scan saw something). */
size_t pv_dir_files(const char *dir, size_t *bytes);

#endif
