/* fuzz_jsonl.c: libFuzzer target for the JSON Lines loader (runtime/textdata.c).
 *
 * The first byte picks skip_bad; the rest is the file. Beyond sanitizer reports
 * it checks the record invariants (fuzz_common.h) and a round trip: the
 * records written back as JSON Lines (jansson) parse to the same records.
 *   make fuzz && build-fuzz/fuzz_jsonl -max_total_time=600 build-fuzz/corpus/fuzz_jsonl fuzz/corpus/fuzz_jsonl
 */
#include <jansson.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 1) return 0;
    const char *src = (const char *)data + 1;
    size_t len = size - 1;
    mb_textdata_opts o = {0};
    o.skip_bad = data[0] & 1;
    if (data[0] & 2) {
        o.text_field = "t";
        o.label_field = "y";
    }
    mb_textdata d;
    mb_textdata_init(&d);
    mb_error err = {0};
    mb_status st = mb_textdata_parse_jsonl(&d, "fuzz.jsonl", src, len, &o, &err);
    FUZZ_REQUIRE(st == MB_OK || err.msg[0]);
    if (st == MB_OK) {
        fuzz_check_records(&d, src, len);
        size_t cap = 64, n = 0;
        char *out = malloc(cap);
        FUZZ_REQUIRE(out);
        for (int64_t i = 0; i < d.n; i++) {
            json_t *obj = json_object();
            json_object_set_new(obj, "text", json_stringn(mb_textdata_text(&d, i), d.text_len[i]));
            json_object_set_new(obj, "label", json_stringn(mb_textdata_label(&d, i), d.label_len[i]));
            char *line = json_dumps(obj, JSON_COMPACT);
            FUZZ_REQUIRE(line);
            size_t ll = strlen(line);
            if (n + ll + 2 > cap) {
                cap = (n + ll + 2) * 2;
                out = realloc(out, cap);
                FUZZ_REQUIRE(out);
            }
            memcpy(out + n, line, ll);
            n += ll;
            out[n++] = '\n';
            free(line);
            json_decref(obj);
        }
        mb_textdata back;
        mb_textdata_init(&back);
        mb_error berr = {0};
        mb_status bst = mb_textdata_parse_jsonl(&back, "roundtrip.jsonl", out, n, NULL, &berr);
        if (bst != MB_OK) fprintf(stderr, "round trip failed: %s\n", berr.msg);
        FUZZ_REQUIRE(bst == MB_OK && back.skipped == 0);
        fuzz_same_records(&d, &back);
        mb_textdata_free(&back);
        free(out);
    }
    mb_textdata_free(&d);
    return 0;
}
