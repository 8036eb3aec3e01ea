/* tokenizer.c (bindings): the moonbert.Tokenizer userdata and core.tokenizer.
 *
 * core.tokenizer.load(dir) gives a tokenizer whose methods mirror Hugging
 * Face's: encode, encode_batch, lengths, decode, convert_ids_to_tokens,
 * convert_tokens_to_ids, convert_tokens_to_string, token_to_id, id_to_token,
 * special_tokens, free; attributes vocab_size, model_max_length,
 * model_input_names, do_lower_case. Token ids are the 0-based ids of the
 * vocabulary, stored as values; list positions are 1-based as in all Lua.
 * Batches are encoded by the runtime in parallel (mb_threads()) and come back
 * as int32 tensors [B,T] that own the runtime's buffers (no copy).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/tokenizer.h"
#include "luamb.h"

#define MB_TOKENIZER_MT "moonbert.Tokenizer"

typedef struct tokenizer_box {
    mb_tokenizer *tok;
    mb_tokenizer_work *work; /* scratch for single encodes (a Lua state is one thread) */
} tokenizer_box;

static mb_tokenizer *check_tok(lua_State *L) {
    tokenizer_box *b = luaL_checkudata(L, 1, MB_TOKENIZER_MT);
    if (!b->tok) luaL_argerror(L, 1, "tokenizer is freed");
    return b->tok;
}

static int m_free(lua_State *L) {
    tokenizer_box *b = luaL_checkudata(L, 1, MB_TOKENIZER_MT);
    mb_tokenizer_free(b->tok);
    mb_tokenizer_work_free(b->work);
    b->tok = NULL;
    b->work = NULL;
    return 0;
}

static void ensure_metatable(lua_State *L);

static int t_load(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    tokenizer_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->tok = NULL;
    b->work = NULL;
    ensure_metatable(L);
    luaL_setmetatable(L, MB_TOKENIZER_MT);
    mb_error err = {0};
    b->tok = mb_tokenizer_load(dir, &err);
    if (!b->tok) return mb_lua_raise(L, &err);
    b->work = mb_tokenizer_work_new();
    if (!b->work) return luaL_error(L, "tokenizer: out of memory");
    return 1;
}

/* max_length from opts (arg): truncation=false gives 0 (none); absent gives model_max_length.
   truncation: true (longest_first), false / "do_not_truncate", or a strategy name
   ("longest_first", "only_first", "only_second") into *strategy when not NULL. */
static int32_t opt_max_length_strategy(lua_State *L, int arg, const mb_tokenizer *tok, int *truncation,
                                       mb_truncation *strategy) {
    lua_Integer ml = mb_lua_optfield_int(L, arg, "max_length", 0);
    *truncation = 1;
    if (strategy) *strategy = MB_TRUNC_LONGEST_FIRST;
    if (lua_type(L, arg) == LUA_TTABLE) {
        lua_getfield(L, arg, "truncation");
        if (lua_type(L, -1) == LUA_TBOOLEAN) {
            *truncation = lua_toboolean(L, -1);
        } else if (lua_type(L, -1) == LUA_TSTRING) {
            const char *t = lua_tostring(L, -1);
            if (strcmp(t, "do_not_truncate") == 0) *truncation = 0;
            else if (strcmp(t, "longest_first") == 0) {
            } else if (strcmp(t, "only_first") == 0 && strategy) *strategy = MB_TRUNC_ONLY_FIRST;
            else if (strcmp(t, "only_second") == 0 && strategy) *strategy = MB_TRUNC_ONLY_SECOND;
            else
                luaL_argerror(L, arg, lua_pushfstring(L, "field 'truncation' must be true, false, \"longest_first\", "
                                                         "\"only_first\", \"only_second\" or \"do_not_truncate\" (got \"%s\")", t));
        } else if (!lua_isnil(L, -1)) {
            luaL_argerror(L, arg, "field 'truncation' must be a boolean or a strategy name");
        }
        lua_pop(L, 1);
    }
    if (ml < 0 || ml > INT32_MAX) luaL_argerror(L, arg, "field 'max_length' must be a positive integer");
    if (ml == 0) ml = mb_tokenizer_model_max_length(tok);
    return (int32_t)ml;
}

