/* fixture_check.h: comparing a model's outputs with a PyTorch fixture's cases.safetensors
 * (the fixture READMEs' check: |got - ref| <= 1e-4 * max|ref| per tensor), for the C tests of
 * the BERT and DistilBERT heads. Include after harness.h and st_read.h.
 */
#ifndef MB_TEST_FIXTURE_CHECK_H
#define MB_TEST_FIXTURE_CHECK_H

/* worst |got-ref| / max|ref| of n floats; *abs the worst absolute error */
static double rel_err(const float *got, const float *ref, size_t n, double *abs_out) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)got[i] - ref[i]));
        scale = fmax(scale, fabs((double)ref[i]));
    }
    if (abs_out) *abs_out = worst;
    return scale > 0 ? worst / scale : worst;
}

static const char *fixture(const char *rel, char *buf, size_t n) { return harness_shared(rel, buf, n); }

typedef struct fx_case {
    st_file cases;
    const int32_t *ids, *mask, *types;
    int B, T;
} fx_case;

static int open_case(fx_case *c, const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/cases.safetensors", dir);
    if (st_open(&c->cases, path) != 0) return -1;
    int64_t n;
    c->ids = st_get(&c->cases, "input_ids", "I32", &n);
    c->mask = st_get(&c->cases, "attention_mask", "I32", NULL);
    c->types = st_get(&c->cases, "token_type_ids", "I32", NULL);
    json_t *shape = json_object_get(json_object_get(c->cases.header, "input_ids"), "shape");
    c->B = (int)json_integer_value(json_array_get(shape, 0));
    c->T = (int)json_integer_value(json_array_get(shape, 1));
    return c->ids && c->mask ? 0 : -1;
}

static const float *ref_f32(fx_case *c, const char *name, int64_t *n) {
    const float *r = st_get(&c->cases, name, "F32", n);
    CHECK(r != NULL, "fixture has no %s", name);
    return r;
}

static void check_out(fx_case *c, const char *name, const float *got, size_t n, double *worst) {
    int64_t rn = 0;
    const float *ref = ref_f32(c, name, &rn);
    if (!ref) return;
    CHECK((size_t)rn == n, "%s: %zu values, fixture %lld", name, n, (long long)rn);
    double e = rel_err(got, ref, n, NULL);
    CHECK(e <= 1e-4, "%s: relative error %.3g", name, e);
    printf("  %-20s rel %.2e\n", name, e);
    *worst = fmax(*worst, e);
}

/* Every grad.<name> of the fixture against the model's gradients: tensor i is
 * info(model, i, &grad) for i < n; relative error <= 1e-4, or absolute <= 1e-7 where
 * zero(model, name) says the gradient is analytically zero. Prints and returns the worst. */
typedef const mb_param_info *(*fx_grad_at)(void *model, int i, const float **grad);
static double check_grads_fx(fx_case *c, void *model, int n, fx_grad_at info, int (*zero)(void *model, const char *name)) {
    double worst = 0, worst_zero = 0;
    const char *worst_name = "";
    for (int i = 0; i < n; i++) {
        const float *got;
        const mb_param_info *pi = info(model, i, &got);
        char key[160];
        snprintf(key, sizeof key, "grad.%s", pi->name);
        const float *ref = ref_f32(c, key, NULL);
        if (!ref) continue;
        double abs_e, e = rel_err(got, ref, pi->numel, &abs_e);
        if (zero(model, pi->name)) {
            CHECK(abs_e <= 1e-7, "%s: abs error %.3g (analytically zero)", pi->name, abs_e);
            worst_zero = fmax(worst_zero, abs_e);
            continue;
        }
        CHECK(e <= 1e-4, "%s: relative error %.3g", key, e);
        if (e > worst) {
            worst = e;
            worst_name = pi->name;
        }
    }
    printf("  grads                rel %.2e (%s); zero grads abs %.2e\n", worst, worst_name, worst_zero);
    return worst;
}

#endif
