/* test_optim.c: AdamW / SGD / clipping / schedules against closed-form references.
 *
 * The reference is the fixture README's recipe (../shared/fixtures/distilbert-tiny/README.md),
 * i.e. PyTorch's AdamW written out in float64:
 *   n = sqrt(sum g^2); g *= min(1, max_norm/(n + 1e-6)); p *= 1 - lr*wd;
 *   m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 * run on synthetic parameters with a synthetic quadratic-plus-noise gradient
 * for several steps, with a linear schedule, per-tensor weight decay, a frozen
 * tensor and clipping that triggers. SGD against torch.optim.SGD's formulas.
 */
#include <stdint.h>

#include "../../runtime/optim.h"
#include "../../runtime/rng.h"
#include "harness.h"
#include "st_read.h"

#define NP 4
static const int64_t SIZES[NP] = {37, 5, 20000, 3}; /* 20000 exercises the threaded loop */
static const int WD[NP] = {1, 0, 1, 0};

typedef struct {
    float *val[NP], *grad[NP];
    double *rval[NP], *rm[NP], *rv[NP], *rg[NP];
} world;

static void world_init(world *w, uint64_t seed) {
    mb_rng rng;
    mb_rng_seed(&rng, seed);
    for (int i = 0; i < NP; i++) {
        w->val[i] = malloc(SIZES[i] * sizeof(float));
        w->grad[i] = malloc(SIZES[i] * sizeof(float));
        w->rval[i] = malloc(SIZES[i] * sizeof(double));
        w->rg[i] = malloc(SIZES[i] * sizeof(double));
        w->rm[i] = calloc(SIZES[i], sizeof(double));
        w->rv[i] = calloc(SIZES[i], sizeof(double));
        for (int64_t j = 0; j < SIZES[i]; j++) {
            w->val[i][j] = (float)mb_rng_normal(&rng);
            w->rval[i][j] = w->val[i][j];
        }
    }
}

static void world_free(world *w) {
    for (int i = 0; i < NP; i++) {
        free(w->val[i]); free(w->grad[i]); free(w->rval[i]); free(w->rg[i]); free(w->rm[i]); free(w->rv[i]);
    }
}

/* Gradient of 0.5*sum (p - 0.3)^2 * scale, plus a fixed pseudo-random part; the
   same float32 values go to both sides so that only the update math differs. */
static void make_grads(world *w, int step, double scale) {
    for (int i = 0; i < NP; i++)
        for (int64_t j = 0; j < SIZES[i]; j++) {
            float g = (float)(scale * ((w->val[i][j] - 0.3) + 0.1 * sin((double)(j + 7 * i + 13 * step))));
            w->grad[i][j] = g;
            w->rg[i][j] = g;
        }
}

static double max_rel_err(world *w, int frozen_idx, float *const *orig) {
    double worst = 0, scale = 0;
    for (int i = 0; i < NP; i++)
        for (int64_t j = 0; j < SIZES[i]; j++) {
            if (fabs(w->rval[i][j]) > scale) scale = fabs(w->rval[i][j]);
        }
    for (int i = 0; i < NP; i++)
        for (int64_t j = 0; j < SIZES[i]; j++) {
            double e = fabs(w->val[i][j] - w->rval[i][j]);
            if (e > worst) worst = e;
            if (i == frozen_idx && w->val[i][j] != orig[i][j]) worst = INFINITY;
        }
    return worst / scale;
}

