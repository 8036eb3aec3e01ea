/* dist.h: data-parallel training across processes (MPI ranks; NCCL on GPUs).
 *
 * One process per rank, each with the whole model and a share of every global
 * batch; the gradients are summed across ranks before the optimizer step, so
 * the weights stay identical everywhere (docs/distributed.md).
 *
 * MPI is not linked: Open MPI's libmpi.so.40 is opened with dlopen (RTLD_GLOBAL,
 * which its plugins need) the first time a run is distributed, so a build
 * without Open MPI is the same build and a one-process run never loads it.
 * NCCL (libnccl.so.2) is opened the same way when gradients live on a GPU.
 *
 * Every collective here is made of non-blocking point-to-point messages and a
 * wait with a deadline (mb_dist_set_timeout, default 300 s), so that a rank that
 * died or hangs turns into an error naming it on every other rank instead of a
 * process waiting forever. After such an error the communicator is broken:
 * every later call fails at once (mb_dist_finalize then leaves MPI alone).
 *
 * The gradient sum (mb_dist_sum_f32) adds the ranks' contributions in rank
 * order, each element on the one rank that owns its chunk, then shares the
 * result: it is bit-identical on every rank and independent of MPI's
 * reduction algorithms, and moves 2(N-1)/N of the buffer per rank, as a ring
 * allreduce does.
 */
#ifndef MB_DIST_H
#define MB_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* What the launcher says about this process, from the environment:
 * Open MPI's OMPI_COMM_WORLD_RANK/SIZE (mpirun), PMI_RANK/PMI_SIZE (PMI
 * launchers), PMIX_RANK with OMPI's size, SLURM_PROCID/SLURM_NTASKS (srun). */
typedef struct mb_dist_env {
    int rank, size, local_rank;
    const char *source; /* "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS" or NULL (no launcher) */
} mb_dist_env;

mb_dist_env mb_dist_detect(void);

/* Start the communicator (MPI_Init_thread when the world has more than one
 * rank; nothing at all for one). force: --distributed, so a launcher must be
 * there. Idempotent. Fails with a message naming the library or variable. */
mb_status mb_dist_init(int force, mb_error *err);
mb_status mb_dist_finalize(mb_error *err);

int mb_dist_rank(void);   /* 0 when not distributed */
int mb_dist_size(void);   /* 1 when not distributed */
int mb_dist_active(void); /* initialised with more than one rank */
int mb_dist_broken(void); /* a collective failed: the job cannot go on */

/* Seconds a collective may wait for the others (default 300). */
void mb_dist_set_timeout(double seconds);
double mb_dist_timeout(void);

/* Called while a collective waits; a non-NULL return (a signal name) means this
 * process was asked to stop (mpirun sends SIGTERM when a peer died): the wait
 * then gives the others a short grace and fails naming the missing ranks. */
typedef const char *(*mb_dist_interrupt_fn)(void *ctx);
void mb_dist_set_interrupt(mb_dist_interrupt_fn fn, void *ctx);

/* buf[n] (host float32) := scale * (sum over ranks of buf), summed in rank
 * order; identical bits on every rank. what names the step in errors
 * ("the gradient sum at step 12"). */
mb_status mb_dist_sum_f32(float *buf, size_t n, float scale, const char *what, mb_error *err);

/* The same with MPI's own MPI_Allreduce (for comparison in benchmarks: its
 * summation order is MPI's choice; no deadline: it blocks). */
mb_status mb_dist_allreduce_mpi_f32(float *buf, size_t n, const char *what, mb_error *err);

/* root's bytes[bytes] onto every rank. */
mb_status mb_dist_broadcast(void *buf, size_t bytes, int root, const char *what, mb_error *err);

/* Every rank's send[bytes] into recv[size * bytes], in rank order. */
mb_status mb_dist_allgather(const void *send, size_t bytes, void *recv, const char *what, mb_error *err);

/* Every rank's send[bytes_r] (sizes may differ) concatenated in rank order into
 * *recv (malloc'd, caller frees) with counts[size] (caller's array). */
mb_status mb_dist_allgatherv(const void *send, size_t bytes, void **recv, size_t *counts, const char *what,
                             mb_error *err);

mb_status mb_dist_barrier(const char *what, mb_error *err);

/* A 64-bit checksum of bytes (FNV-1a over 8-byte words): fast, not cryptographic. */
uint64_t mb_dist_checksum(const void *buf, size_t bytes);

/* Compare the checksum of buf across ranks: MB_ERR_STATE naming the ranks whose
 * bytes differ from rank 0's. *sum (may be NULL) gets this rank's checksum. */
mb_status mb_dist_check_same(const void *buf, size_t bytes, const char *what, uint64_t *sum, mb_error *err);

/* ---- NCCL (gradients on a GPU) --------------------------------------------------------------
 * libnccl.so.2 (or $MOONBERT_NCCL_LIB) and libcudart's stream calls are opened at run time. mb_dist_nccl_init
 * creates the communicator (its unique id travels over MPI): MB_ERR_UNSUPPORTED with one
 * line when NCCL cannot be opened. The sum is ncclAllReduce (NCCL's order, not rank order)
 * on the default stream, waited for with the same deadline. */
int mb_dist_nccl_available(mb_error *err);
mb_status mb_dist_nccl_init(int device, mb_error *err);
mb_status mb_dist_nccl_sum_f32(float *dev_buf, size_t n, float scale, const char *what, mb_error *err);
void mb_dist_nccl_finalize(void);

#endif
