/* test_cuda_emul.c: the CUDA training step's host code on an emulated device.
 *
 * runtime/cuda/gpu_model.c is compiled into this test unchanged, against a
 * fake device defined below: device memory is host memory, the CUDA runtime
 * and cuBLAS calls it makes are re-implemented on the host (the GEMM takes
 * cuBLAS's column-major arguments as they are and hands them to a
 * column-major cblas_sgemm, so gpu_model.c's row-major mapping is checked,
 * not repeated), and each kernel launcher of kernels.h is a plain loop
 * written from its contract (tests/c/cuda_ref.h). What this checks
 * without a GPU: the orchestration — parameter offsets, every GEMM's
 * transposes, leading dimensions and batch strides, the head split/merge,
 * the buffer choreography of backward, the dropout offsets that backward
 * regenerates, the embedding plan upload, the optimizer table, clipping,
 * bf16 plumbing and the allocation policy — against the distilbert-tiny
 * fixture (README tolerances) and the CPU model. What it cannot check: the
 * .cu kernels themselves and real cuBLAS; scripts/gpu-check runs those.
 * Built only with the CUDA toolkit headers (MB_HAVE_CUDA); skips otherwise.
 */
#include "harness.h"

#ifndef MB_HAVE_CUDA
int main(void) {
    h_cur_name = "cuda_emulation";
    fprintf(stderr, "SKIP cuda_emulation: built without CUDA (make CUDA=1 with nvcc)\n");
    h_skipped++;
    return harness_end();
}
#else

#include <cblas.h>
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/cuda/gpu_model.c" /* the code under test, unchanged */
#include "../../runtime/cuda/gpu_optim.c"
#include "../../runtime/cuda/bf16.h"
#include "../../runtime/cuda/philox.h"
#include "../../runtime/safetensors.h"

#include "cuda_emul.c" /* the emulated device */

/* ---- the optimizer as mb.optim builds it for a model on the device ------------------------------ */

/* refs into the device blocks, as bindings/optim.c reads them from model:parameters() */
typedef struct dopt {
    mb_param_ref *refs;
    int n;
    mb_cuda_optim *o;
} dopt;

static int dopt_new(dopt *d, mb_distilbert *m, mb_cuda_model *cm, double weight_decay, mb_error *err) {
    d->n = mb_distilbert_num_tensors(m);
    d->refs = calloc((size_t)d->n, sizeof *d->refs);
    for (int i = 0; i < d->n; i++) {
        const mb_param_info *pi = mb_distilbert_param_info(m, i);
        d->refs[i] = (mb_param_ref){mb_cuda_model_params(cm) + pi->offset, mb_cuda_model_grads(cm) + pi->offset,
                                    (int64_t)pi->numel, !pi->no_decay, !mb_distilbert_trainable(m, i)};
    }
    mb_optim_config c = mb_adamw_defaults();
    c.weight_decay = weight_decay;
    d->o = mb_cuda_optim_new(d->refs, d->n, &c, err);
    return d->o != NULL;
}

/* clip_grad_norm (max_norm <= 0: measure only) then opt:step(lr) */
static mb_status dopt_step(dopt *d, double lr, double max_norm, double *norm, mb_error *err) {
    if (mb_cuda_clip_grad_norm(d->refs, d->n, max_norm, norm, err) != MB_OK) return err->code;
    return mb_cuda_optim_step(d->o, lr, err);
}

static void dopt_free(dopt *d) {
    mb_cuda_optim_free(d->o);
    free(d->refs);
}

/* ---- fixture helpers ------------------------------------------------------------------------ */

typedef struct fixture {
    char dir[1024];
    mb_safetensors *cs;
    int32_t *ids, *mask, *labels;
    int B, T;
} fixture;

static float *fx_f32(const fixture *fx, const char *name, size_t *n) {
    const mb_st_tensor *t = mb_safetensors_find(fx->cs, name);
    if (!t) return NULL;
    float *buf = malloc((size_t)t->numel * 4);
    mb_error err;
    if (mb_safetensors_read_f32(t, buf, &err) != MB_OK) {
        free(buf);
        return NULL;
    }
    if (n) *n = (size_t)t->numel;
    return buf;
}