static void adamw_trajectory(int frozen_idx, double max_norm, double grad_scale, int expect_clip) {
    world w;
    world_init(&w, 42);
    float *orig[NP];
    for (int i = 0; i < NP; i++) {
        orig[i] = malloc(SIZES[i] * sizeof(float));
        memcpy(orig[i], w.val[i], SIZES[i] * sizeof(float));
    }
    mb_param_ref refs[NP];
    for (int i = 0; i < NP; i++)
        refs[i] = (mb_param_ref){w.val[i], w.grad[i], SIZES[i], WD[i], i == frozen_idx};
    mb_optim_config cfg = mb_adamw_defaults();
    cfg.lr = 1e-2;
    cfg.weight_decay = 0.05;
    mb_error err;
    mb_optim *opt = mb_optim_new(refs, NP, &cfg, &err);
    CHECK(opt != NULL, "%s", err.msg);
    if (!opt) return;
    int64_t trainable = 0;
    for (int i = 0; i < NP; i++) trainable += i == frozen_idx ? 0 : SIZES[i];
    CHECK(opt->state_numel == trainable, "state %lld vs %lld", (long long)opt->state_numel, (long long)trainable);
    if (frozen_idx >= 0) CHECK(opt->state_offset[frozen_idx] == -1, "frozen tensor has state");

    mb_schedule sched = {MB_SCHEDULE_LINEAR, 1, 6, 0.5};
    int clipped = 0;
    for (int k = 0; k < 6; k++) {
        make_grads(&w, k, grad_scale);
        double norm;
        CHECK(mb_clip_grad_norm(refs, NP, max_norm, &norm, &err) == MB_OK, "%s", err.msg);
        /* reference: norm over trainable grads, clip, AdamW */
        double sq = 0;
        for (int i = 0; i < NP; i++)
            if (i != frozen_idx)
                for (int64_t j = 0; j < SIZES[i]; j++) sq += w.rg[i][j] * w.rg[i][j];
        double rnorm = sqrt(sq);
        CHECK(fabs(norm - rnorm) <= 1e-9 * rnorm, "norm %.12g vs %.12g", norm, rnorm);
        double c = max_norm / (rnorm + 1e-6);
        if (c < 1) clipped++;
        if (c > 1) c = 1;
        double lr = cfg.lr * mb_schedule_factor(&sched, k);
        double t = k + 1;
        for (int i = 0; i < NP; i++) {
            if (i == frozen_idx) continue;
            double wd = WD[i] ? cfg.weight_decay : 0;
            for (int64_t j = 0; j < SIZES[i]; j++) {
                double g = w.rg[i][j] * c;
                w.rval[i][j] *= 1 - lr * wd;
                w.rm[i][j] = 0.9 * w.rm[i][j] + 0.1 * g;
                w.rv[i][j] = 0.999 * w.rv[i][j] + 0.001 * g * g;
                w.rval[i][j] -= lr / (1 - pow(0.9, t)) * w.rm[i][j] / (sqrt(w.rv[i][j]) / sqrt(1 - pow(0.999, t)) + 1e-8);
            }
        }
        CHECK(mb_optim_step(opt, lr, &err) == MB_OK, "%s", err.msg);
    }
    CHECK(clipped == (expect_clip ? 6 : 0), "clipping happened on %d of 6 steps", clipped);
    double e = max_rel_err(&w, frozen_idx, orig);
    CHECK(e <= 1e-5, "AdamW vs float64 reference: max rel err %.3g", e);
    if (getenv("HARNESS_VERBOSE")) fprintf(stderr, "  adamw frozen=%d clip=%g: max rel err %.3g\n", frozen_idx, max_norm, e);
    mb_optim_free(opt);
    for (int i = 0; i < NP; i++) free(orig[i]);
    world_free(&w);
}

TEST(adamw_matches_closed_form) { adamw_trajectory(-1, INFINITY, 1.0, 0); }
TEST(adamw_frozen_tensor_untouched_and_stateless) { adamw_trajectory(2, 1.0, 0.001, 0); }
TEST(adamw_with_clipping) { adamw_trajectory(-1, 0.5, 1.0, 1); }
TEST(adamw_frozen_with_clipping) { adamw_trajectory(0, 0.1, 1.0, 1); }

