/* fsutil.c: file-system helpers shared by the runtime. */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

mb_status mb_make_dirs(const char *dir, mb_error *err) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return mb_fail(err, MB_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return mb_fail(err, MB_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
    struct stat sb;
    if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return mb_fail(err, MB_ERR_IO, "%s: not a directory", buf);
    return MB_OK;
}

mb_status mb_fsync_path(const char *path, mb_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mb_fail(err, MB_ERR_IO, "%s: cannot open to sync: %s", path, strerror(errno));
    /* EINVAL: the file system cannot sync this kind of file (nothing to wait for) */
    if (fsync(fd) != 0 && errno != EINVAL) {
        int e = errno;
        close(fd);
        return mb_fail(err, MB_ERR_IO, "%s: cannot sync to disk: %s", path, strerror(e));
    }
    close(fd);
    return MB_OK;
}

/* The folder part of path ("." when it has none). */
static void parent_dir(const char *path, char *out, size_t cap) {
    snprintf(out, cap, "%s", path);
    char *slash = strrchr(out, '/');
    if (!slash) snprintf(out, cap, ".");
    else if (slash == out) out[1] = '\0';
    else *slash = '\0';
}

mb_status mb_write_file_durable(const char *path, const void *data, size_t len, mb_error *err) {
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return mb_fail(err, MB_ERR_ARG, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return mb_fail(err, MB_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            close(fd);
            unlink(tmp);
            return mb_fail(err, MB_ERR_IO, "%s: cannot write: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 && errno != EINVAL) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return mb_fail(err, MB_ERR_IO, "%s: cannot sync to disk: %s", path, strerror(e));
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return mb_fail(err, MB_ERR_IO, "%s: cannot write: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return mb_fail(err, MB_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(e));
    }
    char dir[4096];
    parent_dir(path, dir, sizeof dir);
    return mb_fsync_path(dir, err);
}
