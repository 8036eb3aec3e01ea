/* fuzz_tokenizer.c: libFuzzer target for the tokenizer on arbitrary bytes.
 *
 * Loads distilbert-base-uncased once (MOONBERT_SHARED, default ../shared; a
 * small built-in vocabulary when absent) and, for every input, encodes it as a
 * single text with offsets, as a pair (split at the first 0xFF byte), with and
 * without truncation; checks the invariants (template tokens in place, ids in
 * the vocabulary, offsets inside the input, truncation respected), decodes the
 * result, and computes lengths and a padded batch. Any crash, sanitizer report or
 * broken invariant (abort) is a finding.
 *   make fuzz && nice build-fuzz/fuzz_tokenizer -max_total_time=600 fuzz/corpus/fuzz_tokenizer
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../runtime/tokenizer.h"

static mb_tokenizer *tok;
static mb_tokenizer_work *work;

static void die(const char *what) {
    fprintf(stderr, "fuzz_tokenizer: invariant broken: %s\n", what);
    abort();
}

static mb_tokenizer *load_fallback(void) {
    char dir[] = "/tmp/mb_fuzz_tok_XXXXXX";
    if (!mkdtemp(dir)) return NULL;
    char path[256];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\n##a\n##b\nab\n!\n\xc3\xa9\n##\xc3\xa9\n", f);
    fclose(f);
    mb_error err = {0};
    mb_tokenizer *t = mb_tokenizer_load(dir, &err);
    unlink(path);
    rmdir(dir);
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *root = getenv("MOONBERT_SHARED");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/distilbert-base-uncased", root && *root ? root : "../shared");
    mb_error err = {0};
    tok = mb_tokenizer_load(dir, &err);
    if (!tok) {
        fprintf(stderr, "fuzz_tokenizer: %s; using a built-in vocabulary\n", err.msg);
        tok = load_fallback();
    }
    if (!tok) die("no tokenizer");
    work = mb_tokenizer_work_new();
    return 0;
}

static void check_encoding(const int32_t *ids, const int32_t *offs, int64_t n, size_t len, int pair, int32_t max_len) {
    mb_special_ids s = mb_tokenizer_special_ids(tok);
    if (n < (pair ? 3 : 2)) die("too few ids");
    if (max_len > 0 && n > max_len) die("truncation exceeded max_length");
    if (ids[0] != s.cls || ids[n - 1] != s.sep) die("template tokens missing");
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= mb_tokenizer_vocab_size(tok)) die("id outside the vocabulary");
        if (offs && !pair && offs[2 * i] >= 0 && (offs[2 * i] > offs[2 * i + 1] || (size_t)offs[2 * i + 1] > len))
            die("offset outside the input");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    enum { CAP = 4096 };
    static int32_t ids[CAP], ty[CAP], offs[2 * CAP];
    const char *text = (const char *)data;
    mb_error err = {0};
    int64_t n = mb_tokenizer_encode(tok, work, text, size, NULL, 0, 0, ids, ty, offs, CAP, &err);
    if (n < 0) die(err.msg);
    if (n <= CAP) {
        check_encoding(ids, offs, n, size, 0, 0);
        char *d = mb_tokenizer_decode(tok, ids, (size_t)n, size & 1, NULL, &err);
        if (!d) die("decode failed");
        free(d);
    }
    int32_t max_len = 2 + (int32_t)(size % 17);
    n = mb_tokenizer_encode(tok, NULL, text, size, NULL, 0, max_len, ids, NULL, offs, CAP, &err);
    if (n < 0) die(err.msg);
    check_encoding(ids, offs, n, size, 0, max_len);

    const uint8_t *cut = memchr(data, 0xFF, size);
    size_t la = cut ? (size_t)(cut - data) : size / 2;
    const char *b = text + (cut ? la + 1 : la);
    size_t lb = size - (size_t)(b - text);
    n = mb_tokenizer_encode(tok, work, text, la, b, lb, max_len + 1, ids, ty, NULL, CAP, &err);
    if (n < 0) die(err.msg);
    check_encoding(ids, NULL, n, size, 1, max_len + 1);

    const char *texts[2] = {text, b};
    size_t lens[2] = {la, lb};
    int32_t L[2];
    if (mb_tokenizer_lengths(tok, 2, texts, lens, 0, L, &err)) die(err.msg);
    mb_batch_options o = {MB_PAD_LONGEST, 0, 1, MB_TRUNC_LONGEST_FIRST};
    mb_batch_encoding be;
    if (mb_tokenizer_encode_batch(tok, 2, texts, lens, NULL, NULL, &o, &be, &err)) die(err.msg);
    for (int i = 0; i < 2; i++)
        if (be.lengths[i] != (L[i] > 512 ? 512 : L[i])) die("batch length differs from lengths()");
    mb_batch_encoding_free(&be);
    return 0;
}