static void sgd_trajectory(double momentum, double dampening, int nesterov, double wd) {
    world w;
    world_init(&w, 7);
    mb_param_ref refs[NP];
    for (int i = 0; i < NP; i++) refs[i] = (mb_param_ref){w.val[i], w.grad[i], SIZES[i], WD[i], 0};
    mb_optim_config cfg = mb_sgd_defaults();
    cfg.lr = 0.05;
    cfg.momentum = momentum;
    cfg.dampening = dampening;
    cfg.nesterov = nesterov;
    cfg.weight_decay = wd;
    mb_error err;
    mb_optim *opt = mb_optim_new(refs, NP, &cfg, &err);
    CHECK(opt != NULL, "%s", err.msg);
    if (!opt) return;
    for (int k = 0; k < 5; k++) {
        make_grads(&w, k, 1.0);
        for (int i = 0; i < NP; i++)
            for (int64_t j = 0; j < SIZES[i]; j++) {
                double d = w.rg[i][j] + (WD[i] ? wd : 0) * w.rval[i][j];
                if (momentum > 0) {
                    w.rm[i][j] = k == 0 ? d : momentum * w.rm[i][j] + (1 - dampening) * d;
                    d = nesterov ? d + momentum * w.rm[i][j] : w.rm[i][j];
                }
                w.rval[i][j] -= cfg.lr * d;
            }
        CHECK(mb_optim_step(opt, cfg.lr, &err) == MB_OK, "%s", err.msg);
    }
    float *none[NP] = {0};
    double e = max_rel_err(&w, -1, none);
    CHECK(e <= 1e-5, "SGD(momentum=%g, nesterov=%d) max rel err %.3g", momentum, nesterov, e);
    mb_optim_free(opt);
    world_free(&w);
}

TEST(sgd_plain) { sgd_trajectory(0, 0, 0, 0); }
TEST(sgd_momentum_dampening_wd) { sgd_trajectory(0.9, 0.1, 0, 0.01); }
TEST(sgd_nesterov) { sgd_trajectory(0.9, 0, 1, 0.001); }

TEST(config_errors_are_reported) {
    mb_error err;
    float v = 1, g = 1;
    mb_param_ref r = {&v, &g, 1, 1, 0};
    mb_optim_config c = mb_adamw_defaults();
    c.beta1 = 1.0;
    CHECK(mb_optim_new(&r, 1, &c, &err) == NULL && strstr(err.msg, "betas[1]"), "%s", err.msg);
    c = mb_sgd_defaults();
    c.nesterov = 1;
    CHECK(mb_optim_new(&r, 1, &c, &err) == NULL && strstr(err.msg, "nesterov"), "%s", err.msg);
    c = mb_adamw_defaults();
    c.lr = -1;
    CHECK(mb_optim_new(&r, 1, &c, &err) == NULL && strstr(err.msg, "lr"), "%s", err.msg);
    mb_param_ref bad = {&v, NULL, 1, 1, 0};
    CHECK(mb_optim_new(&bad, 1, &c, &err) == NULL, "missing grad accepted");
    mb_schedule s = {MB_SCHEDULE_LINEAR, 0, 0, 0.5};
    CHECK(mb_schedule_check(&s, &err) != MB_OK && strstr(err.msg, "total_steps"), "%s", err.msg);
}

