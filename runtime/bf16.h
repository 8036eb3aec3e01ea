/* bf16.h: bfloat16 matrix products on the CPU (the model's precision "bf16").
 *
 * bf16 here means what PyTorch's torch.autocast("cpu", dtype=torch.bfloat16)
 * does to a linear layer: both operands of the matrix product are rounded to
 * bfloat16 (round to nearest even), the products are accumulated in fp32 and
 * the result is fp32. Master weights, gradients, the optimizer, LayerNorm,
 * softmax, GELU and the loss stay fp32; so do the attention products
 * (q k^T, P v: about 3% of DistilBERT's work at 64 tokens).
 *
 * Kernels (mb_bf16_kernel):
 *  - ONEDNN: oneDNN's bf16 matmul (libdnnl), used where the CPU has
 *    AVX-512 BF16 and a self-check against EMULATED passes at first use;
 *  - EMULATED: the bf16 operands widened to fp32 and multiplied by
 *    cblas_sgemm: the same numbers as a bf16 kernel (a product of two bf16
 *    values is exact in fp32) but slower than fp32. Chosen only by the
 *    environment (MOONBERT_BF16=emulate), for tests and accuracy studies on
 *    CPUs without AVX-512 BF16;
 *  - NONE: no bf16 kernel here; the model falls back to fp32 with a notice.
 *
 * The products run from the main thread (they thread inside); the scratch
 * buffers and the active weight table below are per process.
 */
#ifndef MB_BF16_H
#define MB_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef enum mb_bf16_kernel { MB_BF16_NONE = 0, MB_BF16_ONEDNN = 1, MB_BF16_EMULATED = 2 } mb_bf16_kernel;

/* float -> bf16 bits, round to nearest even (NaN stays NaN). */
static inline uint16_t mb_f32_to_bf16(float x) {
    union { float f; uint32_t u; } v = {x};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
static inline float mb_bf16_bits_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}
/* dst[i] = bf16(src[i]) for i < n (threaded). */
void mb_f32_to_bf16_n(uint16_t *dst, const float *src, long n);

/* The kernel this process uses (decided once: environment, CPU, oneDNN
   self-check); *why (may be NULL) gets a one-line reason when NONE. */
mb_bf16_kernel mb_bf16_kernel_get(const char **why);
const char *mb_bf16_kernel_name(mb_bf16_kernel k); /* "onednn", "emulated", "none" */
/* Choose again as MOONBERT_BF16 would: "auto" (the CPU decides), "emulate",
   "off"; MB_ERR_ARG for anything else. Models already set to bf16 keep
   their precision; the kernel applies to the next product. */
mb_status mb_bf16_kernel_set(const char *name, mb_error *err);
/* Whether the CPU has AVX-512 BF16 (vdpbf16ps). */
int mb_bf16_cpu_has(void);

/* C[m,n] = alpha op(A)[m,k] op(B)[k,n] + beta C, row-major, A and B bf16, C
   fp32, with the process's kernel (EMULATED when it is NONE). */
void mb_gemm_bf16(int trans_a, int trans_b, int m, int n, int k, float alpha, const uint16_t *A, int lda,
                  const uint16_t *B, int ldb, float beta, float *C, int ldc);
/* The same product through one named kernel (tests, the bench's ceiling);
   MB_ERR_UNSUPPORTED where that kernel is unavailable. */
mb_status mb_gemm_bf16_with(mb_bf16_kernel kernel, int trans_a, int trans_b, int m, int n, int k, float alpha,
                            const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta, float *C, int ldc,
                            mb_error *err);

/* A model's weights in bf16: one copy of the float range [base, base+n),
   converted again by mb_bf16_weights_sync when marked stale (after each
   optimizer step: the model marks it in backward and whenever its parameter
   block is handed out for writing). stale_from: with stale, only values
   from that index on changed (a frozen encoder: the head alone). */
typedef struct mb_bf16_weights {
    const float *base;
    size_t n, cap, stale_from;
    uint16_t *copy;
    int stale;
} mb_bf16_weights;
mb_status mb_bf16_weights_sync(mb_bf16_weights *w, const float *base, size_t n, mb_error *err);
void mb_bf16_weights_free(mb_bf16_weights *w);

/* While a weight table is active (between begin and end), linear_forward
   and linear_backward (layers.c) run their products in bf16: inputs and
   output gradients are converted at the product's entry (one pass over the
   operand), weights read from the table (a weight outside it is converted
   on the spot). NULL ends it. */
void mb_bf16_begin(const mb_bf16_weights *w);
void mb_bf16_end(void);
int mb_bf16_active(void);

/* The bf16 linear layer products (layers.c calls these while active):
   out[N,OC] = inp[N,IC] w[OC,IC]^T + beta out;
   dinp[N,IC] = dout[N,OC] w + beta dinp (dinp may be NULL);
   dw[OC,IC] += dout^T inp (dw may be NULL). */
void mb_bf16_linear_forward(float *out, const float *inp, const float *w, int N, int IC, int OC, float beta);
void mb_bf16_linear_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int N,
                             int IC, int OC, float beta_dinp);

/* Frees the process's scratch buffers and oneDNN primitives (tests, leak checks). */
void mb_bf16_release(void);

#endif
