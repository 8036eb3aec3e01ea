/* fuzz_common.h: checks shared by the text data fuzz targets (fuzz_csv.c, fuzz_jsonl.c).
 *
 * Beyond "no crash, no sanitizer report", every parse must leave records that
 * keep the promises of runtime/textdata.h: non-blank text, non-empty label,
 * NUL-terminated copies of the stated length, line numbers that never go down
 * and never pass the number of lines in the input. Writing the records back
 * out and parsing them again must give the same records (round trip).
 */
#ifndef MB_FUZZ_COMMON_H
#define MB_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/textdata.h"

#define FUZZ_REQUIRE(cond)                                                             \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

static void fuzz_check_records(const mb_textdata *d, const char *src, size_t len) {
    int64_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += src[i] == '\n';
    int64_t prev = 0;
    for (int64_t i = 0; i < d->n; i++) {
        FUZZ_REQUIRE(d->text_len[i] > 0 && d->label_len[i] > 0);
        FUZZ_REQUIRE(strlen(mb_textdata_text(d, i)) == d->text_len[i]);
        FUZZ_REQUIRE(strlen(mb_textdata_label(d, i)) == d->label_len[i]);
        FUZZ_REQUIRE(d->line[i] >= prev && d->line[i] >= 1 && d->line[i] <= lines);
        prev = d->line[i];
    }
    FUZZ_REQUIRE(d->n_skip_msgs <= MB_TEXTDATA_SKIP_MSGS && d->skipped >= d->n_skip_msgs);
}

static void fuzz_same_records(const mb_textdata *a, const mb_textdata *b) {
    FUZZ_REQUIRE(a->n == b->n);
    for (int64_t i = 0; i < a->n; i++) {
        FUZZ_REQUIRE(a->text_len[i] == b->text_len[i] &&
                     memcmp(mb_textdata_text(a, i), mb_textdata_text(b, i), a->text_len[i]) == 0);
        FUZZ_REQUIRE(a->label_len[i] == b->label_len[i] &&
                     memcmp(mb_textdata_label(a, i), mb_textdata_label(b, i), a->label_len[i]) == 0);
    }
}

#endif