static int32_t *fx_i32(const fixture *fx, const char *name, int64_t *shape) {
    const mb_st_tensor *t = mb_safetensors_find(fx->cs, name);
    int32_t *buf = malloc((size_t)t->numel * 4);
    mb_error err;
    mb_safetensors_read_i32(t, buf, &err);
    if (shape) memcpy(shape, t->shape, 2 * sizeof(int64_t));
    return buf;
}

static int fixture_open(fixture *fx) {
    memset(fx, 0, sizeof *fx);
    if (!harness_shared("fixtures/distilbert-tiny", fx->dir, sizeof fx->dir)) return 0;
    char path[1100];
    snprintf(path, sizeof path, "%s/cases.safetensors", fx->dir);
    mb_error err;
    fx->cs = mb_safetensors_open(path, &err);
    if (!fx->cs) return 0;
    int64_t shape[2];
    fx->ids = fx_i32(fx, "input_ids", shape);
    fx->mask = fx_i32(fx, "attention_mask", NULL);
    fx->labels = fx_i32(fx, "labels", NULL);
    fx->B = (int)shape[0];
    fx->T = (int)shape[1];
    return 1;
}

static void fixture_close(fixture *fx) {
    mb_safetensors_close(fx->cs);
    free(fx->ids);
    free(fx->mask);
    free(fx->labels);
}

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static double rel_diff(const float *a, const float *ref, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - ref[i]));
    double s = max_abs(ref, n);
    return s > 0 ? d / s : d;
}

/* ---- tests -------------------------------------------------------------------------------- */

/* fp32: loss, logits and every gradient against the fixture (README: 1e-4 of max|ref|). */
TEST(fp32_matches_fixture) {
    fixture fx;
    if (!fixture_open(&fx)) SKIP("../shared/fixtures/distilbert-tiny is absent");
    mb_error err;
    mb_distilbert *m = mb_distilbert_load(fx.dir, NULL, &err);
    CHECK(m, "%s", err.msg);
    mb_cuda_model *cm = mb_cuda_model_new(m, MB_CUDA_FP32, 1, &err);
    CHECK(cm, "%s", err.msg);
    if (!cm) return;
    int L = mb_distilbert_get_config(m)->num_labels;
    float *logits = malloc((size_t)fx.B * L * 4), per[64];
    double loss;
    CHECK(mb_cuda_model_forward(cm, fx.ids, fx.mask, fx.B, fx.T, 0, logits, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_cuda_model_loss(cm, fx.labels, fx.B, &loss, per, &err) == MB_OK, "%s", err.msg);
    float *ref_logits = fx_f32(&fx, "logits", NULL), *ref_loss = fx_f32(&fx, "loss", NULL),
          *ref_per = fx_f32(&fx, "per_example_loss", NULL);
    double e_logits = rel_diff(logits, ref_logits, (size_t)fx.B * L), e_loss = fabs(loss - ref_loss[0]) / ref_loss[0];
    CHECK(e_logits <= 1e-4, "logits rel %.3g", e_logits);
    CHECK(e_loss <= 1e-4, "loss rel %.3g", e_loss);
    CHECK(rel_diff(per, ref_per, (size_t)fx.B) <= 1e-4, "per-example losses");
    CHECK(mb_cuda_model_backward(cm, &err) == MB_OK, "%s", err.msg);
    size_t N = mb_distilbert_num_params(m);
    float *g = malloc(N * 4);
    CHECK(mb_cuda_model_download_grads(cm, g, &err) == MB_OK, "%s", err.msg);
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < mb_distilbert_num_tensors(m); i++) {
        const mb_param_info *pi = mb_distilbert_param_info(m, i);
        char key[160];
        snprintf(key, sizeof key, "grad.%s", pi->name);
        size_t n;
        float *ref = fx_f32(&fx, key, &n);
        CHECK(ref && n == pi->numel, "%s", key);
        if (!ref) continue;
        if (strstr(pi->name, "k_lin.bias")) {
            CHECK(max_abs(g + pi->offset, n) <= 1e-9 + 1e-4 * max_abs(ref, n), "%s: analytically zero", pi->name);
        } else {
            double e = rel_diff(g + pi->offset, ref, n);
            if (e > worst) {
                worst = e;
                worst_name = pi->name;
            }
        }
        free(ref);
    }
    CHECK(worst <= 1e-4, "worst gradient %s: %.3g", worst_name, worst);
    fprintf(stderr, "    emulated fp32: logits rel %.2g, loss rel %.2g, worst grad rel %.2g (%s); %ld GEMMs\n", e_logits,
            e_loss, worst, worst_name, emu_gemms);
    /* state errors */
    CHECK(mb_cuda_model_backward(cm, &err) == MB_ERR_STATE, "a second backward needs a new loss");
    free(g);
    free(logits);
    free(ref_logits);
    free(ref_loss);
    free(ref_per);
    mb_cuda_model_free(cm);
    mb_distilbert_free(m);
    fixture_close(&fx);
}

