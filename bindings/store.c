/* store.c (bindings): the results store for Lua, core.store.
 *
 * Two userdata types (store_impl.h):
 *   moonbert.Store  an open store (runtime/store.h); queries return plain tables.
 *                   This file: the module's functions and the Store's methods.
 *   moonbert.Run    one run being logged: bindings/store_run.c.
 * bindings/moonbert/store.lua adds the Lua-side methods (start_run gathering
 * git and script information, with_run) to the same method tables.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "luamb.h"
#include "store_impl.h"
#include "../runtime/sha256.h"
#include "../runtime/store.h"

static lstore *check_store_ud(lua_State *L, int i) { return luaL_checkudata(L, i, STORE_MT); }

static mb_store *check_store(lua_State *L, int i) {
    lstore *ls = check_store_ud(L, i);
    if (!ls->s) luaL_error(L, "results store is closed");
    return ls->s;
}

static int64_t check_run_id(lua_State *L, int i) {
    lua_Integer id = luaL_checkinteger(L, i);
    if (id <= 0) luaL_argerror(L, i, "run id must be a positive integer");
    return (int64_t)id;
}

/* ---- values ------------------------------------------------------------- */

static void push_value(lua_State *L, const mb_value *v) {
    switch (v->type) {
    case MB_VALUE_INT: lua_pushinteger(L, (lua_Integer)v->i); break;
    case MB_VALUE_REAL: lua_pushnumber(L, v->r); break;
    case MB_VALUE_TEXT: lua_pushstring(L, v->s ? v->s : ""); break;
    default: lua_pushnil(L); break;
    }
}

/* ---- records as tables -------------------------------------------------- */

