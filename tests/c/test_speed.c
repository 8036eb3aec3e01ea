/* test_speed.c: the fast paths of the DistilBERT runtime agree with the plain ones.
 *
 * A training forward leaves padded rows out (packed rows, attention per real
 * length); a forward that asks for hidden states computes every row as
 * PyTorch does. With the same RNG state (dropout on) both must give the same
 * loss, logits, [CLS] features and gradients, at 1 and at 2 threads; a batch
 * that is not right-padded (left padding, holes) falls back to the padded
 * path. Reference: the padded path, itself checked against PyTorch fixtures
 * and finite differences in test_distilbert.c. The vectorised GELU is checked
 * against the exact erf form in double precision.
 */
#include <stdint.h>

#include "../../runtime/distilbert.h"
#include "../../runtime/layers.h"
#include "../../runtime/parallel.h"
#include "harness.h"

enum { B = 4, T = 9, D = 32, NL = 2, NH = 4, F = 48, V = 60 };

static mb_distilbert *small_model(void) {
    mb_distilbert_config cfg;
    mb_config_defaults(&cfg);
    cfg.vocab_size = V;
    cfg.dim = D;
    cfg.n_layers = NL;
    cfg.n_heads = NH;
    cfg.hidden_dim = F;
    cfg.max_position_embeddings = 16;
    cfg.dropout = 0.1f;
    cfg.attention_dropout = 0.1f;
    cfg.initializer_range = 0.2f;
    mb_error err;
    mb_config_set_labels(&cfg, 3, NULL, &err);
    mb_distilbert *m = mb_distilbert_new(&cfg, 5, &err);
    mb_config_free(&cfg);
    return m;
}

typedef struct run_out {
    double loss;
    float logits[B * 3], cls[B * D];
    float *grads;
} run_out;

/* One train step from a fixed RNG state; full=1 forces every row (hidden states requested). */
static void train_step(mb_distilbert *m, const mb_rng *state, const int32_t *ids, const int32_t *mask, int full,
                       run_out *r) {
    static float hs_store[(NL + 1) * B * T * D];
    float *hs[NL + 1];
    for (int l = 0; l <= NL; l++) hs[l] = hs_store + (long)l * B * T * D;
    int32_t labels[B] = {0, 2, 1, 2};
    mb_error err;
    mb_forward_opts o = {.train = 1, .keep = 1, .hidden_states = full ? hs : NULL};
    *mb_distilbert_rng(m) = *state;
    mb_distilbert_zero_grad(m);
    CHECK(mb_distilbert_forward(m, ids, mask, B, T, &o, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_distilbert_loss(m, labels, NULL, B, &r->loss, NULL, &err) == MB_OK, "%s", err.msg);
    memcpy(r->logits, mb_distilbert_logits(m), sizeof r->logits);
    const float *h = mb_distilbert_last_hidden(m);
    for (int b = 0; b < B; b++) memcpy(r->cls + b * D, h + (long)b * T * D, D * sizeof(float));
    CHECK(mb_distilbert_backward(m, &err) == MB_OK, "%s", err.msg);
    size_t n = mb_distilbert_num_params(m);
    r->grads = malloc(n * sizeof(float));
    memcpy(r->grads, mb_distilbert_grads(m), n * sizeof(float));
}

static double max_rel(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return den > 0 ? num / den : num;
}

static void compare_paths(const int32_t *mask, int threads) {
    mb_set_threads(threads);
    mb_distilbert *m = small_model();
    CHECK(m != NULL, "model creation failed");
    if (!m) return;
    int32_t ids[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = mask[i] ? 1 + (i * 7919) % (V - 1) : 0;
    mb_rng state = *mb_distilbert_rng(m);
    run_out full, packed;
    train_step(m, &state, ids, mask, 1, &full);
    train_step(m, &state, ids, mask, 0, &packed);
    size_t n = mb_distilbert_num_params(m);
    double eg = max_rel(packed.grads, full.grads, n), el = max_rel(packed.logits, full.logits, B * 3),
           ec = max_rel(packed.cls, full.cls, B * D);
    printf("threads %d: loss %.9g vs %.9g, logits rel %.3g, cls rel %.3g, gradients rel %.3g\n", threads, packed.loss,
           full.loss, el, ec, eg);
    /* same arithmetic on fewer rows: only the GEMM blocking may differ */
    CHECK(fabs(packed.loss - full.loss) <= 1e-5 * fabs(full.loss), "loss %.9g vs %.9g", packed.loss, full.loss);
    CHECK(el <= 1e-5, "logits rel %.3g", el);
    CHECK(ec <= 1e-5, "[CLS] rel %.3g", ec);
    CHECK(eg <= 1e-4, "gradients rel %.3g", eg);
    double gn = 0;
    for (size_t i = 0; i < n; i++) gn += (double)full.grads[i] * full.grads[i];
    CHECK(gn > 0, "the gradient is not zero");
    free(full.grads);
    free(packed.grads);
    mb_distilbert_free(m);
}

/* right padding, lengths 9, 3, 6, 1 */
static const int32_t RIGHT[B * T] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
                                     1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0};
/* left padding and a hole: not packable, the padded path runs */
static const int32_t OTHER[B * T] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
                                     1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1};

