// kernels.cu: the CUDA kernels of the DistilBERT training step (launchers in kernels.h).
//
// Everything but the matrix products (cuBLAS, gpu_model.c): embeddings,
// residual + LayerNorm, bias + GELU/ReLU, head split/merge, masked softmax,
// Philox dropout, cross-entropy, gradient norm and fused AdamW. Reductions
// are shared-memory trees or per-thread loops in a fixed order (no float
// atomics), so a step is bit-identical from run to run on one GPU. The
// arithmetic shared with the host (Philox, bf16 rounding, the AdamW update)
// lives in philox.h, bf16.h and adamw.h and is tested on the host.
// Limits: row kernels take up to 2^31 rows; C, T and L fit an int.
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "adamw.h"
#include "bf16.h"
#include "kernels.h"
#include "launch.h"
#include "philox.h"

namespace {

const int EW_BLOCK = 256;       // element-wise kernels
const int EW_MAX_BLOCKS = 8192; // grid-stride beyond this
const int ROW_MAX_THREADS = 256;

int ew_grid(long n) { return mb_grid_1d(n, EW_BLOCK, EW_MAX_BLOCKS); }

int row_threads(int C) {
    int t = mb_block_for_row(C);
    return t > ROW_MAX_THREADS ? ROW_MAX_THREADS : t;
}

// The one block reduction: sh holds blockDim.x values of T, blockDim.x is a
// power of two, and the tree adds (or takes the max) in a fixed order, so the
// result repeats bit for bit. Every thread gets the result.
struct SumOp {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <typename T, typename Op> __device__ T block_reduce(T v, T *sh, Op op) {
    int t = threadIdx.x;
    sh[t] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) sh[t] = op(sh[t], sh[t + s]);
        __syncthreads();
    }
    T r = sh[0];
    __syncthreads();
    return r;
}

__device__ float block_sum(float v, float *sh) { return block_reduce(v, sh, SumOp()); }
__device__ float block_max(float v, float *sh) { return block_reduce(v, sh, MaxOp()); }
__device__ double block_sum_d(double v, double *sh) { return block_reduce(v, sh, SumOp()); }

__device__ float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
__device__ float gelu_grad(float x) {
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    return cdf + x * pdf;
}
__device__ float act_f(float x, int act) { return act == MB_K_RELU ? fmaxf(x, 0.0f) : gelu(x); }
__device__ float act_g(float x, int act) { return act == MB_K_RELU ? (x > 0.0f ? 1.0f : 0.0f) : gelu_grad(x); }

// ---- embeddings ----------------------------------------------------------------------

__global__ void embedding_forward_k(float *out, const int32_t *ids, const float *wte, const float *wpe, long BT, int T,
                                    int C) {
    long n = BT * C;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        long bt = i / C;
        int c = (int)(i % C), t = (int)(bt % T);
        out[i] = wte[(long)ids[bt] * C + c] + wpe[(long)t * C + c];
    }
}

__global__ void embedding_backward_rows_k(float *dwte, const float *dout, const int32_t *rows, const int32_t *start,
                                          const int32_t *pos, int C) {
    int r = blockIdx.x;
    float *g = dwte + (long)rows[r] * C;
    int k0 = start[r], k1 = start[r + 1];
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = 0.0f;
        for (int k = k0; k < k1; k++) acc += dout[(long)pos[k] * C + c];
        g[c] += acc;
    }
}

__global__ void embedding_backward_pos_k(float *dwpe, const float *dout, int B, int T, int C) {
    long n = (long)T * C;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        float acc = 0.0f;
        for (int b = 0; b < B; b++) acc += dout[(long)b * n + i];
        dwpe[i] += acc;
    }
}

// ---- LayerNorm -------------------------------------------------------------------------

