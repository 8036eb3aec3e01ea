/* gpu_model.c: DistilBERT forward, loss and backward on the device (mb_cuda_model in runtime/cuda.h).
 *
 * A mirror of runtime/distilbert.c: the same parameter layout (offsets from
 * the host model's mb_param_info), the same sequence of layers, the same
 * gradient buffer choreography, with matrix products through cuBLAS
 * (cublasGemmStridedBatchedEx) and everything else in kernels.cu.
 *
 * Precision (mb_cuda_precision): fp32 uses CUBLAS_COMPUTE_32F_PEDANTIC (no
 * tensor-core shortcuts, for parity with the CPU); tf32 uses
 * CUBLAS_COMPUTE_32F_FAST_TF32; bf16 feeds the products bf16 operands with
 * fp32 accumulation and fp32 outputs. In bf16 the weights come from a bf16
 * mirror of the fp32 master block, rounded again at the start of every
 * forward (one pass over the block: the optimizer, runtime/cuda/gpu_optim.c,
 * updates the fp32 weights only); activations are rounded into a scratch
 * buffer just before each product. LayerNorm, softmax, the loss, the
 * gradients and the optimizer stay fp32 in every mode.
 *
 * Memory: the two blocks (params and grads; plus the bf16 mirror) are
 * allocated at creation (the AdamW moments belong to the optimizer); activations per shape class, growing
 * only (a larger batch or length reallocates once); cuBLAS gets a fixed
 * workspace, so a steady-state step calls cudaMalloc zero times. Per step the
 * host sends ids + mask (one copy), the embedding-backward plan (one copy,
 * embed_plan.h) and the labels, and reads back the per-example losses.
 *
 * Dropout: Philox keyed by the model's seed; every dropout site of a forward
 * takes the next offset, and backward regenerates the same mask from it, so
 * no mask is stored and a seed gives the same masks on every run. These
 * masks differ from the CPU model's (xoshiro): CPU/GPU parity is checked with
 * dropout off.
 *
 * Limits: single-label classification only; a forward always keeps
 * activations (there is no separate inference layout on the device).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "embed_plan.h"
#include "gpu.h"
#include "kernels.h"

#define LN_EPS 1e-12f
/* Public entry points accept err == NULL; the helpers below read err->code. */
#define ERR_GUARD          \
    mb_error err_local_;   \
    if (!err) err = &err_local_
#define WORKSPACE_BYTES (32u << 20)

/* Tensor indices in the parameter table (HF order, as runtime/distilbert.c builds it). */
enum { T_WORD, T_POS, T_EMB_LN_W, T_EMB_LN_B, T_LAYER0 };
enum { L_QW, L_QB, L_KW, L_KB, L_VW, L_VB, L_OW, L_OB, L_SA_W, L_SA_B, L_F1W, L_F1B, L_F2W, L_F2B, L_OUT_W, L_OUT_B,
       L_COUNT };
enum { H_PRE_W, H_PRE_B, H_CLS_W, H_CLS_B };

typedef struct dlayer {
    float *qp, *kp, *vp;        /* [B,H,T,hs] */
    float *probs;               /* [B,H,T,T] before dropout */
    float *ctx;                 /* [B,T,D] heads merged */
    float *h1, *ln1_mean, *ln1_rstd, *sa;
    float *ffn_h;               /* [B,T,F] pre-activation */
    float *h2, *ln2_mean, *ln2_rstd, *out;
    uint64_t attn_off, ffn_off; /* Philox offsets of this forward's dropout sites */
} dlayer;

typedef struct dacts {
    int32_t *ids, *mask, *labels, *plan; /* plan: rows | start | pos, 3 * (BT + 1) */
    float *emb_sum, *emb_mean, *emb_rstd, *emb_out;
    dlayer *layer;
    float *tmp, *ctx_p, *pdrop, *ffn_g;
    float *d_res, *d_tmp, *dq, *dk, *dv, *dctx, *dctx_p, *dqp, *dkp, *dvp, *dffn, *dprobs;
    float *cls, *pre, *act, *dropped, *d_a, *d_b, *logits, *probs, *dlogits, *per_ex;
    uint16_t *bf_a, *bf_b; /* bf16 operand scratch */
    size_t bf_elems;
} dacts;

struct mb_cuda_model {
    mb_distilbert *host;
    mb_distilbert_config cfg; /* copy of the scalars we use (labels strings not used) */
    mb_cuda_precision prec;
    uint64_t seed, offset;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *workspace;
    size_t N;
    int n_tensors;
    size_t *off; /* [n_tensors] offsets */
    float *params, *grads;
    uint16_t *pbf;
    /* activations */
    void *act_block;
    size_t act_bytes;
    int cap_B, cap_T;
    dacts a;
    /* host staging */
    int32_t *h_in;
    size_t cap_in;
    float *h_per_ex;
    int cap_per_ex;
    mb_embed_plan plan;
    uint64_t emb_off, head_off;
    int fwd_B, fwd_T, fwd_train, fwd_head, have_fwd, have_loss;
    size_t bytes;
};

/* ---- device memory, counted per model ---------------------------------------------------- */

static void *dalloc(mb_cuda_model *cm, size_t bytes, mb_error *err) {
    void *p = mb_cuda_malloc(bytes, err);
    if (p) cm->bytes += bytes;
    return p;
}

static void dfree(mb_cuda_model *cm, void *p, size_t bytes) {
    if (!p) return;
    mb_cuda_free(p);
    cm->bytes -= bytes;
}

/* ---- matrix products ----------------------------------------------------------------------- */

typedef mb_gemm_operand operand; /* gpu.h */

static operand act_op(const float *f, long n) { return (operand){f, NULL, n}; }

static operand weight_op(const mb_cuda_model *cm, int tensor) {
    size_t o = cm->off[tensor];
    return (operand){cm->params + o, cm->pbf ? cm->pbf + o : NULL, 0};
}

/* Row-major C[M,N] (batched) = alpha op(A)[M,K] op(B)[K,N] + beta C; lda, ldb,
   ldc are row strides as stored; sA, sB, sC strides between batch entries.
   bf_a, bf_b: the bf16 scratch an operand without a mirror is rounded into. */
