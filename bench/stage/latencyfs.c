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
 * Attribute and entry caching last 1 s, like NFS's attribute cache; remount to start
 * cold.
 *
 * What reaches it, as what reaches an NFS server: every request the kernel sends
 * (lookup, getattr, readlink, opendir, readdir, open, read, lseek, statfs, release,
 * releasedir) is answered the latency after it arrived; only forget, which has no
 * reply, is not delayed. A server answers many requests in flight without a thread
 * asleep for each: here a request is served at once and its answer queued, and one
 * thread sends the answers as they fall due. It is written to the FUSE low-level API,
 * its inodes kept by source inode with their path below SOURCE. So a request costs the
 * CPU of this machine (which the client tools share, where an NFS server's CPU is
 * another machine's) little more than the source's own system call. Like NFS's READDIRPLUS, a directory listing returns every entry's
 * attributes, so a stat of a listed entry needs no lookup of its own, for every tool
 * alike. The kernel may keep 1024 reads and releases in flight (max_background): as
 * with NFS, which has no small limit on outstanding requests, the server, not the
 * client's queue, is the bound.
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

struct settings {
    unsigned latency_us;
    unsigned bandwidth_mib;
    char *stats; /* where the counts go when the file system is unmounted */
    int uncached; /* every read reaches this server: no page cache shared by the host's readers */
};

static struct settings settings = {500, 0, NULL, 0};
/* What the source served: bytes read and requests answered, for the benches that count
 * how many times a source was read (bench/stage/squashfs.sh). */
static unsigned long long read_bytes, requests;
static int source_fd = -1;
static const double cache_seconds = 1.0;

#define OPTION(t, p) {t, offsetof(struct settings, p), 1}
static const struct fuse_opt options[] = {
    OPTION("latency_us=%u", latency_us),
    OPTION("bandwidth_mib=%u", bandwidth_mib),
    OPTION("stats=%s", stats),
    OPTION("uncached", uncached),
    FUSE_OPT_END,
};

static unsigned long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static void sleep_ns(unsigned long long ns) {
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- answers, each sent the latency after its request arrived */

enum answer_kind { ANSWER_ERR, ANSWER_ENTRY, ANSWER_ATTR, ANSWER_OPEN, ANSWER_BUF, ANSWER_READLINK, ANSWER_STATFS, ANSWER_LSEEK };

struct answer {
    struct answer *next;
    unsigned long long due_ns;
    fuse_req_t req;
    enum answer_kind kind;
    int err;
    union {
        struct fuse_entry_param entry;
        struct stat attr;
        struct fuse_file_info fi;
        struct statvfs fs;
        off_t offset;
    } u;
    char *buf; /* owned: the data of a read, a listing or a link target */
    size_t len;
};

static struct answer *queue_head, *queue_tail;
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_ready = PTHREAD_COND_INITIALIZER;

static struct answer *new_answer(fuse_req_t req, enum answer_kind kind) {
    __atomic_add_fetch(&requests, 1ull, __ATOMIC_RELAXED);
    struct answer *a = calloc(1, sizeof *a);
    if (!a) {
        fuse_reply_err(req, ENOMEM);
        return NULL;
    }
    a->due_ns = now_ns() + (unsigned long long)settings.latency_us * 1000ull;
    a->req = req;
    a->kind = kind;
    return a;
}

static void deliver(struct answer *a) {
    switch (a->kind) {
    case ANSWER_ERR: fuse_reply_err(a->req, a->err); break;
    case ANSWER_ENTRY: fuse_reply_entry(a->req, &a->u.entry); break;
    case ANSWER_ATTR: fuse_reply_attr(a->req, &a->u.attr, cache_seconds); break;
    case ANSWER_OPEN: fuse_reply_open(a->req, &a->u.fi); break;
    case ANSWER_BUF: fuse_reply_buf(a->req, a->buf, a->len); break;
    case ANSWER_READLINK: fuse_reply_readlink(a->req, a->buf); break;
    case ANSWER_STATFS: fuse_reply_statfs(a->req, &a->u.fs); break;
    case ANSWER_LSEEK: fuse_reply_lseek(a->req, a->u.offset); break;
    }
    free(a->buf);
    free(a);
}

/* Queues the answer for its due time. Every request waits the same latency, so the
 * queue is in due order; a read's transfer time at the bandwidth cap is slept before. */
static void answer(struct answer *a) {
    if (!a) return;
    if (settings.latency_us == 0) {
        deliver(a);
        return;
    }
    pthread_mutex_lock(&queue_lock);
    if (queue_tail) queue_tail->next = a;
    else queue_head = a;
    queue_tail = a;
    pthread_cond_signal(&queue_ready);
    pthread_mutex_unlock(&queue_lock);
}

static void *send_answers(void *unused) {
    (void)unused;
    pthread_mutex_lock(&queue_lock);
    while (1) {
        while (!queue_head) pthread_cond_wait(&queue_ready, &queue_lock);
        unsigned long long due = queue_head->due_ns;
        if (due > now_ns()) {
            pthread_mutex_unlock(&queue_lock);
            struct timespec at = {(time_t)(due / 1000000000ull), (long)(due % 1000000000ull)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR) {
            }
            pthread_mutex_lock(&queue_lock);
        }
        /* Everything due now goes out together. */
        unsigned long long now = now_ns();
        struct answer *due_list = NULL, **end = &due_list;
        while (queue_head && queue_head->due_ns <= now) {
            *end = queue_head;
            end = &queue_head->next;
            queue_head = queue_head->next;
        }
        *end = NULL;
        if (!queue_head) queue_tail = NULL;
        pthread_mutex_unlock(&queue_lock);
        while (due_list) {
            struct answer *next = due_list->next;
            deliver(due_list);
            due_list = next;
        }
        pthread_mutex_lock(&queue_lock);
    }
    return NULL;
}

/* ---- inodes: one per source inode the kernel knows, with its path below SOURCE */

struct inode {
    struct inode *next; /* in its hash bucket */
    char *path;         /* relative to SOURCE; "." for the root */
    dev_t dev;
    ino_t ino;
    uint64_t nlookup;
};

#define BUCKETS 65536
static struct inode *buckets[BUCKETS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct inode root = {NULL, ".", 0, 0, 1};

static struct inode *inode_of(fuse_ino_t ino) {
    return ino == FUSE_ROOT_ID ? &root : (struct inode *)(uintptr_t)ino;
}

static size_t bucket_of(dev_t dev, ino_t ino) { return (size_t)((ino * 0x9E3779B97F4A7C15ull) ^ dev) % BUCKETS; }

static char *child_path(const struct inode *parent, const char *name) {
    char *path;
    if (strcmp(parent->path, ".") == 0) return strdup(name);
    if (asprintf(&path, "%s/%s", parent->path, name) < 0) return NULL;
    return path;
}

/* The entry for name below parent, its lookup count raised: 0 or an errno. */
static int lookup_entry(struct inode *parent, const char *name, struct fuse_entry_param *e) {
    memset(e, 0, sizeof *e);
    char *path = child_path(parent, name);
    if (!path) return ENOMEM;
    if (fstatat(source_fd, path, &e->attr, AT_SYMLINK_NOFOLLOW) != 0) {
        int err = errno;
        free(path);
        return err;
    }
    e->attr_timeout = cache_seconds;
    e->entry_timeout = cache_seconds;
    size_t b = bucket_of(e->attr.st_dev, e->attr.st_ino);
    pthread_mutex_lock(&table_lock);
    struct inode *found = buckets[b];
    while (found && !(found->dev == e->attr.st_dev && found->ino == e->attr.st_ino)) found = found->next;
    if (found) {
        found->nlookup++;
        free(path);
    } else {
        found = calloc(1, sizeof *found);
        if (!found) {
            pthread_mutex_unlock(&table_lock);
            free(path);
            return ENOMEM;
        }
        found->path = path;
        found->dev = e->attr.st_dev;
        found->ino = e->attr.st_ino;
        found->nlookup = 1;
        found->next = buckets[b];
        buckets[b] = found;
    }
    pthread_mutex_unlock(&table_lock);
    e->ino = (fuse_ino_t)(uintptr_t)found;
    return 0;
}

static void forget_one(fuse_ino_t ino, uint64_t count) {
    struct inode *inode = inode_of(ino);
    if (inode == &root) return;
    pthread_mutex_lock(&table_lock);
    inode->nlookup = inode->nlookup > count ? inode->nlookup - count : 0;
    if (inode->nlookup == 0) {
        struct inode **link = &buckets[bucket_of(inode->dev, inode->ino)];
        while (*link && *link != inode) link = &(*link)->next;
        if (*link) *link = inode->next;
        free(inode->path);
        free(inode);
    }
    pthread_mutex_unlock(&table_lock);
}

/* ---- operations */

static void fs_init(void *userdata, struct fuse_conn_info *conn) {
    (void)userdata;
    conn->max_background = 1024;
    conn->congestion_threshold = 768;
    if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
    conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    struct answer *a = new_answer(req, ANSWER_ENTRY);
    if (!a) return;
    int err = lookup_entry(inode_of(parent), name, &a->u.entry);
    if (err) {
        a->kind = ANSWER_ERR;
        a->err = err;
    }
    answer(a);
}

static void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
    forget_one(ino, nlookup);
    fuse_reply_none(req);
}

static void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
    for (size_t i = 0; i < count; ++i) forget_one(forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    struct answer *a = new_answer(req, ANSWER_ATTR);
    if (!a) return;
    int rc = fi ? fstat((int)fi->fh, &a->u.attr) : fstatat(source_fd, inode_of(ino)->path, &a->u.attr, AT_SYMLINK_NOFOLLOW);
    if (rc != 0) {
        a->kind = ANSWER_ERR;
        a->err = errno;
    }
    answer(a);
}

static void fs_readlink(fuse_req_t req, fuse_ino_t ino) {
    struct answer *a = new_answer(req, ANSWER_READLINK);
    if (!a) return;
    a->buf = malloc(PATH_MAX + 1);
    ssize_t n = a->buf ? readlinkat(source_fd, inode_of(ino)->path, a->buf, PATH_MAX) : -1;
    if (n < 0) {
        a->kind = ANSWER_ERR;
        a->err = a->buf ? errno : ENOMEM;
    } else {
        a->buf[n] = '\0';
    }
    answer(a);
}

/* An open directory: the stream and the entry read but not yet returned. */
struct open_dir {
    DIR *dir;
    off_t offset;
    struct dirent *entry;
};

static void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    struct answer *a = new_answer(req, ANSWER_OPEN);
    if (!a) return;
    int fd = openat(source_fd, inode_of(ino)->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct open_dir *d = fd >= 0 ? calloc(1, sizeof *d) : NULL;
    if (!d || !(d->dir = fdopendir(fd))) {
        a->kind = ANSWER_ERR;
        a->err = fd < 0 || d ? errno : ENOMEM;
        free(d);
        if (fd >= 0) close(fd);
        answer(a);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)d;
    a->u.fi = *fi;
    answer(a);
}

static int is_dot_or_dotdot(const char *name) {
    return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

static void list_dir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi, int plus) {
    struct answer *a = new_answer(req, ANSWER_BUF);
    if (!a) return;
    struct open_dir *d = (struct open_dir *)(uintptr_t)fi->fh;
    char *buf = a->buf = malloc(size ? size : 1);
    if (!buf) {
        a->kind = ANSWER_ERR;
        a->err = ENOMEM;
        answer(a);
        return;
    }
    if (offset != d->offset) {
        seekdir(d->dir, offset);
        d->entry = NULL;
        d->offset = offset;
    }
    size_t used = 0;
    int err = 0;
    while (1) {
        if (!d->entry) {
            errno = 0;
            d->entry = readdir(d->dir);
            if (!d->entry) {
                err = errno;
                break;
            }
        }
        off_t next = d->entry->d_off;
        const char *name = d->entry->d_name;
        size_t entry_size;
        if (plus) {
            struct fuse_entry_param e;
            fuse_ino_t looked_up = 0;
            if (is_dot_or_dotdot(name)) {
                memset(&e, 0, sizeof e);
                e.attr.st_ino = d->entry->d_ino;
                e.attr.st_mode = (mode_t)DTTOIF(d->entry->d_type);
            } else {
                err = lookup_entry(inode_of(ino), name, &e);
                if (err == ENOENT) { /* removed since it was listed */
                    d->entry = NULL;
                    d->offset = next;
                    err = 0;
                    continue;
                }
                if (err) break;
                looked_up = e.ino;
            }
            entry_size = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, next);
            if (entry_size > size - used) {
                if (looked_up) forget_one(looked_up, 1);
                break;
            }
        } else {
            struct stat st;
            memset(&st, 0, sizeof st);
            st.st_ino = d->entry->d_ino;
            st.st_mode = (mode_t)DTTOIF(d->entry->d_type);
            entry_size = fuse_add_direntry(req, buf + used, size - used, name, &st, next);
            if (entry_size > size - used) break;
        }
        used += entry_size;
        d->entry = NULL;
        d->offset = next;
    }
    if (err && used == 0) {
        a->kind = ANSWER_ERR;
        a->err = err;
    }
    a->len = used;
    answer(a);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi) {
    list_dir(req, ino, size, offset, fi, 0);
}

static void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi) {
    list_dir(req, ino, size, offset, fi, 1);
}

