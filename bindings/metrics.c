/* metrics.c: Lua bindings of the classification metrics (core.metrics).
 *
 *   core.metrics.accuracy(y_true, y_pred)                       -> number
 *   core.metrics.unique_labels(y_true, y_pred)                  -> {sorted distinct labels}
 *   core.metrics.confusion_matrix(y_true, y_pred, labels, normalize) -> tensor [L, L]
 *   core.metrics.prf(y_true, y_pred, labels, average, beta, pos_label, zero_division)
 *       -> precision, recall, fscore, support, ill_precision, ill_recall
 *          (numbers, or 1-based tables aligned with labels when average is "none")
 *   core.metrics.cross_entropy(scores [n, K], y, from_probs)    -> float32 tensor [n]
 * Labels: Lua tables of integers or int32 tensors (0-based ids as values). The
 * scikit-learn-style surface (warnings, classification_report) is moonbert/metrics.lua.
 */
#include <stdlib.h>
#include <string.h>

#include "luamb.h"
#include "../runtime/metrics.h"

static const int32_t *push_labels(lua_State *L, int arg, int64_t *n) {
    mb_tensor *t = mb_lua_totensor(L, arg, MB_INT32);
    mb_lua_pushtensor(L, t, NULL);
    if (t->ndim > 1) luaL_argerror(L, arg, "labels must be a list or a 1-D int32 tensor");
    if (!mb_tensor_is_contiguous(t)) {
        mb_error err;
        mb_tensor *c = mb_tensor_contiguous(t, &err);
        if (!c) mb_lua_argraise(L, arg, &err);
        mb_lua_pushtensor(L, c, NULL);
        t = c;
    }
    *n = mb_tensor_numel(t);
    return mb_tensor_i32(t);
}

/* y_true at 1, y_pred at 2, same length. */
static int64_t push_pair(lua_State *L, const int32_t **yt, const int32_t **yp) {
    int64_t n1, n2;
    *yt = push_labels(L, 1, &n1);
    *yp = push_labels(L, 2, &n2);
    if (n1 != n2)
        luaL_argerror(L, 2, lua_pushfstring(L, "found inconsistent numbers of samples: y_true has %d, y_pred has %d",
                                            (int)n1, (int)n2));
    return n1;
}

/* labels at arg (nil: the sorted union of both label lists); pushes a userdata holding them. */
static const int32_t *push_label_set(lua_State *L, int arg, const int32_t *yt, const int32_t *yp, int64_t n, int *L_out) {
    if (lua_isnoneornil(L, arg)) {
        int32_t *u;
        int k;
        mb_error err;
        if (mb_unique_labels(yt, yp, n, &u, &k, &err)) mb_lua_raise(L, &err);
        int32_t *box = lua_newuserdatauv(L, sizeof(int32_t) * (size_t)(k + 1), 0);
        memcpy(box, u, sizeof(int32_t) * (size_t)k);
        free(u);
        *L_out = k;
        return box;
    }
    int64_t k;
    const int32_t *lab = push_labels(L, arg, &k);
    *L_out = (int)k;
    return lab;
}

static int l_accuracy(lua_State *L) {
    lua_settop(L, 2); /* values pushed below stay above the arguments */
    const int32_t *yt, *yp;
    int64_t n = push_pair(L, &yt, &yp);
    lua_pushnumber(L, mb_accuracy(yt, yp, n));
    return 1;
}

