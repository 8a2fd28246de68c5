/* latencyfs: a read-only pass-through file system that makes every operation a round
 * trip, as on NFS, Lustre or GPFS. Each request sleeps a set latency before it is
 * answered, and each read also sleeps for its size at a per-stream bandwidth cap, so
 * the time of a copy through it is bound by operations in flight, as with a network
 * file system, and not by the CPU.
 *
 *   latencyfs SOURCE MOUNTPOINT [-f] [-o latency_us=N,bandwidth_mib=M,max_threads=T,...]
 *
 * latency_us: sleep per operation (default 500). bandwidth_mib: MiB/s of one read
 * stream, 0 for none (default). Requests are served by up to max_threads threads (give
 * a large number: a server has no small limit on requests in flight). Inode numbers,
 * ctimes and mtimes are those of SOURCE, so a staging cache sees a stable source.
 * Attribute and entry caching follow libfuse's defaults (1 s), like NFS's attribute
 * cache; remount to start cold.
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

struct settings {
    char *source;
    unsigned latency_us;
    unsigned bandwidth_mib;
};

static struct settings settings = {NULL, 500, 0};
static int source_fd = -1;

#define OPTION(t, p) {t, offsetof(struct settings, p), 1}
static const struct fuse_opt options[] = {
    OPTION("latency_us=%u", latency_us),
    OPTION("bandwidth_mib=%u", bandwidth_mib),
    FUSE_OPT_END,
};

static void sleep_ns(unsigned long long ns) {
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void round_trip(size_t bytes) {
    unsigned long long ns = (unsigned long long)settings.latency_us * 1000ull;
    if (settings.bandwidth_mib && bytes)
        ns += (unsigned long long)bytes * 1000000000ull / ((unsigned long long)settings.bandwidth_mib << 20);
    if (ns) sleep_ns(ns);
}

/* Paths from FUSE start with '/'; below the source they are relative. */
static const char *relative(const char *path) {
    while (*path == '/') path++;
    return *path ? path : ".";
}

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
    (void)conn;
    cfg->use_ino = 1;
    cfg->kernel_cache = 0;
    cfg->nullpath_ok = 0;
    return NULL;
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    round_trip(0);
    int rc = fi ? fstat((int)fi->fh, st) : fstatat(source_fd, relative(path), st, AT_SYMLINK_NOFOLLOW);
    return rc == 0 ? 0 : -errno;
}

static int fs_readlink(const char *path, char *buf, size_t size) {
    round_trip(0);
    ssize_t n = readlinkat(source_fd, relative(path), buf, size - 1);
    if (n < 0) return -errno;
    buf[n] = '\0';
    return 0;
}

