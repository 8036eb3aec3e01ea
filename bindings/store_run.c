/* store_run.c (bindings): moonbert.Run, one run being logged into a results
 * store (bindings/store.c makes the store and its module, core.store). A Run
 * holds its store (user value 1) and its id; run.id and run.store read as
 * fields. An unfinished run is never left "running": __close finishes it (or
 * fails it with the error that is unwinding the scope), __gc fails it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "luamb.h"
#include "store_impl.h"
#include "../runtime/sha256.h"
#include "../runtime/store.h"

static lrun *check_run(lua_State *L, int i) { return luaL_checkudata(L, i, RUN_MT); }

/* The store of run i if it is still open, else NULL (finalizers must not raise). */
static mb_store *run_store_or_null(lua_State *L, int i) {
    lua_getiuservalue(L, i, 1);
    lstore *ls = luaL_testudata(L, -1, STORE_MT);
    lua_pop(L, 1); /* the run keeps the store alive */
    return ls ? ls->s : NULL;
}

/* The open store behind a run (raises when it was closed). */
static mb_store *run_store(lua_State *L, int i) {
    mb_store *s = run_store_or_null(L, i);
    if (!s) luaL_error(L, "the results store of this run is closed");
    return s;
}

/* A table (or an object with :totable(), e.g. a moonbert.Tensor) at i as a
   plain table, replacing it on the stack. */
static void to_plain_table(lua_State *L, int i, int arg, const char *what) {
    i = lua_absindex(L, i);
    if (lua_type(L, i) == LUA_TTABLE) return;
    if (lua_type(L, i) == LUA_TUSERDATA && luaL_getmetafield(L, i, "__index") != LUA_TNIL) {
        lua_pop(L, 1);
        if (lua_getfield(L, i, "totable") == LUA_TFUNCTION) {
            lua_pushvalue(L, i);
            lua_call(L, 1, 1);
            if (lua_type(L, -1) == LUA_TTABLE) {
                lua_replace(L, i);
                return;
            }
        }
        lua_pop(L, 1);
    }
    luaL_argerror(L, arg, lua_pushfstring(L, "%s: table or tensor expected, got %s", what, luaL_typename(L, i)));
}

/* ---- values ------------------------------------------------------------- */

/* A Lua value as JSON (tables as arrays when they are sequences, else objects
   with sorted keys, so that the same table always gives the same text). */
static json_t *lua_to_json(lua_State *L, int i, int depth) {
    i = lua_absindex(L, i);
    switch (lua_type(L, i)) {
    case LUA_TBOOLEAN: return json_boolean(lua_toboolean(L, i));
    case LUA_TNUMBER:
        if (lua_isinteger(L, i)) return json_integer((json_int_t)lua_tointeger(L, i));
        return isfinite(lua_tonumber(L, i)) ? json_real(lua_tonumber(L, i)) : json_null();
    case LUA_TSTRING: return json_string(lua_tostring(L, i));
    case LUA_TTABLE: {
        if (depth > 32) return NULL;
        lua_Integer n = (lua_Integer)lua_rawlen(L, i);
        int is_array = 1;
        lua_pushnil(L);
        while (is_array && lua_next(L, i)) {
            if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || lua_tointeger(L, -2) > n) is_array = 0;
            lua_pop(L, 1);
        }
        if (!is_array) lua_pop(L, 1); /* the key lua_next left */
        json_t *out = is_array ? json_array() : json_object();
        lua_pushnil(L);
        while (lua_next(L, i)) {
            json_t *x = lua_to_json(L, -1, depth + 1);
            if (!x) {
                lua_pop(L, 2);
                json_decref(out);
                return NULL;
            }
            if (is_array) {
                json_array_set_new(out, (size_t)lua_tointeger(L, -2) - 1, x);
            } else {
                lua_pushvalue(L, -2);
                const char *k = luaL_tolstring(L, -1, NULL);
                json_object_set_new(out, k, x);
                lua_pop(L, 2);
            }
            lua_pop(L, 1);
        }
        if (is_array) { /* lua_next order is not index order: rebuild in order */
            json_decref(out);
            out = json_array();
            for (lua_Integer k = 1; k <= n; k++) {
                lua_rawgeti(L, i, k);
                json_t *x = lua_to_json(L, -1, depth + 1);
                lua_pop(L, 1);
                if (!x) { json_decref(out); return NULL; }
                json_array_append_new(out, x);
            }
        }
        return out;
    }
    default: return NULL;
    }
}

