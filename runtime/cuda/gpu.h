/* gpu.h: internal glue of the CUDA backend (gpu_*.c only; needs the toolkit headers).
 *
 * CU_CHECK / CUBLAS_CHECK turn a failed status into an mb_error naming the
 * call and the CUDA message, and return its code from the enclosing function
 * (which must have an mb_error *err in scope and return mb_status).
 */
#ifndef MB_CUDA_GPU_H
#define MB_CUDA_GPU_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "../cuda.h"

mb_status mb_cuda_status(cudaError_t e, const char *what, mb_error *err);
mb_status mb_cublas_status(cublasStatus_t s, const char *what, mb_error *err);
/* MB_OK, or MB_ERR_UNSUPPORTED with the reason the device cannot be used. */
mb_status mb_cuda_require(mb_error *err);

/* ---- what gpu_mlm.c uses of gpu_model.c (the encoder and its products) ---- */

/* A product operand: fp32 data, its bf16 mirror when one exists (else it is
   rounded into scratch in bf16 mode), and the number of floats it spans. */
typedef struct mb_gemm_operand {
    const float *f;
    const uint16_t *bf;
    long n;
} mb_gemm_operand;

/* Row-major C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C in the model's
   precision, on its stream and cuBLAS handle; bf_a/bf_b: bf16 scratch for
   operands without a mirror (bf16 mode only; NULL otherwise). */
mb_status mb_cuda_model_gemm(mb_cuda_model *cm, uint16_t *bf_a, uint16_t *bf_b, int ta, int tb, int M, int N, int K,
                             float alpha, mb_gemm_operand A, int lda, mb_gemm_operand B, int ldb, float beta, float *C,
                             int ldc, mb_error *err);
/* mb_cuda_model_new for a model used as an encoder only (its classification
   head's problem type is not checked: it never runs). */
mb_cuda_model *mb_cuda_model_new_encoder(mb_distilbert *m, mb_cuda_precision precision, uint64_t dropout_seed,
                                          mb_error *err);
/* Forward without the classification head: the last hidden state stays on
   the device (mb_cuda_model_last_hidden, [B,T,dim]). */
mb_status mb_cuda_model_forward_encoder(mb_cuda_model *cm, const int32_t *ids, const int32_t *mask, int B, int T,
                                        int train, mb_error *err);
const float *mb_cuda_model_last_hidden(const mb_cuda_model *cm);
/* After forward_encoder: the device buffer [B,T,dim] another head writes
   d loss / d last hidden into; then backward_hidden takes it down to the
   embeddings (nothing when the encoder is frozen), accumulating into the
   gradient block as mb_distilbert_backward_hidden does. */
float *mb_cuda_model_hidden_grad(mb_cuda_model *cm);
mb_status mb_cuda_model_backward_hidden(mb_cuda_model *cm, mb_error *err);
cudaStream_t mb_cuda_model_stream(const mb_cuda_model *cm);
void mb_cuda_model_shape(const mb_cuda_model *cm, int *B, int *T); /* of the last forward */
const uint16_t *mb_cuda_model_params_bf16(const mb_cuda_model *cm); /* the mirror (bf16 mode), else NULL */

#define CU_CHECK(call)                                                           \
    do {                                                                         \
        cudaError_t cu_e_ = (call);                                              \
        if (cu_e_ != cudaSuccess) return mb_cuda_status(cu_e_, #call, err);      \
    } while (0)
#define CUBLAS_CHECK(call)                                                       \
    do {                                                                         \
        cublasStatus_t cb_s_ = (call);                                           \
        if (cb_s_ != CUBLAS_STATUS_SUCCESS) return mb_cublas_status(cb_s_, #call, err); \
    } while (0)

#endif
