/* umap.c: UMAP after umap-learn 0.5 (see umap.h for the steps and limits).
 *
 * Sections in reading order: options, curve fit (a, b), fuzzy simplicial set,
 * spectral initialisation (Lanczos), SGD layout, fit_transform,
 * trustworthiness. Comments cite the umap-learn function each part mirrors.
 */
#include "umap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "parallel.h"
#include "pca.h"
#include "rng.h"

#define SMOOTH_K_TOLERANCE 1e-5
#define MIN_K_DIST_SCALE 1e-3

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- options ---------------------------------------------------------- */

void mb_umap_default_options(mb_umap_options *o) {
    memset(o, 0, sizeof *o);
    o->n_neighbors = 15;
    o->n_components = 2;
    o->min_dist = 0.1;
    o->spread = 1.0;
    o->metric = MB_METRIC_COSINE;
    o->n_epochs = 0;
    o->learning_rate = 1.0;
    o->negative_sample_rate = 5;
    o->repulsion_strength = 1.0;
    o->local_connectivity = 1.0;
    o->set_op_mix_ratio = 1.0;
    o->init = MB_UMAP_INIT_SPECTRAL;
    o->seed = 42;
    o->verbose = -1;
}

const char *mb_umap_init_name(mb_umap_init init) {
    switch (init) {
    case MB_UMAP_INIT_SPECTRAL: return "spectral";
    case MB_UMAP_INIT_PCA: return "pca";
    case MB_UMAP_INIT_RANDOM: return "random";
    }
    return "?";
}

mb_status mb_umap_init_from_name(const char *name, mb_umap_init *out, mb_error *err) {
    if (name && strcmp(name, "spectral") == 0) *out = MB_UMAP_INIT_SPECTRAL;
    else if (name && strcmp(name, "pca") == 0) *out = MB_UMAP_INIT_PCA;
    else if (name && strcmp(name, "random") == 0) *out = MB_UMAP_INIT_RANDOM;
    else return mb_fail(err, MB_ERR_ARG, "init must be 'spectral', 'pca' or 'random', got '%s'", name ? name : "(null)");
    return MB_OK;
}

/* ---- a, b: umap_.find_ab_params --------------------------------------- */

#define AB_POINTS 300

static double ab_cost(const double *x, const double *y, double a, double b) {
    double c = 0;
    for (int i = 0; i < AB_POINTS; i++) {
        double p = x[i] > 0 ? pow(x[i], 2 * b) : 0.0;
        double r = 1.0 / (1.0 + a * p) - y[i];
        c += r * r;
    }
    return c;
}

mb_status mb_umap_find_ab(double spread, double min_dist, double *a_out, double *b_out, mb_error *err) {
    if (!(spread > 0) || !(min_dist >= 0) || min_dist > spread)
        return mb_fail(err, MB_ERR_ARG, "umap: need spread > 0 and 0 <= min_dist <= spread, got min_dist %g, spread %g", min_dist, spread);
    double x[AB_POINTS], y[AB_POINTS];
    for (int i = 0; i < AB_POINTS; i++) {
        x[i] = 3.0 * spread * i / (AB_POINTS - 1);
        y[i] = x[i] < min_dist ? 1.0 : exp(-(x[i] - min_dist) / spread);
    }
    /* Levenberg-Marquardt from (1, 1), curve_fit's start. */
    double a = 1.0, b = 1.0, lambda = 1e-3, cost = ab_cost(x, y, a, b);
    for (int iter = 0; iter < 500; iter++) {
        double jtj[3] = {0, 0, 0}, jtr[2] = {0, 0}; /* [aa, ab, bb] */
        for (int i = 0; i < AB_POINTS; i++) {
            if (x[i] <= 0) continue; /* f = 1 at x = 0 whatever a, b: no gradient */
            double p = pow(x[i], 2 * b), q = 1.0 + a * p;
            double f = 1.0 / q, r = f - y[i];
            double ja = -p / (q * q), jb = -a * p * 2.0 * log(x[i]) / (q * q);
            jtj[0] += ja * ja; jtj[1] += ja * jb; jtj[2] += jb * jb;
            jtr[0] += ja * r; jtr[1] += jb * r;
        }
        int accepted = 0;
        for (int tries = 0; tries < 30 && !accepted; tries++) {
            double m00 = jtj[0] * (1 + lambda), m11 = jtj[2] * (1 + lambda), m01 = jtj[1];
            double det = m00 * m11 - m01 * m01;
            if (!(fabs(det) > 0)) { lambda *= 10; continue; }
            double da = -(m11 * jtr[0] - m01 * jtr[1]) / det;
            double db = -(-m01 * jtr[0] + m00 * jtr[1]) / det;
            double na = a + da, nb = b + db;
            double nc = (na > 0 && nb > 0) ? ab_cost(x, y, na, nb) : INFINITY;
            if (nc < cost) {
                double rel = (cost - nc) / (cost > 0 ? cost : 1);
                a = na; b = nb; cost = nc;
                lambda = lambda / 10 > 1e-12 ? lambda / 10 : 1e-12;
                accepted = 1;
                if (rel < 1e-14 && fabs(da) < 1e-12 * a && fabs(db) < 1e-12 * b) iter = 1 << 20;
            } else {
                lambda *= 10;
            }
        }
        if (!accepted) break; /* no step lowers the cost: at the minimum */
    }
    if (!isfinite(a) || !isfinite(b))
        return mb_fail(err, MB_ERR_NUMERIC, "umap: the a, b curve fit diverged for min_dist %g, spread %g", min_dist, spread);
    *a_out = a;
    *b_out = b;
    return MB_OK;
}

