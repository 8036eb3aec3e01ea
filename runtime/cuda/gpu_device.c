/* gpu_device.c: device discovery, memory and copies for runtime/cuda.h (CUDA build).
 *
 * Availability is probed once (cudaGetDeviceCount): no driver, no device or
 * MOONBERT_CUDA=0 in the environment make mb_cuda_available() 0 with the
 * reason kept for messages; nothing here aborts. Allocations are counted in
 * a small table (pointer -> size) so that the bytes held and their peak can
 * be reported without asking the driver.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static int probe_ok;
static char probe_reason[512];

static void probe(void) {
    const char *env = getenv("MOONBERT_CUDA");
    if (env && strcmp(env, "0") == 0) {
        snprintf(probe_reason, sizeof probe_reason, "CUDA is disabled by MOONBERT_CUDA=0");
        return;
    }
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(probe_reason, sizeof probe_reason, "no usable CUDA driver or device (cudaGetDeviceCount: %s)",
                 cudaGetErrorString(e));
        (void)cudaGetLastError(); /* clear the sticky-free error so later calls start clean */
        return;
    }
    if (n < 1) {
        snprintf(probe_reason, sizeof probe_reason, "no CUDA device found");
        return;
    }
    e = cudaSetDevice(0);
    if (e != cudaSuccess) {
        snprintf(probe_reason, sizeof probe_reason, "CUDA device 0 cannot be used (cudaSetDevice: %s)",
                 cudaGetErrorString(e));
        return;
    }
    probe_ok = 1;
}

int mb_cuda_available(void) {
    pthread_once(&probe_once, probe);
    return probe_ok;
}

const char *mb_cuda_unavailable_reason(void) {
    pthread_once(&probe_once, probe);
    return probe_ok ? "" : probe_reason;
}

int mb_cuda_built(void) { return 1; }

mb_status mb_cuda_require(mb_error *err) {
    if (mb_cuda_available()) return MB_OK;
    return mb_fail(err, MB_ERR_UNSUPPORTED, "CUDA is not available: %s", probe_reason);
}

