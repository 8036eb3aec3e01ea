/* safetensors.c: mmap reader with strict header validation, dtype conversion, writer. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const DTYPE_NAMES[MB_ST_NDTYPES] = {
    "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"};
static const size_t DTYPE_SIZES[MB_ST_NDTYPES] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1};

const char *mb_st_dtype_name(mb_st_dtype dtype) {
    return (unsigned)dtype < MB_ST_NDTYPES ? DTYPE_NAMES[dtype] : "?";
}
size_t mb_st_dtype_size(mb_st_dtype dtype) {
    return (unsigned)dtype < MB_ST_NDTYPES ? DTYPE_SIZES[dtype] : 0;
}
int mb_st_dtype_is_float(mb_st_dtype d) {
    return d == MB_ST_F32 || d == MB_ST_F16 || d == MB_ST_BF16 || d == MB_ST_F64;
}

static int dtype_from_name(const char *s, mb_st_dtype *out) {
    for (int i = 0; i < MB_ST_NDTYPES; i++)
        if (strcmp(s, DTYPE_NAMES[i]) == 0) {
            *out = (mb_st_dtype)i;
            return 1;
        }
    return 0;
}

/* ---- header validation -------------------------------------------------- */

typedef struct span {
    uint64_t begin, end;
    int index;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->index - y->index;
}

static void free_contents(mb_safetensors *st) {
    for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta[i].key);
        free(st->meta[i].value);
    }
    free(st->tensors);
    free(st->meta);
}

/* Read one entry {"dtype":..., "shape":[...], "data_offsets":[b,e]}. */
static mb_status parse_entry(const char *name, json_t *v, uint64_t data_size, mb_st_tensor *t,
                             span *sp, mb_error *err) {
    if (!json_is_object(v)) return mb_fail(err, MB_ERR_FORMAT, "tensor '%s': entry is not an object", name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd)) return mb_fail(err, MB_ERR_FORMAT, "tensor '%s': missing string 'dtype'", name);
    if (!dtype_from_name(json_string_value(jd), &t->dtype))
        return mb_fail(err, MB_ERR_DTYPE, "tensor '%s': unknown dtype '%s' (known: F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL)",
                       name, json_string_value(jd));
    if (!json_is_array(js)) return mb_fail(err, MB_ERR_FORMAT, "tensor '%s': missing array 'shape'", name);
    size_t nd = json_array_size(js);
    if (nd > MB_ST_MAX_DIMS)
        return mb_fail(err, MB_ERR_FORMAT, "tensor '%s': %zu dimensions (at most %d supported)", name, nd, MB_ST_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return mb_fail(err, MB_ERR_FORMAT, "tensor '%s': shape[%zu] is not a non-negative integer", name, i);
        uint64_t s = (uint64_t)json_integer_value(d);
        if (s != 0 && numel > UINT64_MAX / 16 / s)
            return mb_fail(err, MB_ERR_FORMAT, "tensor '%s': shape is too large", name);
        numel *= s;
        t->shape[i] = (int64_t)s;
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return mb_fail(err, MB_ERR_FORMAT, "tensor '%s': 'data_offsets' must be [begin, end] integers", name);
    json_int_t b = json_integer_value(json_array_get(jo, 0)), e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < b)
        return mb_fail(err, MB_ERR_FORMAT, "tensor '%s': data_offsets [%lld, %lld] are not an increasing range",
                       name, (long long)b, (long long)e);
    uint64_t nbytes = numel * mb_st_dtype_size(t->dtype);
    if ((uint64_t)(e - b) != nbytes)
        return mb_fail(err, MB_ERR_FORMAT,
                       "tensor '%s': data_offsets [%lld, %lld] hold %lld bytes but shape and dtype %s need %llu",
                       name, (long long)b, (long long)e, (long long)(e - b), mb_st_dtype_name(t->dtype),
                       (unsigned long long)nbytes);
    if ((uint64_t)e > data_size)
        return mb_fail(err, MB_ERR_FORMAT,
                       "tensor '%s': data_offsets end %lld runs past the end of the data (%llu bytes; file truncated?)",
                       name, (long long)e, (unsigned long long)data_size);
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)nbytes;
    sp->begin = (uint64_t)b;
    sp->end = (uint64_t)e;
    return MB_OK;
}

