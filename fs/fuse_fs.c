/*
 * fuse_fs.c — the FUSE daemon's operations (efs_fs_ops): a low-level-API passthrough (modelled on libfuse's
 * passthrough_ll.c) that encrypts every regular file with its own DEK in the format of format.h. This file
 * holds the operations table, the pinned entry points, the lifecycle and attribute operations and those of
 * file contents (open, read, write, fsync, fallocate, release), which are content.c's over the handle's
 * backing descriptor; the rest is by concern in inodes.c, namespace.c, dirs.c and xattrs.c (mountfs.h).
 *
 * Per-open handles (fi->fh) hold a backing fd opened O_RDWR (the writeback cache may read through a
 * write-only handle) without O_APPEND (the kernel owns appends with writeback caching).
 * Lock order: see inodes.c. Every request is replied to exactly once.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <sodium.h>

#include "common/log.h"
#include "killpriv.h"
#include "mountfs.h"
#include "nowait.h"

/* ---- FUSE operations: lifecycle ------------------------------------------------------------- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    struct efs *fs = userdata;
    if (conn->capable & FUSE_CAP_WRITEBACK_CACHE) {
        conn->want |= FUSE_CAP_WRITEBACK_CACHE;
        fs->writeback_cache = 1;
    }
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
        conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
    conn->want &= ~(unsigned)FUSE_CAP_SPLICE_READ;
    conn->max_write = IO_CHUNK;
    conn->max_readahead = IO_CHUNK;
}

static void op_destroy(void *userdata)
{
    struct efs *fs = userdata;
    efs_keys_clear_cache(fs->keys);
}

static void op_lookup_body(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    int rc = efs_do_lookup(req, parent, name, &e);
    if (rc == -ENOENT) {
        /* A negative entry (inode 0): the kernel remembers for the entry timeout that the name does not
         * exist, so probing a missing name again (PATH searches, build systems, interpreters' imports)
         * costs no round trip. A create, mkdir, link or rename of that name through this mount replaces
         * it at once; only changes made to CIPHERDIR behind the mount's back wait for the timeout, as
         * they already do for names that exist. */
        memset(&e, 0, sizeof e);
        e.entry_timeout = fs_of(req)->timeout;
        fs_of(req)->negative_lookups++;
        fuse_reply_entry(req, &e);
    } else if (rc) {
        fuse_reply_err(req, -rc);
    } else {
        fuse_reply_entry(req, &e);
    }
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    efs_inode_unref(fs_of(req), inode_of(req, ino), nlookup);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
    for (size_t i = 0; i < count; i++)
        efs_inode_unref(fs_of(req), inode_of(req, f[i].ino), f[i].nlookup);
    fuse_reply_none(req);
}

static void op_getattr_body(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat st;
    int rc = efs_inode_stat(fs_of(req), inode_of(req, ino), &st);
    (void)fi;
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, &st, fs_of(req)->timeout);
}

/* ---- contents ------------------------------------------------------------------------------- */

