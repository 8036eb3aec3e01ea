/* test_dist.c: the parts of runtime/dist.c that need no launcher: reading the launchers'
 * variables, one process's collectives (identities), the checksum, errors, NCCL's absence,
 * and (where libopenmpi-dev's mpi.h is found) the Open MPI ABI facts dist.c declares itself.
 * The collectives across ranks are tested under mpirun by tests/spec/dist_spec.lua. */
#include "../../runtime/dist.h"

#include "harness.h"

#if defined(__has_include)
#if __has_include(<mpi.h>)
#include <mpi.h>
/* dist.c opens libmpi.so.40 itself and relies on these */
_Static_assert(MPI_SUCCESS == 0, "MPI_SUCCESS");
_Static_assert(MPI_THREAD_FUNNELED == 1, "MPI_THREAD_FUNNELED");
_Static_assert(MPI_UNDEFINED == -32766, "MPI_UNDEFINED");
_Static_assert(sizeof(MPI_Comm) == sizeof(void *) && sizeof(MPI_Request) == sizeof(void *), "pointer handles");
#define HAVE_MPI_H 1
#endif
#endif

static void clear_env(void) {
    const char *names[] = {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_RANK",
                           "PMI_SIZE", "PMIX_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "MPI_LOCALRANKID"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unsetenv(names[i]);
}

TEST(detect_reads_each_launcher) {
    clear_env();
    mb_dist_env e = mb_dist_detect();
    CHECK(e.source == NULL && e.size == 1 && e.rank == 0, "no launcher");
    setenv("SLURM_PROCID", "2", 1);
    setenv("SLURM_NTASKS", "4", 1);
    setenv("SLURM_LOCALID", "0", 1);
    e = mb_dist_detect();
    CHECK(e.rank == 2 && e.size == 4 && e.source && strcmp(e.source, "SLURM_NTASKS") == 0, "srun: %d/%d", e.rank, e.size);
    setenv("PMI_RANK", "1", 1);
    setenv("PMI_SIZE", "3", 1);
    e = mb_dist_detect();
    CHECK(e.rank == 1 && e.size == 3 && strcmp(e.source, "PMI_SIZE") == 0, "PMI wins over SLURM: %d/%d", e.rank, e.size);
    setenv("OMPI_COMM_WORLD_RANK", "0", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    e = mb_dist_detect();
    CHECK(e.rank == 0 && e.size == 2 && strcmp(e.source, "OMPI_COMM_WORLD_SIZE") == 0, "mpirun first");
    clear_env();
    setenv("SLURM_PROCID", "0", 1);
    setenv("SLURM_NTASKS", "1", 1);
    CHECK(mb_dist_detect().source == NULL, "a one-task SLURM job is no launcher");
    setenv("PMI_RANK", "5", 1);
    setenv("PMI_SIZE", "2", 1);
    CHECK(mb_dist_detect().source == NULL, "rank >= size is ignored");
    setenv("PMI_RANK", "x", 1);
    CHECK(mb_dist_detect().source == NULL, "a non-number is ignored");
    clear_env();
}

TEST(distributed_without_launcher_is_an_error) {
    clear_env();
    mb_error err;
    CHECK(mb_dist_init(1, &err) == MB_ERR_ARG, "force without a launcher");
    CHECK(strstr(err.msg, "--distributed") && strstr(err.msg, "mpirun"), "message: %s", err.msg);
}

TEST(one_process_collectives_are_identities) {
    clear_env();
    mb_error err;
    CHECK(mb_dist_init(0, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_dist_size() == 1 && mb_dist_rank() == 0 && !mb_dist_active(), "one process");
    float g[5] = {1, 2, 3, 4, 5};
    CHECK(mb_dist_sum_f32(g, 5, 0.5f, "sum", &err) == MB_OK, "%s", err.msg);
    CHECK(g[0] == 0.5f && g[4] == 2.5f, "scaled: %g %g", g[0], g[4]);
    int x = 7, all[1] = {0};
    CHECK(mb_dist_allgather(&x, sizeof x, all, "gather", &err) == MB_OK && all[0] == 7, "allgather");
    void *v = NULL;
    size_t counts[1];
    CHECK(mb_dist_allgatherv("abc", 3, &v, counts, "gatherv", &err) == MB_OK && counts[0] == 3 &&
              memcmp(v, "abc", 3) == 0,
          "allgatherv");
    free(v);
    CHECK(mb_dist_barrier("barrier", &err) == MB_OK, "barrier");
    CHECK(mb_dist_broadcast(&x, sizeof x, 0, "bcast", &err) == MB_OK && x == 7, "broadcast");
    uint64_t sum = 0;
    CHECK(mb_dist_check_same(g, sizeof g, "check", &sum, &err) == MB_OK && sum == mb_dist_checksum(g, sizeof g), "check");
    CHECK(mb_dist_finalize(&err) == MB_OK, "finalize");
}

TEST(checksum_sees_one_bit) {
    float a[1001];
    for (int i = 0; i < 1001; i++) a[i] = (float)i * 0.25f;
    uint64_t h = mb_dist_checksum(a, sizeof a);
    CHECK(h == mb_dist_checksum(a, sizeof a), "deterministic");
    unsigned char *bytes = (unsigned char *)a;
    for (size_t k = 0; k < sizeof a; k += 401) {
        bytes[k] ^= 1;
        CHECK(mb_dist_checksum(a, sizeof a) != h, "bit 0 of byte %zu", k);
        bytes[k] ^= 1;
    }
    CHECK(mb_dist_checksum(a, sizeof a - 1) != h, "length counts");
}

TEST(timeout_setting) {
    mb_dist_set_timeout(2.5);
    CHECK(mb_dist_timeout() == 2.5, "set");
    mb_dist_set_timeout(-1);
    CHECK(mb_dist_timeout() == 300.0, "invalid: the default");
}

/* Where NCCL is installed (a CUDA toolkit with it), MOONBERT_NCCL_LIB names a library that
   does not exist: the same path as a machine without NCCL. */
TEST(nccl_absent_is_one_clear_error) {
    mb_error err;
    mb_error_clear(&err);
    char missing[600];
    setenv("MOONBERT_NCCL_LIB", harness_missing("libnccl.so.2", missing, sizeof missing), 1);
    CHECK(!mb_dist_nccl_available(&err), "a missing library is not available");
    unsetenv("MOONBERT_NCCL_LIB");
    CHECK(err.code == MB_ERR_UNSUPPORTED, "code %d", err.code);
    CHECK(strstr(err.msg, "NCCL") && !strchr(err.msg, '\n'), "one line naming NCCL: %s", err.msg);
    setenv("MOONBERT_NCCL_LIB", missing, 1);
    CHECK(mb_dist_nccl_init(0, &err) == MB_ERR_UNSUPPORTED, "init fails the same way");
    unsetenv("MOONBERT_NCCL_LIB");
}

/* Where libnccl.so.2 is installed: it opens and every entry point is found (NCCL >= 2.11). */
TEST(nccl_present_resolves) {
    mb_error err;
    mb_error_clear(&err);
    if (!mb_dist_nccl_available(&err)) SKIP("no NCCL here (%s)", err.msg);
    CHECK(err.code == MB_OK, "%s", err.msg);
}

TEST(mpi_abi_matches_the_header) {
#ifndef HAVE_MPI_H
    SKIP("mpi.h not found (libopenmpi-dev): the ABI facts are checked where it is");
#endif
}

int main(void) {
    RUN(detect_reads_each_launcher);
    RUN(distributed_without_launcher_is_an_error);
    RUN(one_process_collectives_are_identities);
    RUN(checksum_sees_one_bit);
    RUN(timeout_setting);
    RUN(nccl_absent_is_one_clear_error);
    RUN(nccl_present_resolves);
    RUN(mpi_abi_matches_the_header);
    return harness_end();
}
