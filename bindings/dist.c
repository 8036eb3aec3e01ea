/* dist.c: Lua bindings of the data-parallel runtime (core.dist; runtime/dist.h).
 *
 *   core.dist.detect() -> {rank=, size=, local_rank=, source=}   what the launcher's variables say
 *   core.dist.init(force) -> rank, size      (force: --distributed; idempotent)
 *   core.dist.finalize()
 *   core.dist.rank(), size(), active(), broken()
 *   core.dist.set_timeout(seconds), timeout()
 *   core.dist.set_interrupt(fn | nil)        fn() -> a signal name | nil, polled while a collective waits
 *   core.dist.sum(t, scale, what)            float32 tensor := scale * sum over ranks, in rank order
 *                                            (a CUDA tensor: NCCL, opened on first use)
 *   core.dist.allreduce_mpi(t, what)         MPI_Allreduce(SUM) (benchmarks)
 *   core.dist.broadcast(t, root, what)       a tensor's bytes from root
 *   core.dist.allgather(s, what) -> {s_0, s_1, ...}   one string per rank, in rank order
 *   core.dist.allgather_rows(t, what) -> every rank's rows of a float32 [r, D] tensor, in rank order
 *   core.dist.barrier(what)
 *   core.dist.checksum(t) -> 16 hex digits
 *   core.dist.check_same(t, what) -> hex     error naming the ranks whose bytes differ
 *   core.dist.nccl_available() -> true | false, message
 * Errors (a dead or hung rank, a mismatch) are raised as Lua errors with the runtime's message.
 * The user-facing surface is moonbert/dist.lua.
 */
#include <stdlib.h>
#include <string.h>

#include "luamb.h"
#include "../runtime/dist.h"

static lua_State *interrupt_L; /* set while a collective runs (the Lua thread is inside it) */
static int interrupt_ref = LUA_NOREF;

static const char *interrupt_cb(void *ctx) {
    (void)ctx;
    lua_State *L = interrupt_L;
    if (!L || interrupt_ref == LUA_NOREF) return NULL;
    static char name[32];
    lua_rawgeti(L, LUA_REGISTRYINDEX, interrupt_ref);
    const char *out = NULL;
    if (lua_pcall(L, 0, 1, 0) == LUA_OK && lua_isstring(L, -1)) {
        strncpy(name, lua_tostring(L, -1), sizeof name - 1);
        out = name;
    }
    lua_pop(L, 1);
    return out;
}

/* Runs a collective with the interrupt callback bound to L. */
#define COLLECTIVE(L, call)                                                                                    \
    do {                                                                                                       \
        mb_error err_;                                                                                         \
        mb_error_clear(&err_);                                                                                 \
        interrupt_L = (L);                                                                                     \
        mb_error *err = &err_;                                                                                 \
        mb_status rc_ = (call);                                                                                \
        interrupt_L = NULL;                                                                                    \
        if (rc_) return mb_lua_raise((L), &err_);                                                              \
    } while (0)

static int l_detect(lua_State *L) {
    mb_dist_env e = mb_dist_detect();
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, e.rank);
    lua_setfield(L, -2, "rank");
    lua_pushinteger(L, e.size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, e.local_rank);
    lua_setfield(L, -2, "local_rank");
    if (e.source) {
        lua_pushstring(L, e.source);
        lua_setfield(L, -2, "source");
    }
    return 1;
}

static int l_init(lua_State *L) {
    int force = lua_toboolean(L, 1);
    COLLECTIVE(L, mb_dist_init(force, err));
    lua_pushinteger(L, mb_dist_rank());
    lua_pushinteger(L, mb_dist_size());
    return 2;
}

static int l_finalize(lua_State *L) {
    mb_error err;
    mb_error_clear(&err);
    mb_dist_finalize(&err);
    (void)L;
    return 0;
}

static int l_rank(lua_State *L) { lua_pushinteger(L, mb_dist_rank()); return 1; }
static int l_size(lua_State *L) { lua_pushinteger(L, mb_dist_size()); return 1; }
static int l_active(lua_State *L) { lua_pushboolean(L, mb_dist_active()); return 1; }
static int l_broken(lua_State *L) { lua_pushboolean(L, mb_dist_broken()); return 1; }
static int l_timeout(lua_State *L) { lua_pushnumber(L, mb_dist_timeout()); return 1; }

