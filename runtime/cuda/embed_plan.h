/* embed_plan.h: the deterministic embedding backward, planned on the host.
 *
 * dwte[id] += sum of dout over the positions holding id. Atomics on the
 * device would add in a different order on every run; instead the host
 * groups the batch's positions by token id (a counting sort, stable, so
 * positions stay ascending) and the kernel gives each touched vocabulary row
 * one thread block that sums its positions in that fixed order. The result
 * is bit-identical from run to run, and equal to a naive serial loop over
 * positions when the row starts at zero. padding_idx rows get no gradient
 * (nn.Embedding(padding_idx)). Cost: O(B*T + vocab) on the host per batch;
 * the plan (rows, start, pos) is what goes to the device with the batch.
 */
#ifndef MB_CUDA_EMBED_PLAN_H
#define MB_CUDA_EMBED_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "../error.h"

typedef struct mb_embed_plan {
    int n_rows;      /* distinct ids touched (padding excluded) */
    int n_pos;       /* positions counted (padding excluded) */
    int32_t *rows;   /* [n_rows] ids, ascending */
    int32_t *start;  /* [n_rows + 1] row r owns pos[start[r] .. start[r+1]) */
    int32_t *pos;    /* [n_pos] flat positions b*T + t, ascending within a row */
    /* scratch, grown as needed */
    int32_t *count;  /* [vocab] */
    size_t cap_n, cap_vocab;
} mb_embed_plan;

/* Plan for ids[n] (0 <= id < vocab; checked). Reuses p's buffers. */
mb_status mb_embed_plan_build(mb_embed_plan *p, const int32_t *ids, int n, int vocab, int padding_idx, mb_error *err);
void mb_embed_plan_free(mb_embed_plan *p);
/* What the kernel computes, on the host: dwte[rows[r]] += sum over the row's
   positions, in order, of dout[pos, :C]. */
void mb_embed_plan_apply(const mb_embed_plan *p, float *dwte, const float *dout, int C);

#endif
