/* layers.c: forward/backward of embeddings, LayerNorm, linear, attention,
 * GELU/ReLU, dropout and cross-entropy on raw float buffers (see layers.h). */
#include "layers.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "parallel.h"

#define PAR_FOR _Pragma("omp parallel for num_threads(mb_threads()) if (n > MB_PAR_MIN) schedule(static)")

/* ---- embeddings --------------------------------------------------------- */

void embedding_forward(float *out, const int32_t *ids, const float *wte, const float *wpe, int B, int T, int C) {
    long n = (long)B * T * C;
#pragma omp parallel for num_threads(mb_threads()) if (n > MB_PAR_MIN) schedule(static)
    for (long bt = 0; bt < (long)B * T; bt++) {
        int t = (int)(bt % T);
        const float *we = wte + (long)ids[bt] * C, *pe = wpe + (long)t * C;
        float *o = out + bt * C;
        for (int c = 0; c < C; c++) o[c] = we[c] + pe[c];
    }
}

void embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *ids, int B, int T, int C,
                        int padding_idx) {
    /* Serial over rows: two rows may share a token id (a race if threaded);
       the channel loop is the work and it vectorises. */
    for (long bt = 0; bt < (long)B * T; bt++) {
        const float *d = dout + bt * C;
        if (ids[bt] != padding_idx) {
            float *g = dwte + (long)ids[bt] * C;
            for (int c = 0; c < C; c++) g[c] += d[c];
        }
        if (dwpe) {
            float *g = dwpe + (bt % T) * C;
            for (int c = 0; c < C; c++) g[c] += d[c];
        }
    }
}

void embedding_forward_rows(float *out, const int32_t *ids, const int32_t *pos, const float *wte, const float *wpe,
                            int N, int C) {
    long n = (long)N * C;
#pragma omp parallel for num_threads(mb_threads()) if (n > MB_PAR_MIN) schedule(static)
    for (long r = 0; r < N; r++) {
        const float *we = wte + (long)ids[r] * C, *pe = wpe + (long)pos[r] * C;
        float *o = out + r * C;
        for (int c = 0; c < C; c++) o[c] = we[c] + pe[c];
    }
}

void embedding_backward_rows(float *dwte, float *dwpe, const float *dout, const int32_t *ids, const int32_t *pos,
                             int N, int C, int padding_idx) {
    /* Serial over rows, as embedding_backward. */
    for (long r = 0; r < N; r++) {
        const float *d = dout + r * C;
        if (ids[r] != padding_idx) {
            float *g = dwte + (long)ids[r] * C;
            for (int c = 0; c < C; c++) g[c] += d[c];
        }
        if (dwpe) {
            float *g = dwpe + (long)pos[r] * C;
            for (int c = 0; c < C; c++) g[c] += d[c];
        }
    }
}

/* ---- LayerNorm ---------------------------------------------------------- */

/* The one expression both LayerNorm forwards use: recomputation is bit-exact. */
static inline void normalize_row(float *o, const float *x, float mf, float r, const float *w, const float *b, int C) {
    for (int c = 0; c < C; c++) o[c] = (x[c] - mf) * r * w[c] + b[c];
}

/* One row: mean and variance in double, then out = (x - mean) * rstd * w + b. */
static void layernorm_row(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int C,
                          float eps) {
    double s = 0.0;
    for (int c = 0; c < C; c++) s += x[c];
    double m = s / C, v = 0.0;
    for (int c = 0; c < C; c++) {
        double d = x[c] - m;
        v += d * d;
    }
    *rstd = (float)(1.0 / sqrt(v / C + eps));
    *mean = (float)m;
    normalize_row(out, x, *mean, *rstd, w, b, C);
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                       int N, int C, float eps) {
    long n = (long)N * C;
#pragma omp parallel for num_threads(mb_threads()) if (n > MB_PAR_MIN) schedule(static)
    for (int i = 0; i < N; i++) {
        layernorm_row(out + (long)i * C, mean + i, rstd + i, inp + (long)i * C, w, b, C, eps);
    }
}