static int l_set_timeout(lua_State *L) {
    lua_Number s = luaL_checknumber(L, 1);
    luaL_argcheck(L, s > 0, 1, "a number of seconds > 0 expected");
    mb_dist_set_timeout((double)s);
    return 0;
}

static int l_set_interrupt(lua_State *L) {
    if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
    if (interrupt_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, interrupt_ref);
    interrupt_ref = LUA_NOREF;
    if (!lua_isnoneornil(L, 1)) {
        lua_pushvalue(L, 1);
        interrupt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    mb_dist_set_interrupt(interrupt_ref == LUA_NOREF ? NULL : interrupt_cb, NULL);
    return 0;
}

static mb_tensor *check_f32_contiguous(lua_State *L, int arg) {
    mb_tensor *t = mb_lua_checktensor_anydevice(L, arg);
    luaL_argcheck(L, t->dtype == MB_FLOAT32, arg, "float32 tensor expected");
    luaL_argcheck(L, mb_tensor_is_contiguous(t), arg, "contiguous tensor expected");
    return t;
}

static float *tensor_data(mb_tensor *t) {
    return (float *)t->storage->data + t->offset;
}

static int l_sum(lua_State *L) {
    mb_tensor *t = check_f32_contiguous(L, 1);
    float scale = (float)luaL_optnumber(L, 2, 1.0);
    const char *what = luaL_optstring(L, 3, "the gradient sum");
    size_t n = (size_t)mb_tensor_numel(t);
    if (t->storage->device == MB_CUDA) {
        if (mb_dist_active()) {
            COLLECTIVE(L, mb_dist_nccl_init(0, err));
            COLLECTIVE(L, mb_dist_nccl_sum_f32(tensor_data(t), n, scale, what, err));
            return 0;
        }
        if (scale != 1.0f) return luaL_error(L, "dist.sum: scaling a CUDA tensor needs several ranks (NCCL)");
        return 0;
    }
    COLLECTIVE(L, mb_dist_sum_f32(tensor_data(t), n, scale, what, err));
    return 0;
}

static int l_allreduce_mpi(lua_State *L) {
    mb_tensor *t = check_f32_contiguous(L, 1);
    luaL_argcheck(L, t->storage->device == MB_CPU, 1, "CPU tensor expected");
    const char *what = luaL_optstring(L, 2, "MPI_Allreduce");
    COLLECTIVE(L, mb_dist_allreduce_mpi_f32(tensor_data(t), (size_t)mb_tensor_numel(t), what, err));
    return 0;
}

static int l_broadcast(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor(L, 1);
    luaL_argcheck(L, mb_tensor_is_contiguous(t), 1, "contiguous tensor expected");
    lua_Integer root = luaL_optinteger(L, 2, 0);
    const char *what = luaL_optstring(L, 3, "broadcast");
    size_t bytes = (size_t)mb_tensor_numel(t) * mb_dtype_size(t->dtype);
    void *data = (char *)t->storage->data + (size_t)t->offset * mb_dtype_size(t->dtype);
    COLLECTIVE(L, mb_dist_broadcast(data, bytes, (int)root, what, err));
    return 0;
}

static int l_allgather(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *what = luaL_optstring(L, 2, "allgather");
    int P = mb_dist_size();
    size_t *counts = lua_newuserdatauv(L, sizeof(size_t) * (size_t)P, 0);
    void *all = NULL;
    COLLECTIVE(L, mb_dist_allgatherv(s, len, &all, counts, what, err));
    lua_createtable(L, P, 0);
    size_t at = 0;
    for (int p = 0; p < P; p++) {
        lua_pushlstring(L, (const char *)all + at, counts[p]);
        lua_rawseti(L, -2, p + 1);
        at += counts[p];
    }
    free(all);
    return 1;
}

/* Rows of a float32 [r, D] tensor from every rank, concatenated in rank order into a new
   [sum r, D] tensor (a rank with no rows may pass any [0, k] tensor). */
static int l_allgather_rows(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor_as(L, 1, MB_FLOAT32, 2);
    luaL_argcheck(L, mb_tensor_is_contiguous(t), 1, "contiguous tensor expected");
    const char *what = luaL_optstring(L, 2, "gathering rows");
    int64_t rows = t->shape[0], D = rows > 0 ? t->shape[1] : 0;
    size_t bytes = sizeof(int64_t) + (size_t)(rows * D) * sizeof(float);
    char *send = lua_newuserdatauv(L, bytes, 0);
    memcpy(send, &D, sizeof D);
    if (rows > 0) memcpy(send + sizeof D, tensor_data(t), bytes - sizeof D);
    int P = mb_dist_size();
    size_t *counts = lua_newuserdatauv(L, sizeof(size_t) * (size_t)P, 0);
    void *all = NULL;
    COLLECTIVE(L, mb_dist_allgatherv(send, bytes, &all, counts, what, err));
    int64_t width = 0, total = 0;
    size_t at = 0;
    for (int p = 0; p < P; p++) {
        int64_t d;
        memcpy(&d, (char *)all + at, sizeof d);
        int64_t r = d > 0 ? (int64_t)((counts[p] - sizeof d) / sizeof(float)) / d : 0;
        if (d > 0 && width > 0 && d != width) {
            free(all);
            return luaL_error(L, "%s: rank %d has rows of %d values, another rank %d", what, p, (int)d, (int)width);
        }
        if (d > 0) width = d;
        total += r;
        at += counts[p];
    }
    int64_t shape[2] = {total, width > 0 ? width : (t->ndim == 2 ? t->shape[1] : 1)};
    mb_error e;
    mb_tensor *out = mb_tensor_empty(MB_FLOAT32, 2, shape, &e);
    if (!out) {
        free(all);
        return mb_lua_raise(L, &e);
    }
    float *dst = (float *)out->storage->data;
    at = 0;
    for (int p = 0; p < P; p++) {
        size_t payload = counts[p] - sizeof(int64_t);
        memcpy(dst, (char *)all + at + sizeof(int64_t), payload);
        dst += payload / sizeof(float);
        at += counts[p];
    }
    free(all);
    mb_lua_pushtensor(L, out, &e);
    return 1;
}

static int l_barrier(lua_State *L) {
    const char *what = luaL_optstring(L, 1, "barrier");
    COLLECTIVE(L, mb_dist_barrier(what, err));
    return 0;
}

static void push_hex(lua_State *L, uint64_t h) {
    char buf[17];
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h);
    lua_pushstring(L, buf);
}

