/* fuzz_tokenizer_load.h: shared by the tokenizer-loading fuzz targets
 * (fuzz_tokenizer_json.c, fuzz_vocab.c). The input becomes one file of a
 * tokenizer folder in a private temporary folder (under /dev/shm when it exists);
 * mb_tokenizer_load must then either refuse it with a message, or give a
 * tokenizer that keeps its promises: special ids inside the vocabulary, every
 * id's token mapping back to an id, encodings of fixed texts and of the input's
 * own bytes framed by [CLS] ... [SEP] with ids in range, and decodable.
 */
#ifndef MB_FUZZ_TOKENIZER_LOAD_H
#define MB_FUZZ_TOKENIZER_LOAD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../runtime/tokenizer.h"

static char fuzz_dir[256];

static void fuzz_require(int cond, const char *what) {
    if (!cond) {
        fprintf(stderr, "tokenizer-load fuzz: invariant broken: %s\n", what);
        abort();
    }
}

static void fuzz_make_dir(void) {
    struct stat sb;
    const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/mb_fuzz_tokload_XXXXXX", base);
    fuzz_require(mkdtemp(fuzz_dir) != NULL, "mkdtemp");
}

static void fuzz_write(const char *name, const uint8_t *data, size_t size) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir, name);
    FILE *f = fopen(path, "wb");
    fuzz_require(f != NULL, "cannot write the input file");
    if (size) fuzz_require(fwrite(data, 1, size, f) == size, "short write");
    fclose(f);
}

static void fuzz_remove(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir, name);
    unlink(path);
}

static void fuzz_check_encode(mb_tokenizer *tok, const char *text, size_t len) {
    enum { CAP = 1024 };
    static int32_t ids[CAP], offs[2 * CAP];
    mb_error err = {0};
    mb_special_ids s = mb_tokenizer_special_ids(tok);
    int32_t V = mb_tokenizer_vocab_size(tok);
    int64_t n = mb_tokenizer_encode(tok, NULL, text, len, NULL, 0, CAP, ids, NULL, offs, CAP, &err);
    fuzz_require(n >= 2 && n <= CAP, "encode failed on a loaded tokenizer");
    fuzz_require(ids[0] == s.cls && ids[n - 1] == s.sep, "template tokens missing");
    for (int64_t i = 0; i < n; i++) {
        fuzz_require(ids[i] >= 0 && ids[i] < V, "id outside the vocabulary");
        fuzz_require(offs[2 * i] < 0 || (offs[2 * i] <= offs[2 * i + 1] && (size_t)offs[2 * i + 1] <= len),
                     "offset outside the input");
    }
    char *d = mb_tokenizer_decode(tok, ids, (size_t)n, 1, NULL, &err);
    fuzz_require(d != NULL, "decode failed");
    free(d);
}

/* Load the folder; check a loaded tokenizer. */
static void fuzz_load_and_check(const uint8_t *data, size_t size) {
    mb_error err = {0};
    mb_tokenizer *tok = mb_tokenizer_load(fuzz_dir, &err);
    if (!tok) {
        fuzz_require(err.msg[0] != '\0', "a refusal without a message");
        return;
    }
    int32_t V = mb_tokenizer_vocab_size(tok);
    fuzz_require(V >= 1, "an empty vocabulary was accepted");
    mb_special_ids s = mb_tokenizer_special_ids(tok);
    fuzz_require(s.unk >= 0 && s.unk < V && s.cls >= 0 && s.cls < V && s.sep >= 0 && s.sep < V,
                 "special ids outside the vocabulary");
    fuzz_require(s.pad < V && s.mask < V, "pad/mask id outside the vocabulary");
    for (int32_t id = 0; id < V && id < 4096; id++) {
        size_t len = 0;
        const char *t = mb_tokenizer_id_to_token(tok, id, &len);
        if (t) fuzz_require(mb_tokenizer_token_to_id(tok, t, len) >= 0, "a token does not map back to an id");
    }
    for (int i = 0; i < mb_tokenizer_num_added(tok); i++) {
        int32_t id = -1;
        const char *a = mb_tokenizer_added(tok, i, &id);
        fuzz_require(a != NULL && id >= 0 && id < V, "added token outside the vocabulary");
    }
    static const char *texts[] = {"", "Hello, world!", "i feel so [MASK] today", "ab ##a \xc3\xa9t\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87",
                                  "[CLS] [SEP] [UNK] [PAD]"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) fuzz_check_encode(tok, texts[i], strlen(texts[i]));
    fuzz_check_encode(tok, (const char *)data, size > 512 ? 512 : size);
    mb_tokenizer_free(tok);
}

#endif