void add_layernorm_forward(float *h, float *out, float *mean, float *rstd, const float *res, const float *bias,
                           const uint8_t *drop, float p, const float *w, const float *b, int N, int C, float eps) {
    long n = (long)N * C;
    float keep_scale = drop ? 1.0f / (1.0f - p) : 1.0f;
#pragma omp parallel for num_threads(mb_threads()) if (n > MB_PAR_MIN) schedule(static)
    for (int i = 0; i < N; i++) {
        float *x = h + (long)i * C;
        const float *r = res + (long)i * C;
        /* the row stays in L1 between the sweeps below: one pass over memory */
        if (drop) {
            const uint8_t *d = drop + (long)i * C;
            for (int c = 0; c < C; c++) x[c] = (d[c] ? (x[c] + bias[c]) * keep_scale : 0.0f) + r[c];
        } else {
            for (int c = 0; c < C; c++) x[c] = x[c] + bias[c] + r[c];
        }
        layernorm_row(out + (long)i * C, mean + i, rstd + i, x, w, b, C, eps);
    }
}

void layernorm_recompute(float *out, const float *inp, const float *mean, const float *rstd, const float *w,
                         const float *b, int N, int C) {
    long n = (long)N * C;
#pragma omp parallel for num_threads(mb_threads()) if (n > MB_PAR_MIN) schedule(static)
    for (int i = 0; i < N; i++) normalize_row(out + (long)i * C, inp + (long)i * C, mean[i], rstd[i], w, b, C);
}

void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                        const float *mean, const float *rstd, int N, int C) {
    long n = (long)N * C;
    /* dinp rows are independent; dw/db are reduced over rows by each thread
       into a private copy, then summed in thread order (deterministic). */
    int nt = n > MB_PAR_MIN ? mb_threads() : 1;
#pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        int lo = (int)((long)N * tid / nth), hi = (int)((long)N * (tid + 1) / nth);
        float dwl[C > 0 ? C : 1], dbl[C > 0 ? C : 1];
        memset(dwl, 0, sizeof(float) * C);
        memset(dbl, 0, sizeof(float) * C);
        for (int i = lo; i < hi; i++) {
            const float *x = inp + (long)i * C, *d = dout + (long)i * C;
            float m = mean[i], r = rstd[i];
            double sum_dn = 0.0, sum_dn_xhat = 0.0;
            for (int c = 0; c < C; c++) {
                float xhat = (x[c] - m) * r;
                float dn = d[c] * w[c];
                sum_dn += dn;
                sum_dn_xhat += (double)dn * xhat;
                dbl[c] += d[c];
                dwl[c] += d[c] * xhat;
            }
            float mean_dn = (float)(sum_dn / C), mean_dn_xhat = (float)(sum_dn_xhat / C);
            float *g = dinp + (long)i * C;
            for (int c = 0; c < C; c++) {
                float xhat = (x[c] - m) * r;
                g[c] = (d[c] * w[c] - mean_dn - xhat * mean_dn_xhat) * r;
            }
        }
        for (int t = 0; t < nth; t++) {
#pragma omp barrier
            if (t == tid)
                for (int c = 0; c < C; c++) {
                    dw[c] += dwl[c];
                    db[c] += dbl[c];
                }
        }
    }
}

/* ---- linear ------------------------------------------------------------- */

void linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int IC, int OC) {
    float beta = 0.0f;
    if (b) {
        long n = (long)N * OC;
#pragma omp parallel for num_threads(mb_threads()) if (n > MB_PAR_MIN) schedule(static)
        for (int i = 0; i < N; i++) memcpy(out + (long)i * OC, b, sizeof(float) * OC);
        beta = 1.0f;
    }
    if (mb_bf16_active()) { /* the model's precision "bf16" (bf16.h) */
        mb_bf16_linear_forward(out, inp, w, N, IC, OC, beta);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w, IC, beta, out, OC);
}

