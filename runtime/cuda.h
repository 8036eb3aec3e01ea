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
 * The model (mb_cuda_model) mirrors runtime/distilbert.c on device copies of
 * the parameter and gradient blocks (same layout as mb_distilbert_params); it
 * is the device half of one model object (bindings/distilbert.c owns both
 * halves). The optimizer (mb_cuda_optim) is AdamW over a list of device
 * parameter refs (runtime/optim.h's mb_param_ref, with device pointers) with
 * its own moments, laid out as the CPU optimizer lays them out, so that
 * checkpoints are the same files on either device. Blocks and activation
 * buffers are allocated once per shape class (batch x length, growing only):
 * a steady-state step performs no cudaMalloc. Per step only the batch (ids,
 * mask, labels) goes host->device and the losses and gradient norm come back.
 *
 * Ordering: the model's stream is a blocking stream and the optimizer and the
 * mb_cuda_memcpy_* copies use the legacy default stream, so every call sees
 * the results of the calls before it (no explicit events needed).
 *
 * The masked-LM model (mb_cuda_mlm) is the encoder of mb_cuda_model plus
 * its head in a second pair of blocks (runtime/cuda/gpu_mlm.c).
 *
 * Limits: one device (device 0); single-label classification (cross-entropy)
 * and the masked-LM model on the device; GELU or ReLU activations as the config says.
 */
#ifndef MB_CUDA_H
#define MB_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "distilbert.h"
#include "distilbert_mlm.h"
#include "error.h"
#include "optim.h"
#include "tensor.h"

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

/* ---- tensors across devices (runtime/cuda/tensor_to.c) ------------------------ */

/* A copy of t on `device` (a new reference to t when it is there already);
   a device tensor's storage is device memory, freed with its last view. */
mb_tensor *mb_tensor_to(const mb_tensor *t, mb_device device, mb_error *err);
/* dst <- src, either on either device: same dtype and element count, both
   contiguous (two CPU tensors: mb_tensor_copy_). */
mb_status mb_tensor_copy_device(mb_tensor *dst, const mb_tensor *src, mb_error *err);

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

/* Upload m's parameters (gradients zero). The host model is not changed; it
   must outlive the device model (its config, parameter table and frozen flag
   are read). dropout_seed keys the Philox dropout masks. */
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

/* Outputs of the last forward, copied to the host (each may be NULL):
   last_hidden [B,T,dim]; cls [B,dim] (the [CLS] rows of last_hidden);
   hidden_states[0..n_layers] [B,T,dim] (embeddings output, then each layer);
   attentions[0..n_layers-1] [B,heads,T,T] (softmax before dropout). */
mb_status mb_cuda_model_outputs(mb_cuda_model *cm, float *last_hidden, float *cls, float **hidden_states,
                                float **attentions, mb_error *err);

/* The device blocks themselves ([num_params] each), for parameter views. */
float *mb_cuda_model_params(mb_cuda_model *cm);
float *mb_cuda_model_grads(mb_cuda_model *cm);

/* The dropout generator: Philox key and the next counter offset (each
   forward takes one offset per dropout site). Checkpoints save both. */
void mb_cuda_model_get_dropout(const mb_cuda_model *cm, uint64_t *seed, uint64_t *offset);
void mb_cuda_model_set_dropout(mb_cuda_model *cm, uint64_t seed, uint64_t offset);

/* Copies between the device blocks and the host model's blocks. */
mb_status mb_cuda_model_download_params(mb_cuda_model *cm, mb_error *err); /* device params -> host model */
mb_status mb_cuda_model_upload_params(mb_cuda_model *cm, mb_error *err);   /* host model -> device params */
mb_status mb_cuda_model_download_grads(mb_cuda_model *cm, float *grads, mb_error *err); /* [num_params] */

/* Device bytes the model holds (blocks + activations). */
size_t mb_cuda_model_bytes(const mb_cuda_model *cm);

/* ---- the masked-LM model on the device (runtime/cuda/gpu_mlm.c) -------------- */

/* runtime/distilbert_mlm.h's model on the device: its encoder is an
   mb_cuda_model (mb_cuda_mlm_encoder: precision, dropout generator, the
   encoder blocks), its head a second pair of device blocks laid out as
   mb_mlm_head_params. Uploads both blocks and both gradients. The host model
   must outlive it. */
typedef struct mb_cuda_mlm mb_cuda_mlm;
mb_cuda_mlm *mb_cuda_mlm_new(mb_distilbert_mlm *m, mb_cuda_precision precision, uint64_t dropout_seed,
                              mb_error *err);
void mb_cuda_mlm_free(mb_cuda_mlm *c); /* NULL is fine */
mb_cuda_model *mb_cuda_mlm_encoder(mb_cuda_mlm *c);
float *mb_cuda_mlm_head_params(mb_cuda_mlm *c); /* device [mb_mlm_head_numel] */
float *mb_cuda_mlm_head_grads(mb_cuda_mlm *c);
/* mb_mlm_forward / mb_mlm_loss / mb_mlm_backward on the device. logits_out
   (host [n, vocab], may be NULL) gets the logits of the predicted rows. */
mb_status mb_cuda_mlm_forward(mb_cuda_mlm *c, const int32_t *ids, const int32_t *mask, int B, int T,
                              const int32_t *positions, int n_pos, int train, float *logits_out, mb_error *err);
mb_status mb_cuda_mlm_loss(mb_cuda_mlm *c, const int32_t *ids, const int32_t *mask, const int32_t *labels, int B,
                           int T, int train, double *loss, int *n_masked, float *logits_out, mb_error *err);
mb_status mb_cuda_mlm_backward(mb_cuda_mlm *c, mb_error *err);
mb_status mb_cuda_mlm_zero_grad(mb_cuda_mlm *c, mb_error *err);
/* Device blocks -> the host model's blocks (parameters; gradients). */
mb_status mb_cuda_mlm_download_params(mb_cuda_mlm *c, mb_error *err);
mb_status mb_cuda_mlm_download_grads(mb_cuda_mlm *c, mb_error *err);

/* ---- the optimizer on the device (runtime/optim.h semantics) ---------------- */

typedef struct mb_cuda_optim mb_cuda_optim;

/* AdamW over refs whose value and grad are device pointers (in any number
   of blocks: the masked-LM model has two). The moments are laid out as
   runtime/optim.c lays them out. State zero, step 0. Only AdamW runs on the device. */
mb_cuda_optim *mb_cuda_optim_new(const mb_param_ref *params, int nparams, const mb_optim_config *cfg,
                                 mb_error *err);
void mb_cuda_optim_free(mb_cuda_optim *o); /* NULL is fine */
/* One AdamW update of the trainable refs with learning rate lr (the
   kernels' arithmetic is runtime/cuda/adamw.h, PyTorch's formulas). */
mb_status mb_cuda_optim_step(mb_cuda_optim *o, double lr, mb_error *err);
mb_status mb_cuda_optim_zero_grad(mb_cuda_optim *o, mb_error *err);
int64_t mb_cuda_optim_steps(const mb_cuda_optim *o);
int64_t mb_cuda_optim_state_numel(const mb_cuda_optim *o);
const mb_optim_config *mb_cuda_optim_config(const mb_cuda_optim *o);
/* The moments as the CPU optimizer lays them out (trainable refs in list
   order, [state_numel] each, host memory) and the step count. */
mb_status mb_cuda_optim_get_state(mb_cuda_optim *o, float *m, float *v, int64_t *step, mb_error *err);
mb_status mb_cuda_optim_set_state(mb_cuda_optim *o, const float *m, const float *v, int64_t step, mb_error *err);

/* mb_clip_grad_norm (runtime/optim.h) for device refs: the norm in float64
   (fixed order), then the gradients scaled in place by
   min(1, max_norm / (norm + 1e-6)). Scratch is kept between calls (grown
   only), so a training loop allocates nothing per step. */
mb_status mb_cuda_clip_grad_norm(const mb_param_ref *params, int nparams, double max_norm, double *total_norm,
                                 mb_error *err);
/* Free that scratch (leak checks; the next clip allocates it again). */
void mb_cuda_release_scratch(void);

#endif
