/* tensor_format.c: a tensor as text, PyTorch style (runtime/tensor.h): what
 * tostring(t) shows in Lua and the repl prints,
 *
 *   tensor([[1.0000, 2.0000],
 *           [3.0000, 4.0000]], shape=[2,2], dtype=float32)
 *
 * A tensor of more than SUMMARY_MIN elements shows EDGE values at each end of
 * a dimension with "..." between; innermost rows wrap at LINE_WIDTH columns,
 * as PyTorch's linewidth; float32 values switch to %.4e when the shown finite
 * non-zero magnitudes reach 1e5 or go below 1e-4. Device memory is not read:
 * a tensor on a GPU shows its shape and dtype only. The text goes out through
 * a callback, so the caller decides where it lands (a luaL_Buffer) and this
 * file allocates nothing.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tensor.h"

#define EDGE 3           /* elements shown at each end of a summarised dimension */
#define SUMMARY_MIN 1000 /* tensors with more elements are summarised */
#define LINE_WIDTH 80

typedef struct fmt_state {
    const mb_tensor *t;
    int summarize, sci, width;
    double maxabs, minabs; /* over finite non-zero shown values */
    mb_text_sink put;      /* NULL while measuring */
    void *ctx;
} fmt_state;

static void put_str(const fmt_state *s, const char *text) { s->put(s->ctx, text, strlen(text)); }
static void put_char(const fmt_state *s, char c) { s->put(s->ctx, &c, 1); }

static int fmt_value(const fmt_state *s, int64_t off, char *buf, size_t n) {
    if (s->t->dtype == MB_INT32) return snprintf(buf, n, "%d", (int)((const int32_t *)s->t->storage->data)[off]);
    double v = ((const float *)s->t->storage->data)[off];
    if (isnan(v)) return snprintf(buf, n, "nan");
    if (isinf(v)) return snprintf(buf, n, v > 0 ? "inf" : "-inf");
    return snprintf(buf, n, s->sci ? "%.4e" : "%.4f", v);
}

/* mode 0: gather magnitudes, 1: measure widths, 2: write. */
static void fmt_rec(fmt_state *s, int mode, int d, int64_t off) {
    const mb_tensor *t = s->t;
    if (d == t->ndim) {
        if (mode == 0) {
            if (t->dtype == MB_FLOAT32) {
                double a = fabs((double)((const float *)t->storage->data)[off]);
                if (isfinite(a) && a > 0) {
                    if (a > s->maxabs) s->maxabs = a;
                    if (a < s->minabs) s->minabs = a;
                }
            }
            return;
        }
        char buf[64];
        int len = fmt_value(s, off, buf, sizeof buf);
        if (mode == 1) {
            if (len > s->width) s->width = len;
        } else {
            for (int i = len; i < s->width; i++) put_char(s, ' ');
            put_str(s, buf);
        }
        return;
    }
    int64_t n = t->shape[d];
    /* Innermost rows wrap at LINE_WIDTH columns, as PyTorch's linewidth. */
    int indent = 7 + d + 1; /* 7 = strlen("tensor(") */
    int per_line = (LINE_WIDTH - indent) / (s->width + 2);
    if (per_line < 1) per_line = 1;
    int on_line = 0;
    if (mode == 2) put_char(s, '[');
    for (int64_t i = 0; i < n; i++) {
        if (s->summarize && n > 2 * EDGE && i == EDGE) {
            if (mode == 2) put_str(s, "...");
            i = n - EDGE - 1;
        } else {
            fmt_rec(s, mode, d + 1, off + i * t->stride[d]);
        }
        if (mode == 2 && i < n - 1) {
            put_char(s, ',');
            if (d == t->ndim - 1) {
                if (++on_line == per_line) {
                    on_line = 0;
                    put_char(s, '\n');
                    for (int k = 0; k < indent; k++) put_char(s, ' ');
                } else {
                    put_char(s, ' ');
                }
            } else {
                for (int k = d; k < t->ndim - 1; k++) put_char(s, '\n');
                for (int k = 0; k < indent; k++) put_char(s, ' ');
            }
        }
    }
    if (mode == 2) put_char(s, ']');
}

void mb_tensor_format(const mb_tensor *t, mb_text_sink put, void *ctx) {
    char shape[96], tail[160];
    mb_shape_str(t->ndim, t->shape, shape, sizeof shape);
    if (t->storage->device != MB_CPU) { /* no peeking into device memory */
        snprintf(tail, sizeof tail, "tensor(<on cuda>, shape=%s, dtype=%s)", shape, mb_dtype_name(t->dtype));
        put(ctx, tail, strlen(tail));
        return;
    }
    fmt_state s = {t, mb_tensor_numel(t) > SUMMARY_MIN, 0, 0, 0, INFINITY, NULL, NULL};
    fmt_rec(&s, 0, 0, t->offset);
    s.sci = s.maxabs >= 1e5 || (s.maxabs > 0 && s.minabs < 1e-4);
    fmt_rec(&s, 1, 0, t->offset);
    s.put = put;
    s.ctx = ctx;
    put_str(&s, "tensor(");
    fmt_rec(&s, 2, 0, t->offset);
    snprintf(tail, sizeof tail, ", shape=%s, dtype=%s)", shape, mb_dtype_name(t->dtype));
    put_str(&s, tail);
}
