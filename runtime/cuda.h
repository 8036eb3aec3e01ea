/* cuda.h: the CUDA backend as the rest of the runtime sees it (plain C, no CUDA headers).
 *
 * Two builds implement this header:
 *  - with the toolkit (make, nvcc found; MB_HAVE_CUDA=1): runtime/cuda/gpu_*.c
 *    over the CUDA runtime and cuBLAS, kernels in the .cu files beside them;
 *  - without it (make CUDA=0): runtime/cuda_stub.c, where every call reports
 *    MB_ERR_UNSUPPORTED "moonbert was built without CUDA (make CUDA=1 with nvcc)".
 * Either binary runs on a machine without a GPU: mb_cuda_available() is then
 * 0 (a missing driver or device is not an error) and every device call fails
 * with MB_ERR_UNSUPPORTED naming why (mb_cuda_unavailable_reason()).
 *
 * Every CUDA and cuBLAS status is checked and turned into an mb_error naming
 * the call ("cudaMalloc(512.0 MB): out of memory"). Device memory is counted:
 * mb_cuda_peak_bytes() is the high-water mark of what moonbert allocated.
 *
 * The training step (mb_cuda_model) mirrors runtime/distilbert.c on device
 * copies of the parameter, gradient and AdamW moment blocks (same layout as
 * mb_distilbert_params). Blocks and activation buffers are allocated once per
 * shape class (batch x length, growing only): a steady-state step performs no
 * cudaMalloc. Per step only the batch (ids, mask, labels) goes host->device
 * and the loss and gradient norm come back.
 *
 * Limits: one device (device 0); single-label classification (cross-entropy)
 * only on the device; GELU or ReLU activations as the config says.
 */
#ifndef MB_CUDA_H
#define MB_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "distilbert.h"
#include "error.h"

/* ---- device discovery and memory ------------------------------------------- */

/* 1 when built with CUDA and a device can be used, else 0 (never fails). */
int mb_cuda_available(void);
/* Why mb_cuda_available() is 0 ("no CUDA driver (cudaGetDeviceCount: ...)"), or "" when it is 1. */
const char *mb_cuda_unavailable_reason(void);
/* 1 when this binary was built with the CUDA backend. */
int mb_cuda_built(void);
/* Name of device 0 ("NVIDIA H100 80GB HBM3") into buf. */
mb_status mb_cuda_device_name(char *buf, size_t n, mb_error *err);
/* Free and total device memory in bytes (cudaMemGetInfo). */
mb_status mb_cuda_memory(size_t *free_bytes, size_t *total_bytes, mb_error *err);
/* Bytes moonbert holds on the device now, and the most it has held. */
size_t mb_cuda_allocated_bytes(void);
size_t mb_cuda_peak_bytes(void);
void mb_cuda_reset_peak(void);

/* Device memory. mb_cuda_free(NULL) is fine. */
void *mb_cuda_malloc(size_t nbytes, mb_error *err);
void mb_cuda_free(void *dptr);
mb_status mb_cuda_memcpy_h2d(void *dst, const void *src, size_t nbytes, mb_error *err);
mb_status mb_cuda_memcpy_d2h(void *dst, const void *src, size_t nbytes, mb_error *err);
mb_status mb_cuda_memcpy_d2d(void *dst, const void *src, size_t nbytes, mb_error *err);
mb_status mb_cuda_synchronize(mb_error *err);

/* ---- the DistilBERT training step on the device ---------------------------- */

typedef enum mb_cuda_precision {
    MB_CUDA_FP32 = 0, /* exact float32 products (cuBLAS pedantic), for parity with the CPU */
    MB_CUDA_TF32 = 1, /* TF32 tensor cores in the products, fp32 everywhere else */
    MB_CUDA_BF16 = 2  /* bf16 operands, fp32 accumulation, fp32 master weights and loss */
} mb_cuda_precision;
#define MB_CUDA_DEFAULT_PRECISION MB_CUDA_TF32

/* "fp32", "tf32", "bf16"; parse returns -1 for anything else. */
const char *mb_cuda_precision_name(mb_cuda_precision p);
int mb_cuda_precision_parse(const char *name);

typedef struct mb_cuda_model mb_cuda_model;

/* Upload m's parameters (gradients zero, AdamW moments zero, step 0). The
   host model is not changed; it must outlive the device model (its config
   and parameter table are read). dropout_seed keys the Philox dropout masks. */
mb_cuda_model *mb_cuda_model_new(mb_distilbert *m, mb_cuda_precision precision, uint64_t dropout_seed,
                                  mb_error *err);
void mb_cuda_model_free(mb_cuda_model *cm); /* NULL is fine */
mb_cuda_precision mb_cuda_model_precision(const mb_cuda_model *cm);

/* Forward (train: dropout on, activations kept for backward) of ids/mask
   int32 [B,T] (host). logits_out (host, [B,num_labels]) may be NULL. */
mb_status mb_cuda_model_forward(mb_cuda_model *cm, const int32_t *ids, const int32_t *mask, int B, int T, int train,
                                float *logits_out, mb_error *err);
/* Mean cross-entropy of the last forward against labels[B] (host, -100
   ignored); computed in fp32 on the device. per_example (host) may be NULL. */
mb_status mb_cuda_model_loss(mb_cuda_model *cm, const int32_t *labels, int B, double *loss, float *per_example,
                             mb_error *err);
/* Gradients of the last loss accumulated into the device gradient block. */
mb_status mb_cuda_model_backward(mb_cuda_model *cm, mb_error *err);
mb_status mb_cuda_model_zero_grad(mb_cuda_model *cm, mb_error *err);

typedef struct mb_cuda_adamw {
    float lr, beta1, beta2, eps, weight_decay; /* torch.optim.AdamW; weight decay skips no_decay tensors */
    float max_grad_norm;                       /* clip_grad_norm_ when > 0 */
} mb_cuda_adamw;

/* Gradient norm over trainable tensors (into *grad_norm, before clipping),
   clipping, then one fused AdamW step over the trainable tensors. */
mb_status mb_cuda_model_step(mb_cuda_model *cm, const mb_cuda_adamw *opt, double *grad_norm, mb_error *err);

/* Copies between the device blocks and the host model's blocks. */
mb_status mb_cuda_model_download_params(mb_cuda_model *cm, mb_error *err); /* device params -> host model */
mb_status mb_cuda_model_upload_params(mb_cuda_model *cm, mb_error *err);   /* host model -> device params */
mb_status mb_cuda_model_download_grads(mb_cuda_model *cm, float *grads, mb_error *err); /* [num_params] */

/* Device bytes the model holds (blocks + activations) and its step count. */
size_t mb_cuda_model_bytes(const mb_cuda_model *cm);
int64_t mb_cuda_model_steps(const mb_cuda_model *cm);

#endif
