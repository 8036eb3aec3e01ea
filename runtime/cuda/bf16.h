/* bf16.h: float32 <-> bfloat16 (the upper 16 bits of a float32), host and device.
 *
 * Rounding is to nearest, ties to even, as __float2bfloat16_rn and PyTorch's
 * .to(torch.bfloat16); NaN stays a (quiet) NaN, +-Inf stay infinite, and
 * values beyond the largest finite bf16 round to infinity. The bf16 mode of
 * the CUDA backend converts weights and activations for the matrix products
 * with this function; accumulation, master weights and the loss stay fp32.
 */
#ifndef MB_CUDA_BF16_H
#define MB_CUDA_BF16_H

#include <stdint.h>
#include <string.h>

#include "hd.h"

MB_HD uint32_t mb_f32_bits(float f) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
#endif
}

MB_HD float mb_bits_f32(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

MB_HD uint16_t mb_f32_to_bf16(float f) {
    uint32_t u = mb_f32_bits(f);
    if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu)) /* NaN: keep sign, force quiet */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7FFFu + ((u >> 16) & 1u); /* round half to even on the dropped 16 bits */
    return (uint16_t)(u >> 16);
}

MB_HD float mb_bf16_to_f32(uint16_t h) { return mb_bits_f32((uint32_t)h << 16); }

#endif
