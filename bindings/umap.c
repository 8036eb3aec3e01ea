/* umap.c (bindings): core.umap, the Lua face of runtime/umap.h and pca.h.
 *
 *   fit_transform(X [, opts]) -> Y float32 [N, n_components], info table
 *   trustworthiness(X, Y [, opts]) -> number
 *   pca(X, k) -> scores [N,k], components [k,D], explained_variance [k]
 *   make_blobs(n, d, centers [, opts]) -> X float32 [n,d], labels int32 [n] (0-based ids)
 *   clock() -> monotonic wall-clock seconds (for benchmarks: os.clock counts CPU time of all threads)
 * X may be a float32 tensor or a nested table of numbers. Options tables are
 * checked for unknown keys so that a typo ("n_neighbours") is an error, not a
 * silently ignored setting.
 */
#include <string.h>
#include <time.h>

#include "luamb.h"
#include "../runtime/knn.h"
#include "../runtime/pca.h"
#include "../runtime/metrics.h"
#include "../runtime/synthetic.h"
#include "../runtime/umap.h"

/* A contiguous float32 2-D tensor from arg (a tensor or a nested table),
   pushed on the stack so that the collector owns it even if a later check
   raises. */
static mb_tensor *check_matrix(lua_State *L, int arg) {
    mb_tensor *src = mb_lua_testtensor(L, arg);
    mb_tensor *t;
    mb_error err;
    if (src && src->dtype == MB_FLOAT32) t = mb_tensor_contiguous(src, &err); /* a view when already contiguous */
    else t = mb_lua_totensor(L, arg, MB_FLOAT32);
    if (!t) mb_lua_argraise(L, arg, &err);
    mb_lua_pushtensor(L, t, &err);
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 1) {
        char b[96];
        mb_shape_str(t->ndim, t->shape, b, sizeof b);
        luaL_argerror(L, arg, lua_pushfstring(L, "non-empty 2-D matrix [N,D] expected, got shape %s", b));
    }
    return t;
}

/* Raise if the options table at arg has a key not in allowed (NULL-terminated). */
static void check_keys(lua_State *L, int arg, const char *const *allowed) {
    if (lua_isnoneornil(L, arg)) return;
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, arg)) {
        lua_pop(L, 1);
        int ok = 0;
        if (lua_type(L, -1) == LUA_TSTRING)
            for (const char *const *k = allowed; *k; k++) ok |= strcmp(*k, lua_tostring(L, -1)) == 0;
        if (!ok) {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (const char *const *k = allowed; *k; k++) {
                luaL_addstring(&b, *k);
                if (k[1]) luaL_addstring(&b, ", ");
            }
            luaL_pushresult(&b);
            luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s' (known: %s)",
                                                  lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : luaL_typename(L, -2),
                                                  lua_tostring(L, -1)));
        }
    }
}