static void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)ino;
    struct answer *a = new_answer(req, ANSWER_ERR);
    if (!a) return;
    struct open_dir *d = (struct open_dir *)(uintptr_t)fi->fh;
    closedir(d->dir);
    free(d);
    answer(a);
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    struct answer *a = new_answer(req, ANSWER_OPEN);
    if (!a) return;
    int fd = -1;
    if ((fi->flags & O_ACCMODE) != O_RDONLY) {
        a->kind = ANSWER_ERR;
        a->err = EROFS;
    } else if ((fd = openat(source_fd, inode_of(ino)->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) < 0) {
        a->kind = ANSWER_ERR;
        a->err = errno;
    } else {
        fi->fh = (uint64_t)fd;
        fi->direct_io = settings.uncached ? 1 : 0;
        a->u.fi = *fi;
    }
    answer(a);
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi) {
    (void)ino;
    struct answer *a = new_answer(req, ANSWER_BUF);
    if (!a) return;
    /* The transfer at the bandwidth cap takes its time before the answer's latency. */
    if (settings.bandwidth_mib && size) {
        unsigned long long ns = (unsigned long long)size * 1000000000ull / ((unsigned long long)settings.bandwidth_mib << 20);
        sleep_ns(ns);
        a->due_ns += ns;
    }
    a->buf = malloc(size ? size : 1);
    ssize_t n = a->buf ? pread((int)fi->fh, a->buf, size, offset) : -1;
    if (n < 0) {
        a->kind = ANSWER_ERR;
        a->err = a->buf ? errno : ENOMEM;
    } else {
        a->len = (size_t)n;
        __atomic_add_fetch(&read_bytes, (unsigned long long)n, __ATOMIC_RELAXED);
    }
    answer(a);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)ino;
    struct answer *a = new_answer(req, ANSWER_ERR);
    if (!a) return;
    close((int)fi->fh);
    answer(a);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino) {
    (void)ino;
    struct answer *a = new_answer(req, ANSWER_STATFS);
    if (!a) return;
    if (fstatvfs(source_fd, &a->u.fs) != 0) {
        a->kind = ANSWER_ERR;
        a->err = errno;
    }
    answer(a);
}