/* The 5-step trajectory (clip 1.0, and clip 0.1 which is active) through mb_cuda_clip_grad_norm and
   mb_cuda_optim_step. */
static void trajectory(fixture *fx, const char *prefix, float max_norm) {
    mb_error err;
    mb_distilbert *m = mb_distilbert_load(fx->dir, NULL, &err);
    mb_cuda_model *cm = m ? mb_cuda_model_new(m, MB_CUDA_FP32, 1, &err) : NULL;
    CHECK(cm, "%s", err.msg);
    if (!cm) return;
    dopt d;
    CHECK(dopt_new(&d, m, cm, 0.01, &err), "%s", err.msg);
    char key[160];
    snprintf(key, sizeof key, "%straj.loss", prefix);
    float *ref_loss = fx_f32(fx, key, NULL);
    snprintf(key, sizeof key, "%straj.grad_norm", prefix);
    float *ref_norm = fx_f32(fx, key, NULL);
    double wl = 0, wn = 0, wa = 0;
    for (int k = 0; k < 5; k++) {
        double loss, norm;
        CHECK(mb_cuda_model_zero_grad(cm, &err) == MB_OK && mb_cuda_model_forward(cm, fx->ids, fx->mask, fx->B, fx->T, 0, NULL, &err) == MB_OK &&
                  mb_cuda_model_loss(cm, fx->labels, fx->B, &loss, NULL, &err) == MB_OK &&
                  mb_cuda_model_backward(cm, &err) == MB_OK &&
                  dopt_step(&d, 1e-3 * (1.0 - k / 5.0), max_norm, &norm, &err) == MB_OK,
              "%s", err.msg);
        wl = fmax(wl, fabs(loss - ref_loss[k]) / ref_loss[k]);
        wn = fmax(wn, fabs(norm - ref_norm[k]) / ref_norm[k]);
    }
    CHECK(mb_cuda_optim_steps(d.o) == 5, "steps");
    dopt_free(&d);
    CHECK(mb_cuda_model_download_params(cm, &err) == MB_OK, "%s", err.msg);
    const float *p = mb_distilbert_params(m);
    for (int i = 0; i < mb_distilbert_num_tensors(m); i++) {
        const mb_param_info *pi = mb_distilbert_param_info(m, i);
        snprintf(key, sizeof key, "%safter5.%s", prefix, pi->name);
        size_t n;
        float *ref = fx_f32(fx, key, &n);
        CHECK(ref, "%s", key);
        for (size_t e = 0; ref && e < n; e++) wa = fmax(wa, fabs(p[pi->offset + e] - ref[e]));
        free(ref);
    }
    CHECK(wl <= 1e-4 && wn <= 1e-4, "%s traj: loss rel %.3g, grad_norm rel %.3g", prefix, wl, wn);
    CHECK(wa <= 1e-4, "%s after5 abs %.3g", prefix, wa);
    fprintf(stderr, "    emulated trajectory%s%s: loss rel %.2g, grad_norm rel %.2g, after5 abs %.2g\n",
            *prefix ? " " : "", prefix, wl, wn, wa);
    free(ref_loss);
    free(ref_norm);
    mb_cuda_model_free(cm);
    mb_distilbert_free(m);
}