static mb_status gemm_on(mb_cuda_model *cm, uint16_t *bf_a, uint16_t *bf_b, int ta, int tb, int M, int N, int K,
                         float alpha, operand A, int lda, long long sA, operand B, int ldb, long long sB, float beta,
                         float *C, int ldc, long long sC, int batch, mb_error *err) {
    const void *pa = A.f, *pb = B.f;
    cudaDataType_t ty = CUDA_R_32F;
    cublasComputeType_t ct = cm->prec == MB_CUDA_FP32 ? CUBLAS_COMPUTE_32F_PEDANTIC
                             : cm->prec == MB_CUDA_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                        : CUBLAS_COMPUTE_32F;
    if (cm->prec == MB_CUDA_BF16) {
        ty = CUDA_R_16BF;
        if (A.bf) pa = A.bf;
        else {
            CU_CHECK(mb_k_to_bf16(bf_a, A.f, A.n, cm->stream));
            pa = bf_a;
        }
        if (B.bf) pb = B.bf;
        else {
            CU_CHECK(mb_k_to_bf16(bf_b, B.f, B.n, cm->stream));
            pb = bf_b;
        }
    }
    /* column-major view: C^T[N,M] = op(B)^T op(A)^T */
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(cm->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                            N, M, K, &alpha, pb, ty, ldb, sB, pa, ty, lda, sA, &beta, C, CUDA_R_32F,
                                            ldc, sC, batch, ct, CUBLAS_GEMM_DEFAULT));
    return MB_OK;
}

static mb_status gemm(mb_cuda_model *cm, int ta, int tb, int M, int N, int K, float alpha, operand A, int lda,
                      long long sA, operand B, int ldb, long long sB, float beta, float *C, int ldc, long long sC,
                      int batch, mb_error *err) {
    return gemm_on(cm, cm->a.bf_a, cm->a.bf_b, ta, tb, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch,
                   err);
}

mb_status mb_cuda_model_gemm(mb_cuda_model *cm, uint16_t *bf_a, uint16_t *bf_b, int ta, int tb, int M, int N, int K,
                             float alpha, mb_gemm_operand A, int lda, mb_gemm_operand B, int ldb, float beta, float *C,
                             int ldc, mb_error *err) {
    return gemm_on(cm, bf_a, bf_b, ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, err);
}

/* out[N,OC] = inp[N,IC] w[OC,IC]^T + b */
static mb_status linear_fwd(mb_cuda_model *cm, float *out, const float *inp, int wt, int bt, int N, int IC, int OC,
                            mb_error *err) {
    if (gemm(cm, 0, 1, N, OC, IC, 1.0f, act_op(inp, (long)N * IC), IC, 0, weight_op(cm, wt), IC, 0, 0.0f, out, OC, 0,
             1, err))
        return err->code;
    if (bt >= 0) CU_CHECK(mb_k_bias_add(out, cm->params + cm->off[bt], N, OC, cm->stream));
    return MB_OK;
}

/* dinp (+)= dout w; dw += dout^T inp; db += colsum(dout) (runtime/layers.h conventions). */
static mb_status linear_bwd(mb_cuda_model *cm, float *dinp, int wt, int bt, const float *dout, const float *inp, int N,
                            int IC, int OC, int accumulate, mb_error *err) {
    if (dinp && gemm(cm, 0, 0, N, IC, OC, 1.0f, act_op(dout, (long)N * OC), OC, 0, weight_op(cm, wt), IC, 0,
                     accumulate ? 1.0f : 0.0f, dinp, IC, 0, 1, err))
        return err->code;
    if (gemm(cm, 1, 0, OC, IC, N, 1.0f, act_op(dout, (long)N * OC), OC, 0, act_op(inp, (long)N * IC), IC, 0, 1.0f,
             cm->grads + cm->off[wt], IC, 0, 1, err))
        return err->code;
    CU_CHECK(mb_k_colsum(cm->grads + cm->off[bt], dout, N, OC, cm->stream));
    return MB_OK;
}

/* ---- construction --------------------------------------------------------------------------- */

static int layer_tensor(const mb_cuda_model *cm, int l, int which) { return T_LAYER0 + L_COUNT * l + which; }
static int head_tensor(const mb_cuda_model *cm, int which) {
    return T_LAYER0 + L_COUNT * cm->cfg.n_layers + which;
}
static float *P(const mb_cuda_model *cm, int tensor) { return cm->params + cm->off[tensor]; }
static float *G(const mb_cuda_model *cm, int tensor) { return cm->grads + cm->off[tensor]; }

mb_cuda_precision mb_cuda_model_precision(const mb_cuda_model *cm) { return cm->prec; }
size_t mb_cuda_model_bytes(const mb_cuda_model *cm) { return cm ? cm->bytes : 0; }
float *mb_cuda_model_params(mb_cuda_model *cm) { return cm->params; }
float *mb_cuda_model_grads(mb_cuda_model *cm) { return cm->grads; }

void mb_cuda_model_get_dropout(const mb_cuda_model *cm, uint64_t *seed, uint64_t *offset) {
    *seed = cm->seed;
    *offset = cm->offset;
}

void mb_cuda_model_set_dropout(mb_cuda_model *cm, uint64_t seed, uint64_t offset) {
    cm->seed = seed;
    cm->offset = offset;
    cm->have_fwd = cm->have_loss = 0; /* backward must not regenerate masks from the old offsets */
}

void mb_cuda_model_free(mb_cuda_model *cm) {
    if (!cm) return;
    if (cm->stream) cudaStreamSynchronize(cm->stream);
    size_t N = cm->N;
    dfree(cm, cm->params, N * 4);
    dfree(cm, cm->grads, N * 4);
    dfree(cm, cm->pbf, N * 2);
    dfree(cm, cm->workspace, WORKSPACE_BYTES);
    dfree(cm, cm->act_block, cm->act_bytes);
    if (cm->blas) cublasDestroy(cm->blas);
    if (cm->stream) cudaStreamDestroy(cm->stream);
    free(cm->a.layer);
    free(cm->off);
    free(cm->h_in);
    free(cm->h_per_ex);
    mb_embed_plan_free(&cm->plan);
    free(cm);
}

