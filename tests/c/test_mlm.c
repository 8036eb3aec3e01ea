/* test_mlm.c: the masked-LM model (runtime/distilbert_mlm.h) on a tiny random config:
 * finite-difference gradients of every tensor, including both parts of the tied word-embedding
 * gradient (lookup and projector: a row absent from the input and the [PAD] row get only the
 * projector part); HF's checkpoint format (no vocab_projector.weight) and bit-identical reload; a
 * classification model loads the encoder from it; errors. The PyTorch parity (fixture
 * distilbert-mlm-tiny) is tests/spec/mlm_spec.lua. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/distilbert_mlm.h"
#include "../../runtime/safetensors.h"
#include "harness.h"

enum { B = 3, T = 7, V = 50 };
static const int32_t IDS[B * T] = {1, 5, 9, 13, 2, 0, 0, 1, 44, 45, 46, 47, 48, 2, 1, 7, 2, 0, 0, 0, 0};
static const int32_t MASK[B * T] = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
/* original ids at 4 "masked" positions, -100 elsewhere */
static const int32_t LABELS[B * T] = {-100, 6, -100, 13, -100, -100, -100, -100, 30, -100, -100, -100, 48, -100,
                                      -100, 7, -100, -100, -100, -100, -100};

static mb_distilbert_mlm *tiny(uint64_t seed) {
    mb_distilbert_config cfg;
    mb_config_defaults(&cfg);
    cfg.vocab_size = V;
    cfg.dim = 16;
    cfg.n_layers = 2;
    cfg.n_heads = 4;
    cfg.hidden_dim = 24;
    cfg.max_position_embeddings = 12;
    cfg.initializer_range = 0.3f; /* gradients well above float noise */
    mb_error err;
    mb_config_set_labels(&cfg, 2, NULL, &err); /* the unused classification head's size */
    mb_distilbert_mlm *m = mb_mlm_new(&cfg, seed, &err);
    mb_config_free(&cfg);
    CHECK(m != NULL, "%s", err.msg);
    if (m) { /* non-trivial head LayerNorm and bias */
        int i = mb_mlm_find_param(m, "vocab_projector.bias");
        for (int k = 0; k < V; k++) mb_mlm_param(m, i)[k] = 0.1f * (float)((k * 7) % 5 - 2);
    }
    return m;
}

static double loss_of(mb_distilbert_mlm *m) {
    mb_error err;
    double loss = NAN;
    if (mb_mlm_loss(m, IDS, MASK, LABELS, B, T, 0, &loss, NULL, &err) != MB_OK) return NAN;
    return loss;
}

static int fd_one(mb_distilbert_mlm *m, int i, size_t k, const float *g, double *worst) {
    float *p = mb_mlm_param(m, i);
    float old = p[k];
    double h = 1e-2 * fmax(1.0, fabs(old));
    p[k] = (float)(old + h);
    double lp = loss_of(m);
    p[k] = (float)(old - h);
    double lm = loss_of(m);
    p[k] = old;
    double fd = (lp - lm) / (2 * h), diff = fabs(fd - g[k]);
    if (diff / (fabs(fd) + 1e-3) > *worst) *worst = diff / (fabs(fd) + 1e-3);
    if (diff > 2e-3 + 2e-2 * fabs(fd)) {
        fprintf(stderr, "FD %s[%zu]: fd %.6g analytic %.6g\n", mb_mlm_param_info(m, i)->name, k, fd, g[k]);
        return 1;
    }
    return 0;
}

TEST(finite_difference_gradients) {
    mb_distilbert_mlm *m = tiny(11);
    if (!m) return;
    mb_error err;
    double loss;
    int n;
    mb_mlm_zero_grad(m);
    CHECK(mb_mlm_loss(m, IDS, MASK, LABELS, B, T, 0, &loss, &n, &err) == MB_OK, "%s", err.msg);
    CHECK(n == 5, "%d labelled positions", n);
    CHECK(mb_mlm_backward(m, &err) == MB_OK, "%s", err.msg);
    int nt = mb_mlm_num_tensors(m), bad = 0, checked = 0;
    CHECK(nt == 36 + 5, "%d tensors", nt);
    /* copy the gradients: the FD losses below overwrite nothing in them, but be safe */
    float **g = calloc((size_t)nt, sizeof *g);
    for (int i = 0; i < nt; i++) {
        size_t numel = mb_mlm_param_info(m, i)->numel;
        g[i] = malloc(numel * sizeof(float));
        memcpy(g[i], mb_mlm_grad(m, i), numel * sizeof(float));
    }
    mb_rng rng;
    mb_rng_seed(&rng, 5);
    double worst = 0;
    for (int i = 0; i < nt; i++) {
        const mb_param_info *pi = mb_mlm_param_info(m, i);
        if (strstr(pi->name, "k_lin.bias")) continue; /* analytically 0 (softmax shift invariance) */
        for (int s = 0; s < 3; s++) {
            bad += fd_one(m, i, mb_rng_below(&rng, pi->numel), g[i], &worst);
            checked++;
        }
    }
    /* the tied matrix: a row in the input (lookup + projector), a row absent from the input
       (projector only) and [PAD] row 0 (projector only: padding_idx gets no lookup gradient) */
    const int rows[3] = {45, 30, 0};
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 16; c += 5) {
            bad += fd_one(m, 0, (size_t)rows[r] * 16 + c, g[0], &worst);
            checked++;
        }
    double row0 = 0;
    for (int c = 0; c < 16; c++) row0 += fabs(g[0][c]);
    CHECK(row0 > 0, "[PAD] row has no projector gradient");
    printf("FD: %d samples over %d tensors, %d outside tolerance, worst rel %.3g\n", checked, nt, bad, worst);
    CHECK(bad == 0, "%d of %d finite-difference samples disagree", bad, checked);
    for (int i = 0; i < nt; i++) free(g[i]);
    free(g);
    mb_mlm_free(m);
}