void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                     int N, int IC, int OC, int accumulate) {
    if (mb_bf16_active() && (dinp || dw))
        mb_bf16_linear_backward(dinp, dw, dout, inp, w, N, IC, OC, accumulate ? 1.0f : 0.0f);
    else if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, w, IC,
                    accumulate ? 1.0f : 0.0f, dinp, IC);
    if (dw && !mb_bf16_active())
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC);
    if (db) {
        long n = (long)N * OC;
#pragma omp parallel for num_threads(mb_threads()) if (n > MB_PAR_MIN) schedule(static)
        for (int o = 0; o < OC; o++) {
            float s = 0.0f;
            for (int i = 0; i < N; i++) s += dout[(long)i * OC + o];
            db[o] += s;
        }
    }
}

/* ---- attention ---------------------------------------------------------- */

long attention_scratch_floats(int T) { return 2L * T * T * mb_threads(); }

/* Work of one head of one sequence, for the thread-count decision. */
static long attention_work(const attn_seqs *s, int hs) {
    long n = 0;
    for (int b = 0; b < s->B; b++) n += (long)s->len[b] * s->len[b];
    return n * hs / 16;
}

/* row = softmax(row) given its maximum mx (masked entries hold -FLT_MAX). */
static void softmax_shifted(float *row, int T, float mx) {
    float sum = 0.0f;
    for (int j = 0; j < T; j++) {
        row[j] = expf(row[j] - mx);
        sum += row[j];
    }
    float inv = 1.0f / sum;
    for (int j = 0; j < T; j++) row[j] *= inv;
}

/* ctx_h[T,hs] = dropout(P)[T,T] v_h[T,hs] for one head (rows strided by C);
   S: T*T floats of scratch for the dropped probabilities. */
static void head_context(float *ctx, const float *P, const float *v, const uint8_t *dm, float keep_scale, int T,
                         int hs, int C, float *S) {
    const float *Pd = P;
    if (dm) {
        for (long i = 0; i < (long)T * T; i++) S[i] = dm[i] ? P[i] * keep_scale : 0.0f;
        Pd = S;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, Pd, T, v, C, 0.0f, ctx, C);
}

void attention_forward_seqs(float *ctx, float *probs, const float *q, const float *k, const float *v,
                            const attn_seqs *s, const uint8_t *drop_mask, float p, int C, int NH, float *scratch) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    float keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    long n = attention_work(s, hs) * NH;
    /* One task per (sequence, head): each head's scores, softmax (scale,
       key mask and max in one sweep, exp and sum in the next) and the
       dropout of the probabilities stay in the thread's cache. */
