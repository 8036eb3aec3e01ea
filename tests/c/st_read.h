/* st_read.h: a minimal safetensors reader for the C tests (whole file in memory).
 *
 *   st_file f; if (st_open(&f, path)) ...; const float *x = st_get(&f, "X_train", "F32", &numel);
 *   st_close(&f);
 * Only what the tests need: the JSON header via jansson, F32/I32 lookup by name.
 */
#ifndef MB_TEST_ST_READ_H
#define MB_TEST_ST_READ_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct st_file {
    unsigned char *buf;
    size_t size, data_off;
    json_t *header;
} st_file;

static inline int st_open(st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) return -1;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->buf = malloc((size_t)n);
    if (!f->buf || fread(f->buf, 1, (size_t)n, fp) != (size_t)n) {
        fclose(fp);
        free(f->buf);
        return -1;
    }
    fclose(fp);
    f->size = (size_t)n;
    uint64_t hlen;
    memcpy(&hlen, f->buf, 8);
    f->header = json_loadb((const char *)f->buf + 8, (size_t)hlen, 0, NULL);
    f->data_off = 8 + (size_t)hlen;
    return f->header ? 0 : -1;
}

/* Pointer to the tensor's data (aligned copy not needed on x86), or NULL. */
static inline const void *st_get(st_file *f, const char *name, const char *dtype, int64_t *numel) {
    json_t *t = json_object_get(f->header, name);
    if (!t || strcmp(json_string_value(json_object_get(t, "dtype")), dtype) != 0) return NULL;
    json_t *off = json_object_get(t, "data_offsets");
    size_t a = (size_t)json_integer_value(json_array_get(off, 0)), b = (size_t)json_integer_value(json_array_get(off, 1));
    if (numel) *numel = (int64_t)((b - a) / 4);
    return f->buf + f->data_off + a;
}

static inline void st_close(st_file *f) {
    json_decref(f->header);
    free(f->buf);
}

#endif