static int l_unique_labels(lua_State *L) {
    lua_settop(L, 3); /* values pushed below stay above the arguments */
    const int32_t *yt, *yp;
    int64_t n = push_pair(L, &yt, &yp);
    int k;
    const int32_t *u = push_label_set(L, 3, yt, yp, n, &k);
    lua_createtable(L, k, 0);
    for (int i = 0; i < k; i++) {
        lua_pushinteger(L, u[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int64_t *push_cm(lua_State *L, const int32_t *yt, const int32_t *yp, int64_t n, const int32_t *labels, int k) {
    if (k < 1) luaL_error(L, "no labels to count (empty input and no labels given)");
    int64_t *cm = lua_newuserdatauv(L, sizeof(int64_t) * (size_t)k * (size_t)k, 0);
    mb_error err;
    if (mb_confusion_matrix(yt, yp, n, labels, k, cm, &err)) mb_lua_argraise(L, 3, &err);
    return cm;
}

static int l_confusion_matrix(lua_State *L) {
    lua_settop(L, 4); /* values pushed below stay above the arguments */
    const int32_t *yt, *yp;
    int64_t n = push_pair(L, &yt, &yp);
    int k;
    const int32_t *labels = push_label_set(L, 3, yt, yp, n, &k);
    const char *norm = luaL_optstring(L, 4, "none");
    mb_cm_normalize how = MB_CM_NONE;
    if (strcmp(norm, "true") == 0) how = MB_CM_TRUE;
    else if (strcmp(norm, "pred") == 0) how = MB_CM_PRED;
    else if (strcmp(norm, "all") == 0) how = MB_CM_ALL;
    else if (strcmp(norm, "none") != 0)
        luaL_argerror(L, 4, lua_pushfstring(L, "normalize must be nil, \"true\", \"pred\" or \"all\", got \"%s\"", norm));
    int64_t *cm = push_cm(L, yt, yp, n, labels, k);
    int64_t shape[2] = {k, k};
    mb_error err;
    mb_tensor *t = mb_tensor_empty(how == MB_CM_NONE ? MB_INT32 : MB_FLOAT32, 2, shape, &err);
    if (!t) return mb_lua_raise(L, &err);
    if (how == MB_CM_NONE) {
        for (int i = 0; i < k * k; i++) mb_tensor_i32(t)[i] = (int32_t)cm[i];
    } else {
        double *out = lua_newuserdatauv(L, sizeof(double) * (size_t)k * (size_t)k, 0);
        mb_confusion_normalize(cm, k, how, out);
        for (int i = 0; i < k * k; i++) mb_tensor_f32(t)[i] = (float)out[i];
        lua_pop(L, 1);
    }
    mb_lua_pushtensor(L, t, NULL);
    lua_createtable(L, k, 0);
    for (int i = 0; i < k; i++) {
        lua_pushinteger(L, labels[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 2;
}

static void push_values(lua_State *L, const double *v, int k, int as_table) {
    if (!as_table) {
        lua_pushnumber(L, v[0]);
        return;
    }
    lua_createtable(L, k, 0);
    for (int i = 0; i < k; i++) {
        lua_pushnumber(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

/* prf(y_true, y_pred, labels, average, beta, pos_label, zero_division) */
static int l_prf(lua_State *L) {
    lua_settop(L, 7); /* values pushed below stay above the arguments */
    const int32_t *yt, *yp;
    int64_t n = push_pair(L, &yt, &yp);
    int k;
    const int32_t *labels = push_label_set(L, 3, yt, yp, n, &k);
    static const char *const names[] = {"none", "binary", "micro", "macro", "weighted", NULL};
    static const mb_average avgs[] = {MB_AVERAGE_NONE, MB_AVERAGE_BINARY, MB_AVERAGE_MICRO, MB_AVERAGE_MACRO,
                                      MB_AVERAGE_WEIGHTED};
    mb_average avg = avgs[luaL_checkoption(L, 4, "none", names)];
    double beta = luaL_optnumber(L, 5, 1.0);
    lua_Integer pos_label = luaL_optinteger(L, 6, 1);
    double zd = luaL_optnumber(L, 7, 0.0);
    if (zd != 0 && zd != 1) luaL_argerror(L, 7, "zero_division must be \"warn\", 0 or 1");
    int pos_index = -1;
    if (avg == MB_AVERAGE_BINARY) {
        if (k > 2)
            return luaL_error(L, "target is multiclass but average=\"binary\"; choose average nil, \"micro\", "
                                 "\"macro\" or \"weighted\"");
        for (int i = 0; i < k; i++)
            if (labels[i] == pos_label) pos_index = i;
        if (pos_index < 0)
            return luaL_error(L, "pos_label=%d is not a valid label", (int)pos_label);
    }
    /* counts over the requested labels followed by the other present ones */
    int32_t *u;
    int nu;
    mb_error err;
    if (mb_unique_labels(yt, yp, n, &u, &nu, &err)) return mb_lua_raise(L, &err);
    int32_t *all = lua_newuserdatauv(L, sizeof(int32_t) * (size_t)(k + nu + 1), 0);
    memcpy(all, labels, sizeof(int32_t) * (size_t)k);
    int ka = k;
    for (int i = 0; i < nu; i++) {
        int found = 0;
        for (int j = 0; j < k && !found; j++) found = labels[j] == u[i];
        if (!found) all[ka++] = u[i];
    }
    free(u);
    int64_t *cm = push_cm(L, yt, yp, n, all, ka);
    int m = avg == MB_AVERAGE_NONE ? k : 1;
    double *vals = lua_newuserdatauv(L, sizeof(double) * 3 * (size_t)m, 0);
    int64_t *support = lua_newuserdatauv(L, sizeof(int64_t) * (size_t)m, 0);
    int ill;
    if (mb_precision_recall_fscore(cm, ka, k, beta, avg, pos_index, zd, vals, vals + m, vals + 2 * m, support, &ill,
                                   &err))
        return mb_lua_raise(L, &err);
    int as_table = avg == MB_AVERAGE_NONE;
    push_values(L, vals, m, as_table);
    push_values(L, vals + m, m, as_table);
    push_values(L, vals + 2 * m, m, as_table);
    if (as_table) {
        lua_createtable(L, m, 0);
        for (int i = 0; i < m; i++) {
            lua_pushinteger(L, support[i]);
            lua_rawseti(L, -2, i + 1);
        }
    } else {
        lua_pushinteger(L, support[0]);
    }
    lua_pushboolean(L, ill & MB_ILL_PRECISION);
    lua_pushboolean(L, ill & MB_ILL_RECALL);
    return 6;
}

static int l_cross_entropy(lua_State *L) {
    lua_settop(L, 3); /* values pushed below stay above the arguments */
    mb_tensor *s = mb_lua_checktensor(L, 1);
    if (s->ndim != 2) luaL_argerror(L, 1, "scores must be a 2-D tensor [n, num_labels]");
    s = mb_lua_totensor(L, 1, MB_FLOAT32);
    mb_lua_pushtensor(L, s, NULL);
    if (!mb_tensor_is_contiguous(s)) {
        mb_error err;
        s = mb_tensor_contiguous(s, &err);
        mb_lua_pushtensor(L, s, &err);
    }
    int64_t n;
    const int32_t *y = push_labels(L, 2, &n);
    if (n != s->shape[0])
        luaL_argerror(L, 2, lua_pushfstring(L, "%d labels for %d rows of scores", (int)n, (int)s->shape[0]));
    int64_t shape[1] = {n};
    mb_error err;
    mb_tensor *out = mb_tensor_empty(MB_FLOAT32, 1, shape, &err);
    if (!out) return mb_lua_raise(L, &err);
    mb_lua_pushtensor(L, out, NULL);
    if (mb_cross_entropy(mb_tensor_f32(s), n, (int)s->shape[1], y, lua_toboolean(L, 3), mb_tensor_f32(out), &err))
        return mb_lua_argraise(L, 2, &err);
    return 1;
}

MB_LUA_MODULE(metrics) {
    static const luaL_Reg funcs[] = {{"accuracy", l_accuracy},         {"unique_labels", l_unique_labels},
                                     {"confusion_matrix", l_confusion_matrix}, {"prf", l_prf},
                                     {"cross_entropy", l_cross_entropy}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}
