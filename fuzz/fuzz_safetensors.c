/* fuzz_safetensors.c: libFuzzer target for the safetensors header parser and
 * the dtype conversions (runtime/safetensors.c). Any input must give either a
 * validated file whose every tensor converts without touching memory outside
 * the buffer, or an error message; never a crash, leak or overread. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A private copy sized exactly, so ASan sees reads past the end. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    mb_error err;
    mb_safetensors *st = mb_safetensors_parse(buf, size, &err);
    if (st) {
        for (int i = 0; i < st->n_tensors; i++) {
            const mb_st_tensor *t = &st->tensors[i];
            if (t->numel > (1 << 20)) continue;
            void *out = malloc((size_t)t->numel * 4 + 4);
            if (!out) continue;
            if (mb_st_dtype_is_float(t->dtype)) mb_safetensors_read_f32(t, out, &err);
            else mb_safetensors_read_i32(t, out, &err);
            free(out);
            (void)mb_safetensors_find(st, t->name);
        }
        (void)mb_safetensors_meta(st, "format");
        mb_safetensors_close(st);
    }
    free(buf);
    return 0;
}
