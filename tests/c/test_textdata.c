/* test_textdata.c: the text;label, CSV and JSONL parsers (runtime/textdata.c).
 *
 * Inputs are written here by hand with the records they must give; the emotion
 * files are checked against the line and class counts in their README.
 */
/* CHECK(cond) without a message expands to an empty format string. */
#pragma GCC diagnostic ignored "-Wformat-zero-length"
#include "harness.h"

#include "../../runtime/textdata.h"

static const char *T(const mb_textdata *d, int64_t i) { return mb_textdata_text(d, i); }
static const char *L(const mb_textdata *d, int64_t i) { return mb_textdata_label(d, i); }

/* Parse s in format fmt; return status, message in err. */
static mb_status parse(mb_textdata *d, mb_textdata_format fmt, const char *s, const mb_textdata_opts *o,
                       mb_error *err) {
    mb_textdata_init(d);
    mb_error_clear(err);
    size_t n = strlen(s);
    switch (fmt) {
    case MB_TEXTDATA_SEP: return mb_textdata_parse_sep(d, "f.txt", s, n, o, err);
    case MB_TEXTDATA_CSV: return mb_textdata_parse_csv(d, "f.csv", s, n, o, err);
    default: return mb_textdata_parse_jsonl(d, "f.jsonl", s, n, o, err);
    }
}

#define HAS(msg, part) CHECK(strstr((msg), (part)) != NULL, "message '%s' lacks '%s'", (msg), (part))

/* ---- text;label ----------------------------------------------------------- */

TEST(sep_splits_on_last_separator) {
    mb_textdata d;
    mb_error err;
    const char *s = "\xEF\xBB\xBFi feel; fine;joy\r\nsad text;sadness \nno newline at end;fear";
    CHECK(parse(&d, MB_TEXTDATA_SEP, s, NULL, &err) == MB_OK, "%s", err.msg);
    CHECK(d.n == 3, "n=%lld", (long long)d.n);
    if (d.n == 3) {
        CHECK(strcmp(T(&d, 0), "i feel; fine") == 0, "'%s'", T(&d, 0));
        CHECK(strcmp(L(&d, 0), "joy") == 0, "'%s'", L(&d, 0));
        CHECK(strcmp(L(&d, 1), "sadness") == 0, "label is trimmed: '%s'", L(&d, 1));
        CHECK(strcmp(T(&d, 2), "no newline at end") == 0);
        CHECK(d.line[0] == 1 && d.line[1] == 2 && d.line[2] == 3);
        CHECK(d.text_len[0] == 12);
    }
    mb_textdata_free(&d);
}

TEST(sep_label_first_and_multibyte_separator) {
    mb_textdata d;
    mb_error err;
    mb_textdata_opts o = {.sep = "\t|", .label_first = 1};
    CHECK(parse(&d, MB_TEXTDATA_SEP, "joy\t|a\t|b\n", &o, &err) == MB_OK, "%s", err.msg);
    CHECK(d.n == 1 && strcmp(L(&d, 0), "joy") == 0 && strcmp(T(&d, 0), "a\t|b") == 0);
    mb_textdata_free(&d);
}

TEST(sep_bad_lines_name_file_and_line) {
    mb_textdata d;
    mb_error err;
    CHECK(parse(&d, MB_TEXTDATA_SEP, "ok;joy\nno separator here\n", NULL, &err) == MB_ERR_FORMAT);
    HAS(err.msg, "f.txt:2:");
    HAS(err.msg, "no ';' separator");
    mb_textdata_free(&d);
    CHECK(parse(&d, MB_TEXTDATA_SEP, "ok;joy\n  ;joy\n", NULL, &err) == MB_ERR_FORMAT);
    HAS(err.msg, "f.txt:2: empty text");
    mb_textdata_free(&d);
    CHECK(parse(&d, MB_TEXTDATA_SEP, "a;joy\nb;\n", NULL, &err) == MB_ERR_FORMAT);
    HAS(err.msg, "f.txt:2: empty label");
    mb_textdata_free(&d);
    CHECK(parse(&d, MB_TEXTDATA_SEP, "a;joy\n\nb;joy\n", NULL, &err) == MB_ERR_FORMAT);
    HAS(err.msg, "f.txt:2: empty line");
    mb_textdata_free(&d);
    CHECK(parse(&d, MB_TEXTDATA_SEP, "a;joy\nb\xff\xfe;joy\n", NULL, &err) == MB_ERR_FORMAT);
    HAS(err.msg, "f.txt:2: invalid UTF-8 in the text at byte 2");
    mb_textdata_free(&d);
}

