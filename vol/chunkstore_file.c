/*
 * chunkstore_file.c — the local-files chunk store: one sparse file per chunk, DIR/<gen & 0xff, 2 hex>/<gen,
 * 16 hex>, mode 0600. A cache of open descriptors (under a mutex; files are opened outside it) spares an
 * open per I/O: a call pins the entry it uses (refs) and unpins it after, so an I/O costs its one system
 * call (no dup/close around it); only an unpinned entry is evicted, and a removed chunk's pinned entry is
 * closed by its last user. A batch sync (f_sync_many) is one syncfs(2) of the store's filesystem, which makes
 * every file's data and metadata and every directory's names durable at once (on kernels before 5.8, whose
 * syncfs reports no write-back error: every file's write-back started before it waits on any, then each
 * directory that gained a name synced once for the whole batch).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "chunkstore.h"

#define FD_CACHE 256 /* a chunk is 512 KiB: 128 MiB of a volume's data without an open() */

struct fcs {
    vol_chunkstore base;
    char *dir;
    pthread_mutex_t lock;
    struct {
        uint64_t gen;
        int fd;
        uint64_t used;
        unsigned refs;         /* calls using fd now: not evicted or closed while > 0 */
        bool doomed;           /* the chunk was removed while pinned: closed at the last unpin, not found */
    } fds[FD_CACHE];
    uint64_t tick;
    /* Names not yet durable, per directory rather than per descriptor (a descriptor evicted from the cache
     * and opened again must not forget that its file is new): DIR/xx holds a file made here that no fsync
     * of DIR/xx has covered; DIR likewise (set with every file made, as its subdirectory may be new). */
    bool unsynced_sub[256], unsynced_top;
    pthread_mutex_t sync_lock; /* one name sync at a time: a flag found clear means its fsync has finished */
    bool ro;           /* vol_chunkstore_file_open_ro: files opened read only, writes refused */
    /* DIR, open since the store was (writable, kernel ≥ 5.8: -1 otherwise) for f_sync_many's syncfs: a
     * write-back error anywhere in the filesystem since it was opened is reported by the next syncfs of it
     * (the kernel samples the error state when a descriptor is opened, so this one predates every write) */
    int syncfd;
};

char *vol_chunkstore_file_path(const char *dir, uint64_t gen)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%02x/%016" PRIx64, dir, (unsigned)(gen & 0xff), gen) < 0)
        return NULL;
    return p;
}

/* The cached descriptor of gen, pinned (*slot its entry), or -1 (none cached); lock held. */
static int cached_fd(struct fcs *s, uint64_t gen, int *slot)
{
    for (int i = 0; i < FD_CACHE; i++)
        if (s->fds[i].fd >= 0 && s->fds[i].gen == gen && !s->fds[i].doomed) {
            s->fds[i].used = ++s->tick;
            s->fds[i].refs++;
            *slot = i;
            return s->fds[i].fd;
        }
    return -1;
}

/* A descriptor for gen (create: make the file and its directory), or -errno; the caller gives it back
 * with put_fd(s, *slot, fd). The file is opened outside the lock (a path lookup, maybe a disk read), so
 * threads working on other chunks do not wait for it; two threads opening the same chunk at once both
 * open it, the first to enter it in the cache wins. With every entry pinned (more calls in flight than
 * FD_CACHE) the descriptor is the caller's own (*slot -1), closed by put_fd. */
