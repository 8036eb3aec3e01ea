/* metrics.h: classification metrics with scikit-learn 1.2's definitions.
 *
 * Labels are int32 values (0-based class ids as in Hugging Face / scikit-learn).
 * As in scikit-learn, the labels reported are, unless given, the sorted union
 * of the values present in y_true and y_pred; pairs whose true or predicted
 * value is not among the given labels are left out of the counts.
 * Precision, recall and F-beta follow sklearn.metrics.precision_recall_fscore_support,
 * zero_division included: an ill-defined ratio (no predicted / no true samples
 * of a label) takes the zero_division value (0 for "warn", which also raises a
 * flag so that the caller can warn as scikit-learn does).
 */
#ifndef MB_METRICS_H
#define MB_METRICS_H

#include <stdint.h>

#include "error.h"
#include "knn.h"

/* Sorted distinct values of a[0..n) and b[0..n) (b may be NULL) into a new
   array (*labels, free() it) of *n_labels entries. Negative values are an error. */
mb_status mb_unique_labels(const int32_t *a, const int32_t *b, int64_t n, int32_t **labels, int *n_labels,
                           mb_error *err);

/* Fraction of positions where y_true == y_pred; 0 for n == 0. */
double mb_accuracy(const int32_t *y_true, const int32_t *y_pred, int64_t n);

/* cm[i * L + j] = number of examples with true label labels[i] predicted as labels[j]. */
mb_status mb_confusion_matrix(const int32_t *y_true, const int32_t *y_pred, int64_t n, const int32_t *labels, int L,
                              int64_t *cm, mb_error *err);

typedef enum mb_cm_normalize { MB_CM_NONE = 0, MB_CM_TRUE, MB_CM_PRED, MB_CM_ALL } mb_cm_normalize;
/* out[L*L] = cm normalised over rows (true), columns (pred) or everything; an
   empty row/column gives zeros (scikit-learn's nan_to_num). */
void mb_confusion_normalize(const int64_t *cm, int L, mb_cm_normalize how, double *out);

typedef enum mb_average {
    MB_AVERAGE_NONE = 0, /* one value per label */
    MB_AVERAGE_BINARY,   /* the value of the label at pos_index only */
    MB_AVERAGE_MICRO,    /* from the summed counts */
    MB_AVERAGE_MACRO,    /* unweighted mean over labels */
    MB_AVERAGE_WEIGHTED  /* mean weighted by support (true count) */
} mb_average;

/* Ill-defined flags returned by mb_precision_recall_fscore. */
#define MB_ILL_PRECISION 1 /* some label had no predicted samples */
#define MB_ILL_RECALL 2    /* some label had no true samples */

/* From a confusion matrix cm [L*L] over all labels present; the first n_sel
   labels are the ones reported and averaged (scikit-learn counts predictions
   and true samples over all labels, then keeps the requested ones). With
   MB_AVERAGE_NONE precision, recall, fscore and support are arrays of n_sel;
   otherwise one value each (support gets the total count). zero_division: 0
   or 1 (use 0 for "warn"). *ill gets the MB_ILL_* flags (may be NULL). */
mb_status mb_precision_recall_fscore(const int64_t *cm, int L, int n_sel, double beta, mb_average average, int pos_index,
                                     double zero_division, double *precision, double *recall, double *fscore,
                                     int64_t *support, int *ill, mb_error *err);

/* Per-example cross-entropy -log p[y] from logits [n, K] (log-softmax in
   float64) or, with from_probs, from probabilities (clipped to [1e-15, 1] as
   sklearn's log_loss does). out: [n]. */
mb_status mb_cross_entropy(const float *scores, int64_t n, int K, const int32_t *y, int from_probs, float *out,
                           mb_error *err);

/* ---- quality of an embedding (UMAP, PCA: umap.h) ----------------------- */

/* scikit-learn's sklearn.manifold.trustworthiness(X, Y, n_neighbors):
   1 - 2/(N k (2N - 3k - 1)) sum_i sum_{j in kNN_Y(i)} max(0, r(i,j) - k),
   r(i,j) the rank of j among i's neighbours in X (metric in X, euclidean in
   Y). Needs k < N/2. O(N^2 (D + k)) time, O(block N) memory. */
mb_status mb_trustworthiness(const float *X, int64_t N, int64_t D, const float *Y, int64_t DY, int k,
                             mb_metric metric, double *out, mb_error *err);

#endif
