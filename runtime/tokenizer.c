/* tokenizer.c: the vocabulary of a BERT WordPiece tokenizer (see tokenizer.h):
 * tokens and ids both ways, and decoding ids back to text.
 *
 * The tokenizer's parts, one file each: this one (the vocabulary tables built
 * once the loader has put the tokens in, lookups, decoding); tokenizer_load.c
 * (reading Hugging Face's files); tokenizer_wordpiece.c (text to word pieces:
 * added tokens, normalizer, pre-tokenizer and WordPiece in one pass);
 * tokenizer_encode.c (the post-processor template, truncation, overflowing
 * windows and batches). tokenizer_impl.h is the layout they share.
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* vocabulary                                                               */
/* ======================================================================== */

static mb_status table_build(mb_vocab_table *t, size_t n_keys, mb_error *err) {
    uint64_t cap = 16;
    while (cap < 2 * n_keys + 1) cap <<= 1; /* load <= 1/2: short probe runs */
    t->slots = malloc(cap * sizeof *t->slots);
    if (!t->slots) return mb_fail(err, MB_ERR_NOMEM, "tokenizer: out of memory for the vocabulary table");
    for (uint64_t i = 0; i < cap; i++) t->slots[i].id = -1;
    t->mask = cap - 1;
    t->maxlen = 0;
    return MB_OK;
}

/* Inserts the key, or gives a key already present the new id: ids are inserted
   in increasing order, so of a vocab.txt's duplicate lines the later one wins,
   as in HF's reader (tokenizer.json has no duplicates). */
static void table_insert(mb_vocab_table *t, const char *pool, uint32_t off, uint32_t len, int32_t id) {
    uint64_t h = hash_bytes(pool + off, len);
    for (uint64_t i = h & t->mask;; i = (i + 1) & t->mask) {
        mb_vocab_slot *s = &t->slots[i];
        if (s->id < 0) {
            s->hash = h;
            s->off = off;
            s->len = len;
            s->id = id;
            if (len > t->maxlen) t->maxlen = len;
            return;
        }
        if (s->hash == h && s->len == len && memcmp(pool + s->off, pool + off, len) == 0) {
            s->id = id; /* later duplicate wins, like HF's vocab.txt reader */
            return;
        }
    }
}

mb_status mb_tokenizer_put(mb_tokenizer *tok, const char *token, size_t len, int32_t id, mb_error *err) {
    if (id < 0 || id >= (1 << 28)) /* ids index arrays: keep them sane */
        return mb_fail(err, MB_ERR_FORMAT, "token id %ld out of range (0 .. 2^28)", (long)id);
    if (len >= UINT32_MAX / 2) return mb_fail(err, MB_ERR_FORMAT, "token of %zu bytes is too long", len);
    if (id >= tok->tok_cap) {
        int32_t cap = tok->tok_cap ? tok->tok_cap : 1024;
        while (cap <= id) cap *= 2;
        uint32_t *off = realloc(tok->tok_off, (size_t)cap * sizeof *off);
        if (off) tok->tok_off = off;
        uint32_t *ln = off ? realloc(tok->tok_len, (size_t)cap * sizeof *ln) : NULL;
        if (ln) tok->tok_len = ln;
        if (!off || !ln) return mb_fail(err, MB_ERR_NOMEM, "tokenizer: out of memory");
        for (int32_t i = tok->tok_cap; i < cap; i++) {
            tok->tok_len[i] = UINT32_MAX; /* an id no token has */
            tok->tok_off[i] = 0;
        }
        tok->tok_cap = cap;
    }
    if (id >= tok->vocab_size) tok->vocab_size = id + 1;
    if (tok->pool_len + len + 1 > tok->pool_cap) {
        size_t cap = tok->pool_cap ? tok->pool_cap : 65536;
        while (cap < tok->pool_len + len + 1) cap *= 2;
        char *p = realloc(tok->pool, cap);
        if (!p) return mb_fail(err, MB_ERR_NOMEM, "tokenizer: out of memory");
        tok->pool = p;
        tok->pool_cap = cap;
    }
    memcpy(tok->pool + tok->pool_len, token, len);
    tok->pool[tok->pool_len + len] = '\0';
    tok->tok_off[id] = (uint32_t)tok->pool_len;
    tok->tok_len[id] = (uint32_t)len;
    tok->pool_len += len + 1;
    return MB_OK;
}