TEST(adamw_trajectory_matches_fixture) {
    fixture fx;
    if (!fixture_open(&fx)) SKIP("../shared/fixtures/distilbert-tiny is absent");
    trajectory(&fx, "", 1.0f);
    trajectory(&fx, "clipped.", 0.1f);
    fixture_close(&fx);
}

TEST(bf16_logits_close) {
    fixture fx;
    if (!fixture_open(&fx)) SKIP("../shared/fixtures/distilbert-tiny is absent");
    mb_error err;
    mb_distilbert *m = mb_distilbert_load(fx.dir, NULL, &err);
    mb_cuda_model *cm = mb_cuda_model_new(m, MB_CUDA_BF16, 1, &err);
    CHECK(cm, "%s", err.msg);
    if (!cm) return;
    int L = mb_distilbert_get_config(m)->num_labels;
    float *logits = malloc((size_t)fx.B * L * 4), *ref = fx_f32(&fx, "logits", NULL);
    CHECK(mb_cuda_model_forward(cm, fx.ids, fx.mask, fx.B, fx.T, 0, logits, &err) == MB_OK, "%s", err.msg);
    double e = rel_diff(logits, ref, (size_t)fx.B * L);
    CHECK(e <= 2e-2, "bf16 logits rel %.3g", e);
    CHECK(e > 0, "bf16 rounding changes something (%.3g)", e);
    /* a bf16 training step runs and moves the fp32 master weights */
    double loss, norm;
    dopt d;
    CHECK(dopt_new(&d, m, cm, 0.01, &err), "%s", err.msg);
    CHECK(mb_cuda_model_loss(cm, fx.labels, fx.B, &loss, NULL, &err) == MB_OK && mb_cuda_model_backward(cm, &err) == MB_OK &&
              dopt_step(&d, 1e-3, 1.0, &norm, &err) == MB_OK, "%s", err.msg);
    /* the next forward rounds the updated master weights into the bf16 mirror */
    float *logits2 = malloc((size_t)fx.B * L * 4);
    CHECK(mb_cuda_model_forward(cm, fx.ids, fx.mask, fx.B, fx.T, 0, logits2, &err) == MB_OK, "%s", err.msg);
    CHECK(memcmp(logits, logits2, (size_t)fx.B * L * 4) != 0, "bf16 logits unchanged after a step: stale mirror");
    free(logits2);
    dopt_free(&d);
    float *ref_norm = fx_f32(&fx, "traj.grad_norm", NULL);
    CHECK(fabs(norm - ref_norm[0]) <= 5e-2 * ref_norm[0], "bf16 grad norm %.5g vs %.5g", norm, ref_norm[0]);
    fprintf(stderr, "    emulated bf16: logits rel %.2g, grad norm rel %.2g\n", e, fabs(norm - ref_norm[0]) / ref_norm[0]);
    free(ref_norm);
    free(logits);
    free(ref);
    mb_cuda_model_free(cm);
    mb_distilbert_free(m);
    fixture_close(&fx);
}