/* The param value at i: integers, reals and strings as they are, booleans as
   "true"/"false", tables as JSON text (*json must be freed). */
static void check_param_value(lua_State *L, int i, mb_value *v, char **json) {
    memset(v, 0, sizeof *v);
    *json = NULL;
    switch (lua_type(L, i)) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, i)) { v->type = MB_VALUE_INT; v->i = (int64_t)lua_tointeger(L, i); }
        else { v->type = MB_VALUE_REAL; v->r = lua_tonumber(L, i); }
        return;
    case LUA_TSTRING: v->type = MB_VALUE_TEXT; v->s = lua_tostring(L, i); return;
    case LUA_TBOOLEAN: v->type = MB_VALUE_TEXT; v->s = lua_toboolean(L, i) ? "true" : "false"; return;
    case LUA_TTABLE: {
        json_t *j = lua_to_json(L, i, 0);
        if (j) *json = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        json_decref(j);
        if (!*json) luaL_argerror(L, i, "table param holds a value JSON cannot express (function, userdata, cycle)");
        v->type = MB_VALUE_TEXT;
        v->s = *json;
        return;
    }
    default:
        luaL_argerror(L, i, lua_pushfstring(L, "number, string, boolean or table expected, got %s", luaL_typename(L, i)));
    }
}

/* ---- Run methods ---------------------------------------------------------- */

static int run_index(lua_State *L) {
    lrun *r = check_run(L, 1);
    const char *k = lua_tostring(L, 2);
    if (k && strcmp(k, "id") == 0) {
        lua_pushinteger(L, (lua_Integer)r->id);
        return 1;
    }
    if (k && strcmp(k, "store") == 0) {
        lua_getiuservalue(L, 1, 1);
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1)); /* the methods table */
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int run_tostring(lua_State *L) {
    lrun *r = check_run(L, 1);
    lua_pushfstring(L, "moonbert.Run %I%s", (LUAI_UACINT)r->id, r->ended ? " (ended)" : "");
    return 1;
}