#pragma omp parallel for num_threads(mb_threads()) if (n > MB_PAR_MIN) schedule(dynamic, 1)
    for (int bh = 0; bh < s->B * NH; bh++) {
        int b = bh / NH, h = bh % NH, T = s->len[b];
        long off = s->row[b] * C + h * hs, poff = s->prob[b] + (long)h * T * T;
        float *P = probs + poff;
        /* scores[T,T] = q_h k_h^T / sqrt(hs) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q + off, C, k + off, C, 0.0f, P, T);
        const int32_t *mrow = s->key_mask ? s->key_mask + (long)b * s->mask_T : NULL;
        for (int i = 0; i < T; i++) {
            float *row = P + (long)i * T;
            float mx = -FLT_MAX;
            if (mrow) {
                for (int j = 0; j < T; j++) {
                    if (mrow[j] == 0) row[j] = -FLT_MAX;
                    mx = row[j] > mx ? row[j] : mx;
                }
            } else {
                for (int j = 0; j < T; j++) mx = row[j] > mx ? row[j] : mx;
            }
            softmax_shifted(row, T, mx);
        }
        head_context(ctx + off, P, v + off, p > 0.0f ? drop_mask + poff : NULL, keep_scale, T, hs, C,
                     scratch + (long)omp_get_thread_num() * 2 * s->max_len * s->max_len);
    }
}

void attention_context_seqs(float *ctx, const float *probs, const float *v, const attn_seqs *s,
                            const uint8_t *drop_mask, float p, int C, int NH, float *scratch) {
    int hs = C / NH;
    float keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    long n = attention_work(s, hs) * NH;
#pragma omp parallel for num_threads(mb_threads()) if (n > MB_PAR_MIN) schedule(dynamic, 1)
    for (int bh = 0; bh < s->B * NH; bh++) {
        int b = bh / NH, h = bh % NH, T = s->len[b];
        long off = s->row[b] * C + h * hs, poff = s->prob[b] + (long)h * T * T;
        head_context(ctx + off, probs + poff, v + off, p > 0.0f ? drop_mask + poff : NULL, keep_scale, T, hs, C,
                     scratch + (long)omp_get_thread_num() * 2 * s->max_len * s->max_len);
    }
}

void attention_backward_seqs(float *dq, float *dk, float *dv, const float *dctx, const float *probs,
                             const float *q, const float *k, const float *v, const attn_seqs *s,
                             const uint8_t *drop_mask, float p, int C, int NH, float *scratch) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    float keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    long n = attention_work(s, hs) * NH;
#pragma omp parallel for num_threads(mb_threads()) if (n > MB_PAR_MIN) schedule(dynamic, 1)
    for (int bh = 0; bh < s->B * NH; bh++) {
        int b = bh / NH, h = bh % NH, T = s->len[b];
        long off = s->row[b] * C + h * hs, poff = s->prob[b] + (long)h * T * T;
        const float *P = probs + poff;
        float *dP = scratch + (long)omp_get_thread_num() * 2 * s->max_len * s->max_len;
        float *Pd = dP + (long)T * T;
        const uint8_t *dm = p > 0.0f ? drop_mask + poff : NULL;
        const float *Pused = P;
        if (dm) {
            for (long i = 0; i < (long)T * T; i++) Pd[i] = dm[i] ? P[i] * keep_scale : 0.0f;
            Pused = Pd;
        }
        /* dv_h[T,hs] = Pd^T dctx_h */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, Pused, T, dctx + off, C, 0.0f,
                    dv + off, C);
        /* dPd[T,T] = dctx_h v_h^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dctx + off, C, v + off, C, 0.0f, dP, T);
        /* through dropout and softmax; masked keys get no gradient (masked_fill) */
        const int32_t *mrow = s->key_mask ? s->key_mask + (long)b * s->mask_T : NULL;
        for (int i = 0; i < T; i++) {
            float *drow = dP + (long)i * T;
            const float *prow = P + (long)i * T;
            if (dm) {
                const uint8_t *mr = dm + (long)i * T;
                for (int j = 0; j < T; j++) drow[j] = mr[j] ? drow[j] * keep_scale : 0.0f;
            }
            float dot = 0.0f;
            for (int j = 0; j < T; j++) dot += drow[j] * prow[j];
            if (mrow)
                for (int j = 0; j < T; j++) drow[j] = mrow[j] ? prow[j] * (drow[j] - dot) : 0.0f;
            else
                for (int j = 0; j < T; j++) drow[j] = prow[j] * (drow[j] - dot);
        }
        /* dq_h = scale dS k_h ; dk_h = scale dS^T q_h */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, scale, dP, T, k + off, C, 0.0f, dq + off, C);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, scale, dP, T, q + off, C, 0.0f, dk + off, C);
    }
}

/* ---- attention with one query per sequence ([CLS]) -------------------------- */

/* Work of the [CLS] attention, for the thread-count decision. */
static long cls_attention_work(const attn_seqs *s, int C) {
    long n = 0;
    for (int b = 0; b < s->B; b++) n += s->len[b];
    return n * C / 4;
}

/* ctx_h = sum_j dropout(P)_j v_j for one head of sequence b. */
static void cls_head_context(float *ctx, const float *P, const float *v, const uint8_t *dm, float keep_scale, int T,
                             int hs, int C) {
    for (int d = 0; d < hs; d++) ctx[d] = 0.0f;
    for (int j = 0; j < T; j++) {
        float pj = dm ? (dm[j] ? P[j] * keep_scale : 0.0f) : P[j];
        const float *vj = v + (long)j * C;
        for (int d = 0; d < hs; d++) ctx[d] += pj * vj[d];
    }
}

