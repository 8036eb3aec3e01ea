/* test_cuda_kernels.c: every CUDA kernel against its host reference (tests/c/cuda_ref.h), on a GPU.
 *
 * Needs a GPU: skips with the reason otherwise (this is one of the checks
 * scripts/gpu-check runs). Shapes are chosen to cross the launch
 * boundaries: rows longer than a block (C = 768 > 256 threads), rows that
 * are not a power of two (T = 77), grid-stride loops, ignored labels and
 * padding ids. Exact kernels (copies, embedding sums in plan order, Philox
 * masks, bf16 rounding) must match bit for bit; the others within 1e-5 of
 * the reference's scale. Each reduction kernel also runs twice and must
 * give identical bits (no atomics).
 */
#include "harness.h"

#ifndef MB_HAVE_CUDA
int main(void) {
    h_cur_name = "cuda_kernels";
    fprintf(stderr, "SKIP cuda_kernels: built without CUDA (make CUDA=1 with nvcc)\n");
    h_skipped++;
    return harness_end();
}
#else

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/cuda.h"
#include "../../runtime/cuda/embed_plan.h"
#include "../../runtime/rng.h"
#include "cuda_ref.h"

static mb_rng rng;
static mb_error err;

static float *rnd(long n, float scale) {
    float *x = malloc((size_t)n * 4);
    for (long i = 0; i < n; i++) x[i] = (float)(mb_rng_normal(&rng) * scale);
    return x;
}

static void *up(const void *h, size_t bytes) {
    void *d = mb_cuda_malloc(bytes, &err);
    if (d) mb_cuda_memcpy_h2d(d, h, bytes, &err);
    return d;
}

static float *down(const void *d, long n) {
    float *h = malloc((size_t)n * 4);
    mb_cuda_synchronize(&err);
    mb_cuda_memcpy_d2h(h, d, (size_t)n * 4, &err);
    return h;
}

/* max |got - ref| / max(|ref|, 1e-30) over n */
static double rel(const float *got, const float *ref, long n) {
    double d = 0, s = 0;
    for (long i = 0; i < n; i++) {
        d = fmax(d, fabs((double)got[i] - ref[i]));
        s = fmax(s, fabs((double)ref[i]));
    }
    return s > 0 ? d / s : d;
}

#define CU_OK(call) CHECK((call) == cudaSuccess, "%s: %s", #call, cudaGetErrorString(cudaGetLastError()))

