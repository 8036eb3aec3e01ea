/* fsutil.h: file-system helpers shared by the runtime (checkpoint folders). */
#ifndef MB_FSUTIL_H
#define MB_FSUTIL_H

#include "error.h"

/* mkdir -p: create dir and its missing parents; fails if a part is not a folder. */
mb_status mb_make_dirs(const char *dir, mb_error *err);

#endif
