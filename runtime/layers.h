/* layers.h: the transformer layers as plain forward/backward function pairs.
 *
 * In the manner of karpathy/llm.c: every function takes raw float32 buffers
 * (row-major, contiguous) and the sizes; a shape comment names each buffer.
 * Matrix products go through cblas_sgemm, or oneDNN's bf16 products while a
 * model runs at precision "bf16" (bf16.h); element-wise loops are threaded
 * with OpenMP (mb_threads()). Nothing here allocates: attention takes its
 * scratch from the caller, and the padded-batch form builds its table of
 * sequences on the stack.
 *
 * Backward conventions (so the model can chain layers without extra copies):
 *  - parameter gradients (dw, db) are ACCUMULATED (+=), as in PyTorch;
 *  - linear_backward accumulates into dinp or writes it (a flag: residual
 *    branches share one buffer), dinp may be NULL to skip it;
 *  - layernorm, attention, gelu, relu and dropout backward WRITE dinp (=);
 *    the element-wise ones may run in place (dinp == dout).
 * Sizes: N rows (N = B*T), C channels, B batch, T sequence, NH heads.
 */
#ifndef MB_LAYERS_H
#define MB_LAYERS_H

#include <stdint.h>

#include "rng.h"

/* out[B,T,C] = wte[ids[b,t]] + wpe[t]. ids are checked by the caller. */
void embedding_forward(float *out, const int32_t *ids, const float *wte, const float *wpe, int B, int T, int C);
/* dwte[ids] += dout (skipping padding_idx rows, as nn.Embedding(padding_idx));
   dwpe[t] += sum_b dout[b,t] (dwpe may be NULL: fixed sinusoidal positions). */
void embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *ids, int B, int T, int C,
                        int padding_idx);

/* The same on N rows with explicit positions: out[r] = wte[ids[r]] + wpe[pos[r]]
   (a packed batch: padded rows left out). */
void embedding_forward_rows(float *out, const int32_t *ids, const int32_t *pos, const float *wte, const float *wpe,
                            int N, int C);
void embedding_backward_rows(float *dwte, float *dwpe, const float *dout, const int32_t *ids, const int32_t *pos,
                             int N, int C, int padding_idx);

/* out[N,C] = (inp - mean) * rstd * w + b per row; mean[N], rstd[N] kept for backward. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                       int N, int C, float eps);
/* Fused residual + LayerNorm, one sweep per row: h[N,C] = (drop ?
   dropout(h + bias) : h + bias) + res (kept for backward), then out, mean,
   rstd as layernorm_forward of h. drop: [N,C] keep mask or NULL. */
void add_layernorm_forward(float *h, float *out, float *mean, float *rstd, const float *res, const float *bias,
                           const uint8_t *drop, float p, const float *w, const float *b, int N, int C, float eps);
/* out = the forward's output again from its input and kept mean/rstd,
   bit for bit (activations recomputed in backward instead of kept). */
void layernorm_recompute(float *out, const float *inp, const float *mean, const float *rstd, const float *w,
                         const float *b, int N, int C);
/* dinp[N,C] = (written); dw[C], db[C] += */
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                        const float *mean, const float *rstd, int N, int C);

/* out[N,OC] = inp[N,IC] @ w[OC,IC]^T + b[OC] (b may be NULL). */
void linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int IC, int OC);
/* dinp[N,IC] (+)= dout @ w: accumulated when accumulate, else written (dinp
   may be NULL); dw[OC,IC] += dout^T @ inp (dw may be NULL); db[OC] +=
   colsum(dout) (may be NULL). */
void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                     int N, int IC, int OC, int accumulate);

/* Multi-head self-attention core on projected q, k, v [B,T,C] (head h is
   columns h*hs .. h*hs+hs-1, hs = C/NH):
     probs[B,NH,T,T] = softmax(q k^T / sqrt(hs), keys with mask[b,j] == 0 set
                       to -FLT_MAX) (kept for backward, before dropout);
     ctx[B,T,C] = dropout(probs) v.
   drop_mask[B,NH,T,T] (1 keep, 0 drop) is used when p > 0 (may be NULL when
   p == 0). scratch: T*T floats per thread (attention_scratch_floats). */
void attention_forward(float *ctx, float *probs, const float *q, const float *k, const float *v,
                       const int32_t *mask, const uint8_t *drop_mask, float p, int B, int T, int C, int NH,
                       float *scratch);
