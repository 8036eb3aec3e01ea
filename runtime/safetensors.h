/* safetensors.h: reading and writing the safetensors format (Hugging Face).
 *
 * A file is an 8-byte little-endian header length N, N bytes of JSON
 *   {"__metadata__": {"k": "v", ...}, "name": {"dtype": "F32", "shape": [2, 3],
 *    "data_offsets": [begin, end]}, ...}
 * and then the data buffer; offsets are relative to the start of that buffer.
 *
 * Reading maps the file (mmap) and validates the header strictly before any
 * tensor is touched: the JSON parses (jansson, duplicate keys rejected), every
 * entry has a known dtype, a shape of non-negative integers whose byte size
 * matches its offsets, offsets inside the file, and no two tensors overlap.
 * Every failure is an mb_error naming the file and the tensor; nothing in here
 * trusts the file. Tensor data in the map may be unaligned: read it through
 * mb_safetensors_read_f32 / _read_i32, which convert F32, F16, BF16, F64 (and
 * the integer types for _i32) into aligned caller memory.
 *
 * Writing produces F32 / I32 tensors (what moonbert writes; HF reads it), with
 * the header padded with spaces to a multiple of 8 bytes as the reference
 * implementation does, and tensors laid out in the order given.
 *
 * Limits: up to MB_ST_MAX_DIMS dimensions; header at most 100 MB (as upstream).
 */
#ifndef MB_SAFETENSORS_H
#define MB_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define MB_ST_MAX_DIMS 8
#define MB_ST_MAX_HEADER (100u * 1024u * 1024u)

typedef enum mb_st_dtype {
    MB_ST_F32 = 0,
    MB_ST_F16,
    MB_ST_BF16,
    MB_ST_F64,
    MB_ST_I64,
    MB_ST_I32,
    MB_ST_I16,
    MB_ST_I8,
    MB_ST_U8,
    MB_ST_BOOL,
    MB_ST_NDTYPES
} mb_st_dtype;

typedef struct mb_st_tensor {
    char *name;
    mb_st_dtype dtype;
    int ndim;
    int64_t shape[MB_ST_MAX_DIMS];
    int64_t numel;
    size_t nbytes;
    const unsigned char *data; /* inside the map; possibly unaligned */
} mb_st_tensor;

typedef struct mb_st_meta {
    char *key;
    char *value;
} mb_st_meta;

typedef struct mb_safetensors {
    mb_st_tensor *tensors; /* in file order (ascending data offset) */
    int n_tensors;
    mb_st_meta *meta;      /* __metadata__, string values only */
    int n_meta;
    /* The mapping (NULL when parsed from caller memory). */
    void *map;
    size_t map_size;
} mb_safetensors;

const char *mb_st_dtype_name(mb_st_dtype dtype);
size_t mb_st_dtype_size(mb_st_dtype dtype);
/* 1 for F32/F16/BF16/F64. */
int mb_st_dtype_is_float(mb_st_dtype dtype);

/* Map and validate a file. NULL on failure ("PATH: ..." in err). */
mb_safetensors *mb_safetensors_open(const char *path, mb_error *err);
/* Validate a buffer already in memory (not copied: it must outlive the
   result). Used by open() and by the fuzz target. */
mb_safetensors *mb_safetensors_parse(const void *buf, size_t size, mb_error *err);
void mb_safetensors_close(mb_safetensors *st); /* NULL is fine */

/* The tensor called name, or NULL. */
const mb_st_tensor *mb_safetensors_find(const mb_safetensors *st, const char *name);
/* Metadata value for key, or NULL. */
const char *mb_safetensors_meta(const mb_safetensors *st, const char *key);

/* Convert a float tensor (F32/F16/BF16/F64) into out[numel]. */
mb_status mb_safetensors_read_f32(const mb_st_tensor *t, float *out, mb_error *err);
/* Convert an integer or BOOL tensor into out[numel]; values outside int32
   are an error. */
mb_status mb_safetensors_read_i32(const mb_st_tensor *t, int32_t *out, mb_error *err);

/* Half and bfloat16 conversions (exact, with subnormals, Inf and NaN). */
float mb_f16_to_f32(uint16_t h);
float mb_bf16_to_f32(uint16_t h);

/* ---- writing ------------------------------------------------------------ */
typedef struct mb_st_entry {
    const char *name;
    mb_st_dtype dtype; /* MB_ST_F32 or MB_ST_I32 */
    int ndim;
    const int64_t *shape;
    const void *data;  /* numel elements */
} mb_st_entry;

/* Write entries (in the order given) and optional metadata pairs to path,
   through a temporary file renamed into place. Names must be unique. */
mb_status mb_safetensors_write(const char *path, const mb_st_entry *entries, int n,
                               const mb_st_meta *meta, int n_meta, mb_error *err);

#endif