TEST(schedules_match_hugging_face) {
    /* get_linear_schedule_with_warmup(warmup=2, total=10) */
    mb_schedule lin = {MB_SCHEDULE_LINEAR, 2, 10, 0.5};
    double want_lin[] = {0, 0.5, 1, 7.0 / 8, 6.0 / 8, 5.0 / 8, 4.0 / 8, 3.0 / 8, 2.0 / 8, 1.0 / 8, 0, 0};
    for (int k = 0; k < 12; k++) CHECK_NEAR(mb_schedule_factor(&lin, k), want_lin[k], 1e-15);
    /* the fixture's schedule: 1e-3 * (1 - k/5) */
    mb_schedule fx = {MB_SCHEDULE_LINEAR, 0, 5, 0.5};
    for (int k = 0; k < 5; k++) CHECK_NEAR(mb_schedule_factor(&fx, k), 1 - k / 5.0, 1e-15);
    mb_schedule cosine = {MB_SCHEDULE_COSINE, 2, 10, 0.5};
    CHECK_NEAR(mb_schedule_factor(&cosine, 1), 0.5, 1e-15);
    CHECK_NEAR(mb_schedule_factor(&cosine, 2), 1.0, 1e-15);
    CHECK_NEAR(mb_schedule_factor(&cosine, 6), 0.5, 1e-12); /* halfway through the decay */
    CHECK_NEAR(mb_schedule_factor(&cosine, 10), 0.0, 1e-12);
    mb_schedule cst = {MB_SCHEDULE_CONSTANT, 4, 0, 0.5};
    CHECK_NEAR(mb_schedule_factor(&cst, 1), 0.25, 1e-15);
    CHECK_NEAR(mb_schedule_factor(&cst, 100), 1.0, 1e-15);
    CHECK(mb_schedule_warmup_from_ratio(1000, 0.06) == 60, "ceil(1000*0.06)");
    CHECK(mb_schedule_warmup_from_ratio(10, 0.15) == 2, "ceil(1.5) = 2");
}

TEST(parameter_groups_follow_the_trainer) {
    CHECK(mb_param_decays("distilbert.transformer.layer.0.ffn.lin1.weight") == 1, "linear weight decays");
    CHECK(mb_param_decays("classifier.bias") == 0, "bias");
    CHECK(mb_param_decays("distilbert.embeddings.LayerNorm.weight") == 0, "embeddings LayerNorm");
    CHECK(mb_param_decays("distilbert.transformer.layer.1.sa_layer_norm.weight") == 0, "sa_layer_norm");
    CHECK(mb_param_decays("distilbert.transformer.layer.1.output_layer_norm.weight") == 0, "output_layer_norm");
    CHECK(mb_param_decays("distilbert.embeddings.word_embeddings.weight") == 1, "embeddings decay");
}

TEST(clip_measures_only_when_max_norm_infinite) {
    float g[3] = {3, 4, 0}, v[3] = {0};
    mb_param_ref r = {v, g, 3, 1, 0};
    double n;
    mb_error err;
    CHECK(mb_clip_grad_norm(&r, 1, INFINITY, &n, &err) == MB_OK, "%s", err.msg);
    CHECK_NEAR(n, 5.0, 1e-12);
    CHECK(g[0] == 3 && g[1] == 4, "gradients changed");
    CHECK(mb_clip_grad_norm(&r, 1, 1.0, &n, &err) == MB_OK, "%s", err.msg);
    CHECK_NEAR(sqrt(g[0] * g[0] + g[1] * g[1]), 1.0, 1e-6);
}

/* ---- the PyTorch trajectory of the fixture's frozen variant ---------------------
 * With the encoder frozen and dropout off, the [CLS] features (cls_hidden) stay
 * the same on every step, so the frozen trajectory of distilbert-tiny needs only
 * the classification head: pre = relu(x W1^T + b1), logits = pre W2^T + b2, mean
 * cross-entropy. The head's forward/backward is written here in float64; the
 * optimizer under test does clipping (1.0), the linear schedule and AdamW over
 * the 4 head tensors, and the result is compared with PyTorch's frozen.traj.* and
 * frozen.after5.* (tolerances from the fixture README). */
typedef struct head {
    float *w1, *b1, *w2, *b2;     /* [64,64], [64], [6,64], [6] */
    float *gw1, *gb1, *gw2, *gb2;
} head;

