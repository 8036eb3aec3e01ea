/* hd.h: MB_HD marks a function shared by host and device code.
 *
 * Under nvcc it is __host__ __device__ inline; under a C compiler it is
 * static inline. The headers that use it (philox.h, bf16.h, adamw.h) hold
 * the arithmetic that the kernels run, so that the C tests check the very
 * same code on the host (tests/c/test_cuda_host.c).
 */
#ifndef MB_CUDA_HD_H
#define MB_CUDA_HD_H

#ifdef __CUDACC__
#define MB_HD __host__ __device__ __forceinline__
#else
#define MB_HD static inline
#endif

#endif
