/* data.c: Lua binding of the text data parsers (runtime/textdata.h), the
 * data hash, seeded permutations and batch packing; moonbert.core.data.
 *
 * The user-facing API (splits, label names, batches) is Lua:
 * bindings/moonbert/data.lua. These functions are its fast paths:
 *   read(path, format, opts)          -> {text=, label=, line=, skipped=, skip_messages=}
 *   parse(string, format, opts, name) -> the same for text in memory
 *   hash(texts, labels)               -> 16 hex digits (FNV-1a 64)
 *   permutation(n, seed)              -> a shuffled {1..n} (the runtime's xoshiro256**)
 * format is "text", "csv" or "jsonl"; labels come back as strings.
 */
#include <stdio.h>
#include <string.h>

#include "luamb.h"
#include "../runtime/rng.h"
#include "../runtime/textdata.h"

static mb_textdata_format check_format(lua_State *L, int arg) {
    static const char *const names[] = {"text", "csv", "jsonl", NULL};
    return (mb_textdata_format)luaL_checkoption(L, arg, NULL, names);
}

/* A column given by name (string) or 1-based number. */
static void opt_column(lua_State *L, int arg, const char *key, const char **name, int *index) {
    if (lua_type(L, arg) != LUA_TTABLE) return;
    lua_getfield(L, arg, key);
    if (lua_type(L, -1) == LUA_TSTRING) {
        *name = lua_tostring(L, -1); /* kept alive by the options table */
    } else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 && lua_tointeger(L, -1) <= 1 << 20) {
        *index = (int)lua_tointeger(L, -1);
    } else if (!lua_isnil(L, -1)) {
        luaL_argerror(L, arg, lua_pushfstring(L, "field '%s' must be a column name or a column number >= 1", key));
    }
    lua_pop(L, 1);
}

static void check_opts(lua_State *L, int arg, mb_textdata_opts *o) {
    memset(o, 0, sizeof *o);
    if (!lua_isnoneornil(L, arg)) luaL_checktype(L, arg, LUA_TTABLE);
    o->sep = mb_lua_optfield_str(L, arg, "sep", NULL);
    if (o->sep && !o->sep[0]) luaL_argerror(L, arg, "field 'sep' must not be empty");
    o->label_first = mb_lua_optfield_bool(L, arg, "label_first", 0);
    const char *delim = mb_lua_optfield_str(L, arg, "delimiter", NULL);
    if (delim) {
        if (strlen(delim) != 1) luaL_argerror(L, arg, "field 'delimiter' must be one character");
        o->delimiter = delim[0];
    }
    o->header = mb_lua_optfield_bool(L, arg, "header", 0);
    opt_column(L, arg, "text_column", &o->text_column, &o->text_index);
    opt_column(L, arg, "label_column", &o->label_column, &o->label_index);
    o->text_field = mb_lua_optfield_str(L, arg, "text_field", NULL);
    o->label_field = mb_lua_optfield_str(L, arg, "label_field", NULL);
    const char *on_error = mb_lua_optfield_str(L, arg, "on_error", "raise");
    if (strcmp(on_error, "skip") == 0) o->skip_bad = 1;
    else if (strcmp(on_error, "raise") != 0 && strcmp(on_error, "error") != 0)
        luaL_argerror(L, arg, lua_pushfstring(L, "field 'on_error' must be \"raise\" or \"skip\", got \"%s\"", on_error));
}