mb_status mb_tokenizer_finish(mb_tokenizer *tok, mb_error *err) {
    size_t n = 0, n_cont = 0;
    for (int32_t id = 0; id < tok->vocab_size; id++) {
        if (tok->tok_len[id] == UINT32_MAX) continue;
        n++;
        if (tok->prefix_len && tok->tok_len[id] >= tok->prefix_len &&
            memcmp(tok->pool + tok->tok_off[id], tok->prefix, tok->prefix_len) == 0)
            n_cont++;
    }
    if (table_build(&tok->full, n, err) || table_build(&tok->cont, n_cont, err)) return err ? err->code : MB_ERR_NOMEM;
    for (int32_t id = 0; id < tok->vocab_size; id++) {
        uint32_t len = tok->tok_len[id], off = tok->tok_off[id];
        if (len == UINT32_MAX) continue;
        table_insert(&tok->full, tok->pool, off, len, id);
        if (tok->prefix_len && len >= tok->prefix_len && memcmp(tok->pool + off, tok->prefix, tok->prefix_len) == 0)
            table_insert(&tok->cont, tok->pool, off + (uint32_t)tok->prefix_len, len - (uint32_t)tok->prefix_len, id);
    }
    return mb_tokenizer_finish_added(tok, err);
}

mb_status mb_tokenizer_finish_added(mb_tokenizer *tok, mb_error *err) {
    free(tok->is_special);
    tok->is_special = calloc((size_t)tok->vocab_size + 1, 1);
    if (!tok->is_special) return mb_fail(err, MB_ERR_NOMEM, "tokenizer: out of memory");
    memset(tok->added_first, 0, sizeof tok->added_first);
    for (int i = 0; i < tok->n_added; i++) {
        if (tok->added[i].len) tok->added_first[(uint8_t)tok->added[i].content[0]] = 1;
        if (tok->added[i].special && tok->added[i].id >= 0 && tok->added[i].id < tok->vocab_size)
            tok->is_special[tok->added[i].id] = 1;
    }
    return MB_OK;
}

void mb_tokenizer_free(mb_tokenizer *tok) {
    if (!tok) return;
    free(tok->pool);
    free(tok->tok_off);
    free(tok->tok_len);
    free(tok->full.slots);
    free(tok->cont.slots);
    for (int i = 0; i < tok->n_added; i++) free(tok->added[i].content);
    free(tok->added);
    free(tok->is_special);
    free(tok);
}

int32_t mb_tokenizer_token_to_id(const mb_tokenizer *tok, const char *token, size_t len) {
    return table_find(&tok->full, tok->pool, token, len);
}

const char *mb_tokenizer_id_to_token(const mb_tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0 || id >= tok->vocab_size || tok->tok_len[id] == UINT32_MAX) return NULL;
    if (len) *len = tok->tok_len[id];
    return tok->pool + tok->tok_off[id];
}

int32_t mb_tokenizer_vocab_size(const mb_tokenizer *tok) { return tok->vocab_size; }
int32_t mb_tokenizer_model_max_length(const mb_tokenizer *tok) { return tok->model_max_length; }
mb_special_ids mb_tokenizer_special_ids(const mb_tokenizer *tok) { return tok->special; }
mb_normalizer_options mb_tokenizer_normalizer(const mb_tokenizer *tok) { return tok->norm; }
int mb_tokenizer_has_token_type_ids(const mb_tokenizer *tok) { return tok->has_token_type_ids; }
int mb_tokenizer_num_added(const mb_tokenizer *tok) { return tok->n_added; }
const char *mb_tokenizer_prefix(const mb_tokenizer *tok) { return tok->prefix; }

const char *mb_tokenizer_added(const mb_tokenizer *tok, int i, int32_t *id) {
    if (i < 0 || i >= tok->n_added) return NULL;
    if (id) *id = tok->added[i].id;
    return tok->added[i].content;
}

int mb_tokenizer_is_special(const mb_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->vocab_size && tok->is_special[id];
}

/* ======================================================================== */
/* decoding                                                                 */
/* ======================================================================== */

