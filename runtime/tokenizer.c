/* tokenizer.c: BERT WordPiece encoding and decoding (see tokenizer.h).
 *
 * Reading order: the vocabulary hash tables; character classes (ASCII tables,
 * utf8proc for the rest); the per-text pipeline (added-token split, normalize,
 * pre-tokenize, WordPiece) in one pass over the bytes; the post-processor
 * template and truncation; batches over OpenMP; decoding.
 *
 * Speed: ASCII bytes go through 256-entry tables; only non-ASCII characters
 * call utf8proc. The normalized word is built in a reused buffer and looked up
 * by (pointer, length) in the hash table, so encoding does not allocate per
 * token (scratch buffers only grow).
 */
#include "tokenizer_impl.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "parallel.h"

/* ======================================================================== */
/* vocabulary                                                               */
/* ======================================================================== */

static inline uint64_t hash_bytes(const char *s, size_t n) {
    /* 64-bit multiply-xorshift over 8-byte chunks: word pieces are short, this
       is a handful of multiplies per lookup. */
    const uint64_t K = 0x9E3779B97F4A7C15ull;
    uint64_t h = 0x84222325CBF29CE4ull ^ (n * K);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * K;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)(uint8_t)s[i] << (8 * i);
    h = (h ^ v) * K;
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 32;
    return h;
}

static inline int32_t table_find(const mb_vocab_table *t, const char *pool, const char *key, size_t len) {
    if (!t->slots || len > t->maxlen) return -1;
    uint64_t h = hash_bytes(key, len);
    for (uint64_t i = h & t->mask;; i = (i + 1) & t->mask) {
        const mb_vocab_slot *s = &t->slots[i];
        if (s->id < 0) return -1;
        if (s->hash == h && s->len == len && memcmp(pool + s->off, key, len) == 0) return s->id;
    }
}

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

/* Inserts unless the key is present (the first id wins, as in a vocab.txt with
   duplicate lines where HF keeps the later one; tokenizer.json has no duplicates). */
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
/* character classes                                                        */
/* ======================================================================== */

enum { C_WORD = 0, C_SPACE, C_PUNCT, C_DROP };

/* HF counts every non-alphanumeric printable ASCII character as punctuation. */
static inline int ascii_punct(int c) {
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
}