mb_safetensors *mb_safetensors_parse(const void *buf, size_t size, mb_error *err) {
    const unsigned char *p = buf;
    if (size < 8) {
        mb_fail(err, MB_ERR_FORMAT, "file is %zu bytes, too short for a safetensors header (truncated?)", size);
        return NULL;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > MB_ST_MAX_HEADER) {
        mb_fail(err, MB_ERR_FORMAT, "header length %llu exceeds the %u-byte limit (not a safetensors file?)",
                (unsigned long long)hlen, MB_ST_MAX_HEADER);
        return NULL;
    }
    if (hlen > size - 8) {
        mb_fail(err, MB_ERR_FORMAT, "header length %llu runs past the end of the file (%zu bytes; truncated?)",
                (unsigned long long)hlen, size);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        mb_fail(err, MB_ERR_FORMAT, "header is not valid JSON: %s (at byte %d)", jerr.text, jerr.position);
        return NULL;
    }
    mb_safetensors *st = calloc(1, sizeof *st);
    span *spans = NULL;
    if (!st) goto nomem;
    if (!json_is_object(root)) {
        mb_fail(err, MB_ERR_FORMAT, "header is not a JSON object");
        goto fail;
    }
    const uint64_t data_size = size - 8 - hlen;
    const unsigned char *data = p + 8 + hlen;
    size_t n_obj = json_object_size(root);
    st->tensors = calloc(n_obj ? n_obj : 1, sizeof *st->tensors);
    spans = calloc(n_obj ? n_obj : 1, sizeof *spans);
    if (!st->tensors || !spans) goto nomem;

    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                mb_fail(err, MB_ERR_FORMAT, "__metadata__ is not an object");
                goto fail;
            }
            size_t nm = json_object_size(val);
            st->meta = calloc(nm ? nm : 1, sizeof *st->meta);
            if (!st->meta) goto nomem;
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    mb_fail(err, MB_ERR_FORMAT, "__metadata__ value for '%s' is not a string", mk);
                    goto fail;
                }
                st->meta[st->n_meta].key = strdup(mk);
                st->meta[st->n_meta].value = strdup(json_string_value(mv));
                st->n_meta++;
                if (!st->meta[st->n_meta - 1].key || !st->meta[st->n_meta - 1].value) goto nomem;
            }
            continue;
        }
        mb_st_tensor *t = &st->tensors[st->n_tensors];
        span *sp = &spans[st->n_tensors];
        if (parse_entry(key, val, data_size, t, sp, err) != MB_OK) goto fail;
        t->name = strdup(key);
        if (!t->name) goto nomem;
        t->data = data + sp->begin;
        sp->index = st->n_tensors;
        st->n_tensors++;
    }
    /* Overlap check on spans sorted by offset; the tensor list takes that order. */
    qsort(spans, (size_t)st->n_tensors, sizeof *spans, span_cmp);
    for (int i = 1; i < st->n_tensors; i++) {
        if (spans[i].begin < spans[i - 1].end) {
            mb_fail(err, MB_ERR_FORMAT, "tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap",
                    st->tensors[spans[i - 1].index].name, (unsigned long long)spans[i - 1].begin,
                    (unsigned long long)spans[i - 1].end, st->tensors[spans[i].index].name,
                    (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end);
            goto fail;
        }
    }
    mb_st_tensor *ordered = calloc(st->n_tensors ? (size_t)st->n_tensors : 1, sizeof *ordered);
    if (!ordered) goto nomem;
    for (int i = 0; i < st->n_tensors; i++) ordered[i] = st->tensors[spans[i].index];
    free(st->tensors);
    st->tensors = ordered;
    free(spans);
    json_decref(root);
    return st;

nomem:
    mb_fail(err, MB_ERR_NOMEM, "out of memory reading the header");
fail:
    free(spans);
    if (st) {
        free_contents(st);
        free(st);
    }
    json_decref(root);
    return NULL;
}

mb_safetensors *mb_safetensors_open(const char *path, mb_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        mb_fail(err, MB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        mb_fail(err, MB_ERR_IO, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)sb.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            mb_fail(err, MB_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
            close(fd);
            return NULL;
        }
    }
    close(fd);
    static const unsigned char empty[1];
    mb_safetensors *st = mb_safetensors_parse(map ? map : (const void *)empty, size, err);
    if (!st) {
        if (map) munmap(map, size);
        mb_error_prefix(err, "%s: ", path);
        return NULL;
    }
    st->map = map;
    st->map_size = size;
    return st;
}

void mb_safetensors_close(mb_safetensors *st) {
    if (!st) return;
    if (st->map) munmap(st->map, st->map_size);
    free_contents(st);
    free(st);
}

const mb_st_tensor *mb_safetensors_find(const mb_safetensors *st, const char *name) {
    for (int i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *mb_safetensors_meta(const mb_safetensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[i].key, key) == 0) return st->meta[i].value;
    return NULL;
}

/* ---- conversion --------------------------------------------------------- */

float mb_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float mb_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Little-endian loads from possibly unaligned memory (the machines we run on
   are little-endian; memcpy keeps UBSan and strict-alignment targets happy). */
static inline uint16_t ld16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

mb_status mb_safetensors_read_f32(const mb_st_tensor *t, float *out, mb_error *err) {
    const unsigned char *p = t->data;
    int64_t n = t->numel;
    switch (t->dtype) {
    case MB_ST_F32: memcpy(out, p, (size_t)n * 4); return MB_OK;
    case MB_ST_F16:
        for (int64_t i = 0; i < n; i++) out[i] = mb_f16_to_f32(ld16(p + 2 * i));
        return MB_OK;
    case MB_ST_BF16:
        for (int64_t i = 0; i < n; i++) out[i] = mb_bf16_to_f32(ld16(p + 2 * i));
        return MB_OK;
    case MB_ST_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            out[i] = (float)d;
        }
        return MB_OK;
    default:
        return mb_fail(err, MB_ERR_DTYPE, "tensor '%s': dtype %s is not a float type (F32, F16, BF16, F64 expected)",
                       t->name, mb_st_dtype_name(t->dtype));
    }
}

