/* model_folder.c: see model_folder.h. */
#include "model_folder.h"

#include <stdio.h>
#include <stdlib.h>

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

mb_status mb_model_folder_save(const char *dir, const mb_distilbert_config *cfg, const char *architecture,
                               const void *model, int n, mb_param_at at, mb_error *err) {
    if (mb_make_dirs(dir, err) != MB_OK) return err ? err->code : MB_ERR_IO;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (cfg && mb_config_save(cfg, path, architecture, err) != MB_OK) return err ? err->code : MB_ERR_IO;
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
