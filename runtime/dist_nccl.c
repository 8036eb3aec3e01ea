/* dist_nccl.c: the gradient sum on GPUs with NCCL, opened at run time.
 *
 * libnccl.so.2 is opened with dlopen (as cuBLAS is, runtime/cuda/gpu_cublas.c), and
 * the two CUDA runtime calls needed (cudaSetDevice, cudaStreamQuery) are looked up
 * in the process (libcudart is linked into CUDA builds; a CPU build has none and
 * reports that). So this file builds everywhere without CUDA or NCCL headers: the
 * few NCCL declarations below are NCCL 2.x's stable C ABI (ncclUniqueId is 128
 * bytes, ncclFloat 7, ncclSum 0, the PreMulSum op creation since 2.11).
 *
 * The communicator's unique id goes from rank 0 to the others over MPI
 * (mb_dist_broadcast). A sum is ncclAllReduce of (scale * x) (ncclRedOpCreatePreMulSum)
 * on the default stream, then a poll of cudaStreamQuery and ncclCommGetAsyncError
 * until it completes or the deadline passes (then ncclCommAbort, and the error).
 *
 * Limits: this path has only been compiled and its absence tested (no GPU where it
 * was written); NCCL sums in its own order, so GPU ranks are not bit-identical to
 * one GPU (the weights stay identical across ranks: NCCL gives every rank the same
 * result for the same ring).
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist.h"

typedef struct { char internal[128]; } nccl_unique_id;
typedef void *nccl_comm;
typedef int nccl_result; /* ncclSuccess 0, ncclInProgress 7 */
enum { NCCL_FLOAT = 7, NCCL_SUM = 0, NCCL_SCALAR_HOST_IMMEDIATE = 1, CUDA_SUCCESS = 0, CUDA_NOT_READY = 600 };

static const char *NCCL_SONAME = "libnccl.so.2";

static struct {
    void *lib;
    nccl_result (*GetUniqueId)(nccl_unique_id *);
    nccl_result (*CommInitRank)(nccl_comm *, int, nccl_unique_id, int);
    nccl_result (*CommDestroy)(nccl_comm);
    nccl_result (*CommAbort)(nccl_comm);
    nccl_result (*CommGetAsyncError)(nccl_comm, nccl_result *);
    nccl_result (*AllReduce)(const void *, void *, size_t, int, int, nccl_comm, void *);
    nccl_result (*RedOpCreatePreMulSum)(int *, void *, int, int, nccl_comm);
    nccl_result (*RedOpDestroy)(int, nccl_comm);
    const char *(*GetErrorString)(nccl_result);
    int (*cudaSetDevice)(int);
    int (*cudaStreamQuery)(void *);
    nccl_comm comm;
    char why[512];
} nc;

/* libcudart: already in a CUDA build's process; else the toolkit's, by name */
static void *cudart(void) {
    if (dlsym(RTLD_DEFAULT, "cudaStreamQuery")) return RTLD_DEFAULT;
    const char *names[] = {"libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
    }
    return NULL;
}

int mb_dist_nccl_available(mb_error *err) {
    if (nc.lib) return 1;
    /* MOONBERT_NCCL_LIB: another file name or path for the library */
    const char *soname = getenv("MOONBERT_NCCL_LIB");
    if (!soname || !*soname) soname = NCCL_SONAME;
    void *lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    void *rt = lib ? cudart() : NULL;
    if (!lib || !rt) {
        const char *e = lib ? "no CUDA runtime (libcudart) in this process or on the library path" : dlerror();
        if (lib) dlclose(lib);
        mb_fail(err, MB_ERR_UNSUPPORTED,
                "several ranks with --device cuda need NCCL, and %s cannot be used (%s); install NCCL "
                "(libnccl2) or train on the CPU (--device cpu)",
                soname, e ? e : "not found");
        return 0;
    }
    struct { void **slot; const char *name; void *from; } syms[] = {
        {(void **)&nc.GetUniqueId, "ncclGetUniqueId", lib},
        {(void **)&nc.CommInitRank, "ncclCommInitRank", lib},
        {(void **)&nc.CommDestroy, "ncclCommDestroy", lib},
        {(void **)&nc.CommAbort, "ncclCommAbort", lib},
        {(void **)&nc.CommGetAsyncError, "ncclCommGetAsyncError", lib},
        {(void **)&nc.AllReduce, "ncclAllReduce", lib},
        {(void **)&nc.RedOpCreatePreMulSum, "ncclRedOpCreatePreMulSum", lib},
        {(void **)&nc.RedOpDestroy, "ncclRedOpDestroy", lib},
        {(void **)&nc.GetErrorString, "ncclGetErrorString", lib},
        {(void **)&nc.cudaSetDevice, "cudaSetDevice", rt},
        {(void **)&nc.cudaStreamQuery, "cudaStreamQuery", rt},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(syms[i].from, syms[i].name);
        if (!*syms[i].slot) {
            dlclose(lib);
            memset(&nc, 0, sizeof nc);
            mb_fail(err, MB_ERR_UNSUPPORTED, "%s: %s not found (%s)", syms[i].from == lib ? soname : "libcudart",
                    syms[i].name, syms[i].from == lib ? "NCCL 2.11 or newer is needed" : "an unexpected CUDA runtime");
            return 0;
        }
    }
    nc.lib = lib;
    return 1;
}