static int32_t opt_max_length(lua_State *L, int arg, const mb_tokenizer *tok, int *truncation) {
    return opt_max_length_strategy(L, arg, tok, truncation, NULL);
}

static void push_int_list(lua_State *L, const int32_t *v, int64_t n) {
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        lua_pushinteger(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

/* One encoding as a Lua table: input_ids, attention_mask, tokens [, token_type_ids],
   sequence_ids (0 for A, 1 for B, -1 for template tokens: HF's None) [, offsets]. */
static void push_encoding(lua_State *L, const mb_tokenizer *tok, const int32_t *ids, const int32_t *ty,
                          const int32_t *off, int64_t n, int want_offsets) {
    lua_createtable(L, 0, 6);
    push_int_list(L, ids, n);
    lua_setfield(L, -2, "input_ids");
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        lua_pushinteger(L, 1);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "attention_mask");
    if (mb_tokenizer_has_token_type_ids(tok)) {
        push_int_list(L, ty, n);
        lua_setfield(L, -2, "token_type_ids");
    }
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        size_t tl;
        const char *t = mb_tokenizer_id_to_token(tok, ids[i], &tl);
        lua_pushlstring(L, t ? t : "", t ? tl : 0);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "tokens");
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        lua_pushinteger(L, off[2 * i] < 0 ? -1 : ty[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "sequence_ids");
    if (want_offsets) {
        lua_createtable(L, (int)n, 0);
        for (int64_t i = 0; i < n; i++) {
            lua_createtable(L, 2, 0);
            lua_pushinteger(L, off[2 * i] < 0 ? 0 : off[2 * i] + 1);
            lua_rawseti(L, -2, 1);
            lua_pushinteger(L, off[2 * i] < 0 ? 0 : off[2 * i + 1]);
            lua_rawseti(L, -2, 2);
            lua_rawseti(L, -2, i + 1);
        }
        lua_setfield(L, -2, "offsets");
    }
}

/* tok:encode(text [, text_pair] [, opts]) -> {input_ids, attention_mask, tokens, sequence_ids
   [, token_type_ids] [, offsets]}; opts: max_length, truncation (default true = longest_first
   at model_max_length; false, or "only_first" / "only_second"), return_offsets (or
   return_offsets_mapping: 1-based inclusive byte spans {first, last}; {0, 0} for template tokens),
   return_overflowing_tokens with stride: a list of such tables, one per window. */
static int m_encode(lua_State *L) {
    mb_tokenizer *tok = check_tok(L);
    tokenizer_box *box = lua_touserdata(L, 1);
    size_t len, plen = 0;
    const char *text = luaL_checklstring(L, 2, &len);
    const char *pair = NULL;
    int opts = 3;
    if (lua_type(L, 3) == LUA_TSTRING) {
        pair = lua_tolstring(L, 3, &plen);
        opts = 4;
    } else if (!lua_isnoneornil(L, 3) && lua_type(L, 3) != LUA_TTABLE) {
        return luaL_typeerror(L, 3, "string (text_pair) or table (options)");
    }
    if (!lua_isnoneornil(L, opts)) luaL_checktype(L, opts, LUA_TTABLE);
    int truncation;
    mb_encode_options eo;
    eo.max_length = opt_max_length_strategy(L, opts, tok, &truncation, &eo.truncation);
    if (!truncation) eo.max_length = 0;
    lua_Integer stride = mb_lua_optfield_int(L, opts, "stride", 0);
    if (stride < 0 || stride > INT32_MAX) return luaL_argerror(L, opts, "field 'stride' must be >= 0");
    eo.stride = (int32_t)stride;
    int want_offsets = mb_lua_optfield_bool(L, opts, "return_offsets", 0) ||
                       mb_lua_optfield_bool(L, opts, "return_offsets_mapping", 0);
    mb_error err = {0};
    if (mb_lua_optfield_bool(L, opts, "return_overflowing_tokens", 0)) {
        mb_windows win;
        if (mb_tokenizer_encode_windows(tok, box->work, text, len, pair, plen, &eo, &win, &err) != MB_OK)
            return mb_lua_argraise(L, opts, &err);
        lua_createtable(L, (int)win.n, 0);
        for (int64_t i = 0; i < win.n; i++) { /* out of memory here leaks win: acceptable only then */
            int64_t a = win.start[i];
            push_encoding(L, tok, win.ids + a, win.type_ids + a, win.offsets + 2 * a, win.start[i + 1] - a, want_offsets);
            lua_rawseti(L, -2, i + 1);
        }
        mb_windows_free(&win);
        return 1;
    }
    int32_t stack_ids[512], stack_ty[512], stack_off[1024];
    int32_t *ids = stack_ids, *ty = stack_ty, *off = stack_off;
    size_t cap = 512;
    int64_t n = mb_tokenizer_encode_ex(tok, box->work, text, len, pair, plen, &eo, ids, ty, off, cap, &err);
    if (n < 0) return mb_lua_argraise(L, opts, &err);
    if ((size_t)n > cap) { /* long text without truncation: buffers owned by Lua, freed by the GC on error too */
        cap = (size_t)n;
        ids = lua_newuserdatauv(L, cap * sizeof(int32_t), 0);
        ty = lua_newuserdatauv(L, cap * sizeof(int32_t), 0);
        off = lua_newuserdatauv(L, 2 * cap * sizeof(int32_t), 0);
        n = mb_tokenizer_encode_ex(tok, box->work, text, len, pair, plen, &eo, ids, ty, off, cap, &err);
        if (n < 0) return mb_lua_raise(L, &err);
    }
    push_encoding(L, tok, ids, ty, off, n, want_offsets);
    return 1;
}

/* The strings of the list at arg: pointers stay valid while the table is on the stack. */
static int64_t collect_texts(lua_State *L, int arg, const char ***texts, size_t **lens, const char *what) {
    luaL_checktype(L, arg, LUA_TTABLE);
    int64_t n = (int64_t)luaL_len(L, arg);
    *texts = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof **texts, 0);
    *lens = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof **lens, 0);
    for (int64_t i = 0; i < n; i++) {
        int ty = lua_rawgeti(L, arg, i + 1);
        if (ty != LUA_TSTRING) {
            luaL_argerror(L, arg, lua_pushfstring(L, "%s[%d] must be a string, got %s", what, (int)(i + 1),
                                                  luaL_typename(L, -1)));
        }
        (*texts)[i] = lua_tolstring(L, -1, &(*lens)[i]);
        lua_pop(L, 1); /* the table still holds the string */
    }
    return n;
}

