/* sparse.h: compressed sparse row (CSR) float32 matrices.
 *
 * The layout of scipy.sparse.csr_matrix: row i's entries are
 * indices[indptr[i] .. indptr[i+1]) (column ids, strictly increasing) and the
 * matching data. Used for bag-of-words features (count_vectorizer), which the
 * learners consume without densifying: 16,000 documents x 30,522 WordPiece ids
 * with ~20 ids each is a few MB instead of 2 GB.
 *
 * Limits: float32 values, int32 column ids (ncols < 2^31), int64 offsets.
 */
#ifndef MB_SPARSE_H
#define MB_SPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct mb_csr {
    int64_t nrows, ncols, nnz;
    int64_t *indptr;  /* [nrows + 1], indptr[0] = 0, indptr[nrows] = nnz */
    int32_t *indices; /* [nnz] */
    float *data;      /* [nnz] */
} mb_csr;

/* An all-zero-capacity matrix with room for nnz entries (indptr zeroed). */
mb_csr *mb_csr_new(int64_t nrows, int64_t ncols, int64_t nnz, mb_error *err);
/* Copies and validates the three arrays (see mb_csr_validate). */
mb_csr *mb_csr_from_arrays(int64_t nrows, int64_t ncols, const int64_t *indptr, const int32_t *indices,
                           const float *data, mb_error *err);
void mb_csr_free(mb_csr *m);
/* indptr non-decreasing from 0 to nnz, column ids in [0, ncols) and strictly
   increasing within each row, values finite. */
mb_status mb_csr_validate(const mb_csr *m, mb_error *err);
size_t mb_csr_nbytes(const mb_csr *m);
/* out: [nrows, ncols] row-major, zero-filled first. */
void mb_csr_to_dense(const mb_csr *m, float *out);
/* A new matrix with the given rows (0-based, any order, repeats allowed). */
mb_csr *mb_csr_select_rows(const mb_csr *m, const int64_t *rows, int64_t n, mb_error *err);
/* In place: data *= scale[col] for every entry (scale: [ncols]); then, when
   l2_normalize, each non-empty row is divided by its Euclidean norm. */
void mb_csr_scale_columns_(mb_csr *m, const double *scale, int l2_normalize);

#endif