__global__ void residual_layernorm_forward_k(float *out, float *h, float *mean, float *rstd, const float *a,
                                             const float *r, const float *w, const float *b, int C, float eps) {
    extern __shared__ float sh[];
    long row = blockIdx.x;
    const float *ar = a + row * C;
    const float *rr = r ? r + row * C : nullptr;
    float *hr = h + row * C;
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float x = ar[c];
        if (rr) {
            x += rr[c];
            hr[c] = x;
        }
        s += x;
    }
    float mu = block_sum(s, sh) / C;
    float s2 = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float d = (rr ? hr[c] : ar[c]) - mu;
        s2 += d * d;
    }
    float var = block_sum(s2, sh) / C;
    float rs = 1.0f / sqrtf(var + eps);
    float *o = out + row * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) o[c] = ((rr ? hr[c] : ar[c]) - mu) * rs * w[c] + b[c];
    if (threadIdx.x == 0) {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

__global__ void layernorm_backward_dx_k(float *dinp, const float *dout, const float *inp, const float *w,
                                        const float *mean, const float *rstd, int C, int accumulate) {
    extern __shared__ float sh[];
    long row = blockIdx.x;
    const float *x = inp + row * C, *d = dout + row * C;
    float m = mean[row], r = rstd[row];
    float s1 = 0.0f, s2 = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float xhat = (x[c] - m) * r, dn = d[c] * w[c];
        s1 += dn;
        s2 += dn * xhat;
    }
    float mean_dn = block_sum(s1, sh) / C;
    float mean_dn_xhat = block_sum(s2, sh) / C;
    float *g = dinp + row * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float xhat = (x[c] - m) * r;
        float v = (d[c] * w[c] - mean_dn - xhat * mean_dn_xhat) * r;
        g[c] = accumulate ? g[c] + v : v;
    }
}

// Column reductions: blocks of 32 columns x COL_ROWS row groups; each thread
// sums its rows in order, then row groups are added in order.
const int COL_ROWS = 16;

__global__ void layernorm_backward_dwdb_k(float *dw, float *db, const float *dout, const float *inp,
                                          const float *mean, const float *rstd, int N, int C) {
    __shared__ float sw[COL_ROWS][32], sb[COL_ROWS][32];
    int c = blockIdx.x * 32 + threadIdx.x;
    float aw = 0.0f, ab = 0.0f;
    if (c < C)
        for (int n = threadIdx.y; n < N; n += COL_ROWS) {
            float d = dout[(long)n * C + c];
            aw += d * ((inp[(long)n * C + c] - mean[n]) * rstd[n]);
            ab += d;
        }
    sw[threadIdx.y][threadIdx.x] = aw;
    sb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float tw = 0.0f, tb = 0.0f;
        for (int k = 0; k < COL_ROWS; k++) {
            tw += sw[k][threadIdx.x];
            tb += sb[k][threadIdx.x];
        }
        dw[c] += tw;
        db[c] += tb;
    }
}

__global__ void colsum_k(float *db, const float *dout, int N, int C) {
    __shared__ float sb[COL_ROWS][32];
    int c = blockIdx.x * 32 + threadIdx.x;
    float ab = 0.0f;
    if (c < C)
        for (int n = threadIdx.y; n < N; n += COL_ROWS) ab += dout[(long)n * C + c];
    sb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float tb = 0.0f;
        for (int k = 0; k < COL_ROWS; k++) tb += sb[k][threadIdx.x];
        db[c] += tb;
    }
}

// ---- element-wise ------------------------------------------------------------------------

__global__ void bias_add_k(float *out, const float *b, long n, int OC) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] += b[i % OC];
}

__global__ void bias_act_k(float *h, float *g, const float *b, long n, int F, int act) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        float x = h[i] + b[i % F];
        h[i] = x;
        g[i] = act_f(x, act);
    }
}

__global__ void act_forward_k(float *out, const float *inp, long n, int act) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] = act_f(inp[i], act);
}

__global__ void act_backward_k(float *dinp, const float *inp, const float *dout, long n, int act) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        dinp[i] = dout[i] * act_g(inp[i], act);
}

__global__ void dropout_k(float *out, const float *inp, long n, float p, uint64_t seed, uint64_t offset) {
    float s = 1.0f / (1.0f - p);
    // Each thread takes groups of four elements: one Philox call per group.
    long groups = (n + 3) / 4;
    for (long g = blockIdx.x * (long)blockDim.x + threadIdx.x; g < groups; g += (long)gridDim.x * blockDim.x) {
        uint32_t w[4];
        mb_philox_words(seed, offset, (uint64_t)g, w);
        for (int j = 0; j < 4; j++) {
            long i = 4 * g + j;
            if (i < n) out[i] = mb_philox_uniform(w[j]) >= p ? inp[i] * s : 0.0f;
        }
    }
}

__global__ void to_bf16_k(uint16_t *out, const float *inp, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] = mb_f32_to_bf16(inp[i]);
}

// ---- attention ------------------------------------------------------------------------------

__global__ void split_heads_k(float *out, const float *inp, int B, int T, int H, int hs) {
    long n = (long)B * T * H * hs;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        // out index (b, h, t, d)
        int d = (int)(i % hs);
        long r = i / hs;
        int t = (int)(r % T);
        r /= T;
        int h = (int)(r % H);
        long b = r / H;
        out[i] = inp[(b * T + t) * (long)(H * hs) + h * hs + d];
    }
}