TEST(embeddings_and_copies_exact) {
    if (!mb_cuda_available()) SKIP("no GPU: %s", mb_cuda_unavailable_reason());
    const int B = 5, T = 33, C = 768, V = 97;
    int32_t ids[5 * 33];
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)mb_rng_below(&rng, 12) * 8; /* repeats and pads (0) */
    float *wte = rnd((long)V * C, 1), *wpe = rnd((long)T * C, 1), *dout = rnd((long)B * T * C, 1);
    long BTC = (long)B * T * C;
    float *ref = malloc(BTC * 4);
    int32_t *d_ids = up(ids, sizeof ids);
    float *d_wte = up(wte, (size_t)V * C * 4), *d_wpe = up(wpe, (size_t)T * C * 4), *d_out = mb_cuda_malloc(BTC * 4, &err);
    CU_OK(mb_k_embedding_forward(d_out, d_ids, d_wte, d_wpe, B, T, C, 0));
    ref_mb_k_embedding_forward(ref, ids, wte, wpe, B, T, C, 0);
    float *got = down(d_out, BTC);
    CHECK(memcmp(got, ref, BTC * 4) == 0, "embedding forward differs");
    free(got);
    /* backward: plan rows into dwte (from a non-zero start), positions into dwpe */
    mb_embed_plan plan = {0};
    CHECK(mb_embed_plan_build(&plan, ids, B * T, V, 0, &err) == MB_OK, "%s", err.msg);
    int32_t *d_rows = up(plan.rows, (size_t)plan.n_rows * 4), *d_start = up(plan.start, (size_t)(plan.n_rows + 1) * 4),
            *d_pos = up(plan.pos, (size_t)plan.n_pos * 4);
    float *d_dout = up(dout, BTC * 4);
    for (int rep = 0; rep < 2; rep++) { /* twice from the same start: identical bits */
        CHECK(mb_cuda_memcpy_h2d(d_wte, wte, (size_t)V * C * 4, &err) == MB_OK, "%s", err.msg);
        CHECK(mb_cuda_memcpy_h2d(d_wpe, wpe, (size_t)T * C * 4, &err) == MB_OK, "%s", err.msg);
        CU_OK(mb_k_embedding_backward_rows(d_wte, d_dout, d_rows, d_start, d_pos, plan.n_rows, C, 0));
        CU_OK(mb_k_embedding_backward_pos(d_wpe, d_dout, B, T, C, 0));
        float *rw = malloc((size_t)V * C * 4), *rp = malloc((size_t)T * C * 4);
        memcpy(rw, wte, (size_t)V * C * 4);
        memcpy(rp, wpe, (size_t)T * C * 4);
        ref_mb_k_embedding_backward_rows(rw, dout, plan.rows, plan.start, plan.pos, plan.n_rows, C, 0);
        ref_mb_k_embedding_backward_pos(rp, dout, B, T, C, 0);
        float *gw = down(d_wte, (long)V * C), *gp = down(d_wpe, (long)T * C);
        CHECK(memcmp(gw, rw, (size_t)V * C * 4) == 0, "embedding backward (rows) differs, rep %d", rep);
        CHECK(memcmp(gp, rp, (size_t)T * C * 4) == 0, "embedding backward (positions) differs, rep %d", rep);
        free(gw), free(gp), free(rw), free(rp);
    }
    /* heads split / merge and [CLS] gather / scatter */
    const int H = 12, hs = C / H;
    float *d_tmp = mb_cuda_malloc(BTC * 4, &err), *d_back = mb_cuda_malloc(BTC * 4, &err);
    CU_OK(mb_k_split_heads(d_tmp, d_dout, B, T, H, hs, 0));
    ref_mb_k_split_heads(ref, dout, B, T, H, hs, 0);
    got = down(d_tmp, BTC);
    CHECK(memcmp(got, ref, BTC * 4) == 0, "split heads differs");
    free(got);
    CU_OK(mb_k_merge_heads(d_back, d_tmp, B, T, H, hs, 0));
    got = down(d_back, BTC);
    CHECK(memcmp(got, dout, BTC * 4) == 0, "merge(split(x)) != x");
    free(got);
    CU_OK(mb_k_gather_first(d_tmp, d_dout, B, T, C, 0));
    ref_mb_k_gather_first(ref, dout, B, T, C, 0);
    got = down(d_tmp, (long)B * C);
    CHECK(memcmp(got, ref, (size_t)B * C * 4) == 0, "gather first differs");
    free(got);
    mb_embed_plan_free(&plan);
    mb_cuda_free(d_ids), mb_cuda_free(d_wte), mb_cuda_free(d_wpe), mb_cuda_free(d_out), mb_cuda_free(d_rows);
    mb_cuda_free(d_start), mb_cuda_free(d_pos), mb_cuda_free(d_dout), mb_cuda_free(d_tmp), mb_cuda_free(d_back);
    free(wte), free(wpe), free(dout), free(ref);
}