/* ---- fuzzy simplicial set: smooth_knn_dist, compute_membership_strengths,
        fuzzy_simplicial_set -------------------------------------------- */

void mb_umap_smooth_knn_dist(const float *knn_dists, int64_t N, int k, double local_connectivity,
                             double *sigmas, double *rhos) {
    const double target = log2((double)k);
    double mean_all = 0;
    for (int64_t i = 0; i < N * k; i++) mean_all += knn_dists[i];
    mean_all /= (double)(N * k);
#pragma omp parallel for num_threads(mb_threads()) if (N * k > MB_PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        const float *d = knn_dists + i * k;
        /* rho: the local_connectivity-th nonzero distance (interpolated). The
           row is ascending, so its nonzero distances are its tail d[first..]. */
        double rho = 0;
        int first = 0;
        while (first < k && !(d[first] > 0)) first++;
        const int nonzero = k - first;
        if (nonzero > 0 && nonzero >= local_connectivity) {
            int index = (int)floor(local_connectivity);
            double interp = local_connectivity - index;
            if (index > 0) {
                rho = d[first + index - 1];
                if (interp > SMOOTH_K_TOLERANCE && index < nonzero) rho += interp * (d[first + index] - d[first + index - 1]);
            } else {
                rho = interp * d[first];
            }
        } else if (nonzero > 0) {
            rho = d[k - 1];
        }
        /* sigma: binary search for sum_{j>=1} exp(-(d_j - rho)/sigma) = log2 k. */
        double lo = 0, hi = INFINITY, mid = 1.0;
        for (int it = 0; it < 64; it++) {
            double psum = 0;
            for (int j = 1; j < k; j++) {
                double dd = d[j] - rho;
                psum += dd > 0 ? exp(-(dd / mid)) : 1.0;
            }
            if (fabs(psum - target) < SMOOTH_K_TOLERANCE) break;
            if (psum > target) {
                hi = mid;
                mid = (lo + hi) / 2.0;
            } else {
                lo = mid;
                if (isinf(hi)) mid *= 2;
                else mid = (lo + hi) / 2.0;
            }
        }
        /* Floors that keep sigma away from 0 on duplicate-heavy data. */
        if (rho > 0) {
            double mean_i = 0;
            for (int j = 0; j < k; j++) mean_i += d[j];
            mean_i /= k;
            if (mid < MIN_K_DIST_SCALE * mean_i) mid = MIN_K_DIST_SCALE * mean_i;
        } else if (mid < MIN_K_DIST_SCALE * mean_all) {
            mid = MIN_K_DIST_SCALE * mean_all;
        }
        sigmas[i] = mid;
        rhos[i] = rho;
    }
}

void mb_umap_graph_free(mb_umap_graph *g) {
    if (!g) return;
    free(g->rowptr);
    free(g->col);
    free(g->val);
    memset(g, 0, sizeof *g);
}

typedef struct graph_entry {
    int32_t col;
    int32_t from_transpose; /* 0: A_ij, 1: A_ji */
    float val;
} graph_entry;

static int entry_cmp(const void *pa, const void *pb) {
    const graph_entry *a = pa, *b = pb;
    if (a->col != b->col) return a->col < b->col ? -1 : 1;
    return a->from_transpose - b->from_transpose;
}

mb_status mb_umap_fuzzy_graph(const int32_t *knn_idx, const float *knn_dists, int64_t N, int k,
                              double local_connectivity, double set_op_mix_ratio,
                              mb_umap_graph *out, mb_error *err) {
    memset(out, 0, sizeof *out);
    double *sigmas = malloc((size_t)N * sizeof(double));
    double *rhos = malloc((size_t)N * sizeof(double));
    float *memb = malloc((size_t)N * (size_t)k * sizeof(float));
    int64_t *count = calloc((size_t)N + 1, sizeof(int64_t));
    graph_entry *ent = NULL;
    mb_status st = MB_OK;
    if (!sigmas || !rhos || !memb || !count) { st = mb_fail(err, MB_ERR_NOMEM, "umap: out of memory building the graph"); goto done; }
    mb_umap_smooth_knn_dist(knn_dists, N, k, local_connectivity, sigmas, rhos);
    /* Membership strengths of the directed kNN graph A. */
    for (int64_t i = 0; i < N; i++)
        for (int j = 0; j < k; j++) {
            int64_t e = i * k + j;
            int32_t t = knn_idx[e];
            float v;
            if (t < 0 || t == i) v = 0.0f;
            else if (knn_dists[e] - rhos[i] <= 0.0 || sigmas[i] == 0.0) v = 1.0f;
            else v = (float)exp(-((knn_dists[e] - rhos[i]) / sigmas[i]));
            memb[e] = v;
            if (v != 0.0f) { count[i]++; count[t]++; }
        }
    /* Entries of A and A^T bucketed by row, then merged per (row, col). */
    int64_t total = 0;
    for (int64_t i = 0; i < N; i++) { int64_t c = count[i]; count[i] = total; total += c; }
    count[N] = total;
    ent = malloc((size_t)(total > 0 ? total : 1) * sizeof(graph_entry));
    int64_t *fill = malloc((size_t)N * sizeof(int64_t));
    if (!ent || !fill) { free(fill); st = mb_fail(err, MB_ERR_NOMEM, "umap: out of memory building the graph"); goto done; }
    memcpy(fill, count, (size_t)N * sizeof(int64_t));
    for (int64_t i = 0; i < N; i++)
        for (int j = 0; j < k; j++) {
            float v = memb[i * k + j];
            if (v == 0.0f) continue;
            int32_t t = knn_idx[i * k + j];
            ent[fill[i]++] = (graph_entry){t, 0, v};
            ent[fill[t]++] = (graph_entry){(int32_t)i, 1, v};
        }
    free(fill);
    out->n = N;
    out->rowptr = malloc(((size_t)N + 1) * sizeof(int64_t));
    out->col = malloc((size_t)(total > 0 ? total : 1) * sizeof(int32_t));
    out->val = malloc((size_t)(total > 0 ? total : 1) * sizeof(float));
    if (!out->rowptr || !out->col || !out->val) { st = mb_fail(err, MB_ERR_NOMEM, "umap: out of memory building the graph"); goto done; }
    int64_t nnz = 0;
    for (int64_t i = 0; i < N; i++) {
        out->rowptr[i] = nnz;
        graph_entry *row = ent + count[i];
        int64_t len = count[i + 1] - count[i];
        qsort(row, (size_t)len, sizeof *row, entry_cmp);
        for (int64_t p = 0; p < len;) {
            double a = 0, at = 0;
            int32_t c = row[p].col;
            for (; p < len && row[p].col == c; p++) {
                if (row[p].from_transpose) at = row[p].val;
                else a = row[p].val;
            }
            double prod = a * at;
            double v = set_op_mix_ratio * (a + at - prod) + (1.0 - set_op_mix_ratio) * prod;
            if (v != 0.0) {
                out->col[nnz] = c;
                out->val[nnz] = (float)v;
                nnz++;
            }
        }
    }
    out->rowptr[N] = nnz;
    out->nnz = nnz;
done:
    free(sigmas); free(rhos); free(memb); free(count); free(ent);
    if (st != MB_OK) mb_umap_graph_free(out);
    return st;
}