static void set_str(lua_State *L, const char *k, const char *v) {
    if (!v) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, int64_t v) {
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

static void push_run_record(lua_State *L, const mb_run_record *r) {
    lua_createtable(L, 0, 20);
    set_int(L, "id", r->id);
    set_str(L, "experiment", r->experiment);
    set_str(L, "name", r->name);
    set_str(L, "status", r->status);
    set_str(L, "error", r->error);
    set_num(L, "start_time", r->start_time);
    if (r->end_time > 0) set_num(L, "end_time", r->end_time);
    if (r->heartbeat > 0) set_num(L, "heartbeat", r->heartbeat);
    if (r->has_seed) set_int(L, "seed", r->seed);
    set_str(L, "host", r->host);
    if (r->pid > 0) set_int(L, "pid", r->pid);
    set_str(L, "git_commit", r->git_commit);
    if (r->git_dirty >= 0) {
        lua_pushboolean(L, r->git_dirty);
        lua_setfield(L, -2, "git_dirty");
    }
    set_str(L, "script_path", r->script_path);
    set_str(L, "script_hash", r->script_hash);
    set_str(L, "dataset_hash", r->dataset_hash);
    set_str(L, "model_hash", r->model_hash);
    set_str(L, "device", r->device);
    set_str(L, "uuid", r->uuid);
    if (r->has_pruned_rung) set_int(L, "pruned_rung", r->pruned_rung);
}

static void push_metric(lua_State *L, const mb_metric *m) {
    lua_createtable(L, 0, 6);
    set_str(L, "key", m->key);
    set_num(L, "value", m->value);
    if (m->has_step) set_int(L, "step", m->step);
    if (m->has_epoch) set_num(L, "epoch", m->epoch);
    set_str(L, "split", m->split);
    set_num(L, "time", m->time);
}

/* Visitors: each appends to (or sets in) the table on top of the stack. */
static int append_run(const mb_run_record *r, void *ctx) {
    lua_State *L = ctx;
    push_run_record(L, r);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

static int set_param(const char *key, const mb_value *v, void *ctx) {
    lua_State *L = ctx;
    push_value(L, v);
    lua_setfield(L, -2, key);
    return 0;
}

static int set_tag(const char *key, const char *value, void *ctx) {
    lua_State *L = ctx;
    lua_pushstring(L, value ? value : "");
    lua_setfield(L, -2, key);
    return 0;
}

static int append_metric(const mb_metric *m, void *ctx) {
    lua_State *L = ctx;
    push_metric(L, m);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

static int set_metric(const mb_metric *m, void *ctx) {
    lua_State *L = ctx;
    push_metric(L, m);
    lua_setfield(L, -2, m->key);
    return 0;
}

static int append_confusion(const mb_confusion *c, void *ctx) {
    lua_State *L = ctx;
    lua_createtable(L, 0, 5);
    set_str(L, "split", c->split);
    if (c->has_epoch) set_num(L, "epoch", c->epoch);
    set_num(L, "time", c->time);
    lua_createtable(L, c->n_labels, 0);
    for (int i = 0; i < c->n_labels; i++) {
        lua_pushstring(L, c->labels[i] ? c->labels[i] : "");
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "labels");
    lua_createtable(L, c->n_rows, 0);
    for (int i = 0; i < c->n_rows; i++) {
        lua_createtable(L, c->n_cols, 0);
        for (int j = 0; j < c->n_cols; j++) {
            double x = c->matrix[(size_t)i * c->n_cols + j];
            if (x == floor(x) && fabs(x) < 9007199254740992.0) lua_pushinteger(L, (lua_Integer)x);
            else lua_pushnumber(L, x);
            lua_rawseti(L, -2, j + 1);
        }
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "matrix");
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

static int append_prediction(const char *split, const mb_prediction *p, void *ctx) {
    lua_State *L = ctx;
    lua_createtable(L, 0, 6);
    set_str(L, "split", split);
    set_int(L, "index", p->index);
    if (p->has_label) set_int(L, "label", p->label);
    set_int(L, "predicted", p->predicted);
    if (p->has_loss) set_num(L, "loss", p->loss);
    if (p->probs) {
        lua_createtable(L, p->n_probs, 0);
        for (int k = 0; k < p->n_probs; k++) {
            lua_pushnumber(L, p->probs[k]);
            lua_rawseti(L, -2, k + 1);
        }
        lua_setfield(L, -2, "probs");
    }
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

static int append_artifact(const char *kind, const char *path, const char *hash, double time, void *ctx) {
    lua_State *L = ctx;
    lua_createtable(L, 0, 4);
    set_str(L, "kind", kind);
    set_str(L, "path", path);
    set_str(L, "hash", hash);
    set_num(L, "time", time);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

static int append_reaped(int64_t run, const char *reason, void *ctx) {
    lua_State *L = ctx;
    lua_createtable(L, 0, 2);
    set_int(L, "id", run);
    set_str(L, "reason", reason);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

static void reap_visitor(int64_t run, const char *reason, void *ctx) { append_reaped(run, reason, ctx); }

static int check_status_name(lua_State *L, int arg, const char *status) {
    static const char *const ok[] = {"running", "completed", "failed", "killed", "pruned", "interrupted", NULL};
    for (int i = 0; ok[i]; i++)
        if (strcmp(status, ok[i]) == 0) return 1;
    return luaL_argerror(L, arg, lua_pushfstring(L, "status must be running, completed, failed, killed, pruned or "
                                                    "interrupted, got '%s'", status));
}

/* ---- module functions ---------------------------------------------------- */

/* core.store.open(path, {create=, busy_timeout=, heartbeat_interval=}) -> store | nil, message */
static int l_open(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    mb_store_options o;
    mb_store_default_options(&o);
    o.create = mb_lua_optfield_bool(L, 2, "create", o.create);
    o.busy_timeout_s = mb_lua_optfield_num(L, 2, "busy_timeout", o.busy_timeout_s);
    o.heartbeat_interval_s = mb_lua_optfield_num(L, 2, "heartbeat_interval", o.heartbeat_interval_s);
    o.retry_timeout_s = mb_lua_optfield_num(L, 2, "retry_timeout", o.retry_timeout_s);
    lstore *ls = lua_newuserdatauv(L, sizeof *ls, 1);
    ls->s = NULL;
    luaL_setmetatable(L, STORE_MT);
    /* User value 1: the store's runs, weak keys (a run's own __gc handles a run
       that is dropped while its store stays open). */
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setiuservalue(L, -2, 1);
    mb_error err = {0};
    ls->s = mb_store_open(path, &o, &err);
    if (!ls->s) {
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        return 2;
    }
    return 1;
}

static int l_now(lua_State *L) {
    lua_pushnumber(L, mb_store_now());
    return 1;
}

static int l_sha256(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char hex[MB_SHA256_HEX_LEN + 1];
    mb_sha256_hex(s, n, hex);
    lua_pushstring(L, hex);
    return 1;
}

/* sha256_file(path) -> hex | nil, message */
static int l_sha256_file(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char hex[MB_SHA256_HEX_LEN + 1];
    mb_error err = {0};
    if (mb_sha256_file(path, hex, &err) != MB_OK) {
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        return 2;
    }
    lua_pushstring(L, hex);
    return 1;
}

/* ---- Store methods --------------------------------------------------------- */

/* close / __close(store, err) / __gc: runs of this store that nobody ended
   are failed first (with the error unwinding a <close> scope when there is
   one), so that closing the store never leaves a run looking alive. */
static int store_close(lua_State *L) {
    lstore *ls = check_store_ud(L, 1);
    if (!ls->s) return 0;
    const char *why = lua_isnoneornil(L, 2) || lua_type(L, 2) == LUA_TUSERDATA
                          ? "the results store was closed before the run was ended"
                          : luaL_tolstring(L, 2, NULL);
    if (lua_getiuservalue(L, 1, 1) == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            lrun *r = luaL_testudata(L, -2, RUN_MT);
            if (r && !r->ended) {
                int changed;
                mb_error err = {0};
                r->ended = 1;
                mb_store_fail(ls->s, r->id, why, &changed, &err);
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    mb_store_close(ls->s);
    ls->s = NULL;
    return 0;
}

static int store_is_closed(lua_State *L) {
    lua_pushboolean(L, check_store_ud(L, 1)->s == NULL);
    return 1;
}

static int store_tostring(lua_State *L) {
    lstore *ls = check_store_ud(L, 1);
    if (ls->s) lua_pushfstring(L, "moonbert.Store (%s)", mb_store_path(ls->s));
    else lua_pushliteral(L, "moonbert.Store (closed)");
    return 1;
}

static int store_path(lua_State *L) {
    lua_pushstring(L, mb_store_path(check_store(L, 1)));
    return 1;
}

/* store:is_server() -> true for a PostgreSQL store */
static int store_is_server(lua_State *L) {
    lua_pushboolean(L, mb_store_is_server(check_store(L, 1)));
    return 1;
}

/* store:reconnects() -> times the connection to the server was lost and made again */
static int store_reconnects(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mb_store_reconnects(check_store(L, 1)));
    return 1;
}

static int store_schema_version(lua_State *L) {
    lua_pushinteger(L, mb_store_user_version(check_store(L, 1)));
    return 1;
}

/* store:integrity_check() -> true | false, report */
static int store_integrity_check(lua_State *L) {
    mb_error err = {0};
    if (mb_store_integrity_check(check_store(L, 1), &err) == MB_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_pushstring(L, err.msg);
    return 2;
}

/* store:_start_run{experiment=, name=, seed=, git_commit=, git_dirty=, script_path=,
   script_hash=, dataset_hash=, model_hash=, device=} -> Run (the low-level step of start_run) */
static int store_start_run_raw(lua_State *L) {
    mb_store *s = check_store(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    mb_run_start r = {0};
    r.experiment = mb_lua_optfield_str(L, 2, "experiment", NULL);
    if (!r.experiment || !*r.experiment) luaL_argerror(L, 2, "field 'experiment' (a non-empty string) is required");
    r.name = mb_lua_optfield_str(L, 2, "name", NULL);
    lua_getfield(L, 2, "seed");
    if (!lua_isnil(L, -1)) {
        int ok;
        r.seed = (int64_t)lua_tointegerx(L, -1, &ok);
        if (!ok) luaL_argerror(L, 2, "field 'seed' must be an integer");
        r.has_seed = 1;
    }
    lua_pop(L, 1);
    r.git_commit = mb_lua_optfield_str(L, 2, "git_commit", NULL);
    lua_getfield(L, 2, "git_dirty");
    r.git_dirty = lua_isnil(L, -1) ? -1 : lua_toboolean(L, -1);
    lua_pop(L, 1);
    r.script_path = mb_lua_optfield_str(L, 2, "script_path", NULL);
    r.script_hash = mb_lua_optfield_str(L, 2, "script_hash", NULL);
    r.dataset_hash = mb_lua_optfield_str(L, 2, "dataset_hash", NULL);
    r.model_hash = mb_lua_optfield_str(L, 2, "model_hash", NULL);
    r.device = mb_lua_optfield_str(L, 2, "device", NULL);
    mb_error err = {0};
    int64_t id;
    if (mb_store_start_run(s, &r, &id, &err) != MB_OK) return mb_lua_raise(L, &err);
    store_push_run(L, 1, id);
    return 1;
}

/* store:reap{stale_after=60} -> { {id=, reason=}, ... } of runs marked killed */
static int store_reap(lua_State *L) {
    mb_store *s = check_store(L, 1);
    double stale = mb_lua_optfield_num(L, 2, "stale_after", 60.0);
    if (!(stale > 0)) luaL_argerror(L, 2, "field 'stale_after' must be positive (seconds)");
    lua_newtable(L);
    mb_error err = {0};
    if (mb_store_reap(s, stale, reap_visitor, L, NULL, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 1;
}

/* store:runs{experiment=, status=} -> array of run records in id order */
static int store_runs(lua_State *L) {
    mb_store *s = check_store(L, 1);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    mb_run_filter f = {mb_lua_optfield_str(L, 2, "experiment", NULL), mb_lua_optfield_str(L, 2, "status", NULL)};
    if (f.status) check_status_name(L, 2, f.status);
    lua_newtable(L);
    mb_error err = {0};
    if (mb_store_runs(s, &f, append_run, L, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 1;
}

/* store:delete_run(id): the run and all its rows (not its files: results gc) */
static int store_delete_run(lua_State *L) {
    mb_store *s = check_store(L, 1);
    int64_t id = check_run_id(L, 2);
    mb_error err = {0};
    if (mb_store_delete_run(s, id, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

/* The run id at i: an integer id, or a run's UUID looked up in the store.
   Returns 0 with the "no run" message pushed when no run has that UUID. */
static int64_t check_run_ref(lua_State *L, mb_store *s, int i) {
    if (lua_type(L, i) == LUA_TSTRING && !lua_isnumber(L, i)) {
        int64_t id = 0;
        mb_error err = {0};
        if (mb_store_find_uuid(s, lua_tostring(L, i), &id, &err) != MB_OK) {
            if (err.code != MB_ERR_RANGE) mb_lua_raise(L, &err);
            lua_pushstring(L, err.msg);
            return 0;
        }
        return id;
    }
    return check_run_id(L, i);
}

/* store:get_run(id or uuid) -> record | nil, "no run N in PATH" */
static int store_get_run(lua_State *L) {
    mb_store *s = check_store(L, 1);
    int64_t id = check_run_ref(L, s, 2);
    if (id == 0) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    lua_newtable(L);
    mb_error err = {0};
    if (mb_store_get_run(s, id, append_run, L, &err) != MB_OK) {
        if (err.code != MB_ERR_RANGE) return mb_lua_raise(L, &err);
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        return 2;
    }
    lua_rawgeti(L, -1, 1);
    return 1;
}

static int store_params(lua_State *L) {
    mb_store *s = check_store(L, 1);
    int64_t id = check_run_id(L, 2);
    lua_newtable(L);
    mb_error err = {0};
    if (mb_store_params(s, id, set_param, L, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 1;
}

static int store_tags(lua_State *L) {
    mb_store *s = check_store(L, 1);
    int64_t id = check_run_id(L, 2);
    lua_newtable(L);
    mb_error err = {0};
    if (mb_store_tags(s, id, set_tag, L, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 1;
}

/* store:metrics(run_id [, key]) -> array of {key=, value=, step=, epoch=, split=, time=} in logging order */
static int store_metrics(lua_State *L) {
    mb_store *s = check_store(L, 1);
    int64_t id = check_run_id(L, 2);
    const char *key = luaL_optstring(L, 3, NULL);
    lua_newtable(L);
    mb_error err = {0};
    if (mb_store_metrics(s, id, key, append_metric, L, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 1;
}

/* store:final_metrics(run_id) -> {key = last point} */
static int store_final_metrics(lua_State *L) {
    mb_store *s = check_store(L, 1);
    int64_t id = check_run_id(L, 2);
    lua_newtable(L);
    mb_error err = {0};
    if (mb_store_final_metrics(s, id, set_metric, L, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 1;
}

/* store:best{experiment=, metric=, mode="max"|"min", status="completed"}
   -> run record with .metric and .value | nil, message */
static int store_best(lua_State *L) {
    mb_store *s = check_store(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *experiment = mb_lua_optfield_str(L, 2, "experiment", NULL);
    const char *metric = mb_lua_optfield_str(L, 2, "metric", NULL);
    const char *mode = mb_lua_optfield_str(L, 2, "mode", "max");
    const char *status = mb_lua_optfield_str(L, 2, "status", "completed");
    if (!experiment) luaL_argerror(L, 2, "field 'experiment' is required");
    if (!metric) luaL_argerror(L, 2, "field 'metric' is required");
    if (strcmp(mode, "max") != 0 && strcmp(mode, "min") != 0)
        luaL_argerror(L, 2, lua_pushfstring(L, "field 'mode' must be 'max' or 'min', got '%s'", mode));
    check_status_name(L, 2, status);
    int64_t id;
    double value;
    mb_error err = {0};
    if (mb_store_best(s, experiment, metric, strcmp(mode, "max") == 0, status, &id, &value, &err) != MB_OK) {
        if (err.code != MB_ERR_RANGE) return mb_lua_raise(L, &err);
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        return 2;
    }
    lua_newtable(L);
    if (mb_store_get_run(s, id, append_run, L, &err) != MB_OK) return mb_lua_raise(L, &err);
    lua_rawgeti(L, -1, 1);
    set_str(L, "metric", metric);
    set_num(L, "value", value);
    return 1;
}

/* store:confusion(run_id [, split]) -> array of {split=, epoch=, labels=, matrix=, time=} */
static int store_confusion(lua_State *L) {
    mb_store *s = check_store(L, 1);
    int64_t id = check_run_id(L, 2);
    const char *split = luaL_optstring(L, 3, NULL);
    lua_newtable(L);
    mb_error err = {0};
    if (mb_store_confusions(s, id, split, append_confusion, L, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 1;
}

/* store:predictions(run_id [, split [, {by_loss=false, limit=}]]) -> array of rows */
static int store_predictions(lua_State *L) {
    mb_store *s = check_store(L, 1);
    int64_t id = check_run_id(L, 2);
    const char *split = luaL_optstring(L, 3, NULL);
    if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
    int by_loss = mb_lua_optfield_bool(L, 4, "by_loss", 0);
    lua_Integer limit = mb_lua_optfield_int(L, 4, "limit", 0);
    lua_newtable(L);
    mb_error err = {0};
    if (mb_store_predictions(s, id, split, by_loss, (int64_t)limit, append_prediction, L, &err) != MB_OK)
        return mb_lua_raise(L, &err);
    return 1;
}

static int append_event(const mb_run_event *e, void *ctx) {
    lua_State *L = ctx;
    lua_createtable(L, 0, 5);
    set_str(L, "kind", e->kind);
    set_num(L, "time", e->time);
    set_str(L, "host", e->host);
    if (e->pid > 0) set_int(L, "pid", e->pid);
    set_str(L, "message", e->message);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

/* store:run_events(run_id) -> array of {kind="interrupted"|"resumed", time=, host=, pid=, message=} */
static int store_run_events(lua_State *L) {
    mb_store *s = check_store(L, 1);
    int64_t id = check_run_id(L, 2);
    lua_newtable(L);
    mb_error err = {0};
    if (mb_store_run_events(s, id, append_event, L, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 1;
}

/* store:resume_run(id) -> Run: an interrupted (or killed) run running again,
   owned by this process, logged to as usual and ended with finish/fail. */
static int store_resume_run(lua_State *L) {
    mb_store *s = check_store(L, 1);
    int64_t id = check_run_id(L, 2);
    mb_error err = {0};
    if (mb_store_resume(s, id, &err) != MB_OK) return mb_lua_raise(L, &err);
    store_push_run(L, 1, id);
    return 1;
}

/* store:copy_run(id, dest_store) -> id in dest, copied (false: dest already had
   the run's UUID). The run and all it logged, in one transaction of dest. */
static int store_copy_run(lua_State *L) {
    mb_store *s = check_store(L, 1);
    int64_t id = check_run_id(L, 2);
    mb_store *dst = check_store(L, 3);
    int64_t new_id = 0;
    int copied = 0;
    mb_error err = {0};
    if (mb_store_copy_run(s, id, dst, &new_id, &copied, &err) != MB_OK) return mb_lua_raise(L, &err);
    lua_pushinteger(L, (lua_Integer)new_id);
    lua_pushboolean(L, copied);
    return 2;
}

static int store_artifacts(lua_State *L) {
    mb_store *s = check_store(L, 1);
    int64_t id = check_run_id(L, 2);
    lua_newtable(L);
    mb_error err = {0};
    if (mb_store_artifacts(s, id, append_artifact, L, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 1;
}

/* ---- registration ------------------------------------------------------------ */

static const luaL_Reg store_methods[] = {
    {"close", store_close},
    {"is_closed", store_is_closed},
    {"path", store_path},
    {"schema_version", store_schema_version},
    {"is_server", store_is_server},
    {"reconnects", store_reconnects},
    {"integrity_check", store_integrity_check},
    {"_start_run", store_start_run_raw},
    {"reap", store_reap},
    {"runs", store_runs},
    {"get_run", store_get_run},
    {"delete_run", store_delete_run},
    {"params", store_params},
    {"tags", store_tags},
    {"metrics", store_metrics},
    {"final_metrics", store_final_metrics},
    {"best", store_best},
    {"confusion", store_confusion},
    {"predictions", store_predictions},
    {"artifacts", store_artifacts},
    {"run_events", store_run_events},
    {"resume_run", store_resume_run},
    {"copy_run", store_copy_run},
    {NULL, NULL},
};

static const luaL_Reg store_meta[] = {
    {"__gc", store_close},
    {"__close", store_close},
    {"__tostring", store_tostring},
    {NULL, NULL},
};

MB_LUA_MODULE(store) {
    mb_lua_newclass(L, STORE_MT, store_methods, store_meta);
    store_run_register(L);

    lua_newtable(L);
    lua_pushcfunction(L, l_open);
    lua_setfield(L, -2, "open");
    lua_pushcfunction(L, l_now);
    lua_setfield(L, -2, "now");
    lua_pushcfunction(L, l_sha256);
    lua_setfield(L, -2, "sha256");
    lua_pushcfunction(L, l_sha256_file);
    lua_setfield(L, -2, "sha256_file");
    lua_pushinteger(L, MB_STORE_SCHEMA_VERSION);
    lua_setfield(L, -2, "schema_version");
    /* The method tables, so that moonbert/store.lua can add Lua methods. */
    luaL_getmetatable(L, STORE_MT);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, -3, "store_methods");
    lua_pop(L, 1);
    luaL_getmetatable(L, RUN_MT);
    lua_getfield(L, -1, "methods");
    lua_setfield(L, -3, "run_methods");
    lua_pop(L, 1);
    return 1;
}