static int get_fd(struct fcs *s, uint64_t gen, bool create, int *slot)
{
    int fd, victim = -1;
    bool made = false;
    char *path;
    pthread_mutex_lock(&s->lock);
    fd = cached_fd(s, gen, slot);
    pthread_mutex_unlock(&s->lock);
    if (fd != -1)
        return fd;
    if (!(path = vol_chunkstore_file_path(s->dir, gen)))
        return -ENOMEM;
    fd = open(path, (s->ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create && !s->ro) {
        char *slash = strrchr(path, '/');
        *slash = 0;
        if (mkdir(path, 0700) && errno != EEXIST) {
            fd = -errno;
            free(path);
            return fd;
        }
        *slash = '/';
        made = (fd = open(path, O_RDWR | O_CLOEXEC | O_CREAT, 0600)) >= 0;
    }
    free(path);
    if (fd < 0)
        return -errno;
    pthread_mutex_lock(&s->lock);
    if (made) /* its name (and maybe its directory) wait for the directory fsync of a sync */
        s->unsynced_sub[gen & 0xff] = s->unsynced_top = true;
    {
        int had = cached_fd(s, gen, slot);
        if (had != -1) { /* another thread entered it meanwhile */
            pthread_mutex_unlock(&s->lock);
            close(fd);
            return had;
        }
    }
    for (int i = 0; i < FD_CACHE; i++) /* the least recently used unpinned entry (an empty one has used 0) */
        if (!s->fds[i].refs && (victim < 0 || s->fds[i].used < s->fds[victim].used))
            victim = i;
    *slot = victim;
    if (victim >= 0) {
        if (s->fds[victim].fd >= 0)
            close(s->fds[victim].fd);
        s->fds[victim].fd = fd;
        s->fds[victim].gen = gen;
        s->fds[victim].used = ++s->tick;
        s->fds[victim].refs = 1;
        s->fds[victim].doomed = false;
    }
    pthread_mutex_unlock(&s->lock);
    return fd;
}

/* Give back what get_fd returned. */
static void put_fd(struct fcs *s, int slot, int fd)
{
    if (slot < 0) {
        close(fd);
        return;
    }
    pthread_mutex_lock(&s->lock);
    if (!--s->fds[slot].refs && s->fds[slot].doomed) {
        close(s->fds[slot].fd);
        s->fds[slot].fd = -1;
        s->fds[slot].used = 0;
        s->fds[slot].doomed = false;
    }
    pthread_mutex_unlock(&s->lock);
}

static int f_pread(vol_chunkstore *cs, uint64_t gen, void *buf, size_t n, uint64_t off)
{
    struct fcs *s = (struct fcs *)cs;
    int slot = -1, fd = get_fd(s, gen, false, &slot);
    size_t got = 0;
    if (fd < 0)
        return fd;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = -errno;
            put_fd(s, slot, fd);
            return e;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    memset((char *)buf + got, 0, n - got);
    put_fd(s, slot, fd);
    return 0;
}

static int f_pwrite(vol_chunkstore *cs, uint64_t gen, const void *buf, size_t n, uint64_t off)
{
    struct fcs *s = (struct fcs *)cs;
    int fd, slot = -1;
    size_t put = 0;
    if (s->ro)
        return -EROFS;
    fd = get_fd(s, gen, true, &slot);
    if (fd < 0)
        return fd;
    while (put < n) {
        ssize_t r = pwrite(fd, (const char *)buf + put, n - put, (off_t)(off + put));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = -errno;
            put_fd(s, slot, fd);
            return e;
        }
        put += (size_t)r;
    }
    put_fd(s, slot, fd);
    return 0;
}

static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    if (fd < 0)
        return -errno;
    if (fsync(fd))
        rc = -errno;
    close(fd);
    return rc;
}

/* Directory flags taken for a sync that failed are set again (s->lock not held): they stay to do. */
static void restore_unsynced(struct fcs *s, const bool sub[256], bool top)
{
    pthread_mutex_lock(&s->lock);
    for (unsigned x = 0; x < 256; x++)
        s->unsynced_sub[x] |= sub[x];
    s->unsynced_top |= top;
    pthread_mutex_unlock(&s->lock);
}

/* The names of the files of gens (their data already synced) made durable: each directory DIR/xx that
 * gained a file no fsync of it has covered, once, then DIR likewise. */