/* ---- spectral initialisation: spectral.spectral_layout and
        spectral.multi_component_layout ---------------------------------- */

/* The symmetric normalised adjacency M = D^-1/2 A D^-1/2 of one component,
   in local indices. The Laplacian's smallest eigenvectors are M's largest. */
typedef struct sub_graph {
    int64_t n;
    int64_t *rowptr;
    int32_t *col;
    double *val;    /* already scaled by 1/sqrt(d_i d_j) */
    double *sqrt_d; /* [n] sqrt of the degrees: M's top eigenvector direction */
} sub_graph;

static void sub_graph_free(sub_graph *s) {
    free(s->rowptr); free(s->col); free(s->val); free(s->sqrt_d);
    memset(s, 0, sizeof *s);
}

static void sub_matvec(const sub_graph *s, const double *x, double *y) {
    /* Threads only pay for graphs with millions of edges: a Lanczos run makes
       hundreds of these products, and each fork costs more than a small one. */
#pragma omp parallel for num_threads(mb_threads()) if (s->rowptr[s->n] > (1 << 21))
    for (int64_t i = 0; i < s->n; i++) {
        double acc = 0;
        for (int64_t p = s->rowptr[i]; p < s->rowptr[i + 1]; p++) acc += s->val[p] * x[s->col[p]];
        y[i] = acc;
    }
}

/* Small vector kernels for Lanczos, written out rather than called from
   BLAS: these are thousands of short level-1/2 calls, where OpenBLAS's thread
   hand-offs cost more than the arithmetic on a busy machine, and plain loops
   give the same bits for any thread count. */
