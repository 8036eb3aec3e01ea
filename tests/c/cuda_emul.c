/* cuda_emul.c: an emulated CUDA device for runtime/cuda/gpu_*.c, on the host.
 *
 * Device memory is host memory; the CUDA runtime and cuBLAS calls the backend
 * makes are re-implemented on the host (the GEMM takes cuBLAS's column-major
 * arguments as they are and hands them to a column-major cblas_sgemm, so
 * gpu_model.c's row-major mapping is checked, not repeated); each kernel
 * launcher of kernels.h is the plain loop written from its contract in
 * tests/c/cuda_ref.h; and gpu_device.c's surface (availability, counted
 * allocations, copies) is defined here. Two users:
 *  - tests/c/test_cuda_emul.c #includes this file and gpu_model.c;
 *  - the Makefile links it, instead of gpu_device.o, gpu_cublas.o, kernels.o
 *    and libcudart, into $(BUILD)/emu/lib/moonbert/core.so: the whole Lua
 *    surface on the emulated device (scripts/run-tests runs
 *    tests/spec/cuda_spec.lua against it with MOONBERT_CUDA_EMULATED=1).
 * What this checks without a GPU: everything above the kernels and cuBLAS.
 * What it cannot: the .cu kernels and real cuBLAS (scripts/gpu-check).
 * Needs the CUDA toolkit headers (a build with MB_HAVE_CUDA).
 */
#ifndef MB_CUDA_EMUL_C
#define MB_CUDA_EMUL_C

#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/cuda/bf16.h"
#include "../../runtime/cuda/gpu.h"

/* ---- the fake device ---------------------------------------------------------------------- */

static size_t emu_live, emu_peak, emu_allocs, emu_frees;

/* Each block carries its size in front (16 bytes keep the data aligned), so
   that frees are counted in bytes as gpu_device.c counts them. */
mb_status mb_cuda_require(mb_error *err) { return MB_OK; }
void *mb_cuda_malloc(size_t nbytes, mb_error *err) {
    char *p = malloc(16 + (nbytes ? nbytes : 1));
    if (!p) {
        mb_fail(err, MB_ERR_NOMEM, "emulated cudaMalloc failed");
        return NULL;
    }
    memcpy(p, &nbytes, sizeof nbytes);
    memset(p + 16, 0xA5, nbytes); /* device memory is not zeroed: catch reads of unwritten buffers */
    emu_live += nbytes;
    if (emu_live > emu_peak) emu_peak = emu_live;
    emu_allocs++;
    return p + 16;
}
void mb_cuda_free(void *d) {
    if (!d) return;
    char *p = (char *)d - 16;
    size_t nbytes;
    memcpy(&nbytes, p, sizeof nbytes);
    emu_live -= nbytes;
    emu_frees++;
    free(p);
}
mb_status mb_cuda_status(cudaError_t e, const char *what, mb_error *err) {
    return mb_fail(err, MB_ERR_STATE, "%s failed (emulated error %d)", what, (int)e);
}
mb_status mb_cublas_status(cublasStatus_t s, const char *what, mb_error *err) {
    return mb_fail(err, MB_ERR_STATE, "%s failed (emulated cuBLAS status %d)", what, (int)s);
}

static char fake_stream, fake_handle;
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags) {
    *s = (cudaStream_t)(void *)&fake_stream;
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t s) { return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind, cudaStream_t s) {
    memmove(dst, src, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *dst, int value, size_t n, cudaStream_t s) {
    memset(dst, value, n);
    return cudaSuccess;
}
cublasStatus_t cublasCreate_v2(cublasHandle_t *h) {
    *h = (cublasHandle_t)(void *)&fake_handle;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t h, void *w, size_t n) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) { return CUBLAS_STATUS_SUCCESS; }

static long emu_gemms;

/* A operand of `rows` x `cols` (column-major, leading dimension ld) as float32:
   the data itself, or a widened copy of bf16 data in *tmp. */
static const float *as_f32(const void *p, cudaDataType t, int rows, int cols, int ld, float **tmp) {
    if (t == CUDA_R_32F) return p;
    long extent = (long)ld * (cols - 1) + rows;
    *tmp = realloc(*tmp, (size_t)extent * sizeof(float));
    for (long i = 0; i < extent; i++) (*tmp)[i] = mb_bf16_to_f32(((const uint16_t *)p)[i]);
    return *tmp;
}

