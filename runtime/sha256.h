/* sha256.h: SHA-256 (FIPS 180-4) for content hashes in the results store.
 *
 * The store records a hash of the running script, of artifacts and (when the
 * caller asks) of data sets and model files, so that a run can be matched to
 * exactly what produced it. SQLite has no hash function and the project does
 * not link a crypto library, so this is a small streaming implementation.
 * It is for identifying content, not for anything security-sensitive.
 */
#ifndef MB_SHA256_H
#define MB_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define MB_SHA256_HEX_LEN 64 /* hex digest length, without the terminating NUL */

typedef struct mb_sha256 {
    uint32_t state[8];
    uint64_t total_len; /* bytes hashed so far */
    uint8_t block[64];  /* pending partial block */
    size_t block_len;
} mb_sha256;

void mb_sha256_init(mb_sha256 *h);
void mb_sha256_update(mb_sha256 *h, const void *data, size_t len);
void mb_sha256_final(mb_sha256 *h, uint8_t digest[32]);

/* Lower-case hex digest of a buffer into hex[65]. */
void mb_sha256_hex(const void *data, size_t len, char hex[MB_SHA256_HEX_LEN + 1]);
/* Lower-case hex digest of a file's bytes into hex[65]; MB_ERR_IO if unreadable. */
mb_status mb_sha256_file(const char *path, char hex[MB_SHA256_HEX_LEN + 1], mb_error *err);

#endif
