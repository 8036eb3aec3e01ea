/* launch.h: launch configurations of the CUDA kernels (host logic, plain C).
 *
 * Element-wise kernels use grid-stride loops: the grid covers n with blocks
 * of `block` threads but is capped (max_blocks), each thread looping. Row
 * kernels (LayerNorm, softmax, cross-entropy) give one block per row with a
 * power-of-two thread count (for the shared-memory tree reduction) no larger
 * than the row needs, between one warp and 1024.
 */
#ifndef MB_CUDA_LAUNCH_H
#define MB_CUDA_LAUNCH_H

#include <stddef.h>

#define MB_CUDA_MAX_THREADS 1024
#define MB_CUDA_WARP 32

/* Blocks for n elements at `block` threads each, at most max_blocks; 0 when n is 0. */
static inline int mb_grid_1d(long n, int block, int max_blocks) {
    if (n <= 0) return 0;
    long g = (n + block - 1) / block;
    return g > max_blocks ? max_blocks : (int)g;
}

/* Threads for one block per row of C columns: the power of two >= C, in [32, 1024]. */
static inline int mb_block_for_row(int C) {
    int t = MB_CUDA_WARP;
    while (t < C && t < MB_CUDA_MAX_THREADS) t *= 2;
    return t;
}

/* Dynamic shared memory (bytes) of a row kernel that keeps one float per
   thread for its reduction plus the row itself when it fits (else 0 extra). */
static inline size_t mb_row_smem(int threads, int C, size_t limit) {
    size_t red = (size_t)threads * sizeof(float), row = (size_t)C * sizeof(float);
    return red + row <= limit ? red + row : red;
}

#endif