static double vdot(int64_t n, const double *a, const double *b) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void vaxpy(int64_t n, double alpha, const double *x, double *y) {
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

static void vscale(int64_t n, double alpha, double *x) {
    for (int64_t i = 0; i < n; i++) x[i] *= alpha;
}

/* w -= V^T (V w) for the first rows vectors of V [rows, n]; h scratch [rows]. */
static void orthogonalise(const double *V, int rows, int64_t n, double *w, double *h) {
    for (int r = 0; r < rows; r++) h[r] = vdot(n, V + (size_t)r * n, w);
    for (int r = 0; r < rows; r++) vaxpy(n, -h[r], V + (size_t)r * n, w);
}

static void project_out(double *w, const double *u, int64_t n) {
    vaxpy(n, -vdot(n, w, u), u, w);
}

/* The nev largest eigenpairs of M restricted to the complement of u0 (unit),
   by Lanczos with full reorthogonalisation and explicit restarts.
   vecs [nev, n] (one vector per row). Returns the largest residual norm. */
static mb_status lanczos_top(const sub_graph *s, const double *u0, int nev, mb_rng *rng,
                             double *vecs, double *residual, mb_error *err) {
    const int64_t n = s->n;
    int m = (int)(n - 1 < 128 ? n - 1 : 128); /* Krylov dimension; n-1 is the whole complement */
    if (m < nev) return mb_fail(err, MB_ERR_ARG, "spectral: component of %lld points is too small", (long long)n);
    double *V = malloc((size_t)(m + 1) * (size_t)n * sizeof(double));
    double *w = malloc((size_t)n * sizeof(double));
    double *h = malloc((size_t)(m + 1) * sizeof(double));
    double *alpha = malloc((size_t)m * sizeof(double));
    double *beta = malloc((size_t)m * sizeof(double));
    double *T = malloc((size_t)m * (size_t)m * sizeof(double));
    double *theta = malloc((size_t)nev * sizeof(double));
    double *S = malloc((size_t)m * (size_t)nev * sizeof(double));
    mb_status st = MB_OK;
    if (!V || !w || !h || !alpha || !beta || !T || !theta || !S) { st = mb_fail(err, MB_ERR_NOMEM, "spectral: out of memory"); goto done; }
    /* Seeded start vector. */
    for (int64_t i = 0; i < n; i++) V[i] = mb_rng_uniform(rng) - 0.5;
    double worst = INFINITY;
    const double tol = 1e-4; /* umap-learn asks eigsh for tol 1e-4 */
    for (int restart = 0; restart < 30; restart++) {
        double *v0 = V;
        project_out(v0, u0, n);
        double nrm = sqrt(vdot(n, v0, v0));
        if (!(nrm > 0)) { st = mb_fail(err, MB_ERR_NUMERIC, "spectral: the start vector vanished"); goto done; }
        vscale(n, 1.0 / nrm, v0);
        int steps = m;
        for (int j = 0; j < m; j++) {
            double *vj = V + (size_t)j * n;
            sub_matvec(s, vj, w);
            project_out(w, u0, n);
            /* Full reorthogonalisation (twice is enough: Kahan-Parlett). */
            alpha[j] = vdot(n, w, vj);
            for (int pass = 0; pass < 2; pass++) orthogonalise(V, j + 1, n, w, h);
            beta[j] = sqrt(vdot(n, w, w));
            if (j + 1 < m) {
                if (beta[j] < 1e-12) { steps = j + 1; break; } /* invariant subspace found: exact */
                double *next = V + (size_t)(j + 1) * n;
                for (int64_t i = 0; i < n; i++) next[i] = w[i] / beta[j];
            }
        }
        if (steps < nev) { st = mb_fail(err, MB_ERR_NUMERIC, "spectral: Krylov space of dimension %d is smaller than %d", steps, nev); goto done; }
        memset(T, 0, (size_t)steps * (size_t)steps * sizeof(double));
        for (int j = 0; j < steps; j++) {
            T[(size_t)j * steps + j] = alpha[j];
            if (j + 1 < steps) T[(size_t)j * steps + j + 1] = T[(size_t)(j + 1) * steps + j] = beta[j];
        }
        st = mb_symmetric_eigen_top(T, steps, nev, theta, S, err);
        if (st != MB_OK) goto done;
        worst = 0;
        double last_beta = steps == m ? beta[steps - 1] : 0.0;
        for (int c = 0; c < nev; c++) {
            double r = fabs(last_beta * S[(size_t)(steps - 1) * nev + c]);
            if (r > worst) worst = r;
        }
        /* Ritz vectors y_c = V^T S[:, c]. */
        for (int c = 0; c < nev; c++) {
            double *y = vecs + (size_t)c * n;
            memset(y, 0, (size_t)n * sizeof(double));
            for (int j = 0; j < steps; j++) vaxpy(n, S[(size_t)j * nev + c], V + (size_t)j * n, y);
        }
        if (worst < tol || steps < m) break;
        /* Restart from the sum of the wanted Ritz vectors. */
        memset(V, 0, (size_t)n * sizeof(double));
        for (int c = 0; c < nev; c++) vaxpy(n, 1.0, vecs + (size_t)c * n, V);
    }
    *residual = worst;
done:
    free(V); free(w); free(h); free(alpha); free(beta); free(T); free(theta); free(S);
    return st;
}

/* One component's spectral layout [nc, dim] (nodes[] are its global ids). */
static mb_status spectral_component(const mb_umap_graph *g, const int64_t *nodes, int64_t nc, int64_t *local,
                                    int dim, mb_rng *rng, double *out, double *residual, mb_error *err) {
    sub_graph s = {0};
    s.n = nc;
    int64_t nnz = 0;
    for (int64_t a = 0; a < nc; a++) nnz += g->rowptr[nodes[a] + 1] - g->rowptr[nodes[a]];
    s.rowptr = malloc(((size_t)nc + 1) * sizeof(int64_t));
    s.col = malloc((size_t)(nnz > 0 ? nnz : 1) * sizeof(int32_t));
    s.val = malloc((size_t)(nnz > 0 ? nnz : 1) * sizeof(double));
    s.sqrt_d = malloc((size_t)nc * sizeof(double));
    double *vecs = malloc((size_t)dim * (size_t)nc * sizeof(double));
    mb_status st = MB_OK;
    if (!s.rowptr || !s.col || !s.val || !s.sqrt_d || !vecs) { st = mb_fail(err, MB_ERR_NOMEM, "spectral: out of memory"); goto done; }
    for (int64_t a = 0; a < nc; a++) local[nodes[a]] = a;
    nnz = 0;
    for (int64_t a = 0; a < nc; a++) {
        s.rowptr[a] = nnz;
        double deg = 0;
        for (int64_t p = g->rowptr[nodes[a]]; p < g->rowptr[nodes[a] + 1]; p++) {
            s.col[nnz] = (int32_t)local[g->col[p]];
            s.val[nnz] = g->val[p];
            deg += g->val[p];
            nnz++;
        }
        s.sqrt_d[a] = sqrt(deg);
    }
    s.rowptr[nc] = nnz;
    for (int64_t a = 0; a < nc; a++)
        for (int64_t p = s.rowptr[a]; p < s.rowptr[a + 1]; p++) s.val[p] /= s.sqrt_d[a] * s.sqrt_d[s.col[p]];
    /* The trivial eigenvector sqrt(d)/||sqrt(d)|| (eigenvalue 1), deflated. */
    double *u0 = malloc((size_t)nc * sizeof(double));
    if (!u0) { st = mb_fail(err, MB_ERR_NOMEM, "spectral: out of memory"); goto done; }
    double nrm = 0;
    for (int64_t a = 0; a < nc; a++) nrm += s.sqrt_d[a] * s.sqrt_d[a]; /* = total degree */
    nrm = sqrt(nrm);
    for (int64_t a = 0; a < nc; a++) u0[a] = s.sqrt_d[a] / nrm;
    st = lanczos_top(&s, u0, dim, rng, vecs, residual, err);
    free(u0);
    if (st != MB_OK) goto done;
    for (int64_t a = 0; a < nc; a++)
        for (int c = 0; c < dim; c++) {
            double v = vecs[(size_t)c * nc + a];
            if (!isfinite(v)) { st = mb_fail(err, MB_ERR_NUMERIC, "spectral: non-finite eigenvector"); goto done; }
            out[a * dim + c] = v;
        }
done:
    sub_graph_free(&s);
    free(vecs);
    return st;
}

static int64_t uf_find(int64_t *parent, int64_t x) {
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

/* Component labels 0..C-1 in order of first appearance; returns C. */
static int64_t connected_components(const mb_umap_graph *g, int64_t *label, int64_t *parent) {
    for (int64_t i = 0; i < g->n; i++) parent[i] = i;
    for (int64_t i = 0; i < g->n; i++)
        for (int64_t p = g->rowptr[i]; p < g->rowptr[i + 1]; p++) {
            int64_t a = uf_find(parent, i), b = uf_find(parent, g->col[p]);
            if (a != b) parent[a < b ? b : a] = a < b ? a : b;
        }
    int64_t C = 0;
    for (int64_t i = 0; i < g->n; i++) label[i] = -1;
    for (int64_t i = 0; i < g->n; i++) {
        int64_t r = uf_find(parent, i);
        if (label[r] < 0) label[r] = C++;
        label[i] = label[r];
    }
    return C;
}

/* Positions of the C components [C, dim]: spectral.component_layout for many
   components (spectral embedding of exp(-d^2) between centroids), else
   umap-learn's +-unit-vector layout. */
static mb_status meta_embedding(const float *X, int64_t N, int64_t D, mb_metric metric, const int64_t *label,
                                int64_t C, int dim, double *meta, mb_error *err) {
    if (C <= 2 * dim) {
        memset(meta, 0, (size_t)C * dim * sizeof(double));
        int64_t half = (C + 1) / 2;
        for (int64_t c = 0; c < C; c++) meta[c * dim + (c % half)] = c < half ? 1.0 : -1.0;
        return MB_OK;
    }
    double *cen = calloc((size_t)C * (size_t)D, sizeof(double));
    int64_t *cnt = calloc((size_t)C, sizeof(int64_t));
    double *W = malloc((size_t)C * (size_t)C * sizeof(double));
    double *deg = malloc((size_t)C * sizeof(double));
    double *w = malloc((size_t)(dim + 1) * sizeof(double));
    double *Z = malloc((size_t)C * (size_t)(dim + 1) * sizeof(double));
    mb_status st = MB_OK;
    if (!cen || !cnt || !W || !deg || !w || !Z) { st = mb_fail(err, MB_ERR_NOMEM, "spectral: out of memory"); goto done; }
    for (int64_t i = 0; i < N; i++) {
        cnt[label[i]]++;
        for (int64_t d = 0; d < D; d++) cen[label[i] * D + d] += X[i * D + d];
    }
    for (int64_t c = 0; c < C; c++)
        for (int64_t d = 0; d < D; d++) cen[c * D + d] /= (double)cnt[c];
    for (int64_t a = 0; a < C; a++)
        for (int64_t b = 0; b < C; b++) {
            const double *x = cen + a * D, *y = cen + b * D;
            double dist;
            if (metric == MB_METRIC_COSINE) {
                double xy = 0, xx = 0, yy = 0;
                for (int64_t d = 0; d < D; d++) { xy += x[d] * y[d]; xx += x[d] * x[d]; yy += y[d] * y[d]; }
                dist = (xx > 0 && yy > 0) ? 1.0 - xy / sqrt(xx * yy) : 1.0;
                if (dist < 0) dist = 0;
            } else {
                double s = 0;
                for (int64_t d = 0; d < D; d++) s += (x[d] - y[d]) * (x[d] - y[d]);
                dist = sqrt(s);
            }
            W[a * C + b] = exp(-dist * dist);
        }
    for (int64_t a = 0; a < C; a++) {
        deg[a] = 0;
        for (int64_t b = 0; b < C; b++) deg[a] += W[a * C + b];
    }
    for (int64_t a = 0; a < C; a++)
        for (int64_t b = 0; b < C; b++) W[a * C + b] /= sqrt(deg[a] * deg[b]);
    st = mb_symmetric_eigen_top(W, (int)C, dim + 1, w, Z, err);
    if (st != MB_OK) goto done;
    /* Drop the trivial vector; undo the normalisation as scikit-learn's
       spectral_embedding does; scale to unit max. */
    double mx = 0;
    for (int64_t c = 0; c < C; c++)
        for (int d = 0; d < dim; d++) {
            double v = Z[c * (dim + 1) + d + 1] / sqrt(deg[c]);
            meta[c * dim + d] = v;
            if (fabs(v) > mx) mx = fabs(v);
        }
    if (mx > 0)
        for (int64_t i = 0; i < C * dim; i++) meta[i] /= mx;
done:
    free(cen); free(cnt); free(W); free(deg); free(w); free(Z);
    return st;
}

/* init [N, dim] by spectral layout, component by component. */
static mb_status spectral_init(const float *X, int64_t N, int64_t D, mb_metric metric, const mb_umap_graph *g,
                               int dim, mb_rng *rng, double *init, int *n_comp, double *residual, mb_error *err) {
    int64_t *label = malloc((size_t)N * sizeof(int64_t));
    int64_t *scratch = malloc((size_t)N * sizeof(int64_t));
    int64_t *nodes = malloc((size_t)N * sizeof(int64_t));
    double *meta = NULL, *comp = NULL;
    mb_status st = MB_OK;
    *residual = 0;
    if (!label || !scratch || !nodes) { st = mb_fail(err, MB_ERR_NOMEM, "spectral: out of memory"); goto done; }
    int64_t C = connected_components(g, label, scratch);
    *n_comp = (int)C;
    meta = malloc((size_t)C * dim * sizeof(double));
    comp = malloc((size_t)N * dim * sizeof(double));
    if (!meta || !comp) { st = mb_fail(err, MB_ERR_NOMEM, "spectral: out of memory"); goto done; }
    if (C == 1) {
        for (int64_t i = 0; i < N; i++) nodes[i] = i;
        st = spectral_component(g, nodes, N, scratch, dim, rng, init, residual, err);
        goto done;
    }
    st = meta_embedding(X, N, D, metric, label, C, dim, meta, err);
    if (st != MB_OK) goto done;
    for (int64_t c = 0; c < C; c++) {
        int64_t nc = 0;
        for (int64_t i = 0; i < N; i++) if (label[i] == c) nodes[nc++] = i;
        /* Half the distance to the nearest other component's position. */
        double range = INFINITY;
        for (int64_t o = 0; o < C; o++) {
            double s = 0;
            for (int d = 0; d < dim; d++) s += (meta[c * dim + d] - meta[o * dim + d]) * (meta[c * dim + d] - meta[o * dim + d]);
            if (s > 0 && sqrt(s) < range) range = sqrt(s);
        }
        range = isfinite(range) ? range / 2 : 1.0;
        double r = 0;
        int spectral_ok = 0;
        if (nc >= 2 * dim && nc > dim + 1) {
            mb_error sub_err;
            if (spectral_component(g, nodes, nc, scratch, dim, rng, comp, &r, &sub_err) == MB_OK) {
                spectral_ok = 1;
                if (r > *residual) *residual = r;
            }
        }
        if (spectral_ok) {
            double mx = 0;
            for (int64_t i = 0; i < nc * dim; i++) if (fabs(comp[i]) > mx) mx = fabs(comp[i]);
            double expand = mx > 0 ? range / mx : 0;
            for (int64_t a = 0; a < nc; a++)
                for (int d = 0; d < dim; d++) init[nodes[a] * dim + d] = comp[a * dim + d] * expand + meta[c * dim + d];
        } else {
            for (int64_t a = 0; a < nc; a++)
                for (int d = 0; d < dim; d++)
                    init[nodes[a] * dim + d] = (2 * mb_rng_uniform(rng) - 1) * range + meta[c * dim + d];
        }
    }
done:
    free(label); free(scratch); free(nodes); free(meta); free(comp);
    return st;
}

/* ---- SGD layout: layouts.optimize_layout_euclidean (single thread) ------ */

static inline float clip4(float v) { return v > 4.0f ? 4.0f : (v < -4.0f ? -4.0f : v); }

static void optimize_layout(float *Y, int64_t N, int dim, const int32_t *head, const int32_t *tail,
                            const double *epochs_per_sample, int64_t n_edges, int n_epochs, float a, float b,
                            float gamma, double initial_alpha, int negative_sample_rate, mb_rng *rng, int verbose) {
    double *next_sample = malloc((size_t)n_edges * sizeof(double));
    double *next_negative = malloc((size_t)n_edges * sizeof(double));
    double *per_negative = malloc((size_t)n_edges * sizeof(double));
    if (!next_sample || !next_negative || !per_negative) goto done; /* caller checked memory upfront */
    for (int64_t e = 0; e < n_edges; e++) {
        next_sample[e] = epochs_per_sample[e];
        per_negative[e] = negative_sample_rate > 0 ? epochs_per_sample[e] / negative_sample_rate : INFINITY;
        next_negative[e] = per_negative[e];
    }
    double alpha = initial_alpha;
    for (int n = 0; n < n_epochs; n++) {
        float al = (float)alpha;
        for (int64_t e = 0; e < n_edges; e++) {
            if (next_sample[e] > n) continue;
            int32_t j = head[e], k = tail[e];
            float *cur = Y + (int64_t)j * dim, *oth = Y + (int64_t)k * dim;
            float d2 = 0;
            for (int d = 0; d < dim; d++) { float t = cur[d] - oth[d]; d2 += t * t; }
            float gc = 0.0f;
            if (d2 > 0.0f) {
                float pb = powf(d2, b);
                gc = -2.0f * a * b * (pb / d2) / (a * pb + 1.0f);
            }
            for (int d = 0; d < dim; d++) {
                float g = clip4(gc * (cur[d] - oth[d]));
                cur[d] += g * al;
                oth[d] -= g * al;
            }
            next_sample[e] += epochs_per_sample[e];
            if (negative_sample_rate <= 0) continue;
            int n_neg = (int)((n - next_negative[e]) / per_negative[e]);
            for (int p = 0; p < n_neg; p++) {
                int64_t kk = (int64_t)mb_rng_below(rng, (uint64_t)N);
                float *o = Y + kk * dim;
                float dd = 0;
                for (int d = 0; d < dim; d++) { float t = cur[d] - o[d]; dd += t * t; }
                if (dd > 0.0f) {
                    float coef = 2.0f * gamma * b / ((0.001f + dd) * (a * powf(dd, b) + 1.0f));
                    for (int d = 0; d < dim; d++) cur[d] += clip4(coef * (cur[d] - o[d])) * al;
                }
                /* dd == 0: the point itself or a duplicate; no push either way. */
            }
            next_negative[e] += n_neg * per_negative[e];
        }
        alpha = initial_alpha * (1.0 - (double)n / (double)n_epochs);
        if (verbose && n_epochs >= 4 && (n + 1) % (n_epochs / 4) == 0 && n + 1 < n_epochs)
            fprintf(stderr, "umap: layout epoch %d/%d\n", n + 1, n_epochs);
    }
done:
    free(next_sample); free(next_negative); free(per_negative);
}

/* ---- fit_transform: umap_.UMAP.fit and simplicial_set_embedding --------- */

static mb_status validate(const float *X, int64_t N, int64_t D, const mb_umap_options *o, mb_error *err) {
    if (!X || N < 1 || D < 1) return mb_fail(err, MB_ERR_SHAPE, "umap: X must be a non-empty [N,D] matrix, got [%lld,%lld]", (long long)N, (long long)D);
    if (N > INT32_MAX) return mb_fail(err, MB_ERR_SHAPE, "umap: at most %d rows", INT32_MAX);
    if (o->n_neighbors < 2) return mb_fail(err, MB_ERR_ARG, "umap: n_neighbors (%d) must be at least 2", o->n_neighbors);
    if (o->n_neighbors >= N)
        return mb_fail(err, MB_ERR_ARG, "umap: n_neighbors (%d) must be less than the number of rows (%lld)", o->n_neighbors, (long long)N);
    if (o->n_components < 1 || o->n_components >= N)
        return mb_fail(err, MB_ERR_ARG, "umap: n_components (%d) must be between 1 and N-1 (%lld)", o->n_components, (long long)(N - 1));
    if (!(o->learning_rate > 0)) return mb_fail(err, MB_ERR_ARG, "umap: learning_rate (%g) must be positive", o->learning_rate);
    if (o->negative_sample_rate < 0) return mb_fail(err, MB_ERR_ARG, "umap: negative_sample_rate (%d) must be >= 0", o->negative_sample_rate);
    if (!(o->repulsion_strength >= 0)) return mb_fail(err, MB_ERR_ARG, "umap: repulsion_strength (%g) must be >= 0", o->repulsion_strength);
    if (!(o->local_connectivity >= 0)) return mb_fail(err, MB_ERR_ARG, "umap: local_connectivity (%g) must be >= 0", o->local_connectivity);
    if (!(o->set_op_mix_ratio >= 0 && o->set_op_mix_ratio <= 1))
        return mb_fail(err, MB_ERR_ARG, "umap: set_op_mix_ratio (%g) must be in [0, 1]", o->set_op_mix_ratio);
    if (o->n_epochs > 100000) return mb_fail(err, MB_ERR_ARG, "umap: n_epochs (%d) is unreasonably large", o->n_epochs);
    if (!(o->spread > 0) || !(o->min_dist >= 0) || o->min_dist > o->spread)
        return mb_fail(err, MB_ERR_ARG, "umap: need spread > 0 and 0 <= min_dist <= spread, got min_dist %g, spread %g", o->min_dist, o->spread);
    return mb_check_finite(X, N, D, err);
}

mb_status mb_umap_fit_transform(const float *X, int64_t N, int64_t D, const mb_umap_options *opts,
                                float *Y, mb_umap_info *info, mb_error *err) {
    mb_umap_options o;
    if (opts) o = *opts;
    else mb_umap_default_options(&o);
    mb_umap_info inf;
    memset(&inf, 0, sizeof inf);
    mb_status st = validate(X, N, D, &o, err);
    if (st != MB_OK) return st;
    mb_threads_init();
    const int k = o.n_neighbors, dim = o.n_components;
    const int verbose = o.verbose < 0 ? (isatty(2) && N >= 5000) : o.verbose;
    mb_rng rng;
    mb_rng_seed(&rng, o.seed);
    double t0 = now_seconds(), t;

    int32_t *knn_idx = malloc((size_t)N * k * sizeof(int32_t));
    float *knn_d = malloc((size_t)N * k * sizeof(float));
    mb_umap_graph g = {0};
    double *init = NULL, *eps = NULL;
    int32_t *head = NULL, *tail = NULL;
    if (!knn_idx || !knn_d) { st = mb_fail(err, MB_ERR_NOMEM, "umap: out of memory for the kNN graph"); goto done; }

    /* 1. neighbours */
    if (verbose) fprintf(stderr, "umap: %lld x %lld, %d neighbours (%s)\n", (long long)N, (long long)D, k, mb_metric_name(o.metric));
    st = mb_knn_exact(X, N, D, k, o.metric, knn_idx, knn_d, err);
    if (st != MB_OK) goto done;
    t = now_seconds();
    inf.seconds_knn = t - t0;
    if (verbose) fprintf(stderr, "umap: nearest neighbours %.2f s\n", inf.seconds_knn);

    /* 2-3. fuzzy simplicial set */
    st = mb_umap_fuzzy_graph(knn_idx, knn_d, N, k, o.local_connectivity, o.set_op_mix_ratio, &g, err);
    if (st != MB_OK) goto done;
    free(knn_idx); knn_idx = NULL;
    free(knn_d); knn_d = NULL;
    int n_epochs = o.n_epochs > 0 ? o.n_epochs : (N <= 10000 ? 500 : 200);
    inf.n_epochs = n_epochs;
    /* Drop edges too weak to be sampled once in n_epochs (umap-learn does the
       same before initialising). */
    float wmax = 0;
    for (int64_t p = 0; p < g.nnz; p++) if (g.val[p] > wmax) wmax = g.val[p];
    {
        float floor_w = wmax / (float)n_epochs;
        int64_t nnz = 0;
        for (int64_t i = 0; i < N; i++) {
            int64_t start = g.rowptr[i];
            g.rowptr[i] = nnz;
            for (int64_t p = start; p < g.rowptr[i + 1]; p++) {
                if (g.val[p] < floor_w) continue;
                g.col[nnz] = g.col[p];
                g.val[nnz] = g.val[p];
                nnz++;
            }
        }
        g.rowptr[N] = nnz;
        g.nnz = nnz;
    }
    inf.n_edges = g.nnz;
    st = mb_umap_find_ab(o.spread, o.min_dist, &inf.a, &inf.b, err);
    if (st != MB_OK) goto done;
    t0 = t;
    t = now_seconds();
    inf.seconds_graph = t - t0;

    /* 5. initialisation */
    init = malloc((size_t)N * dim * sizeof(double));
    if (!init) { st = mb_fail(err, MB_ERR_NOMEM, "umap: out of memory"); goto done; }
    inf.init_used = o.init;
    if (o.init == MB_UMAP_INIT_SPECTRAL) {
        mb_error serr;
        if (spectral_init(X, N, D, o.metric, &g, dim, &rng, init, &inf.graph_components, &inf.spectral_residual, &serr) != MB_OK) {
            if (verbose) fprintf(stderr, "umap: spectral initialisation failed (%s); using PCA\n", serr.msg);
            inf.init_used = MB_UMAP_INIT_PCA;
        } else {
            double mx = 0;
            for (int64_t i = 0; i < N * dim; i++) if (fabs(init[i]) > mx) mx = fabs(init[i]);
            double expand = mx > 0 ? 10.0 / mx : 1.0;
            for (int64_t i = 0; i < N * dim; i++) init[i] = init[i] * expand + 1e-4 * mb_rng_normal(&rng);
        }
    } else {
        int64_t *lab = malloc((size_t)N * sizeof(int64_t)), *par = malloc((size_t)N * sizeof(int64_t));
        if (lab && par) inf.graph_components = (int)connected_components(&g, lab, par);
        free(lab); free(par);
    }
    if (inf.init_used == MB_UMAP_INIT_PCA) {
        float *sc = malloc((size_t)N * dim * sizeof(float));
        if (!sc) { st = mb_fail(err, MB_ERR_NOMEM, "umap: out of memory"); goto done; }
        if (dim <= (N < D ? N : D) && mb_pca(X, N, D, dim, sc, NULL, NULL, err) == MB_OK) {
            double mx = 0;
            for (int64_t i = 0; i < N * dim; i++) if (fabs(sc[i]) > mx) mx = fabs(sc[i]);
            double expand = mx > 0 ? 10.0 / mx : 1.0;
            for (int64_t i = 0; i < N * dim; i++) init[i] = sc[i] * expand + 1e-4 * mb_rng_normal(&rng);
        } else {
            if (o.init == MB_UMAP_INIT_PCA) { free(sc); goto done; } /* asked for PCA: report why it failed */
            inf.init_used = MB_UMAP_INIT_RANDOM;
        }
        free(sc);
    }
    if (inf.init_used == MB_UMAP_INIT_RANDOM)
        for (int64_t i = 0; i < N * dim; i++) init[i] = 20.0 * mb_rng_uniform(&rng) - 10.0;
    /* Every column rescaled to [0, 10] before the layout. */
    for (int d = 0; d < dim; d++) {
        double lo = INFINITY, hi = -INFINITY;
        for (int64_t i = 0; i < N; i++) { double v = init[i * dim + d]; if (v < lo) lo = v; if (v > hi) hi = v; }
        double span = hi > lo ? hi - lo : 1.0;
        for (int64_t i = 0; i < N; i++) Y[i * dim + d] = (float)(10.0 * (init[i * dim + d] - lo) / span);
    }
    t0 = t;
    t = now_seconds();
    inf.seconds_init = t - t0;
    if (verbose) fprintf(stderr, "umap: graph %.2f s, %s initialisation %.2f s (%d components)\n", inf.seconds_graph,
                         mb_umap_init_name(inf.init_used), inf.seconds_init, inf.graph_components);

    /* 6. layout: edges of the symmetric graph in row order, as graph.tocoo(). */
    head = malloc((size_t)(g.nnz > 0 ? g.nnz : 1) * sizeof(int32_t));
    tail = malloc((size_t)(g.nnz > 0 ? g.nnz : 1) * sizeof(int32_t));
    eps = malloc((size_t)(g.nnz > 0 ? g.nnz : 1) * sizeof(double));
    if (!head || !tail || !eps) { st = mb_fail(err, MB_ERR_NOMEM, "umap: out of memory"); goto done; }
    for (int64_t i = 0; i < N; i++)
        for (int64_t p = g.rowptr[i]; p < g.rowptr[i + 1]; p++) {
            head[p] = (int32_t)i;
            tail[p] = g.col[p];
            /* make_epochs_per_sample: an edge of weight w is sampled every wmax/w epochs. */
            eps[p] = (double)wmax / (double)g.val[p];
        }
    optimize_layout(Y, N, dim, head, tail, eps, g.nnz, n_epochs, (float)inf.a, (float)inf.b,
                    (float)o.repulsion_strength, o.learning_rate, o.negative_sample_rate, &rng, verbose);
    for (int64_t i = 0; i < N * dim; i++)
        if (!isfinite(Y[i])) { st = mb_fail(err, MB_ERR_NUMERIC, "umap: the layout diverged (non-finite coordinate at row %lld)", (long long)(i / dim)); goto done; }
    t0 = t;
    t = now_seconds();
    inf.seconds_layout = t - t0;
    inf.seconds_total = inf.seconds_knn + inf.seconds_graph + inf.seconds_init + inf.seconds_layout;
    if (verbose) fprintf(stderr, "umap: layout %.2f s (%d epochs, %lld edges); total %.2f s\n", inf.seconds_layout, n_epochs,
                         (long long)g.nnz, inf.seconds_total);
    if (info) *info = inf;
done:
    free(knn_idx); free(knn_d); free(init); free(head); free(tail); free(eps);
    mb_umap_graph_free(&g);
    return st;
}