static double head_loss_grad(head *h, const float *x, const int32_t *y, int B, int D, int K) {
    double loss = 0;
    memset(h->gw1, 0, sizeof(float) * D * D); memset(h->gb1, 0, sizeof(float) * D);
    memset(h->gw2, 0, sizeof(float) * K * D); memset(h->gb2, 0, sizeof(float) * K);
    double *gw1 = calloc(D * D, sizeof(double)), *gb1 = calloc(D, sizeof(double));
    double *gw2 = calloc(K * D, sizeof(double)), *gb2 = calloc(K, sizeof(double));
    for (int i = 0; i < B; i++) {
        double pre[64], a[64], z[16], p[16], da[64];
        for (int o = 0; o < D; o++) {
            double s = h->b1[o];
            for (int j = 0; j < D; j++) s += (double)h->w1[o * D + j] * x[i * D + j];
            pre[o] = s;
            a[o] = s > 0 ? s : 0;
        }
        double m = -1e300, se = 0;
        for (int k = 0; k < K; k++) {
            double s = h->b2[k];
            for (int j = 0; j < D; j++) s += (double)h->w2[k * D + j] * a[j];
            z[k] = s;
            m = s > m ? s : m;
        }
        for (int k = 0; k < K; k++) se += exp(z[k] - m);
        loss += (m + log(se) - z[y[i]]) / B;
        for (int k = 0; k < K; k++) p[k] = (exp(z[k] - m) / se - (k == y[i])) / B;
        for (int j = 0; j < D; j++) da[j] = 0;
        for (int k = 0; k < K; k++) {
            gb2[k] += p[k];
            for (int j = 0; j < D; j++) {
                gw2[k * D + j] += p[k] * a[j];
                da[j] += p[k] * h->w2[k * D + j];
            }
        }
        for (int o = 0; o < D; o++) {
            double dp = pre[o] > 0 ? da[o] : 0;
            gb1[o] += dp;
            for (int j = 0; j < D; j++) gw1[o * D + j] += dp * x[i * D + j];
        }
    }
    for (int i = 0; i < D * D; i++) h->gw1[i] = (float)gw1[i];
    for (int i = 0; i < D; i++) h->gb1[i] = (float)gb1[i];
    for (int i = 0; i < K * D; i++) h->gw2[i] = (float)gw2[i];
    for (int i = 0; i < K; i++) h->gb2[i] = (float)gb2[i];
    free(gw1); free(gb1); free(gw2); free(gb2);
    return loss;
}

static double max_abs_diff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