/* dq, dk, dv [B,T,C] written. scratch: 2*T*T floats per thread. */
void attention_backward(float *dq, float *dk, float *dv, const float *dctx, const float *probs,
                        const float *q, const float *k, const float *v, const int32_t *mask,
                        const uint8_t *drop_mask, float p, int B, int T, int C, int NH, float *scratch);
/* Sequences of a batch as attention sees them. Sequence b has len[b] rows
   (its queries and keys) starting at row row[b] of q, k, v, ctx ([rows,C]);
   its probabilities (and dropout keep mask) for head h are the len x len
   block at prob[b] + h*len*len. key_mask is NULL (every key counts) or
   [B,mask_T] (keys j with key_mask[b*mask_T + j] == 0 get probability 0).
   A padded batch is len = T, row = b*T, prob = b*NH*T*T with its mask (what
   attention_forward builds); a packed batch leaves the padded rows out:
   len = real length, rows back to back, no key mask. max_len sizes the
   scratch (attention_scratch_floats(max_len)). */
typedef struct attn_seqs {
    int B, max_len;
    const int *len;
    const long *row, *prob;
    const int32_t *key_mask;
    int mask_T;
} attn_seqs;
void attention_forward_seqs(float *ctx, float *probs, const float *q, const float *k, const float *v,
                            const attn_seqs *s, const uint8_t *drop_mask, float p, int C, int NH, float *scratch);
/* ctx = dropout(probs) v again (the forward's second product, bit for bit). */
void attention_context_seqs(float *ctx, const float *probs, const float *v, const attn_seqs *s,
                            const uint8_t *drop_mask, float p, int C, int NH, float *scratch);
void attention_backward_seqs(float *dq, float *dk, float *dv, const float *dctx, const float *probs,
                             const float *q, const float *k, const float *v, const attn_seqs *s,
                             const uint8_t *drop_mask, float p, int C, int NH, float *scratch);
/* The same with one query per sequence, its first token ([CLS]): the last
   layer when only [CLS] is read. q, ctx, dq: [B,C] (row b = sequence b);
   k, v, dk, dv: the rows of s (every key); probs and drop_mask: NH*len[b]
   values for sequence b from qprob[b] (head h at qprob[b] + h*len[b]).
   No scratch: the dropped probabilities are formed on the fly. */
void attention_cls_forward(float *ctx, float *probs, const float *q, const float *k, const float *v,
                           const attn_seqs *s, const long *qprob, const uint8_t *drop_mask, float p, int C, int NH);
void attention_cls_context(float *ctx, const float *probs, const float *v, const attn_seqs *s, const long *qprob,
                           const uint8_t *drop_mask, float p, int C, int NH);
void attention_cls_backward(float *dq, float *dk, float *dv, const float *dctx, const float *probs, const float *q,
                            const float *k, const float *v, const attn_seqs *s, const long *qprob,
                            const uint8_t *drop_mask, float p, int C, int NH);
/* Floats of scratch the attention functions need for B*NH heads of length T. */
long attention_scratch_floats(int T);

/* Exact erf GELU: x/2 (1 + erf(x/sqrt 2)). */
void gelu_forward(float *out, const float *inp, long n);
void gelu_backward(float *dinp, const float *inp, const float *dout, long n);
/* Fused bias + GELU: h[N,C] += bias (kept), out = gelu(h), one sweep. */
void bias_gelu_forward(float *h, float *out, const float *bias, int N, int C);
void relu_forward(float *out, const float *inp, long n);
/* Uses the forward OUTPUT (or input: same sign) to gate. */
void relu_backward(float *dinp, const float *out, const float *dout, long n);

/* Draw keep masks (1 with probability 1-p) from the run's RNG, serially so
   the stream does not depend on the thread count. */
void dropout_mask(uint8_t *mask, long n, float p, mb_rng *rng);
/* out = inp * mask / (1-p); in place allowed. */
void dropout_apply(float *out, const float *inp, const uint8_t *mask, float p, long n);

/* Softmax cross-entropy over rows of logits[B,L] with int labels (-100 is
   ignored, as HF's ignore_index). losses[B] per example (0 for ignored),
   probs[B,L] kept; returns the mean over counted rows in *mean and their
   number in *count. */
void crossentropy_forward(float *losses, float *probs, const float *logits, const int32_t *labels, int B, int L,
                          double *mean, int *count);
/* dlogits[B,L] = scale * (probs - onehot) for counted rows, 0 for ignored
   (scale = dloss / count). Written. */
void crossentropy_backward(float *dlogits, const float *probs, const int32_t *labels, int B, int L, float scale);

#endif
