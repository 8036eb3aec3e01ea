/* parallel.h: the one owner of the thread count.
 *
 * The count comes from MOONBERT_THREADS, else the number of online cores.
 * mb_threads_init() applies it to both OpenBLAS and OpenMP so that matrix
 * products and the runtime's own loops use the same number of threads and
 * never run on top of each other. Runtime loops use
 *     #pragma omp parallel for num_threads(mb_threads()) if (n > MB_PAR_MIN)
 */
#ifndef MB_PARALLEL_H
#define MB_PARALLEL_H

/* Below this many elements a loop runs on one thread: the fork costs more. */
#define MB_PAR_MIN 16384

/* Split [0,n) into one contiguous span per thread and run body with lo, hi
   bound; the span functions are where target_clones and `omp simd` go.
   Needs <omp.h>. */
#define PAR_SPANS(n, body)                                                                  \
    do {                                                                                    \
        int nt_ = (n) > MB_PAR_MIN ? mb_threads() : 1;                                      \
        _Pragma("omp parallel num_threads(nt_)") {                                          \
            int t_ = omp_get_thread_num(), k_ = omp_get_num_threads();                      \
            long lo = (n) * t_ / k_, hi = (n) * (t_ + 1) / k_;                              \
            body;                                                                           \
        }                                                                                   \
    } while (0)

/* Idempotent; called by every entry point that may run parallel work. */
void mb_threads_init(void);
int mb_threads(void);
/* Set the count for everything (OpenBLAS and OpenMP); n < 1 means all cores. */
void mb_set_threads(int n);
int mb_num_cores(void);

#endif
