/* embed_plan.c: host-side grouping of positions by token id (see embed_plan.h). */
#include "embed_plan.h"

#include <stdlib.h>
#include <string.h>

static int grow(int32_t **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 1;
    int32_t *b = realloc(*buf, need * sizeof *b);
    if (!b) return 0;
    *buf = b;
    *cap = need;
    return 1;
}

mb_status mb_embed_plan_build(mb_embed_plan *p, const int32_t *ids, int n, int vocab, int padding_idx, mb_error *err) {
    if (n < 0 || vocab < 1) return mb_fail(err, MB_ERR_ARG, "embedding plan: %d positions, vocabulary %d", n, vocab);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return mb_fail(err, MB_ERR_RANGE, "embedding plan: id %d at position %d is outside 0..%d", ids[i], i,
                           vocab - 1);
    size_t cap_n = p->cap_n, cap_v = p->cap_vocab;
    size_t need_n = (size_t)n + 1;
    /* rows, start and pos share cap_n (each at most n + 1 entries) */
    if (need_n > cap_n) {
        size_t c1 = cap_n, c2 = cap_n, c3 = cap_n;
        if (!grow(&p->rows, &c1, need_n) || !grow(&p->start, &c2, need_n) || !grow(&p->pos, &c3, need_n))
            return mb_fail(err, MB_ERR_NOMEM, "embedding plan: out of memory for %d positions", n);
        p->cap_n = need_n;
    }
    if (!grow(&p->count, &cap_v, (size_t)vocab + 1))
        return mb_fail(err, MB_ERR_NOMEM, "embedding plan: out of memory for a vocabulary of %d", vocab);
    p->cap_vocab = cap_v;
    memset(p->count, 0, ((size_t)vocab + 1) * sizeof *p->count);
    int n_pos = 0;
    for (int i = 0; i < n; i++)
        if (ids[i] != padding_idx) {
            p->count[ids[i]]++;
            n_pos++;
        }
    /* rows in ascending id order; count[] becomes each row's write cursor */
    int n_rows = 0, at = 0;
    for (int v = 0; v < vocab; v++) {
        int c = p->count[v];
        if (!c) continue;
        p->rows[n_rows] = v;
        p->start[n_rows] = at;
        p->count[v] = at;
        n_rows++;
        at += c;
    }
    p->start[n_rows] = at;
    for (int i = 0; i < n; i++) /* stable: positions ascend within a row */
        if (ids[i] != padding_idx) p->pos[p->count[ids[i]]++] = i;
    p->n_rows = n_rows;
    p->n_pos = n_pos;
    return MB_OK;
}

void mb_embed_plan_free(mb_embed_plan *p) {
    if (!p) return;
    free(p->rows);
    free(p->start);
    free(p->pos);
    free(p->count);
    memset(p, 0, sizeof *p);
}

void mb_embed_plan_apply(const mb_embed_plan *p, float *dwte, const float *dout, int C) {
    for (int r = 0; r < p->n_rows; r++) {
        float *row = dwte + (size_t)p->rows[r] * C;
        for (int c = 0; c < C; c++) {
            float acc = 0.0f;
            for (int k = p->start[r]; k < p->start[r + 1]; k++) acc += dout[(size_t)p->pos[k] * C + c];
            row[c] += acc;
        }
    }
}
