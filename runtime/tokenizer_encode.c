/* tokenizer_encode.c: encodings from word pieces (see tokenizer.h): the BERT
 * post-processor template ([CLS] A [SEP] B [SEP]), Hugging Face's truncation
 * strategies, overflowing windows with a stride, and batches encoded in
 * parallel over OpenMP into padded [B,T] arrays. The word pieces themselves
 * come from tokenizer_wordpiece.c (mb_tokenizer_pieces).
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include "parallel.h"

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
    else if (mb_tokenizer_pieces(tok, w, text, len, pair, pair_len, offsets != NULL, err) == 0 &&
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
    if (mb_tokenizer_pieces(tok, w, text, len, pair, pair_len, 1, err) != 0 ||
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
