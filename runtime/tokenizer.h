/* tokenizer.h: Hugging Face BERT WordPiece tokenization in C.
 *
 * Loads a Hugging Face tokenizer directory: tokenizer.json (BertNormalizer,
 * BertPreTokenizer, WordPiece model, TemplateProcessing or BertProcessing
 * post-processor) when present, else vocab.txt + tokenizer_config.json
 * (+ special_tokens_map.json). The pipeline is that of HF's Rust `tokenizers`:
 *   added tokens ("[CLS]", "[MASK]", ... exact case) are split out of the raw text;
 *   the rest is normalized (clean_text: drop U+0000, U+FFFD, Cc/Cf/Cn/Co/Cs except
 *   \t\n\r, White_Space -> ' '; handle_chinese_chars: spaces around CJK ideographs;
 *   strip_accents: NFD then drop Mn; lowercase: full lowercase), split on
 *   whitespace and punctuation (Unicode P* plus every ASCII symbol), and
 *   WordPiece-encoded (greedy longest match, continuing_subword_prefix,
 *   max_input_chars_per_word -> unk); then [CLS] A [SEP] (B [SEP]).
 * Input is arbitrary bytes: invalid UTF-8 becomes U+FFFD, one per maximal
 * invalid subsequence (as Python's decode(errors="replace") and Rust's
 * from_utf8_lossy), which clean_text then drops. Nothing here crashes on input.
 *
 * Limits: only WordPiece models with BERT normalization; canonical reordering of
 * NFD is not applied (it only matters for spacing marks of nonzero combining class,
 * which strip_accents keeps); added tokens are matched literally in the raw text
 * (normalized, lstrip, rstrip and single_word flags are ignored); a text is read up to
 * 2 GiB (offsets are int32).
 *
 * Threading: a loaded tokenizer is read-only and may be shared by threads;
 * each thread encodes with its own mb_tokenizer_work (or NULL: one per call).
 * The vocabulary lookup is an open-addressing hash table over the UTF-8 bytes
 * of a word piece: no allocation per token.
 */
#ifndef MB_TOKENIZER_H
#define MB_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct mb_tokenizer mb_tokenizer;
/* Growable scratch buffers for encoding; reuse one per thread. */
typedef struct mb_tokenizer_work mb_tokenizer_work;

typedef struct mb_special_ids {
    int32_t pad, unk, cls, sep, mask; /* -1 when the vocabulary lacks it */
} mb_special_ids;

typedef struct mb_normalizer_options {
    int clean_text, handle_chinese_chars, strip_accents, lowercase;
} mb_normalizer_options;

/* ---- loading ------------------------------------------------------------ */
mb_tokenizer *mb_tokenizer_load(const char *dir, mb_error *err);
void mb_tokenizer_free(mb_tokenizer *tok); /* NULL is fine */

/* ---- attributes --------------------------------------------------------- */
int32_t mb_tokenizer_vocab_size(const mb_tokenizer *tok);
/* tokenizer_config.json model_max_length (else config.json max_position_embeddings, else 512). */
int32_t mb_tokenizer_model_max_length(const mb_tokenizer *tok);
mb_special_ids mb_tokenizer_special_ids(const mb_tokenizer *tok);
mb_normalizer_options mb_tokenizer_normalizer(const mb_tokenizer *tok);
/* 1 when token_type_ids is a model input (BERT), 0 for DistilBERT. */
int mb_tokenizer_has_token_type_ids(const mb_tokenizer *tok);
/* Added (special) tokens: count and the i-th (0-based) content and id. */
int mb_tokenizer_num_added(const mb_tokenizer *tok);
const char *mb_tokenizer_added(const mb_tokenizer *tok, int i, int32_t *id);
int mb_tokenizer_is_special(const mb_tokenizer *tok, int32_t id);
const char *mb_tokenizer_prefix(const mb_tokenizer *tok); /* continuing_subword_prefix, "##" */

/* ---- vocabulary --------------------------------------------------------- */
/* Id of the exact token string (len bytes), or -1. */
int32_t mb_tokenizer_token_to_id(const mb_tokenizer *tok, const char *token, size_t len);
/* The token string of id (NUL-terminated, owned by tok), or NULL when out of range. */
const char *mb_tokenizer_id_to_token(const mb_tokenizer *tok, int32_t id, size_t *len);

/* ---- encoding ----------------------------------------------------------- */
mb_tokenizer_work *mb_tokenizer_work_new(void);
void mb_tokenizer_work_free(mb_tokenizer_work *w);

/* Encode text (len bytes; any bytes) and optionally a pair (pair == NULL for
 * none) with special tokens, truncated Hugging Face style (longest_first) to
 * max_length ids when max_length > 0. Writes min(result, cap) ids into ids and,
 * when not NULL, type_ids (0 for A, 1 for B) and offsets (2 per id: byte start
 * and end in the input the token came from; -1 -1 for template tokens).
 * Returns the number of ids of the encoding (call again with a bigger buffer when
 * it exceeds cap) or -1 with err filled (max_length too small for the template,
 * out of memory). w may be NULL (scratch buffers are then allocated per call). */
int64_t mb_tokenizer_encode(const mb_tokenizer *tok, mb_tokenizer_work *w, const char *text, size_t len,
                            const char *pair, size_t pair_len, int32_t max_length, int32_t *ids,
                            int32_t *type_ids, int32_t *offsets, size_t cap, mb_error *err);

