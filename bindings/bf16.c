/* bf16.c (bindings): core.bf16, the bf16 matrix products of runtime/bf16.h.
 *
 *   core.bf16.kernel([choice]) -> name ("onednn", "emulated", "none"), reason when "none";
 *       choice "auto" | "emulate" | "off" chooses again first (as MOONBERT_BF16 does)
 *   core.bf16.bench(m, n, k, reps, what) -> mean seconds, best seconds per product
 *       C[m,n] = A[m,k] W[n,k]^T as a linear layer multiplies, what = "bf16" (the process's
 *       kernel, operands converted beforehand, its primitive created in the warm-up) or
 *       "sgemm" (fp32 cblas_sgemm on the same operands); timed in C
 *
 * The model's precision is model:set_precision (bindings/distilbert.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/bf16.h"
#include "../runtime/rng.h"
#include "../runtime/tensor.h"
#include "luamb.h"

static int b_kernel(lua_State *L) {
    if (!lua_isnoneornil(L, 1)) {
        mb_error err = {0};
        if (mb_bf16_kernel_set(luaL_checkstring(L, 1), &err) != MB_OK) return luaL_argerror(L, 1, err.msg);
    }
    const char *why;
    mb_bf16_kernel k = mb_bf16_kernel_get(&why);
    lua_pushstring(L, mb_bf16_kernel_name(k));
    if (k == MB_BF16_NONE) lua_pushstring(L, why);
    else lua_pushnil(L);
    return 2;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int b_bench(lua_State *L) {
    lua_Integer m = luaL_checkinteger(L, 1), n = luaL_checkinteger(L, 2), k = luaL_checkinteger(L, 3);
    lua_Integer reps = luaL_checkinteger(L, 4);
    const char *what = luaL_checkstring(L, 5);
    if (m < 1 || n < 1 || k < 1 || m > 65536 || n > 65536 || k > 65536) return luaL_argerror(L, 1, "sizes must be 1..65536");
    if (reps < 1) return luaL_argerror(L, 4, "reps must be >= 1");
    int bf16 = !strcmp(what, "bf16");
    if (!bf16 && strcmp(what, "sgemm"))
        return luaL_argerror(L, 5, lua_pushfstring(L, "'bf16' or 'sgemm' expected, got '%s'", what));
    const char *why;
    mb_bf16_kernel kern = mb_bf16_kernel_get(&why);
    if (bf16 && kern == MB_BF16_NONE) return luaL_error(L, "bench: no bf16 kernel here (%s)", why);
    size_t na = (size_t)(m * k), nb = (size_t)(k * n), nc = (size_t)(m * n);
    float *A = malloc(na * 4), *B = malloc(nb * 4), *C = malloc(nc * 4);
    uint16_t *A16 = malloc(na * 2), *B16 = malloc(nb * 2);
    if (!A || !B || !C || !A16 || !B16) {
        free(A), free(B), free(C), free(A16), free(B16);
        return luaL_error(L, "bench: out of memory");
    }
    mb_rng rng;
    mb_rng_seed(&rng, 1);
    for (size_t i = 0; i < na; i++) A[i] = mb_rng_uniform_f32(&rng) - 0.5f;
    for (size_t i = 0; i < nb; i++) B[i] = mb_rng_uniform_f32(&rng) - 0.5f;
    mb_f32_to_bf16_n(A16, A, (long)na);
    mb_f32_to_bf16_n(B16, B, (long)nb);
    double total = 0, best = INFINITY;
    mb_error err = {0};
    mb_status rc = MB_OK;
    for (lua_Integer r = -1; r < reps && rc == MB_OK; r++) { /* r = -1: the warm-up */
        double t0 = now();
        if (bf16)
            rc = mb_gemm_bf16_with(kern, 0, 1, (int)m, (int)n, (int)k, 1.0f, A16, (int)k, B16, (int)k, 0.0f, C,
                                   (int)n, &err);
        else
            mb_sgemm(0, 1, (int)m, (int)n, (int)k, 1.0f, A, (int)k, B, (int)k, 0.0f, C, (int)n);
        double s = now() - t0;
        if (r >= 0) {
            total += s;
            best = s < best ? s : best;
        }
    }
    free(A), free(B), free(C), free(A16), free(B16);
    if (rc != MB_OK) return mb_lua_raise(L, &err);
    lua_pushnumber(L, total / (double)reps);
    lua_pushnumber(L, best);
    return 2;
}

MB_LUA_MODULE(bf16) {
    static const luaL_Reg fns[] = {{"kernel", b_kernel}, {"bench", b_bench}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