/* A ReLU model with padding, against the CPU model (independent code), eval mode. */
TEST(relu_model_matches_cpu) {
    mb_distilbert_config cfg;
    mb_error err;
    mb_config_defaults(&cfg);
    cfg.dim = 24;
    cfg.n_layers = 2;
    cfg.n_heads = 3;
    cfg.hidden_dim = 40;
    cfg.vocab_size = 50;
    cfg.max_position_embeddings = 16;
    cfg.activation = MB_ACT_RELU;
    CHECK(mb_config_set_labels(&cfg, 4, NULL, &err) == MB_OK, "%s", err.msg);
    mb_distilbert *m = mb_distilbert_new(&cfg, 9, &err);
    CHECK(m, "%s", err.msg);
    const int B = 3, T = 7;
    int32_t ids[21] = {1, 5, 9, 9, 2, 0, 0, 1, 44, 45, 46, 47, 3, 2, 1, 7, 7, 7, 2, 0, 0};
    int32_t mask[21], labels[3] = {0, 3, -100};
    for (int i = 0; i < 21; i++) mask[i] = ids[i] != 0;
    mb_cuda_model *cm = mb_cuda_model_new(m, MB_CUDA_TF32, 1, &err);
    CHECK(cm, "%s", err.msg);
    double lc, lg;
    mb_forward_opts o = {.train = 0, .keep = 1};
    CHECK(mb_distilbert_forward(m, ids, mask, B, T, &o, &err) == MB_OK &&
              mb_distilbert_loss(m, labels, NULL, B, &lc, NULL, &err) == MB_OK && mb_distilbert_backward(m, &err) == MB_OK,
          "%s", err.msg);
    CHECK(mb_cuda_model_forward(cm, ids, mask, B, T, 0, NULL, &err) == MB_OK &&
              mb_cuda_model_loss(cm, labels, B, &lg, NULL, &err) == MB_OK && mb_cuda_model_backward(cm, &err) == MB_OK,
          "%s", err.msg);
    CHECK(fabs(lc - lg) <= 1e-5 * fabs(lc), "loss cpu %.8g cuda %.8g", lc, lg);
    size_t N = mb_distilbert_num_params(m);
    float *g = malloc(N * 4);
    mb_cuda_model_download_grads(cm, g, &err);
    const float *gc = mb_distilbert_grads(m);
    for (int i = 0; i < mb_distilbert_num_tensors(m); i++) {
        const mb_param_info *pi = mb_distilbert_param_info(m, i);
        double scale = max_abs(gc + pi->offset, pi->numel);
        double e = 0;
        for (size_t k = 0; k < pi->numel; k++) e = fmax(e, fabs(g[pi->offset + k] - gc[pi->offset + k]));
        CHECK(e <= 1e-4 * scale + 1e-9, "%s: %.3g of %.3g", pi->name, e, scale);
    }
    /* the padding row (id 0) gets no gradient, as nn.Embedding(padding_idx) */
    CHECK(max_abs(g, (size_t)cfg.dim) == 0.0, "padding row gradient");
    free(g);
    mb_cuda_model_free(cm);
    mb_distilbert_free(m);
    mb_config_free(&cfg);
}

/* Dropout on: same seed -> bit-identical; another seed -> different; the
   masks matter (train loss differs from eval); frozen encoder moves only the head;
   no allocation after the first step of a shape. */