TEST(sep_skip_counts_bad_lines) {
    mb_textdata d;
    mb_error err;
    mb_textdata_opts o = {.skip_bad = 1};
    CHECK(parse(&d, MB_TEXTDATA_SEP, "a;joy\nbad\n;joy\nb;fear\nc;\n", &o, &err) == MB_OK, "%s", err.msg);
    CHECK(d.n == 2 && d.skipped == 3, "n=%lld skipped=%lld", (long long)d.n, (long long)d.skipped);
    CHECK(d.n_skip_msgs == 3);
    if (d.n_skip_msgs == 3) {
        HAS(d.skip_msgs[0], "f.txt:2:");
        HAS(d.skip_msgs[2], "f.txt:5: empty label");
    }
    CHECK(d.n == 2 && d.line[1] == 4);
    mb_textdata_free(&d);
}

/* ---- CSV ------------------------------------------------------------------ */

TEST(csv_rfc4180_quoting) {
    mb_textdata d;
    mb_error err;
    mb_textdata_opts o = {.header = 1};
    const char *s = "id,text,label\r\n"
                    "1,\"hello, world\",joy\r\n"
                    "2,\"she said \"\"hi\"\"\nand left\",sadness\r\n"
                    "3,plain,\"anger\"\r\n"
                    "4,\"\"\"quoted\"\"\",fear"; /* no final newline */
    CHECK(parse(&d, MB_TEXTDATA_CSV, s, &o, &err) == MB_OK, "%s", err.msg);
    CHECK(d.n == 4, "n=%lld", (long long)d.n);
    if (d.n == 4) {
        CHECK(strcmp(T(&d, 0), "hello, world") == 0);
        CHECK(strcmp(T(&d, 1), "she said \"hi\"\nand left") == 0, "'%s'", T(&d, 1));
        CHECK(strcmp(L(&d, 2), "anger") == 0);
        CHECK(strcmp(T(&d, 3), "\"quoted\"") == 0, "'%s'", T(&d, 3));
        /* record 3 starts on line 5: record 2 spans lines 3-4 */
        CHECK(d.line[0] == 2 && d.line[1] == 3 && d.line[2] == 5 && d.line[3] == 6, "%lld %lld %lld",
              (long long)d.line[1], (long long)d.line[2], (long long)d.line[3]);
    }
    mb_textdata_free(&d);
}

TEST(csv_quoted_crlf_is_kept) {
    mb_textdata d;
    mb_error err;
    mb_textdata_opts o = {.header = 1};
    CHECK(parse(&d, MB_TEXTDATA_CSV, "text,label\r\n\"a\r\nb\",joy\r\n", &o, &err) == MB_OK, "%s", err.msg);
    CHECK(d.n == 1 && strcmp(T(&d, 0), "a\r\nb") == 0);
    mb_textdata_free(&d);
}

TEST(csv_named_columns_and_errors) {
    mb_textdata d;
    mb_error err;
    mb_textdata_opts o = {.header = 1, .text_column = "tweet", .label_column = "emotion", .delimiter = ';'};
    CHECK(parse(&d, MB_TEXTDATA_CSV, "emotion;tweet\njoy;\"a;b\"\n", &o, &err) == MB_OK, "%s", err.msg);
    CHECK(d.n == 1 && strcmp(T(&d, 0), "a;b") == 0 && strcmp(L(&d, 0), "joy") == 0);
    mb_textdata_free(&d);

    mb_textdata_opts o2 = {.header = 1, .text_column = "tweet"};
    CHECK(parse(&d, MB_TEXTDATA_CSV, "sentence,label\nx,joy\n", &o2, &err) == MB_ERR_FORMAT);
    HAS(err.msg, "f.csv:1: no column 'tweet' in the header (columns: 'sentence', 'label')");
    mb_textdata_free(&d);

    mb_textdata_opts o3 = {.header = 1};
    CHECK(parse(&d, MB_TEXTDATA_CSV, "text,label\na,joy\nb,joy,extra\n", &o3, &err) == MB_ERR_FORMAT);
    HAS(err.msg, "f.csv:3: 3 fields, expected 2");
    mb_textdata_free(&d);
    CHECK(parse(&d, MB_TEXTDATA_CSV, "text,label\na,joy\n\"b,joy\nc,joy\n", &o3, &err) == MB_ERR_FORMAT);
    HAS(err.msg, "unterminated quoted field (the quote opens on line 3)");
    mb_textdata_free(&d);
    CHECK(parse(&d, MB_TEXTDATA_CSV, "text,label\n\"a\"b,joy\n", &o3, &err) == MB_ERR_FORMAT);
    HAS(err.msg, "f.csv:2: text after a closing quote");
    mb_textdata_free(&d);
    CHECK(parse(&d, MB_TEXTDATA_CSV, "text,label\na\"b,joy\n", &o3, &err) == MB_ERR_FORMAT);
    HAS(err.msg, "f.csv:2: '\"' inside an unquoted field");
    mb_textdata_free(&d);
    CHECK(parse(&d, MB_TEXTDATA_CSV, "", &o3, &err) == MB_ERR_FORMAT);
    HAS(err.msg, "empty file");
    mb_textdata_free(&d);
}