typedef struct strbuf {
    char *s;
    size_t n, cap;
    int failed;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

/* clean_up_tokenization of transformers (Python and transformers.js), applied to
   the whole decoded string: the rules in order, each over the whole string. */
static void sb_put_cleaned(strbuf *b, const char *s, size_t n) {
    static const struct {
        const char *from, *to;
    } rules[] = {{" .", "."},   {" ?", "?"},   {" !", "!"},   {" ,", ","},   {" ' ", "'"},
                 {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    strbuf cur = {0}, next = {0};
    sb_put(&cur, s, n);
    for (size_t r = 0; r < sizeof rules / sizeof rules[0] && !cur.failed; r++) {
        size_t fl = strlen(rules[r].from), tl = strlen(rules[r].to);
        if (cur.n < fl) continue;
        next.n = 0;
        sb_put(&next, "", 0);
        size_t i = 0;
        while (i < cur.n) {
            if (i + fl <= cur.n && memcmp(cur.s + i, rules[r].from, fl) == 0) {
                sb_put(&next, rules[r].to, tl);
                i += fl;
            } else {
                sb_put(&next, cur.s + i, 1);
                i++;
            }
        }
        strbuf t = cur;
        cur = next;
        next = t;
        if (next.failed) cur.failed = 1;
    }
    if (cur.failed) b->failed = 1;
    else sb_put(b, cur.s ? cur.s : "", cur.n);
    free(cur.s);
    free(next.s);
}

char *mb_tokenizer_decode(const mb_tokenizer *tok, const int32_t *ids, size_t n, int skip_special_tokens,
                          size_t *out_len, mb_error *err) {
    strbuf b = {0};
    sb_put(&b, "", 0);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *t = mb_tokenizer_id_to_token(tok, ids[i], &len);
        if (!t) {
            free(b.s);
            mb_fail(err, MB_ERR_RANGE, "decode: id %ld at position %zu is outside the vocabulary (0..%d)", (long)ids[i],
                    i + 1, (int)tok->vocab_size - 1);
            return NULL;
        }
        if (skip_special_tokens && tok->is_special[ids[i]]) continue;
        /* The WordPiece decoder: glue prefixed pieces, a space before the others. */
        if (kept > 0) {
            if (tok->prefix_len && len >= tok->prefix_len && memcmp(t, tok->prefix, tok->prefix_len) == 0) {
                t += tok->prefix_len;
                len -= tok->prefix_len;
            } else {
                sb_put(&b, " ", 1);
            }
        }
        sb_put(&b, t, len);
        kept++;
    }
    if (tok->decoder_cleanup && !b.failed) {
        strbuf c = {0};
        sb_put_cleaned(&c, b.s, b.n);
        free(b.s);
        b = c;
    }
    if (b.failed) {
        free(b.s);
        mb_fail(err, MB_ERR_NOMEM, "decode: out of memory");
        return NULL;
    }
    if (out_len) *out_len = b.n;
    return b.s;
}

char *mb_tokenizer_tokens_to_string(const mb_tokenizer *tok, const char *const *tokens, const size_t *lens,
                                    size_t n, size_t *out_len, mb_error *err) {
    /* " ".join(tokens), then every " " + prefix removed, then strip(). */
    strbuf joined = {0}, b = {0};
    sb_put(&joined, "", 0);
    for (size_t i = 0; i < n; i++) {
        if (i) sb_put(&joined, " ", 1);
        sb_put(&joined, tokens[i], lens[i]);
    }
    sb_put(&b, "", 0);
    size_t pl = tok->prefix_len;
    for (size_t i = 0; i < joined.n && !joined.failed;) {
        if (pl && joined.s[i] == ' ' && i + 1 + pl <= joined.n && memcmp(joined.s + i + 1, tok->prefix, pl) == 0) {
            i += 1 + pl;
            continue;
        }
        sb_put(&b, joined.s + i, 1);
        i++;
    }
    int failed = joined.failed || b.failed;
    free(joined.s);
    if (failed) {
        free(b.s);
        mb_fail(err, MB_ERR_NOMEM, "convert_tokens_to_string: out of memory");
        return NULL;
    }
    /* strip() of Python: ASCII and Unicode whitespace at both ends; tokens are
       single words, so ASCII whitespace is what can occur here. */
    size_t s = 0, e = b.n;
    while (s < e && (b.s[s] == ' ' || (b.s[s] >= 0x09 && b.s[s] <= 0x0D))) s++;
    while (e > s && (b.s[e - 1] == ' ' || (b.s[e - 1] >= 0x09 && b.s[e - 1] <= 0x0D))) e--;
    memmove(b.s, b.s + s, e - s);
    b.s[e - s] = '\0';
    if (out_len) *out_len = e - s;
    return b.s;
}