void attention_cls_forward(float *ctx, float *probs, const float *q, const float *k, const float *v,
                           const attn_seqs *s, const long *qprob, const uint8_t *drop_mask, float p, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    float keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
#pragma omp parallel for num_threads(mb_threads()) if (cls_attention_work(s, C) > MB_PAR_MIN) schedule(static)
    for (int bh = 0; bh < s->B * NH; bh++) {
        int b = bh / NH, h = bh % NH, T = s->len[b];
        const float *qh = q + (long)b * C + h * hs, *kh = k + s->row[b] * C + h * hs;
        long poff = qprob[b] + (long)h * T;
        float *P = probs + poff;
        const int32_t *mrow = s->key_mask ? s->key_mask + (long)b * s->mask_T : NULL;
        float mx = -FLT_MAX;
        for (int j = 0; j < T; j++) {
            const float *kj = kh + (long)j * C;
            float dot = 0.0f;
            for (int d = 0; d < hs; d++) dot += qh[d] * kj[d];
            P[j] = mrow && mrow[j] == 0 ? -FLT_MAX : scale * dot;
            mx = P[j] > mx ? P[j] : mx;
        }
        softmax_shifted(P, T, mx);
        cls_head_context(ctx + (long)b * C + h * hs, P, v + s->row[b] * C + h * hs,
                         p > 0.0f ? drop_mask + poff : NULL, keep_scale, T, hs, C);
    }
}

void attention_cls_context(float *ctx, const float *probs, const float *v, const attn_seqs *s, const long *qprob,
                           const uint8_t *drop_mask, float p, int C, int NH) {
    int hs = C / NH;
    float keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
#pragma omp parallel for num_threads(mb_threads()) if (cls_attention_work(s, C) > MB_PAR_MIN) schedule(static)
    for (int bh = 0; bh < s->B * NH; bh++) {
        int b = bh / NH, h = bh % NH, T = s->len[b];
        long poff = qprob[b] + (long)h * T;
        cls_head_context(ctx + (long)b * C + h * hs, probs + poff, v + s->row[b] * C + h * hs,
                         p > 0.0f ? drop_mask + poff : NULL, keep_scale, T, hs, C);
    }
}

void attention_cls_backward(float *dq, float *dk, float *dv, const float *dctx, const float *probs, const float *q,
                            const float *k, const float *v, const attn_seqs *s, const long *qprob,
                            const uint8_t *drop_mask, float p, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    float keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
#pragma omp parallel for num_threads(mb_threads()) if (cls_attention_work(s, C) > MB_PAR_MIN) schedule(static)
    for (int bh = 0; bh < s->B * NH; bh++) {
        int b = bh / NH, h = bh % NH, T = s->len[b];
        long off = s->row[b] * C + h * hs, poff = qprob[b] + (long)h * T;
        const float *P = probs + poff, *dc = dctx + (long)b * C + h * hs, *qh = q + (long)b * C + h * hs;
        const uint8_t *dm = p > 0.0f ? drop_mask + poff : NULL;
        const int32_t *mrow = s->key_mask ? s->key_mask + (long)b * s->mask_T : NULL;
        float *dqh = dq + (long)b * C + h * hs;
        /* dv_j = Pd_j dctx; dP_j = dropout'(dctx . v_j); then softmax' */
        float dP[T > 0 ? T : 1], dot = 0.0f;
        for (int j = 0; j < T; j++) {
            const float *vj = v + off + (long)j * C;
            float *dvj = dv + off + (long)j * C;
            float pj = dm ? (dm[j] ? P[j] * keep_scale : 0.0f) : P[j];
            float g = 0.0f;
            for (int d = 0; d < hs; d++) {
                dvj[d] = pj * dc[d];
                g += dc[d] * vj[d];
            }
            dP[j] = dm ? (dm[j] ? g * keep_scale : 0.0f) : g;
            dot += dP[j] * P[j];
        }
        for (int d = 0; d < hs; d++) dqh[d] = 0.0f;
        for (int j = 0; j < T; j++) {
            float dS = mrow && mrow[j] == 0 ? 0.0f : P[j] * (dP[j] - dot) * scale;
            const float *kj = k + off + (long)j * C;
            float *dkj = dk + off + (long)j * C;
            for (int d = 0; d < hs; d++) {
                dqh[d] += dS * kj[d];
                dkj[d] = dS * qh[d];
            }
        }
    }
}

