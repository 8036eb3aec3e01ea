/* precision.c: names of the CUDA precision modes (host logic, built with or without CUDA). */
#include <string.h>

#include "../cuda.h"

const char *mb_cuda_precision_name(mb_cuda_precision p) {
    switch (p) {
    case MB_CUDA_FP32: return "fp32";
    case MB_CUDA_TF32: return "tf32";
    case MB_CUDA_BF16: return "bf16";
    }
    return "?";
}

int mb_cuda_precision_parse(const char *name) {
    if (!name) return -1;
    if (strcmp(name, "fp32") == 0) return MB_CUDA_FP32;
    if (strcmp(name, "tf32") == 0) return MB_CUDA_TF32;
    if (strcmp(name, "bf16") == 0) return MB_CUDA_BF16;
    return -1;
}
