/* fsutil.h: file-system helpers shared by the runtime (checkpoint folders). */
#ifndef MB_FSUTIL_H
#define MB_FSUTIL_H

#include <stddef.h>

#include "error.h"

/* mkdir -p: create dir and its missing parents; fails if a part is not a folder. */
mb_status mb_make_dirs(const char *dir, mb_error *err);

/* fsync a file or a folder (a folder's entries: a rename in it survives a crash).
 * The message names the path and the cause ("No space left on device"). */
mb_status mb_fsync_path(const char *path, mb_error *err);

/* Write data to path so that a crash leaves either the old file or the whole new
 * one: path.tmp is written, fsynced and renamed over path, then the folder is
 * fsynced. On failure path is untouched and path.tmp removed; the message names
 * the file and the cause (ENOSPC, EIO, EROFS...). */
mb_status mb_write_file_durable(const char *path, const void *data, size_t len, mb_error *err);

#endif