/* Open a backing fd for contents: O_RDWR if possible. */
static int open_backing(struct inode *in, int flags)
{
    char p[EFS_PROCPATH_MAX];
    int fd;
    /* Keep only what matters for the backing file; O_NOFOLLOW would refuse the /proc magic link,
     * O_DIRECT needs aligned I/O we do not do, O_APPEND belongs to the kernel (writeback cache). */
    flags &= O_SYNC | O_DSYNC;
    fd = open(efs_procpath(in->fd, p), flags | O_RDWR | O_CLOEXEC);
    if (fd < 0 && (errno == EACCES || errno == EROFS))
        fd = open(efs_procpath(in->fd, p), flags | O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int efs_handle_new(struct efs *fs, struct inode *in, int fd, int flags, struct fuse_file_info *fi)
{
    struct handle *h = calloc(1, sizeof *h);
    char w[64];
    int rc;
    if (!h)
        return -ENOMEM;
    /* Count the handle before loading the keys: RELEASE of an earlier handle is asynchronous and may run
     * right now in another thread; had it seen nopen reach 0 after our load, it would unload the keys
     * under this new handle. (Lock order: table_lock, then rw — as in op_release.) */
    pthread_mutex_lock(&fs->table_lock);
    in->nopen++;
    pthread_mutex_unlock(&fs->table_lock);
    pthread_rwlock_wrlock(&in->rw);
    rc = efs_inode_load(fs, in, fd, efs_inode_what(in, w, sizeof w));
    if (!rc && (flags & O_TRUNC)) {
        efs_content_io io = efs_content_fd_io(fd);
        rc = efs_content_truncate(in->content, &io, 0);
    }
    pthread_rwlock_unlock(&in->rw);
    if (rc) {
        pthread_mutex_lock(&fs->table_lock);
        if (--in->nopen == 0) {
            pthread_rwlock_wrlock(&in->rw);
            efs_inode_unload(in);
            pthread_rwlock_unlock(&in->rw);
        }
        pthread_mutex_unlock(&fs->table_lock);
        free(h);
        return rc;
    }
    h->fd = fd;
    h->in = in;
    fi->fh = (uintptr_t)h;
    fi->keep_cache = 1;
    return 0;
}

/* If the current request asks for it (see killpriv.c), clear setuid/setgid on fd and drop the
 * kernel's cached mode of ino. 0 or -errno. */
static int kill_suidgid_if_asked(fuse_req_t req, fuse_ino_t ino, int fd)
{
    int rc;
    if (!efs_killpriv_requested())
        return 0;
    rc = efs_kill_suidgid(req, fd);
    if (rc == 1) {
        (void)fuse_lowlevel_notify_inval_inode(fs_of(req)->se, ino, -1, 0); /* attributes only */
        rc = 0;
    }
    return rc;
}

static void op_open_body(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct efs *fs = fs_of(req);
    struct inode *in = inode_of(req, ino);
    int fd = open_backing(in, fi->flags), rc;
    if (fd < 0) {
        fuse_reply_err(req, -fd);
        return;
    }
    rc = kill_suidgid_if_asked(req, ino, fd); /* open(O_TRUNC) by an unprivileged caller */
    if (!rc)
        rc = efs_handle_new(fs, in, fd, fi->flags, fi);
    if (rc) {
        close(fd);
        fuse_reply_err(req, -rc);
        return;
    }
    fuse_reply_open(req, fi);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct efs *fs = fs_of(req);
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    struct inode *in = h->in, *dead;
    (void)ino;
    close(h->fd);
    free(h);
    pthread_mutex_lock(&fs->table_lock);
    if (--in->nopen == 0) {
        pthread_rwlock_wrlock(&in->rw);
        efs_inode_unload(in);
        pthread_rwlock_unlock(&in->rw);
    }
    dead = efs_inode_take_if_unused(fs, in);
    pthread_mutex_unlock(&fs->table_lock);
    fuse_reply_err(req, 0);
    efs_inode_destroy(dead);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    efs_content_io io = efs_content_fd_io(h->fd);
    uint8_t *buf = malloc(size ? size : 1);
    ssize_t n;
    (void)ino;
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* nowait mode (nowait.h, the FUSE loop's leader): wait for a writer only after saying so */
    if (!efs_nowait_active() || pthread_rwlock_tryrdlock(&h->in->rw)) {
        efs_nowait_will_block();
        pthread_rwlock_rdlock(&h->in->rw);
    }
    n = efs_content_read(h->in->content, &io, buf, size, (uint64_t)off);
    pthread_rwlock_unlock(&h->in->rw);
    if (n < 0)
        fuse_reply_err(req, (int)-n);
    else
        fuse_reply_buf(req, (const char *)buf, (size_t)n);
    sodium_memzero(buf, size);
    free(buf);
}

/* The WRITE's data is this worker thread's receive buffer (loop.h: the request buffer contract), which
 * content.c seals in place: the cast drops a const that libfuse's prototype adds. */
static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    efs_content_io io = efs_content_fd_io(h->fd);
    int rc = kill_suidgid_if_asked(req, ino, h->fd); /* an unprivileged writer */
    if (!rc)
        rc = efs_content_write(h->in->content, &io, (uint8_t *)(uintptr_t)buf, size, (uint64_t)off);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_write(req, size);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    (void)ino;
    fuse_reply_err(req, (datasync ? fdatasync(h->fd) : fsync(h->fd)) ? errno : 0);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    int rc = 0;
    (void)ino;
    if (mode & ~FALLOC_FL_KEEP_SIZE) {
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    pthread_rwlock_wrlock(&h->in->rw);
    if (!(mode & FALLOC_FL_KEEP_SIZE) && (uint64_t)(off + len) > efs_content_size(h->in->content)) {
        efs_content_io io = efs_content_fd_io(h->fd);
        rc = efs_content_truncate(h->in->content, &io, (uint64_t)(off + len));
    }
    pthread_rwlock_unlock(&h->in->rw);
    fuse_reply_err(req, -rc);
}

/* Does a SETATTR ask only what the kernel's flush of cached times of an unlinked regular file asks (mtime
 * and ctime, given; no atime, no "now", nothing else)? in->unlinked is a hint: the caller checks st_nlink. */
static bool unlinked_times_only(const struct efs *fs, struct inode *in, int valid)
{
    return fs->writeback_cache && in->type == S_IFREG && __atomic_load_n(&in->unlinked, __ATOMIC_RELAXED) &&
           (valid & FUSE_SET_ATTR_MTIME) && !(valid & ~(FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_CTIME));
}

static void op_setattr_body(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid, struct fuse_file_info *fi)
{
    struct efs *fs = fs_of(req);
    struct inode *in = inode_of(req, ino);
    char p[EFS_PROCPATH_MAX];
    struct stat st;
    int rc = 0;

    if (valid & FUSE_SET_ATTR_MODE) {
        if (fchmodat(AT_FDCWD, efs_procpath(in->fd, p), attr->st_mode & 07777, 0))
            rc = -errno;
    }
    if (!rc && (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
        uid_t u = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
        gid_t g = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
        if (fchownat(in->fd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
            rc = -errno;
    }
    if (!rc && (valid & FUSE_SET_ATTR_SIZE)) {
        int fd = fi ? ((struct handle *)(uintptr_t)fi->fh)->fd : open_backing(in, 0);
        char w[64];
        if (fd < 0) {
            rc = fd;
        } else {
            bool temp = !fi, was_loaded;
            pthread_rwlock_wrlock(&in->rw);
            was_loaded = in->loaded;
            rc = efs_inode_load(fs, in, fd, efs_inode_what(in, w, sizeof w));
            if (!rc) /* truncate by an unprivileged caller */
                rc = kill_suidgid_if_asked(req, ino, fd);
            if (!rc) {
                efs_content_io io = efs_content_fd_io(fd);
                rc = efs_content_truncate(in->content, &io, (uint64_t)attr->st_size);
            }
            if (!was_loaded && __atomic_load_n(&in->nopen, __ATOMIC_ACQUIRE) == 0) /* an open counts first */
                efs_inode_unload(in);
            pthread_rwlock_unlock(&in->rw);
            if (temp)
                close(fd);
        }
    }
    if (!rc && unlinked_times_only(fs, in, valid) && !(rc = efs_inode_stat(fs, in, &st)) && st.st_nlink == 0) {
        /* The kernel flushing the times it keeps of a file that has just lost its last name (rm: one per
         * file): nothing can see them any more but the kernel itself, which keeps its own mtime and ctime
         * of regular files with the writeback cache: not written (a utimensat on an orphan inode). */
        st.st_mtim = attr->st_mtim;
        if (valid & FUSE_SET_ATTR_CTIME)
            st.st_ctim = attr->st_ctim;
        fuse_reply_attr(req, &st, fs->timeout);
        return;
    }
    if (!rc && (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
        struct timespec tv[2];
        tv[0].tv_sec = 0;
        tv[1].tv_sec = 0;
        tv[0].tv_nsec = UTIME_OMIT;
        tv[1].tv_nsec = UTIME_OMIT;
        if (valid & FUSE_SET_ATTR_ATIME_NOW)
            tv[0].tv_nsec = UTIME_NOW;
        else if (valid & FUSE_SET_ATTR_ATIME)
            tv[0] = attr->st_atim;
        if (valid & FUSE_SET_ATTR_MTIME_NOW)
            tv[1].tv_nsec = UTIME_NOW;
        else if (valid & FUSE_SET_ATTR_MTIME)
            tv[1] = attr->st_mtim;
        if (in->type == S_IFLNK) {
            /* A symlink's own times (touch -h): the /proc magic link would set its target's, or nothing;
             * the O_PATH descriptor itself takes them (Linux 5.8+; older kernels: EOPNOTSUPP, not 0). */
            if (utimensat(in->fd, "", tv, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
                rc = errno == EINVAL ? -EOPNOTSUPP : -errno;
        } else if (utimensat(AT_FDCWD, efs_procpath(in->fd, p), tv, 0)) {
            rc = -errno;
        }
    }
    if (!rc)
        rc = efs_inode_stat(fs, in, &st);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, &st, fs->timeout);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct statvfs sv;
    efs_closer_drain(fs_of(req)->closer); /* the space of files removed just before is free (closer.c) */
    if (fstatvfs(fs_of(req)->root.fd, &sv))
        fuse_reply_err(req, errno);
    else
        fuse_reply_statfs(req, &sv);
    (void)ino;
}

/* ---- pinned entry points: every operation that uses an inode's fd holds it pinned ---------- */

/* Pin a, and b unless NULL, for the duration of an operation. On failure reply with the error and
 * return false; nothing stays pinned. */
static bool pin_or_reply(fuse_req_t req, struct inode *a, struct inode *b)
{
    struct efs *fs = fs_of(req);
    int rc = efs_inode_pin(fs, a);
    if (!rc && b && (rc = efs_inode_pin(fs, b)))
        efs_inode_unpin(fs, a);
    if (rc)
        fuse_reply_err(req, -rc);
    return !rc;
}

/* Run CALL (an op_*_body, which replies) with inodes A and B (B may be NULL) pinned. fs is read first:
 * req is gone once CALL has replied. */
#define PINNED(req, a, b, call)                                                                        \
    do {                                                                                               \
        struct efs *fs_ = fs_of(req);                                                                  \
        struct inode *a_ = (a), *b_ = (b);                                                             \
        if (!pin_or_reply(req, a_, b_))                                                                \
            return;                                                                                    \
        call;                                                                                          \
        if (b_)                                                                                        \
            efs_inode_unpin(fs_, b_);                                                                            \
        efs_inode_unpin(fs_, a_);                                                                                \
    } while (0)

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    PINNED(req, inode_of(req, parent), NULL, op_lookup_body(req, parent, name));
}

/* An inode closed when its last name went (efs_inode_unlinked): its attributes as they were then, or NULL. */
static const struct stat *gone_attr(struct inode *in)
{
    return __atomic_load_n(&in->gone, __ATOMIC_ACQUIRE) ? in->gone_st : NULL;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct efs *fs = fs_of(req);
    struct inode *in = inode_of(req, ino);
    const struct stat *gst;
    int rc = gone_attr(in) ? -ENOENT : efs_inode_pin(fs, in);
    if (!rc) {
        op_getattr_body(req, ino, fi); /* (in stays: pinned, a FORGET cannot free it) */
        efs_inode_unpin(fs, in);
    } else if ((gst = gone_attr(in))) {
        fuse_reply_attr(req, gst, fs->timeout); /* gone, also if that happened as this request began */
    } else {
        fuse_reply_err(req, -rc);
    }
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid, struct fuse_file_info *fi)
{
    struct inode *in = inode_of(req, ino);
    const struct stat *gst = gone_attr(in);
    if (gst) {
        /* The kernel's flush of the times of a file closed at its unlink (rm: one per file): answered as
         * for any unlinked file (op_setattr_body); anything else finds no file. */
        struct stat st = *gst;
        if (!unlinked_times_only(fs_of(req), in, valid)) {
            fuse_reply_err(req, ENOENT);
            return;
        }
        st.st_mtim = attr->st_mtim;
        if (valid & FUSE_SET_ATTR_CTIME)
            st.st_ctim = attr->st_ctim;
        fuse_reply_attr(req, &st, fs_of(req)->timeout);
        return;
    }
    PINNED(req, inode_of(req, ino), NULL, op_setattr_body(req, ino, attr, valid, fi));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    PINNED(req, inode_of(req, ino), NULL, efs_op_readlink(req, ino));
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    PINNED(req, inode_of(req, parent), NULL, efs_op_mknod(req, parent, name, mode, rdev));
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    PINNED(req, inode_of(req, parent), NULL, efs_op_mkdir(req, parent, name, mode));
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    PINNED(req, inode_of(req, parent), NULL, efs_op_unlink(req, parent, name));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    PINNED(req, inode_of(req, parent), NULL, efs_op_rmdir(req, parent, name));
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    PINNED(req, inode_of(req, parent), NULL, efs_op_symlink(req, link, parent, name));
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    PINNED(req, inode_of(req, ino), NULL, op_open_body(req, ino, fi));
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
    PINNED(req, inode_of(req, parent), NULL, efs_op_create(req, parent, name, mode, fi));
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    PINNED(req, inode_of(req, ino), NULL, efs_op_opendir(req, ino, fi));
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags)
{
    PINNED(req, inode_of(req, ino), NULL, efs_op_setxattr(req, ino, name, value, size, flags));
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    /* Only user.* xattrs exist. The kernel asks for security.capability before the first write to each
     * file and at every chown: answer those without touching the inode table. */
    if (strncmp(name, "user.", 5)) {
        fs_of(req)->getxattr_requests++;
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    PINNED(req, inode_of(req, ino), NULL, efs_op_getxattr(req, ino, name, size));
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    PINNED(req, inode_of(req, ino), NULL, efs_op_listxattr(req, ino, size));
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    PINNED(req, inode_of(req, ino), NULL, efs_op_removexattr(req, ino, name));
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname, unsigned int flags)
{
    PINNED(req, inode_of(req, parent), inode_of(req, newparent),
           efs_op_rename(req, parent, name, newparent, newname, flags));
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    PINNED(req, inode_of(req, ino), inode_of(req, newparent), efs_op_link(req, ino, newparent, newname));
}

const struct fuse_lowlevel_ops efs_fs_ops = {
    .init = op_init,
    .destroy = op_destroy,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    /* No .flush: the daemon keeps no per-open state to flush (data is written back by the kernel before
     * FLUSH, locks are the kernel's), and the ENOSYS libfuse answers makes the kernel stop sending FLUSH at
     * every close — one round trip per file in an untar. */
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = efs_op_readdir,
    .readdirplus = efs_op_readdirplus,
    .releasedir = efs_op_releasedir,
    .fsyncdir = efs_op_fsyncdir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .create = op_create,
    .fallocate = op_fallocate,
};