static int sync_names(struct fcs *s, const uint64_t *gens, size_t n)
{
    bool sub[256] = {false}, top;
    char path[4096];
    int rc = 0;
    pthread_mutex_lock(&s->sync_lock);
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        sub[gens[i] & 0xff] |= s->unsynced_sub[gens[i] & 0xff];
        s->unsynced_sub[gens[i] & 0xff] = false; /* a file made from now on sets them again */
    }
    top = s->unsynced_top;
    s->unsynced_top = false;
    pthread_mutex_unlock(&s->lock);
    for (unsigned x = 0; x < 256 && !rc; x++)
        if (sub[x]) {
            if (snprintf(path, sizeof path, "%s/%02x", s->dir, x) >= (int)sizeof path)
                rc = -ENAMETOOLONG;
            else
                rc = sync_dir(path);
            if (!rc)
                sub[x] = false;
        }
    if (!rc && top && !(rc = sync_dir(s->dir)))
        top = false;
    if (rc) /* what was not synced stays to do */
        restore_unsynced(s, sub, top);
    pthread_mutex_unlock(&s->sync_lock);
    return rc;
}

static int f_sync(vol_chunkstore *cs, uint64_t gen)
{
    struct fcs *s = (struct fcs *)cs;
    int slot = -1, fd, rc = 0;
    if (s->ro)
        return -EROFS;
    if ((fd = get_fd(s, gen, false, &slot)) < 0)
        return fd;
    if (fdatasync(fd))
        rc = -errno;
    put_fd(s, slot, fd);
    /* A file this store made must have a durable name, and its directory too */
    return rc ? rc : sync_names(s, &gen, 1);
}

/* One syncfs for the batch (each file must exist: -ENOENT otherwise). Every directory flag is cleared
 * before it starts — a name made after that sets its flag again, one made before is covered — and set
 * again if it fails. */
static int sync_fs_batch(struct fcs *s, const uint64_t *gens, size_t n)
{
    bool sub[256], top;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        int slot = -1, fd = get_fd(s, gens[i], false, &slot);
        if (fd < 0)
            return fd;
        put_fd(s, slot, fd);
    }
    pthread_mutex_lock(&s->sync_lock);
    pthread_mutex_lock(&s->lock);
    memcpy(sub, s->unsynced_sub, sizeof sub);
    top = s->unsynced_top;
    memset(s->unsynced_sub, 0, sizeof s->unsynced_sub);
    s->unsynced_top = false;
    pthread_mutex_unlock(&s->lock);
    if (syncfs(s->syncfd)) {
        rc = -errno;
        restore_unsynced(s, sub, top);
    }
    pthread_mutex_unlock(&s->sync_lock);
    return rc;
}

/* syncfs (above), or without it: every file's write-back started first (sync_file_range: the device gets
 * the whole batch at once), then fdatasync of each (which waits for it and commits its metadata), then
 * the names once. */
static int f_sync_many(vol_chunkstore *cs, const uint64_t *gens, size_t n)
{
    struct fcs *s = (struct fcs *)cs;
    int *fds, rc = 0;
    size_t opened = 0;
    if (s->ro)
        return -EROFS;
    if (!n)
        return 0;
    if (s->syncfd >= 0)
        return sync_fs_batch(s, gens, n);
    if (!(fds = malloc(2 * n * sizeof *fds))) /* descriptors, then their slots */
        return -ENOMEM;
    for (; opened < n; opened++) {
        if ((fds[opened] = get_fd(s, gens[opened], false, &fds[n + opened])) < 0) {
            rc = fds[opened];
            break;
        }
        (void)sync_file_range(fds[opened], 0, 0, SYNC_FILE_RANGE_WRITE); /* a hint: fdatasync below is the sync */
    }
    for (size_t i = 0; i < opened; i++) {
        if (!rc && fdatasync(fds[i]))
            rc = -errno;
        put_fd(s, fds[n + i], fds[i]);
    }
    free(fds);
    return rc ? rc : sync_names(s, gens, n);
}

static int f_remove(vol_chunkstore *cs, uint64_t gen)
{
    struct fcs *s = (struct fcs *)cs;
    char *path = vol_chunkstore_file_path(s->dir, gen);
    int rc = 0;
    if (!path)
        return -ENOMEM;
    if (s->ro) {
        free(path);
        return -EROFS;
    }
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < FD_CACHE; i++)
        if (s->fds[i].fd >= 0 && s->fds[i].gen == gen) {
            if (s->fds[i].refs) { /* in use: its last user closes it */
                s->fds[i].doomed = true;
                continue;
            }
            close(s->fds[i].fd);
            s->fds[i].fd = -1;
            s->fds[i].used = 0;
        }
    pthread_mutex_unlock(&s->lock);
    if (unlink(path) && errno != ENOENT)
        rc = -errno;
    free(path);
    return rc;
}