TEST(packed_matches_padded_1_thread) { compare_paths(RIGHT, 1); }
TEST(packed_matches_padded_2_threads) { compare_paths(RIGHT, 2); }
TEST(unpackable_mask_falls_back_1_thread) { compare_paths(OTHER, 1); }
TEST(unpackable_mask_falls_back_2_threads) { compare_paths(OTHER, 2); }

/* GELU and its derivative against x/2 (1 + erf(x/sqrt 2)) in double, on a
   grid over [-12, 12] (both signs, the tails, near 0) and at NaN. */
TEST(gelu_matches_exact_erf) {
    enum { n = 240001 };
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *d = malloc(n * sizeof(float)),
          *one = malloc(n * sizeof(float));
    for (int i = 0; i < n; i++) {
        x[i] = -12.0f + 24.0f * (float)i / (n - 1);
        one[i] = 1.0f;
    }
    gelu_forward(y, x, n);
    gelu_backward(d, x, one, n);
    double worst_y = 0, worst_d = 0;
    for (int i = 0; i < n; i++) {
        double v = x[i], cdf = 0.5 * (1.0 + erf(v / sqrt(2.0)));
        double ry = v * cdf, rd = cdf + v * exp(-0.5 * v * v) / sqrt(2.0 * M_PI);
        worst_y = fmax(worst_y, fabs(y[i] - ry) / fmax(fabs(v), 1.0));
        worst_d = fmax(worst_d, fabs(d[i] - rd));
    }
    printf("gelu: worst error %.3g (relative to max(|x|,1)), derivative worst abs error %.3g\n", worst_y, worst_d);
    CHECK(worst_y <= 1e-6, "gelu error %.3g", worst_y);
    CHECK(worst_d <= 2e-6, "gelu derivative error %.3g", worst_d);
    x[0] = NAN;
    gelu_forward(y, x, 1);
    gelu_backward(d, x, one, 1);
    CHECK(isnan(y[0]) && isnan(d[0]), "NaN propagates: %g %g", y[0], d[0]);
    free(x);
    free(y);
    free(d);
    free(one);
}

/* Layer checkpointing (MOONBERT_ACTIVATION_MB=0: keep only layer outputs,
   recompute each layer in backward with its kept dropout masks) gives the
   same gradients bit for bit. */
static void compare_checkpointing(int threads) {
    mb_set_threads(threads);
    mb_distilbert *m = small_model();
    CHECK(m != NULL, "model creation failed");
    if (!m) return;
    int32_t ids[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = RIGHT[i] ? 1 + (i * 7919) % (V - 1) : 0;
    mb_rng state = *mb_distilbert_rng(m);
    run_out kept, ckpt, ckpt_full;
    unsetenv("MOONBERT_ACTIVATION_MB");
    train_step(m, &state, ids, RIGHT, 0, &kept);
    setenv("MOONBERT_ACTIVATION_MB", "0", 1);
    train_step(m, &state, ids, RIGHT, 0, &ckpt);
    train_step(m, &state, ids, RIGHT, 1, &ckpt_full); /* padded rows too */
    unsetenv("MOONBERT_ACTIVATION_MB");
    size_t n = mb_distilbert_num_params(m);
    double eg = max_rel(ckpt.grads, kept.grads, n);
    run_out full;
    train_step(m, &state, ids, RIGHT, 1, &full);
    double ef = max_rel(ckpt_full.grads, full.grads, n);
    printf("threads %d: checkpointed vs kept: loss %.9g vs %.9g, gradients rel %.3g (packed), %.3g (padded)\n", threads,
           ckpt.loss, kept.loss, eg, ef);
    CHECK(ckpt.loss == kept.loss, "loss %.9g vs %.9g", ckpt.loss, kept.loss);
    CHECK(eg == 0 && ef == 0, "gradients rel %.3g, %.3g", eg, ef);
    free(kept.grads);
    free(ckpt.grads);
    free(ckpt_full.grads);
    free(full.grads);
    mb_distilbert_free(m);
}

TEST(checkpointing_is_exact_1_thread) { compare_checkpointing(1); }
TEST(checkpointing_is_exact_2_threads) { compare_checkpointing(2); }

int main(void) {
    RUN(checkpointing_is_exact_1_thread);
    RUN(checkpointing_is_exact_2_threads);
    RUN(gelu_matches_exact_erf);
    RUN(packed_matches_padded_1_thread);
    RUN(packed_matches_padded_2_threads);
    RUN(unpackable_mask_falls_back_1_thread);
    RUN(unpackable_mask_falls_back_2_threads);
    return harness_end();
}
