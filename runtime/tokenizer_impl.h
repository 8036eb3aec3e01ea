/* tokenizer_impl.h: the private layout of mb_tokenizer, shared by
 * tokenizer.c (vocabulary, encoding, decoding) and tokenizer_load.c (reading
 * Hugging Face files). Not part of the runtime's API.
 */
#ifndef MB_TOKENIZER_IMPL_H
#define MB_TOKENIZER_IMPL_H

#include <stdint.h>

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

/* Called by the loader once tokens are in place: builds the hash tables and
   the added-token index. */
mb_status mb_tokenizer_finish(mb_tokenizer *tok, mb_error *err);
/* Rebuilds the added-token index (first bytes, special flags) after tok->added changed. */
mb_status mb_tokenizer_finish_added(mb_tokenizer *tok, mb_error *err);
/* Adds token (len bytes) with id; grows the arrays. */
mb_status mb_tokenizer_put(mb_tokenizer *tok, const char *token, size_t len, int32_t id, mb_error *err);

#endif