static mb_status nccl_fail(mb_error *err, const char *what, nccl_result r) {
    return mb_fail(err, MB_ERR_STATE, "%s: NCCL: %s", what, nc.GetErrorString ? nc.GetErrorString(r) : "error");
}

mb_status mb_dist_nccl_init(int device, mb_error *err) {
    if (nc.comm) return MB_OK;
    if (!mb_dist_nccl_available(err)) return err ? err->code : MB_ERR_UNSUPPORTED;
    nccl_unique_id id;
    memset(&id, 0, sizeof id);
    if (mb_dist_rank() == 0) {
        nccl_result r = nc.GetUniqueId(&id);
        if (r) return nccl_fail(err, "ncclGetUniqueId", r);
    }
    mb_status rc = mb_dist_broadcast(&id, sizeof id, 0, "sharing the NCCL id", err);
    if (rc) return rc;
    if (nc.cudaSetDevice(device) != CUDA_SUCCESS)
        return mb_fail(err, MB_ERR_STATE, "rank %d: cudaSetDevice(%d) failed", mb_dist_rank(), device);
    nccl_result r = nc.CommInitRank(&nc.comm, mb_dist_size(), id, mb_dist_rank());
    if (r) {
        nc.comm = NULL;
        return nccl_fail(err, "ncclCommInitRank", r);
    }
    return MB_OK;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

mb_status mb_dist_nccl_sum_f32(float *dev_buf, size_t n, float scale, const char *what, mb_error *err) {
    if (!nc.comm) return mb_fail(err, MB_ERR_STATE, "%s: NCCL is not initialised (mb_dist_nccl_init)", what);
    int op = NCCL_SUM;
    nccl_result r = nc.RedOpCreatePreMulSum(&op, &scale, NCCL_FLOAT, NCCL_SCALAR_HOST_IMMEDIATE, nc.comm);
    if (r) return nccl_fail(err, what, r);
    r = nc.AllReduce(dev_buf, dev_buf, n, NCCL_FLOAT, op, nc.comm, NULL);
    if (r) {
        nc.RedOpDestroy(op, nc.comm);
        return nccl_fail(err, what, r);
    }
    double deadline = now_s() + mb_dist_timeout();
    for (;;) {
        int q = nc.cudaStreamQuery(NULL);
        if (q == CUDA_SUCCESS) break;
        nccl_result async = 0;
        nc.CommGetAsyncError(nc.comm, &async);
        if (q != CUDA_NOT_READY || (async && async != 7) || now_s() > deadline) {
            nc.CommAbort(nc.comm);
            nc.comm = NULL;
            if (async && async != 7) return nccl_fail(err, what, async);
            if (q != CUDA_NOT_READY) return mb_fail(err, MB_ERR_STATE, "%s: CUDA error %d during ncclAllReduce", what, q);
            return mb_fail(err, MB_ERR_STATE, "%s: rank %d waited %.0f s (--dist-timeout) in ncclAllReduce; a rank died "
                           "or hangs", what, mb_dist_rank(), mb_dist_timeout());
        }
        struct timespec ts = {0, 100000L};
        nanosleep(&ts, NULL);
    }
    nc.RedOpDestroy(op, nc.comm);
    return MB_OK;
}

void mb_dist_nccl_finalize(void) {
    if (nc.comm) nc.CommDestroy(nc.comm);
    nc.comm = NULL;
}
