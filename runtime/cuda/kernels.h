/* kernels.h: launchers of the CUDA kernels (runtime/cuda/kernels.cu), callable from C.
 *
 * Every launcher enqueues on `stream` and returns cudaGetLastError() after
 * the launch, which the caller checks (CU_CHECK). Buffers are device
 * pointers, float32 row-major unless said otherwise; shape comments as in
 * runtime/layers.h (N rows = B*T, C channels, H heads, hs = C/H).
 * Conventions mirror layers.h: parameter gradients accumulate (+=), input
 * gradients are written unless a flag says accumulate. No kernel uses
 * floating-point atomics: every reduction adds in a fixed order, so results
 * are bit-identical from run to run on the same GPU.
 */
#ifndef MB_CUDA_KERNELS_H
#define MB_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { MB_K_GELU = 0, MB_K_RELU = 1 };

/* One parameter tensor as the optimizer kernels see it: its weights and
   gradient anywhere in device memory (a model may hold several blocks), and
   the offset of its moments in the optimizer's m and v, which are laid out
   as runtime/optim.c lays them out (trainable tensors in list order). */
typedef struct mb_k_tensor {
    float *value, *grad; /* device [numel] each */
    size_t state, numel;
    float weight_decay; /* 0 for no_decay tensors */
} mb_k_tensor;

/* out[B,T,C] = wte[ids] + wpe[t] */
cudaError_t mb_k_embedding_forward(float *out, const int32_t *ids, const float *wte, const float *wpe, int B, int T,
                                   int C, cudaStream_t stream);
/* dwte[rows[r]] += sum over pos[start[r]..start[r+1]) of dout[pos] (embed_plan.h): one block per row. */
cudaError_t mb_k_embedding_backward_rows(float *dwte, const float *dout, const int32_t *rows, const int32_t *start,
                                         const int32_t *pos, int n_rows, int C, cudaStream_t stream);
/* dwpe[t] += sum_b dout[b,t] (b ascending). */
cudaError_t mb_k_embedding_backward_pos(float *dwpe, const float *dout, int B, int T, int C, cudaStream_t stream);

/* h = a + r (r may be NULL: h = a, not written); out = LN(h) * w + b; mean, rstd [N] kept. */
cudaError_t mb_k_residual_layernorm_forward(float *out, float *h, float *mean, float *rstd, const float *a,
                                            const float *r, const float *w, const float *b, int N, int C, float eps,
                                            cudaStream_t stream);
/* dinp[N,C] written (or added to, when accumulate). */
cudaError_t mb_k_layernorm_backward_dx(float *dinp, const float *dout, const float *inp, const float *w,
                                       const float *mean, const float *rstd, int N, int C, int accumulate,
                                       cudaStream_t stream);
/* dw[C] += sum_n dout * xhat; db[C] += sum_n dout (fixed order). */
cudaError_t mb_k_layernorm_backward_dwdb(float *dw, float *db, const float *dout, const float *inp, const float *mean,
                                         const float *rstd, int N, int C, cudaStream_t stream);

/* out[N,OC] += b[OC] */
cudaError_t mb_k_bias_add(float *out, const float *b, int N, int OC, cudaStream_t stream);
/* h[N,F] += b (pre-activation, kept), g = act(h). */
cudaError_t mb_k_bias_act(float *h, float *g, const float *b, int N, int F, int act, cudaStream_t stream);
/* out = act(inp); dinp = dout * act'(inp) (in place allowed). */
cudaError_t mb_k_act_forward(float *out, const float *inp, long n, int act, cudaStream_t stream);
cudaError_t mb_k_act_backward(float *dinp, const float *inp, const float *dout, long n, int act, cudaStream_t stream);
/* db[OC] += sum_n dout[n, :] (fixed order). */
cudaError_t mb_k_colsum(float *db, const float *dout, int N, int OC, cudaStream_t stream);

/* [B,T,H*hs] <-> [B,H,T,hs] */
cudaError_t mb_k_split_heads(float *out, const float *inp, int B, int T, int H, int hs, cudaStream_t stream);
cudaError_t mb_k_merge_heads(float *out, const float *inp, int B, int T, int H, int hs, cudaStream_t stream);
/* probs[B,H,T,T] = softmax over keys of scores (already scaled), keys with
   mask[b,j] == 0 at -FLT_MAX (as runtime/layers.c); in place allowed. mask may be NULL. */
cudaError_t mb_k_masked_softmax(float *probs, const float *scores, const int32_t *mask, int B, int H, int T,
                                cudaStream_t stream);
/* dscores = probs * (dprobs - sum_j dprobs*probs) per row of T; in place allowed. */
cudaError_t mb_k_softmax_backward(float *dscores, const float *dprobs, const float *probs, long rows, int T,
                                  cudaStream_t stream);

/* out = inp * keep / (1-p), keep = mb_philox_keep(seed, offset, i, p); in place allowed.
   The same call with the same (seed, offset) is the backward. */
cudaError_t mb_k_dropout(float *out, const float *inp, long n, float p, uint64_t seed, uint64_t offset,
                         cudaStream_t stream);

/* cls[B,D] = x[:,0,:]; dx[:,0,:] = dcls (the rest untouched). */
cudaError_t mb_k_gather_first(float *cls, const float *x, int B, int T, int D, cudaStream_t stream);
cudaError_t mb_k_scatter_first(float *dx, const float *dcls, int B, int T, int D, cudaStream_t stream);

/* Softmax cross-entropy per row (fp32): per_ex[B] (0 for label -100),
   probs[B,L], dlogits[B,L] = scale * (probs - onehot) (0 for ignored rows).
   probs may be dlogits (each element is read right after it is written). */
cudaError_t mb_k_crossentropy(float *per_ex, float *probs, float *dlogits, const float *logits, const int32_t *labels,
                              int B, int L, float scale, cudaStream_t stream);

/* bf16 (uint16 bit patterns, round to nearest even: bf16.h) of n floats. */
cudaError_t mb_k_to_bf16(uint16_t *out, const float *inp, long n, cudaStream_t stream);

/* Sum of squares of the gradients of tensors[0..n_tensors) (a device table):
   partial[n_tensors * MB_K_NORM_BLOCKS] then total[0] (double), both in a fixed order. */
#define MB_K_NORM_BLOCKS 64
cudaError_t mb_k_grad_sumsq(double *total, double *partial, const mb_k_tensor *tensors, int n_tensors,
                            cudaStream_t stream);
/* tensors[i].grad[e] *= factor for every tensor (gradient clipping); max_numel: the largest numel. */
cudaError_t mb_k_scale_tensors(const mb_k_tensor *tensors, int n_tensors, size_t max_numel, float factor,
                               cudaStream_t stream);
/* One AdamW step (adamw.h) over tensors[0..n_tensors) with gradients scaled
   by clip; moments m[state + e], v[state + e]. */
cudaError_t mb_k_adamw(float *m, float *v, const mb_k_tensor *tensors, int n_tensors, size_t max_numel, float lr,
                       float beta1, float beta2, float eps, float bc1, float bc2_sqrt, float clip, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