/* Push the records as parallel arrays (positions 1-based). */
static void push_records(lua_State *L, const mb_textdata *d) {
    lua_createtable(L, 0, 5);
    lua_createtable(L, (int)d->n, 0);
    for (int64_t i = 0; i < d->n; i++) {
        lua_pushlstring(L, mb_textdata_text(d, i), d->text_len[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "text");
    lua_createtable(L, (int)d->n, 0);
    for (int64_t i = 0; i < d->n; i++) {
        lua_pushlstring(L, mb_textdata_label(d, i), d->label_len[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "label");
    lua_createtable(L, (int)d->n, 0);
    for (int64_t i = 0; i < d->n; i++) {
        lua_pushinteger(L, d->line[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "line");
    lua_pushinteger(L, d->skipped);
    lua_setfield(L, -2, "skipped");
    lua_createtable(L, d->n_skip_msgs, 0);
    for (int i = 0; i < d->n_skip_msgs; i++) {
        lua_pushstring(L, d->skip_msgs[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "skip_messages");
}

/* The records live in a userdata until pushed, so that a Lua error (out of
   memory while pushing) cannot leak them: __gc frees them. */
#define TEXTDATA_MT "moonbert.TextData"

static int textdata_gc(lua_State *L) {
    mb_textdata_free(luaL_checkudata(L, 1, TEXTDATA_MT)); /* idempotent: free leaves it empty */
    return 0;
}

static mb_textdata *new_textdata(lua_State *L) {
    mb_textdata *d = lua_newuserdatauv(L, sizeof *d, 0);
    mb_textdata_init(d);
    luaL_setmetatable(L, TEXTDATA_MT);
    return d;
}

/* Push the records (the userdata is on top of the stack), or raise err. */
static int finish(lua_State *L, mb_textdata *d, mb_status st, const mb_error *err) {
    if (st != MB_OK) {
        mb_textdata_free(d);
        return mb_lua_raise(L, err);
    }
    push_records(L, d);
    mb_textdata_free(d);
    return 1;
}

static int data_read(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    mb_textdata_format fmt = check_format(L, 2);
    mb_textdata_opts o;
    check_opts(L, 3, &o);
    mb_textdata *d = new_textdata(L);
    mb_error err = {0};
    mb_status st = mb_textdata_read(d, fmt, path, &o, &err);
    return finish(L, d, st, &err);
}

static int data_parse(lua_State *L) {
    size_t len;
    const char *src = luaL_checklstring(L, 1, &len);
    mb_textdata_format fmt = check_format(L, 2);
    mb_textdata_opts o;
    check_opts(L, 3, &o);
    const char *name = luaL_optstring(L, 4, "<string>");
    mb_textdata *d = new_textdata(L);
    mb_error err = {0};
    mb_status st;
    switch (fmt) {
    case MB_TEXTDATA_CSV: st = mb_textdata_parse_csv(d, name, src, len, &o, &err); break;
    case MB_TEXTDATA_JSONL: st = mb_textdata_parse_jsonl(d, name, src, len, &o, &err); break;
    default: st = mb_textdata_parse_sep(d, name, src, len, &o, &err); break;
    }
    return finish(L, d, st, &err);
}

/* FNV-1a 64 over every (text, label id) pair in order, with separators so
   that ("ab", 1) and ("a", "b1") differ. */
static int data_hash(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    if (luaL_len(L, 2) != n)
        return luaL_error(L, "hash: %d texts but %d labels", (int)n, (int)luaL_len(L, 2));
    uint64_t h = MB_FNV1A64_INIT;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (!s) return luaL_error(L, "hash: text %d is not a string", (int)i);
        h = mb_fnv1a64(h, s, len);
        lua_pop(L, 1);
        lua_rawgeti(L, 2, i);
        int ok;
        lua_Integer label = lua_tointegerx(L, -1, &ok);
        if (!ok) return luaL_error(L, "hash: label %d is not an integer", (int)i);
        lua_pop(L, 1);
        char tail[32];
        int tl = snprintf(tail, sizeof tail, "\x1f%lld\x1e", (long long)label);
        h = mb_fnv1a64(h, tail, (size_t)tl);
    }
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    lua_pushstring(L, hex);
    return 1;
}

static int data_permutation(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    lua_Integer seed = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0 && n <= ((lua_Integer)1 << 31), 1, "n must be in 0..2^31");
    int64_t *a = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *a, 0); /* freed by the GC */
    for (lua_Integer i = 0; i < n; i++) a[i] = i + 1;
    mb_rng rng;
    mb_rng_seed(&rng, (uint64_t)seed);
    mb_rng_shuffle_i64(&rng, a, n);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 0; i < n; i++) {
        lua_pushinteger(L, a[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

MB_LUA_MODULE(data) {
    static const luaL_Reg fns[] = {
        {"read", data_read},
        {"parse", data_parse},
        {"hash", data_hash},
        {"permutation", data_permutation},
        {NULL, NULL},
    };
    static const luaL_Reg meta[] = {{"__gc", textdata_gc}, {NULL, NULL}};
    mb_lua_newclass(L, TEXTDATA_MT, NULL, meta);
    luaL_newlib(L, fns);
    return 1;
}