/* cuBLAS (column-major): C = alpha op(A) op(B) + beta C, op(A) m x k, op(B) k x n, per
   batch, computed by cblas_sgemm in column-major order with the very same arguments. */
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                          int m, int n, int k, const void *alpha, const void *A, cudaDataType Atype,
                                          int lda, long long int strideA, const void *B, cudaDataType Btype, int ldb,
                                          long long int strideB, const void *beta, void *C, cudaDataType Ctype,
                                          int ldc, long long int strideC, int batchCount,
                                          cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    if (Ctype != CUDA_R_32F || Atype != Btype || (Atype != CUDA_R_32F && Atype != CUDA_R_16BF))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    int ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
    if (lda < (ta ? k : m) || ldb < (tb ? n : k) || ldc < m) return CUBLAS_STATUS_INVALID_VALUE;
    size_t esz = Atype == CUDA_R_16BF ? 2 : 4;
    float *ta_buf = NULL, *tb_buf = NULL;
    emu_gemms++;
    for (int bt = 0; bt < batchCount; bt++) {
        const float *a = as_f32((const char *)A + bt * strideA * esz, Atype, ta ? k : m, ta ? m : k, lda, &ta_buf);
        const float *b = as_f32((const char *)B + bt * strideB * esz, Btype, tb ? n : k, tb ? k : n, ldb, &tb_buf);
        cblas_sgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k,
                    *(const float *)alpha, a, lda, b, ldb, *(const float *)beta, (float *)C + bt * strideC, ldc);
    }
    free(ta_buf);
    free(tb_buf);
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- the kernels: tests/c/cuda_ref.h, as the launchers ------------------------------------------ */

static long emu_dropout_calls;
static uint64_t emu_dropout_off[256];
static long emu_dropout_n[256];
static void emu_log_dropout(uint64_t offset, long n) {
    if (emu_dropout_calls < 256) {
        emu_dropout_off[emu_dropout_calls] = offset;
        emu_dropout_n[emu_dropout_calls] = n;
    }
    emu_dropout_calls++;
}
#define MB_REF_NAME(n) n
#define MB_REF_LINK
#define MB_REF_DROPOUT_HOOK emu_log_dropout
#include "cuda_ref.h"


/* ---- gpu_device.c's surface ------------------------------------------------------------------ */

static const size_t emu_total = (size_t)16 << 30; /* what memory() reports as the device's size */

int mb_cuda_available(void) { return 1; }
const char *mb_cuda_unavailable_reason(void) { return ""; }
int mb_cuda_built(void) { return 1; }
mb_status mb_cuda_device_name(char *buf, size_t n, mb_error *err) {
    snprintf(buf, n, "emulated CUDA device (host memory, tests/c/cuda_emul.c)");
    return MB_OK;
}
mb_status mb_cuda_memory(size_t *free_bytes, size_t *total_bytes, mb_error *err) {
    if (free_bytes) *free_bytes = emu_total > emu_live ? emu_total - emu_live : 0;
    if (total_bytes) *total_bytes = emu_total;
    return MB_OK;
}
size_t mb_cuda_allocated_bytes(void) { return emu_live; }
size_t mb_cuda_peak_bytes(void) { return emu_peak; }
void mb_cuda_reset_peak(void) { emu_peak = emu_live; }
mb_status mb_cuda_memcpy_h2d(void *dst, const void *src, size_t nbytes, mb_error *err) {
    if (nbytes) memmove(dst, src, nbytes);
    return MB_OK;
}
mb_status mb_cuda_memcpy_d2h(void *dst, const void *src, size_t nbytes, mb_error *err) {
    if (nbytes) memmove(dst, src, nbytes);
    return MB_OK;
}
mb_status mb_cuda_memcpy_d2d(void *dst, const void *src, size_t nbytes, mb_error *err) {
    if (nbytes) memmove(dst, src, nbytes);
    return MB_OK;
}
mb_status mb_cuda_synchronize(mb_error *err) { return MB_OK; }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

#endif