/* The padded-batch form: every sequence T long, keys masked. The sequence
   table lives on the stack (B ints and 2B longs), so nothing is allocated. */
static attn_seqs padded_seqs(int *len, long *row, const int32_t *mask, int B, int T, int NH) {
    long *prob = row + B;
    for (int b = 0; b < B; b++) {
        len[b] = T;
        row[b] = (long)b * T;
        prob[b] = (long)b * NH * T * T;
    }
    return (attn_seqs){.B = B, .max_len = T, .len = len, .row = row, .prob = prob, .key_mask = mask, .mask_T = T};
}

void attention_forward(float *ctx, float *probs, const float *q, const float *k, const float *v,
                       const int32_t *mask, const uint8_t *drop_mask, float p, int B, int T, int C, int NH,
                       float *scratch) {
    int len[B > 0 ? B : 1];
    long row[B > 0 ? 2 * B : 1];
    attn_seqs s = padded_seqs(len, row, mask, B, T, NH);
    attention_forward_seqs(ctx, probs, q, k, v, &s, drop_mask, p, C, NH, scratch);
}

void attention_backward(float *dq, float *dk, float *dv, const float *dctx, const float *probs,
                        const float *q, const float *k, const float *v, const int32_t *mask,
                        const uint8_t *drop_mask, float p, int B, int T, int C, int NH, float *scratch) {
    int len[B > 0 ? B : 1];
    long row[B > 0 ? 2 * B : 1];
    attn_seqs s = padded_seqs(len, row, mask, B, T, NH);
    attention_backward_seqs(dq, dk, dv, dctx, probs, q, k, v, &s, drop_mask, p, C, NH, scratch);
}

/* ---- activations -------------------------------------------------------- */

/* GELU runs on every FFN activation three times a step (forward, recomputed
   and differentiated in backward): libm's erff/expf, one call per element,
   were its cost. These are vectorisable polynomial forms: erf as Eigen's
   rational approximation on [-4,4] (abs error 4.2e-7 against double erf),
   exp as Cephes' expf (rel error 8e-8). NaN propagates as through erff. */
static inline float erf_approx(float a) {
    /* clamp to [-4,4] without a comparison (GCC does not if-convert float
       compares under -ftrapping-math for AVX2); NaN propagates */
    float x = 0.5f * (fabsf(a + 4.0f) - fabsf(a - 4.0f));
    float x2 = x * x;
    float p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
    p = x2 * p + -2.10102402082508e-06f;
    p = x2 * p + -5.69250639462346e-05f;
    p = x2 * p + -7.34990630326855e-04f;
    p = x2 * p + -2.95459980854025e-03f;
    p = x2 * p + -1.60960333262415e-02f;
    float q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
    q = x2 * q + -1.68282697438203e-03f;
    q = x2 * q + -7.37332916720468e-03f;
    q = x2 * q + -1.42647390514189e-02f;
    return x * p / q;
}

/* exp(x) for -87 <= x <= 0 (the GELU density): 2^n * poly(r), r = x - n ln 2. */
static inline float exp_nonpos_approx(float x) {
    /* n = round(x / ln 2) by the 1.5*2^23 trick: its low mantissa bits hold n,
       so 2^n is built with unsigned arithmetic (no float-to-int conversion:
       NaN stays defined and propagates through p) */
    union { float f; uint32_t u; } t = {.f = x * 1.44269504088896341f + 12582912.0f};
    float n = t.f - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { uint32_t u; float f; } e = {.u = (t.u - 0x4B400000u + 127u) << 23};
    return p * e.f;
}

/* One thread's share; compiled for AVX-512, AVX2 and the baseline, the
   loader picks the best the CPU has. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void gelu_forward_span(float *out, const float *inp, long lo, long hi) {
#pragma omp simd
    for (long i = lo; i < hi; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + erf_approx(x * (float)M_SQRT1_2));
    }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static void gelu_backward_span(float *dinp, const float *inp, const float *dout, long lo, long hi) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
#pragma omp simd
    for (long i = lo; i < hi; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + erf_approx(x * (float)M_SQRT1_2));
        float xc = 0.5f * (fabsf(x + 13.0f) - fabsf(x - 13.0f)); /* |x| <= 13: exp argument >= -84.5 */
        float pdf = inv_sqrt_2pi * exp_nonpos_approx(-0.5f * xc * xc);
        dinp[i] = dout[i] * (cdf + x * pdf);
    }
}