TEST(layernorm_forward_backward) {
    if (!mb_cuda_available()) SKIP("no GPU: %s", mb_cuda_unavailable_reason());
    int Cs[2] = {64, 768};
    for (int ci = 0; ci < 2; ci++) {
        const int N = 300, C = Cs[ci];
        long n = (long)N * C;
        float *a = rnd(n, 2), *r = rnd(n, 1), *w = rnd(C, 1), *b = rnd(C, 1), *dout = rnd(n, 1);
        float *out = malloc(n * 4), *h = malloc(n * 4), *mean = malloc(N * 4), *rstd = malloc(N * 4);
        float *dinp = malloc(n * 4), *dw = calloc(C, 4), *db = calloc(C, 4);
        ref_mb_k_residual_layernorm_forward(out, h, mean, rstd, a, r, w, b, N, C, 1e-12f, 0);
        ref_mb_k_layernorm_backward_dx(dinp, dout, h, w, mean, rstd, N, C, 0, 0);
        ref_mb_k_layernorm_backward_dwdb(dw, db, dout, h, mean, rstd, N, C, 0);
        float *d_a = up(a, n * 4), *d_r = up(r, n * 4), *d_w = up(w, C * 4), *d_b = up(b, C * 4), *d_dout = up(dout, n * 4);
        float *d_out = mb_cuda_malloc(n * 4, &err), *d_h = mb_cuda_malloc(n * 4, &err), *d_mean = mb_cuda_malloc(N * 4, &err);
        float *d_rstd = mb_cuda_malloc(N * 4, &err), *d_dinp = mb_cuda_malloc(n * 4, &err);
        float *d_dw = up(dw, C * 4), *d_db = up(db, C * 4); /* zeros */
        CU_OK(mb_k_residual_layernorm_forward(d_out, d_h, d_mean, d_rstd, d_a, d_r, d_w, d_b, N, C, 1e-12f, 0));
        CU_OK(mb_k_layernorm_backward_dx(d_dinp, d_dout, d_h, d_w, d_mean, d_rstd, N, C, 0, 0));
        CU_OK(mb_k_layernorm_backward_dwdb(d_dw, d_db, d_dout, d_h, d_mean, d_rstd, N, C, 0));
        float *g_out = down(d_out, n), *g_h = down(d_h, n), *g_dinp = down(d_dinp, n), *g_dw = down(d_dw, C),
              *g_db = down(d_db, C);
        CHECK(memcmp(g_h, h, n * 4) == 0, "C=%d residual sum differs", C);
        CHECK(rel(g_out, out, n) <= 1e-5, "C=%d forward rel %.3g", C, rel(g_out, out, n));
        CHECK(rel(g_dinp, dinp, n) <= 1e-5, "C=%d dinp rel %.3g", C, rel(g_dinp, dinp, n));
        CHECK(rel(g_dw, dw, C) <= 1e-5 && rel(g_db, db, C) <= 1e-5, "C=%d dw %.3g db %.3g", C, rel(g_dw, dw, C),
              rel(g_db, db, C));
        /* the same again: identical bits */
        CU_OK(mb_k_layernorm_backward_dwdb(d_dw, d_db, d_dout, d_h, d_mean, d_rstd, N, C, 0));
        float *g_dw2 = down(d_dw, C);
        float *twice = malloc(C * 4);
        for (int c = 0; c < C; c++) twice[c] = g_dw[c] + g_dw[c];
        CHECK(memcmp(g_dw2, twice, C * 4) == 0, "dw accumulates (+=) the same bits again");
        /* without a residual: h is not written, statistics of a */
        CU_OK(mb_k_residual_layernorm_forward(d_out, d_a, d_mean, d_rstd, d_a, NULL, d_w, d_b, N, C, 1e-12f, 0));
        ref_mb_k_residual_layernorm_forward(out, a, mean, rstd, a, NULL, w, b, N, C, 1e-12f, 0);
        free(g_out);
        g_out = down(d_out, n);
        CHECK(rel(g_out, out, n) <= 1e-5, "C=%d no-residual forward", C);
        free(a), free(r), free(w), free(b), free(dout), free(out), free(h), free(mean), free(rstd), free(dinp), free(dw);
        free(db), free(g_out), free(g_h), free(g_dinp), free(g_dw), free(g_db), free(g_dw2), free(twice);
        mb_cuda_free(d_a), mb_cuda_free(d_r), mb_cuda_free(d_w), mb_cuda_free(d_b), mb_cuda_free(d_dout);
        mb_cuda_free(d_out), mb_cuda_free(d_h), mb_cuda_free(d_mean), mb_cuda_free(d_rstd), mb_cuda_free(d_dinp);
        mb_cuda_free(d_dw), mb_cuda_free(d_db);
    }
}