static mb_status upload_params(mb_cuda_model *cm, mb_error *err) {
    CU_CHECK(cudaMemcpyAsync(cm->params, mb_distilbert_params(cm->host), cm->N * 4, cudaMemcpyHostToDevice, cm->stream));
    if (cm->pbf) CU_CHECK(mb_k_to_bf16(cm->pbf, cm->params, (long)cm->N, cm->stream));
    CU_CHECK(cudaStreamSynchronize(cm->stream));
    return MB_OK;
}

/* head 0: the encoder of another head (gpu_mlm.c), whatever the classification head's problem type. */
static mb_cuda_model *model_new(mb_distilbert *m, mb_cuda_precision precision, uint64_t dropout_seed, int head,
                                mb_error *err) {
    if (mb_cuda_require(err) != MB_OK) return NULL;
    if (precision != MB_CUDA_FP32 && precision != MB_CUDA_TF32 && precision != MB_CUDA_BF16) {
        mb_fail(err, MB_ERR_ARG, "unknown CUDA precision %d (fp32, tf32 or bf16)", (int)precision);
        return NULL;
    }
    const mb_distilbert_config *c = mb_distilbert_get_config(m);
    if (head && c->problem_type != MB_PROBLEM_SINGLE_LABEL) {
        mb_fail(err, MB_ERR_UNSUPPORTED, "the CUDA training step supports single-label classification only (model "
                "is %s)", mb_problem_type_name(c->problem_type));
        return NULL;
    }
    int nt = mb_distilbert_num_tensors(m);
    if (nt != T_LAYER0 + L_COUNT * c->n_layers + 4) {
        mb_fail(err, MB_ERR_STATE, "unexpected parameter table (%d tensors for %d layers)", nt, c->n_layers);
        return NULL;
    }
    mb_cuda_model *cm = calloc(1, sizeof *cm);
    if (!cm) {
        mb_fail(err, MB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    cm->host = m;
    cm->cfg = *c; /* scalars only: the label strings stay with the host model */
    cm->prec = precision;
    cm->seed = dropout_seed;
    cm->N = mb_distilbert_num_params(m);
    cm->n_tensors = nt;
    cm->off = calloc((size_t)nt, sizeof *cm->off);
    cm->a.layer = calloc((size_t)c->n_layers, sizeof(dlayer));
    if (!cm->off || !cm->a.layer) {
        mb_fail(err, MB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < nt; i++) cm->off[i] = mb_distilbert_param_info(m, i)->offset;
    /* a blocking stream: work on the legacy default stream (the optimizer,
       mb_cuda_memcpy_*) is ordered with it both ways */
    cudaError_t e = cudaStreamCreateWithFlags(&cm->stream, cudaStreamDefault);
    if (e != cudaSuccess) {
        cm->stream = NULL;
        mb_cuda_status(e, "cudaStreamCreateWithFlags", err);
        goto fail;
    }
    cublasStatus_t s = cublasCreate(&cm->blas);
    if (s != CUBLAS_STATUS_SUCCESS) {
        cm->blas = NULL;
        mb_cublas_status(s, "cublasCreate", err);
        goto fail;
    }
    size_t N = cm->N;
    if (!(cm->params = dalloc(cm, N * 4, err)) || !(cm->grads = dalloc(cm, N * 4, err)) ||
        (precision == MB_CUDA_BF16 && !(cm->pbf = dalloc(cm, N * 2, err))) ||
        !(cm->workspace = dalloc(cm, WORKSPACE_BYTES, err)))
        goto fail;
    /* Each check returns from a function; here a small block keeps the gotos. */
    {
        mb_status rc = MB_OK;
        cublasStatus_t bs;
        if ((bs = cublasSetStream(cm->blas, cm->stream)) != CUBLAS_STATUS_SUCCESS)
            rc = mb_cublas_status(bs, "cublasSetStream", err);
        else if ((bs = cublasSetWorkspace(cm->blas, cm->workspace, WORKSPACE_BYTES)) != CUBLAS_STATUS_SUCCESS)
            rc = mb_cublas_status(bs, "cublasSetWorkspace", err);
        else if ((bs = cublasSetMathMode(cm->blas, precision == MB_CUDA_FP32 ? CUBLAS_PEDANTIC_MATH
                                                                              : CUBLAS_DEFAULT_MATH)) !=
                 CUBLAS_STATUS_SUCCESS)
            rc = mb_cublas_status(bs, "cublasSetMathMode", err);
        else if ((e = cudaMemsetAsync(cm->grads, 0, N * 4, cm->stream)) != cudaSuccess)
            rc = mb_cuda_status(e, "cudaMemsetAsync", err);
        else
            rc = upload_params(cm, err);
        if (rc != MB_OK) goto fail;
    }
    return cm;
fail:
    mb_cuda_model_free(cm);
    return NULL;
}

mb_cuda_model *mb_cuda_model_new(mb_distilbert *m, mb_cuda_precision precision, uint64_t dropout_seed,
                                  mb_error *err) {
    return model_new(m, precision, dropout_seed, 1, err);
}

mb_cuda_model *mb_cuda_model_new_encoder(mb_distilbert *m, mb_cuda_precision precision, uint64_t dropout_seed,
                                          mb_error *err) {
    return model_new(m, precision, dropout_seed, 0, err);
}

/* ---- activations ---------------------------------------------------------------------------- */

typedef struct bump {
    char *base;
    size_t used;
} bump;

static void *take(bump *b, size_t bytes) {
    size_t at = (b->used + 255) & ~(size_t)255; /* 256-byte aligned, as cudaMalloc */
    b->used = at + bytes;
    return b->base ? b->base + at : NULL;
}

static void layout(mb_cuda_model *cm, int B, int T, bump *bp) {
    const mb_distilbert_config *c = &cm->cfg;
    size_t BT = (size_t)B * T, D = (size_t)c->dim, F = (size_t)c->hidden_dim, H = (size_t)c->n_heads,
           L = (size_t)c->num_labels;
    size_t BTD = BT * D * 4, BTF = BT * F * 4, BHTT = (size_t)B * H * T * T * 4, BTs = BT * 4, BD = (size_t)B * D * 4;
    dacts *a = &cm->a;
    a->ids = take(bp, BT * 4);
    a->mask = take(bp, BT * 4);
    a->plan = take(bp, 3 * (BT + 1) * 4);
    a->labels = take(bp, (size_t)B * 4);
    a->emb_sum = take(bp, BTD);
    a->emb_mean = take(bp, BTs);
    a->emb_rstd = take(bp, BTs);
    a->emb_out = take(bp, BTD);
    for (int l = 0; l < c->n_layers; l++) {
        dlayer *la = &a->layer[l];
        la->qp = take(bp, BTD);
        la->kp = take(bp, BTD);
        la->vp = take(bp, BTD);
        la->probs = take(bp, BHTT);
        la->ctx = take(bp, BTD);
        la->h1 = take(bp, BTD);
        la->ln1_mean = take(bp, BTs);
        la->ln1_rstd = take(bp, BTs);
        la->sa = take(bp, BTD);
        la->ffn_h = take(bp, BTF);
        la->h2 = take(bp, BTD);
        la->ln2_mean = take(bp, BTs);
        la->ln2_rstd = take(bp, BTs);
        la->out = take(bp, BTD);
    }
    a->tmp = take(bp, BTD);
    a->ctx_p = take(bp, BTD);
    a->pdrop = take(bp, BHTT);
    a->ffn_g = take(bp, BTF);
    a->d_res = take(bp, BTD);
    a->d_tmp = take(bp, BTD);
    a->dq = take(bp, BTD);
    a->dk = take(bp, BTD);
    a->dv = take(bp, BTD);
    a->dctx = take(bp, BTD);
    a->dctx_p = take(bp, BTD);
    a->dqp = take(bp, BTD);
    a->dkp = take(bp, BTD);
    a->dvp = take(bp, BTD);
    a->dffn = take(bp, BTF);
    a->dprobs = take(bp, BHTT);
    a->cls = take(bp, BD);
    a->pre = take(bp, BD);
    a->act = take(bp, BD);
    a->dropped = take(bp, BD);
    a->d_a = take(bp, BD);
    a->d_b = take(bp, BD);
    a->logits = take(bp, (size_t)B * L * 4);
    a->probs = take(bp, (size_t)B * L * 4);
    a->dlogits = take(bp, (size_t)B * L * 4);
    a->per_ex = take(bp, (size_t)B * 4);
    if (cm->prec == MB_CUDA_BF16) {
        size_t e = BT * F;
        if ((size_t)B * H * T * T > e) e = (size_t)B * H * T * T;
        if (BT * D > e) e = BT * D;
        a->bf_elems = e;
        a->bf_a = take(bp, e * 2);
        a->bf_b = take(bp, e * 2);
    } else {
        a->bf_elems = 0;
        a->bf_a = a->bf_b = NULL;
    }
}

/* Activations for B x T: one device block per shape class, reallocated only
   when a larger batch or length arrives. */
static mb_status prepare(mb_cuda_model *cm, int B, int T, mb_error *err) {
    int nB = B > cm->cap_B ? B : cm->cap_B, nT = T > cm->cap_T ? T : cm->cap_T;
    if (nB != cm->cap_B || nT != cm->cap_T) {
        bump count = {NULL, 0};
        layout(cm, nB, nT, &count);
        CU_CHECK(cudaStreamSynchronize(cm->stream));
        dfree(cm, cm->act_block, cm->act_bytes);
        cm->act_block = NULL;
        cm->act_bytes = 0;
        cm->cap_B = cm->cap_T = 0;
        void *blk = dalloc(cm, count.used, err);
        if (!blk)
            return mb_error_prefix(err, "activations for batch %d x length %d: ", nB, nT);
        cm->act_block = blk;
        cm->act_bytes = count.used;
        cm->cap_B = nB;
        cm->cap_T = nT;
    }
    bump at = {cm->act_block, 0};
    layout(cm, B, T, &at);
    return MB_OK;
}

/* ---- forward ---------------------------------------------------------------------------------- */

static int grow_host(void **buf, size_t *cap, size_t bytes) {
    if (bytes <= *cap) return 1;
    void *b = realloc(*buf, bytes);
    if (!b) return 0;
    *buf = b;
    *cap = bytes;
    return 1;
}

/* The forward; head 0 stops at the last hidden state (mb_cuda_model_forward_encoder). */
static mb_status forward(mb_cuda_model *cm, const int32_t *ids, const int32_t *mask, int B, int T, int train, int head,
                         float *logits_out, mb_error *err) {
    const mb_distilbert_config *c = &cm->cfg;
    cm->have_fwd = cm->have_loss = 0;
    /* the CPU model's check, with its messages */
    if (mb_config_check_ids(c, ids, B, T, err) != MB_OK) return err ? err->code : MB_ERR_ARG;
    const int D = c->dim, F = c->hidden_dim, H = c->n_heads, hs = D / H, L = c->num_labels, BT = B * T;
    const long BTD = (long)BT * D, BHTT = (long)B * H * T * T;
    if (mb_embed_plan_build(&cm->plan, ids, BT, c->vocab_size, c->pad_token_id, err) != MB_OK)
        return mb_error_prefix(err, "input_ids: ");
    if (prepare(cm, B, T, err) != MB_OK) return err->code;
    dacts *a = &cm->a;
    cudaStream_t st = cm->stream;

    /* batch in: ids | mask, then the plan rows | start | pos (two copies) */
    size_t in_ints = 2 * (size_t)BT + 3 * ((size_t)BT + 1);
    if (!grow_host((void **)&cm->h_in, &cm->cap_in, in_ints * 4)) return mb_fail(err, MB_ERR_NOMEM, "out of memory");
    int32_t *hin = cm->h_in;
    memcpy(hin, ids, (size_t)BT * 4);
    if (mask) memcpy(hin + BT, mask, (size_t)BT * 4);
    else for (int i = 0; i < BT; i++) hin[BT + i] = 1;
    int32_t *hp = hin + 2 * BT;
    memcpy(hp, cm->plan.rows, (size_t)cm->plan.n_rows * 4);
    memcpy(hp + (BT + 1), cm->plan.start, ((size_t)cm->plan.n_rows + 1) * 4);
    memcpy(hp + 2 * (BT + 1), cm->plan.pos, (size_t)cm->plan.n_pos * 4);
    CU_CHECK(cudaMemcpyAsync(a->ids, hin, (size_t)BT * 4, cudaMemcpyHostToDevice, st));
    CU_CHECK(cudaMemcpyAsync(a->mask, hin + BT, (size_t)BT * 4, cudaMemcpyHostToDevice, st));
    CU_CHECK(cudaMemcpyAsync(a->plan, hp, 3 * ((size_t)BT + 1) * 4, cudaMemcpyHostToDevice, st));

    float p_emb = train ? c->dropout : 0.0f, p_attn = train ? c->attention_dropout : 0.0f,
          p_ffn = train ? c->dropout : 0.0f, p_cls = train ? c->seq_classif_dropout : 0.0f;

    /* bf16: the weights' mirror from the fp32 master block (the optimizer updated it) */
    if (cm->pbf) CU_CHECK(mb_k_to_bf16(cm->pbf, cm->params, (long)cm->N, st));

    /* embeddings: LN(word + position), dropout */
    CU_CHECK(mb_k_embedding_forward(a->emb_sum, a->ids, P(cm, T_WORD), P(cm, T_POS), B, T, D, st));
    CU_CHECK(mb_k_residual_layernorm_forward(a->emb_out, a->emb_sum, a->emb_mean, a->emb_rstd, a->emb_sum, NULL,
                                             P(cm, T_EMB_LN_W), P(cm, T_EMB_LN_B), BT, D, LN_EPS, st));
    cm->emb_off = cm->offset++;
    if (p_emb > 0.0f) CU_CHECK(mb_k_dropout(a->emb_out, a->emb_out, BTD, p_emb, cm->seed, cm->emb_off, st));

    const float *x = a->emb_out;
    const float alpha = 1.0f / sqrtf((float)hs);
    const long long sQ = (long long)T * hs, sP = (long long)T * T;
    for (int l = 0; l < c->n_layers; l++) {
        dlayer *la = &a->layer[l];
        /* q, k, v: [B,T,D] -> [B,H,T,hs] */
        if (linear_fwd(cm, a->tmp, x, layer_tensor(cm, l, L_QW), layer_tensor(cm, l, L_QB), BT, D, D, err)) return err->code;
        CU_CHECK(mb_k_split_heads(la->qp, a->tmp, B, T, H, hs, st));
        if (linear_fwd(cm, a->tmp, x, layer_tensor(cm, l, L_KW), layer_tensor(cm, l, L_KB), BT, D, D, err)) return err->code;
        CU_CHECK(mb_k_split_heads(la->kp, a->tmp, B, T, H, hs, st));
        if (linear_fwd(cm, a->tmp, x, layer_tensor(cm, l, L_VW), layer_tensor(cm, l, L_VB), BT, D, D, err)) return err->code;
        CU_CHECK(mb_k_split_heads(la->vp, a->tmp, B, T, H, hs, st));
        /* probs = softmax(q k^T / sqrt(hs), masked keys) */
        if (gemm(cm, 0, 1, T, T, hs, alpha, act_op(la->qp, BTD), hs, sQ, act_op(la->kp, BTD), hs, sQ, 0.0f, la->probs,
                 T, sP, B * H, err))
            return err->code;
        CU_CHECK(mb_k_masked_softmax(la->probs, la->probs, a->mask, B, H, T, st));
        la->attn_off = cm->offset++;
        const float *Pd = la->probs;
        if (p_attn > 0.0f) {
            CU_CHECK(mb_k_dropout(a->pdrop, la->probs, BHTT, p_attn, cm->seed, la->attn_off, st));
            Pd = a->pdrop;
        }
        /* ctx = dropout(probs) v, heads merged */
        if (gemm(cm, 0, 0, T, hs, T, 1.0f, act_op(Pd, BHTT), T, sP, act_op(la->vp, BTD), hs, sQ, 0.0f, a->ctx_p, hs,
                 sQ, B * H, err))
            return err->code;
        CU_CHECK(mb_k_merge_heads(la->ctx, a->ctx_p, B, T, H, hs, st));
        /* sa = LN1(x + out_lin(ctx)) */
        if (linear_fwd(cm, a->tmp, la->ctx, layer_tensor(cm, l, L_OW), layer_tensor(cm, l, L_OB), BT, D, D, err))
            return err->code;
        CU_CHECK(mb_k_residual_layernorm_forward(la->sa, la->h1, la->ln1_mean, la->ln1_rstd, a->tmp, x,
                                                 P(cm, layer_tensor(cm, l, L_SA_W)), P(cm, layer_tensor(cm, l, L_SA_B)),
                                                 BT, D, LN_EPS, st));
        /* out = LN2(sa + dropout(lin2(act(lin1(sa))))) */
        if (gemm(cm, 0, 1, BT, F, D, 1.0f, act_op(la->sa, BTD), D, 0, weight_op(cm, layer_tensor(cm, l, L_F1W)), D, 0,
                 0.0f, la->ffn_h, F, 0, 1, err))
            return err->code;
        CU_CHECK(mb_k_bias_act(la->ffn_h, a->ffn_g, P(cm, layer_tensor(cm, l, L_F1B)), BT, F,
                               c->activation == MB_ACT_RELU ? MB_K_RELU : MB_K_GELU, st));
        if (linear_fwd(cm, a->tmp, a->ffn_g, layer_tensor(cm, l, L_F2W), layer_tensor(cm, l, L_F2B), BT, F, D, err))
            return err->code;
        la->ffn_off = cm->offset++;
        if (p_ffn > 0.0f) CU_CHECK(mb_k_dropout(a->tmp, a->tmp, BTD, p_ffn, cm->seed, la->ffn_off, st));
        CU_CHECK(mb_k_residual_layernorm_forward(la->out, la->h2, la->ln2_mean, la->ln2_rstd, a->tmp, la->sa,
                                                 P(cm, layer_tensor(cm, l, L_OUT_W)),
                                                 P(cm, layer_tensor(cm, l, L_OUT_B)), BT, D, LN_EPS, st));
        x = la->out;
    }
    cm->fwd_B = B;
    cm->fwd_T = T;
    cm->fwd_train = train;
    cm->fwd_head = head;
    if (!head) {
        cm->have_fwd = 1;
        return MB_OK;
    }

    /* head: [CLS] -> pre_classifier -> ReLU -> dropout -> classifier */
    CU_CHECK(mb_k_gather_first(a->cls, x, B, T, D, st));
    if (linear_fwd(cm, a->pre, a->cls, head_tensor(cm, H_PRE_W), head_tensor(cm, H_PRE_B), B, D, D, err)) return err->code;
    CU_CHECK(mb_k_act_forward(a->act, a->pre, (long)B * D, MB_K_RELU, st));
    cm->head_off = cm->offset++;
    if (p_cls > 0.0f) CU_CHECK(mb_k_dropout(a->dropped, a->act, (long)B * D, p_cls, cm->seed, cm->head_off, st));
    else CU_CHECK(cudaMemcpyAsync(a->dropped, a->act, (size_t)B * D * 4, cudaMemcpyDeviceToDevice, st));
    if (linear_fwd(cm, a->logits, a->dropped, head_tensor(cm, H_CLS_W), head_tensor(cm, H_CLS_B), B, D, L, err))
        return err->code;
    if (logits_out) {
        CU_CHECK(cudaMemcpyAsync(logits_out, a->logits, (size_t)B * L * 4, cudaMemcpyDeviceToHost, st));
        CU_CHECK(cudaStreamSynchronize(st));
    }
    cm->have_fwd = 1;
    return MB_OK;
}

mb_status mb_cuda_model_forward(mb_cuda_model *cm, const int32_t *ids, const int32_t *mask, int B, int T, int train,
                                float *logits_out, mb_error *err) {
    ERR_GUARD;
    return forward(cm, ids, mask, B, T, train, 1, logits_out, err);
}

mb_status mb_cuda_model_forward_encoder(mb_cuda_model *cm, const int32_t *ids, const int32_t *mask, int B, int T,
                                        int train, mb_error *err) {
    ERR_GUARD;
    return forward(cm, ids, mask, B, T, train, 0, NULL, err);
}

const float *mb_cuda_model_last_hidden(const mb_cuda_model *cm) {
    if (!cm->have_fwd) return NULL;
    return cm->cfg.n_layers > 0 ? cm->a.layer[cm->cfg.n_layers - 1].out : cm->a.emb_out;
}

float *mb_cuda_model_hidden_grad(mb_cuda_model *cm) { return cm->have_fwd && !cm->fwd_head ? cm->a.d_res : NULL; }
cudaStream_t mb_cuda_model_stream(const mb_cuda_model *cm) { return cm->stream; }
void mb_cuda_model_shape(const mb_cuda_model *cm, int *B, int *T) {
    *B = cm->fwd_B;
    *T = cm->fwd_T;
}
const uint16_t *mb_cuda_model_params_bf16(const mb_cuda_model *cm) { return cm->pbf; }

/* ---- loss ------------------------------------------------------------------------------------- */

mb_status mb_cuda_model_loss(mb_cuda_model *cm, const int32_t *labels, int B, double *loss, float *per_example,
                             mb_error *err) {
    ERR_GUARD;
    if (!cm->have_fwd || !cm->fwd_head) return mb_fail(err, MB_ERR_STATE, "loss needs a forward pass first");
    if (B != cm->fwd_B) return mb_fail(err, MB_ERR_SHAPE, "%d labels for a batch of %d", B, cm->fwd_B);
    const int L = cm->cfg.num_labels;
    int count = 0;
    for (int b = 0; b < B; b++) {
        if (labels[b] == -100) continue;
        if (labels[b] < 0 || labels[b] >= L)
            return mb_fail(err, MB_ERR_RANGE, "labels[%d] = %d is outside 0..%d (num_labels %d)", b + 1, labels[b],
                           L - 1, L);
        count++;
    }
    if (!count) return mb_fail(err, MB_ERR_ARG, "every label is -100 (ignored): the loss is undefined");
    if (B > cm->cap_per_ex) {
        float *p = realloc(cm->h_per_ex, (size_t)B * sizeof(float));
        if (!p) return mb_fail(err, MB_ERR_NOMEM, "out of memory");
        cm->h_per_ex = p;
        cm->cap_per_ex = B;
    }
    dacts *a = &cm->a;
    cudaStream_t st = cm->stream;
    CU_CHECK(cudaMemcpyAsync(a->labels, labels, (size_t)B * 4, cudaMemcpyHostToDevice, st));
    CU_CHECK(mb_k_crossentropy(a->per_ex, a->probs, a->dlogits, a->logits, a->labels, B, L, 1.0f / count, st));
    CU_CHECK(cudaMemcpyAsync(cm->h_per_ex, a->per_ex, (size_t)B * 4, cudaMemcpyDeviceToHost, st));
    CU_CHECK(cudaStreamSynchronize(st));
    double total = 0.0;
    for (int b = 0; b < B; b++)
        if (labels[b] != -100) total += cm->h_per_ex[b];
    double mean = total / count;
    if (per_example) memcpy(per_example, cm->h_per_ex, (size_t)B * sizeof(float));
    *loss = mean;
    if (!isfinite(mean))
        return mb_fail(err, MB_ERR_NUMERIC, "loss is %s on the device (diverged? lower the learning rate, or try "
                       "fp32 precision)", isnan(mean) ? "NaN" : "Inf");
    cm->have_loss = 1;
    return MB_OK;
}

/* ---- backward --------------------------------------------------------------------------------- */

static mb_status encoder_backward(mb_cuda_model *cm, mb_error *err);

mb_status mb_cuda_model_backward(mb_cuda_model *cm, mb_error *err) {
    ERR_GUARD;
    if (!cm->have_loss) return mb_fail(err, MB_ERR_STATE, "backward needs forward and loss first");
    cm->have_loss = 0;
    const mb_distilbert_config *c = &cm->cfg;
    const int B = cm->fwd_B, T = cm->fwd_T, D = c->dim, L = c->num_labels;
    const long BTD = (long)B * T * D;
    float p_cls = cm->fwd_train ? c->seq_classif_dropout : 0.0f;
    dacts *a = &cm->a;
    cudaStream_t st = cm->stream;

    /* head */
    if (linear_bwd(cm, a->d_a, head_tensor(cm, H_CLS_W), head_tensor(cm, H_CLS_B), a->dlogits, a->dropped, B, D, L, 0,
                   err))
        return err->code;
    if (p_cls > 0.0f) CU_CHECK(mb_k_dropout(a->d_a, a->d_a, (long)B * D, p_cls, cm->seed, cm->head_off, st));
    CU_CHECK(mb_k_act_backward(a->d_a, a->pre, a->d_a, (long)B * D, MB_K_RELU, st));
    int frozen = mb_distilbert_encoder_frozen(cm->host);
    if (linear_bwd(cm, frozen ? NULL : a->d_b, head_tensor(cm, H_PRE_W), head_tensor(cm, H_PRE_B), a->d_a, a->cls, B,
                   D, D, 0, err))
        return err->code;
    if (frozen) return MB_OK;

    /* the head reads position 0 only */
    CU_CHECK(cudaMemsetAsync(a->d_res, 0, (size_t)BTD * 4, st));
    CU_CHECK(mb_k_scatter_first(a->d_res, a->d_b, B, T, D, st));
    return encoder_backward(cm, err);
}

mb_status mb_cuda_model_backward_hidden(mb_cuda_model *cm, mb_error *err) {
    ERR_GUARD;
    if (!cm->have_fwd || cm->fwd_head)
        return mb_fail(err, MB_ERR_STATE, "backward_hidden needs an encoder-only forward first");
    if (mb_distilbert_encoder_frozen(cm->host)) return MB_OK; /* nothing below the hidden state trains */
    return encoder_backward(cm, err);
}

/* From d_res = d loss / d last hidden [B,T,D] down to the embeddings. */
static mb_status encoder_backward(mb_cuda_model *cm, mb_error *err) {
    const mb_distilbert_config *c = &cm->cfg;
    const int B = cm->fwd_B, T = cm->fwd_T, D = c->dim, F = c->hidden_dim, H = c->n_heads, hs = D / H, BT = B * T;
    const long BTD = (long)BT * D, BHTT = (long)B * H * T * T;
    const int train = cm->fwd_train, act = c->activation == MB_ACT_RELU ? MB_K_RELU : MB_K_GELU;
    float p_emb = train ? c->dropout : 0.0f, p_attn = train ? c->attention_dropout : 0.0f,
          p_ffn = train ? c->dropout : 0.0f;
    dacts *a = &cm->a;
    cudaStream_t st = cm->stream;

    const float alpha = 1.0f / sqrtf((float)hs);
    const long long sQ = (long long)T * hs, sP = (long long)T * T;
    for (int l = c->n_layers - 1; l >= 0; l--) {
        dlayer *la = &a->layer[l];
        const float *x = l == 0 ? a->emb_out : a->layer[l - 1].out;
        int tw = layer_tensor(cm, l, L_OUT_W), tb = layer_tensor(cm, l, L_OUT_B);
        /* out = LN2(h2): d_tmp = d h2 */
        CU_CHECK(mb_k_layernorm_backward_dx(a->d_tmp, a->d_res, la->h2, P(cm, tw), la->ln2_mean, la->ln2_rstd, BT, D,
                                            0, st));
        CU_CHECK(mb_k_layernorm_backward_dwdb(G(cm, tw), G(cm, tb), a->d_res, la->h2, la->ln2_mean, la->ln2_rstd, BT,
                                              D, st));
        /* h2 = sa + dropout(lin2(act(lin1(sa)))) */
        const float *d_ffn_out = a->d_tmp;
        if (p_ffn > 0.0f) {
            CU_CHECK(mb_k_dropout(a->d_res, a->d_tmp, BTD, p_ffn, cm->seed, la->ffn_off, st));
            d_ffn_out = a->d_res;
        }
        CU_CHECK(mb_k_act_forward(a->ffn_g, la->ffn_h, (long)BT * F, act, st)); /* recomputed, not kept */
        if (linear_bwd(cm, a->dffn, layer_tensor(cm, l, L_F2W), layer_tensor(cm, l, L_F2B), d_ffn_out, a->ffn_g, BT, F,
                       D, 0, err))
            return err->code;
        CU_CHECK(mb_k_act_backward(a->dffn, la->ffn_h, a->dffn, (long)BT * F, act, st));
        if (linear_bwd(cm, a->d_tmp, layer_tensor(cm, l, L_F1W), layer_tensor(cm, l, L_F1B), a->dffn, la->sa, BT, D, F,
                       1, err))
            return err->code;
        /* sa = LN1(h1): d_res = d h1 */
        tw = layer_tensor(cm, l, L_SA_W);
        tb = layer_tensor(cm, l, L_SA_B);
        CU_CHECK(mb_k_layernorm_backward_dx(a->d_res, a->d_tmp, la->h1, P(cm, tw), la->ln1_mean, la->ln1_rstd, BT, D,
                                            0, st));
        CU_CHECK(mb_k_layernorm_backward_dwdb(G(cm, tw), G(cm, tb), a->d_tmp, la->h1, la->ln1_mean, la->ln1_rstd, BT,
                                              D, st));
        /* h1 = x + out_lin(attention(q(x), k(x), v(x))) */
        if (linear_bwd(cm, a->dctx, layer_tensor(cm, l, L_OW), layer_tensor(cm, l, L_OB), a->d_res, la->ctx, BT, D, D,
                       0, err))
            return err->code;
        CU_CHECK(mb_k_split_heads(a->dctx_p, a->dctx, B, T, H, hs, st));
        const float *Pd = la->probs;
        if (p_attn > 0.0f) { /* the forward's dropped probabilities, regenerated from (seed, offset) */
            CU_CHECK(mb_k_dropout(a->pdrop, la->probs, BHTT, p_attn, cm->seed, la->attn_off, st));
            Pd = a->pdrop;
        }
        /* dv = dropout(P)^T dctx;  dP = dctx v^T (then through dropout and softmax) */
        if (gemm(cm, 1, 0, T, hs, T, 1.0f, act_op(Pd, BHTT), T, sP, act_op(a->dctx_p, BTD), hs, sQ, 0.0f, a->dvp, hs,
                 sQ, B * H, err))
            return err->code;
        if (gemm(cm, 0, 1, T, T, hs, 1.0f, act_op(a->dctx_p, BTD), hs, sQ, act_op(la->vp, BTD), hs, sQ, 0.0f,
                 a->dprobs, T, sP, B * H, err))
            return err->code;
        if (p_attn > 0.0f) CU_CHECK(mb_k_dropout(a->dprobs, a->dprobs, BHTT, p_attn, cm->seed, la->attn_off, st));
        CU_CHECK(mb_k_softmax_backward(a->dprobs, a->dprobs, la->probs, (long)B * H * T, T, st));
        /* dq = alpha dS k;  dk = alpha dS^T q */
        if (gemm(cm, 0, 0, T, hs, T, alpha, act_op(a->dprobs, BHTT), T, sP, act_op(la->kp, BTD), hs, sQ, 0.0f, a->dqp,
                 hs, sQ, B * H, err))
            return err->code;
        if (gemm(cm, 1, 0, T, hs, T, alpha, act_op(a->dprobs, BHTT), T, sP, act_op(la->qp, BTD), hs, sQ, 0.0f, a->dkp,
                 hs, sQ, B * H, err))
            return err->code;
        CU_CHECK(mb_k_merge_heads(a->dq, a->dqp, B, T, H, hs, st));
        CU_CHECK(mb_k_merge_heads(a->dk, a->dkp, B, T, H, hs, st));
        CU_CHECK(mb_k_merge_heads(a->dv, a->dvp, B, T, H, hs, st));
        /* d x accumulates into d_res (which holds d h1, the residual branch) */
        if (linear_bwd(cm, a->d_res, layer_tensor(cm, l, L_QW), layer_tensor(cm, l, L_QB), a->dq, x, BT, D, D, 1, err) ||
            linear_bwd(cm, a->d_res, layer_tensor(cm, l, L_KW), layer_tensor(cm, l, L_KB), a->dk, x, BT, D, D, 1, err) ||
            linear_bwd(cm, a->d_res, layer_tensor(cm, l, L_VW), layer_tensor(cm, l, L_VB), a->dv, x, BT, D, D, 1, err))
            return err->code;
    }
    /* emb_out = dropout(LN(word + position)) */
    if (p_emb > 0.0f) CU_CHECK(mb_k_dropout(a->d_res, a->d_res, BTD, p_emb, cm->seed, cm->emb_off, st));
    CU_CHECK(mb_k_layernorm_backward_dx(a->d_tmp, a->d_res, a->emb_sum, P(cm, T_EMB_LN_W), a->emb_mean, a->emb_rstd, BT,
                                        D, 0, st));
    CU_CHECK(mb_k_layernorm_backward_dwdb(G(cm, T_EMB_LN_W), G(cm, T_EMB_LN_B), a->d_res, a->emb_sum, a->emb_mean,
                                          a->emb_rstd, BT, D, st));
    const int32_t *rows = a->plan, *start = a->plan + (BT + 1), *pos = a->plan + 2 * (BT + 1);
    CU_CHECK(mb_k_embedding_backward_rows(G(cm, T_WORD), a->d_tmp, rows, start, pos, cm->plan.n_rows, D, st));
    if (!c->sinusoidal_pos_embds) CU_CHECK(mb_k_embedding_backward_pos(G(cm, T_POS), a->d_tmp, B, T, D, st));
    return MB_OK;
}

mb_status mb_cuda_model_zero_grad(mb_cuda_model *cm, mb_error *err) {
    ERR_GUARD;
    CU_CHECK(cudaMemsetAsync(cm->grads, 0, cm->N * 4, cm->stream));
    return MB_OK;
}

/* ---- host <-> device blocks --------------------------------------------------------------------- */

mb_status mb_cuda_model_download_params(mb_cuda_model *cm, mb_error *err) {
    ERR_GUARD;
    CU_CHECK(cudaMemcpyAsync(mb_distilbert_params(cm->host), cm->params, cm->N * 4, cudaMemcpyDeviceToHost, cm->stream));
    CU_CHECK(cudaStreamSynchronize(cm->stream));
    return MB_OK;
}

mb_status mb_cuda_model_upload_params(mb_cuda_model *cm, mb_error *err) { return upload_params(cm, err); }

mb_status mb_cuda_model_download_grads(mb_cuda_model *cm, float *grads, mb_error *err) {
    ERR_GUARD;
    CU_CHECK(cudaMemcpyAsync(grads, cm->grads, cm->N * 4, cudaMemcpyDeviceToHost, cm->stream));
    CU_CHECK(cudaStreamSynchronize(cm->stream));
    return MB_OK;
}

mb_status mb_cuda_model_outputs(mb_cuda_model *cm, float *last_hidden, float *cls, float **hidden_states,
                                float **attentions, mb_error *err) {
    ERR_GUARD;
    if (!cm->have_fwd) return mb_fail(err, MB_ERR_STATE, "outputs need a forward pass first");
    const mb_distilbert_config *c = &cm->cfg;
    const int B = cm->fwd_B, T = cm->fwd_T, D = c->dim, H = c->n_heads, NL = c->n_layers;
    const size_t BTD = (size_t)B * T * D * 4, BHTT = (size_t)B * H * T * T * 4;
    dacts *a = &cm->a;
    cudaStream_t st = cm->stream;
    const float *last = NL > 0 ? a->layer[NL - 1].out : a->emb_out;
    if (last_hidden) CU_CHECK(cudaMemcpyAsync(last_hidden, last, BTD, cudaMemcpyDeviceToHost, st));
    if (cls) CU_CHECK(cudaMemcpyAsync(cls, a->cls, (size_t)B * D * 4, cudaMemcpyDeviceToHost, st));
    for (int l = 0; hidden_states && l <= NL; l++)
        CU_CHECK(cudaMemcpyAsync(hidden_states[l], l == 0 ? a->emb_out : a->layer[l - 1].out, BTD,
                                 cudaMemcpyDeviceToHost, st));
    for (int l = 0; attentions && l < NL; l++)
        CU_CHECK(cudaMemcpyAsync(attentions[l], a->layer[l].probs, BHTT, cudaMemcpyDeviceToHost, st));
    CU_CHECK(cudaStreamSynchronize(st));
    return MB_OK;
}
