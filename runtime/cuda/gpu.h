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