static int opt_bool_or_auto(lua_State *L, int arg, const char *key, int def) {
    if (lua_type(L, arg) != LUA_TTABLE) return def;
    lua_getfield(L, arg, key);
    int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static int l_fit_transform(lua_State *L) {
    static const char *const keys[] = {"n_neighbors", "n_components", "min_dist", "spread", "metric", "n_epochs",
                                       "learning_rate", "negative_sample_rate", "repulsion_strength",
                                       "local_connectivity", "set_op_mix_ratio", "init", "seed", "verbose", NULL};
    check_keys(L, 2, keys);
    mb_umap_options o;
    mb_umap_default_options(&o);
    mb_error err;
    o.n_neighbors = (int)mb_lua_optfield_int(L, 2, "n_neighbors", o.n_neighbors);
    o.n_components = (int)mb_lua_optfield_int(L, 2, "n_components", o.n_components);
    o.min_dist = mb_lua_optfield_num(L, 2, "min_dist", o.min_dist);
    o.spread = mb_lua_optfield_num(L, 2, "spread", o.spread);
    o.n_epochs = (int)mb_lua_optfield_int(L, 2, "n_epochs", 0);
    o.learning_rate = mb_lua_optfield_num(L, 2, "learning_rate", o.learning_rate);
    o.negative_sample_rate = (int)mb_lua_optfield_int(L, 2, "negative_sample_rate", o.negative_sample_rate);
    o.repulsion_strength = mb_lua_optfield_num(L, 2, "repulsion_strength", o.repulsion_strength);
    o.local_connectivity = mb_lua_optfield_num(L, 2, "local_connectivity", o.local_connectivity);
    o.set_op_mix_ratio = mb_lua_optfield_num(L, 2, "set_op_mix_ratio", o.set_op_mix_ratio);
    o.seed = (uint64_t)mb_lua_optfield_int(L, 2, "seed", (lua_Integer)o.seed);
    o.verbose = opt_bool_or_auto(L, 2, "verbose", -1);
    if (mb_metric_from_name(mb_lua_optfield_str(L, 2, "metric", "cosine"), &o.metric, &err) != MB_OK)
        mb_lua_argraise(L, 2, &err);
    if (mb_umap_init_from_name(mb_lua_optfield_str(L, 2, "init", "spectral"), &o.init, &err) != MB_OK)
        mb_lua_argraise(L, 2, &err);
    if (lua_type(L, 2) == LUA_TTABLE) { /* n_epochs given but not positive: say so rather than use the default */
        lua_getfield(L, 2, "n_epochs");
        int given = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (given && o.n_epochs < 1) luaL_argerror(L, 2, "n_epochs must be a positive integer");
    }

    mb_tensor *X = check_matrix(L, 1);
    int64_t N = X->shape[0], D = X->shape[1];
    if (o.n_components < 1 || o.n_components >= N) {
        return luaL_argerror(L, 2, lua_pushfstring(L, "n_components (%d) must be between 1 and N-1 (%d)", o.n_components, (int)(N - 1)));
    }
    int64_t shape[2] = {N, o.n_components};
    mb_tensor *Y = mb_tensor_empty(MB_FLOAT32, 2, shape, &err);
    if (!Y) return mb_lua_raise(L, &err);
    mb_umap_info info;
    mb_status st = mb_umap_fit_transform(mb_tensor_f32(X), N, D, &o, mb_tensor_f32(Y), &info, &err);
    if (st != MB_OK) {
        mb_tensor_free(Y);
        if (st == MB_ERR_ARG) return mb_lua_argraise(L, 2, &err);
        if (st == MB_ERR_NUMERIC || st == MB_ERR_SHAPE) return mb_lua_argraise(L, 1, &err);
        return mb_lua_raise(L, &err);
    }
    mb_lua_pushtensor(L, Y, &err);
    lua_createtable(L, 0, 12);
    lua_pushnumber(L, info.seconds_knn); lua_setfield(L, -2, "seconds_knn");
    lua_pushnumber(L, info.seconds_graph); lua_setfield(L, -2, "seconds_graph");
    lua_pushnumber(L, info.seconds_init); lua_setfield(L, -2, "seconds_init");
    lua_pushnumber(L, info.seconds_layout); lua_setfield(L, -2, "seconds_layout");
    lua_pushnumber(L, info.seconds_total); lua_setfield(L, -2, "seconds_total");
    lua_pushnumber(L, info.a); lua_setfield(L, -2, "a");
    lua_pushnumber(L, info.b); lua_setfield(L, -2, "b");
    lua_pushinteger(L, info.n_epochs); lua_setfield(L, -2, "n_epochs");
    lua_pushinteger(L, (lua_Integer)info.n_edges); lua_setfield(L, -2, "n_edges");
    lua_pushinteger(L, info.graph_components); lua_setfield(L, -2, "graph_components");
    lua_pushstring(L, mb_umap_init_name(info.init_used)); lua_setfield(L, -2, "init");
    lua_pushnumber(L, info.spectral_residual); lua_setfield(L, -2, "spectral_residual");
    return 2;
}

static int l_trustworthiness(lua_State *L) {
    static const char *const keys[] = {"n_neighbors", "metric", NULL};
    check_keys(L, 3, keys);
    int k = (int)mb_lua_optfield_int(L, 3, "n_neighbors", 5);
    mb_metric metric;
    mb_error err;
    if (mb_metric_from_name(mb_lua_optfield_str(L, 3, "metric", "euclidean"), &metric, &err) != MB_OK)
        mb_lua_argraise(L, 3, &err);
    mb_tensor *X = check_matrix(L, 1);
    mb_tensor *Y = check_matrix(L, 2);
    if (Y->shape[0] != X->shape[0])
        return luaL_argerror(L, 2, lua_pushfstring(L, "Y has %d rows but X has %d", (int)Y->shape[0], (int)X->shape[0]));
    double t;
    mb_status st = mb_trustworthiness(mb_tensor_f32(X), X->shape[0], X->shape[1], mb_tensor_f32(Y), Y->shape[1], k,
                                      metric, &t, &err);
    if (st == MB_ERR_ARG) return mb_lua_argraise(L, 3, &err);
    if (st != MB_OK) return mb_lua_raise(L, &err);
    lua_pushnumber(L, t);
    return 1;
}

static int l_pca(lua_State *L) {
    lua_Integer k = luaL_optinteger(L, 2, 2);
    mb_tensor *X = check_matrix(L, 1);
    int64_t N = X->shape[0], D = X->shape[1];
    int64_t small = N < D ? N : D;
    if (k < 1 || k > small)
        return luaL_argerror(L, 2, lua_pushfstring(L, "k (%d) must be between 1 and min(N, D) = %d", (int)k, (int)small));
    mb_error err;
    int64_t s1[2] = {N, k}, s2[2] = {k, D}, s3[1] = {k};
    mb_tensor *S = mb_tensor_empty(MB_FLOAT32, 2, s1, &err);
    mb_tensor *C = S ? mb_tensor_empty(MB_FLOAT32, 2, s2, &err) : NULL;
    mb_tensor *V = C ? mb_tensor_empty(MB_FLOAT32, 1, s3, &err) : NULL;
    mb_status st = V ? mb_pca(mb_tensor_f32(X), N, D, (int)k, mb_tensor_f32(S), mb_tensor_f32(C), mb_tensor_f32(V), &err)
                     : MB_ERR_NOMEM;
    if (st != MB_OK) {
        mb_tensor_free(S); mb_tensor_free(C); mb_tensor_free(V);
        return mb_lua_raise(L, &err);
    }
    mb_lua_pushtensor(L, S, &err);
    mb_lua_pushtensor(L, C, &err);
    mb_lua_pushtensor(L, V, &err);
    return 3;
}

static int l_make_blobs(lua_State *L) {
    static const char *const keys[] = {"seed", "cluster_std", "center_box", NULL};
    lua_Integer n = luaL_checkinteger(L, 1), d = luaL_checkinteger(L, 2), c = luaL_optinteger(L, 3, 3);
    check_keys(L, 4, keys);
    if (n < 1) return luaL_argerror(L, 1, "n must be positive");
    if (d < 1) return luaL_argerror(L, 2, "d must be positive");
    if (c < 1 || c > n) return luaL_argerror(L, 3, "centers must be between 1 and n");
    uint64_t seed = (uint64_t)mb_lua_optfield_int(L, 4, "seed", 0);
    double std = mb_lua_optfield_num(L, 4, "cluster_std", 1.0);
    double box = mb_lua_optfield_num(L, 4, "center_box", 1.0);
    mb_error err;
    int64_t sx[2] = {n, d}, sl[1] = {n};
    mb_tensor *X = mb_tensor_empty(MB_FLOAT32, 2, sx, &err);
    if (!X) return mb_lua_raise(L, &err);
    mb_tensor *lab = mb_tensor_empty(MB_INT32, 1, sl, &err);
    if (!lab) { mb_tensor_free(X); return mb_lua_raise(L, &err); }
    if (mb_make_blobs(n, d, (int)c, box, std, seed, mb_tensor_f32(X), mb_tensor_i32(lab), &err) != MB_OK) {
        mb_tensor_free(X); mb_tensor_free(lab);
        return mb_lua_argraise(L, 4, &err);
    }
    mb_lua_pushtensor(L, X, &err);
    mb_lua_pushtensor(L, lab, &err);
    return 2;
}

static int l_clock(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + 1e-9 * (lua_Number)ts.tv_nsec);
    return 1;
}

MB_LUA_MODULE(umap) {
    static const luaL_Reg fns[] = {
        {"fit_transform", l_fit_transform},
        {"trustworthiness", l_trustworthiness},
        {"pca", l_pca},
        {"make_blobs", l_make_blobs},
        {"clock", l_clock},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
