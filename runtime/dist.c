/* dist.c: ranks, collectives with deadlines, over Open MPI opened at run time.
 *
 * Open MPI is not linked (see dist.h): its ABI is small and stable across 3.x-5.x
 * (libmpi.so.40): handles are pointers to exported objects (MPI_COMM_WORLD is
 * &ompi_mpi_comm_world, MPI_FLOAT &ompi_mpi_float, ...), MPI_STATUS(ES)_IGNORE is
 * NULL, MPI_SUCCESS 0. Those few facts are declared below; tests/c/test_dist.c
 * checks them against mpi.h where libopenmpi-dev is installed. MPICH's ABI
 * (integer handles) is not supported: the error says so.
 *
 * Collectives are built from MPI_Isend/MPI_Irecv to and from each peer, polled
 * with MPI_Testsome until every request is done or the deadline passes, so the
 * error can name the ranks whose messages never came. Linear fan-out: fine up
 * to tens of ranks, which is what this is for (docs/distributed.md).
 */
#include "dist.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the slice of Open MPI's ABI that is used ------------------------------------------------ */

typedef void *ompi_handle; /* MPI_Comm, MPI_Datatype, MPI_Op, MPI_Request, MPI_Errhandler */
#define OMPI_THREAD_FUNNELED 1

static struct {
    void *lib;
    int (*Init_thread)(int *, char ***, int, int *);
    int (*Initialized)(int *);
    int (*Finalized)(int *);
    int (*Finalize)(void);
    int (*Comm_rank)(ompi_handle, int *);
    int (*Comm_size)(ompi_handle, int *);
    int (*Comm_set_errhandler)(ompi_handle, ompi_handle);
    int (*Isend)(const void *, int, ompi_handle, int, int, ompi_handle, ompi_handle *);
    int (*Irecv)(void *, int, ompi_handle, int, int, ompi_handle, ompi_handle *);
    int (*Testsome)(int, ompi_handle *, int *, int *, void *);
    int (*Allreduce)(const void *, void *, int, ompi_handle, ompi_handle, ompi_handle);
    int (*Error_string)(int, char *, int *);
    ompi_handle comm_world, mpi_byte, mpi_float, op_sum, errors_return, request_null;
} mpi;

static const char *MPI_SONAME = "libmpi.so.40";

