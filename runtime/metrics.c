/* metrics.c: accuracy, confusion matrix, precision / recall / F-beta, cross-entropy (see metrics.h). */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

mb_status mb_unique_labels(const int32_t *a, const int32_t *b, int64_t n, int32_t **labels, int *n_labels,
                           mb_error *err) {
    int64_t total = b ? 2 * n : n;
    int32_t *all = malloc(sizeof(int32_t) * (size_t)(total ? total : 1));
    if (!all) return mb_fail(err, MB_ERR_NOMEM, "labels: out of memory");
    for (int64_t i = 0; i < n; i++) {
        if (a[i] < 0 || (b && b[i] < 0)) {
            free(all);
            return mb_fail(err, MB_ERR_RANGE, "label ids must be >= 0 (got %d at position %lld)", a[i] < 0 ? a[i] : b[i],
                           (long long)i + 1);
        }
        all[i] = a[i];
        if (b) all[n + i] = b[i];
    }
    qsort(all, (size_t)total, sizeof(int32_t), cmp_i32);
    int64_t u = 0;
    for (int64_t i = 0; i < total; i++)
        if (u == 0 || all[i] != all[u - 1]) all[u++] = all[i];
    *labels = all;
    *n_labels = (int)u;
    return MB_OK;
}

double mb_accuracy(const int32_t *y_true, const int32_t *y_pred, int64_t n) {
    if (n <= 0) return 0.0;
    int64_t hit = 0;
    for (int64_t i = 0; i < n; i++) hit += y_true[i] == y_pred[i];
    return (double)hit / (double)n;
}

/* Index of label v in labels (sorted or not) through a dense table over
   [0, max label]; -1 when absent. */
typedef struct label_index {
    int32_t max;
    int *pos;
} label_index;

static mb_status label_index_init(label_index *li, const int32_t *labels, int L, mb_error *err) {
    li->max = -1;
    li->pos = NULL;
    for (int i = 0; i < L; i++) {
        if (labels[i] < 0) return mb_fail(err, MB_ERR_RANGE, "label ids must be >= 0 (got %d)", labels[i]);
        if (labels[i] > li->max) li->max = labels[i];
    }
    li->pos = malloc(sizeof(int) * ((size_t)li->max + 2));
    if (!li->pos) return mb_fail(err, MB_ERR_NOMEM, "labels: out of memory");
    for (int32_t v = 0; v <= li->max; v++) li->pos[v] = -1;
    for (int i = 0; i < L; i++) {
        if (li->pos[labels[i]] >= 0) {
            free(li->pos);
            return mb_fail(err, MB_ERR_ARG, "labels: %d appears twice", labels[i]);
        }
        li->pos[labels[i]] = i;
    }
    return MB_OK;
}

static int label_index_of(const label_index *li, int32_t v) { return v >= 0 && v <= li->max ? li->pos[v] : -1; }

mb_status mb_confusion_matrix(const int32_t *y_true, const int32_t *y_pred, int64_t n, const int32_t *labels, int L,
                              int64_t *cm, mb_error *err) {
    if (L < 1) return mb_fail(err, MB_ERR_ARG, "confusion matrix: no labels");
    label_index li;
    if (label_index_init(&li, labels, L, err)) return err ? err->code : MB_ERR_ARG;
    memset(cm, 0, sizeof(int64_t) * (size_t)L * (size_t)L);
    for (int64_t i = 0; i < n; i++) {
        int t = label_index_of(&li, y_true[i]), p = label_index_of(&li, y_pred[i]);
        if (t >= 0 && p >= 0) cm[(int64_t)t * L + p]++;
    }
    free(li.pos);
    return MB_OK;
}

void mb_confusion_normalize(const int64_t *cm, int L, mb_cm_normalize how, double *out) {
    double total = 0;
    for (int i = 0; i < L * L; i++) total += (double)cm[i];
    for (int i = 0; i < L; i++)
        for (int j = 0; j < L; j++) {
            double den = 1;
            if (how == MB_CM_TRUE) {
                den = 0;
                for (int k = 0; k < L; k++) den += (double)cm[i * L + k];
            } else if (how == MB_CM_PRED) {
                den = 0;
                for (int k = 0; k < L; k++) den += (double)cm[k * L + j];
            } else if (how == MB_CM_ALL) {
                den = total;
            }
            out[i * L + j] = den > 0 ? (double)cm[i * L + j] / den : 0.0;
        }
}

