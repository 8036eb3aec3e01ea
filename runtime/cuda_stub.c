/* cuda_stub.c: runtime/cuda.h for a build without the CUDA toolkit (make CUDA=0,
 * or no nvcc found). Nothing is available; every device call fails with
 * MB_ERR_UNSUPPORTED and a message that says how to get the backend.
 * Compiled only when the CUDA backend is left out (see the Makefile).
 */
#include "cuda.h"

#include <stdio.h>
#include <string.h>

#define NO_CUDA "moonbert was built without CUDA (make CUDA=1 with nvcc)"

static mb_status no_cuda(mb_error *err) { return mb_fail(err, MB_ERR_UNSUPPORTED, "%s", NO_CUDA); }

int mb_cuda_available(void) { return 0; }
const char *mb_cuda_unavailable_reason(void) { return NO_CUDA; }
int mb_cuda_built(void) { return 0; }

mb_status mb_cuda_device_name(char *buf, size_t n, mb_error *err) {
    if (buf && n) buf[0] = '\0';
    return no_cuda(err);
}

mb_status mb_cuda_memory(size_t *free_bytes, size_t *total_bytes, mb_error *err) {
    if (free_bytes) *free_bytes = 0;
    if (total_bytes) *total_bytes = 0;
    return no_cuda(err);
}

size_t mb_cuda_allocated_bytes(void) { return 0; }
size_t mb_cuda_peak_bytes(void) { return 0; }
void mb_cuda_reset_peak(void) {}

void *mb_cuda_malloc(size_t nbytes, mb_error *err) {
    no_cuda(err);
    return NULL;
}
void mb_cuda_free(void *dptr) { (void)dptr; }
mb_status mb_cuda_memcpy_h2d(void *dst, const void *src, size_t nbytes, mb_error *err) { return no_cuda(err); }
mb_status mb_cuda_memcpy_d2h(void *dst, const void *src, size_t nbytes, mb_error *err) { return no_cuda(err); }
mb_status mb_cuda_memcpy_d2d(void *dst, const void *src, size_t nbytes, mb_error *err) { return no_cuda(err); }
mb_status mb_cuda_synchronize(mb_error *err) { return no_cuda(err); }

mb_cuda_model *mb_cuda_model_new(mb_distilbert *m, mb_cuda_precision precision, uint64_t dropout_seed,
                                  mb_error *err) {
    no_cuda(err);
    return NULL;
}
void mb_cuda_model_free(mb_cuda_model *cm) { (void)cm; }
mb_cuda_precision mb_cuda_model_precision(const mb_cuda_model *cm) { return MB_CUDA_DEFAULT_PRECISION; }
mb_status mb_cuda_model_forward(mb_cuda_model *cm, const int32_t *ids, const int32_t *mask, int B, int T, int train,
                                float *logits_out, mb_error *err) {
    return no_cuda(err);
}
mb_status mb_cuda_model_loss(mb_cuda_model *cm, const int32_t *labels, int B, double *loss, float *per_example,
                             mb_error *err) {
    return no_cuda(err);
}
mb_status mb_cuda_model_backward(mb_cuda_model *cm, mb_error *err) { return no_cuda(err); }
mb_status mb_cuda_model_zero_grad(mb_cuda_model *cm, mb_error *err) { return no_cuda(err); }
mb_status mb_cuda_model_download_params(mb_cuda_model *cm, mb_error *err) { return no_cuda(err); }
mb_status mb_cuda_model_upload_params(mb_cuda_model *cm, mb_error *err) { return no_cuda(err); }
mb_status mb_cuda_model_download_grads(mb_cuda_model *cm, float *grads, mb_error *err) { return no_cuda(err); }
size_t mb_cuda_model_bytes(const mb_cuda_model *cm) { return 0; }
mb_status mb_cuda_model_outputs(mb_cuda_model *cm, float *last_hidden, float *cls, float **hidden_states,
                                float **attentions, mb_error *err) {
    return no_cuda(err);
}
/* No mb_cuda_model exists in this build (mb_cuda_model_new fails), so these are never reached. */
float *mb_cuda_model_params(mb_cuda_model *cm) { return NULL; }
float *mb_cuda_model_grads(mb_cuda_model *cm) { return NULL; }
void mb_cuda_model_get_dropout(const mb_cuda_model *cm, uint64_t *seed, uint64_t *offset) { *seed = *offset = 0; }
void mb_cuda_model_set_dropout(mb_cuda_model *cm, uint64_t seed, uint64_t offset) {}

mb_cuda_mlm *mb_cuda_mlm_new(mb_distilbert_mlm *m, mb_cuda_precision precision, uint64_t dropout_seed,
                              mb_error *err) {
    no_cuda(err);
    return NULL;
}
void mb_cuda_mlm_free(mb_cuda_mlm *c) { (void)c; }
/* No mb_cuda_mlm exists in this build either. */
mb_cuda_model *mb_cuda_mlm_encoder(mb_cuda_mlm *c) { return NULL; }
float *mb_cuda_mlm_head_params(mb_cuda_mlm *c) { return NULL; }
float *mb_cuda_mlm_head_grads(mb_cuda_mlm *c) { return NULL; }
mb_status mb_cuda_mlm_forward(mb_cuda_mlm *c, const int32_t *ids, const int32_t *mask, int B, int T,
                              const int32_t *positions, int n_pos, int train, float *logits_out, mb_error *err) {
    return no_cuda(err);
}
mb_status mb_cuda_mlm_loss(mb_cuda_mlm *c, const int32_t *ids, const int32_t *mask, const int32_t *labels, int B,
                           int T, int train, double *loss, int *n_masked, float *logits_out, mb_error *err) {
    return no_cuda(err);
}
mb_status mb_cuda_mlm_backward(mb_cuda_mlm *c, mb_error *err) { return no_cuda(err); }
mb_status mb_cuda_mlm_zero_grad(mb_cuda_mlm *c, mb_error *err) { return no_cuda(err); }
mb_status mb_cuda_mlm_download_params(mb_cuda_mlm *c, mb_error *err) { return no_cuda(err); }
mb_status mb_cuda_mlm_download_grads(mb_cuda_mlm *c, mb_error *err) { return no_cuda(err); }
mb_cuda_optim *mb_cuda_optim_new(const mb_param_ref *params, int nparams, const mb_optim_config *cfg,
                                 mb_error *err) {
    no_cuda(err);
    return NULL;
}
void mb_cuda_optim_free(mb_cuda_optim *o) { (void)o; }
mb_status mb_cuda_optim_step(mb_cuda_optim *o, double lr, mb_error *err) { return no_cuda(err); }
mb_status mb_cuda_optim_zero_grad(mb_cuda_optim *o, mb_error *err) { return no_cuda(err); }
int64_t mb_cuda_optim_steps(const mb_cuda_optim *o) { return 0; }
int64_t mb_cuda_optim_state_numel(const mb_cuda_optim *o) { return 0; }
const mb_optim_config *mb_cuda_optim_config(const mb_cuda_optim *o) { return NULL; }
mb_status mb_cuda_optim_get_state(mb_cuda_optim *o, float *m, float *v, int64_t *step, mb_error *err) {
    return no_cuda(err);
}
mb_status mb_cuda_optim_set_state(mb_cuda_optim *o, const float *m, const float *v, int64_t step, mb_error *err) {
    return no_cuda(err);
}
mb_status mb_cuda_clip_grad_norm(const mb_param_ref *params, int nparams, double max_norm, double *total_norm,
                                 mb_error *err) {
    return no_cuda(err);
}
void mb_cuda_release_scratch(void) {}
