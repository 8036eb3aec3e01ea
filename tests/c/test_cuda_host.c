/* test_cuda_host.c: the CUDA backend's host-side logic, and its behaviour without a GPU.
 *
 * What runs here on any machine: the Philox4x32-10 generator that the
 * dropout kernels use (runtime/cuda/philox.h, against Random123's
 * known-answer vectors), the bf16 rounding of the bf16 mode (round to
 * nearest even, against hand-derived bit patterns), the deterministic
 * embedding-backward plan (against a naive accumulation), the launch
 * configurations, and the fused AdamW + clipping arithmetic
 * (runtime/cuda/adamw.h) driven by the CPU model over the distilbert-tiny
 * fixture's 5-step trajectory. Without a GPU (or in a CUDA=0 build) every
 * device call must fail cleanly with MB_ERR_UNSUPPORTED; with a GPU the
 * device tests at the end run instead (scripts/gpu-check).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/cuda.h"
#include "../../runtime/cuda/adamw.h"
#include "../../runtime/cuda/bf16.h"
#include "../../runtime/cuda/embed_plan.h"
#include "../../runtime/cuda/launch.h"
#include "../../runtime/cuda/philox.h"
#include "../../runtime/distilbert.h"
#include "../../runtime/rng.h"
#include "../../runtime/safetensors.h"
#include "harness.h"

/* ---- Philox ------------------------------------------------------------------------ */

/* Random123 kat_vectors: philox4x32 10 CTR[4] KEY[2] -> OUT[4]. */
TEST(philox_known_answers) {
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6,
         0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
         0x24126ea1},
    };
    for (int v = 0; v < 3; v++) {
        uint32_t out[4];
        mb_philox4x32_10(kat[v], kat[v] + 4, out);
        for (int i = 0; i < 4; i++) CHECK(out[i] == kat[v][6 + i], "vector %d word %d: %08x vs %08x", v, i, out[i], kat[v][6 + i]);
    }
}

/* Dropout masks: a pure function of (seed, offset, index); keep rate 1-p;
   different offsets and seeds give different masks. */
TEST(philox_dropout_masks) {
    const long n = 200003;
    const float p = 0.1f;
    long kept = 0, same_offset = 0, same_seed = 0;
    for (long i = 0; i < n; i++) {
        int k = mb_philox_keep(1234, 7, (uint64_t)i, p);
        CHECK(k == mb_philox_keep(1234, 7, (uint64_t)i, p), "element %ld not reproducible", i);
        kept += k;
        same_offset += k == mb_philox_keep(1234, 8, (uint64_t)i, p);
        same_seed += k == mb_philox_keep(1235, 7, (uint64_t)i, p);
    }
    double rate = (double)kept / n, sd = sqrt(p * (1 - p) / n);
    CHECK(fabs(rate - (1 - p)) < 5 * sd, "keep rate %.5f, expected %.3f +- %.5f", rate, 1 - p, 5 * sd);
    /* independent masks agree on p^2 + (1-p)^2 = 0.82 of the elements */
    double agree = 0.82, sda = sqrt(agree * (1 - agree) / n);
    CHECK(fabs((double)same_offset / n - agree) < 5 * sda, "offsets 7 and 8 agree on %.4f", (double)same_offset / n);
    CHECK(fabs((double)same_seed / n - agree) < 5 * sda, "seeds 1234 and 1235 agree on %.4f", (double)same_seed / n);
    /* uniform words: mean 1/2, and the extremes are in range */
    double sum = 0;
    for (uint64_t g = 0; g < 50000; g++) {
        uint32_t w[4];
        mb_philox_words(99, 0, g, w);
        for (int j = 0; j < 4; j++) {
            float u = mb_philox_uniform(w[j]);
            CHECK(u >= 0.0f && u < 1.0f, "uniform %g", u);
            sum += u;
        }
    }
    CHECK(fabs(sum / 200000 - 0.5) < 5 * sqrt(1.0 / 12 / 200000), "mean %.5f", sum / 200000);
    CHECK(mb_philox_uniform(0xffffffffu) < 1.0f && mb_philox_uniform(0) == 0.0f, "%s", "mb_philox_uniform(0xffffffffu) < 1.0f && mb_philox_uniform(0");
}

