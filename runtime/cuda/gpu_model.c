/* gpu_model.c: the DistilBERT training step on the device (placeholder until the kernels land: every call reports "not implemented yet"). */
#include <stdio.h>
#include "../cuda.h"

#include <stdio.h>
#include <string.h>

#define NO_CUDA "the CUDA training step is not implemented yet"

static mb_status no_cuda(mb_error *err) { return mb_fail(err, MB_ERR_UNSUPPORTED, "%s", NO_CUDA); }

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
mb_status mb_cuda_model_step(mb_cuda_model *cm, const mb_cuda_adamw *opt, double *grad_norm, mb_error *err) {
    return no_cuda(err);
}
mb_status mb_cuda_model_download_params(mb_cuda_model *cm, mb_error *err) { return no_cuda(err); }
mb_status mb_cuda_model_upload_params(mb_cuda_model *cm, mb_error *err) { return no_cuda(err); }
mb_status mb_cuda_model_download_grads(mb_cuda_model *cm, float *grads, mb_error *err) { return no_cuda(err); }
size_t mb_cuda_model_bytes(const mb_cuda_model *cm) { return 0; }
int64_t mb_cuda_model_steps(const mb_cuda_model *cm) { return 0; }