mb_status mb_safetensors_read_i32(const mb_st_tensor *t, int32_t *out, mb_error *err) {
    const unsigned char *p = t->data;
    int64_t n = t->numel;
    for (int64_t i = 0; i < n; i++) {
        int64_t v;
        switch (t->dtype) {
        case MB_ST_I32: { int32_t x; memcpy(&x, p + 4 * i, 4); v = x; break; }
        case MB_ST_I64: memcpy(&v, p + 8 * i, 8); break;
        case MB_ST_I16: { int16_t x; memcpy(&x, p + 2 * i, 2); v = x; break; }
        case MB_ST_I8: v = (int8_t)p[i]; break;
        case MB_ST_U8: v = p[i]; break;
        case MB_ST_BOOL: v = p[i] != 0; break;
        default:
            return mb_fail(err, MB_ERR_DTYPE, "tensor '%s': dtype %s is not an integer type",
                           t->name, mb_st_dtype_name(t->dtype));
        }
        if (v < INT32_MIN || v > INT32_MAX)
            return mb_fail(err, MB_ERR_RANGE, "tensor '%s': element %lld (%lld) does not fit in int32",
                           t->name, (long long)i, (long long)v);
        out[i] = (int32_t)v;
    }
    return MB_OK;
}

/* ---- writing ------------------------------------------------------------ */

mb_status mb_safetensors_write(const char *path, const mb_st_entry *entries, int n,
                               const mb_st_meta *meta, int n_meta, mb_error *err) {
    json_t *root = json_object();
    char *header = NULL;
    char *tmp = NULL;
    FILE *f = NULL;
    mb_status rc = MB_OK;
    if (!root) return mb_fail(err, MB_ERR_NOMEM, "%s: out of memory", path);
    if (n_meta > 0) {
        json_t *m = json_object();
        for (int i = 0; i < n_meta; i++) json_object_set_new(m, meta[i].key, json_string(meta[i].value));
        json_object_set_new(root, "__metadata__", m);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const mb_st_entry *e = &entries[i];
        if (e->dtype != MB_ST_F32 && e->dtype != MB_ST_I32) {
            rc = mb_fail(err, MB_ERR_DTYPE, "%s: tensor '%s': only F32 and I32 are written", path, e->name);
            goto done;
        }
        if (e->ndim < 0 || e->ndim > MB_ST_MAX_DIMS) {
            rc = mb_fail(err, MB_ERR_ARG, "%s: tensor '%s': %d dimensions", path, e->name, e->ndim);
            goto done;
        }
        if (strcmp(e->name, "__metadata__") == 0 || json_object_get(root, e->name)) {
            rc = mb_fail(err, MB_ERR_ARG, "%s: tensor name '%s' is reserved or used twice", path, e->name);
            goto done;
        }
        uint64_t numel = 1;
        json_t *shape = json_array();
        for (int d = 0; d < e->ndim; d++) {
            numel *= (uint64_t)e->shape[d];
            json_array_append_new(shape, json_integer(e->shape[d]));
        }
        uint64_t nb = numel * 4;
        json_t *ent = json_object();
        json_object_set_new(ent, "dtype", json_string(mb_st_dtype_name(e->dtype)));
        json_object_set_new(ent, "shape", shape);
        json_object_set_new(ent, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)(off + nb)));
        json_object_set_new(root, e->name, ent);
        off += nb;
    }
    header = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!header) {
        rc = mb_fail(err, MB_ERR_NOMEM, "%s: cannot encode the header", path);
        goto done;
    }
    size_t hl = strlen(header), padded = (hl + 7) / 8 * 8;
    size_t plen = strlen(path) + 16;
    tmp = malloc(plen);
    if (!tmp) {
        rc = mb_fail(err, MB_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    snprintf(tmp, plen, "%s.tmp%d", path, (int)getpid());
    f = fopen(tmp, "wb");
    if (!f) {
        rc = mb_fail(err, MB_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(((uint64_t)padded >> (8 * i)) & 0xff);
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(header, 1, hl, f) == hl;
    for (size_t i = hl; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    for (int i = 0; ok && i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < entries[i].ndim; d++) numel *= (size_t)entries[i].shape[d];
        ok = numel == 0 || fwrite(entries[i].data, 4, numel, f) == numel;
    }
    /* on disk before the rename, so that a crash leaves the old file or the whole new one */
    if (ok && (fflush(f) != 0 || (fsync(fileno(f)) != 0 && errno != EINVAL))) ok = 0;
    int write_errno = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        write_errno = errno;
    }
    f = NULL;
    if (!ok) {
        rc = mb_fail(err, MB_ERR_IO, "%s: write failed: %s", path, strerror(write_errno));
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        rc = mb_fail(err, MB_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
        unlink(tmp);
    }
done:
    free(tmp);
    free(header);
    json_decref(root);
    return rc;
}
