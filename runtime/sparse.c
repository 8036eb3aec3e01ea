/* sparse.c: CSR matrices (see sparse.h). */
#include "sparse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

mb_csr *mb_csr_new(int64_t nrows, int64_t ncols, int64_t nnz, mb_error *err) {
    if (nrows < 0 || ncols < 0 || nnz < 0 || ncols > INT32_MAX) {
        mb_fail(err, MB_ERR_ARG, "csr: bad size %lld x %lld with %lld entries", (long long)nrows, (long long)ncols,
                (long long)nnz);
        return NULL;
    }
    mb_csr *m = calloc(1, sizeof *m);
    if (!m) goto nomem;
    m->nrows = nrows;
    m->ncols = ncols;
    m->nnz = nnz;
    m->indptr = calloc((size_t)nrows + 1, sizeof *m->indptr);
    m->indices = malloc((size_t)(nnz ? nnz : 1) * sizeof *m->indices);
    m->data = malloc((size_t)(nnz ? nnz : 1) * sizeof *m->data);
    if (!m->indptr || !m->indices || !m->data) goto nomem;
    return m;
nomem:
    mb_csr_free(m);
    mb_fail(err, MB_ERR_NOMEM, "csr: out of memory for %lld x %lld with %lld entries", (long long)nrows,
            (long long)ncols, (long long)nnz);
    return NULL;
}

void mb_csr_free(mb_csr *m) {
    if (!m) return;
    free(m->indptr);
    free(m->indices);
    free(m->data);
    free(m);
}

mb_status mb_csr_validate(const mb_csr *m, mb_error *err) {
    if (m->indptr[0] != 0) return mb_fail(err, MB_ERR_FORMAT, "csr: indptr[1] must be 0 (got %lld)", (long long)m->indptr[0]);
    if (m->indptr[m->nrows] != m->nnz)
        return mb_fail(err, MB_ERR_FORMAT, "csr: the last indptr (%lld) must equal the number of entries (%lld)",
                       (long long)m->indptr[m->nrows], (long long)m->nnz);
    for (int64_t i = 0; i < m->nrows; i++) /* all offsets first: entries are read only within [0, nnz) */
        if (m->indptr[i + 1] < m->indptr[i] || m->indptr[i + 1] > m->nnz)
            return mb_fail(err, MB_ERR_FORMAT, "csr: indptr decreases or passes the number of entries at row %lld",
                           (long long)i + 1);
    for (int64_t i = 0; i < m->nrows; i++) {
        for (int64_t p = m->indptr[i]; p < m->indptr[i + 1]; p++) {
            int32_t c = m->indices[p];
            if (c < 0 || c >= m->ncols)
                return mb_fail(err, MB_ERR_RANGE, "csr: row %lld has column id %d outside [0, %lld)", (long long)i + 1,
                               c, (long long)m->ncols);
            if (p > m->indptr[i] && c <= m->indices[p - 1])
                return mb_fail(err, MB_ERR_FORMAT, "csr: row %lld: column ids must be strictly increasing",
                               (long long)i + 1);
            if (!isfinite(m->data[p]))
                return mb_fail(err, MB_ERR_NUMERIC, "csr: row %lld has a non-finite value", (long long)i + 1);
        }
    }
    return MB_OK;
}

mb_csr *mb_csr_from_arrays(int64_t nrows, int64_t ncols, const int64_t *indptr, const int32_t *indices,
                           const float *data, mb_error *err) {
    if (nrows < 0 || !indptr) {
        mb_fail(err, MB_ERR_ARG, "csr: indptr is missing");
        return NULL;
    }
    int64_t nnz = indptr[nrows];
    mb_csr *m = mb_csr_new(nrows, ncols, nnz, err);
    if (!m) return NULL;
    memcpy(m->indptr, indptr, ((size_t)nrows + 1) * sizeof *indptr);
    if (nnz) {
        memcpy(m->indices, indices, (size_t)nnz * sizeof *indices);
        memcpy(m->data, data, (size_t)nnz * sizeof *data);
    }
    if (mb_csr_validate(m, err)) {
        mb_csr_free(m);
        return NULL;
    }
    return m;
}

size_t mb_csr_nbytes(const mb_csr *m) {
    return sizeof *m + ((size_t)m->nrows + 1) * sizeof(int64_t) + (size_t)m->nnz * (sizeof(int32_t) + sizeof(float));
}

void mb_csr_to_dense(const mb_csr *m, float *out) {
    memset(out, 0, (size_t)m->nrows * (size_t)m->ncols * sizeof(float));
    for (int64_t i = 0; i < m->nrows; i++)
        for (int64_t p = m->indptr[i]; p < m->indptr[i + 1]; p++) out[i * m->ncols + m->indices[p]] = m->data[p];
}

mb_csr *mb_csr_select_rows(const mb_csr *m, const int64_t *rows, int64_t n, mb_error *err) {
    int64_t nnz = 0;
    for (int64_t i = 0; i < n; i++) {
        if (rows[i] < 0 || rows[i] >= m->nrows) {
            mb_fail(err, MB_ERR_RANGE, "csr: row %lld out of range (matrix has %lld rows)", (long long)rows[i] + 1,
                    (long long)m->nrows);
            return NULL;
        }
        nnz += m->indptr[rows[i] + 1] - m->indptr[rows[i]];
    }
    mb_csr *out = mb_csr_new(n, m->ncols, nnz, err);
    if (!out) return NULL;
    int64_t o = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t a = m->indptr[rows[i]], len = m->indptr[rows[i] + 1] - a;
        memcpy(out->indices + o, m->indices + a, (size_t)len * sizeof(int32_t));
        memcpy(out->data + o, m->data + a, (size_t)len * sizeof(float));
        o += len;
        out->indptr[i + 1] = o;
    }
    return out;
}

void mb_csr_scale_columns_(mb_csr *m, const double *scale, int l2_normalize) {
    for (int64_t i = 0; i < m->nrows; i++) {
        double sq = 0;
        for (int64_t p = m->indptr[i]; p < m->indptr[i + 1]; p++) {
            double v = (double)m->data[p] * (scale ? scale[m->indices[p]] : 1.0);
            m->data[p] = (float)v;
            sq += v * v;
        }
        if (l2_normalize && sq > 0) {
            double inv = 1.0 / sqrt(sq);
            for (int64_t p = m->indptr[i]; p < m->indptr[i + 1]; p++) m->data[p] = (float)(m->data[p] * inv);
        }
    }
}