TEST(csv_without_header_uses_column_numbers) {
    mb_textdata d;
    mb_error err;
    mb_textdata_opts o = {.text_index = 2, .label_index = 1};
    CHECK(parse(&d, MB_TEXTDATA_CSV, "joy,i am happy\n3,x\n", &o, &err) == MB_OK, "%s", err.msg);
    CHECK(d.n == 2 && strcmp(T(&d, 0), "i am happy") == 0 && strcmp(L(&d, 1), "3") == 0);
    CHECK(d.line[0] == 1);
    mb_textdata_free(&d);
    mb_textdata_opts o2 = {.text_index = 1, .label_index = 3};
    CHECK(parse(&d, MB_TEXTDATA_CSV, "a,b\n", &o2, &err) == MB_ERR_FORMAT);
    HAS(err.msg, "no column 3: the first record has 2 fields");
    mb_textdata_free(&d);
}

TEST(csv_skip_resynchronises_after_bad_records) {
    mb_textdata d;
    mb_error err;
    mb_textdata_opts o = {.header = 1, .skip_bad = 1};
    const char *s = "text,label\n"
                    "good one,joy\n"
                    "\"bad\"x,joy\n"
                    "too,many,fields\n"
                    ",joy\n"
                    "good two,fear\n";
    CHECK(parse(&d, MB_TEXTDATA_CSV, s, &o, &err) == MB_OK, "%s", err.msg);
    CHECK(d.n == 2 && d.skipped == 3, "n=%lld skipped=%lld", (long long)d.n, (long long)d.skipped);
    if (d.n == 2) CHECK(strcmp(T(&d, 1), "good two") == 0 && d.line[1] == 6);
    mb_textdata_free(&d);
}

/* ---- JSONL ---------------------------------------------------------------- */

TEST(jsonl_records) {
    mb_textdata d;
    mb_error err;
    const char *s = "{\"text\": \"i feel great\", \"label\": \"joy\"}\n"
                    "{\"label\": 3, \"text\": \"caf\\u00e9 \\ud83d\\ude00\", \"other\": [1, 2]}\r\n";
    CHECK(parse(&d, MB_TEXTDATA_JSONL, s, NULL, &err) == MB_OK, "%s", err.msg);
    CHECK(d.n == 2);
    if (d.n == 2) {
        CHECK(strcmp(L(&d, 1), "3") == 0, "integer labels print in decimal: '%s'", L(&d, 1));
        CHECK(strcmp(T(&d, 1), "caf\xc3\xa9 \xf0\x9f\x98\x80") == 0, "'%s'", T(&d, 1));
    }
    mb_textdata_free(&d);
}