TEST(elementwise_and_columns) {
    if (!mb_cuda_available()) SKIP("no GPU: %s", mb_cuda_unavailable_reason());
    const int N = 517, F = 300;
    long n = (long)N * F;
    float *x = rnd(n, 3), *dout = rnd(n, 1), *b = rnd(F, 1);
    float *d_x = up(x, n * 4), *d_dout = up(dout, n * 4), *d_b = up(b, F * 4), *d_g = mb_cuda_malloc(n * 4, &err);
    for (int act = 0; act < 2; act++) {
        float *h = malloc(n * 4), *g = malloc(n * 4), *dg = malloc(n * 4);
        memcpy(h, x, n * 4);
        float *d_h = up(x, n * 4);
        CU_OK(mb_k_bias_act(d_h, d_g, d_b, N, F, act, 0));
        ref_mb_k_bias_act(h, g, b, N, F, act, 0);
        float *gh = down(d_h, n), *gg = down(d_g, n);
        CHECK(memcmp(gh, h, n * 4) == 0, "act %d: bias add differs", act);
        CHECK(rel(gg, g, n) <= 1e-6, "act %d: activation rel %.3g", act, rel(gg, g, n));
        CU_OK(mb_k_act_backward(d_g, d_h, d_dout, n, act, 0));
        ref_mb_k_act_backward(dg, h, dout, n, act, 0);
        free(gg);
        gg = down(d_g, n);
        CHECK(rel(gg, dg, n) <= 1e-5, "act %d: backward rel %.3g", act, rel(gg, dg, n));
        free(h), free(g), free(dg), free(gh), free(gg);
        mb_cuda_free(d_h);
    }
    /* bias add, activation forward */
    {
        float *o = malloc(n * 4), *d_o = up(x, n * 4);
        memcpy(o, x, n * 4);
        CU_OK(mb_k_bias_add(d_o, d_b, N, F, 0));
        ref_mb_k_bias_add(o, b, N, F, 0);
        float *go = down(d_o, n);
        CHECK(memcmp(go, o, n * 4) == 0, "bias add differs");
        CU_OK(mb_k_act_forward(d_o, d_x, n, MB_K_GELU, 0));
        ref_mb_k_act_forward(o, x, n, MB_K_GELU, 0);
        free(go);
        go = down(d_o, n);
        CHECK(rel(go, o, n) <= 1e-6, "GELU rel %.3g", rel(go, o, n));
        /* scatter [B,D] into position 0 of [B,T,D] leaves the rest */
        CU_OK(mb_k_scatter_first(d_o, d_b, 3, 100, 100, 0)); /* 3 x 100 x 100 = 30000 <= n */
        ref_mb_k_scatter_first(o, b, 3, 100, 100, 0);
        free(go);
        go = down(d_o, n);
        CHECK(memcmp(go, o, n * 4) == 0 || rel(go, o, n) <= 1e-6, "scatter first differs");
        free(o), free(go);
        mb_cuda_free(d_o);
    }
    /* colsum twice: += and identical bits */
    float *db = calloc(F, 4), *d_db = up(db, F * 4);
    ref_mb_k_colsum(db, dout, N, F, 0);
    CU_OK(mb_k_colsum(d_db, d_dout, N, F, 0));
    float *g1 = down(d_db, F);
    CHECK(rel(g1, db, F) <= 1e-5, "colsum rel %.3g", rel(g1, db, F));
    free(db), free(g1), free(x), free(dout), free(b);
    mb_cuda_free(d_x), mb_cuda_free(d_dout), mb_cuda_free(d_b), mb_cuda_free(d_g), mb_cuda_free(d_db);
}