TEST(forward_at_positions_matches_every_position) {
    mb_distilbert_mlm *m = tiny(3);
    if (!m) return;
    mb_error err;
    CHECK(mb_mlm_forward(m, IDS, MASK, B, T, NULL, 0, 0, 0, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_mlm_num_rows(m) == B * T, "failed");
    float *all = malloc(sizeof(float) * B * T * V);
    memcpy(all, mb_mlm_logits(m), sizeof(float) * B * T * V);
    int32_t pos[3] = {15, 1, 8};
    CHECK(mb_mlm_forward(m, IDS, MASK, B, T, pos, 3, 0, 0, &err) == MB_OK, "%s", err.msg);
    double d = 0;
    for (int r = 0; r < 3; r++)
        for (int j = 0; j < V; j++) d = fmax(d, fabs(mb_mlm_logits(m)[r * V + j] - all[pos[r] * V + j]));
    CHECK(d <= 1e-5, "max diff %g", d);
    free(all);
    mb_mlm_free(m);
}

TEST(save_hf_format_and_reload) {
    mb_distilbert_mlm *m = tiny(5);
    if (!m) return;
    char dir[] = "/tmp/test_mlm_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "failed");
    mb_error err;
    CHECK(mb_mlm_save(m, dir, &err) == MB_OK, "%s", err.msg);
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    mb_safetensors *st = mb_safetensors_open(path, &err);
    CHECK(st != NULL, "%s", err.msg);
    if (st) {
        CHECK(st->n_tensors == 41, "%d tensors", st->n_tensors);
        CHECK(mb_safetensors_find(st, "vocab_projector.weight") == NULL, "failed");
        CHECK(mb_safetensors_find(st, "vocab_projector.bias") != NULL, "failed");
        CHECK(mb_safetensors_find(st, "pre_classifier.weight") == NULL, "failed");
        mb_safetensors_close(st);
    }
    mb_distilbert_mlm *r = mb_mlm_load(dir, 1, &err);
    CHECK(r != NULL, "%s", err.msg);
    if (r) {
        CHECK(strcmp(mb_mlm_warnings(r), "") == 0, "%s", mb_mlm_warnings(r));
        for (int i = 0; i < mb_mlm_num_tensors(m); i++)
            CHECK(memcmp(mb_mlm_param(m, i), mb_mlm_param(r, i), mb_mlm_param_info(m, i)->numel * 4) == 0, "%s",
                  mb_mlm_param_info(m, i)->name);
        CHECK(loss_of(m) == loss_of(r), "failed");
        mb_mlm_free(r);
    }
    /* a classification model takes the encoder and leaves the head */
    mb_distilbert_load_opts o = {3, NULL, 9};
    mb_distilbert *clf = mb_distilbert_load(dir, &o, &err);
    CHECK(clf != NULL, "%s", err.msg);
    if (clf) {
        CHECK(strstr(mb_distilbert_warnings(clf), "vocab_transform") != NULL, "failed");
        CHECK(memcmp(mb_distilbert_params(clf), mb_mlm_param(m, 0), mb_mlm_param_info(m, 0)->numel * 4) == 0, "failed");
        mb_distilbert_free(clf);
    }
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    CHECK(system(path) == 0, "failed");
    mb_mlm_free(m);
}

TEST(errors) {
    mb_distilbert_mlm *m = tiny(1);
    if (!m) return;
    mb_error err;
    double loss;
    int32_t none[B * T];
    for (int i = 0; i < B * T; i++) none[i] = -100;
    CHECK(mb_mlm_loss(m, IDS, MASK, none, B, T, 0, &loss, NULL, &err) == MB_ERR_ARG, "failed");
    CHECK(strstr(err.msg, "-100") != NULL, "%s", err.msg);
    int32_t bad[B * T];
    memcpy(bad, LABELS, sizeof bad);
    bad[1] = V;
    CHECK(mb_mlm_loss(m, IDS, MASK, bad, B, T, 0, &loss, NULL, &err) == MB_ERR_RANGE, "%s", err.msg);
    CHECK(mb_mlm_backward(m, &err) == MB_ERR_STATE, "failed");
    int32_t pos[1] = {B * T};
    CHECK(mb_mlm_forward(m, IDS, MASK, B, T, pos, 1, 0, 0, &err) == MB_ERR_RANGE, "failed");
    char missing[600];
    harness_missing("mlm", missing, sizeof missing);
    CHECK(mb_mlm_load(missing, 1, &err) == NULL, "failed");
    mb_mlm_free(m);
}

int main(void) {
    RUN(finite_difference_gradients);
    RUN(forward_at_positions_matches_every_position);
    RUN(save_hf_format_and_reload);
    RUN(errors);
    return harness_end();
}