/* F-beta from precision and recall, as scikit-learn 1.2 computes it (a zero
   denominator counts as 1, so F is 0 there unless both are zero_division = 1). */
static double fbeta(double p, double r, double beta) {
    if (isinf(beta)) return r;
    double b2 = beta * beta, den = b2 * p + r;
    if (den == 0) den = 1;
    return (1 + b2) * p * r / den;
}

mb_status mb_precision_recall_fscore(const int64_t *cm, int L_all, int n_sel, double beta, mb_average average, int pos_index,
                                     double zero_division, double *precision, double *recall, double *fscore,
                                     int64_t *support, int *ill, mb_error *err) {
    if (n_sel < 1 || n_sel > L_all) return mb_fail(err, MB_ERR_ARG, "precision/recall: no labels");
    int L = n_sel;
    if (!(beta >= 0)) return mb_fail(err, MB_ERR_ARG, "beta should be >= 0 (got %g)", beta);
    if (average == MB_AVERAGE_BINARY && (pos_index < 0 || pos_index >= L))
        return mb_fail(err, MB_ERR_ARG, "pos_label is not a present label");
    int64_t *tp = calloc((size_t)L * 3, sizeof(int64_t));
    double *pr = malloc(sizeof(double) * (size_t)L * 3);
    if (!tp || !pr) {
        free(tp);
        free(pr);
        return mb_fail(err, MB_ERR_NOMEM, "precision/recall: out of memory");
    }
    int64_t *pred_sum = tp + L, *true_sum = pred_sum + L;
    double *p = pr, *r = p + L, *f = r + L;
    for (int i = 0; i < L; i++) {
        tp[i] = cm[(int64_t)i * L_all + i];
        for (int j = 0; j < L_all; j++) {
            true_sum[i] += cm[(int64_t)i * L_all + j];
            pred_sum[i] += cm[(int64_t)j * L_all + i];
        }
    }
    int flags = 0;
    int64_t all_true = 0, all_pred = 0, all_tp = 0;
    for (int i = 0; i < L; i++) {
        all_true += true_sum[i];
        all_pred += pred_sum[i];
        all_tp += tp[i];
    }
    if (average == MB_AVERAGE_MICRO) {
        double mp = all_pred ? (double)all_tp / all_pred : zero_division;
        double mr = all_true ? (double)all_tp / all_true : zero_division;
        if (!all_pred) flags |= MB_ILL_PRECISION;
        if (!all_true) flags |= MB_ILL_RECALL;
        *precision = mp;
        *recall = mr;
        *fscore = fbeta(mp, mr, beta);
        if (support) *support = all_true;
    } else {
        for (int i = 0; i < L; i++) {
            int in_scope = average != MB_AVERAGE_BINARY || i == pos_index;
            if (pred_sum[i]) p[i] = (double)tp[i] / pred_sum[i];
            else { p[i] = zero_division; if (in_scope) flags |= MB_ILL_PRECISION; }
            if (true_sum[i]) r[i] = (double)tp[i] / true_sum[i];
            else { r[i] = zero_division; if (in_scope) flags |= MB_ILL_RECALL; }
            f[i] = fbeta(p[i], r[i], beta);
        }
        if (average == MB_AVERAGE_NONE) {
            memcpy(precision, p, sizeof(double) * L);
            memcpy(recall, r, sizeof(double) * L);
            memcpy(fscore, f, sizeof(double) * L);
            if (support) memcpy(support, true_sum, sizeof(int64_t) * L);
        } else if (average == MB_AVERAGE_BINARY) {
            *precision = p[pos_index];
            *recall = r[pos_index];
            *fscore = f[pos_index];
            if (support) *support = true_sum[pos_index];
        } else if (average == MB_AVERAGE_WEIGHTED && all_true == 0) {
            /* sklearn: no true samples at all */
            double z = zero_division;
            *precision = all_pred == 0 ? z : 0.0;
            *recall = z;
            *fscore = all_pred == 0 ? z : 0.0;
            if (support) *support = 0;
        } else {
            double sp = 0, sr = 0, sf = 0, sw = 0;
            for (int i = 0; i < L; i++) {
                double w = average == MB_AVERAGE_WEIGHTED ? (double)true_sum[i] : 1.0;
                sp += w * p[i];
                sr += w * r[i];
                sf += w * f[i];
                sw += w;
            }
            *precision = sp / sw;
            *recall = sr / sw;
            *fscore = sf / sw;
            if (support) *support = all_true;
        }
    }
    if (ill) *ill = flags;
    free(tp);
    free(pr);
    return MB_OK;
}