mb_status mb_cuda_status(cudaError_t e, const char *what, mb_error *err) {
    mb_status code = e == cudaErrorMemoryAllocation ? MB_ERR_NOMEM : MB_ERR_STATE;
    return mb_fail(err, code, "%s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

static const char *cublas_name(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
    }
}

#define STR2_(x) #x
#define STR2(x) STR2_(x)
#define STR_CUBLAS_MAJOR STR2(CUBLAS_VER_MAJOR)

mb_status mb_cublas_status(cublasStatus_t s, const char *what, mb_error *err) {
    return mb_fail(err, s == CUBLAS_STATUS_ALLOC_FAILED ? MB_ERR_NOMEM : MB_ERR_STATE, "%s failed: %s (%d)%s", what,
                   cublas_name(s), (int)s,
                   s == CUBLAS_STATUS_NOT_INITIALIZED ? " (cuBLAS is opened on first use: is libcublas.so."
                   STR_CUBLAS_MAJOR " installed with the CUDA runtime?)" : "");
}

mb_status mb_cuda_device_name(char *buf, size_t n, mb_error *err) {
    if (buf && n) buf[0] = '\0';
    if (mb_cuda_require(err) != MB_OK) return MB_ERR_UNSUPPORTED;
    struct cudaDeviceProp prop;
    CU_CHECK(cudaGetDeviceProperties(&prop, 0));
    snprintf(buf, n, "%s", prop.name);
    return MB_OK;
}

mb_status mb_cuda_memory(size_t *free_bytes, size_t *total_bytes, mb_error *err) {
    size_t f = 0, t = 0;
    if (free_bytes) *free_bytes = 0;
    if (total_bytes) *total_bytes = 0;
    if (mb_cuda_require(err) != MB_OK) return MB_ERR_UNSUPPORTED;
    CU_CHECK(cudaMemGetInfo(&f, &t));
    if (free_bytes) *free_bytes = f;
    if (total_bytes) *total_bytes = t;
    return MB_OK;
}

/* ---- counted allocations ------------------------------------------------------ */

typedef struct alloc_entry {
    void *ptr;
    size_t bytes;
} alloc_entry;

static pthread_mutex_t alloc_lock = PTHREAD_MUTEX_INITIALIZER;
static alloc_entry *allocs;
static size_t n_allocs, cap_allocs, bytes_now, bytes_peak;

size_t mb_cuda_allocated_bytes(void) {
    pthread_mutex_lock(&alloc_lock);
    size_t b = bytes_now;
    pthread_mutex_unlock(&alloc_lock);
    return b;
}

size_t mb_cuda_peak_bytes(void) {
    pthread_mutex_lock(&alloc_lock);
    size_t b = bytes_peak;
    pthread_mutex_unlock(&alloc_lock);
    return b;
}

void mb_cuda_reset_peak(void) {
    pthread_mutex_lock(&alloc_lock);
    bytes_peak = bytes_now;
    pthread_mutex_unlock(&alloc_lock);
}

void *mb_cuda_malloc(size_t nbytes, mb_error *err) {
    if (mb_cuda_require(err) != MB_OK) return NULL;
    pthread_mutex_lock(&alloc_lock);
    if (n_allocs == cap_allocs) {
        size_t cap = cap_allocs ? 2 * cap_allocs : 64;
        alloc_entry *a = realloc(allocs, cap * sizeof *a);
        if (!a) {
            pthread_mutex_unlock(&alloc_lock);
            mb_fail(err, MB_ERR_NOMEM, "out of host memory tracking device allocations");
            return NULL;
        }
        allocs = a;
        cap_allocs = cap;
    }
    pthread_mutex_unlock(&alloc_lock);
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, nbytes ? nbytes : 1);
    if (e != cudaSuccess) {
        size_t f = 0, t = 0;
        (void)cudaGetLastError();
        cudaMemGetInfo(&f, &t);
        mb_fail(err, e == cudaErrorMemoryAllocation ? MB_ERR_NOMEM : MB_ERR_STATE,
                "cudaMalloc(%.1f MB) failed: %s (%.1f MB free of %.1f MB; moonbert holds %.1f MB)", nbytes / 1e6,
                cudaGetErrorString(e), f / 1e6, t / 1e6, mb_cuda_allocated_bytes() / 1e6);
        return NULL;
    }
    pthread_mutex_lock(&alloc_lock);
    allocs[n_allocs].ptr = p;
    allocs[n_allocs].bytes = nbytes;
    n_allocs++;
    bytes_now += nbytes;
    if (bytes_now > bytes_peak) bytes_peak = bytes_now;
    pthread_mutex_unlock(&alloc_lock);
    return p;
}

void mb_cuda_free(void *dptr) {
    if (!dptr) return;
    pthread_mutex_lock(&alloc_lock);
    for (size_t i = n_allocs; i-- > 0;)
        if (allocs[i].ptr == dptr) {
            bytes_now -= allocs[i].bytes;
            allocs[i] = allocs[--n_allocs];
            break;
        }
    pthread_mutex_unlock(&alloc_lock);
    cudaFree(dptr); /* a failure here leaves nothing to undo; it resurfaces at the next checked call */
}

static mb_status copy(void *dst, const void *src, size_t nbytes, enum cudaMemcpyKind kind, const char *what,
                      mb_error *err) {
    if (mb_cuda_require(err) != MB_OK) return MB_ERR_UNSUPPORTED;
    if (!nbytes) return MB_OK;
    cudaError_t e = cudaMemcpy(dst, src, nbytes, kind);
    if (e != cudaSuccess) return mb_cuda_status(e, what, err);
    return MB_OK;
}

mb_status mb_cuda_memcpy_h2d(void *dst, const void *src, size_t nbytes, mb_error *err) {
    return copy(dst, src, nbytes, cudaMemcpyHostToDevice, "cudaMemcpy (host to device)", err);
}
mb_status mb_cuda_memcpy_d2h(void *dst, const void *src, size_t nbytes, mb_error *err) {
    return copy(dst, src, nbytes, cudaMemcpyDeviceToHost, "cudaMemcpy (device to host)", err);
}
mb_status mb_cuda_memcpy_d2d(void *dst, const void *src, size_t nbytes, mb_error *err) {
    return copy(dst, src, nbytes, cudaMemcpyDeviceToDevice, "cudaMemcpy (device to device)", err);
}

mb_status mb_cuda_synchronize(mb_error *err) {
    if (mb_cuda_require(err) != MB_OK) return MB_ERR_UNSUPPORTED;
    CU_CHECK(cudaDeviceSynchronize());
    return MB_OK;
}