static int f_list(vol_chunkstore *cs, int (*fn)(void *, uint64_t), void *arg)
{
    struct fcs *s = (struct fcs *)cs;
    DIR *top = opendir(s->dir);
    struct dirent *d;
    int rc = 0;
    if (!top)
        return -errno;
    while (!rc && (d = readdir(top))) {
        char *sub = NULL;
        DIR *dd;
        struct dirent *e;
        if (strlen(d->d_name) != 2 || d->d_name[0] == '.')
            continue;
        if (asprintf(&sub, "%s/%s", s->dir, d->d_name) < 0)
            return -ENOMEM;
        dd = opendir(sub);
        free(sub);
        if (!dd)
            continue;
        while (!rc && (e = readdir(dd))) {
            char *end;
            uint64_t g;
            if (strlen(e->d_name) != 16)
                continue;
            g = strtoull(e->d_name, &end, 16);
            if (*end)
                continue;
            rc = fn(arg, g);
        }
        closedir(dd);
    }
    closedir(top);
    return rc;
}

struct usage {
    struct fcs *s;
    int64_t bytes;
};
static int add_usage(void *arg, uint64_t gen)
{
    struct usage *u = arg;
    char *p = vol_chunkstore_file_path(u->s->dir, gen);
    struct stat st;
    if (p && stat(p, &st) == 0)
        u->bytes += (int64_t)st.st_blocks * 512;
    free(p);
    return 0;
}

static int64_t f_bytes_used(vol_chunkstore *cs)
{
    struct usage u = {(struct fcs *)cs, 0};
    int rc = f_list(cs, add_usage, &u);
    return rc ? rc : u.bytes;
}

static void f_close(vol_chunkstore *cs)
{
    struct fcs *s = (struct fcs *)cs;
    for (int i = 0; i < FD_CACHE; i++)
        if (s->fds[i].fd >= 0)
            close(s->fds[i].fd);
    if (s->syncfd >= 0)
        close(s->syncfd);
    pthread_mutex_destroy(&s->sync_lock);
    pthread_mutex_destroy(&s->lock);
    free(s->dir);
    free(s);
}

static const vol_chunkstore_ops FILE_OPS = {f_close, f_pread, f_pwrite, f_sync, f_sync_many, f_remove, f_list,
                                         f_bytes_used};

/* syncfs reports write-back errors since Linux 5.8 (before, it returned 0 whatever happened). */
static bool syncfs_reports_errors(void)
{
    struct utsname u;
    unsigned major = 0, minor = 0;
    return uname(&u) == 0 && sscanf(u.release, "%u.%u", &major, &minor) == 2 && (major > 5 || (major == 5 && minor >= 8));
}

static int file_open(const char *dir, bool ro, vol_chunkstore **out)
{
    struct fcs *s;
    *out = NULL;
    if (!ro && mkdir(dir, 0700) && errno != EEXIST)
        return -errno;
    if (!(s = calloc(1, sizeof *s)) || !(s->dir = strdup(dir))) {
        free(s);
        return -ENOMEM;
    }
    for (int i = 0; i < FD_CACHE; i++)
        s->fds[i].fd = -1;
    s->syncfd = -1;
    if (!ro && syncfs_reports_errors() && (s->syncfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        int rc = -errno;
        free(s->dir);
        free(s);
        return rc;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->sync_lock, NULL);
    s->ro = ro;
    s->base.ops = &FILE_OPS;
    *out = &s->base;
    return 0;
}

int vol_chunkstore_file_open(const char *dir, vol_chunkstore **out) { return file_open(dir, false, out); }
int vol_chunkstore_file_open_ro(const char *dir, vol_chunkstore **out) { return file_open(dir, true, out); }