static void fs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi) {
    (void)ino;
    struct answer *a = new_answer(req, ANSWER_LSEEK);
    if (!a) return;
    off_t r = lseek((int)fi->fh, off, whence);
    if (r < 0) {
        a->kind = ANSWER_ERR;
        a->err = errno;
    } else {
        a->u.offset = r;
    }
    answer(a);
}

static const struct fuse_lowlevel_ops operations = {
    .init = fs_init,
    .lookup = fs_lookup,
    .forget = fs_forget,
    .forget_multi = fs_forget_multi,
    .getattr = fs_getattr,
    .readlink = fs_readlink,
    .opendir = fs_opendir,
    .readdir = fs_readdir,
    .readdirplus = fs_readdirplus,
    .releasedir = fs_releasedir,
    .open = fs_open,
    .read = fs_read,
    .release = fs_release,
    .statfs = fs_statfs,
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
    struct stat root_st;
    if (fstat(source_fd, &root_st) != 0) {
        fprintf(stderr, "latencyfs: cannot stat the source %s: %s\n", real, strerror(errno));
        return 1;
    }
    root.dev = root_st.st_dev;
    root.ino = root_st.st_ino;
    /* argv without SOURCE: the rest is FUSE's (mount point, -f, -o ...). */
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    fuse_opt_add_arg(&args, argv[0]);
    for (int i = 2; i < argc; ++i) fuse_opt_add_arg(&args, argv[i]);
    if (fuse_opt_parse(&args, &settings, options, NULL) != 0) return 2;
    fuse_opt_add_arg(&args, "-oro,default_permissions,fsname=latencyfs");
    struct fuse_cmdline_opts cmdline;
    memset(&cmdline, 0, sizeof cmdline);
    if (fuse_parse_cmdline(&args, &cmdline) != 0 || !cmdline.mountpoint) {
        fprintf(stderr, "latencyfs: give SOURCE and MOUNTPOINT\n");
        return 2;
    }
    /* Many threads, all of them kept: each sleeping request holds one, and a server
     * has no small limit on requests in flight. */
    unsigned max_threads = cmdline.max_threads && cmdline.max_threads < 100000 ? cmdline.max_threads : 1024;
    int rc = 1;
    struct fuse_session *se = fuse_session_new(&args, &operations, sizeof operations, NULL);
    if (se) {
        if (fuse_session_mount(se, cmdline.mountpoint) == 0) {
            /* The thread that sends answers starts once daemonized: a fork keeps no thread. */
            pthread_t sender;
            if (fuse_daemonize(cmdline.foreground) == 0 && fuse_set_signal_handlers(se) == 0 &&
                pthread_create(&sender, NULL, send_answers, NULL) == 0) {
                pthread_detach(sender);
                struct fuse_loop_config *loop = fuse_loop_cfg_create();
                fuse_loop_cfg_set_max_threads(loop, max_threads);
                fuse_loop_cfg_set_idle_threads(loop, max_threads);
                rc = fuse_session_loop_mt(se, loop) == 0 ? 0 : 1;
                if (settings.stats) {
                    FILE *out = fopen(settings.stats, "w");
                    if (out) {
                        fprintf(out, "read_bytes %llu\nrequests %llu\n", read_bytes, requests);
                        fclose(out);
                    }
                }
                fuse_loop_cfg_destroy(loop);
                fuse_remove_signal_handlers(se);
            }
            fuse_session_unmount(se);
        }
        fuse_session_destroy(se);
    }
    free(cmdline.mountpoint);
    fuse_opt_free_args(&args);
    return rc;
}