void gelu_forward(float *out, const float *inp, long n) { PAR_SPANS(n, gelu_forward_span(out, inp, lo, hi)); }

__attribute__((target_clones("avx512f", "avx2", "default")))
static void bias_gelu_rows(float *h, float *out, const float *bias, int lo, int hi, int C) {
    for (int i = lo; i < hi; i++) {
        float *x = h + (long)i * C, *o = out + (long)i * C;
#pragma omp simd
        for (int c = 0; c < C; c++) {
            float v = x[c] + bias[c];
            x[c] = v;
            o[c] = 0.5f * v * (1.0f + erf_approx(v * (float)M_SQRT1_2));
        }
    }
}

void bias_gelu_forward(float *h, float *out, const float *bias, int N, int C) {
    long n = (long)N * C;
    PAR_SPANS(n, bias_gelu_rows(h, out, bias, (int)(lo / C), (int)(hi / C), C));
}

void gelu_backward(float *dinp, const float *inp, const float *dout, long n) {
    PAR_SPANS(n, gelu_backward_span(dinp, inp, dout, lo, hi));
}

void relu_forward(float *out, const float *inp, long n) {
    PAR_FOR
    for (long i = 0; i < n; i++) out[i] = inp[i] < 0.0f ? 0.0f : inp[i]; /* NaN passes, as in torch */
}

void relu_backward(float *dinp, const float *out, const float *dout, long n) {
    PAR_FOR
    for (long i = 0; i < n; i++) dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

/* ---- dropout ------------------------------------------------------------ */

void dropout_mask(uint8_t *mask, long n, float p, mb_rng *rng) {
    /* 8 uniform 8-bit draws per 64-bit number would bias p; use 16-bit
       fractions (4 per draw): resolution 1/65536 is ample for dropout. */
    uint32_t thresh = (uint32_t)((double)p * 65536.0 + 0.5);
    long i = 0;
    while (i < n) {
        uint64_t r = mb_rng_next_u64(rng);
        for (int j = 0; j < 4 && i < n; j++, i++) {
            mask[i] = (uint32_t)(r & 0xffff) >= thresh;
            r >>= 16;
        }
    }
}

void dropout_apply(float *out, const float *inp, const uint8_t *mask, float p, long n) {
    float s = 1.0f / (1.0f - p);
    PAR_FOR
    for (long i = 0; i < n; i++) out[i] = mask[i] ? inp[i] * s : 0.0f;
}

/* ---- loss --------------------------------------------------------------- */

void crossentropy_forward(float *losses, float *probs, const float *logits, const int32_t *labels, int B, int L,
                          double *mean, int *count) {
    double total = 0.0;
    int cnt = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (long)b * L;
        float *pr = probs + (long)b * L;
        float mx = z[0];
        for (int j = 1; j < L; j++) if (z[j] > mx) mx = z[j];
        double s = 0.0;
        for (int j = 0; j < L; j++) s += exp((double)z[j] - mx);
        double lse = mx + log(s);
        for (int j = 0; j < L; j++) pr[j] = (float)exp((double)z[j] - lse);
        if (labels[b] == -100) {
            losses[b] = 0.0f;
            continue;
        }
        double l = lse - z[labels[b]];
        losses[b] = (float)l;
        total += l;
        cnt++;
    }
    *mean = cnt ? total / cnt : NAN;
    *count = cnt;
}

void crossentropy_backward(float *dlogits, const float *probs, const int32_t *labels, int B, int L, float scale) {
    for (int b = 0; b < B; b++) {
        float *d = dlogits + (long)b * L;
        const float *pr = probs + (long)b * L;
        if (labels[b] == -100) {
            memset(d, 0, sizeof(float) * L);
            continue;
        }
        for (int j = 0; j < L; j++) d[j] = scale * (pr[j] - (j == labels[b] ? 1.0f : 0.0f));
    }
}
