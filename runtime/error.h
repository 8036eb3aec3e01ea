/* error.h: how the runtime reports failure.
 *
 * Every function that can fail on user input returns an mb_status (or NULL for
 * constructors) and fills an mb_error with a message a user can act on, e.g.
 * "config.json: n_heads (5) does not divide dim (64)". Nothing in the runtime
 * calls exit() or abort() on input; assert() guards internal invariants only.
 * The Lua bindings turn an mb_error into a Lua error.
 */
#ifndef MB_ERROR_H
#define MB_ERROR_H

typedef enum mb_status {
    MB_OK = 0,
    MB_ERR_ARG,         /* bad argument value */
    MB_ERR_SHAPE,       /* shapes do not agree */
    MB_ERR_DTYPE,       /* wrong element type */
    MB_ERR_RANGE,       /* index or id out of range */
    MB_ERR_IO,          /* file system */
    MB_ERR_FORMAT,      /* malformed file or text */
    MB_ERR_NOMEM,       /* allocation failed */
    MB_ERR_STATE,       /* object used in the wrong state (freed, not fitted) */
    MB_ERR_NUMERIC,     /* NaN/Inf or divergence */
    MB_ERR_UNSUPPORTED, /* valid but not implemented (e.g. no GPU) */
    MB_ERR_DB           /* results store */
} mb_status;

#define MB_ERROR_MSG_MAX 1024

typedef struct mb_error {
    mb_status code;
    char msg[MB_ERROR_MSG_MAX];
} mb_error;

/* Fill err (may be NULL) with code and a printf-style message; returns code. */
mb_status mb_fail(mb_error *err, mb_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepend context to an existing message: "model.safetensors: " + msg. */
mb_status mb_error_prefix(mb_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void mb_error_clear(mb_error *err);

/* A short name for a status ("shape error"). */
const char *mb_status_name(mb_status code);

#endif