static int l_checksum(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor(L, 1);
    luaL_argcheck(L, mb_tensor_is_contiguous(t), 1, "contiguous tensor expected");
    size_t bytes = (size_t)mb_tensor_numel(t) * mb_dtype_size(t->dtype);
    push_hex(L, mb_dist_checksum((char *)t->storage->data + (size_t)t->offset * mb_dtype_size(t->dtype), bytes));
    return 1;
}

static int l_check_same(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor(L, 1);
    luaL_argcheck(L, mb_tensor_is_contiguous(t), 1, "contiguous tensor expected");
    const char *what = luaL_optstring(L, 2, "weight check");
    size_t bytes = (size_t)mb_tensor_numel(t) * mb_dtype_size(t->dtype);
    uint64_t sum = 0;
    COLLECTIVE(L, mb_dist_check_same((char *)t->storage->data + (size_t)t->offset * mb_dtype_size(t->dtype), bytes,
                                     what, &sum, err));
    push_hex(L, sum);
    return 1;
}

static int l_nccl_available(lua_State *L) {
    mb_error err;
    mb_error_clear(&err);
    int ok = mb_dist_nccl_available(&err);
    lua_pushboolean(L, ok);
    if (ok) return 1;
    lua_pushstring(L, err.msg);
    return 2;
}

MB_LUA_MODULE(dist) {
    static const luaL_Reg fns[] = {
        {"detect", l_detect},
        {"init", l_init},
        {"finalize", l_finalize},
        {"rank", l_rank},
        {"size", l_size},
        {"active", l_active},
        {"broken", l_broken},
        {"timeout", l_timeout},
        {"set_timeout", l_set_timeout},
        {"set_interrupt", l_set_interrupt},
        {"sum", l_sum},
        {"allreduce_mpi", l_allreduce_mpi},
        {"broadcast", l_broadcast},
        {"allgather", l_allgather},
        {"allgather_rows", l_allgather_rows},
        {"barrier", l_barrier},
        {"checksum", l_checksum},
        {"check_same", l_check_same},
        {"nccl_available", l_nccl_available},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