mb_status mb_cross_entropy(const float *scores, int64_t n, int K, const int32_t *y, int from_probs, float *out,
                           mb_error *err) {
    if (K < 1) return mb_fail(err, MB_ERR_SHAPE, "cross_entropy: no classes");
    for (int64_t i = 0; i < n; i++) {
        if (y[i] < 0 || y[i] >= K)
            return mb_fail(err, MB_ERR_RANGE, "cross_entropy: label %d at position %lld is outside [0, %d)", y[i],
                           (long long)i + 1, K);
        const float *s = scores + i * K;
        if (from_probs) {
            double p = s[y[i]];
            p = p < 1e-15 ? 1e-15 : p > 1 ? 1 : p;
            out[i] = (float)-log(p);
        } else {
            double m = s[0];
            for (int k = 1; k < K; k++) m = s[k] > m ? s[k] : m;
            double sum = 0;
            for (int k = 0; k < K; k++) sum += exp((double)s[k] - m);
            out[i] = (float)(m + log(sum) - (double)s[y[i]]);
        }
    }
    return MB_OK;
}

/* ---- trustworthiness: sklearn.manifold.trustworthiness ----------------- */

mb_status mb_trustworthiness(const float *X, int64_t N, int64_t D, const float *Y, int64_t DY, int k,
                             mb_metric metric, double *out, mb_error *err) {
    if (!X || !Y || N < 1 || D < 1 || DY < 1)
        return mb_fail(err, MB_ERR_SHAPE, "trustworthiness: X and Y must be non-empty matrices with the same rows");
    if (k < 1 || 2 * (int64_t)k >= N)
        return mb_fail(err, MB_ERR_ARG, "trustworthiness: n_neighbors (%d) must be at least 1 and less than N/2 (N = %lld)", k, (long long)N);
    mb_status st = mb_check_finite(X, N, D, err);
    if (st == MB_OK) st = mb_check_finite(Y, N, DY, err);
    if (st != MB_OK) return st;
    mb_threads_init();
    int32_t *ny = malloc((size_t)N * (k + 1) * sizeof(int32_t));
    float *dy = malloc((size_t)N * (k + 1) * sizeof(float));
    int64_t block = (16LL << 20) / N;
    if (block < 1) block = 1;
    if (block > N) block = N;
    float *buf = malloc((size_t)block * N * sizeof(float));
    mb_distance_ctx ctx;
    int have_ctx = 0;
    if (!ny || !dy || !buf) { st = mb_fail(err, MB_ERR_NOMEM, "trustworthiness: out of memory"); goto done; }
    /* Neighbours in the embedding (euclidean), the point itself first. */
    st = mb_knn_exact(Y, N, DY, k + 1, MB_METRIC_EUCLIDEAN, ny, dy, err);
    if (st != MB_OK) goto done;
    st = mb_distance_ctx_init(&ctx, X, N, D, metric, err);
    if (st != MB_OK) goto done;
    have_ctx = 1;
    double total = 0;
    for (int64_t row0 = 0; row0 < N; row0 += block) {
        int64_t rows = N - row0 < block ? N - row0 : block;
        mb_distance_block(&ctx, row0, rows, buf);
#pragma omp parallel for num_threads(mb_threads()) reduction(+ : total) schedule(dynamic, 8) if (rows * N > MB_PAR_MIN)
        for (int64_t r = 0; r < rows; r++) {
            int64_t i = row0 + r;
            float *dx = buf + r * N;
            dx[i] = INFINITY; /* sklearn puts the point itself last */
            /* rank of each embedded neighbour j among i's neighbours in X:
               1 + the points before it, ties broken by index; one pass for all k. */
            float thr[k];
            int64_t who[k], rank[k];
            for (int q = 0; q < k; q++) {
                who[q] = ny[i * (k + 1) + q + 1];
                thr[q] = dx[who[q]];
                rank[q] = 1;
            }
            for (int64_t l = 0; l < N; l++) {
                float d = dx[l];
                for (int q = 0; q < k; q++) rank[q] += (d < thr[q]) | ((d == thr[q]) & (l < who[q]));
            }
            for (int q = 0; q < k; q++)
                if (rank[q] > k) total += (double)(rank[q] - k);
        }
    }
    *out = 1.0 - total * (2.0 / ((double)N * k * (2.0 * N - 3.0 * k - 1.0)));
done:
    if (have_ctx) mb_distance_ctx_free(&ctx);
    free(ny); free(dy); free(buf);
    return st;
}