__global__ void merge_heads_k(float *out, const float *inp, int B, int T, int H, int hs) {
    long n = (long)B * T * H * hs;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        // out index (b, t, h, d)
        int d = (int)(i % hs);
        long r = i / hs;
        int h = (int)(r % H);
        r /= H;
        int t = (int)(r % T);
        long b = r / T;
        out[i] = inp[((b * H + h) * T + t) * (long)hs + d];
    }
}

__global__ void masked_softmax_k(float *probs, const float *scores, const int32_t *mask, int H, int T) {
    extern __shared__ float sh[];
    long row = blockIdx.x; // (b, h, i)
    long b = row / ((long)H * T);
    const float *s = scores + row * T;
    float *p = probs + row * T;
    const int32_t *mr = mask ? mask + b * T : nullptr;
    float mx = -FLT_MAX;
    for (int j = threadIdx.x; j < T; j += blockDim.x) {
        float x = (mr && mr[j] == 0) ? -FLT_MAX : s[j];
        mx = fmaxf(mx, x);
    }
    mx = block_max(mx, sh);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < T; j += blockDim.x) {
        float x = (mr && mr[j] == 0) ? -FLT_MAX : s[j];
        float e = expf(x - mx);
        p[j] = e;
        sum += e;
    }
    float inv = 1.0f / block_sum(sum, sh);
    for (int j = threadIdx.x; j < T; j += blockDim.x) p[j] *= inv;
}

__global__ void softmax_backward_k(float *ds, const float *dp, const float *p, int T) {
    extern __shared__ float sh[];
    long row = blockIdx.x;
    const float *dr = dp + row * T, *pr = p + row * T;
    float dot = 0.0f;
    for (int j = threadIdx.x; j < T; j += blockDim.x) dot += dr[j] * pr[j];
    dot = block_sum(dot, sh);
    float *o = ds + row * T;
    for (int j = threadIdx.x; j < T; j += blockDim.x) o[j] = pr[j] * (dr[j] - dot);
}

// ---- head and loss -----------------------------------------------------------------------------

__global__ void gather_first_k(float *cls, const float *x, int B, int T, int D) {
    long n = (long)B * D;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        cls[i] = x[(i / D) * T * D + i % D];
}

__global__ void scatter_first_k(float *dx, const float *dcls, int B, int T, int D) {
    long n = (long)B * D;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        dx[(i / D) * T * D + i % D] = dcls[i];
}

// One thread per row: L (labels) is small.
__global__ void crossentropy_k(float *per_ex, float *probs, float *dlogits, const float *logits,
                               const int32_t *labels, int B, int L, float scale) {
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B) return;
    const float *z = logits + (long)b * L;
    float *pr = probs + (long)b * L, *d = dlogits + (long)b * L;
    float mx = z[0];
    for (int j = 1; j < L; j++) mx = fmaxf(mx, z[j]);
    float s = 0.0f;
    for (int j = 0; j < L; j++) s += expf(z[j] - mx);
    float lse = mx + logf(s);
    for (int j = 0; j < L; j++) pr[j] = expf(z[j] - lse);
    int y = labels[b];
    if (y == -100) {
        per_ex[b] = 0.0f;
        for (int j = 0; j < L; j++) d[j] = 0.0f;
        return;
    }
    per_ex[b] = lse - z[y];
    for (int j = 0; j < L; j++) d[j] = scale * (pr[j] - (j == y ? 1.0f : 0.0f));
}

// ---- optimizer -----------------------------------------------------------------------------------

const int OPT_BLOCK = 256;

// grid (MB_K_NORM_BLOCKS, n_tensors): block (x, y) sums its grid-stride share of tensor y.
__global__ void grad_sumsq_partial_k(double *partial, const mb_k_tensor *tensors) {
    __shared__ double sh[OPT_BLOCK];
    mb_k_tensor t = tensors[blockIdx.y];
    const float *g = t.grad;
    double acc = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < t.numel; i += (size_t)gridDim.x * blockDim.x)
        acc += (double)g[i] * g[i];
    acc = block_sum_d(acc, sh);
    if (threadIdx.x == 0) partial[(size_t)blockIdx.y * gridDim.x + blockIdx.x] = acc;
}

__global__ void grad_sumsq_final_k(double *total, const double *partial, int n) {
    __shared__ double sh[OPT_BLOCK];
    double acc = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
    acc = block_sum_d(acc, sh);
    if (threadIdx.x == 0) total[0] = acc;
}

