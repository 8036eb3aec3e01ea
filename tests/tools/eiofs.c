/* eiofs: a FUSE file system over a folder whose writes fail with EIO on demand, so that the
   faults specs meet a real I/O error from the kernel (tests/spec/io_error_spec.lua).

     eiofs BACKING CONTROL MOUNTPOINT [fuse options]

   Every operation passes through to BACKING. Before each operation that changes something
   (create, write, fsync, truncate, rename, mkdir, unlink, ...), CONTROL is read:
     ok (or missing, or empty)   pass through
     eio                         fail with EIO until CONTROL changes
     eio N                       the next N such operations fail with EIO, then pass
   Reads never fail, so what was written before the fault can be checked through the mount.
   Runs in the foreground, single-threaded; `fusermount3 -u MOUNTPOINT` (or umount) ends it. */
#define FUSE_USE_VERSION 31
#include <fuse.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

static char backing[PATH_MAX];
static char control[PATH_MAX];

/* the state read from CONTROL: its content, and how many failures "eio N" has left */
static char control_seen[64];
static long failures_left;

static int real(char *out, const char *path) {
    int n = snprintf(out, PATH_MAX, "%s%s", backing, path);
    return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

/* 0 to pass a changing operation through, -EIO to fail it */
static int fault(void) {
    char buf[64] = "";
    FILE *f = fopen(control, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = 0;
    if (strcmp(buf, control_seen) != 0) { /* a new order */
        snprintf(control_seen, sizeof control_seen, "%s", buf);
        failures_left = strncmp(buf, "eio ", 4) == 0 ? strtol(buf + 4, NULL, 10) : -1;
    }
    if (strcmp(buf, "eio") == 0) return -EIO;
    if (strncmp(buf, "eio ", 4) == 0 && failures_left > 0) {
        failures_left--;
        return -EIO;
    }
    return 0;
}

#define REAL(p)                          \
    char p##_real[PATH_MAX];             \
    if (real(p##_real, p) != 0) return -ENAMETOOLONG
#define FAULT()                          \
    do {                                 \
        int f_ = fault();                \
        if (f_) return f_;               \
    } while (0)
#define SYS(call) ((call) == -1 ? -errno : 0)

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
    (void)conn;
    cfg->use_ino = 1;
    cfg->entry_timeout = cfg->attr_timeout = cfg->negative_timeout = 0; /* BACKING may change */
    return NULL;
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    if (fi) return SYS(fstat((int)fi->fh, st));
    REAL(path);
    return SYS(lstat(path_real, st));
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off, struct fuse_file_info *fi,
                      enum fuse_readdir_flags flags) {
    (void)off, (void)fi, (void)flags;
    REAL(path);
    DIR *d = opendir(path_real);
    if (!d) return -errno;
    for (struct dirent *e; (e = readdir(d));) {
        struct stat st = {0};
        st.st_ino = e->d_ino;
        st.st_mode = (mode_t)e->d_type << 12;
        if (fill(buf, e->d_name, &st, 0, 0)) break;
    }
    closedir(d);
    return 0;
}

static int fs_open(const char *path, struct fuse_file_info *fi) {
    REAL(path);
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) FAULT();
    int fd = open(path_real, fi->flags);
    if (fd == -1) return -errno;
    fi->fh = (uint64_t)fd;
    return 0;
}

static int fs_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
    REAL(path);
    FAULT();
    int fd = open(path_real, fi->flags, mode);
    if (fd == -1) return -errno;
    fi->fh = (uint64_t)fd;
    return 0;
}

static int fs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)path;
    ssize_t n = pread((int)fi->fh, buf, size, off);
    return n == -1 ? -errno : (int)n;
}

static int fs_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)path;
    FAULT();
    ssize_t n = pwrite((int)fi->fh, buf, size, off);
    return n == -1 ? -errno : (int)n;
}

static int fs_flush(const char *path, struct fuse_file_info *fi) {
    (void)path;
    /* close(dup(fd)): what close(2) on the mount would report */
    int fd = dup((int)fi->fh);
    if (fd == -1) return -errno;
    return SYS(close(fd));
}

static int fs_release(const char *path, struct fuse_file_info *fi) {
    (void)path;
    close((int)fi->fh);
    return 0;
}

static int fs_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
    (void)path;
    FAULT();
    return SYS(datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh));
}

static int fs_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
    FAULT();
    if (fi) return SYS(ftruncate((int)fi->fh, size));
    REAL(path);
    return SYS(truncate(path_real, size));
}

static int fs_unlink(const char *path) {
    REAL(path);
    FAULT();
    return SYS(unlink(path_real));
}

static int fs_mkdir(const char *path, mode_t mode) {
    REAL(path);
    FAULT();
    return SYS(mkdir(path_real, mode));
}

static int fs_rmdir(const char *path) {
    REAL(path);
    FAULT();
    return SYS(rmdir(path_real));
}

static int fs_rename(const char *from, const char *to, unsigned int flags) {
    if (flags) return -EINVAL;
    REAL(from);
    REAL(to);
    FAULT();
    return SYS(rename(from_real, to_real));
}

static int fs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi) {
    if (fi) return SYS(fchmod((int)fi->fh, mode));
    REAL(path);
    return SYS(chmod(path_real, mode));
}

static int fs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi) {
    if (fi) return SYS(futimens((int)fi->fh, tv));
    REAL(path);
    return SYS(utimensat(AT_FDCWD, path_real, tv, AT_SYMLINK_NOFOLLOW));
}

static int fs_access(const char *path, int mask) {
    REAL(path);
    return SYS(access(path_real, mask));
}

static int fs_statfs(const char *path, struct statvfs *st) {
    REAL(path);
    return SYS(statvfs(path_real, st));
}

static const struct fuse_operations ops = {
    .init = fs_init,
    .getattr = fs_getattr,
    .readdir = fs_readdir,
    .open = fs_open,
    .create = fs_create,
    .read = fs_read,
    .write = fs_write,
    .flush = fs_flush,
    .release = fs_release,
    .fsync = fs_fsync,
    .truncate = fs_truncate,
    .unlink = fs_unlink,
    .mkdir = fs_mkdir,
    .rmdir = fs_rmdir,
    .rename = fs_rename,
    .chmod = fs_chmod,
    .utimens = fs_utimens,
    .access = fs_access,
    .statfs = fs_statfs,
};

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: eiofs BACKING CONTROL MOUNTPOINT [fuse options]\n");
        return 2;
    }
    if (!realpath(argv[1], backing)) {
        fprintf(stderr, "eiofs: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    /* absolute: fuse_main changes directory to / */
    char cwd[PATH_MAX];
    if (argv[2][0] == '/') snprintf(control, sizeof control, "%s", argv[2]);
    else if (getcwd(cwd, sizeof cwd)) snprintf(control, sizeof control, "%s/%s", cwd, argv[2]);
    else {
        fprintf(stderr, "eiofs: getcwd: %s\n", strerror(errno));
        return 1;
    }
    /* fuse_main sees: eiofs MOUNTPOINT -f -s [options] */
    char **fargv = calloc((size_t)argc + 2, sizeof *fargv);
    if (!fargv) return 1;
    int n = 0;
    fargv[n++] = argv[0];
    fargv[n++] = argv[3];
    fargv[n++] = "-f";
    fargv[n++] = "-s";
    for (int i = 4; i < argc; i++) fargv[n++] = argv[i];
    int rc = fuse_main(n, fargv, &ops, NULL);
    free(fargv);
    return rc;
}