TEST(seeded_runs_frozen_and_allocation) {
    fixture fx;
    if (!fixture_open(&fx)) SKIP("../shared/fixtures/distilbert-tiny is absent");
    mb_error err;
    mb_distilbert *m = mb_distilbert_load(fx.dir, NULL, &err);
    size_t N = mb_distilbert_num_params(m);
    float *init = malloc(N * 4), *run1 = malloc(N * 4);
    memcpy(init, mb_distilbert_params(m), N * 4);
    double losses[3][3];
    uint64_t seeds[3] = {7, 7, 8};
    for (int r = 0; r < 3; r++) {
        memcpy(mb_distilbert_params(m), init, N * 4);
        mb_cuda_model *cm = mb_cuda_model_new(m, MB_CUDA_FP32, seeds[r], &err);
        CHECK(cm, "%s", err.msg);
        if (!cm) return;
        dopt d;
        CHECK(dopt_new(&d, m, cm, 0.01, &err), "%s", err.msg);
        size_t allocs_after_first = 0, bytes_after_first = 0;
        for (int k = 0; k < 3; k++) {
            double norm;
            CHECK(mb_cuda_model_zero_grad(cm, &err) == MB_OK && mb_cuda_model_forward(cm, fx.ids, fx.mask, fx.B, fx.T, 1, NULL, &err) == MB_OK &&
                      mb_cuda_model_loss(cm, fx.labels, fx.B, &losses[r][k], NULL, &err) == MB_OK &&
                      mb_cuda_model_backward(cm, &err) == MB_OK && dopt_step(&d, 1e-3, 1.0, &norm, &err) == MB_OK,
                  "%s", err.msg);
            if (k == 0) {
                allocs_after_first = emu_allocs;
                bytes_after_first = mb_cuda_model_bytes(cm);
            }
        }
        CHECK(emu_allocs == allocs_after_first, "allocations during steady-state steps");
        CHECK(mb_cuda_model_bytes(cm) == bytes_after_first, "device bytes grew");
        /* a smaller batch reuses the blocks; a longer one grows them once */
        CHECK(mb_cuda_model_forward(cm, fx.ids, fx.mask, 2, fx.T, 0, NULL, &err) == MB_OK, "%s", err.msg);
        CHECK(emu_allocs == allocs_after_first, "a smaller batch allocated");
        mb_cuda_model_download_params(cm, &err);
        if (r == 0) memcpy(run1, mb_distilbert_params(m), N * 4);
        else if (r == 1) CHECK(memcmp(run1, mb_distilbert_params(m), N * 4) == 0, "same seed, different weights");
        else CHECK(memcmp(run1, mb_distilbert_params(m), N * 4) != 0, "another seed, same weights");
        dopt_free(&d);
        mb_cuda_model_free(cm);
    }
    CHECK(memcmp(losses[0], losses[1], sizeof losses[0]) == 0, "same seed, different losses");
    /* one train step's dropout calls: the forward's sites take distinct offsets,
       and backward regenerates each with the forward's offset and size */
    {
        mb_cuda_model *cm = mb_cuda_model_new(m, MB_CUDA_FP32, 3, &err);
        double loss;
        emu_dropout_calls = 0;
        CHECK(mb_cuda_model_forward(cm, fx.ids, fx.mask, fx.B, fx.T, 1, NULL, &err) == MB_OK, "%s", err.msg);
        long nf = emu_dropout_calls;
        int n_layers = mb_distilbert_get_config(m)->n_layers;
        CHECK(nf == 2 + 2 * n_layers, "%ld forward dropout calls for %d layers", nf, n_layers);
        for (long i = 0; i < nf; i++)
            for (long j = 0; j < i; j++) CHECK(emu_dropout_off[i] != emu_dropout_off[j], "sites %ld and %ld share an offset", i, j);
        CHECK(mb_cuda_model_loss(cm, fx.labels, fx.B, &loss, NULL, &err) == MB_OK && mb_cuda_model_backward(cm, &err) == MB_OK,
              "%s", err.msg);
        for (long i = nf; i < emu_dropout_calls && i < 256; i++) {
            int found = 0;
            for (long j = 0; j < nf; j++) found |= emu_dropout_off[j] == emu_dropout_off[i] && emu_dropout_n[j] == emu_dropout_n[i];
            CHECK(found, "backward dropout call %ld (offset %llu) matches no forward site", i,
                  (unsigned long long)emu_dropout_off[i]);
        }
        mb_cuda_model_free(cm);
    }
    CHECK(losses[0][0] != losses[2][0], "another seed, same first loss");
    float *ref_loss = fx_f32(&fx, "traj.loss", NULL);
    CHECK(fabs(losses[0][0] - ref_loss[0]) > 1e-4, "train-mode loss equals the eval loss: dropout inactive?");
    free(ref_loss);

    /* frozen encoder: only pre_classifier/classifier move */
    memcpy(mb_distilbert_params(m), init, N * 4);
    mb_distilbert_freeze_encoder(m, 1);
    mb_cuda_model *cm = mb_cuda_model_new(m, MB_CUDA_FP32, 1, &err);
    double loss, norm;
    dopt d;
    CHECK(dopt_new(&d, m, cm, 0.01, &err), "%s", err.msg);
    CHECK(mb_cuda_model_forward(cm, fx.ids, fx.mask, fx.B, fx.T, 0, NULL, &err) == MB_OK &&
              mb_cuda_model_loss(cm, fx.labels, fx.B, &loss, NULL, &err) == MB_OK &&
              mb_cuda_model_backward(cm, &err) == MB_OK && dopt_step(&d, 1e-3, 1.0, &norm, &err) == MB_OK,
          "%s", err.msg);
    float *ref_fnorm = fx_f32(&fx, "frozen.traj.grad_norm", NULL);
    CHECK(ref_fnorm && fabs(norm - ref_fnorm[0]) <= 1e-4 * ref_fnorm[0], "frozen grad norm %.6g vs %.6g", norm,
          ref_fnorm ? ref_fnorm[0] : -1);
    mb_cuda_model_download_params(cm, &err);
    int head0 = mb_distilbert_find_param(m, "pre_classifier.weight");
    size_t split = mb_distilbert_param_info(m, head0)->offset;
    CHECK(memcmp(init, mb_distilbert_params(m), split * 4) == 0, "the frozen encoder moved");
    CHECK(memcmp(init + split, mb_distilbert_params(m) + split, (N - split) * 4) != 0, "the head did not move");
    free(ref_fnorm);
    dopt_free(&d);
    mb_cuda_model_free(cm);
    mb_distilbert_free(m);
    free(init);
    free(run1);
    fixture_close(&fx);
}

