/* model_folder.c: see model_folder.h. */
#include "model_folder.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "tensor.h"

mb_status mb_param_read(const char *path, const mb_st_tensor *t, const mb_param_info *pi, float *dst,
                        const char *hint, mb_error *err) {
    int same = t->ndim == pi->ndim && t->shape[0] == pi->shape[0] && (pi->ndim == 1 || t->shape[1] == pi->shape[1]);
    if (!same) {
        char a[96], b[96];
        return mb_fail(err, MB_ERR_SHAPE, "%s: tensor '%s' has shape %s but config.json needs %s%s", path, t->name,
                       mb_shape_str(t->ndim, t->shape, a, sizeof a), mb_shape_str(pi->ndim, pi->shape, b, sizeof b),
                       hint);
    }
    if (!mb_st_dtype_is_float(t->dtype))
        return mb_fail(err, MB_ERR_DTYPE, "%s: tensor '%s' has dtype %s; F32, F16 or BF16 expected", path, t->name,
                       mb_st_dtype_name(t->dtype));
    return mb_safetensors_read_f32(t, dst, err);
}

/* ---- warnings ------------------------------------------------------------ */

void mb_name_list_add(mb_name_list *l, const char *name) {
    size_t need = l->len + strlen(name) + 5;
    if (need > l->cap) {
        size_t cap = need * 2;
        char *s = realloc(l->s, cap);
        if (!s) return;
        l->s = s;
        l->cap = cap;
    }
    l->len += (size_t)sprintf(l->s + l->len, "%s'%s'", l->n ? ", " : "", name);
    l->n++;
}

const char *mb_name_list_str(const mb_name_list *l) { return l->s ? l->s : ""; }

void mb_name_list_free(mb_name_list *l) {
    free(l->s);
    *l = (mb_name_list){0};
}

void mb_warnings_append(char **warnings, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int add = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (add < 0) return;
    size_t old = *warnings ? strlen(*warnings) : 0;
    char *w = realloc(*warnings, old + (size_t)add + 2);
    if (!w) return;
    if (old) w[old++] = '\n';
    va_start(ap, fmt);
    vsnprintf(w + old, (size_t)add + 1, fmt, ap);
    va_end(ap);
    *warnings = w;
}

void mb_warn_newly_initialized(char **warnings, const char *architecture, const char *dir, const char *missing) {
    mb_warnings_append(warnings,
                       "Some weights of %s were not initialized from the model checkpoint at %s and are newly "
                       "initialized: [%s]\nYou should probably TRAIN this model on a down-stream task to be able to "
                       "use it for predictions and inference.", architecture, dir, missing);
}

/* ---- load ------------------------------------------------------------------ */

mb_safetensors *mb_model_folder_open(const char *dir, char *path, size_t cap, mb_error *err) {
    snprintf(path, cap, "%s/model.safetensors", dir);
    return mb_safetensors_open(path, err);
}

/* The checkpoint's tensor for parameter pi: its name, then (legacy_layernorm)
   LayerNorm.gamma / .beta, then (encoder) a base model's names without the prefix. */
static const mb_st_tensor *find_tensor(const mb_safetensors *st, const mb_ckpt_rules *r, const mb_param_info *pi) {
    const char *name = pi->name;
    char alt[MB_PARAM_NAME_MAX + 8];
    const char *cands[4] = {name, NULL, NULL, NULL};
    int n = 1;
    const char *ln = r->legacy_layernorm ? strstr(name, "LayerNorm.") : NULL;
    if (ln) {
        const char *what = ln + strlen("LayerNorm.");
        snprintf(alt, sizeof alt, "%.*sLayerNorm.%s", (int)(ln - name), name,
                 strcmp(what, "weight") == 0 ? "gamma" : "beta");
        cands[n++] = alt;
    }
    size_t plen = r->base_prefix ? strlen(r->base_prefix) : 0;
    if (pi->encoder && plen && strncmp(name, r->base_prefix, plen) == 0) {
        cands[n++] = name + plen;
        if (ln) cands[n++] = alt + plen;
    }
    for (int i = 0; i < n; i++) {
        const mb_st_tensor *t = mb_safetensors_find(st, cands[i]);
        if (t) return t;
    }
    return NULL;
}

mb_status mb_params_read(const mb_safetensors *st, const char *path, const mb_ckpt_rules *r, void *model,
                         const mb_param_info *info, int n, float *params, char *used, mb_name_list *missing,
                         mb_error *err) {
    for (int i = 0; i < n; i++) {
        const mb_param_info *pi = &info[i];
        const mb_st_tensor *t = find_tensor(st, r, pi);
        if (!t) {
            if (pi->encoder && !(r->optional && strstr(pi->name, r->optional)))
                return mb_fail(err, MB_ERR_FORMAT, "%s: missing tensor '%s' (is this a %s checkpoint for this config?)",
                               path, pi->name, r->family);
            mb_name_list_add(missing, pi->name);
            r->init(model, i);
            continue;
        }
        if (used) used[t - st->tensors] = 1;
        if (mb_param_read(path, t, pi, params + pi->offset, pi->encoder ? "" : r->head_hint, err) != MB_OK)
            return err ? err->code : MB_ERR_FORMAT;
    }
    return MB_OK;
}

/* ---- save ------------------------------------------------------------------ */

static mb_status write_weights(const char *dir, const void *model, int n, mb_param_at at, mb_error *err) {
    char path[4096];
    mb_st_entry *e = calloc((size_t)n, sizeof *e);
    if (!e) return mb_fail(err, MB_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const float *data = NULL;
        const mb_param_info *pi = at(model, i, &data);
        e[i] = (mb_st_entry){pi->name, MB_ST_F32, pi->ndim, pi->shape, data};
    }
    mb_st_meta meta[] = {{"format", "pt"}};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    mb_status rc = mb_safetensors_write(path, e, n, meta, 1, err);
    free(e);
    return rc;
}

mb_status mb_model_folder_save(const char *dir, const mb_distilbert_config *cfg, const char *architecture,
                               const void *model, int n, mb_param_at at, mb_error *err) {
    if (mb_make_dirs(dir, err) != MB_OK) return err ? err->code : MB_ERR_IO;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (mb_config_save(cfg, path, architecture, err) != MB_OK) return err ? err->code : MB_ERR_IO;
    return write_weights(dir, model, n, at, err);
}

mb_status mb_model_folder_save_json(const char *dir, const char *config_json, const void *model, int n,
                                    mb_param_at at, mb_error *err) {
    if (mb_make_dirs(dir, err) != MB_OK) return err ? err->code : MB_ERR_IO;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t len = strlen(config_json);
    char *text = malloc(len + 1);
    if (!text) return mb_fail(err, MB_ERR_NOMEM, "out of memory");
    memcpy(text, config_json, len);
    text[len] = '\n';
    mb_status rc = mb_write_file_durable(path, text, len + 1, err);
    free(text);
    return rc != MB_OK ? rc : write_weights(dir, model, n, at, err);
}