/* Hugging Face's truncation strategies for a pair (a single sequence is cut
   at its end under longest_first and only_first). */
typedef enum mb_truncation {
    MB_TRUNC_LONGEST_FIRST = 0, /* remove from the longer of A and B, one token at a time */
    MB_TRUNC_ONLY_FIRST,        /* remove from A only (an error when A cannot give enough) */
    MB_TRUNC_ONLY_SECOND        /* remove from B only (question answering: B is the context) */
} mb_truncation;
const char *mb_truncation_name(mb_truncation t);

typedef struct mb_encode_options {
    int32_t max_length;       /* ids including special tokens; <= 0: no truncation */
    mb_truncation truncation;
    int32_t stride;           /* mb_tokenizer_encode_windows: tokens shared by consecutive windows */
} mb_encode_options;

/* mb_tokenizer_encode with a truncation strategy (o NULL: none). Errors: a
   strategy that cannot fit the pair (only_second with a first sequence that
   fills max_length), only_second without a pair. */
int64_t mb_tokenizer_encode_ex(const mb_tokenizer *tok, mb_tokenizer_work *w, const char *text, size_t len,
                               const char *pair, size_t pair_len, const mb_encode_options *o, int32_t *ids,
                               int32_t *type_ids, int32_t *offsets, size_t cap, mb_error *err);

/* Every window of a long input, as HF's return_overflowing_tokens: the
   encoding truncated by o, then the overflowing ones. The truncated sequence
   (A alone, or the one only_first / only_second names) is cut into windows of
   the length that fits; each starts (that length - stride) tokens after the
   previous, the last ends at the sequence's end; the other sequence is
   repeated whole. Pairs need only_first or only_second. Window i is ids
   [start[i], start[i+1]) of the flat arrays; offsets 2 per id as
   mb_tokenizer_encode (-1 -1 for template tokens). */
typedef struct mb_windows {
    int64_t n;
    int64_t *start;                    /* [n+1] */
    int32_t *ids, *type_ids, *offsets; /* flat */
} mb_windows;
mb_status mb_tokenizer_encode_windows(const mb_tokenizer *tok, mb_tokenizer_work *w, const char *text, size_t len,
                                      const char *pair, size_t pair_len, const mb_encode_options *o,
                                      mb_windows *out, mb_error *err);
void mb_windows_free(mb_windows *win);

typedef enum mb_padding { MB_PAD_NONE = 0, MB_PAD_LONGEST, MB_PAD_MAX_LENGTH } mb_padding;

typedef struct mb_batch_options {
    mb_padding padding;
    int32_t max_length; /* truncation and MB_PAD_MAX_LENGTH length; <= 0: model_max_length */
    int truncation;     /* 0: never truncate (max_length still sets the padded length) */
    mb_truncation strategy; /* of pairs (longest_first by default) */
} mb_batch_options;

/* A batch [batch, seq_len], row-major; malloc'd buffers owned by the caller
 * (free with mb_batch_encoding_free, or take them and set the fields to NULL). */
typedef struct mb_batch_encoding {
    int64_t batch, seq_len;
    int32_t *input_ids;      /* [batch, seq_len], pad id after each row's length */
    int32_t *attention_mask; /* [batch, seq_len], 1 for tokens, 0 for padding */
    int32_t *token_type_ids; /* [batch, seq_len] */
    int32_t *lengths;        /* [batch] ids per row before padding */
} mb_batch_encoding;

/* Encode n texts (and pairs when pairs != NULL) in parallel over mb_threads().
 * MB_PAD_NONE requires every row to have the same length (else MB_ERR_SHAPE;
 * use mb_tokenizer_lengths and mb_tokenizer_encode for ragged rows). A row
 * longer than max_length without truncation is an MB_ERR_RANGE error under
 * MB_PAD_MAX_LENGTH. */
mb_status mb_tokenizer_encode_batch(const mb_tokenizer *tok, int64_t n, const char *const *texts,
                                    const size_t *lens, const char *const *pairs, const size_t *pair_lens,
                                    const mb_batch_options *opts, mb_batch_encoding *out, mb_error *err);
void mb_batch_encoding_free(mb_batch_encoding *b);

/* Number of ids each text encodes to (with special tokens; truncated to
 * max_length when max_length > 0), in parallel. */
mb_status mb_tokenizer_lengths(const mb_tokenizer *tok, int64_t n, const char *const *texts, const size_t *lens,
                               int32_t max_length, int32_t *lengths, mb_error *err);

/* ---- decoding ----------------------------------------------------------- */
/* Hugging Face's WordPiece decoder: tokens joined by spaces, the prefix glued
 * to the previous token, then (tokenizer.json "cleanup", default on) the
 * tokenization-space cleanup (" ." -> ".", " n't" -> "n't", ...). Returns a
 * malloc'd NUL-terminated string (length in *out_len when not NULL), or NULL
 * with err filled (an id out of range). */
char *mb_tokenizer_decode(const mb_tokenizer *tok, const int32_t *ids, size_t n, int skip_special_tokens,
                          size_t *out_len, mb_error *err);
/* Python convert_tokens_to_string: " ".join(tokens).replace(" ##", "").strip(). */
char *mb_tokenizer_tokens_to_string(const mb_tokenizer *tok, const char *const *tokens, const size_t *lens,
                                    size_t n, size_t *out_len, mb_error *err);

#endif
