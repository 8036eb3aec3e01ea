/* token_head.c: see token_head.h. */
#include "token_head.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "activations.h"
#include "layers.h"

void mb_token_head_free(mb_token_head *h) {
    if (!h) return;
    free(h->f);
    free(h->u8);
    free(h->i32);
    memset(h, 0, sizeof *h);
}

static mb_status grow(mb_token_head *h, size_t nf, size_t nu, size_t ni, mb_error *err) {
    h->f = mb_grow(h->f, &h->cap_f, nf * sizeof(float));
    h->u8 = mb_grow(h->u8, &h->cap_u8, nu);
    h->i32 = mb_grow(h->i32, &h->cap_i, ni * sizeof(int32_t));
    if (!h->f || !h->u8 || !h->i32) return mb_fail(err, MB_ERR_NOMEM, "out of memory for the token head");
    return MB_OK;
}

mb_status mb_token_head_forward(mb_token_head *h, const float *hidden, int B, int T, int D, int L, const float *w,
                                const float *b, float p, int train, mb_rng *rng, mb_error *err) {
    size_t N = (size_t)B * T;
    int drop = train && p > 0.0f;
    if (grow(h, N * D * (drop ? 1 : 0) + 3 * N * L + 2 * N + 3 * N + 64, drop ? N * D : 1, 2 * N + 2, err) != MB_OK)
        return err ? err->code : MB_ERR_NOMEM;
    float *q = h->f;
    h->dropped = drop ? q : (float *)hidden;
    q += drop ? N * D : 0;
    h->logits = q; q += N * L;
    h->probs = q; q += N * L;
    h->dlogits = q; q += N * L;
    h->start = q; q += N;
    h->end = q; q += N;
    h->per_row = q;
    h->drop = h->u8;
    h->labels = h->i32;
    h->N = (int)N;
    h->D = D;
    h->L = L;
    h->B = B;
    h->T = T;
    h->p = p;
    h->train = drop;
    h->hidden = hidden;
    h->have_loss = 0;
    if (drop) {
        dropout_mask(h->drop, (long)N * D, p, rng);
        dropout_apply(h->dropped, hidden, h->drop, p, (long)N * D);
    }
    linear_forward(h->logits, h->dropped, w, b, (int)N, D, L);
    if (L == 2)
        for (size_t r = 0; r < N; r++) {
            h->start[r] = h->logits[2 * r];
            h->end[r] = h->logits[2 * r + 1];
        }
    return MB_OK;
}

const float *mb_token_head_start(const mb_token_head *h) { return h->L == 2 ? h->start : NULL; }
const float *mb_token_head_end(const mb_token_head *h) { return h->L == 2 ? h->end : NULL; }

mb_status mb_token_head_loss(mb_token_head *h, const int32_t *labels, double *loss, int *count, mb_error *err) {
    if (!h->logits) return mb_fail(err, MB_ERR_STATE, "loss needs a forward pass first");
    const int N = h->N, L = h->L, T = h->T;
    for (int r = 0; r < N; r++)
        if (labels[r] != -100 && (labels[r] < 0 || labels[r] >= L))
            return mb_fail(err, MB_ERR_RANGE, "labels[%d][%d] = %d is outside 0..%d (num_labels %d) and is not -100",
                           r / T + 1, r % T + 1, labels[r], L - 1, L);
    double mean;
    int cnt;
    crossentropy_forward(h->per_row, h->probs, h->logits, labels, N, L, &mean, &cnt);
    if (cnt == 0) return mb_fail(err, MB_ERR_ARG, "every label is -100 (ignored): the loss is undefined");
    if (!isfinite(mean)) return mb_fail(err, MB_ERR_NUMERIC, "loss is not finite (logits are not finite)");
    crossentropy_backward(h->dlogits, h->probs, labels, N, L, 1.0f / cnt);
    if (count) *count = cnt;
    *loss = mean;
    h->have_loss = 1;
    return MB_OK;
}

mb_status mb_token_head_qa_loss(mb_token_head *h, const int32_t *start, const int32_t *end, double *loss,
                                mb_error *err) {
    if (!h->logits || h->L != 2) return mb_fail(err, MB_ERR_STATE, "the QA loss needs a question-answering forward first");
    const int B = h->B, T = h->T;
    /* HF: positions clamped to [0, T]; T (outside this window) is ignored */
    for (int b = 0; b < B; b++) {
        int s = start[b] < 0 ? 0 : start[b] > T ? T : start[b];
        int e = end[b] < 0 ? 0 : end[b] > T ? T : end[b];
        h->labels[b] = s == T ? -100 : s;
        h->labels[B + b] = e == T ? -100 : e;
    }
    double ms, me;
    int cs, ce;
    float *pstart = h->probs, *pend = h->probs + (size_t)B * T;
    crossentropy_forward(h->per_row, pstart, h->start, h->labels, B, T, &ms, &cs);
    crossentropy_forward(h->per_row + B, pend, h->end, h->labels + B, B, T, &me, &ce);
    if (cs == 0 || ce == 0)
        return mb_fail(err, MB_ERR_ARG, "every %s position is outside the sequence (ignored): the loss is undefined",
                       cs == 0 ? "start" : "end");
    double total = (ms + me) / 2.0;
    if (!isfinite(total)) return mb_fail(err, MB_ERR_NUMERIC, "loss is not finite (logits are not finite)");
    /* d start [B,T], then d end, through scratch after the 2B per-example
       losses (per_row holds 3N floats), interleaved into dlogits [N,2] */
    float *tmp = h->per_row + 2 * B;
    crossentropy_backward(tmp, pstart, h->labels, B, T, 0.5f / cs);
    for (long r = 0; r < (long)B * T; r++) h->dlogits[2 * r] = tmp[r];
    crossentropy_backward(tmp, pend, h->labels + B, B, T, 0.5f / ce);
    for (long r = 0; r < (long)B * T; r++) h->dlogits[2 * r + 1] = tmp[r];
    *loss = total;
    h->have_loss = 1;
    return MB_OK;
}

mb_status mb_token_head_backward(mb_token_head *h, const float *w, float *gw, float *gb, float *d_hidden,
                                 mb_error *err) {
    if (!h->have_loss) return mb_fail(err, MB_ERR_STATE, "backward needs forward and loss first");
    h->have_loss = 0;
    linear_backward(d_hidden, gw, gb, h->dlogits, h->dropped, w, h->N, h->D, h->L, 0);
    if (d_hidden && h->train) dropout_apply(d_hidden, d_hidden, h->drop, h->p, (long)h->N * h->D);
    return MB_OK;
}
