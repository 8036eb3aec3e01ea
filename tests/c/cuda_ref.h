/* cuda_ref.h: host reference implementations of the CUDA kernel launchers (runtime/cuda/kernels.h).
 *
 * Plain loops written from the contracts in kernels.h (not from kernels.cu),
 * shared by two tests:
 *  - test_cuda_emul.c defines MB_REF_NAME(n) as n: these loops ARE the
 *    launchers of an emulated device, under which gpu_model.c runs unchanged;
 *  - test_cuda_kernels.c defines it as ref_##n: each real kernel on a GPU is
 *    compared with its loop.
 * Sums accumulate in the order the contract states; LayerNorm statistics in
 * double (as runtime/layers.c), so the references are at least as accurate
 * as the kernels.
 */
#ifndef MB_TEST_CUDA_REF_H
#define MB_TEST_CUDA_REF_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../../runtime/cuda/adamw.h"
#include "../../runtime/cuda/bf16.h"
#include "../../runtime/cuda/kernels.h"
#include "../../runtime/cuda/philox.h"

#ifndef MB_REF_NAME
#define MB_REF_NAME(n) ref_##n
#endif
#ifndef MB_REF_LINK
#define MB_REF_LINK static __attribute__((unused))
#endif

static float gelu_h(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678f)); }
static float gelu_g(float x) { return 0.5f * (1.0f + erff(x * 0.70710678f)) + x * 0.39894228f * expf(-0.5f * x * x); }
static float actf(float x, int act) { return act == MB_K_RELU ? (x > 0 ? x : 0) : gelu_h(x); }
static float actg(float x, int act) { return act == MB_K_RELU ? (x > 0 ? 1.0f : 0.0f) : gelu_g(x); }

MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_embedding_forward)(float *out, const int32_t *ids, const float *wte, const float *wpe, int B, int T,
                                   int C, cudaStream_t s) {
    for (long bt = 0; bt < (long)B * T; bt++)
        for (int c = 0; c < C; c++) out[bt * C + c] = wte[(long)ids[bt] * C + c] + wpe[(bt % T) * C + c];
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_embedding_backward_rows)(float *dwte, const float *dout, const int32_t *rows, const int32_t *start,
                                         const int32_t *pos, int n_rows, int C, cudaStream_t s) {
    for (int r = 0; r < n_rows; r++)
        for (int c = 0; c < C; c++) {
            float acc = 0;
            for (int k = start[r]; k < start[r + 1]; k++) acc += dout[(long)pos[k] * C + c];
            dwte[(long)rows[r] * C + c] += acc;
        }
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_embedding_backward_pos)(float *dwpe, const float *dout, int B, int T, int C, cudaStream_t s) {
    for (long i = 0; i < (long)T * C; i++) {
        float acc = 0;
        for (int b = 0; b < B; b++) acc += dout[(long)b * T * C + i];
        dwpe[i] += acc;
    }
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_residual_layernorm_forward)(float *out, float *h, float *mean, float *rstd, const float *a,
                                            const float *r, const float *w, const float *b, int N, int C, float eps,
                                            cudaStream_t s) {
    for (long n = 0; n < N; n++) {
        double sum = 0, var = 0;
        for (int c = 0; c < C; c++) {
            float x = a[n * C + c] + (r ? r[n * C + c] : 0.0f);
            if (r) h[n * C + c] = x;
            sum += x;
        }
        float mu = (float)(sum / C);
        for (int c = 0; c < C; c++) {
            double d = (r ? h[n * C + c] : a[n * C + c]) - mu;
            var += d * d;
        }
        float rs = (float)(1.0 / sqrt(var / C + eps));
        for (int c = 0; c < C; c++) out[n * C + c] = ((r ? h[n * C + c] : a[n * C + c]) - mu) * rs * w[c] + b[c];
        mean[n] = mu;
        rstd[n] = rs;
    }
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_layernorm_backward_dx)(float *dinp, const float *dout, const float *inp, const float *w,
                                       const float *mean, const float *rstd, int N, int C, int accumulate,
                                       cudaStream_t s) {
    for (long n = 0; n < N; n++) {
        double s1 = 0, s2 = 0;
        for (int c = 0; c < C; c++) {
            float xhat = (inp[n * C + c] - mean[n]) * rstd[n], dn = dout[n * C + c] * w[c];
            s1 += dn;
            s2 += (double)dn * xhat;
        }
        float m1 = (float)(s1 / C), m2 = (float)(s2 / C);
        for (int c = 0; c < C; c++) {
            float xhat = (inp[n * C + c] - mean[n]) * rstd[n];
            float v = (dout[n * C + c] * w[c] - m1 - xhat * m2) * rstd[n];
            dinp[n * C + c] = accumulate ? dinp[n * C + c] + v : v;
        }
    }
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_layernorm_backward_dwdb)(float *dw, float *db, const float *dout, const float *inp, const float *mean,
                                         const float *rstd, int N, int C, cudaStream_t s) {
    for (int c = 0; c < C; c++) {
        float aw = 0, ab = 0;
        for (long n = 0; n < N; n++) {
            aw += dout[n * C + c] * ((inp[n * C + c] - mean[n]) * rstd[n]);
            ab += dout[n * C + c];
        }
        dw[c] += aw;
        db[c] += ab;
    }
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_bias_add)(float *out, const float *b, int N, int OC, cudaStream_t s) {
    for (long i = 0; i < (long)N * OC; i++) out[i] += b[i % OC];
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_bias_act)(float *h, float *g, const float *b, int N, int F, int act, cudaStream_t s) {
    for (long i = 0; i < (long)N * F; i++) {
        h[i] += b[i % F];
        g[i] = actf(h[i], act);
    }
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_act_forward)(float *out, const float *inp, long n, int act, cudaStream_t s) {
    for (long i = 0; i < n; i++) out[i] = actf(inp[i], act);
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_act_backward)(float *dinp, const float *inp, const float *dout, long n, int act, cudaStream_t s) {
    for (long i = 0; i < n; i++) dinp[i] = dout[i] * actg(inp[i], act);
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_colsum)(float *db, const float *dout, int N, int OC, cudaStream_t s) {
    for (int c = 0; c < OC; c++) {
        float acc = 0;
        for (long n = 0; n < N; n++) acc += dout[n * OC + c];
        db[c] += acc;
    }
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_split_heads)(float *out, const float *inp, int B, int T, int H, int hs, cudaStream_t s) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                for (int d = 0; d < hs; d++)
                    out[(((long)b * H + h) * T + t) * hs + d] = inp[((long)b * T + t) * H * hs + h * hs + d];
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_merge_heads)(float *out, const float *inp, int B, int T, int H, int hs, cudaStream_t s) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                for (int d = 0; d < hs; d++)
                    out[((long)b * T + t) * H * hs + h * hs + d] = inp[(((long)b * H + h) * T + t) * hs + d];
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_masked_softmax)(float *probs, const float *scores, const int32_t *mask, int B, int H, int T,
                                cudaStream_t s) {
    for (long row = 0; row < (long)B * H * T; row++) {
        long b = row / ((long)H * T);
        float mx = -FLT_MAX, sum = 0;
        float x[4096];
        for (int j = 0; j < T; j++) {
            x[j] = (mask && mask[b * T + j] == 0) ? -FLT_MAX : scores[row * T + j];
            if (x[j] > mx) mx = x[j];
        }
        for (int j = 0; j < T; j++) sum += (x[j] = expf(x[j] - mx));
        for (int j = 0; j < T; j++) probs[row * T + j] = x[j] / sum;
    }
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_softmax_backward)(float *ds, const float *dp, const float *p, long rows, int T, cudaStream_t s) {
    for (long r = 0; r < rows; r++) {
        float dot = 0;
        for (int j = 0; j < T; j++) dot += dp[r * T + j] * p[r * T + j];
        for (int j = 0; j < T; j++) ds[r * T + j] = p[r * T + j] * (dp[r * T + j] - dot);
    }
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_dropout)(float *out, const float *inp, long n, float p, uint64_t seed, uint64_t offset,
                         cudaStream_t s) {
#ifdef MB_REF_DROPOUT_HOOK
    MB_REF_DROPOUT_HOOK(offset, n);
#endif
    for (long i = 0; i < n; i++) out[i] = mb_philox_keep(seed, offset, (uint64_t)i, p) ? inp[i] / (1.0f - p) : 0.0f;
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_gather_first)(float *cls, const float *x, int B, int T, int D, cudaStream_t s) {
    for (int b = 0; b < B; b++) memcpy(cls + (long)b * D, x + (long)b * T * D, (size_t)D * 4);
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_scatter_first)(float *dx, const float *dcls, int B, int T, int D, cudaStream_t s) {
    for (int b = 0; b < B; b++) memcpy(dx + (long)b * T * D, dcls + (long)b * D, (size_t)D * 4);
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_crossentropy)(float *per_ex, float *probs, float *dlogits, const float *logits, const int32_t *labels,
                              int B, int L, float scale, cudaStream_t s) {
    for (int b = 0; b < B; b++) {
        const float *z = logits + (long)b * L;
        float mx = z[0], sum = 0;
        for (int j = 1; j < L; j++) mx = z[j] > mx ? z[j] : mx;
        for (int j = 0; j < L; j++) sum += expf(z[j] - mx);
        float lse = mx + logf(sum);
        for (int j = 0; j < L; j++) probs[b * L + j] = expf(z[j] - lse);
        per_ex[b] = labels[b] == -100 ? 0.0f : lse - z[labels[b]];
        for (int j = 0; j < L; j++)
            dlogits[b * L + j] = labels[b] == -100 ? 0.0f : scale * (probs[b * L + j] - (j == labels[b]));
    }
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_to_bf16)(uint16_t *out, const float *inp, long n, cudaStream_t s) {
    for (long i = 0; i < n; i++) out[i] = mb_f32_to_bf16(inp[i]);
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_grad_sumsq)(double *total, double *partial, const mb_k_tensor *t, int n,
                                                     cudaStream_t s) {
    double acc = 0;
    for (int i = 0; i < n; i++)
        for (size_t e = 0; e < t[i].numel; e++) acc += (double)t[i].grad[e] * t[i].grad[e];
    *total = acc;
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_scale_tensors)(const mb_k_tensor *t, int n, size_t max_numel, float factor,
                                                        cudaStream_t s) {
    for (int i = 0; i < n; i++)
        for (size_t e = 0; e < t[i].numel; e++) t[i].grad[e] *= factor;
    return cudaSuccess;
}
MB_REF_LINK cudaError_t MB_REF_NAME(mb_k_adamw)(float *m, float *v, const mb_k_tensor *t, int n, size_t max_numel,
                                                float lr, float b1, float b2, float eps, float bc1, float bc2s,
                                                float clip, cudaStream_t s) {
    for (int i = 0; i < n; i++)
        for (size_t e = 0; e < t[i].numel; e++)
            mb_adamw_update(&t[i].value[e], &m[t[i].state + e], &v[t[i].state + e], t[i].grad[e] * clip, lr, b1, b2,
                            eps, t[i].weight_decay, bc1, bc2s);
    return cudaSuccess;
}

#endif
