/* tokenizer_impl.h: the private layout of mb_tokenizer and mb_tokenizer_work,
 * shared by tokenizer.c (vocabulary, decoding), tokenizer_load.c (reading
 * Hugging Face files), tokenizer_wordpiece.c (text to word pieces) and
 * tokenizer_encode.c (template, truncation, batches). Not part of the
 * runtime's API.
 */
#ifndef MB_TOKENIZER_IMPL_H
#define MB_TOKENIZER_IMPL_H

#include <stdint.h>
#include <string.h>

#include "tokenizer.h"

/* One slot of an open-addressing table: key bytes live in the string pool. */
typedef struct mb_vocab_slot {
    uint64_t hash;
    uint32_t off, len; /* key = pool[off .. off+len) */
    int32_t id;        /* -1: empty */
} mb_vocab_slot;

typedef struct mb_vocab_table {
    mb_vocab_slot *slots;
    uint64_t mask;  /* capacity - 1 (a power of two) */
    uint32_t maxlen; /* longest key in bytes: bounds the WordPiece search */
} mb_vocab_table;

typedef struct mb_added_token {
    char *content;
    size_t len;
    int32_t id;
    int special;
} mb_added_token;

struct mb_tokenizer {
    /* id -> token: pool offsets; every token string is NUL-terminated in pool. */
    char *pool;
    size_t pool_len, pool_cap;
    uint32_t *tok_off, *tok_len; /* [vocab_size]; tok_len = UINT32_MAX for an unused id */
    int32_t vocab_size; /* highest id + 1 */
    int32_t tok_cap;

    mb_vocab_table full; /* whole token strings */
    mb_vocab_table cont; /* tokens that start with the prefix, keyed without it */

    char prefix[32];
    size_t prefix_len;
    int32_t max_input_chars_per_word;
    int32_t unk_id;

    mb_normalizer_options norm;

    mb_added_token *added;
    int n_added;
    uint8_t added_first[256]; /* 1 when some added token starts with this byte */
    uint8_t *is_special;      /* [vocab_size] */

    mb_special_ids special;
    int32_t model_max_length;
    int has_token_type_ids;
    int decoder_cleanup;
};

/* The vocabulary's hash and lookup: inline, as WordPiece calls them per piece. */
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

/* The scratch of one encoding: tokenizer_wordpiece.c fills it with the word
   pieces of a text (and its pair), tokenizer_encode.c lays them out. */
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

/* Called by the loader once tokens are in place: builds the hash tables and
   the added-token index. */
mb_status mb_tokenizer_finish(mb_tokenizer *tok, mb_error *err);
/* Rebuilds the added-token index (first bytes, special flags) after tok->added changed. */
mb_status mb_tokenizer_finish_added(mb_tokenizer *tok, mb_error *err);
/* Adds token (len bytes) with id; grows the arrays. */
mb_status mb_tokenizer_put(mb_tokenizer *tok, const char *token, size_t len, int32_t id, mb_error *err);

/* Word pieces of text (and pair, when not NULL) into w->seq[0] and w->seq[1],
   with source byte offsets when want_offsets; 0, or -1 with err. */
int mb_tokenizer_pieces(const mb_tokenizer *tok, mb_tokenizer_work *w, const char *text, size_t len, const char *pair,
                        size_t pair_len, int want_offsets, mb_error *err);

#endif