TEST(softmax_dropout_bf16) {
    if (!mb_cuda_available()) SKIP("no GPU: %s", mb_cuda_unavailable_reason());
    const int B = 3, H = 4, T = 77;
    long n = (long)B * H * T * T;
    float *s = rnd(n, 4), *dp = rnd(n, 1), *p = malloc(n * 4), *ds = malloc(n * 4);
    int32_t mask[3 * 77];
    for (int i = 0; i < B * T; i++) mask[i] = (i % T) < T - 9 * (i / T); /* rows padded by 0, 9, 18 */
    ref_mb_k_masked_softmax(p, s, mask, B, H, T, 0);
    ref_mb_k_softmax_backward(ds, dp, p, (long)B * H * T, T, 0);
    float *d_s = up(s, n * 4), *d_dp = up(dp, n * 4), *d_p = mb_cuda_malloc(n * 4, &err);
    int32_t *d_mask = up(mask, sizeof mask);
    CU_OK(mb_k_masked_softmax(d_p, d_s, d_mask, B, H, T, 0));
    float *gp = down(d_p, n);
    CHECK(rel(gp, p, n) <= 1e-6, "softmax rel %.3g", rel(gp, p, n));
    int masked_zero = 1;
    for (long r = 0; r < (long)B * H * T; r++)
        for (int j = 0; j < T; j++)
            if (!mask[(r / (H * T)) * T + j] && gp[r * T + j] != 0.0f) masked_zero = 0;
    CHECK(masked_zero, "masked keys get probability 0");
    CU_OK(mb_k_softmax_backward(d_dp, d_dp, d_p, (long)B * H * T, T, 0)); /* in place */
    float *gds = down(d_dp, n);
    CHECK(rel(gds, ds, n) <= 1e-5, "softmax backward rel %.3g", rel(gds, ds, n));
    /* dropout: the Philox mask of (seed, offset), bit for bit; in place and again */
    float *dr = malloc(n * 4);
    ref_mb_k_dropout(dr, s, n, 0.1f, 1234, 5, 0);
    CU_OK(mb_k_dropout(d_p, d_s, n, 0.1f, 1234, 5, 0));
    float *gd = down(d_p, n);
    long same_zeros = 0;
    for (long i = 0; i < n; i++) same_zeros += (gd[i] == 0.0f) == (dr[i] == 0.0f);
    CHECK(same_zeros == n, "dropout masks differ at %ld elements", n - same_zeros);
    CHECK(rel(gd, dr, n) <= 1e-6, "dropout values rel %.3g", rel(gd, dr, n));
    CU_OK(mb_k_dropout(d_s, d_s, n, 0.1f, 1234, 5, 0));
    float *gd2 = down(d_s, n);
    CHECK(memcmp(gd, gd2, n * 4) == 0, "dropout in place or repeated differs");
    /* bf16 */
    uint16_t *bh = malloc(n * 2), *bg = malloc(n * 2), *d_bf = mb_cuda_malloc(n * 2, &err);
    CU_OK(mb_k_to_bf16(d_bf, d_s, n, 0)); /* d_s holds the dropped values (gd2) */
    ref_mb_k_to_bf16(bh, gd2, n, 0);
    mb_cuda_synchronize(&err);
    mb_cuda_memcpy_d2h(bg, d_bf, n * 2, &err);
    CHECK(memcmp(bh, bg, n * 2) == 0, "bf16 rounding differs from the host's");
    free(s), free(dp), free(p), free(ds), free(gp), free(gds), free(dr), free(gd), free(gd2), free(bh), free(bg);
    mb_cuda_free(d_s), mb_cuda_free(d_dp), mb_cuda_free(d_p), mb_cuda_free(d_mask), mb_cuda_free(d_bf);
}

