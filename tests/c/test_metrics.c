/* test_metrics.c: metrics against scikit-learn's documented examples and hand counts. */
#include <stdint.h>

#include "../../runtime/metrics.h"
#include "harness.h"

static const int32_t YT[6] = {0, 1, 2, 0, 1, 2}, YP[6] = {0, 2, 1, 0, 0, 1};

static void prf(const int32_t *yt, const int32_t *yp, int64_t n, mb_average avg, double zd, double *p, double *r,
                double *f, int *ill) {
    int32_t *labels;
    int L;
    mb_error err;
    CHECK(mb_unique_labels(yt, yp, n, &labels, &L, &err) == MB_OK, "%s", err.msg);
    int64_t cm[64];
    CHECK(mb_confusion_matrix(yt, yp, n, labels, L, cm, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_precision_recall_fscore(cm, L, L, 1.0, avg, 0, zd, p, r, f, NULL, ill, &err) == MB_OK, "%s", err.msg);
    free(labels);
}

/* sklearn.metrics.precision_score / recall_score / f1_score docstrings */
TEST(sklearn_docstring_examples) {
    double p[3], r[3], f[3];
    int ill;
    prf(YT, YP, 6, MB_AVERAGE_MACRO, 0, p, r, f, &ill);
    CHECK_NEAR(p[0], 2.0 / 9, 1e-12); /* 0.22... */
    CHECK_NEAR(r[0], 1.0 / 3, 1e-12);
    CHECK_NEAR(f[0], 0.8 / 3, 1e-12); /* 0.26... */
    prf(YT, YP, 6, MB_AVERAGE_MICRO, 0, p, r, f, &ill);
    CHECK_NEAR(p[0], 1.0 / 3, 1e-12);
    CHECK_NEAR(r[0], 1.0 / 3, 1e-12);
    CHECK_NEAR(f[0], 1.0 / 3, 1e-12);
    prf(YT, YP, 6, MB_AVERAGE_WEIGHTED, 0, p, r, f, &ill);
    CHECK_NEAR(p[0], 2.0 / 9, 1e-12);
    CHECK_NEAR(f[0], 0.8 / 3, 1e-12);
    prf(YT, YP, 6, MB_AVERAGE_NONE, 0, p, r, f, &ill);
    CHECK_NEAR(p[0], 2.0 / 3, 1e-12); CHECK_NEAR(p[1], 0, 0); CHECK_NEAR(p[2], 0, 0);
    CHECK_NEAR(r[0], 1, 0); CHECK_NEAR(r[1], 0, 0);
    CHECK_NEAR(f[0], 0.8, 1e-12); CHECK_NEAR(f[1], 0, 0);
    CHECK(ill == 0, "nothing is ill-defined here (flags %d)", ill);
    /* all predictions 0: precision of 1 and 2 is ill-defined */
    int32_t zeros[6] = {0};
    prf(YT, zeros, 6, MB_AVERAGE_NONE, 0, p, r, f, &ill);
    CHECK_NEAR(p[0], 1.0 / 3, 1e-12); CHECK_NEAR(p[1], 0, 0); CHECK_NEAR(p[2], 0, 0);
    CHECK(ill == MB_ILL_PRECISION, "flags %d", ill);
    prf(YT, zeros, 6, MB_AVERAGE_NONE, 1, p, r, f, &ill);
    CHECK_NEAR(p[1], 1, 0); CHECK_NEAR(p[2], 1, 0);
    CHECK_NEAR(f[1], 0, 0); /* recall 0: F is 0 whatever zero_division says */
}

TEST(confusion_matrix_docstring) {
    int32_t yt[6] = {2, 0, 2, 2, 0, 1}, yp[6] = {0, 0, 2, 2, 0, 2};
    int32_t labels[3] = {0, 1, 2};
    int64_t cm[9], want[9] = {2, 0, 0, 0, 0, 1, 1, 0, 2};
    mb_error err;
    CHECK(mb_confusion_matrix(yt, yp, 6, labels, 3, cm, &err) == MB_OK, "%s", err.msg);
    for (int i = 0; i < 9; i++) CHECK(cm[i] == want[i], "cm[%d] = %lld, want %lld", i, (long long)cm[i], (long long)want[i]);
    double nt[9], np[9], na[9];
    mb_confusion_normalize(cm, 3, MB_CM_TRUE, nt);
    mb_confusion_normalize(cm, 3, MB_CM_PRED, np);
    mb_confusion_normalize(cm, 3, MB_CM_ALL, na);
    CHECK_NEAR(nt[2 * 3 + 2], 2.0 / 3, 1e-12);
    CHECK_NEAR(np[0], 2.0 / 3, 1e-12);
    CHECK_NEAR(np[1], 0.0, 0); /* empty predicted column -> 0, not nan */
    CHECK_NEAR(na[0], 2.0 / 6, 1e-12);
    /* labels given in another order, one absent from the data, one value left out */
    int32_t lab2[3] = {2, 0, 7};
    CHECK(mb_confusion_matrix(yt, yp, 6, lab2, 3, cm, &err) == MB_OK, "%s", err.msg);
    CHECK(cm[0] == 2 && cm[1] == 1 && cm[3] == 0 && cm[4] == 2 && cm[8] == 0, "reordered labels");
    int32_t dup[2] = {1, 1};
    CHECK(mb_confusion_matrix(yt, yp, 6, dup, 2, cm, &err) != MB_OK && strstr(err.msg, "twice"), "%s", err.msg);
}

TEST(accuracy_and_unique_labels) {
    CHECK_NEAR(mb_accuracy(YT, YP, 6), 2.0 / 6, 1e-15);
    int32_t a[4] = {5, 1, 5, 3}, b[4] = {0, 1, 9, 3};
    int32_t *labels;
    int L;
    mb_error err;
    CHECK(mb_unique_labels(a, b, 4, &labels, &L, &err) == MB_OK, "%s", err.msg);
    int32_t want[5] = {0, 1, 3, 5, 9};
    CHECK(L == 5, "L = %d", L);
    for (int i = 0; i < L && i < 5; i++) CHECK(labels[i] == want[i], "label %d", i);
    free(labels);
    a[0] = -1;
    CHECK(mb_unique_labels(a, b, 4, &labels, &L, &err) != MB_OK, "negative label accepted");
}

TEST(weighted_average_without_true_samples) {
    /* every pair falls outside the requested labels: sklearn returns zero_division */
    int64_t cm[4] = {0, 0, 0, 0};
    double p, r, f;
    mb_error err;
    CHECK(mb_precision_recall_fscore(cm, 2, 2, 1.0, MB_AVERAGE_WEIGHTED, 0, 1.0, &p, &r, &f, NULL, NULL, &err) == MB_OK,
          "%s", err.msg);
    CHECK(p == 1 && r == 1 && f == 1, "p %g r %g f %g", p, r, f);
}

TEST(fbeta_and_binary) {
    /* binary: y_true = [0,1,1,1,0], y_pred = [0,1,0,1,1]: positive label 1 tp 2, fp 1, fn 1 */
    int32_t yt[5] = {0, 1, 1, 1, 0}, yp[5] = {0, 1, 0, 1, 1}, labels[2] = {0, 1};
    int64_t cm[4];
    mb_error err;
    mb_confusion_matrix(yt, yp, 5, labels, 2, cm, &err);
    double p, r, f;
    CHECK(mb_precision_recall_fscore(cm, 2, 2, 2.0, MB_AVERAGE_BINARY, 1, 0, &p, &r, &f, NULL, NULL, &err) == MB_OK, "%s",
          err.msg);
    CHECK_NEAR(p, 2.0 / 3, 1e-12);
    CHECK_NEAR(r, 2.0 / 3, 1e-12);
    CHECK_NEAR(f, 5 * p * r / (4 * p + r), 1e-12);
}

TEST(cross_entropy_matches_log_softmax) {
    float logits[6] = {1, 2, 3, 0, 0, 0};
    int32_t y[2] = {2, 1};
    float out[2];
    mb_error err;
    CHECK(mb_cross_entropy(logits, 2, 3, y, 0, out, &err) == MB_OK, "%s", err.msg);
    CHECK_NEAR(out[0], log(exp(1) + exp(2) + exp(3)) - 3, 1e-6);
    CHECK_NEAR(out[1], log(3.0), 1e-6);
    float big[2] = {1000, -1000};
    int32_t y1[1] = {1};
    CHECK(mb_cross_entropy(big, 1, 2, y1, 0, out, &err) == MB_OK, "%s", err.msg);
    CHECK_NEAR(out[0], 2000, 1e-3);
    float probs[3] = {0.2f, 0.0f, 0.8f};
    CHECK(mb_cross_entropy(probs, 1, 3, y1, 1, out, &err) == MB_OK, "%s", err.msg);
    CHECK_NEAR(out[0], -log(1e-15), 1e-3);
    y1[0] = 3;
    CHECK(mb_cross_entropy(probs, 1, 3, y1, 1, out, &err) != MB_OK && strstr(err.msg, "label 3"), "%s", err.msg);
}

int main(void) {
    RUN(sklearn_docstring_examples);
    RUN(confusion_matrix_docstring);
    RUN(accuracy_and_unique_labels);
    RUN(weighted_average_without_true_samples);
    RUN(fbeta_and_binary);
    RUN(cross_entropy_matches_log_softmax);
    return harness_end();
}
