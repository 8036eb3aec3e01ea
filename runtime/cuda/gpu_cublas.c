/* gpu_cublas.c: cuBLAS opened on first use (dlopen), not linked.
 *
 * Linking libcublas maps and relocates about 150 MB into every moonbert
 * process at start-up (its resident memory, GPU or not), which alone put a
 * CPU fine-tune over its 1.5 GB budget. The backend calls six cuBLAS entry
 * points; they are defined here with cuBLAS's own prototypes and forward to
 * the library, opened the first time one of them runs (only after a device
 * was found). If it cannot be opened they return CUBLAS_STATUS_NOT_INITIALIZED
 * and mb_cublas_status() (gpu_device.c) names the library. The CUDA runtime
 * (libcudart, under 1 MB resident) stays linked.
 */
#include <cublas_v2.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

#define STR_(x) #x
#define STR(x) STR_(x)
#define CUBLAS_SONAME "libcublas.so." STR(CUBLAS_VER_MAJOR)

/* The six entry points, resolved together once (pthread_once: no race). */
enum { CREATE, DESTROY, SET_STREAM, SET_WORKSPACE, SET_MATH_MODE, GEMM_SBATCHED_EX, N_FN };
static const char *const names[N_FN] = {"cublasCreate_v2",       "cublasDestroy_v2",  "cublasSetStream_v2",
                                        "cublasSetWorkspace_v2", "cublasSetMathMode", "cublasGemmStridedBatchedEx"};
static void *fns[N_FN];
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* dlopen searches the RUNPATH of this object (the Makefile sets the CUDA lib64). */
static void open_lib(void) {
    void *lib = dlopen(CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
    for (int i = 0; lib && i < N_FN; i++) fns[i] = dlsym(lib, names[i]);
}

static void *fn(int i) {
    pthread_once(&once, open_lib);
    return fns[i];
}

/* One forwarding definition per entry point. */
#define FORWARD(id, name, params, args)                                     \
    cublasStatus_t CUBLASWINAPI name params {                               \
        cublasStatus_t(*f) params;                                          \
        *(void **)&f = fn(id);                                              \
        return f ? f args : CUBLAS_STATUS_NOT_INITIALIZED;                  \
    }

FORWARD(CREATE, cublasCreate_v2, (cublasHandle_t * handle), (handle))
FORWARD(DESTROY, cublasDestroy_v2, (cublasHandle_t handle), (handle))
FORWARD(SET_STREAM, cublasSetStream_v2, (cublasHandle_t handle, cudaStream_t stream), (handle, stream))
FORWARD(SET_WORKSPACE, cublasSetWorkspace_v2, (cublasHandle_t handle, void *workspace, size_t bytes),
        (handle, workspace, bytes))
FORWARD(SET_MATH_MODE, cublasSetMathMode, (cublasHandle_t handle, cublasMath_t mode), (handle, mode))
FORWARD(GEMM_SBATCHED_EX, cublasGemmStridedBatchedEx,
        (cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
         const void *alpha, const void *A, cudaDataType Atype, int lda, long long int strideA, const void *B,
         cudaDataType Btype, int ldb, long long int strideB, const void *beta, void *C, cudaDataType Ctype, int ldc,
         long long int strideC, int batchCount, cublasComputeType_t computeType, cublasGemmAlgo_t algo),
        (handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype, ldb, strideB, beta, C, Ctype, ldc,
         strideC, batchCount, computeType, algo))
