/* fuzz_tokenizer_json.c: libFuzzer target for loading tokenizer.json
 * (runtime/tokenizer_load.c): the input is the folder's tokenizer.json; see
 * fuzz_tokenizer_load.h for what a loaded tokenizer must satisfy.
 *   make fuzz && nice build-fuzz/fuzz_tokenizer_json -runs=10000000 fuzz/corpus/fuzz_tokenizer_json
 */
#include "fuzz_tokenizer_load.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_make_dir();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write("tokenizer.json", data, size);
    fuzz_load_and_check(data, size);
    fuzz_remove("tokenizer.json");
    return 0;
}