static mb_status open_mpi(mb_error *err) {
    if (mpi.lib) return MB_OK;
    /* RTLD_GLOBAL: Open MPI's components (dlopen'd plugins) resolve libmpi's symbols */
    void *lib = dlopen(MPI_SONAME, RTLD_NOW | RTLD_GLOBAL);
    if (!lib)
        return mb_fail(err, MB_ERR_UNSUPPORTED,
                       "distributed run: cannot open Open MPI's %s (%s); install openmpi-bin (make deps)", MPI_SONAME,
                       dlerror());
    struct { void **slot; const char *name; } syms[] = {
        {(void **)&mpi.Init_thread, "MPI_Init_thread"},
        {(void **)&mpi.Initialized, "MPI_Initialized"},
        {(void **)&mpi.Finalized, "MPI_Finalized"},
        {(void **)&mpi.Finalize, "MPI_Finalize"},
        {(void **)&mpi.Comm_rank, "MPI_Comm_rank"},
        {(void **)&mpi.Comm_size, "MPI_Comm_size"},
        {(void **)&mpi.Comm_set_errhandler, "MPI_Comm_set_errhandler"},
        {(void **)&mpi.Isend, "MPI_Isend"},
        {(void **)&mpi.Irecv, "MPI_Irecv"},
        {(void **)&mpi.Testsome, "MPI_Testsome"},
        {(void **)&mpi.Allreduce, "MPI_Allreduce"},
        {(void **)&mpi.Error_string, "MPI_Error_string"},
        {&mpi.comm_world, "ompi_mpi_comm_world"},
        {&mpi.mpi_byte, "ompi_mpi_byte"},
        {&mpi.mpi_float, "ompi_mpi_float"},
        {&mpi.op_sum, "ompi_mpi_op_sum"},
        {&mpi.errors_return, "ompi_mpi_errors_return"},
        {&mpi.request_null, "ompi_request_null"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(lib, syms[i].name);
        if (!*syms[i].slot) {
            dlclose(lib);
            memset(&mpi, 0, sizeof mpi);
            return mb_fail(err, MB_ERR_UNSUPPORTED,
                           "distributed run: %s has no %s (moonbert speaks Open MPI's ABI, not MPICH's)", MPI_SONAME,
                           syms[i].name);
        }
    }
    mpi.lib = lib;
    return MB_OK;
}

/* ---- state ------------------------------------------------------------------------------------ */

static struct {
    int initialised, active, broken, we_called_init;
    int rank, size;
    double timeout;
    unsigned seq; /* collectives so far: message tags, so two collectives never mix */
    mb_dist_interrupt_fn interrupt;
    void *interrupt_ctx;
} st = {.size = 1, .timeout = 300.0};

int mb_dist_rank(void) { return st.rank; }
int mb_dist_size(void) { return st.size; }
int mb_dist_active(void) { return st.active; }
int mb_dist_broken(void) { return st.broken; }
void mb_dist_set_timeout(double s) { st.timeout = s > 0 ? s : 300.0; }
double mb_dist_timeout(void) { return st.timeout; }
void mb_dist_set_interrupt(mb_dist_interrupt_fn fn, void *ctx) {
    st.interrupt = fn;
    st.interrupt_ctx = ctx;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int env_int(const char *name, int *out) {
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < 0 || x > INT_MAX) return 0;
    *out = (int)x;
    return 1;
}

mb_dist_env mb_dist_detect(void) {
    mb_dist_env e = {0, 1, 0, NULL};
    static const char *const pairs[][3] = {
        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
        {"PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"},
        {"PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
        {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        int r, s;
        if (env_int(pairs[i][0], &r) && env_int(pairs[i][1], &s) && s >= 1 && r < s) {
            e.rank = r;
            e.size = s;
            if (!env_int(pairs[i][2], &e.local_rank)) e.local_rank = 0;
            e.source = pairs[i][1];
            /* srun without tasks (SLURM_NTASKS=1 in a batch script) is no launcher */
            if (i == 3 && s == 1) e.source = NULL;
            return e;
        }
    }
    return e;
}

static const char *mpi_message(int rc, char *buf, int cap) {
    int len = cap;
    if (mpi.Error_string && mpi.Error_string(rc, buf, &len) == 0) return buf;
    snprintf(buf, (size_t)cap, "MPI error %d", rc);
    return buf;
}

mb_status mb_dist_init(int force, mb_error *err) {
    if (st.initialised) return MB_OK;
    mb_dist_env e = mb_dist_detect();
    if (!e.source) {
        if (force)
            return mb_fail(err, MB_ERR_ARG,
                           "--distributed: no MPI launcher found (none of OMPI_COMM_WORLD_SIZE, PMI_SIZE, "
                           "SLURM_NTASKS is set); start moonbert with mpirun -np N or srun -n N");
        st.initialised = 1;
        return MB_OK; /* one process, exactly as without this module */
    }
    if (e.size == 1 && !force) {
        st.initialised = 1; /* mpirun -np 1: one process; MPI stays unloaded */
        return MB_OK;
    }
    /* Open MPI joins its ranks through its own launcher or PMIx; without either, MPI_Init aborts
       the process with a wall of text (srun --mpi=none or pmi2) */
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK"))
        return mb_fail(err, MB_ERR_ARG,
                       "%s says %d ranks, but Open MPI can only join them through its mpirun or PMIx: "
                       "under SLURM start them with srun --mpi=pmix (or MpiDefault=pmix in slurm.conf)",
                       e.source, e.size);
    mb_status rc = open_mpi(err);
    if (rc) return mb_error_prefix(err, "rank %d of %d (%s): ", e.rank, e.size, e.source);
    int already = 0, provided = 0;
    mpi.Initialized(&already);
    if (!already) {
        int r = mpi.Init_thread(NULL, NULL, OMPI_THREAD_FUNNELED, &provided);
        if (r != 0) {
            char m[256];
            return mb_fail(err, MB_ERR_STATE, "MPI_Init_thread failed: %s", mpi_message(r, m, sizeof m));
        }
        st.we_called_init = 1;
    }
    mpi.Comm_set_errhandler(mpi.comm_world, mpi.errors_return);
    mpi.Comm_rank(mpi.comm_world, &st.rank);
    mpi.Comm_size(mpi.comm_world, &st.size);
    if (st.size != e.size || st.rank != e.rank) {
        return mb_fail(err, MB_ERR_STATE,
                       "MPI says rank %d of %d but %s says %d of %d (was this started by another MPI's launcher?)",
                       st.rank, st.size, e.source, e.rank, e.size);
    }
    st.initialised = 1;
    st.active = st.size > 1;
    return MB_OK;
}

mb_status mb_dist_finalize(mb_error *err) {
    (void)err;
    mb_dist_nccl_finalize();
    if (!st.initialised) return MB_OK;
    /* after a failed collective, MPI_Finalize would wait for the dead peer */
    if (st.we_called_init && !st.broken) {
        int done = 0;
        mpi.Finalized(&done);
        if (!done) mpi.Finalize();
    }
    st.initialised = st.active = 0;
    st.rank = 0;
    st.size = 1;
    return MB_OK;
}

#define STALL_S 0.3

/* ---- waiting with a deadline ------------------------------------------------------------------ */

/* "ranks 1, 3" / "rank 2" from a list of peers */
static void name_ranks(char *out, size_t cap, const int *peers, int n) {
    size_t len = (size_t)snprintf(out, cap, n == 1 ? "rank" : "ranks");
    for (int i = 0; i < n && len < cap; i++) len += (size_t)snprintf(out + len, cap - len, "%s %d", i ? "," : "", peers[i]);
}

/* Wait for reqs[n] (peer[i]: the rank request i talks to). On the deadline, or a
 * stop request plus a grace, fails naming the peers with requests still open. */
static mb_status wait_all(ompi_handle *reqs, const int *peer, int n, const char *what, mb_error *err) {
    if (n == 0) return MB_OK;
    int *idx = malloc(sizeof(int) * (size_t)n);
    char *done = calloc((size_t)n, 1);
    if (!idx || !done) {
        free(idx);
        free(done);
        st.broken = 1;
        return mb_fail(err, MB_ERR_NOMEM, "%s: out of memory", what);
    }
    double start = now_s(), deadline = start + st.timeout, last_progress = start;
    const char *stop = NULL;
    int left = n, spins = 0, rc = 0;
    while (left > 0) {
        int out = 0;
        rc = mpi.Testsome(n, reqs, &out, idx, NULL);
        if (rc != 0) break;
        if (out > 0 && out != -32766 /* MPI_UNDEFINED */) {
            for (int i = 0; i < out; i++)
                if (!done[idx[i]]) {
                    done[idx[i]] = 1;
                    left--;
                }
            spins = 0;
            last_progress = now_s();
            continue;
        }
        double t = now_s();
        if (!stop && st.interrupt) stop = st.interrupt(st.interrupt_ctx);
        /* asked to stop: go on while messages still arrive (a job-wide stop, SLURM's preemption),
           give up after STALL_S without any (mpirun SIGKILLs 1 s after its SIGTERM) */
        if (t > deadline || (stop && t - last_progress > STALL_S)) break;
        /* spin briefly (latency), then sleep between tests: 50 us, then 1 ms once the wait is
           long (a peer still computing, or a hung one); a waiting rank leaves the CPU to the
           others (spinning for longer measured no faster here and slowed ranks sharing cores) */
        if (++spins > 200) {
            struct timespec ts = {0, spins > 2000 ? 1000000L : 50000L};
            nanosleep(&ts, NULL);
        }
    }
    mb_status status = MB_OK;
    if (left > 0 || rc != 0) {
        st.broken = 1;
        int *missing = malloc(sizeof(int) * (size_t)n), nm = 0;
        for (int i = 0; missing && i < n; i++) {
            if (done[i]) continue;
            int seen = 0;
            for (int j = 0; j < nm; j++) seen |= missing[j] == peer[i];
            if (!seen) missing[nm++] = peer[i];
        }
        char names[256] = "";
        if (missing && nm) name_ranks(names, sizeof names, missing, nm);
        free(missing);
        if (rc != 0) {
            char m[256];
            status = mb_fail(err, MB_ERR_STATE, "%s: rank %d of %d: MPI failed waiting for %s: %s", what, st.rank,
                             st.size, nm ? names : "the other ranks", mpi_message(rc, m, sizeof m));
        } else if (stop) {
            status = mb_fail(err, MB_ERR_STATE,
                             "%s: rank %d of %d stopped by %s while waiting for %s (that rank died or hangs; "
                             "mpirun stops the job when a rank dies)",
                             what, st.rank, st.size, stop, names);
        } else {
            status = mb_fail(err, MB_ERR_STATE,
                             "%s: rank %d of %d waited %.0f s (--dist-timeout) for %s, which died or hangs", what,
                             st.rank, st.size, st.timeout, names);
        }
    }
    free(idx);
    free(done);
    return status;
}

static mb_status check_usable(const char *what, mb_error *err) {
    if (st.broken)
        return mb_fail(err, MB_ERR_STATE, "%s: an earlier collective failed; the ranks cannot go on together", what);
    return MB_OK;
}

static int next_tag(void) { return (int)(st.seq++ % 30000u) + 1; }

/* Requests for up to 2*(size-1) messages of one collective. */
typedef struct {
    ompi_handle *req;
    int *peer;
    int n;
} reqset;

static mb_status reqset_new(reqset *r, int cap, const char *what, mb_error *err) {
    r->req = calloc((size_t)(cap ? cap : 1), sizeof *r->req);
    r->peer = calloc((size_t)(cap ? cap : 1), sizeof *r->peer);
    r->n = 0;
    if (!r->req || !r->peer) {
        free(r->req);
        free(r->peer);
        return mb_fail(err, MB_ERR_NOMEM, "%s: out of memory", what);
    }
    return MB_OK;
}

static void reqset_free(reqset *r) {
    free(r->req);
    free(r->peer);
}

static mb_status post(reqset *r, int is_send, void *buf, size_t count, ompi_handle type, int peer, int tag,
                      const char *what, mb_error *err) {
    if (count > INT_MAX) {
        st.broken = 1;
        return mb_fail(err, MB_ERR_RANGE, "%s: a message of %zu elements is over MPI's int count", what, count);
    }
    int rc = is_send ? mpi.Isend(buf, (int)count, type, peer, tag, mpi.comm_world, &r->req[r->n])
                     : mpi.Irecv(buf, (int)count, type, peer, tag, mpi.comm_world, &r->req[r->n]);
    if (rc != 0) {
        char m[256];
        st.broken = 1;
        return mb_fail(err, MB_ERR_STATE, "%s: rank %d: MPI_%s to rank %d failed: %s", what, st.rank,
                       is_send ? "Isend" : "Irecv", peer, mpi_message(rc, m, sizeof m));
    }
    r->peer[r->n++] = peer;
    return MB_OK;
}

/* ---- collectives ------------------------------------------------------------------------------ */

/* chunk r of n elements over size ranks: [lo, hi) */
static void chunk(size_t n, int size, int r, size_t *lo, size_t *hi) {
    *lo = n * (size_t)r / (size_t)size;
    *hi = n * (size_t)(r + 1) / (size_t)size;
}

mb_status mb_dist_sum_f32(float *buf, size_t n, float scale, const char *what, mb_error *err) {
    if (scale != 1.0f)
        for (size_t i = 0; i < n; i++) buf[i] *= scale;
    if (!st.active) return MB_OK;
    mb_status rc = check_usable(what, err);
    if (rc) return rc;
    int P = st.size, me = st.rank;
    size_t lo, hi;
    chunk(n, P, me, &lo, &hi);
    size_t mine = hi - lo;
    float *parts = malloc(sizeof(float) * (mine ? mine : 1) * (size_t)P); /* parts[p]: rank p's copy of my chunk */
    if (!parts) return mb_fail(err, MB_ERR_NOMEM, "%s: out of memory (%zu floats)", what, mine * (size_t)P);
    reqset r;
    if ((rc = reqset_new(&r, 2 * P, what, err))) {
        free(parts);
        return rc;
    }
    /* 1. reduce-scatter: everyone's copy of chunk `me` comes to me */
    int tag = next_tag();
    for (int p = 0; p < P && !rc; p++) {
        if (p == me) continue;
        size_t plo, phi;
        chunk(n, P, p, &plo, &phi);
        rc = post(&r, 0, parts + (size_t)p * mine, mine, mpi.mpi_float, p, tag, what, err);
        if (!rc) rc = post(&r, 1, buf + plo, phi - plo, mpi.mpi_float, p, tag, what, err);
    }
    if (!rc) rc = wait_all(r.req, r.peer, r.n, what, err);
    if (!rc) {
        /* the sum in rank order, own part in its place: ((b0 + b1) + b2) + ... */
        memcpy(parts + (size_t)me * mine, buf + lo, sizeof(float) * mine);
        for (size_t i = 0; i < mine; i++) {
            float s = parts[i];
            for (int p = 1; p < P; p++) s += parts[(size_t)p * mine + i];
            buf[lo + i] = s;
        }
        /* 2. allgather of the summed chunks */
        r.n = 0;
        tag = next_tag();
        for (int p = 0; p < P && !rc; p++) {
            if (p == me) continue;
            size_t plo, phi;
            chunk(n, P, p, &plo, &phi);
            rc = post(&r, 0, buf + plo, phi - plo, mpi.mpi_float, p, tag, what, err);
            if (!rc) rc = post(&r, 1, buf + lo, mine, mpi.mpi_float, p, tag, what, err);
        }
        if (!rc) rc = wait_all(r.req, r.peer, r.n, what, err);
    }
    reqset_free(&r);
    if (!st.broken) free(parts); /* else MPI may still write into it: left to the exiting process */
    return rc;
}

mb_status mb_dist_allreduce_mpi_f32(float *buf, size_t n, const char *what, mb_error *err) {
    if (!st.active) return MB_OK;
    mb_status rc = check_usable(what, err);
    if (rc) return rc;
    if (n > INT_MAX) return mb_fail(err, MB_ERR_RANGE, "%s: %zu elements is over MPI's int count", what, n);
    int r = mpi.Allreduce((void *)1 /* MPI_IN_PLACE */, buf, (int)n, mpi.mpi_float, mpi.op_sum, mpi.comm_world);
    if (r != 0) {
        char m[256];
        st.broken = 1;
        return mb_fail(err, MB_ERR_STATE, "%s: MPI_Allreduce failed: %s", what, mpi_message(r, m, sizeof m));
    }
    return MB_OK;
}

mb_status mb_dist_broadcast(void *buf, size_t bytes, int root, const char *what, mb_error *err) {
    if (!st.active) return MB_OK;
    mb_status rc = check_usable(what, err);
    if (rc) return rc;
    if (root < 0 || root >= st.size) return mb_fail(err, MB_ERR_ARG, "%s: root %d is not a rank of %d", what, root, st.size);
    reqset r;
    if ((rc = reqset_new(&r, st.size, what, err))) return rc;
    int tag = next_tag();
    if (st.rank == root) {
        for (int p = 0; p < st.size && !rc; p++)
            if (p != root) rc = post(&r, 1, buf, bytes, mpi.mpi_byte, p, tag, what, err);
    } else {
        rc = post(&r, 0, buf, bytes, mpi.mpi_byte, root, tag, what, err);
    }
    if (!rc) rc = wait_all(r.req, r.peer, r.n, what, err);
    reqset_free(&r);
    return rc;
}

mb_status mb_dist_allgather(const void *send, size_t bytes, void *recv, const char *what, mb_error *err) {
    memmove((char *)recv + (size_t)st.rank * bytes, send, bytes);
    if (!st.active) return MB_OK;
    mb_status rc = check_usable(what, err);
    if (rc) return rc;
    reqset r;
    if ((rc = reqset_new(&r, 2 * st.size, what, err))) return rc;
    int tag = next_tag();
    char *mine = (char *)recv + (size_t)st.rank * bytes;
    for (int p = 0; p < st.size && !rc; p++) {
        if (p == st.rank) continue;
        rc = post(&r, 0, (char *)recv + (size_t)p * bytes, bytes, mpi.mpi_byte, p, tag, what, err);
        if (!rc) rc = post(&r, 1, mine, bytes, mpi.mpi_byte, p, tag, what, err);
    }
    if (!rc) rc = wait_all(r.req, r.peer, r.n, what, err);
    reqset_free(&r);
    return rc;
}

mb_status mb_dist_allgatherv(const void *send, size_t bytes, void **recv, size_t *counts, const char *what,
                             mb_error *err) {
    *recv = NULL;
    uint64_t mine = bytes, *all = malloc(sizeof(uint64_t) * (size_t)st.size);
    if (!all) return mb_fail(err, MB_ERR_NOMEM, "%s: out of memory", what);
    mb_status rc = mb_dist_allgather(&mine, sizeof mine, all, what, err);
    size_t total = 0, *offset = NULL;
    char *out = NULL;
    if (!rc) {
        for (int p = 0; p < st.size; p++) total += (size_t)(counts[p] = (size_t)all[p]);
        out = malloc(total ? total : 1);
        offset = malloc(sizeof(size_t) * (size_t)st.size);
        if (!out || !offset) rc = mb_fail(err, MB_ERR_NOMEM, "%s: out of memory (%zu bytes)", what, total);
    }
    if (!rc) {
        size_t at = 0;
        for (int p = 0; p < st.size; p++) {
            offset[p] = at;
            at += counts[p];
        }
        memcpy(out + offset[st.rank], send, bytes);
        reqset r;
        if (st.active && !(rc = reqset_new(&r, 2 * st.size, what, err))) {
            int tag = next_tag();
            for (int p = 0; p < st.size && !rc; p++) {
                if (p == st.rank) continue;
                rc = post(&r, 0, out + offset[p], counts[p], mpi.mpi_byte, p, tag, what, err);
                if (!rc) rc = post(&r, 1, (void *)send, bytes, mpi.mpi_byte, p, tag, what, err);
            }
            if (!rc) rc = wait_all(r.req, r.peer, r.n, what, err);
            reqset_free(&r);
        }
    }
    free(all);
    free(offset);
    if (rc) {
        free(out);
        return rc;
    }
    *recv = out;
    return MB_OK;
}

mb_status mb_dist_barrier(const char *what, mb_error *err) {
    if (!st.active) return MB_OK;
    char one = 1, *all = malloc((size_t)st.size);
    if (!all) return mb_fail(err, MB_ERR_NOMEM, "%s: out of memory", what);
    mb_status rc = mb_dist_allgather(&one, 1, all, what, err);
    free(all);
    return rc;
}

uint64_t mb_dist_checksum(const void *buf, size_t bytes) {
    const unsigned char *p = buf;
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < bytes; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h ^ (uint64_t)bytes;
}

mb_status mb_dist_check_same(const void *buf, size_t bytes, const char *what, uint64_t *sum, mb_error *err) {
    uint64_t mine = mb_dist_checksum(buf, bytes);
    if (sum) *sum = mine;
    if (!st.active) return MB_OK;
    uint64_t *all = malloc(sizeof(uint64_t) * (size_t)st.size);
    if (!all) return mb_fail(err, MB_ERR_NOMEM, "%s: out of memory", what);
    mb_status rc = mb_dist_allgather(&mine, sizeof mine, all, what, err);
    if (!rc) {
        int bad[64], nb = 0;
        for (int p = 1; p < st.size; p++)
            if (all[p] != all[0] && nb < 64) bad[nb++] = p;
        if (nb) {
            char names[256];
            name_ranks(names, sizeof names, bad, nb);
            rc = mb_fail(err, MB_ERR_STATE,
                         "%s: the weights differ across ranks: %s %s a checksum (%016llx) other than rank 0's "
                         "(%016llx)",
                         what, names, nb == 1 ? "has" : "have", (unsigned long long)all[bad[0]],
                         (unsigned long long)all[0]);
        }
    }
    free(all);
    return rc;
}