static int run_log_param(lua_State *L) {
    lrun *r = check_run(L, 1);
    const char *key = luaL_checkstring(L, 2);
    luaL_checkany(L, 3);
    mb_store *s = run_store(L, 1);
    mb_value v;
    char *json;
    check_param_value(L, 3, &v, &json);
    mb_error err = {0};
    mb_status st = mb_store_log_param(s, r->id, key, &v, &err);
    free(json);
    if (st != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

static int run_set_tag(lua_State *L) {
    lrun *r = check_run(L, 1);
    const char *key = luaL_checkstring(L, 2);
    const char *value = luaL_tolstring(L, 3, NULL);
    mb_error err = {0};
    if (mb_store_set_tag(run_store(L, 1), r->id, key, value, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

static void read_metric_opts(lua_State *L, int arg, mb_metric *m) {
    if (lua_isnoneornil(L, arg)) return;
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_getfield(L, arg, "step");
    if (!lua_isnil(L, -1)) {
        m->has_step = 1;
        m->step = (int64_t)mb_lua_optfield_int(L, arg, "step", 0);
    }
    lua_getfield(L, arg, "epoch");
    if (!lua_isnil(L, -1)) {
        m->has_epoch = 1;
        m->epoch = mb_lua_optfield_num(L, arg, "epoch", 0);
    }
    lua_pop(L, 2);
    m->split = mb_lua_optfield_str(L, arg, "split", NULL);
}

/* run:log_metric(key, value [, {step=, epoch=, split=}]) */
static int run_log_metric(lua_State *L) {
    lrun *r = check_run(L, 1);
    mb_metric m = {0};
    m.key = luaL_checkstring(L, 2);
    m.value = luaL_checknumber(L, 3);
    read_metric_opts(L, 4, &m);
    mb_error err = {0};
    if (mb_store_log_metric(run_store(L, 1), r->id, &m, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

/* run:log_metrics({key = value, ...} [, opts]): one transaction, keys in sorted order */
static int run_log_metrics(lua_State *L) {
    lrun *r = check_run(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    mb_metric common = {0};
    read_metric_opts(L, 3, &common);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TNUMBER)
            luaL_argerror(L, 2, "table of metric name = number expected");
        n++;
        lua_pop(L, 1);
    }
    if (n == 0) return 0;
    mb_metric *m = lua_newuserdatauv(L, n * sizeof *m, 0); /* freed by the collector, even on errors */
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        m[i] = common;
        m[i].key = lua_tostring(L, -2); /* the table keeps the key alive */
        m[i].value = lua_tonumber(L, -1);
        i++;
        lua_pop(L, 1);
    }
    mb_error err = {0};
    if (mb_store_log_metrics(run_store(L, 1), r->id, m, n, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

/* run:log_confusion(split, matrix, labels [, {epoch=}]); matrix: table of rows or a tensor */
static int run_log_confusion(lua_State *L) {
    lrun *r = check_run(L, 1);
    mb_confusion c = {0};
    c.split = luaL_optstring(L, 2, NULL);
    to_plain_table(L, 3, 2, "matrix");
    if (!lua_isnoneornil(L, 4)) to_plain_table(L, 4, 3, "labels");
    if (!lua_isnoneornil(L, 5)) {
        luaL_checktype(L, 5, LUA_TTABLE);
        lua_getfield(L, 5, "epoch");
        if (!lua_isnil(L, -1)) {
            c.has_epoch = 1;
            c.epoch = mb_lua_optfield_num(L, 5, "epoch", 0);
        }
        lua_pop(L, 1);
    }
    c.n_rows = (int)lua_rawlen(L, 3);
    if (c.n_rows == 0) luaL_argerror(L, 2, "matrix is empty");
    lua_rawgeti(L, 3, 1);
    if (lua_type(L, -1) != LUA_TTABLE) luaL_argerror(L, 2, "matrix must be a table of rows");
    c.n_cols = (int)lua_rawlen(L, -1);
    lua_pop(L, 1);
    double *cells = lua_newuserdatauv(L, (size_t)c.n_rows * c.n_cols * sizeof *cells + 1, 0);
    for (int i = 0; i < c.n_rows; i++) {
        lua_rawgeti(L, 3, i + 1);
        if (lua_type(L, -1) != LUA_TTABLE || (int)lua_rawlen(L, -1) != c.n_cols)
            luaL_argerror(L, 2, lua_pushfstring(L, "row %d is not a table of %d numbers", i + 1, c.n_cols));
        for (int j = 0; j < c.n_cols; j++) {
            lua_rawgeti(L, -1, j + 1);
            int ok;
            cells[(size_t)i * c.n_cols + j] = lua_tonumberx(L, -1, &ok);
            if (!ok) luaL_argerror(L, 2, lua_pushfstring(L, "entry [%d][%d] is not a number", i + 1, j + 1));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    c.matrix = cells;
    if (lua_type(L, 4) == LUA_TTABLE) {
        c.n_labels = (int)lua_rawlen(L, 4);
        const char **names = lua_newuserdatauv(L, (size_t)(c.n_labels + 1) * sizeof *names, 0);
        lua_createtable(L, c.n_labels, 0); /* keeps converted names (numbers) alive */
        for (int i = 0; i < c.n_labels; i++) {
            lua_rawgeti(L, 4, i + 1);
            if (!lua_isstring(L, -1)) luaL_argerror(L, 3, lua_pushfstring(L, "label %d is not a string", i + 1));
            names[i] = luaL_tolstring(L, -1, NULL);
            lua_rawseti(L, -3, i + 1);
            lua_pop(L, 1);
        }
        c.labels = names;
    }
    mb_error err = {0};
    if (mb_store_log_confusion(run_store(L, 1), r->id, &c, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

/* Field k of row i of a predictions argument, rows (array of tables) or
   columns (table of arrays), pushed on the stack. */
static int push_pred_field(lua_State *L, int rows, int columnar, lua_Integer i, const char *k) {
    if (columnar) {
        lua_getfield(L, rows, k);
        if (lua_isnil(L, -1)) return LUA_TNIL;
        lua_rawgeti(L, -1, i);
        lua_remove(L, -2);
        return lua_type(L, -1);
    }
    lua_rawgeti(L, rows, i);
    if (lua_type(L, -1) != LUA_TTABLE)
        luaL_argerror(L, 3, lua_pushfstring(L, "row %I is not a table", (LUAI_UACINT)i));
    lua_getfield(L, -1, k);
    lua_remove(L, -2);
    return lua_type(L, -1);
}

static int64_t pred_int(lua_State *L, lua_Integer i, const char *k, int *present) {
    int ok = 1;
    lua_Integer v = 0;
    *present = !lua_isnil(L, -1);
    if (*present) v = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_argerror(L, 3, lua_pushfstring(L, "row %I: '%s' must be an integer", (LUAI_UACINT)i, k));
    lua_pop(L, 1);
    return (int64_t)v;
}

/* Read row i into p (probs into buf with room for cap values); returns the
   row's number of probabilities. buf NULL: only validate and count. */
static int read_prediction(lua_State *L, int rows, int columnar, lua_Integer i, mb_prediction *p, double *buf, int cap) {
    int present;
    memset(p, 0, sizeof *p);
    push_pred_field(L, rows, columnar, i, "index");
    p->index = pred_int(L, i, "index", &present);
    if (!present) p->index = (int64_t)i;
    push_pred_field(L, rows, columnar, i, "label");
    p->label = pred_int(L, i, "label", &p->has_label);
    push_pred_field(L, rows, columnar, i, "predicted");
    p->predicted = pred_int(L, i, "predicted", &present);
    if (!present) luaL_argerror(L, 3, lua_pushfstring(L, "row %I has no 'predicted' label id", (LUAI_UACINT)i));
    if (push_pred_field(L, rows, columnar, i, "loss") != LUA_TNIL) {
        int ok;
        p->loss = lua_tonumberx(L, -1, &ok);
        if (!ok) luaL_argerror(L, 3, lua_pushfstring(L, "row %I: 'loss' must be a number", (LUAI_UACINT)i));
        p->has_loss = 1;
    }
    lua_pop(L, 1);
    int n = 0;
    if (push_pred_field(L, rows, columnar, i, "probs") != LUA_TNIL) {
        to_plain_table(L, -1, 3, "probs");
        n = (int)lua_rawlen(L, -1);
        for (int k = 0; k < n; k++) {
            lua_rawgeti(L, -1, k + 1);
            int ok;
            double x = lua_tonumberx(L, -1, &ok);
            if (!ok) luaL_argerror(L, 3, lua_pushfstring(L, "row %I: probs[%d] is not a number", (LUAI_UACINT)i, k + 1));
            if (buf && k < cap) buf[k] = x;
            lua_pop(L, 1);
        }
        if (buf) {
            p->probs = buf;
            p->n_probs = n < cap ? n : cap;
        }
    }
    lua_pop(L, 1);
    return n;
}

#define PREDICTION_BATCH 2048

/* run:log_predictions(split, rows): rows is an array of {index=, label=,
   predicted=, loss=, probs=} (index defaults to the row's position), or a
   table of columns {index=, label=, predicted=, loss=, probs=} whose entries
   may be tensors. Every row is checked first; then one transaction per batch. */
static int run_log_predictions(lua_State *L) {
    lrun *r = check_run(L, 1);
    const char *split = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    mb_store *s = run_store(L, 1);
    lua_rawgeti(L, 3, 1);
    int columnar = lua_isnil(L, -1);
    lua_pop(L, 1);
    int rows = 3;
    lua_Integer n;
    if (columnar) {
        /* Plain-table copy of the columns (tensors converted once). */
        lua_newtable(L);
        rows = lua_gettop(L);
        static const char *const cols[] = {"index", "label", "predicted", "loss", "probs"};
        for (int c = 0; c < 5; c++) {
            if (lua_getfield(L, 3, cols[c]) != LUA_TNIL) {
                to_plain_table(L, -1, 3, cols[c]);
                lua_setfield(L, rows, cols[c]);
            } else {
                lua_pop(L, 1);
            }
        }
        if (lua_getfield(L, rows, "predicted") == LUA_TNIL && lua_rawlen(L, 3) == 0) {
            lua_pop(L, 1);
            return 0; /* no rows */
        }
        if (lua_isnil(L, -1)) luaL_argerror(L, 3, "rows (array of tables) or columns with 'predicted' expected");
        n = (lua_Integer)lua_rawlen(L, -1);
        lua_pop(L, 1);
    } else {
        n = (lua_Integer)lua_rawlen(L, 3);
    }
    int kmax = 0;
    mb_prediction scratch;
    for (lua_Integer i = 1; i <= n; i++) {
        int k = read_prediction(L, rows, columnar, i, &scratch, NULL, 0);
        if (k > kmax) kmax = k;
    }
    lua_Integer batch = n < PREDICTION_BATCH ? n : PREDICTION_BATCH;
    if (batch == 0) return 0;
    mb_prediction *p = lua_newuserdatauv(L, (size_t)batch * sizeof *p, 0);
    double *probs = lua_newuserdatauv(L, (size_t)batch * (kmax + 1) * sizeof *probs, 0);
    mb_error err = {0};
    for (lua_Integer start = 1; start <= n; start += batch) {
        lua_Integer count = n - start + 1 < batch ? n - start + 1 : batch;
        for (lua_Integer j = 0; j < count; j++)
            read_prediction(L, rows, columnar, start + j, &p[j], probs + j * (kmax + 1), kmax);
        if (mb_store_log_predictions(s, r->id, split, p, (size_t)count, &err) != MB_OK) return mb_lua_raise(L, &err);
    }
    return 0;
}

/* run:log_artifact(kind, path [, {hash=}]): a regular file is hashed (sha256) unless hash is given */
static int run_log_artifact(lua_State *L) {
    lrun *r = check_run(L, 1);
    const char *kind = luaL_checkstring(L, 2);
    const char *path = luaL_checkstring(L, 3);
    const char *hash = mb_lua_optfield_str(L, 4, "hash", NULL);
    char hex[MB_SHA256_HEX_LEN + 1];
    struct stat sb;
    mb_error err = {0};
    if (!hash && stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
        if (mb_sha256_file(path, hex, &err) != MB_OK) return mb_lua_raise(L, &err);
        hash = hex;
    }
    if (mb_store_log_artifact(run_store(L, 1), r->id, kind, path, hash, &err) != MB_OK) return mb_lua_raise(L, &err);
    if (hash) {
        lua_pushstring(L, hash);
        return 1;
    }
    return 0;
}

static int run_heartbeat(lua_State *L) {
    lrun *r = check_run(L, 1);
    mb_error err = {0};
    if (mb_store_heartbeat(run_store(L, 1), r->id, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

/* run:prune(rung): running -> pruned at rung (an integer >= 0) */
static int run_prune(lua_State *L) {
    lrun *r = check_run(L, 1);
    lua_Integer rung = luaL_checkinteger(L, 2);
    if (rung < 0) luaL_argerror(L, 2, "rung must be >= 0");
    mb_error err = {0};
    if (mb_store_prune(run_store(L, 1), r->id, (int64_t)rung, &err) != MB_OK) {
        if (err.code == MB_ERR_STATE) r->ended = 1;
        return mb_lua_raise(L, &err);
    }
    r->ended = 1;
    return 0;
}

/* run:finish(["completed"]) or run:finish("pruned", {rung=}): running -> that
   status; an error when the run already ended */
static int run_finish(lua_State *L) {
    lrun *r = check_run(L, 1);
    const char *status = luaL_optstring(L, 2, "completed");
    if (strcmp(status, "pruned") == 0) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "rung");
        int ok;
        lua_Integer rung = lua_tointegerx(L, -1, &ok);
        if (!ok) luaL_argerror(L, 3, "field 'rung' (an integer >= 0) is required for status 'pruned'");
        lua_settop(L, 1);
        lua_pushinteger(L, rung);
        return run_prune(L);
    }
    if (strcmp(status, "completed") != 0)
        luaL_argerror(L, 2, lua_pushfstring(L, "status must be 'completed' or 'pruned' (failed: run:fail(err)), got '%s'",
                                            status));
    mb_error err = {0};
    if (mb_store_finish(run_store(L, 1), r->id, &err) != MB_OK) {
        if (err.code == MB_ERR_STATE) r->ended = 1;
        return mb_lua_raise(L, &err);
    }
    r->ended = 1;
    return 0;
}

/* run:fail([err]) -> true when the run was marked failed, false when it had already ended */
static int run_fail(lua_State *L) {
    lrun *r = check_run(L, 1);
    const char *text = lua_isnoneornil(L, 2) ? "failed" : luaL_tolstring(L, 2, NULL);
    int changed = 0;
    mb_error err = {0};
    if (mb_store_fail(run_store(L, 1), r->id, text, &changed, &err) != MB_OK) return mb_lua_raise(L, &err);
    r->ended = 1;
    lua_pushboolean(L, changed);
    return 1;
}

/* run:interrupt([message]): running -> interrupted (to be resumed later with
   store:resume_run(id)); this Run object is done with, like after finish. */
static int run_interrupt(lua_State *L) {
    lrun *r = check_run(L, 1);
    const char *message = lua_isnoneornil(L, 2) ? NULL : luaL_tolstring(L, 2, NULL);
    mb_error err = {0};
    if (mb_store_interrupt(run_store(L, 1), r->id, message, &err) != MB_OK) return mb_lua_raise(L, &err);
    r->ended = 1;
    return 0;
}

/* run:truncate_after(step [, epoch [, prefix]]) -> rows removed: before a
   resume from the checkpoint at step, the metric rows after it (and confusion
   matrices after epoch, when given) go, so that the resumed run logs each row
   once; with prefix, only keys and splits that start with it. */
static int run_truncate_after(lua_State *L) {
    lrun *r = check_run(L, 1);
    lua_Integer step = luaL_checkinteger(L, 2);
    lua_Number epoch = luaL_optnumber(L, 3, -1);
    const char *prefix = luaL_optstring(L, 4, NULL);
    if (step < 0) return luaL_argerror(L, 2, "step must be >= 0");
    int64_t removed = 0;
    mb_error err = {0};
    if (mb_store_truncate_after(run_store(L, 1), r->id, step, epoch, prefix, &removed, &err) != MB_OK)
        return mb_lua_raise(L, &err);
    lua_pushinteger(L, (lua_Integer)removed);
    return 1;
}

static int uuid_visitor(const mb_run_record *rec, void *ctx) {
    lua_pushstring((lua_State *)ctx, rec->uuid ? rec->uuid : "");
    return 1;
}

static int status_visitor(const mb_run_record *rec, void *ctx) {
    lua_pushstring((lua_State *)ctx, rec->status);
    return 1;
}

/* One field of the run at 1 as the store has it now, pushed by visit. */
static int push_run_field(lua_State *L, mb_run_visitor visit) {
    lrun *r = check_run(L, 1);
    mb_error err = {0};
    if (mb_store_get_run(run_store(L, 1), r->id, visit, L, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 1;
}

/* run:uuid() -> the run's UUID (36 characters) */
static int run_uuid(lua_State *L) { return push_run_field(L, uuid_visitor); }

/* run:status() -> "running" | "completed" | "failed" | "killed" | "pruned" | "interrupted" */
static int run_status(lua_State *L) { return push_run_field(L, status_visitor); }

/* __close(run, err): leaving `local run <close> = ...` normally completes the
   run; leaving it by an error marks it failed with that error. */
static int run_close(lua_State *L) {
    lrun *r = check_run(L, 1);
    mb_store *s = run_store_or_null(L, 1);
    if (r->ended || !s) return 0;
    mb_error err = {0};
    r->ended = 1;
    if (lua_isnoneornil(L, 2)) {
        if (mb_store_finish(s, r->id, &err) != MB_OK && err.code != MB_ERR_STATE) return mb_lua_raise(L, &err);
    } else {
        const char *text = luaL_tolstring(L, 2, NULL);
        int changed;
        if (mb_store_fail(s, r->id, text, &changed, &err) != MB_OK) return mb_lua_raise(L, &err);
    }
    return 0;
}

/* __gc: a run nobody ended is a run whose script stopped early. */
static int run_gc(lua_State *L) {
    lrun *r = check_run(L, 1);
    mb_store *s = run_store_or_null(L, 1);
    if (r->ended || !s) return 0;
    r->ended = 1;
    int changed;
    mb_error err = {0};
    /* `moonbert run` leaves the error that stopped the script in the registry. */
    lua_getfield(L, LUA_REGISTRYINDEX, "moonbert.script_error");
    if (lua_type(L, -1) == LUA_TSTRING)
        lua_pushfstring(L, "the script stopped with an error before ending the run: %s", lua_tostring(L, -1));
    else
        lua_pushliteral(L, "the run was never ended: its script stopped (an error, or a missing run:finish()) "
                           "before run:finish() or run:fail()");
    mb_store_fail(s, r->id, lua_tostring(L, -1), &changed, &err);
    return 0;
}

/* A new Run for run id of the store at store_index (store_impl.h). */
void store_push_run(lua_State *L, int store_index, int64_t id) {
    lrun *r = lua_newuserdatauv(L, sizeof *r, 1);
    r->id = id;
    r->ended = 0;
    lua_pushvalue(L, store_index);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, RUN_MT);
    /* Remember the run in its store's weak set (see store_close). */
    if (lua_getiuservalue(L, store_index, 1) == LUA_TTABLE) {
        lua_pushvalue(L, -2);
        lua_pushboolean(L, 1);
        lua_rawset(L, -3);
    }
    lua_pop(L, 1);
}

/* ---- registration ------------------------------------------------------------ */

static const luaL_Reg run_methods[] = {
    {"log_param", run_log_param},
    {"set_tag", run_set_tag},
    {"log_metric", run_log_metric},
    {"log_metrics", run_log_metrics},
    {"log_confusion", run_log_confusion},
    {"log_predictions", run_log_predictions},
    {"log_artifact", run_log_artifact},
    {"heartbeat", run_heartbeat},
    {"finish", run_finish},
    {"prune", run_prune},
    {"fail", run_fail},
    {"interrupt", run_interrupt},
    {"truncate_after", run_truncate_after},
    {"status", run_status},
    {"uuid", run_uuid},
    {NULL, NULL},
};

static const luaL_Reg run_meta[] = {
    {"__gc", run_gc},
    {"__close", run_close},
    {"__tostring", run_tostring},
    {NULL, NULL},
};

/* The Run class: __index is a function (run.id, run.store) over the methods
   table, which the metatable keeps as "methods" (store_impl.h). */
void store_run_register(lua_State *L) {
    if (luaL_newmetatable(L, RUN_MT)) {
        luaL_setfuncs(L, run_meta, 0);
        luaL_newlib(L, run_methods);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "methods");
        lua_pushcclosure(L, run_index, 1);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}