TEST(jsonl_errors_name_line_and_fields) {
    mb_textdata d;
    mb_error err;
    CHECK(parse(&d, MB_TEXTDATA_JSONL, "{\"text\":\"a\",\"label\":1}\n{\"text\": \"b\", \n", NULL, &err) ==
          MB_ERR_FORMAT);
    HAS(err.msg, "f.jsonl:2: invalid JSON");
    mb_textdata_free(&d);
    CHECK(parse(&d, MB_TEXTDATA_JSONL, "{\"sentence\":\"a\",\"label\":1}\n", NULL, &err) == MB_ERR_FORMAT);
    HAS(err.msg, "f.jsonl:1: no field 'text' (fields: 'sentence', 'label')");
    mb_textdata_free(&d);
    CHECK(parse(&d, MB_TEXTDATA_JSONL, "{\"text\":\"a\",\"label\":1.5}\n", NULL, &err) == MB_ERR_FORMAT);
    HAS(err.msg, "field 'label' must be a string or an integer, got a real number");
    mb_textdata_free(&d);
    CHECK(parse(&d, MB_TEXTDATA_JSONL, "[1]\n", NULL, &err) == MB_ERR_FORMAT);
    HAS(err.msg, "expected a JSON object, got an array");
    mb_textdata_free(&d);
    mb_textdata_opts o = {.text_field = "t", .label_field = "y", .skip_bad = 1};
    CHECK(parse(&d, MB_TEXTDATA_JSONL, "{\"t\":\"a\",\"y\":\"joy\"}\nnot json\n\n{\"t\":5,\"y\":\"x\"}\n", &o,
                &err) == MB_OK);
    CHECK(d.n == 1 && d.skipped == 3, "n=%lld skipped=%lld", (long long)d.n, (long long)d.skipped);
    mb_textdata_free(&d);
}

/* ---- files and hashing ---------------------------------------------------- */

TEST(missing_file_is_named) {
    mb_textdata d;
    mb_textdata_init(&d);
    mb_error err = {0};
    char missing[600], want[700];
    harness_missing("train.txt", missing, sizeof missing);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", missing);
    CHECK(mb_textdata_read(&d, MB_TEXTDATA_SEP, missing, NULL, &err) == MB_ERR_IO);
    HAS(err.msg, want);
    CHECK(mb_textdata_read(&d, MB_TEXTDATA_CSV, "/tmp", NULL, &err) == MB_ERR_IO);
    HAS(err.msg, "is a directory");
    mb_textdata_free(&d);
}

TEST(emotion_train_matches_readme_counts) {
    char buf[512];
    const char *path = harness_shared("data/emotion/train.txt", buf, sizeof buf);
    if (!path) SKIP("../shared/data/emotion is absent");
    mb_textdata d;
    mb_textdata_init(&d);
    mb_error err = {0};
    CHECK(mb_textdata_read(&d, MB_TEXTDATA_SEP, path, NULL, &err) == MB_OK, "%s", err.msg);
    /* README: 16000 lines; sadness 4666, joy 5362, love 1304, anger 2159, fear 1937, surprise 572 */
    const char *names[6] = {"sadness", "joy", "love", "anger", "fear", "surprise"};
    const int64_t want[6] = {4666, 5362, 1304, 2159, 1937, 572};
    int64_t got[6] = {0};
    for (int64_t i = 0; i < d.n; i++)
        for (int k = 0; k < 6; k++)
            if (strcmp(L(&d, i), names[k]) == 0) got[k]++;
    CHECK(d.n == 16000, "n=%lld", (long long)d.n);
    for (int k = 0; k < 6; k++) CHECK(got[k] == want[k], "%s: %lld vs %lld", names[k], (long long)got[k], (long long)want[k]);
    CHECK(d.n > 0 && strcmp(T(&d, 0), "i didnt feel humiliated") == 0);
    mb_textdata_free(&d);
}

TEST(fnv1a64_reference_vectors) {
    /* from the FNV reference test suite (Fowler/Noll/Vo) */
    CHECK(mb_fnv1a64(MB_FNV1A64_INIT, "", 0) == 0xcbf29ce484222325ULL);
    CHECK(mb_fnv1a64(MB_FNV1A64_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL);
    CHECK(mb_fnv1a64(MB_FNV1A64_INIT, "foobar", 6) == 0x85944171f73967e8ULL);
    /* continuing a hash equals hashing the concatenation */
    CHECK(mb_fnv1a64(mb_fnv1a64(MB_FNV1A64_INIT, "foo", 3), "bar", 3) == 0x85944171f73967e8ULL);
}

int main(void) {
    RUN(sep_splits_on_last_separator);
    RUN(sep_label_first_and_multibyte_separator);
    RUN(sep_bad_lines_name_file_and_line);
    RUN(sep_skip_counts_bad_lines);
    RUN(csv_rfc4180_quoting);
    RUN(csv_quoted_crlf_is_kept);
    RUN(csv_named_columns_and_errors);
    RUN(csv_without_header_uses_column_numbers);
    RUN(csv_skip_resynchronises_after_bad_records);
    RUN(jsonl_records);
    RUN(jsonl_errors_name_line_and_fields);
    RUN(missing_file_is_named);
    RUN(emotion_train_matches_readme_counts);
    RUN(fnv1a64_reference_vectors);
    return harness_end();
}
