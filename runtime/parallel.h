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

/* Idempotent; called by every entry point that may run parallel work. */
void mb_threads_init(void);
int mb_threads(void);
/* Set the count for everything (OpenBLAS and OpenMP); n < 1 means all cores. */
void mb_set_threads(int n);
int mb_num_cores(void);

#endif
