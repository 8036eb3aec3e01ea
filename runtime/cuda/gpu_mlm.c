/* gpu_mlm.c: the masked-LM model on the device (mb_cuda_mlm in runtime/cuda.h).
 *
 * A mirror of runtime/distilbert_mlm.c: the encoder is an mb_cuda_model
 * (gpu_model.c, encoder-only forward and backward from the hidden state),
 * and the head's five tensors live in a device block of their own, laid out
 * as the host head block. The projector is tied to the word embeddings: its
 * products read the encoder block's word_embeddings.weight and its gradient
 * goes into the encoder gradient block, as on the CPU. Two parameter blocks,
 * so the optimizer over model:parameters() spans both (gpu_optim.c takes
 * any number of blocks).
 *
 * The head runs at the selected rows only (the labelled positions for the
 * loss, about 15% of the tokens). Rows are gathered and scattered with the
 * embedding-backward kernel, which sums listed rows in a fixed order: a
 * gather is "h[r] += hidden[pos[r]]" into zeros, a scatter
 * "d_hidden[pos[r]] += dx[r]" (the positions are distinct), so no kernel of
 * its own is needed. Products go through the encoder's cuBLAS handle and
 * precision (mb_cuda_model_gemm); in bf16 the tied matrix comes from the
 * encoder's bf16 mirror and the rest is rounded into this head's scratch.
 *
 * Memory: the head block (params, grads) at creation; per-row buffers
 * (logits and their gradient are [n, vocab]) once per row count, growing
 * only. Per step the host sends the row table and labels (one copy) and
 * reads back the per-row losses.
 *
 * Limits: as the CPU model (positions distinct, labels -100 or a vocabulary
 * id); the cross-entropy kernel is one thread per row (kernels.cu), written
 * for classification's few labels: correct for a vocabulary, but not fast.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "kernels.h"

#define LN_EPS 1e-12f
#define ERR_GUARD          \
    mb_error err_local_;   \
    if (!err) err = &err_local_

enum { TW, TB, LNW, LNB, PB }; /* the head's tensors, HF order (distilbert_mlm.c) */

struct mb_cuda_mlm {
    mb_distilbert_mlm *host;
    mb_cuda_model *enc;
    int D, V, act;
    size_t n_head, off[MB_MLM_HEAD_TENSORS], word_off;
    float *params, *grads; /* device head block [n_head] each */
    /* per-row buffers, one device block for cap_n rows */
    void *blk;
    size_t blk_bytes;
    int cap_n;
    float *h, *t, *a, *x, *dx, *dt, *mean, *rstd, *logits, *dlogits, *per_ex;
    int32_t *rows; /* idx [n] | start [n+1] | pos [n] | labels [n] */
    uint16_t *bf_a, *bf_b;
    /* host staging */
    int32_t *h_rows;
    float *h_per;
    int32_t *h_pos;
    int n, have_loss;
};

static float *HP(const mb_cuda_mlm *c, int i) { return c->params + c->off[i]; }
static float *HG(const mb_cuda_mlm *c, int i) { return c->grads + c->off[i]; }
static mb_gemm_operand op(const float *f, long n) { return (mb_gemm_operand){f, NULL, n}; }

mb_cuda_model *mb_cuda_mlm_encoder(mb_cuda_mlm *c) { return c->enc; }
float *mb_cuda_mlm_head_params(mb_cuda_mlm *c) { return c->params; }
float *mb_cuda_mlm_head_grads(mb_cuda_mlm *c) { return c->grads; }

static void free_rows(mb_cuda_mlm *c) {
    mb_cuda_free(c->blk);
    c->blk = NULL;
    c->blk_bytes = 0;
    c->cap_n = 0;
    free(c->h_rows);
    free(c->h_per);
    free(c->h_pos);
    c->h_rows = c->h_pos = NULL;
    c->h_per = NULL;
}

void mb_cuda_mlm_free(mb_cuda_mlm *c) {
    if (!c) return;
    if (c->enc) cudaStreamSynchronize(mb_cuda_model_stream(c->enc));
    free_rows(c);
    mb_cuda_free(c->params);
    mb_cuda_free(c->grads);
    mb_cuda_model_free(c->enc);
    free(c);
}