static int fs_opendir(const char *path, struct fuse_file_info *fi) {
    round_trip(0);
    int fd = openat(source_fd, relative(path), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -errno;
    DIR *dir = fdopendir(fd);
    if (!dir) {
        int err = errno;
        close(fd);
        return -err;
    }
    fi->fh = (uint64_t)(uintptr_t)dir;
    return 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t offset, struct fuse_file_info *fi,
                      enum fuse_readdir_flags flags) {
    (void)path;
    (void)offset;
    (void)flags;
    round_trip(0);
    DIR *dir = (DIR *)(uintptr_t)fi->fh;
    rewinddir(dir);
    struct dirent *d;
    while ((d = readdir(dir)) != NULL) {
        struct stat st;
        memset(&st, 0, sizeof st);
        st.st_ino = d->d_ino;
        st.st_mode = (mode_t)DTTOIF(d->d_type);
        if (fill(buf, d->d_name, &st, 0, 0)) break;
    }
    return 0;
}

static int fs_releasedir(const char *path, struct fuse_file_info *fi) {
    (void)path;
    closedir((DIR *)(uintptr_t)fi->fh);
    return 0;
}

static int fs_open(const char *path, struct fuse_file_info *fi) {
    round_trip(0);
    if ((fi->flags & O_ACCMODE) != O_RDONLY) return -EROFS;
    int fd = openat(source_fd, relative(path), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    fi->fh = (uint64_t)fd;
    return 0;
}

static int fs_read(const char *path, char *buf, size_t size, off_t offset, struct fuse_file_info *fi) {
    (void)path;
    round_trip(size);
    ssize_t n = pread((int)fi->fh, buf, size, offset);
    return n < 0 ? -errno : (int)n;
}

static int fs_release(const char *path, struct fuse_file_info *fi) {
    (void)path;
    close((int)fi->fh);
    return 0;
}

static int fs_statfs(const char *path, struct statvfs *st) {
    (void)path;
    round_trip(0);
    return fstatvfs(source_fd, st) == 0 ? 0 : -errno;
}

static int fs_access(const char *path, int mask) {
    round_trip(0);
    if (mask & W_OK) return -EROFS;
    return faccessat(source_fd, relative(path), mask, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
}

static off_t fs_lseek(const char *path, off_t off, int whence, struct fuse_file_info *fi) {
    (void)path;
    round_trip(0);
    off_t r = lseek((int)fi->fh, off, whence);
    return r < 0 ? -errno : r;
}

static const struct fuse_operations operations = {
    .init = fs_init,
    .getattr = fs_getattr,
    .readlink = fs_readlink,
    .opendir = fs_opendir,
    .readdir = fs_readdir,
    .releasedir = fs_releasedir,
    .open = fs_open,
    .read = fs_read,
    .release = fs_release,
    .statfs = fs_statfs,
    .access = fs_access,
    .lseek = fs_lseek,
};

int main(int argc, char *argv[]) {
    if (argc < 3) {
        fprintf(stderr,
                "usage: latencyfs SOURCE MOUNTPOINT [-f] [-o latency_us=N,bandwidth_mib=M,max_threads=T,...]\n");
        return 2;
    }
    char real[PATH_MAX];
    if (!realpath(argv[1], real)) {
        fprintf(stderr, "latencyfs: cannot resolve the source %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    source_fd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (source_fd < 0) {
        fprintf(stderr, "latencyfs: cannot open the source %s: %s\n", real, strerror(errno));
        return 1;
    }
    /* argv without SOURCE: the rest is FUSE's (mount point, -f, -o ...). */
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    fuse_opt_add_arg(&args, argv[0]);
    for (int i = 2; i < argc; ++i) fuse_opt_add_arg(&args, argv[i]);
    if (fuse_opt_parse(&args, &settings, options, NULL) != 0) return 2;
    fuse_opt_add_arg(&args, "-oro,default_permissions,fsname=latencyfs");
    /* Not fuse_main: it would serve at most 10 requests at a time, whatever max_threads
     * says, and the server would be the bound instead of the latency. */
    struct fuse_cmdline_opts cmdline;
    memset(&cmdline, 0, sizeof cmdline);
    if (fuse_parse_cmdline(&args, &cmdline) != 0 || !cmdline.mountpoint) {
        fprintf(stderr, "latencyfs: give SOURCE and MOUNTPOINT\n");
        return 2;
    }
    unsigned max_threads = cmdline.max_threads && cmdline.max_threads < 100000 ? cmdline.max_threads : 1024;
    struct fuse *fuse = fuse_new(&args, &operations, sizeof operations, NULL);
    if (!fuse) return 1;
    int rc = 1;
    if (fuse_mount(fuse, cmdline.mountpoint) == 0) {
        struct fuse_session *se = fuse_get_session(fuse);
        if (fuse_daemonize(cmdline.foreground) == 0 && fuse_set_signal_handlers(se) == 0) {
            struct fuse_loop_config *loop = fuse_loop_cfg_create();
            fuse_loop_cfg_set_max_threads(loop, max_threads);
            fuse_loop_cfg_set_idle_threads(loop, max_threads);
            rc = fuse_loop_mt(fuse, loop) == 0 ? 0 : 1;
            fuse_loop_cfg_destroy(loop);
            fuse_remove_signal_handlers(se);
        }
        fuse_unmount(fuse);
    }
    fuse_destroy(fuse);
    free(cmdline.mountpoint);
    fuse_opt_free_args(&args);
    return rc;
}
