/* parallel.c: thread count shared by OpenBLAS and the OpenMP loops. */
#include "parallel.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <unistd.h>

/* Declared by OpenBLAS (cblas.h in Debian declares it, but not every build). */
void openblas_set_num_threads(int num_threads);

static int g_threads = 0;

int mb_num_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void mb_set_threads(int n) {
    if (n < 1) n = mb_num_cores();
    g_threads = n;
    openblas_set_num_threads(n);
    omp_set_num_threads(n);
}

void mb_threads_init(void) {
    if (g_threads > 0) return;
    int n = 0;
    const char *env = getenv("MOONBERT_THREADS");
    if (env && *env) n = atoi(env);
    mb_set_threads(n);
}

int mb_threads(void) {
    if (g_threads == 0) mb_threads_init();
    return g_threads;
}