TEST(loss_norm_adamw) {
    if (!mb_cuda_available()) SKIP("no GPU: %s", mb_cuda_unavailable_reason());
    const int B = 300, L = 6;
    float *z = rnd((long)B * L, 3), per[300], pr[300 * 6], dl[300 * 6];
    int32_t labels[300];
    for (int b = 0; b < B; b++) labels[b] = b % 7 == 3 ? -100 : (int32_t)mb_rng_below(&rng, L);
    ref_mb_k_crossentropy(per, pr, dl, z, labels, B, L, 1.0f / 250, 0);
    float *d_z = up(z, sizeof(float) * B * L), *d_per = mb_cuda_malloc(B * 4, &err), *d_pr = mb_cuda_malloc(B * L * 4, &err),
          *d_dl = mb_cuda_malloc(B * L * 4, &err);
    int32_t *d_lab = up(labels, sizeof labels);
    CU_OK(mb_k_crossentropy(d_per, d_pr, d_dl, d_z, d_lab, B, L, 1.0f / 250, 0));
    float *g_per = down(d_per, B), *g_dl = down(d_dl, (long)B * L);
    CHECK(rel(g_per, per, B) <= 1e-5 && rel(g_dl, dl, (long)B * L) <= 1e-5, "cross-entropy");
    /* norm and AdamW over three tensors in two blocks (40005..49999 of the first not trainable),
       the moments compact in list order as runtime/optim.c lays them out */
    const size_t N = 50005, N2 = 20001, S = 60006;
    float *p = rnd(N, 1), *g = rnd(N, 1), *p2 = rnd(N2, 1), *g2 = rnd(N2, 1), *m = rnd(S, 0.1f), *v = rnd(S, 0.1f);
    for (size_t i = 0; i < S; i++) v[i] = fabsf(v[i]);
    float *d_p = up(p, N * 4), *d_g = up(g, N * 4), *d_p2 = up(p2, N2 * 4), *d_g2 = up(g2, N2 * 4),
          *d_m = up(m, S * 4), *d_v = up(v, S * 4);
    mb_k_tensor t[3] = {{p, g, 0, 40000, 0.01f}, {p + 40000, g + 40000, 40000, 5, 0.0f}, {p2, g2, 40005, 20001, 0.01f}};
    mb_k_tensor td[3] = {{d_p, d_g, 0, 40000, 0.01f}, {d_p + 40000, d_g + 40000, 40000, 5, 0.0f},
                         {d_p2, d_g2, 40005, 20001, 0.01f}};
    mb_k_tensor *d_t = up(td, sizeof td);
    double *d_tot = mb_cuda_malloc(sizeof(double), &err), *d_part = mb_cuda_malloc(3 * MB_K_NORM_BLOCKS * sizeof(double), &err);
    double tot = 0, tot_ref = 0, part[1];
    CU_OK(mb_k_grad_sumsq(d_tot, d_part, d_t, 3, 0));
    ref_mb_k_grad_sumsq(&tot_ref, part, t, 3, 0);
    mb_cuda_synchronize(&err);
    mb_cuda_memcpy_d2h(&tot, d_tot, sizeof tot, &err);
    CHECK(fabs(tot - tot_ref) <= 1e-12 * tot_ref, "sum of squares %.17g vs %.17g", tot, tot_ref);
    CU_OK(mb_k_adamw(d_m, d_v, d_t, 3, 40000, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, 0.0316f, 0.5f, 0));
    ref_mb_k_adamw(m, v, t, 3, 40000, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, 0.0316f, 0.5f, 0);
    float *gp = down(d_p, N), *gp2 = down(d_p2, N2), *gm = down(d_m, S), *gv = down(d_v, S);
    CHECK(rel(gp, p, N) <= 1e-6 && rel(gp2, p2, N2) <= 1e-6 && rel(gm, m, S) <= 1e-6 && rel(gv, v, S) <= 1e-6,
          "AdamW p %.3g p2 %.3g m %.3g v %.3g", rel(gp, p, N), rel(gp2, p2, N2), rel(gm, m, S), rel(gv, v, S));
    /* clipping's scale: one multiplication per element, so bit-exact; the untrained gap untouched */
    CU_OK(mb_k_scale_tensors(d_t, 3, 40000, 0.37f, 0));
    ref_mb_k_scale_tensors(t, 3, 40000, 0.37f, 0);
    float *gg = down(d_g, N), *gg2 = down(d_g2, N2);
    CHECK(memcmp(gg, g, N * 4) == 0 && memcmp(gg2, g2, N2 * 4) == 0, "gradient scaling differs from the host's");
    free(gg), free(gg2);
    free(z), free(g_per), free(g_dl), free(p), free(g), free(p2), free(g2), free(m), free(v), free(gp), free(gp2);
    free(gm), free(gv);
    mb_cuda_free(d_z), mb_cuda_free(d_per), mb_cuda_free(d_pr), mb_cuda_free(d_dl), mb_cuda_free(d_lab);
    mb_cuda_free(d_p), mb_cuda_free(d_g), mb_cuda_free(d_p2), mb_cuda_free(d_g2), mb_cuda_free(d_m), mb_cuda_free(d_v);
    mb_cuda_free(d_t), mb_cuda_free(d_tot), mb_cuda_free(d_part);
}

int main(void) {
    mb_rng_seed(&rng, 2024);
    if (mb_cuda_available()) {
        char name[256];
        mb_cuda_device_name(name, sizeof name, &err);
        fprintf(stderr, "    device: %s\n", name);
    }
    RUN(embeddings_and_copies_exact);
    RUN(layernorm_forward_backward);
    RUN(elementwise_and_columns);
    RUN(softmax_dropout_bf16);
    RUN(loss_norm_adamw);
    return harness_end();
}
#endif