mb_cuda_mlm *mb_cuda_mlm_new(mb_distilbert_mlm *m, mb_cuda_precision precision, uint64_t dropout_seed,
                              mb_error *err) {
    mb_cuda_mlm *c = calloc(1, sizeof *c);
    if (!c) {
        mb_fail(err, MB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c->host = m;
    if (!(c->enc = mb_cuda_model_new_encoder(mb_mlm_encoder(m), precision, dropout_seed, err))) goto fail;
    const mb_distilbert_config *cfg = mb_distilbert_get_config(mb_mlm_encoder(m));
    c->D = cfg->dim;
    c->V = cfg->vocab_size;
    c->act = cfg->activation == MB_ACT_RELU ? MB_K_RELU : MB_K_GELU;
    int first = mb_mlm_num_tensors(m) - MB_MLM_HEAD_TENSORS;
    for (int i = 0; i < MB_MLM_HEAD_TENSORS; i++) c->off[i] = mb_mlm_param_info(m, first + i)->offset;
    c->n_head = mb_mlm_head_numel(m);
    c->word_off = mb_mlm_param_info(m, 0)->offset;
    size_t bytes = c->n_head * sizeof(float);
    if (!(c->params = mb_cuda_malloc(bytes, err)) || !(c->grads = mb_cuda_malloc(bytes, err)) ||
        mb_cuda_memcpy_h2d(c->params, mb_mlm_head_params(m), bytes, err) != MB_OK ||
        mb_cuda_memcpy_h2d(c->grads, mb_mlm_head_grads(m), bytes, err) != MB_OK)
        goto fail;
    return c;
fail:
    mb_cuda_mlm_free(c);
    return NULL;
}

/* ---- per-row buffers ------------------------------------------------------------------------- */

static mb_status prepare(mb_cuda_mlm *c, int n, mb_error *err) {
    if (n <= c->cap_n) return MB_OK;
    cudaStream_t st = mb_cuda_model_stream(c->enc);
    CU_CHECK(cudaStreamSynchronize(st));
    free_rows(c);
    size_t N = (size_t)n, D = (size_t)c->D, V = (size_t)c->V, at = 0;
    int bf = mb_cuda_model_precision(c->enc) == MB_CUDA_BF16;
    size_t bf_elems = N * V > D * D ? N * V : D * D;
    /* offsets first (256-byte aligned, as cudaMalloc), then one allocation */
    size_t sizes[] = {N * D * 4, N * D * 4, N * D * 4, N * D * 4, N * D * 4, N * D * 4, N * 4, N * 4,
                      N * V * 4, N * V * 4, N * 4, (4 * N + 1) * 4, bf ? bf_elems * 2 : 0, bf ? bf_elems * 2 : 0};
    enum { NB = sizeof sizes / sizeof sizes[0] };
    size_t offs[NB];
    for (int i = 0; i < NB; i++) {
        offs[i] = at;
        at = (at + sizes[i] + 255) & ~(size_t)255;
    }
    char *b = mb_cuda_malloc(at, err);
    if (!b) return mb_error_prefix(err, "masked-LM rows (%d x vocabulary %d): ", n, c->V);
    c->blk = b;
    c->blk_bytes = at;
    float **f[] = {&c->h, &c->t, &c->a, &c->x, &c->dx, &c->dt, &c->mean, &c->rstd, &c->logits, &c->dlogits, &c->per_ex};
    for (int i = 0; i < 11; i++) *f[i] = (float *)(b + offs[i]);
    c->rows = (int32_t *)(b + offs[11]);
    c->bf_a = bf ? (uint16_t *)(b + offs[12]) : NULL;
    c->bf_b = bf ? (uint16_t *)(b + offs[13]) : NULL;
    c->h_rows = malloc((4 * N + 1) * sizeof(int32_t));
    c->h_per = malloc(N * sizeof(float));
    c->h_pos = malloc(N * sizeof(int32_t));
    if (!c->h_rows || !c->h_per || !c->h_pos) {
        free_rows(c);
        return mb_fail(err, MB_ERR_NOMEM, "out of memory");
    }
    c->cap_n = n;
    return MB_OK;
}

/* ---- forward ----------------------------------------------------------------------------------- */

/* positions [n] distinct flat b*T+t (NULL: every position); labels [B,T] or NULL. */
static mb_status forward_rows(mb_cuda_mlm *c, const int32_t *ids, const int32_t *mask, int B, int T,
                              const int32_t *positions, int n, const int32_t *labels, int train, float *logits_out,
                              mb_error *err) {
    c->have_loss = 0;
    c->n = 0;
    const int D = c->D, V = c->V;
    if (mb_cuda_model_forward_encoder(c->enc, ids, mask, B, T, train, err) != MB_OK) return err->code;
    if (prepare(c, n, err) != MB_OK) return err->code;
    cudaStream_t st = mb_cuda_model_stream(c->enc);
    /* rows: idx | start | pos | labels */
    int32_t *idx = c->h_rows, *start = idx + n, *pos = start + n + 1, *lab = pos + n;
    for (int i = 0; i < n; i++) {
        idx[i] = start[i] = i;
        pos[i] = positions ? positions[i] : i;
        lab[i] = labels ? labels[pos[i]] : -100;
    }
    start[n] = n;
    CU_CHECK(cudaMemcpyAsync(c->rows, c->h_rows, (4 * (size_t)n + 1) * 4, cudaMemcpyHostToDevice, st));
    const int32_t *d_idx = c->rows, *d_start = d_idx + n, *d_pos = d_start + n + 1;
    /* h[r] = hidden[pos[r]] */
    CU_CHECK(cudaMemsetAsync(c->h, 0, (size_t)n * D * 4, st));
    CU_CHECK(mb_k_embedding_backward_rows(c->h, mb_cuda_model_last_hidden(c->enc), d_idx, d_start, d_pos, n, D, st));
    /* x = LN(act(vocab_transform(h))); logits = x W_word^T + b */
    if (mb_cuda_model_gemm(c->enc, c->bf_a, c->bf_b, 0, 1, n, D, D, 1.0f, op(c->h, (long)n * D), D,
                           op(HP(c, TW), (long)D * D), D, 0.0f, c->t, D, err))
        return err->code;
    CU_CHECK(mb_k_bias_add(c->t, HP(c, TB), n, D, st));
    CU_CHECK(mb_k_act_forward(c->a, c->t, (long)n * D, c->act, st));
    CU_CHECK(mb_k_residual_layernorm_forward(c->x, c->a, c->mean, c->rstd, c->a, NULL, HP(c, LNW), HP(c, LNB), n, D,
                                             LN_EPS, st));
    const uint16_t *wbf = mb_cuda_model_params_bf16(c->enc);
    mb_gemm_operand word = {mb_cuda_model_params(c->enc) + c->word_off, wbf ? wbf + c->word_off : NULL, (long)V * D};
    if (mb_cuda_model_gemm(c->enc, c->bf_a, c->bf_b, 0, 1, n, V, D, 1.0f, op(c->x, (long)n * D), D, word, D, 0.0f,
                           c->logits, V, err))
        return err->code;
    CU_CHECK(mb_k_bias_add(c->logits, HP(c, PB), n, V, st));
    if (logits_out) {
        CU_CHECK(cudaMemcpyAsync(logits_out, c->logits, (size_t)n * V * 4, cudaMemcpyDeviceToHost, st));
        CU_CHECK(cudaStreamSynchronize(st));
    }
    c->n = n;
    return MB_OK;
}

static mb_status check_positions(const int32_t *positions, int n, int B, int T, mb_error *err) {
    if (B < 1 || T < 1) return mb_fail(err, MB_ERR_SHAPE, "batch is empty (%d x %d)", B, T);
    if (n < 1) return mb_fail(err, MB_ERR_ARG, "no positions to predict");
    for (int i = 0; positions && i < n; i++)
        if (positions[i] < 0 || positions[i] >= B * T)
            return mb_fail(err, MB_ERR_RANGE, "position %d is %d, outside the batch's %d x %d tokens", i + 1,
                           positions[i], B, T);
    return MB_OK;
}

mb_status mb_cuda_mlm_forward(mb_cuda_mlm *c, const int32_t *ids, const int32_t *mask, int B, int T,
                              const int32_t *positions, int n_pos, int train, float *logits_out, mb_error *err) {
    ERR_GUARD;
    c->have_loss = 0;
    int n = positions ? n_pos : B * T;
    if (check_positions(positions, n, B, T, err) != MB_OK) return err->code;
    return forward_rows(c, ids, mask, B, T, positions, n, NULL, train, logits_out, err);
}

/* ---- loss -------------------------------------------------------------------------------------- */

mb_status mb_cuda_mlm_loss(mb_cuda_mlm *c, const int32_t *ids, const int32_t *mask, const int32_t *labels, int B,
                           int T, int train, double *loss, int *n_masked, float *logits_out, mb_error *err) {
    ERR_GUARD;
    c->have_loss = 0;
    const int V = c->V;
    if (B < 1 || T < 1) return mb_fail(err, MB_ERR_SHAPE, "batch is empty (%d x %d)", B, T);
    int n = 0;
    for (long i = 0; i < (long)B * T; i++) {
        if (labels[i] == -100) continue;
        if (labels[i] < 0 || labels[i] >= V)
            return mb_fail(err, MB_ERR_RANGE, "labels[%ld][%ld] = %d is outside the vocabulary (0..%d) and not -100",
                           i / T + 1, i % T + 1, labels[i], V - 1);
        n++;
    }
    if (n == 0) return mb_fail(err, MB_ERR_ARG, "every label is -100 (no masked token): the loss is undefined");
    if (prepare(c, n, err) != MB_OK) return err->code;
    for (long i = 0, k = 0; i < (long)B * T; i++)
        if (labels[i] != -100) c->h_pos[k++] = (int32_t)i;
    /* forward_rows reads h_pos while it writes h_rows (separate buffers) */
    if (forward_rows(c, ids, mask, B, T, c->h_pos, n, labels, train, NULL, err) != MB_OK) return err->code;
    cudaStream_t st = mb_cuda_model_stream(c->enc);
    const int32_t *d_lab = c->rows + 3 * n + 1;
    /* probs are not kept: the kernel writes them into dlogits, then dlogits over them */
    CU_CHECK(mb_k_crossentropy(c->per_ex, c->dlogits, c->dlogits, c->logits, d_lab, n, V, 1.0f / (float)n, st));
    CU_CHECK(cudaMemcpyAsync(c->h_per, c->per_ex, (size_t)n * 4, cudaMemcpyDeviceToHost, st));
    if (logits_out) CU_CHECK(cudaMemcpyAsync(logits_out, c->logits, (size_t)n * V * 4, cudaMemcpyDeviceToHost, st));
    CU_CHECK(cudaStreamSynchronize(st));
    double total = 0.0;
    for (int i = 0; i < n; i++) total += c->h_per[i];
    double mean = total / n;
    *loss = mean;
    if (n_masked) *n_masked = n;
    if (!isfinite(mean))
        return mb_fail(err, MB_ERR_NUMERIC, "masked-LM loss is %s on the device (diverged? lower the learning rate, or "
                       "try fp32 precision)", isnan(mean) ? "NaN" : "Inf");
    c->have_loss = 1;
    return MB_OK;
}

/* ---- backward ---------------------------------------------------------------------------------- */

mb_status mb_cuda_mlm_backward(mb_cuda_mlm *c, mb_error *err) {
    ERR_GUARD;
    if (!c->have_loss) return mb_fail(err, MB_ERR_STATE, "backward needs model:loss first");
    c->have_loss = 0;
    const int D = c->D, V = c->V, n = c->n;
    cudaStream_t st = mb_cuda_model_stream(c->enc);
    const uint16_t *wbf = mb_cuda_model_params_bf16(c->enc);
    mb_gemm_operand word = {mb_cuda_model_params(c->enc) + c->word_off, wbf ? wbf + c->word_off : NULL, (long)V * D};
    float *gword = mb_cuda_model_grads(c->enc) + c->word_off;
    /* logits = x W^T + b: dx = dlogits W; the tied projector's dW goes into the word embeddings' gradient */
    if (mb_cuda_model_gemm(c->enc, c->bf_a, c->bf_b, 0, 0, n, D, V, 1.0f, op(c->dlogits, (long)n * V), V, word, D,
                           0.0f, c->dx, D, err) ||
        mb_cuda_model_gemm(c->enc, c->bf_a, c->bf_b, 1, 0, V, D, n, 1.0f, op(c->dlogits, (long)n * V), V,
                           op(c->x, (long)n * D), D, 1.0f, gword, D, err))
        return err->code;
    CU_CHECK(mb_k_colsum(HG(c, PB), c->dlogits, n, V, st));
    /* x = LN(a) */
    CU_CHECK(mb_k_layernorm_backward_dx(c->dt, c->dx, c->a, HP(c, LNW), c->mean, c->rstd, n, D, 0, st));
    CU_CHECK(mb_k_layernorm_backward_dwdb(HG(c, LNW), HG(c, LNB), c->dx, c->a, c->mean, c->rstd, n, D, st));
    /* a = act(t) */
    CU_CHECK(mb_k_act_backward(c->dt, c->t, c->dt, (long)n * D, c->act, st));
    /* t = h W_t^T + b_t */
    if (mb_cuda_model_gemm(c->enc, c->bf_a, c->bf_b, 0, 0, n, D, D, 1.0f, op(c->dt, (long)n * D), D,
                           op(HP(c, TW), (long)D * D), D, 0.0f, c->dx, D, err) ||
        mb_cuda_model_gemm(c->enc, c->bf_a, c->bf_b, 1, 0, D, D, n, 1.0f, op(c->dt, (long)n * D), D,
                           op(c->h, (long)n * D), D, 1.0f, HG(c, TW), D, err))
        return err->code;
    CU_CHECK(mb_k_colsum(HG(c, TB), c->dt, n, D, st));
    /* d hidden[pos[r]] = dx[r] (distinct positions; zeros elsewhere), then the encoder */
    float *dh = mb_cuda_model_hidden_grad(c->enc);
    if (!dh) return mb_fail(err, MB_ERR_STATE, "backward: the encoder's forward is gone (another call ran since loss)");
    const int32_t *d_idx = c->rows, *d_start = d_idx + n, *d_pos = d_start + n + 1;
    size_t BTD = 0;
    {
        int B = 0, T = 0;
        mb_cuda_model_shape(c->enc, &B, &T);
        BTD = (size_t)B * T * D;
    }
    CU_CHECK(cudaMemsetAsync(dh, 0, BTD * 4, st));
    CU_CHECK(mb_k_embedding_backward_rows(dh, c->dx, d_pos, d_start, d_idx, n, D, st));
    return mb_cuda_model_backward_hidden(c->enc, err);
}

mb_status mb_cuda_mlm_zero_grad(mb_cuda_mlm *c, mb_error *err) {
    ERR_GUARD;
    if (mb_cuda_model_zero_grad(c->enc, err) != MB_OK) return err->code;
    CU_CHECK(cudaMemsetAsync(c->grads, 0, c->n_head * 4, mb_cuda_model_stream(c->enc)));
    return MB_OK;
}

/* ---- host <-> device blocks ---------------------------------------------------------------------- */

mb_status mb_cuda_mlm_download_params(mb_cuda_mlm *c, mb_error *err) {
    ERR_GUARD;
    if (mb_cuda_model_download_params(c->enc, err) != MB_OK) return err->code;
    CU_CHECK(cudaStreamSynchronize(mb_cuda_model_stream(c->enc)));
    return mb_cuda_memcpy_d2h(mb_mlm_head_params(c->host), c->params, c->n_head * 4, err);
}

mb_status mb_cuda_mlm_download_grads(mb_cuda_mlm *c, mb_error *err) {
    ERR_GUARD;
    if (mb_cuda_model_download_grads(c->enc, mb_distilbert_grads(mb_mlm_encoder(c->host)), err) != MB_OK)
        return err->code;
    return mb_cuda_memcpy_d2h(mb_mlm_head_grads(c->host), c->grads, c->n_head * 4, err);
}