static void release_free(void *data, size_t nbytes, void *ctx) {
    (void)nbytes;
    (void)ctx;
    free(data);
}

/* Push a [rows, cols] int32 tensor that takes ownership of data (malloc'd). */
static void push_owned_tensor(lua_State *L, int32_t *data, int64_t rows, int64_t cols, int ndim) {
    int64_t shape[2] = {rows, cols};
    mb_error err = {0};
    mb_tensor *t = mb_tensor_wrap(MB_INT32, ndim, shape, data, release_free, NULL, &err);
    if (!t) free(data);
    mb_lua_pushtensor(L, t, &err);
}

/* tok:encode_batch(texts [, pairs] [, opts]) -> {input_ids=[B,T], attention_mask=[B,T],
   lengths=[B] (int32 tensors) [, token_type_ids]}; opts: padding "longest" (default),
   "max_length" or false (lists of lists instead of tensors), truncation (default
   true), max_length (default model_max_length). */
static int m_encode_batch(lua_State *L) {
    mb_tokenizer *tok = check_tok(L);
    lua_settop(L, 4); /* arguments keep their indices below the scratch buffers */
    const char **texts, **pairs = NULL;
    size_t *lens, *plens = NULL;
    int64_t n = collect_texts(L, 2, &texts, &lens, "texts");
    int opts = 3;
    if (lua_type(L, 3) == LUA_TTABLE && (lua_rawlen(L, 3) > 0 || (n == 0 && !lua_isnoneornil(L, 4)))) {
        int64_t m = collect_texts(L, 3, &pairs, &plens, "pairs");
        if (m != n)
            return luaL_argerror(L, 3, lua_pushfstring(L, "%d pairs for %d texts", (int)m, (int)n));
        opts = 4;
    }
    if (!lua_isnoneornil(L, opts)) luaL_checktype(L, opts, LUA_TTABLE);
    mb_batch_options o;
    int truncation;
    o.max_length = opt_max_length_strategy(L, opts, tok, &truncation, &o.strategy);
    o.truncation = truncation;
    o.padding = MB_PAD_LONGEST;
    if (lua_type(L, opts) == LUA_TTABLE) {
        lua_getfield(L, opts, "padding");
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *p = lua_tostring(L, -1);
            if (strcmp(p, "longest") == 0) o.padding = MB_PAD_LONGEST;
            else if (strcmp(p, "max_length") == 0) o.padding = MB_PAD_MAX_LENGTH;
            else if (strcmp(p, "do_not_pad") == 0) o.padding = MB_PAD_NONE;
            else
                return luaL_argerror(L, opts,
                                     lua_pushfstring(L, "padding must be \"longest\", \"max_length\" or false, got \"%s\"", p));
        } else if (lua_type(L, -1) == LUA_TBOOLEAN) {
            o.padding = lua_toboolean(L, -1) ? MB_PAD_LONGEST : MB_PAD_NONE;
        } else if (!lua_isnil(L, -1)) {
            return luaL_argerror(L, opts, "padding must be \"longest\", \"max_length\" or false");
        }
        lua_pop(L, 1);
    }
    int32_t trunc = truncation ? o.max_length : 0;
    if (o.padding == MB_PAD_NONE) { /* ragged: lists of lists, like HF without return_tensors */
        mb_tokenizer_work *w = ((tokenizer_box *)lua_touserdata(L, 1))->work;
        int has_ty = mb_tokenizer_has_token_type_ids(tok);
        lua_createtable(L, 0, 4);
        int t_res = lua_gettop(L);
        const char *fields[4] = {"input_ids", "attention_mask", "lengths", "token_type_ids"};
        for (int f = 0; f < 3 + has_ty; f++) lua_createtable(L, (int)n, 0);
        int t_in = t_res + 1, t_mask = t_res + 2, t_len = t_res + 3, t_ty = t_res + 4;
        size_t cap = 1024;
        int32_t *ids = lua_newuserdatauv(L, cap * sizeof(int32_t), 0);
        int32_t *ty = lua_newuserdatauv(L, cap * sizeof(int32_t), 0);
        for (int64_t i = 0; i < n; i++) {
            mb_error err = {0};
            mb_encode_options eo = {trunc, o.strategy, 0};
            int64_t r = mb_tokenizer_encode_ex(tok, w, texts[i], lens[i], pairs ? pairs[i] : NULL, pairs ? plens[i] : 0,
                                               &eo, ids, ty, NULL, cap, &err);
            if (r >= 0 && (size_t)r > cap) { /* grow (the old buffers stay on the stack until return) */
                cap = (size_t)r;
                ids = lua_newuserdatauv(L, cap * sizeof(int32_t), 0);
                ty = lua_newuserdatauv(L, cap * sizeof(int32_t), 0);
                r = mb_tokenizer_encode_ex(tok, w, texts[i], lens[i], pairs ? pairs[i] : NULL, pairs ? plens[i] : 0,
                                           &eo, ids, ty, NULL, cap, &err);
            }
            if (r < 0) return mb_lua_argraise(L, opts, &err);
            push_int_list(L, ids, r);
            lua_rawseti(L, t_in, i + 1);
            lua_createtable(L, (int)r, 0);
            for (int64_t k = 0; k < r; k++) {
                lua_pushinteger(L, 1);
                lua_rawseti(L, -2, k + 1);
            }
            lua_rawseti(L, t_mask, i + 1);
            lua_pushinteger(L, r);
            lua_rawseti(L, t_len, i + 1);
            if (has_ty) {
                push_int_list(L, ty, r);
                lua_rawseti(L, t_ty, i + 1);
            }
        }
        for (int f = 0; f < 3 + has_ty; f++) {
            lua_pushvalue(L, t_res + 1 + f);
            lua_setfield(L, t_res, fields[f]);
        }
        lua_settop(L, t_res);
        return 1;
    }
    mb_batch_encoding b;
    mb_error err = {0};
    if (mb_tokenizer_encode_batch(tok, n, texts, lens, pairs, plens, &o, &b, &err)) return mb_lua_argraise(L, opts, &err);
    lua_createtable(L, 0, 4);
    /* Each push takes one buffer; clear it from b first so that an error in a
       later push leaves nothing to free twice. */
    int32_t *ids = b.input_ids, *mask = b.attention_mask, *ty = b.token_type_ids, *lengths = b.lengths;
    b.input_ids = b.attention_mask = b.token_type_ids = b.lengths = NULL;
    if (!mb_tokenizer_has_token_type_ids(tok)) {
        free(ty);
        ty = NULL;
    }
    /* Lua errors (out of memory) in a push would leak the rest: acceptable only in OOM;
       push the largest first. */
    push_owned_tensor(L, ids, b.batch, b.seq_len, 2);
    lua_setfield(L, -2, "input_ids");
    push_owned_tensor(L, mask, b.batch, b.seq_len, 2);
    lua_setfield(L, -2, "attention_mask");
    if (ty) {
        push_owned_tensor(L, ty, b.batch, b.seq_len, 2);
        lua_setfield(L, -2, "token_type_ids");
    }
    push_owned_tensor(L, lengths, b.batch, 0, 1);
    lua_setfield(L, -2, "lengths");
    return 1;
}