/* ---- bf16 --------------------------------------------------------------------------- */

TEST(bf16_round_to_nearest_even) {
    struct { uint32_t in; uint16_t out; const char *why; } cases[] = {
        {0x3f800000u, 0x3f80, "1.0 exact"},
        {0x3f808000u, 0x3f80, "1 + half an ulp: tie, to even (down)"},
        {0x3f818000u, 0x3f82, "tie with an odd kept bit: up"},
        {0x3f808001u, 0x3f81, "just above the tie: up"},
        {0x3f807fffu, 0x3f80, "just below the tie: down"},
        {0xbf808001u, 0xbf81, "negative, above the tie: away from zero"},
        {0x40490fdbu, 0x4049, "pi"},
        {0x7f7fffffu, 0x7f80, "FLT_MAX rounds to +Inf"},
        {0x7f800000u, 0x7f80, "+Inf"},
        {0xff800000u, 0xff80, "-Inf"},
        {0x00000001u, 0x0000, "smallest subnormal to +0"},
        {0x80000000u, 0x8000, "-0"},
        {0x7fc00000u, 0x7fc0, "quiet NaN"},
        {0x7f800001u, 0x7fc0, "signalling NaN stays NaN (quiet)"},
        {0x3f7fffffu, 0x3f80, "1 - ulp rounds up into the next binade"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = mb_f32_to_bf16(mb_bits_f32(cases[i].in));
        CHECK(got == cases[i].out, "%s: %08x -> %04x, expected %04x", cases[i].why, cases[i].in, got, cases[i].out);
    }
    /* property: the result is one of the two neighbours, and the nearer one */
    mb_rng rng;
    mb_rng_seed(&rng, 5);
    for (int i = 0; i < 100000; i++) {
        float x = (float)(mb_rng_normal(&rng) * pow(10.0, (double)(i % 20) - 10));
        float r = mb_bf16_to_f32(mb_f32_to_bf16(x));
        uint32_t u = mb_f32_bits(x);
        float lo = mb_bits_f32(u & 0xffff0000u), hi = mb_bits_f32((u & 0xffff0000u) + 0x10000u);
        CHECK(r == lo || r == hi, "%g -> %g not a neighbour", x, r);
        CHECK(fabs((double)r - x) <= fabs((double)(r == lo ? hi : lo) - x), "%g -> %g not the nearer", x, r);
        if (fabs((double)r - x) > 0.5 * fabs((double)hi - lo) * (1 + 1e-7)) break;
    }
}

/* ---- embedding backward plan ------------------------------------------------------------ */

TEST(embed_plan_matches_naive) {
    const int B = 7, T = 13, C = 5, V = 40, pad = 0, n = B * T;
    int32_t ids[7 * 13];
    float dout[7 * 13 * 5], naive[40 * 5], planned[40 * 5];
    mb_rng rng;
    mb_rng_seed(&rng, 11);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(mb_rng_below(&rng, 12)) * 3; /* repeats, pads (0), gaps */
    for (int i = 0; i < n * C; i++) dout[i] = (float)mb_rng_normal(&rng);
    mb_embed_plan p = {0};
    mb_error err;
    CHECK(mb_embed_plan_build(&p, ids, n, V, pad, &err) == MB_OK, "%s", err.msg);
    /* structure: ascending rows, every non-pad position once, ascending within a row */
    int seen = 0, pads = 0;
    for (int i = 0; i < n; i++) pads += ids[i] == pad;
    CHECK(p.n_pos == n - pads, "%d positions, expected %d", p.n_pos, n - pads);
    for (int r = 0; r < p.n_rows; r++) {
        CHECK(r == 0 || p.rows[r] > p.rows[r - 1], "rows not ascending at %d", r);
        CHECK(p.rows[r] != pad, "padding row planned");
        for (int k = p.start[r]; k < p.start[r + 1]; k++) {
            CHECK(ids[p.pos[k]] == p.rows[r], "position %d is not id %d", p.pos[k], p.rows[r]);
            CHECK(k == p.start[r] || p.pos[k] > p.pos[k - 1], "positions not ascending in row %d", r);
            seen++;
        }
    }
    CHECK(seen == p.n_pos, "%s", "seen == p.n_pos");
    /* values: bit-identical to the serial loop from zero (same order of additions) */
    memset(naive, 0, sizeof naive);
    memset(planned, 0, sizeof planned);
    for (int i = 0; i < n; i++)
        if (ids[i] != pad)
            for (int c = 0; c < C; c++) naive[ids[i] * C + c] += dout[i * C + c];
    mb_embed_plan_apply(&p, planned, dout, C);
    CHECK(memcmp(naive, planned, sizeof naive) == 0, "planned accumulation differs from the naive loop");
    /* and it agrees with the CPU model's embedding_backward-style accumulation from a non-zero start */
    for (int i = 0; i < V * C; i++) naive[i] = planned[i] = (float)i * 0.25f;
    for (int i = 0; i < n; i++)
        if (ids[i] != pad)
            for (int c = 0; c < C; c++) naive[ids[i] * C + c] += dout[i * C + c];
    mb_embed_plan_apply(&p, planned, dout, C);
    for (int i = 0; i < V * C; i++) CHECK_NEAR(planned[i], naive[i], 1e-5 * (1 + fabs(naive[i])));
    /* reuse with another batch (buffers kept), and errors */
    int32_t small[3] = {5, 5, 0};
    CHECK(mb_embed_plan_build(&p, small, 3, V, pad, &err) == MB_OK, "%s", "mb_embed_plan_build(&p, small, 3, V, pad, &err) == MB_OK");
    CHECK(p.n_rows == 1 && p.rows[0] == 5 && p.start[1] == 2 && p.pos[0] == 0 && p.pos[1] == 1, "%s", "p.n_rows == 1 && p.rows[0] == 5 && p.start[1] == 2 && p.pos[");
    int32_t bad[2] = {1, 40};
    CHECK(mb_embed_plan_build(&p, bad, 2, V, pad, &err) == MB_ERR_RANGE && strstr(err.msg, "id 40"), "%s", err.msg);
    mb_embed_plan_free(&p);
}

/* ---- launch configuration ------------------------------------------------------------------ */

TEST(launch_configuration) {
    CHECK(mb_grid_1d(0, 256, 4096) == 0, "%s", "mb_grid_1d(0, 256, 4096) == 0");
    CHECK(mb_grid_1d(1, 256, 4096) == 1, "%s", "mb_grid_1d(1, 256, 4096) == 1");
    CHECK(mb_grid_1d(256, 256, 4096) == 1, "%s", "mb_grid_1d(256, 256, 4096) == 1");
    CHECK(mb_grid_1d(257, 256, 4096) == 2, "%s", "mb_grid_1d(257, 256, 4096) == 2");
    CHECK(mb_grid_1d(1L << 40, 256, 4096) == 4096, "capped");
    CHECK(mb_block_for_row(1) == 32 && mb_block_for_row(32) == 32 && mb_block_for_row(33) == 64, "%s", "mb_block_for_row(1) == 32 && mb_block_for_row(32) == 32 && m");
    CHECK(mb_block_for_row(768) == 1024 && mb_block_for_row(64) == 64 && mb_block_for_row(100000) == 1024, "%s", "mb_block_for_row(768) == 1024 && mb_block_for_row(64) == 64 ");
    for (int C = 1; C < 5000; C += 37) {
        int t = mb_block_for_row(C);
        CHECK((t & (t - 1)) == 0 && t >= 32 && t <= 1024 && (t >= C || t == 1024), "C=%d -> %d", C, t);
    }
    CHECK(mb_row_smem(256, 768, 48 * 1024) == 256 * 4 + 768 * 4, "%s", "mb_row_smem(256, 768, 48 * 1024) == 256 * 4 + 768 * 4");
    CHECK(mb_row_smem(1024, 30000, 48 * 1024) == 1024 * 4, "row too big: reduction only");
}

/* ---- AdamW + clipping over the fixture trajectory -------------------------------------------- */

static float *fixture_f32(const mb_safetensors *st, const char *name, size_t *n) {
    const mb_st_tensor *t = mb_safetensors_find(st, name);
    if (!t) return NULL;
    float *buf = malloc((size_t)t->numel * sizeof(float));
    mb_error err;
    if (buf && mb_safetensors_read_f32(t, buf, &err) != MB_OK) {
        free(buf);
        return NULL;
    }
    if (n) *n = (size_t)t->numel;
    return buf;
}

static int32_t *fixture_i32(const mb_safetensors *st, const char *name, int64_t *shape) {
    const mb_st_tensor *t = mb_safetensors_find(st, name);
    if (!t) return NULL;
    int32_t *buf = malloc((size_t)t->numel * sizeof(int32_t));
    mb_error err;
    if (buf && mb_safetensors_read_i32(t, buf, &err) != MB_OK) {
        free(buf);
        return NULL;
    }
    if (shape) memcpy(shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
    return buf;
}

/* Five steps as the fixture: loss, backward, norm, clip, AdamW(lr_k) with
   mb_clip_factor and mb_adamw_update; prefix "" or "clipped.". */
static void run_trajectory(const char *dir, const mb_safetensors *cs, const char *prefix, float max_norm) {
    mb_error err;
    mb_distilbert *m = mb_distilbert_load(dir, NULL, &err);
    CHECK(m, "%s", err.msg);
    if (!m) return;
    int64_t shape[2];
    int32_t *ids = fixture_i32(cs, "input_ids", shape), *mask = fixture_i32(cs, "attention_mask", NULL);
    int32_t *labels = fixture_i32(cs, "labels", NULL);
    int B = (int)shape[0], T = (int)shape[1];
    char key[160];
    snprintf(key, sizeof key, "%straj.loss", prefix);
    float *ref_loss = fixture_f32(cs, key, NULL);
    snprintf(key, sizeof key, "%straj.grad_norm", prefix);
    float *ref_norm = fixture_f32(cs, key, NULL);
    CHECK(ids && mask && labels && ref_loss && ref_norm, "fixture tensors missing (%s)", prefix);
    size_t N = mb_distilbert_num_params(m);
    float *mo = calloc(N, sizeof(float)), *ve = calloc(N, sizeof(float));
    float *p = mb_distilbert_params(m), *g = mb_distilbert_grads(m);
    double worst_loss = 0, worst_norm = 0;
    for (int k = 0; k < 5 && ref_loss && ref_norm && ids; k++) {
        mb_distilbert_zero_grad(m);
        mb_forward_opts o = {.train = 0, .keep = 1};
        double loss;
        CHECK(mb_distilbert_forward(m, ids, mask, B, T, &o, &err) == MB_OK, "%s", err.msg);
        CHECK(mb_distilbert_loss(m, labels, NULL, B, &loss, NULL, &err) == MB_OK, "%s", err.msg);
        CHECK(mb_distilbert_backward(m, &err) == MB_OK, "%s", err.msg);
        double ss = 0;
        for (size_t i = 0; i < N; i++) ss += (double)g[i] * g[i];
        double norm = sqrt(ss);
        worst_loss = fmax(worst_loss, fabs(loss - ref_loss[k]) / fabs(ref_loss[k]));
        worst_norm = fmax(worst_norm, fabs(norm - ref_norm[k]) / fabs(ref_norm[k]));
        float clip = mb_clip_factor(norm, max_norm);
        float lr = 1e-3f * (1.0f - k / 5.0f);
        int t = k + 1;
        float bc1 = 1.0f - powf(0.9f, (float)t), bc2s = sqrtf(1.0f - powf(0.999f, (float)t));
        for (int ti = 0; ti < mb_distilbert_num_tensors(m); ti++) {
            const mb_param_info *pi = mb_distilbert_param_info(m, ti);
            float wd = pi->no_decay ? 0.0f : 0.01f;
            for (size_t e = pi->offset; e < pi->offset + pi->numel; e++)
                mb_adamw_update(&p[e], &mo[e], &ve[e], g[e] * clip, lr, 0.9f, 0.999f, 1e-8f, wd, bc1, bc2s);
        }
    }
    /* README tolerances: traj 1e-4 relative; after5 atol 1e-4 */
    CHECK(worst_loss <= 1e-4, "%s loss rel err %.3g", prefix, worst_loss);
    CHECK(worst_norm <= 1e-4, "%s grad_norm rel err %.3g", prefix, worst_norm);
    double worst_after = 0;
    for (int ti = 0; ti < mb_distilbert_num_tensors(m); ti++) {
        const mb_param_info *pi = mb_distilbert_param_info(m, ti);
        snprintf(key, sizeof key, "%safter5.%s", prefix, pi->name);
        size_t n = 0;
        float *ref = fixture_f32(cs, key, &n);
        CHECK(ref && n == pi->numel, "%s missing", key);
        if (!ref) continue;
        for (size_t e = 0; e < n; e++) worst_after = fmax(worst_after, fabs(p[pi->offset + e] - ref[e]));
        free(ref);
    }
    CHECK(worst_after <= 1e-4, "%s after5 max abs err %.3g", prefix, worst_after);
    fprintf(stderr, "    trajectory%s%s: loss rel %.2g, grad_norm rel %.2g, after5 abs %.2g\n", *prefix ? " " : "",
            prefix, worst_loss, worst_norm, worst_after);
    free(mo);
    free(ve);
    free(ids);
    free(mask);
    free(labels);
    free(ref_loss);
    free(ref_norm);
    mb_distilbert_free(m);
}

TEST(adamw_and_clip_match_fixture_trajectory) {
    char dir[1024], path[1100];
    if (!harness_shared("fixtures/distilbert-tiny", dir, sizeof dir)) SKIP("../shared/fixtures/distilbert-tiny is absent");
    snprintf(path, sizeof path, "%s/cases.safetensors", dir);
    mb_error err;
    mb_safetensors *cs = mb_safetensors_open(path, &err);
    CHECK(cs, "%s", err.msg);
    if (!cs) return;
    run_trajectory(dir, cs, "", 1.0f);
    run_trajectory(dir, cs, "clipped.", 0.1f);
    mb_safetensors_close(cs);
}

TEST(clip_factor) {
    CHECK(mb_clip_factor(0.5, 1.0f) == 1.0f, "%s", "mb_clip_factor(0.5, 1.0f) == 1.0f");
    CHECK_NEAR(mb_clip_factor(4.0, 1.0f), 1.0 / (4.0 + 1e-6), 1e-7);
    CHECK(mb_clip_factor(4.0, 0.0f) == 1.0f, "max_norm 0: no clipping");
}

/* ---- without a GPU ------------------------------------------------------------------------------ */

TEST(precision_names) {
    CHECK(mb_cuda_precision_parse("fp32") == MB_CUDA_FP32 && mb_cuda_precision_parse("bf16") == MB_CUDA_BF16, "%s", "mb_cuda_precision_parse(\"fp32\") == MB_CUDA_FP32 && mb_cuda");
    CHECK(mb_cuda_precision_parse("tf32") == MB_CUDA_TF32 && mb_cuda_precision_parse("fp16") == -1, "%s", "mb_cuda_precision_parse(\"tf32\") == MB_CUDA_TF32 && mb_cuda");
    CHECK(strcmp(mb_cuda_precision_name(MB_CUDA_DEFAULT_PRECISION), "tf32") == 0, "default precision");
}

TEST(no_gpu_fails_cleanly) {
    if (mb_cuda_available()) SKIP("a GPU is present: the device tests cover it");
    const char *why = mb_cuda_unavailable_reason();
    CHECK(why && *why, "a reason is given");
    fprintf(stderr, "    no GPU here: %s\n", why);
    mb_error err;
    char name[64] = "x";
    CHECK(mb_cuda_device_name(name, sizeof name, &err) == MB_ERR_UNSUPPORTED && name[0] == '\0', "%s", "mb_cuda_device_name(name, sizeof name, &err) == MB_ERR_UNSUP");
    CHECK(strstr(err.msg, mb_cuda_built() ? "not available" : "built without CUDA"), "%s", err.msg);
    size_t f = 1, t = 1;
    CHECK(mb_cuda_memory(&f, &t, &err) == MB_ERR_UNSUPPORTED && f == 0 && t == 0, "%s", "mb_cuda_memory(&f, &t, &err) == MB_ERR_UNSUPPORTED && f == 0");
    err.code = MB_OK;
    CHECK(mb_cuda_malloc(1024, &err) == NULL && err.code == MB_ERR_UNSUPPORTED, "%s", "mb_cuda_malloc(1024, &err) == NULL && err.code == MB_ERR_UNS");
    char host[4] = {0};
    CHECK(mb_cuda_memcpy_h2d(host, host, 4, &err) == MB_ERR_UNSUPPORTED, "%s", "mb_cuda_memcpy_h2d(host, host, 4, &err) == MB_ERR_UNSUPPORTE");
    CHECK(mb_cuda_memcpy_d2h(host, host, 4, &err) == MB_ERR_UNSUPPORTED, "%s", "mb_cuda_memcpy_d2h(host, host, 4, &err) == MB_ERR_UNSUPPORTE");
    CHECK(mb_cuda_synchronize(&err) == MB_ERR_UNSUPPORTED, "%s", "mb_cuda_synchronize(&err) == MB_ERR_UNSUPPORTED");
    mb_cuda_free(NULL);
    CHECK(mb_cuda_allocated_bytes() == 0 && mb_cuda_peak_bytes() == 0, "%s", "mb_cuda_allocated_bytes() == 0 && mb_cuda_peak_bytes() == 0");
    mb_distilbert_config cfg;
    memset(&cfg, 0, sizeof cfg);
    mb_config_defaults(&cfg);
    cfg.dim = 16;
    cfg.n_layers = 1;
    cfg.n_heads = 2;
    cfg.hidden_dim = 32;
    cfg.vocab_size = 50;
    cfg.max_position_embeddings = 16;
    CHECK(mb_config_set_labels(&cfg, 2, NULL, &err) == MB_OK, "%s", err.msg);
    mb_distilbert *m = mb_distilbert_new(&cfg, 1, &err);
    CHECK(m, "%s", err.msg);
    err.code = MB_OK;
    CHECK(mb_cuda_model_new(m, MB_CUDA_FP32, 1, &err) == NULL && err.code == MB_ERR_UNSUPPORTED, "%s", err.msg);
    mb_cuda_model_free(NULL);
    mb_distilbert_free(m);
    mb_config_free(&cfg);
}

int main(void) {
    RUN(philox_known_answers);
    RUN(philox_dropout_masks);
    RUN(bf16_round_to_nearest_even);
    RUN(embed_plan_matches_naive);
    RUN(launch_configuration);
    RUN(clip_factor);
    RUN(adamw_and_clip_match_fixture_trajectory);
    RUN(precision_names);
    RUN(no_gpu_fails_cleanly);
    return harness_end();
}
