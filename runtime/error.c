/* error.c: filling and prefixing mb_error messages. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

mb_status mb_fail(mb_error *err, mb_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

mb_status mb_error_prefix(mb_error *err, const char *fmt, ...) {
    if (!err) return MB_OK;
    char prefix[MB_ERROR_MSG_MAX], old[MB_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s%s", prefix, old);
    return err->code;
}

void mb_error_clear(mb_error *err) {
    if (err) {
        err->code = MB_OK;
        err->msg[0] = '\0';
    }
}

const char *mb_status_name(mb_status code) {
    switch (code) {
    case MB_OK: return "ok";
    case MB_ERR_ARG: return "argument error";
    case MB_ERR_SHAPE: return "shape error";
    case MB_ERR_DTYPE: return "dtype error";
    case MB_ERR_RANGE: return "range error";
    case MB_ERR_IO: return "I/O error";
    case MB_ERR_FORMAT: return "format error";
    case MB_ERR_NOMEM: return "out of memory";
    case MB_ERR_STATE: return "state error";
    case MB_ERR_NUMERIC: return "numeric error";
    case MB_ERR_UNSUPPORTED: return "unsupported";
    case MB_ERR_DB: return "results store error";
    }
    return "unknown error";
}