/* tok:lengths(texts [, opts]) -> list of id counts (with [CLS]/[SEP], truncated at
   max_length unless truncation=false). */
static int m_lengths(lua_State *L) {
    mb_tokenizer *tok = check_tok(L);
    lua_settop(L, 3);
    const char **texts;
    size_t *lens;
    int64_t n = collect_texts(L, 2, &texts, &lens, "texts");
    if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    int truncation;
    int32_t max_length = opt_max_length(L, 3, tok, &truncation);
    int32_t *out = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof(int32_t), 0);
    mb_error err = {0};
    if (mb_tokenizer_lengths(tok, n, texts, lens, truncation ? max_length : 0, out, &err))
        return mb_lua_argraise(L, 3, &err);
    push_int_list(L, out, n);
    return 1;
}

/* Ids from a Lua list or a 1-D int32 tensor into a Lua-owned buffer; *n set. */
static int32_t *check_ids(lua_State *L, int arg, size_t *n) {
    mb_tensor *t = mb_lua_testtensor(L, arg);
    if (t) {
        if (t->ndim != 1) luaL_argerror(L, arg, "a 1-D tensor of ids expected (select a row of a batch)");
        *n = (size_t)t->shape[0];
        int32_t *ids = lua_newuserdatauv(L, (*n + 1) * sizeof(int32_t), 0);
        for (size_t i = 0; i < *n; i++) {
            int64_t idx = (int64_t)i;
            double v;
            mb_error err = {0};
            if (mb_tensor_get(t, &idx, &v, &err)) mb_lua_argraise(L, arg, &err);
            ids[i] = (int32_t)v;
        }
        return ids;
    }
    if (lua_type(L, arg) != LUA_TTABLE) luaL_typeerror(L, arg, "table or tensor of ids");
    *n = (size_t)luaL_len(L, arg);
    int32_t *ids = lua_newuserdatauv(L, (*n + 1) * sizeof(int32_t), 0);
    for (size_t i = 0; i < *n; i++) {
        lua_rawgeti(L, arg, (lua_Integer)i + 1);
        int ok;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        if (!ok || v < INT32_MIN || v > INT32_MAX)
            luaL_argerror(L, arg, lua_pushfstring(L, "ids[%d] must be an integer id, got %s", (int)i + 1,
                                                  luaL_typename(L, -1)));
        ids[i] = (int32_t)v;
        lua_pop(L, 1);
    }
    return ids;
}