TEST(frozen_head_trajectory_matches_pytorch) {
    char p1[512], p2[512];
    const char *cp = harness_shared("fixtures/distilbert-tiny/cases.safetensors", p1, sizeof p1);
    const char *mp = harness_shared("fixtures/distilbert-tiny/model.safetensors", p2, sizeof p2);
    st_file cases, model;
    if (!cp || !mp) SKIP("../shared/fixtures/distilbert-tiny is absent");
    if (st_open(&cases, cp)) SKIP("cannot read %s", cp);
    if (st_open(&model, mp)) { st_close(&cases); SKIP("cannot read %s", mp); }
    const int B = 4, D = 64, K = 6;
    const float *x = st_get(&cases, "cls_hidden", "F32", NULL);
    const int32_t *y = st_get(&cases, "labels", "I32", NULL);
    const char *names[4] = {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"};
    const int sizes[4] = {D * D, D, K * D, K};
    head h;
    float **vals[4] = {&h.w1, &h.b1, &h.w2, &h.b2}, **grads[4] = {&h.gw1, &h.gb1, &h.gw2, &h.gb2};
    mb_param_ref refs[4];
    for (int i = 0; i < 4; i++) {
        const float *src = st_get(&model, names[i], "F32", NULL);
        *vals[i] = malloc(sizeof(float) * sizes[i]);
        *grads[i] = malloc(sizeof(float) * sizes[i]);
        memcpy(*vals[i], src, sizeof(float) * sizes[i]);
        refs[i] = (mb_param_ref){*vals[i], *grads[i], sizes[i], mb_param_decays(names[i]), 0};
    }
    /* the head's own gradient at step 0 equals the full model's (grad.<head tensor>) */
    head_loss_grad(&h, x, y, B, D, K);
    for (int i = 0; i < 4; i++) {
        char key[128];
        snprintf(key, sizeof key, "grad.%s", names[i]);
        const float *ref = st_get(&cases, key, "F32", NULL);
        double scale = 0;
        for (int j = 0; j < sizes[i]; j++) scale = fmax(scale, fabs(ref[j]));
        CHECK(max_abs_diff(*grads[i], ref, sizes[i]) <= 1e-4 * scale, "head gradient %s differs", names[i]);
    }
    mb_optim_config cfg = mb_adamw_defaults(); /* lr 1e-3 (scheduled), wd 0.01, betas (0.9, 0.999), eps 1e-8 */
    mb_error err;
    mb_optim *opt = mb_optim_new(refs, 4, &cfg, &err);
    CHECK(opt != NULL, "%s", err.msg);
    mb_schedule sched = {MB_SCHEDULE_LINEAR, 0, 5, 0.5};
    const float *ref_loss = st_get(&cases, "frozen.traj.loss", "F32", NULL);
    const float *ref_norm = st_get(&cases, "frozen.traj.grad_norm", "F32", NULL);
    const float *ref_lr = st_get(&cases, "traj.lr", "F32", NULL);
    double worst_loss = 0, worst_norm = 0;
    for (int k = 0; k < 5 && opt; k++) {
        double loss = head_loss_grad(&h, x, y, B, D, K), norm;
        CHECK(mb_clip_grad_norm(refs, 4, 1.0, &norm, &err) == MB_OK, "%s", err.msg);
        double lr = cfg.lr * mb_schedule_factor(&sched, k);
        CHECK(fabs(lr - ref_lr[k]) <= 1e-9, "lr at step %d: %g vs %g", k, lr, (double)ref_lr[k]);
        CHECK(mb_optim_step(opt, lr, &err) == MB_OK, "%s", err.msg);
        worst_loss = fmax(worst_loss, fabs(loss - ref_loss[k]) / fabs(ref_loss[0]));
        worst_norm = fmax(worst_norm, fabs(norm - ref_norm[k]) / fabs(ref_norm[0]));
    }
    CHECK(worst_loss <= 1e-4, "frozen.traj.loss rel err %.3g", worst_loss);
    CHECK(worst_norm <= 1e-4, "frozen.traj.grad_norm rel err %.3g", worst_norm);
    double worst_param = 0;
    for (int i = 0; i < 4; i++) {
        char key[128];
        snprintf(key, sizeof key, "frozen.after5.%s", names[i]);
        const float *ref = st_get(&cases, key, "F32", NULL);
        CHECK(ref != NULL, "%s missing", key);
        if (ref) worst_param = fmax(worst_param, max_abs_diff(*vals[i], ref, sizes[i]));
    }
    CHECK(worst_param <= 1e-4, "frozen.after5 max abs err %.3g (README: atol 1e-4)", worst_param);
    fprintf(stderr, "  frozen head trajectory vs PyTorch: loss rel err %.2e, grad_norm rel err %.2e, after5 max abs err %.2e\n",
            worst_loss, worst_norm, worst_param);
    mb_optim_free(opt);
    for (int i = 0; i < 4; i++) { free(*vals[i]); free(*grads[i]); }
    st_close(&cases);
    st_close(&model);
}

int main(void) {
    RUN(adamw_matches_closed_form);
    RUN(adamw_frozen_tensor_untouched_and_stateless);
    RUN(adamw_with_clipping);
    RUN(adamw_frozen_with_clipping);
    RUN(sgd_plain);
    RUN(sgd_momentum_dampening_wd);
    RUN(sgd_nesterov);
    RUN(config_errors_are_reported);
    RUN(schedules_match_hugging_face);
    RUN(clip_measures_only_when_max_norm_infinite);
    RUN(parameter_groups_follow_the_trainer);
    RUN(frozen_head_trajectory_matches_pytorch);
    return harness_end();
}
