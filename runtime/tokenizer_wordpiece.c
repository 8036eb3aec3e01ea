/* tokenizer_wordpiece.c: text to BERT word pieces (see tokenizer.h), the
 * pipeline of one text in one pass over its bytes: added-token split,
 * normalizer, pre-tokenizer, WordPiece.
 *
 * Reading order: character classes (ASCII tables, utf8proc for the rest); the
 * scratch buffers of mb_tokenizer_work; WordPiece; normalize + pre-tokenize;
 * the pass over a text.
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

int mb_tokenizer_pieces(const mb_tokenizer *tok, mb_tokenizer_work *w, const char *text, size_t len, const char *pair,
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