/* tok:decode(ids [, {skip_special_tokens=false}]) -> string */
static int m_decode(lua_State *L) {
    mb_tokenizer *tok = check_tok(L);
    lua_settop(L, 3);
    size_t n;
    int32_t *ids = check_ids(L, 2, &n);
    int skip = mb_lua_optfield_bool(L, 3, "skip_special_tokens", 0);
    mb_error err = {0};
    size_t len;
    char *s = mb_tokenizer_decode(tok, ids, n, skip, &len, &err);
    if (!s) return mb_lua_argraise(L, 2, &err);
    lua_pushlstring(L, s, len);
    free(s);
    return 1;
}

/* tok:convert_ids_to_tokens(ids or id) -> list of strings (or one string) */
static int m_ids_to_tokens(lua_State *L) {
    mb_tokenizer *tok = check_tok(L);
    if (lua_isinteger(L, 2)) {
        lua_Integer id = lua_tointeger(L, 2);
        size_t len;
        const char *t = id >= INT32_MIN && id <= INT32_MAX ? mb_tokenizer_id_to_token(tok, (int32_t)id, &len) : NULL;
        if (!t) return luaL_argerror(L, 2, lua_pushfstring(L, "id %I is outside the vocabulary (0..%d)", id,
                                                           (int)mb_tokenizer_vocab_size(tok) - 1));
        lua_pushlstring(L, t, len);
        return 1;
    }
    size_t n;
    int32_t *ids = check_ids(L, 2, &n);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *t = mb_tokenizer_id_to_token(tok, ids[i], &len);
        if (!t)
            return luaL_argerror(L, 2, lua_pushfstring(L, "ids[%d] = %d is outside the vocabulary (0..%d)", (int)i + 1,
                                                       (int)ids[i], (int)mb_tokenizer_vocab_size(tok) - 1));
        lua_pushlstring(L, t, len);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* tok:convert_tokens_to_ids(tokens or token) -> ids (unknown tokens give the unk id, as HF) */
static int m_tokens_to_ids(lua_State *L) {
    mb_tokenizer *tok = check_tok(L);
    int32_t unk = mb_tokenizer_special_ids(tok).unk;
    if (lua_type(L, 2) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, 2, &len);
        int32_t id = mb_tokenizer_token_to_id(tok, s, len);
        lua_pushinteger(L, id >= 0 ? id : unk);
        return 1;
    }
    const char **toks;
    size_t *lens;
    int64_t n = collect_texts(L, 2, &toks, &lens, "tokens");
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        int32_t id = mb_tokenizer_token_to_id(tok, toks[i], lens[i]);
        lua_pushinteger(L, id >= 0 ? id : unk);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* tok:convert_tokens_to_string(tokens) -> string */
static int m_tokens_to_string(lua_State *L) {
    mb_tokenizer *tok = check_tok(L);
    const char **toks;
    size_t *lens;
    int64_t n = collect_texts(L, 2, &toks, &lens, "tokens");
    mb_error err = {0};
    size_t len;
    char *s = mb_tokenizer_tokens_to_string(tok, toks, lens, (size_t)n, &len, &err);
    if (!s) return mb_lua_raise(L, &err);
    lua_pushlstring(L, s, len);
    free(s);
    return 1;
}

/* tok:token_to_id(token) -> id or nil */
static int m_token_to_id(lua_State *L) {
    mb_tokenizer *tok = check_tok(L);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    int32_t id = mb_tokenizer_token_to_id(tok, s, len);
    if (id < 0) lua_pushnil(L);
    else lua_pushinteger(L, id);
    return 1;
}

/* tok:id_to_token(id) -> token or nil */
static int m_id_to_token(lua_State *L) {
    mb_tokenizer *tok = check_tok(L);
    lua_Integer id = luaL_checkinteger(L, 2);
    size_t len;
    const char *t = id >= INT32_MIN && id <= INT32_MAX ? mb_tokenizer_id_to_token(tok, (int32_t)id, &len) : NULL;
    if (!t) lua_pushnil(L);
    else lua_pushlstring(L, t, len);
    return 1;
}

/* tok:special_tokens() -> {unk_token="[UNK]", unk_token_id=100, ... , all={...}} */
static int m_special_tokens(lua_State *L) {
    mb_tokenizer *tok = check_tok(L);
    mb_special_ids s = mb_tokenizer_special_ids(tok);
    const char *names[5] = {"unk", "sep", "pad", "cls", "mask"};
    int32_t ids[5] = {s.unk, s.sep, s.pad, s.cls, s.mask};
    lua_createtable(L, 0, 11);
    for (int i = 0; i < 5; i++) {
        if (ids[i] < 0) continue;
        size_t len;
        const char *t = mb_tokenizer_id_to_token(tok, ids[i], &len);
        lua_pushfstring(L, "%s_token", names[i]);
        lua_pushlstring(L, t, len);
        lua_rawset(L, -3);
        lua_pushfstring(L, "%s_token_id", names[i]);
        lua_pushinteger(L, ids[i]);
        lua_rawset(L, -3);
    }
    /* all: the added tokens, {token=, id=} in file order */
    int na = mb_tokenizer_num_added(tok);
    lua_createtable(L, na, 0);
    for (int i = 0; i < na; i++) {
        int32_t id;
        const char *c = mb_tokenizer_added(tok, i, &id);
        lua_createtable(L, 0, 2);
        lua_pushstring(L, c);
        lua_setfield(L, -2, "token");
        lua_pushinteger(L, id);
        lua_setfield(L, -2, "id");
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "all");
    return 1;
}

static int mm_tostring(lua_State *L) {
    tokenizer_box *b = luaL_checkudata(L, 1, MB_TOKENIZER_MT);
    if (!b->tok) {
        lua_pushliteral(L, "moonbert.Tokenizer(freed)");
        return 1;
    }
    mb_normalizer_options o = mb_tokenizer_normalizer(b->tok);
    lua_pushfstring(L, "moonbert.Tokenizer(vocab_size=%d, model_max_length=%d, lowercase=%s, strip_accents=%s)",
                    (int)mb_tokenizer_vocab_size(b->tok), (int)mb_tokenizer_model_max_length(b->tok),
                    o.lowercase ? "true" : "false", o.strip_accents ? "true" : "false");
    return 1;
}

/* Methods first, then the read-only attributes. */
static int mm_index(lua_State *L) {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    if (!lua_isnil(L, -1)) return 1;
    lua_pop(L, 1);
    if (lua_type(L, 2) != LUA_TSTRING) return 0;
    const char *k = lua_tostring(L, 2);
    tokenizer_box *b = luaL_checkudata(L, 1, MB_TOKENIZER_MT);
    if (!b->tok) return luaL_error(L, "tokenizer is freed (reading '%s')", k);
    if (strcmp(k, "vocab_size") == 0) {
        lua_pushinteger(L, mb_tokenizer_vocab_size(b->tok));
    } else if (strcmp(k, "model_max_length") == 0) {
        lua_pushinteger(L, mb_tokenizer_model_max_length(b->tok));
    } else if (strcmp(k, "model_input_names") == 0) {
        lua_createtable(L, 3, 0);
        int i = 1;
        lua_pushliteral(L, "input_ids");
        lua_rawseti(L, -2, i++);
        if (mb_tokenizer_has_token_type_ids(b->tok)) {
            lua_pushliteral(L, "token_type_ids");
            lua_rawseti(L, -2, i++);
        }
        lua_pushliteral(L, "attention_mask");
        lua_rawseti(L, -2, i++);
    } else if (strcmp(k, "do_lower_case") == 0) {
        lua_pushboolean(L, mb_tokenizer_normalizer(b->tok).lowercase);
    } else if (strcmp(k, "pad_token_id") == 0) {
        lua_pushinteger(L, mb_tokenizer_special_ids(b->tok).pad);
    } else {
        return 0;
    }
    return 1;
}

static const luaL_Reg tokenizer_methods[] = {
    {"encode", m_encode},
    {"encode_batch", m_encode_batch},
    {"lengths", m_lengths},
    {"decode", m_decode},
    {"convert_ids_to_tokens", m_ids_to_tokens},
    {"convert_tokens_to_ids", m_tokens_to_ids},
    {"convert_tokens_to_string", m_tokens_to_string},
    {"token_to_id", m_token_to_id},
    {"id_to_token", m_id_to_token},
    {"special_tokens", m_special_tokens},
    {"free", m_free},
    {NULL, NULL},
};

static void ensure_metatable(lua_State *L) {
    if (!luaL_newmetatable(L, MB_TOKENIZER_MT)) {
        lua_pop(L, 1);
        return;
    }
    lua_pushcfunction(L, m_free);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, m_free);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, mm_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_newtable(L);
    luaL_setfuncs(L, tokenizer_methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "methods");
    lua_pushcclosure(L, mm_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

/* Seconds on a monotonic clock, for the tokenize benchmark (os.clock counts CPU
   time of all threads, which says nothing about parallel speed). */
static int t_wall_clock(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + 1e-9 * (lua_Number)ts.tv_nsec);
    return 1;
}

MB_LUA_MODULE(tokenizer) {
    static const luaL_Reg fns[] = {
        {"load", t_load},
        {"wall_clock", t_wall_clock},
        {NULL, NULL},
    };
    ensure_metatable(L);
    luaL_newlib(L, fns);
    return 1;
}
