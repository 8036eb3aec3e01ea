/* fuzz_manifest.c: libFuzzer target for the checkpoint manifest parser
 * (runtime/manifest.c). An accepted manifest must list only plain relative paths
 * with 64-hex digests, and what mb_manifest_format writes must parse back to the
 * same entries (round trip) and the same text. A refused one must say why.
 *   make fuzz && nice build-fuzz/fuzz_manifest -runs=10000000 fuzz/corpus/fuzz_manifest
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/manifest.h"

static void require(int cond, const char *what) {
    if (!cond) {
        fprintf(stderr, "fuzz_manifest: invariant broken: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mb_manifest m, again;
    mb_error err = {0};
    if (mb_manifest_parse(&m, (const char *)data, size, "fuzz", &err) != MB_OK) {
        require(err.msg[0] != '\0', "a refusal without a message");
        require(m.n == 0 && m.entries == NULL, "a refused manifest left entries");
        return 0;
    }
    require(m.n >= 1 && m.n <= MB_MANIFEST_MAX_FILES, "entry count");
    for (int64_t i = 0; i < m.n; i++) {
        require(mb_manifest_path_ok(m.entries[i].path, strlen(m.entries[i].path)), "accepted an unsafe path");
        require(strlen(m.entries[i].hex) == MB_SHA256_HEX_LEN, "digest length");
        require(strstr(m.entries[i].path, "..") == NULL || strstr(m.entries[i].path, "/../") == NULL, "parent path");
    }
    char *text = mb_manifest_format(&m, &err);
    require(text != NULL, "an accepted manifest cannot be written back");
    require(mb_manifest_parse(&again, text, strlen(text), "again", &err) == MB_OK, "written text does not parse");
    require(again.n == m.n, "round trip changed the count");
    for (int64_t i = 0; i < m.n; i++)
        require(strcmp(again.entries[i].path, m.entries[i].path) == 0 &&
                    strcmp(again.entries[i].hex, m.entries[i].hex) == 0,
                "round trip changed an entry");
    /* the format is canonical: an accepted input is exactly what we would write */
    require(strlen(text) == size && memcmp(text, data, size) == 0, "accepted a non-canonical manifest");
    free(text);
    mb_manifest_free(&again);
    mb_manifest_free(&m);
    return 0;
}
