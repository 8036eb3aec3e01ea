/* manifest.h: the sha256 manifest of a checkpoint folder.
 *
 * A checkpoint is trusted only when every file it lists hashes to what the
 * manifest says. The format is sha256sum's, framed by two comment lines so that
 * a manifest cut short at a line boundary is still seen as cut:
 *
 *     # moonbert checkpoint manifest v1
 *     <64 lower-case hex digits>  <relative path>
 *     ...
 *     # end 3 files
 *
 * (`grep -v '^#' manifest.sha256 | sha256sum -c` checks a folder by hand.)
 * Paths are relative, '/'-separated, without empty, "." or ".." parts, without
 * control characters or backslashes, unique, and never the manifest itself.
 * Every line ends in '\n'. Anything else is refused with the line number.
 */
#ifndef MB_MANIFEST_H
#define MB_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "sha256.h"

#define MB_MANIFEST_NAME "manifest.sha256"
#define MB_MANIFEST_MAX_FILES 4096
#define MB_MANIFEST_MAX_PATH 1024

typedef struct mb_manifest_entry {
    char *path;                          /* relative, NUL-terminated */
    char hex[MB_SHA256_HEX_LEN + 1];     /* lower-case digest */
} mb_manifest_entry;

typedef struct mb_manifest {
    int64_t n;
    mb_manifest_entry *entries;
} mb_manifest;

/* Parse manifest text (name is used in messages). On failure m is left empty. */
mb_status mb_manifest_parse(mb_manifest *m, const char *text, size_t len, const char *name, mb_error *err);
/* The manifest as text (malloc'd, NUL-terminated); NULL if an entry is invalid. */
char *mb_manifest_format(const mb_manifest *m, mb_error *err);
void mb_manifest_free(mb_manifest *m);
/* A relative path a manifest may hold (1) or not (0). */
int mb_manifest_path_ok(const char *path, size_t len);

/* Hash dir/<files[i]> and write dir/manifest.sha256 durably (temporary file,
 * fsync, rename, fsync of dir). */
mb_status mb_manifest_write(const char *dir, const char *const *files, int n, mb_error *err);
/* Read dir/manifest.sha256 and check every file it lists; the message names
 * the first file that is missing or differs. */
mb_status mb_manifest_verify(const char *dir, mb_error *err);

#endif