/* Rust's char::is_whitespace: the Unicode White_Space property. */
static inline int is_white_space(uint32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Python's _is_control / Rust's is_other: every C* category. */
static inline int is_control(uint32_t c) {
    if (c == '\t' || c == '\n' || c == '\r') return 0;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CN ||
           k == UTF8PROC_CATEGORY_CO || k == UTF8PROC_CATEGORY_CS;
}

static inline int is_punct(uint32_t c) {
    if (c < 0x80) return ascii_punct((int)c);
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/* The CJK Unified Ideographs blocks of BERT's _is_chinese_char (not kana or hangul). */
static inline int is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* One code point from p (< end). Invalid UTF-8 gives U+FFFD and consumes the
   maximal invalid subpart (at least one byte), as Unicode recommends. */
static inline int decode_utf8(const uint8_t *p, const uint8_t *end, uint32_t *cp) {
    uint8_t b = p[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    *cp = 0xFFFD;
    size_t avail = (size_t)(end - p);
    if (b >= 0xC2 && b <= 0xDF) {
        if (avail >= 2 && (p[1] & 0xC0) == 0x80) {
            *cp = ((uint32_t)(b & 0x1F) << 6) | (p[1] & 0x3F);
            return 2;
        }
        return 1;
    }
    if (b >= 0xE0 && b <= 0xEF) {
        uint8_t lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
        if (avail < 2 || p[1] < lo || p[1] > hi) return 1;
        if (avail < 3 || (p[2] & 0xC0) != 0x80) return 2;
        *cp = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
        return 3;
    }
    if (b >= 0xF0 && b <= 0xF4) {
        uint8_t lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
        if (avail < 2 || p[1] < lo || p[1] > hi) return 1;
        if (avail < 3 || (p[2] & 0xC0) != 0x80) return 2;
        if (avail < 4 || (p[3] & 0xC0) != 0x80) return 3;
        *cp = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) | ((uint32_t)(p[2] & 0x3F) << 6) |
              (p[3] & 0x3F);
        return 4;
    }
    return 1;
}

static inline int encode_utf8(uint32_t c, char *out) {
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* ======================================================================== */
/* scratch buffers                                                          */
/* ======================================================================== */

typedef struct piece_list {
    int32_t *ids;
    int32_t *offs; /* 2 per id */
    size_t n, cap;
} piece_list;

struct mb_tokenizer_work {
    char *word;          /* normalized UTF-8 bytes of the word being built */
    int32_t *word_src;   /* 2 per byte of word: source byte range of its character */
    size_t word_len, word_cap, word_chars;
    piece_list seq[2];   /* word pieces of text A and B */
    piece_list tmp;      /* pieces of one word before it is known to be good */
    int failed;          /* an allocation failed */
    int want_offsets;
};

mb_tokenizer_work *mb_tokenizer_work_new(void) { return calloc(1, sizeof(mb_tokenizer_work)); }

void mb_tokenizer_work_free(mb_tokenizer_work *w) {
    if (!w) return;
    free(w->word);
    free(w->word_src);
    for (int i = 0; i < 2; i++) {
        free(w->seq[i].ids);
        free(w->seq[i].offs);
    }
    free(w->tmp.ids);
    free(w->tmp.offs);
    free(w);
}

static int pieces_push(mb_tokenizer_work *w, piece_list *l, int32_t id, int32_t start, int32_t end) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        int32_t *ids = realloc(l->ids, cap * sizeof *ids);
        if (ids) l->ids = ids;
        int32_t *offs = realloc(l->offs, 2 * cap * sizeof *offs);
        if (offs) l->offs = offs;
        if (!ids || !offs) {
            w->failed = 1;
            return 0;
        }
        l->cap = cap;
    }
    l->ids[l->n] = id;
    l->offs[2 * l->n] = start;
    l->offs[2 * l->n + 1] = end;
    l->n++;
    return 1;
}

static int word_reserve(mb_tokenizer_work *w, size_t extra) {
    if (w->word_len + extra <= w->word_cap) return 1;
    size_t cap = w->word_cap ? 2 * w->word_cap : 256;
    while (cap < w->word_len + extra) cap *= 2;
    char *word = realloc(w->word, cap);
    if (word) w->word = word;
    int32_t *src = realloc(w->word_src, 2 * cap * sizeof *src);
    if (src) w->word_src = src;
    if (!word || !src) {
        w->failed = 1;
        return 0;
    }
    w->word_cap = cap;
    return 1;
}

/* ======================================================================== */
/* WordPiece                                                                */
/* ======================================================================== */

/* Greedy longest-match-first over the word in w->word, as HF's WordPiece: a
   word longer than max_input_chars_per_word, or with a part no piece matches,
   becomes a single unk. Pieces go to out. */
static void wordpiece(const mb_tokenizer *tok, mb_tokenizer_work *w, piece_list *out) {
    const char *s = w->word;
    size_t n = w->word_len;
    const int32_t *src = w->word_src;
    int offs = w->want_offsets;
    int32_t wstart = offs ? src[0] : -1, wend = offs ? src[2 * (n - 1) + 1] : -1;
    if ((int64_t)w->word_chars > (int64_t)tok->max_input_chars_per_word) {
        pieces_push(w, out, tok->unk_id, wstart, wend);
        return;
    }
    int32_t id = table_find(&tok->full, tok->pool, s, n);
    if (id >= 0) { /* the common case: the whole word is in the vocabulary */
        pieces_push(w, out, id, wstart, wend);
        return;
    }
    w->tmp.n = 0;
    size_t start = 0;
    while (start < n) {
        const mb_vocab_table *t = start == 0 ? &tok->full : &tok->cont;
        size_t end = n;
        if (end - start > t->maxlen) {
            end = start + t->maxlen;
            while (end > start && ((uint8_t)s[end] & 0xC0) == 0x80) end--; /* char boundary */
        }
        if (start == 0 && end == n) { /* already tried: drop the last character */
            end--;
            while (end > start && ((uint8_t)s[end] & 0xC0) == 0x80) end--;
        }
        id = -1;
        while (end > start) {
            id = table_find(t, tok->pool, s + start, end - start);
            if (id >= 0) break;
            end--;
            while (end > start && ((uint8_t)s[end] & 0xC0) == 0x80) end--;
        }
        if (id < 0) {
            pieces_push(w, out, tok->unk_id, wstart, wend);
            return;
        }
        pieces_push(w, &w->tmp, id, offs ? src[2 * start] : -1, offs ? src[2 * (end - 1) + 1] : -1);
        start = end;
    }
    for (size_t i = 0; i < w->tmp.n; i++) pieces_push(w, out, w->tmp.ids[i], w->tmp.offs[2 * i], w->tmp.offs[2 * i + 1]);
}

static inline void flush_word(const mb_tokenizer *tok, mb_tokenizer_work *w, piece_list *out) {
    if (w->word_len) {
        wordpiece(tok, w, out);
        w->word_len = 0;
        w->word_chars = 0;
    }
}

/* ======================================================================== */
/* normalize + pre-tokenize, one pass                                       */
/* ======================================================================== */

/* A normalized code point enters the pre-tokenizer: whitespace ends the word,
   punctuation is a word of its own, anything else extends the word. */
static void pretokenize_cp(const mb_tokenizer *tok, mb_tokenizer_work *w, piece_list *out, uint32_t c, int32_t s0,
                           int32_t s1) {
    if (is_white_space(c)) {
        flush_word(tok, w, out);
        return;
    }
    int punct = is_punct(c);
    if (punct) flush_word(tok, w, out);
    if (!word_reserve(w, 4)) return;
    int k = encode_utf8(c, w->word + w->word_len);
    if (w->want_offsets)
        for (int i = 0; i < k; i++) {
            w->word_src[2 * (w->word_len + i)] = s0;
            w->word_src[2 * (w->word_len + i) + 1] = s1;
        }
    w->word_len += (size_t)k;
    w->word_chars++;
    if (punct) flush_word(tok, w, out);
}

static inline void lowercase_cp(const mb_tokenizer *tok, mb_tokenizer_work *w, piece_list *out, uint32_t c,
                                int32_t s0, int32_t s1) {
    if (tok->norm.lowercase) {
        if (c == 0x130) { /* full lowercase of İ is i + combining dot above (Rust's to_lowercase) */
            pretokenize_cp(tok, w, out, 'i', s0, s1);
            pretokenize_cp(tok, w, out, 0x307, s0, s1);
            return;
        }
        c = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
    }
    pretokenize_cp(tok, w, out, c, s0, s1);
}

/* The normalizer for one non-ASCII (or decoded) code point, source bytes [s0, s1). */
static void normalize_cp(const mb_tokenizer *tok, mb_tokenizer_work *w, piece_list *out, uint32_t c, int32_t s0,
                         int32_t s1) {
    if (tok->norm.clean_text) {
        if (c == 0 || c == 0xFFFD || is_control(c)) return;
        if (is_white_space(c)) c = ' ';
    }
    int cjk = tok->norm.handle_chinese_chars && is_cjk(c);
    if (cjk) flush_word(tok, w, out); /* the space put before it */
    if (tok->norm.strip_accents && c >= 0x80) {
        utf8proc_int32_t d[32];
        utf8proc_ssize_t k = utf8proc_decompose_char((utf8proc_int32_t)c, d, 32, UTF8PROC_DECOMPOSE, NULL);
        if (k < 0 || k > 32) { /* cannot happen for valid code points; keep the character */
            d[0] = (utf8proc_int32_t)c;
            k = 1;
        }
        for (utf8proc_ssize_t i = 0; i < k; i++)
            if (utf8proc_category(d[i]) != UTF8PROC_CATEGORY_MN) lowercase_cp(tok, w, out, (uint32_t)d[i], s0, s1);
    } else {
        lowercase_cp(tok, w, out, c, s0, s1);
    }
    if (cjk) flush_word(tok, w, out); /* the space put after it */
}

/* Longest added token matching at p, or -1. */
static inline int match_added(const mb_tokenizer *tok, const uint8_t *p, const uint8_t *end) {
    int best = -1;
    size_t best_len = 0, avail = (size_t)(end - p);
    for (int i = 0; i < tok->n_added; i++) {
        const mb_added_token *a = &tok->added[i];
        if (a->len > best_len && a->len <= avail && memcmp(p, a->content, a->len) == 0) {
            best = i;
            best_len = a->len;
        }
    }
    return best;
}

/* Text -> word pieces (no template tokens) appended to out. */
static void encode_sequence(const mb_tokenizer *tok, mb_tokenizer_work *w, const char *text, size_t len,
                            piece_list *out) {
    /* ASCII classes for this tokenizer's options. */
    const uint8_t *p0 = (const uint8_t *)text, *p = p0, *end = p0 + len;
    int clean = tok->norm.clean_text, lower = tok->norm.lowercase, offs = w->want_offsets;
    w->word_len = 0;
    w->word_chars = 0;
    if (len > (size_t)INT32_MAX) end = p0 + INT32_MAX; /* offsets are int32 */
    while (p < end) {
        uint8_t b = *p;
        if (b < 0x80) {
            if (tok->added_first[b]) {
                int m = match_added(tok, p, end);
                if (m >= 0) {
                    flush_word(tok, w, out);
                    size_t ml = tok->added[m].len;
                    pieces_push(w, out, tok->added[m].id, (int32_t)(p - p0), (int32_t)(p - p0 + ml));
                    p += ml;
                    continue;
                }
            }
            int32_t pos = (int32_t)(p - p0);
            if ((b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') || (b >= 'A' && b <= 'Z')) {
                if (w->word_len == w->word_cap && !word_reserve(w, 1)) return;
                w->word[w->word_len] = (char)(lower && b >= 'A' && b <= 'Z' ? b + 32 : b);
                if (offs) {
                    w->word_src[2 * w->word_len] = pos;
                    w->word_src[2 * w->word_len + 1] = pos + 1;
                }
                w->word_len++;
                w->word_chars++;
            } else if (b == ' ' || (b >= 0x09 && b <= 0x0D)) {
                if (clean && (b == 0x0B || b == 0x0C)) { /* Cc, not \t\n\r: clean_text drops it */
                } else {
                    flush_word(tok, w, out);
                }
            } else if (b < 0x20 || b == 0x7F) {
                if (!clean) pretokenize_cp(tok, w, out, b, pos, pos + 1);
            } else {
                pretokenize_cp(tok, w, out, b, pos, pos + 1); /* ASCII punctuation */
            }
            p++;
        } else {
            uint32_t c;
            int k = decode_utf8(p, end, &c);
            if (tok->added_first[b]) {
                int m = match_added(tok, p, end);
                if (m >= 0) {
                    flush_word(tok, w, out);
                    size_t ml = tok->added[m].len;
                    pieces_push(w, out, tok->added[m].id, (int32_t)(p - p0), (int32_t)(p - p0 + ml));
                    p += ml;
                    continue;
                }
            }
            normalize_cp(tok, w, out, c, (int32_t)(p - p0), (int32_t)(p - p0 + k));
            p += k;
        }
        if (w->failed) return;
    }
    flush_word(tok, w, out);
}

/* ======================================================================== */
/* template and truncation                                                  */
/* ======================================================================== */

/* How many pieces of A (n1) and B (n2) survive Hugging Face's longest_first
   truncation to max_length ids including the template tokens. */
static void truncate_lengths(int has_pair, int32_t max_length, size_t *n1, size_t *n2) {
    if (max_length <= 0) return;
    size_t added = has_pair ? 3 : 2;
    size_t total = (size_t)max_length - added;
    if (!has_pair) {
        if (*n1 > total) *n1 = total;
        return;
    }
    if (*n1 + *n2 <= total) return;
    size_t a = *n1, b = *n2;
    int swap = a > b;
    if (swap) {
        size_t t = a;
        a = b;
        b = t;
    }
    if (a > total / 2) {
        a = total / 2;
        b = a + total % 2;
    } else {
        b = total - a;
    }
    if (swap) {
        size_t t = a;
        a = b;
        b = t;
    }
    *n1 = a;
    *n2 = b;
}

const char *mb_truncation_name(mb_truncation t) {
    switch (t) {
    case MB_TRUNC_LONGEST_FIRST: return "longest_first";
    case MB_TRUNC_ONLY_FIRST: return "only_first";
    case MB_TRUNC_ONLY_SECOND: return "only_second";
    }
    return "?";
}

/* Pieces of A (*k1) and B (*k2) in the first (or only) encoding under the
   strategy, as HF's Rust truncate_encodings: only_first / only_second remove
   what is over max_length from that sequence alone and fail when it would be
   left empty; a single sequence cannot be truncated only_second. *which gets
   the sequence that was cut (0, 1) or -1. */
static int plan_truncation(int has_pair, const mb_encode_options *o, size_t n1, size_t n2, size_t *k1, size_t *k2,
                           int *which, mb_error *err) {
    *k1 = n1;
    *k2 = n2;
    *which = -1;
    int32_t max_length = o->max_length;
    if (max_length <= 0) return 0;
    size_t added = has_pair ? 3 : 2;
    if ((size_t)max_length < added) {
        mb_fail(err, MB_ERR_ARG, "max_length %d is too small: the template adds %d special tokens", (int)max_length,
                (int)added);
        return -1;
    }
    size_t total = (size_t)max_length - added;
    if (!has_pair) {
        if (o->truncation == MB_TRUNC_ONLY_SECOND) {
            mb_fail(err, MB_ERR_ARG, "truncation only_second needs a pair of sequences");
            return -1;
        }
        if (n1 > total) {
            *k1 = total;
            *which = 0;
        }
        return 0;
    }
    if (n1 + n2 <= total) return 0;
    if (o->truncation == MB_TRUNC_LONGEST_FIRST) {
        truncate_lengths(1, max_length, k1, k2);
        *which = *k1 < n1 ? 0 : 1;
        return 0;
    }
    int cut = o->truncation == MB_TRUNC_ONLY_FIRST ? 0 : 1;
    size_t keep_other = cut == 0 ? n2 : n1, len = cut == 0 ? n1 : n2;
    size_t over = n1 + n2 - total;
    if (len <= over) {
        mb_fail(err, MB_ERR_RANGE, "truncation %s: the %s sequence (%zu tokens) is too short to bring the pair "
                "(%zu + %zu tokens and %d special) within max_length %d", mb_truncation_name(o->truncation),
                cut == 0 ? "first" : "second", len, n1, n2, (int)added, (int)max_length);
        return -1;
    }
    (void)keep_other;
    if (cut == 0) *k1 = n1 - over;
    else *k2 = n2 - over;
    *which = cut;
    return 0;
}

/* Emit [CLS] A[a0, a0+na) [SEP] (B[b0, b0+nb) [SEP]) from the work's pieces;
   returns the ids of the encoding (writing at most cap). */
static size_t emit_encoding(const mb_tokenizer *tok, const mb_tokenizer_work *w, int has_pair, size_t a0, size_t na,
                            size_t b0, size_t nb, int32_t *ids, int32_t *type_ids, int32_t *offsets, size_t cap) {
    size_t k = 0;
#define EMIT(id_, type_, s_, e_)                                                                                       \
    do {                                                                                                               \
        if (k < cap) {                                                                                                 \
            if (ids) ids[k] = (id_);                                                                                   \
            if (type_ids) type_ids[k] = (type_);                                                                       \
            if (offsets) {                                                                                             \
                offsets[2 * k] = (s_);                                                                                 \
                offsets[2 * k + 1] = (e_);                                                                             \
            }                                                                                                          \
        }                                                                                                              \
        k++;                                                                                                           \
    } while (0)
    EMIT(tok->special.cls, 0, -1, -1);
    for (size_t i = a0; i < a0 + na; i++) EMIT(w->seq[0].ids[i], 0, w->seq[0].offs[2 * i], w->seq[0].offs[2 * i + 1]);
    EMIT(tok->special.sep, 0, -1, -1);
    if (has_pair) {
        for (size_t i = b0; i < b0 + nb; i++) EMIT(w->seq[1].ids[i], 1, w->seq[1].offs[2 * i], w->seq[1].offs[2 * i + 1]);
        EMIT(tok->special.sep, 1, -1, -1);
    }
#undef EMIT
    return k;
}

/* Word pieces of text (and pair) into w->seq; 0, or -1 with err. */
static int encode_pieces(const mb_tokenizer *tok, mb_tokenizer_work *w, const char *text, size_t len, const char *pair,
                         size_t pair_len, int want_offsets, mb_error *err) {
    w->failed = 0;
    w->want_offsets = want_offsets;
    w->seq[0].n = w->seq[1].n = 0;
    encode_sequence(tok, w, text ? text : "", text ? len : 0, &w->seq[0]);
    if (pair) encode_sequence(tok, w, pair, pair_len, &w->seq[1]);
    if (w->failed) {
        mb_fail(err, MB_ERR_NOMEM, "tokenizer: out of memory while encoding");
        return -1;
    }
    return 0;
}

int64_t mb_tokenizer_encode_ex(const mb_tokenizer *tok, mb_tokenizer_work *w, const char *text, size_t len,
                               const char *pair, size_t pair_len, const mb_encode_options *o, int32_t *ids,
                               int32_t *type_ids, int32_t *offsets, size_t cap, mb_error *err) {
    mb_encode_options none = {0, MB_TRUNC_LONGEST_FIRST, 0};
    if (!o) o = &none;
    int has_pair = pair != NULL;
    mb_tokenizer_work *own = NULL;
    if (!w) {
        w = own = mb_tokenizer_work_new();
        if (!w) {
            mb_fail(err, MB_ERR_NOMEM, "tokenizer: out of memory");
            return -1;
        }
    }
    int64_t total = -1;
    size_t k1, k2;
    int which;
    if (o->max_length > 0 && o->max_length < (has_pair ? 3 : 2))
        mb_fail(err, MB_ERR_ARG, "max_length %d is too small: the template adds %d special tokens", (int)o->max_length,
                has_pair ? 3 : 2);
    else if (encode_pieces(tok, w, text, len, pair, pair_len, offsets != NULL, err) == 0 &&
             plan_truncation(has_pair, o, w->seq[0].n, w->seq[1].n, &k1, &k2, &which, err) == 0)
        total = (int64_t)emit_encoding(tok, w, has_pair, 0, k1, 0, k2, ids, type_ids, offsets, cap);
    mb_tokenizer_work_free(own);
    return total;
}

int64_t mb_tokenizer_encode(const mb_tokenizer *tok, mb_tokenizer_work *w, const char *text, size_t len,
                            const char *pair, size_t pair_len, int32_t max_length, int32_t *ids,
                            int32_t *type_ids, int32_t *offsets, size_t cap, mb_error *err) {
    mb_encode_options o = {max_length, MB_TRUNC_LONGEST_FIRST, 0};
    return mb_tokenizer_encode_ex(tok, w, text, len, pair, pair_len, &o, ids, type_ids, offsets, cap, err);
}

/* ---- overflowing windows ---------------------------------------------------- */

void mb_windows_free(mb_windows *win) {
    if (!win) return;
    free(win->start);
    free(win->ids);
    free(win->type_ids);
    free(win->offsets);
    memset(win, 0, sizeof *win);
}

mb_status mb_tokenizer_encode_windows(const mb_tokenizer *tok, mb_tokenizer_work *w, const char *text, size_t len,
                                      const char *pair, size_t pair_len, const mb_encode_options *o,
                                      mb_windows *out, mb_error *err) {
    memset(out, 0, sizeof *out);
    int has_pair = pair != NULL;
    if (has_pair && o->max_length > 0 && o->truncation == MB_TRUNC_LONGEST_FIRST)
        return mb_fail(err, MB_ERR_ARG, "overflowing windows of a pair need truncation only_first or only_second "
                       "(not longest_first)");
    if (o->stride < 0) return mb_fail(err, MB_ERR_ARG, "stride must be >= 0 (got %d)", (int)o->stride);
    mb_tokenizer_work *own = NULL;
    if (!w) {
        w = own = mb_tokenizer_work_new();
        if (!w) return mb_fail(err, MB_ERR_NOMEM, "tokenizer: out of memory");
    }
    mb_status st = MB_OK;
    size_t k1, k2;
    int which;
    if (encode_pieces(tok, w, text, len, pair, pair_len, 1, err) != 0 ||
        plan_truncation(has_pair, o, w->seq[0].n, w->seq[1].n, &k1, &k2, &which, err) != 0) {
        st = err ? err->code : MB_ERR_ARG;
        goto done;
    }
    /* the cut sequence in windows of m pieces, each starting m - stride after the last */
    size_t n_cut = which < 0 ? 0 : w->seq[which].n, m = which == 0 ? k1 : which == 1 ? k2 : 0;
    if (which >= 0 && (size_t)o->stride >= m) {
        st = mb_fail(err, MB_ERR_ARG, "stride %d must be smaller than the %zu tokens of the %s sequence that fit in "
                     "max_length %d", (int)o->stride, m, which == 0 ? "first" : "second", (int)o->max_length);
        goto done;
    }
    size_t n_win = 1;
    if (which >= 0) {
        size_t step = m - (size_t)o->stride;
        n_win = 0;
        for (size_t s0 = 0;; s0 += step) {
            n_win++;
            if (s0 + m >= n_cut) break;
        }
    }
    size_t per = (has_pair ? 3 : 2) + k1 + k2;
    out->start = malloc((n_win + 1) * sizeof *out->start);
    out->ids = malloc(n_win * per * sizeof(int32_t) + 4);
    out->type_ids = malloc(n_win * per * sizeof(int32_t) + 4);
    out->offsets = malloc(2 * n_win * per * sizeof(int32_t) + 8);
    if (!out->start || !out->ids || !out->type_ids || !out->offsets) {
        mb_windows_free(out);
        st = mb_fail(err, MB_ERR_NOMEM, "tokenizer: out of memory for %zu windows", n_win);
        goto done;
    }
    size_t at = 0, s0 = 0;
    for (size_t i = 0; i < n_win; i++) {
        out->start[i] = (int64_t)at;
        size_t a0 = 0, na = k1, b0 = 0, nb = k2;
        if (which >= 0) {
            size_t e = s0 + m < n_cut ? s0 + m : n_cut;
            if (which == 0) a0 = s0, na = e - s0;
            else b0 = s0, nb = e - s0;
            s0 += m - (size_t)o->stride;
        }
        at += emit_encoding(tok, w, has_pair, a0, na, b0, nb, out->ids + at, out->type_ids + at, out->offsets + 2 * at,
                            per);
    }
    out->start[n_win] = (int64_t)at;
    out->n = (int64_t)n_win;
done:
    mb_tokenizer_work_free(own);
    return st;
}

/* ======================================================================== */
/* batches                                                                  */
/* ======================================================================== */

void mb_batch_encoding_free(mb_batch_encoding *b) {
    if (!b) return;
    free(b->input_ids);
    free(b->attention_mask);
    free(b->token_type_ids);
    free(b->lengths);
    memset(b, 0, sizeof *b);
}

mb_status mb_tokenizer_lengths(const mb_tokenizer *tok, int64_t n, const char *const *texts, const size_t *lens,
                               int32_t max_length, int32_t *lengths, mb_error *err) {
    if (n < 0) return mb_fail(err, MB_ERR_ARG, "lengths: negative count %lld", (long long)n);
    if (max_length > 0 && max_length < 2)
        return mb_fail(err, MB_ERR_ARG, "max_length %d is too small: the template adds 2 special tokens",
                       (int)max_length);
    int failed = 0;
    mb_threads_init();
#pragma omp parallel num_threads(mb_threads()) if (n > 256) reduction(| : failed)
    {
        mb_tokenizer_work *w = mb_tokenizer_work_new();
        if (!w) failed = 1;
#pragma omp for schedule(dynamic, 64)
        for (int64_t i = 0; i < n; i++) {
            if (!w) continue;
            int64_t r = mb_tokenizer_encode(tok, w, texts[i], lens[i], NULL, 0, max_length, NULL, NULL, NULL, 0, NULL);
            if (r < 0) failed = 1;
            lengths[i] = r < 0 ? 0 : (int32_t)r;
        }
        mb_tokenizer_work_free(w);
    }
    if (failed) return mb_fail(err, MB_ERR_NOMEM, "lengths: out of memory");
    return MB_OK;
}

mb_status mb_tokenizer_encode_batch(const mb_tokenizer *tok, int64_t n, const char *const *texts,
                                    const size_t *lens, const char *const *pairs, const size_t *pair_lens,
                                    const mb_batch_options *opts, mb_batch_encoding *out, mb_error *err) {
    memset(out, 0, sizeof *out);
    if (n < 0) return mb_fail(err, MB_ERR_ARG, "encode_batch: negative count %lld", (long long)n);
    mb_padding padding = opts ? opts->padding : MB_PAD_LONGEST;
    int32_t max_length = opts && opts->max_length > 0 ? opts->max_length : tok->model_max_length;
    int truncation = opts ? opts->truncation : 1;
    int added = pairs ? 3 : 2;
    if (max_length < added)
        return mb_fail(err, MB_ERR_ARG, "max_length %d is too small: the template adds %d special tokens",
                       (int)max_length, added);
    mb_encode_options eo = {truncation ? max_length : 0, opts ? opts->strategy : MB_TRUNC_LONGEST_FIRST, 0};
    mb_error row_err = {0};
    int64_t err_row = -1; /* the first text whose encoding failed (not for lack of memory) */

    /* Pass 1: every row's ids into its own buffer (one allocation per text, none per token). */
    int32_t **rows = calloc((size_t)n + 1, sizeof *rows);
    int32_t **types = pairs ? calloc((size_t)n + 1, sizeof *types) : NULL;
    out->lengths = malloc(((size_t)n + 1) * sizeof *out->lengths);
    if (!rows || (pairs && !types) || !out->lengths) {
        free(rows);
        free(types);
        mb_batch_encoding_free(out);
        return mb_fail(err, MB_ERR_NOMEM, "encode_batch: out of memory for %lld texts", (long long)n);
    }
    int failed = 0;
    mb_threads_init();
#pragma omp parallel num_threads(mb_threads()) if (n > 256) reduction(| : failed)
    {
        mb_tokenizer_work *w = mb_tokenizer_work_new();
        int32_t *ids = NULL, *ty = NULL;
        size_t cap = 0;
        if (!w) failed = 1;
#pragma omp for schedule(dynamic, 64)
        for (int64_t i = 0; i < n; i++) {
            if (failed || !w) continue;
            mb_error e = {0};
            const char *pr = pairs ? (pairs[i] ? pairs[i] : "") : NULL;
            size_t pl = pairs ? pair_lens[i] : 0;
            int64_t r = mb_tokenizer_encode_ex(tok, w, texts[i], lens[i], pr, pl, &eo, ids, ty, NULL, cap, &e);
            if (r >= 0 && (size_t)r > cap) { /* grow the thread's buffer and encode again */
                size_t c2 = (size_t)r * 2;
                int32_t *a = realloc(ids, c2 * sizeof *a), *b = a ? realloc(ty, c2 * sizeof *b) : NULL;
                if (a) ids = a;
                if (b) ty = b;
                if (!a || !b) {
                    failed = 1;
                    continue;
                }
                cap = c2;
                r = mb_tokenizer_encode_ex(tok, w, texts[i], lens[i], pr, pl, &eo, ids, ty, NULL, cap, &e);
            }
            if (r < 0) {
                if (e.code != MB_ERR_NOMEM) {
#pragma omp critical(mb_tokenizer_batch_error)
                    if (err_row < 0 || i < err_row) {
                        err_row = i;
                        row_err = e;
                    }
                }
                failed = 1;
                continue;
            }
            rows[i] = malloc(((size_t)r + 1) * sizeof(int32_t));
            if (types) types[i] = malloc(((size_t)r + 1) * sizeof(int32_t));
            if (!rows[i] || (types && !types[i])) {
                failed = 1;
                continue;
            }
            memcpy(rows[i], ids, (size_t)r * sizeof(int32_t));
            if (types) memcpy(types[i], ty, (size_t)r * sizeof(int32_t));
            out->lengths[i] = (int32_t)r;
        }
        free(ids);
        free(ty);
        mb_tokenizer_work_free(w);
    }
    mb_status st = MB_OK;
    int64_t T = 0, longest = 0;
    if (failed && err_row >= 0) {
        st = mb_fail(err, row_err.code, "encode_batch: text %lld: %s", (long long)err_row + 1, row_err.msg);
        goto done;
    }
    if (failed) {
        st = mb_fail(err, MB_ERR_NOMEM, "encode_batch: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        if (out->lengths[i] > longest) longest = out->lengths[i];
    if (padding == MB_PAD_MAX_LENGTH) {
        T = max_length;
        if (longest > T) {
            st = mb_fail(err, MB_ERR_RANGE,
                         "encode_batch: a text has %lld tokens, more than max_length %d with truncation off",
                         (long long)longest, (int)max_length);
            goto done;
        }
    } else {
        T = longest;
        if (padding == MB_PAD_NONE)
            for (int64_t i = 0; i < n; i++)
                if (out->lengths[i] != longest) {
                    st = mb_fail(err, MB_ERR_SHAPE,
                                 "encode_batch: texts have different lengths (%d and %lld tokens) and padding is off; "
                                 "use padding=\"longest\" or \"max_length\"",
                                 (int)out->lengths[i], (long long)longest);
                    goto done;
                }
    }
    /* Pass 2: the [n, T] tensors. */
    size_t cells = (size_t)n * (size_t)T + 1;
    out->input_ids = malloc(cells * sizeof(int32_t));
    out->attention_mask = malloc(cells * sizeof(int32_t));
    out->token_type_ids = malloc(cells * sizeof(int32_t));
    if (!out->input_ids || !out->attention_mask || !out->token_type_ids) {
        st = mb_fail(err, MB_ERR_NOMEM, "encode_batch: out of memory for [%lld,%lld]", (long long)n, (long long)T);
        goto done;
    }
    int32_t pad = tok->special.pad >= 0 ? tok->special.pad : 0;
#pragma omp parallel for num_threads(mb_threads()) if (cells > MB_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        int32_t *row = out->input_ids + i * T, *mask = out->attention_mask + i * T, *ty = out->token_type_ids + i * T;
        int64_t L = out->lengths[i];
        memcpy(row, rows[i], (size_t)L * sizeof(int32_t));
        if (types) memcpy(ty, types[i], (size_t)L * sizeof(int32_t));
        else memset(ty, 0, (size_t)L * sizeof(int32_t));
        for (int64_t t = 0; t < L; t++) mask[t] = 1;
        for (int64_t t = L; t < T; t++) {
            row[t] = pad;
            mask[t] = 0;
            ty[t] = 0;
        }
    }
    out->batch = n;
    out->seq_len = T;
done:
    for (int64_t i = 0; i < n; i++) {
        free(rows[i]);
        if (types) free(types[i]);
    }
    free(rows);
    free(types);
    if (st != MB_OK) mb_batch_encoding_free(out);
    return st;
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
