/* fuzz_vocab.c: libFuzzer target for loading vocab.txt (runtime/tokenizer_load.c,
 * the slow tokenizer's folder: no tokenizer.json). The first input byte picks
 * the tokenizer_config.json (none, lower-casing off, other special token
 * names); the rest is vocab.txt. See fuzz_tokenizer_load.h for the checks.
 *   make fuzz && nice build-fuzz/fuzz_vocab -runs=10000000 fuzz/corpus/fuzz_vocab
 */
#include "fuzz_tokenizer_load.h"

static const char *configs[] = {
    NULL,
    "{\"do_lower_case\": false, \"strip_accents\": false}",
    "{\"do_lower_case\": true, \"tokenize_chinese_chars\": false, \"model_max_length\": 8}",
    "{\"unk_token\": \"<unk>\", \"cls_token\": \"<s>\", \"sep_token\": \"</s>\", \"pad_token\": \"<pad>\", "
    "\"mask_token\": \"<mask>\"}",
};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_make_dir();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *cfg = configs[data[0] % (sizeof configs / sizeof *configs)];
    if (cfg) fuzz_write("tokenizer_config.json", (const uint8_t *)cfg, strlen(cfg));
    fuzz_write("vocab.txt", data + 1, size - 1);
    fuzz_load_and_check(data + 1, size - 1);
    fuzz_remove("vocab.txt");
    fuzz_remove("tokenizer_config.json");
    return 0;
}
