/* fuzz_csv.c: libFuzzer target for the RFC 4180 CSV loader (runtime/textdata.c).
 *
 * The first byte picks the options (header or not, delimiter, skip_bad, which
 * columns); the rest is the file. Beyond sanitizer reports it checks the
 * record invariants (fuzz_common.h) and a round trip: the records written as
 * a fully quoted CSV with a header parse back to the same records.
 *   make fuzz && build-fuzz/fuzz_csv -max_total_time=600 build-fuzz/corpus/fuzz_csv fuzz/corpus/fuzz_csv
 */
#include "fuzz_common.h"

static void put_quoted(char **out, size_t *n, size_t *cap, const char *s, size_t len) {
    size_t need = *n + 2 * len + 4;
    if (need > *cap) {
        *cap = need * 2;
        *out = realloc(*out, *cap);
        FUZZ_REQUIRE(*out);
    }
    (*out)[(*n)++] = '"';
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"') (*out)[(*n)++] = '"';
        (*out)[(*n)++] = s[i];
    }
    (*out)[(*n)++] = '"';
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 1) return 0;
    unsigned flags = data[0];
    const char *src = (const char *)data + 1;
    size_t len = size - 1;
    static const char delims[4] = {',', ';', '\t', '|'};
    mb_textdata_opts o = {0};
    o.header = flags & 1;
    o.skip_bad = (flags >> 1) & 1;
    o.delimiter = delims[(flags >> 2) & 3];
    if (!o.header) {
        o.text_index = 1 + ((flags >> 4) & 1);
        o.label_index = 1 + ((flags >> 5) & 3);
    }
    mb_textdata d;
    mb_textdata_init(&d);
    mb_error err = {0};
    mb_status st = mb_textdata_parse_csv(&d, "fuzz.csv", src, len, &o, &err);
    FUZZ_REQUIRE(st == MB_OK || err.msg[0]);
    if (st == MB_OK) {
        fuzz_check_records(&d, src, len);
        /* round trip through a quoted CSV with CRLF line ends */
        size_t cap = 64, n = 0;
        char *out = malloc(cap);
        FUZZ_REQUIRE(out);
        memcpy(out, "label,text\r\n", 12);
        n = 12;
        for (int64_t i = 0; i < d.n; i++) {
            put_quoted(&out, &n, &cap, mb_textdata_label(&d, i), d.label_len[i]);
            out[n++] = ',';
            put_quoted(&out, &n, &cap, mb_textdata_text(&d, i), d.text_len[i]);
            out[n++] = '\r';
            out[n++] = '\n';
        }
        mb_textdata back;
        mb_textdata_init(&back);
        mb_textdata_opts bo = {0};
        bo.header = 1;
        mb_error berr = {0};
        mb_status bst = mb_textdata_parse_csv(&back, "roundtrip.csv", out, n, &bo, &berr);
        if (bst != MB_OK) fprintf(stderr, "round trip failed: %s\n", berr.msg);
        FUZZ_REQUIRE(bst == MB_OK && back.skipped == 0);
        fuzz_same_records(&d, &back);
        mb_textdata_free(&back);
        free(out);
    }
    mb_textdata_free(&d);
    return 0;
}