TEST(input_errors) {
    mb_distilbert_config cfg;
    mb_error err;
    mb_config_defaults(&cfg);
    cfg.dim = 8;
    cfg.n_layers = 1;
    cfg.n_heads = 2;
    cfg.hidden_dim = 16;
    cfg.vocab_size = 20;
    cfg.max_position_embeddings = 4;
    mb_config_set_labels(&cfg, 2, NULL, &err);
    mb_distilbert *m = mb_distilbert_new(&cfg, 1, &err);
    mb_cuda_model *cm = mb_cuda_model_new(m, MB_CUDA_FP32, 1, &err);
    int32_t ids[4] = {1, 2, 25, 0}, labels[2] = {0, 5};
    double loss;
    /* the CPU model's check and message (mb_config_check_ids) */
    CHECK(mb_cuda_model_forward(cm, ids, NULL, 1, 4, 0, NULL, &err) == MB_ERR_RANGE &&
              strstr(err.msg, "input_ids[1][3] = 25 is outside the vocabulary (0..19)"),
          "%s", err.msg);
    CHECK(mb_cuda_model_forward(cm, ids, NULL, 1, 5, 0, NULL, &err) == MB_ERR_SHAPE, "%s", err.msg);
    CHECK(mb_cuda_model_loss(cm, labels, 2, &loss, NULL, &err) == MB_ERR_STATE, "%s", err.msg);
    ids[2] = 3;
    CHECK(mb_cuda_model_forward(cm, ids, NULL, 2, 2, 0, NULL, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_cuda_model_loss(cm, labels, 2, &loss, NULL, &err) == MB_ERR_RANGE, "%s", err.msg);
    CHECK(mb_cuda_model_loss(cm, labels, 3, &loss, NULL, &err) == MB_ERR_SHAPE, "%s", err.msg);
    CHECK(mb_cuda_model_forward(cm, ids, NULL, 1, 4, 0, NULL, NULL) == MB_OK, "NULL err is accepted");
    mb_cuda_model_free(cm);
    mb_distilbert_free(m);
    mb_config_free(&cfg);
}

TEST(no_device_leaks) {
    mb_cuda_release_scratch(); /* the clipping scratch kept between calls */
    CHECK(emu_live == 0, "%zu device bytes still held", emu_live);
    CHECK(emu_frees == emu_allocs, "device buffers leaked: %zu allocations, %zu frees", emu_allocs, emu_frees);
}

int main(void) {
    RUN(fp32_matches_fixture);
    RUN(adamw_trajectory_matches_fixture);
    RUN(bf16_logits_close);
    RUN(relu_model_matches_cpu);
    RUN(seeded_runs_frozen_and_allocation);
    RUN(input_errors);
    RUN(no_device_leaks);
    return harness_end();
}
#endif