__global__ void scale_tensors_k(const mb_k_tensor *tensors, float factor) {
    mb_k_tensor t = tensors[blockIdx.y];
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < t.numel; i += (size_t)gridDim.x * blockDim.x)
        t.grad[i] *= factor;
}

__global__ void adamw_k(float *m, float *v, const mb_k_tensor *tensors, float lr, float b1, float b2, float eps,
                        float bc1, float bc2s, float clip) {
    mb_k_tensor t = tensors[blockIdx.y];
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < t.numel; i += (size_t)gridDim.x * blockDim.x) {
        size_t e = t.state + i;
        mb_adamw_update(&t.value[i], &m[e], &v[e], t.grad[i] * clip, lr, b1, b2, eps, t.weight_decay, bc1, bc2s);
    }
}

} // namespace

// ---- launchers ------------------------------------------------------------------------------------

#define EW(n) ew_grid(n), EW_BLOCK, 0, stream
#define DONE                                                                                                \
    do {                                                                                                    \
        return cudaGetLastError();                                                                          \
    } while (0)

extern "C" {

cudaError_t mb_k_embedding_forward(float *out, const int32_t *ids, const float *wte, const float *wpe, int B, int T,
                                   int C, cudaStream_t stream) {
    long n = (long)B * T * C;
    if (n) embedding_forward_k<<<EW(n)>>>(out, ids, wte, wpe, (long)B * T, T, C);
    DONE;
}

cudaError_t mb_k_embedding_backward_rows(float *dwte, const float *dout, const int32_t *rows, const int32_t *start,
                                         const int32_t *pos, int n_rows, int C, cudaStream_t stream) {
    if (n_rows > 0) embedding_backward_rows_k<<<n_rows, row_threads(C), 0, stream>>>(dwte, dout, rows, start, pos, C);
    DONE;
}

cudaError_t mb_k_embedding_backward_pos(float *dwpe, const float *dout, int B, int T, int C, cudaStream_t stream) {
    long n = (long)T * C;
    if (n) embedding_backward_pos_k<<<EW(n)>>>(dwpe, dout, B, T, C);
    DONE;
}

cudaError_t mb_k_residual_layernorm_forward(float *out, float *h, float *mean, float *rstd, const float *a,
                                            const float *r, const float *w, const float *b, int N, int C, float eps,
                                            cudaStream_t stream) {
    int t = row_threads(C);
    if (N > 0) residual_layernorm_forward_k<<<N, t, t * sizeof(float), stream>>>(out, h, mean, rstd, a, r, w, b, C, eps);
    DONE;
}

cudaError_t mb_k_layernorm_backward_dx(float *dinp, const float *dout, const float *inp, const float *w,
                                       const float *mean, const float *rstd, int N, int C, int accumulate,
                                       cudaStream_t stream) {
    int t = row_threads(C);
    if (N > 0) layernorm_backward_dx_k<<<N, t, t * sizeof(float), stream>>>(dinp, dout, inp, w, mean, rstd, C, accumulate);
    DONE;
}

cudaError_t mb_k_layernorm_backward_dwdb(float *dw, float *db, const float *dout, const float *inp, const float *mean,
                                         const float *rstd, int N, int C, cudaStream_t stream) {
    if (N > 0 && C > 0) layernorm_backward_dwdb_k<<<(C + 31) / 32, dim3(32, COL_ROWS), 0, stream>>>(dw, db, dout, inp, mean, rstd, N, C);
    DONE;
}

cudaError_t mb_k_bias_add(float *out, const float *b, int N, int OC, cudaStream_t stream) {
    long n = (long)N * OC;
    if (n) bias_add_k<<<EW(n)>>>(out, b, n, OC);
    DONE;
}

cudaError_t mb_k_bias_act(float *h, float *g, const float *b, int N, int F, int act, cudaStream_t stream) {
    long n = (long)N * F;
    if (n) bias_act_k<<<EW(n)>>>(h, g, b, n, F, act);
    DONE;
}

cudaError_t mb_k_act_forward(float *out, const float *inp, long n, int act, cudaStream_t stream) {
    if (n) act_forward_k<<<EW(n)>>>(out, inp, n, act);
    DONE;
}

cudaError_t mb_k_act_backward(float *dinp, const float *inp, const float *dout, long n, int act, cudaStream_t stream) {
    if (n) act_backward_k<<<EW(n)>>>(dinp, inp, dout, n, act);
    DONE;
}

cudaError_t mb_k_colsum(float *db, const float *dout, int N, int OC, cudaStream_t stream) {
    if (N > 0 && OC > 0) colsum_k<<<(OC + 31) / 32, dim3(32, COL_ROWS), 0, stream>>>(db, dout, N, OC);
    DONE;
}

cudaError_t mb_k_split_heads(float *out, const float *inp, int B, int T, int H, int hs, cudaStream_t stream) {
    long n = (long)B * T * H * hs;
    if (n) split_heads_k<<<EW(n)>>>(out, inp, B, T, H, hs);
    DONE;
}

cudaError_t mb_k_merge_heads(float *out, const float *inp, int B, int T, int H, int hs, cudaStream_t stream) {
    long n = (long)B * T * H * hs;
    if (n) merge_heads_k<<<EW(n)>>>(out, inp, B, T, H, hs);
    DONE;
}

cudaError_t mb_k_masked_softmax(float *probs, const float *scores, const int32_t *mask, int B, int H, int T,
                                cudaStream_t stream) {
    long rows = (long)B * H * T;
    int t = row_threads(T);
    if (rows) masked_softmax_k<<<(unsigned)rows, t, t * sizeof(float), stream>>>(probs, scores, mask, H, T);
    DONE;
}

cudaError_t mb_k_softmax_backward(float *dscores, const float *dprobs, const float *probs, long rows, int T,
                                  cudaStream_t stream) {
    int t = row_threads(T);
    if (rows) softmax_backward_k<<<(unsigned)rows, t, t * sizeof(float), stream>>>(dscores, dprobs, probs, T);
    DONE;
}

cudaError_t mb_k_dropout(float *out, const float *inp, long n, float p, uint64_t seed, uint64_t offset,
                         cudaStream_t stream) {
    long groups = (n + 3) / 4;
    if (groups) dropout_k<<<EW(groups)>>>(out, inp, n, p, seed, offset);
    DONE;
}

cudaError_t mb_k_gather_first(float *cls, const float *x, int B, int T, int D, cudaStream_t stream) {
    long n = (long)B * D;
    if (n) gather_first_k<<<EW(n)>>>(cls, x, B, T, D);
    DONE;
}

cudaError_t mb_k_scatter_first(float *dx, const float *dcls, int B, int T, int D, cudaStream_t stream) {
    long n = (long)B * D;
    if (n) scatter_first_k<<<EW(n)>>>(dx, dcls, B, T, D);
    DONE;
}

cudaError_t mb_k_crossentropy(float *per_ex, float *probs, float *dlogits, const float *logits, const int32_t *labels,
                              int B, int L, float scale, cudaStream_t stream) {
    if (B > 0) crossentropy_k<<<(B + 127) / 128, 128, 0, stream>>>(per_ex, probs, dlogits, logits, labels, B, L, scale);
    DONE;
}

cudaError_t mb_k_to_bf16(uint16_t *out, const float *inp, long n, cudaStream_t stream) {
    if (n) to_bf16_k<<<EW(n)>>>(out, inp, n);
    DONE;
}

cudaError_t mb_k_grad_sumsq(double *total, double *partial, const mb_k_tensor *tensors, int n_tensors,
                            cudaStream_t stream) {
    if (n_tensors <= 0) return cudaMemsetAsync(total, 0, sizeof(double), stream);
    grad_sumsq_partial_k<<<dim3(MB_K_NORM_BLOCKS, n_tensors), OPT_BLOCK, 0, stream>>>(partial, tensors);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    grad_sumsq_final_k<<<1, OPT_BLOCK, 0, stream>>>(total, partial, MB_K_NORM_BLOCKS * n_tensors);
    DONE;
}

cudaError_t mb_k_scale_tensors(const mb_k_tensor *tensors, int n_tensors, size_t max_numel, float factor,
                               cudaStream_t stream) {
    if (n_tensors <= 0 || max_numel == 0) DONE;
    int gx = mb_grid_1d((long)max_numel, OPT_BLOCK, 1024);
    scale_tensors_k<<<dim3(gx, n_tensors), OPT_BLOCK, 0, stream>>>(tensors, factor);
    DONE;
}

cudaError_t mb_k_adamw(float *m, float *v, const mb_k_tensor *tensors, int n_tensors, size_t max_numel, float lr,
                       float beta1, float beta2, float eps, float bc1, float bc2_sqrt, float clip, cudaStream_t stream) {
    if (n_tensors <= 0 || max_numel == 0) DONE;
    int gx = mb_grid_1d((long)max_numel, OPT_BLOCK, 1024);
    adamw_k<<<dim3(gx, n_tensors), OPT_BLOCK, 0, stream>>>(m, v, tensors, lr, beta1, beta2, eps, bc1, bc2_sqrt, clip);
    DONE;
}

} // extern "C"
