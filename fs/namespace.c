/*
 * namespace.c — the directory mount's names and entries (see mountfs.h): plaintext names mapped to their
 * backing names (identity, or encrypted under the directory's id with long-name sidecars, names.c), and
 * the operations that make, link, rename and remove entries. Regular files are made with their header
 * (a spare file, spares.c, or written and synced here), directories with their durable id.
 */
#define FUSE_USE_VERSION 312

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "common/log.h"
#include "common/secpool.h"
#include "mountfs.h"
#include "symlink.h"

bool efs_reserved_root_name(const char *name)
{
    return !strcmp(name, EFS_CONFIG_NAME) || !strncmp(name, "envelopefs.bk.", 14) ||
           !strncmp(name, ".envelopefs", 11);
}

static bool reserved(fuse_ino_t parent, const char *name)
{
    return parent == FUSE_ROOT_ID && efs_reserved_root_name(name);
}

/* ---- names ---------------------------------------------------------------------------------- */

/* A plaintext name's backing entry in its directory. */
struct bname {
    char b[EFS_BACKING_MAX];
    bool is_long;
    char full[EFS_ENC_MAX];
};

/* The directory id that binds the names in dir (the filesystem id for the root). */
int efs_dir_id(struct efs *fs, struct inode *dir, uint8_t out[EFS_DIRID_LEN])
{
    int rc = 0;
    if (dir == &fs->root) {
        memcpy(out, fs->cfg->fs_id, EFS_DIRID_LEN);
        return 0;
    }
    pthread_mutex_lock(&fs->table_lock);
    if (dir->dirid_ok) {
        memcpy(out, dir->dirid, EFS_DIRID_LEN);
        pthread_mutex_unlock(&fs->table_lock);
        return 0;
    }
    pthread_mutex_unlock(&fs->table_lock);
    rc = efs_dirid_read_at(dir->fd, fs->cfg->dirids_in_xattr, out);
    if (rc) {
        EFS_ERROR("directory (inode %" PRIu64 "): its directory id is missing or damaged", (uint64_t)dir->ino);
        return rc;
    }
    pthread_mutex_lock(&fs->table_lock);
    memcpy(dir->dirid, out, EFS_DIRID_LEN);
    dir->dirid_ok = 1;
    pthread_mutex_unlock(&fs->table_lock);
    return 0;
}

/* Map name in directory (parent) to its backing name. Plaintext mode: identity, reserved names at
 * the root refused with `reserved_err`. */
static int map_name(struct efs *fs, fuse_ino_t parent, struct inode *dir, const char *name, struct bname *bn,
                    int reserved_err)
{
    uint8_t id[EFS_DIRID_LEN];
    int rc;
    bn->is_long = false;
    if (!fs->names) {
        if (reserved(parent, name))
            return reserved_err;
        if (strlen(name) >= sizeof bn->b)
            return -ENAMETOOLONG;
        strcpy(bn->b, name);
        return 0;
    }
    rc = efs_dir_id(fs, dir, id);
    if (!rc)
        rc = efs_name_encrypt(fs->names, id, name, bn->b, &bn->is_long, bn->full);
    return rc;
}

/* Before an entry is made under bn: its long-name sidecar, durably. */
static int prepare_name(struct inode *dir, const struct bname *bn)
{
    return bn->is_long ? efs_longname_write_at(dir->fd, bn->b, bn->full) : 0;
}

/* After the entry bn is gone: its sidecar. */
static void forget_name(struct inode *dir, const struct bname *bn)
{
    if (bn->is_long)
        (void)efs_longname_remove_at(dir->fd, bn->b);
}

static void temp_name(char out[64])
{
    uint8_t r[8];
    randombytes_buf(r, sizeof r);
    snprintf(out, 64, ".envelopefs.tmp.%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5], r[6],
             r[7]);
}

static int write_header(struct efs *fs, int fd, const efs_header *h)
{
    int rc = efs_header_store(fd, h, fs->cfg->dek_in_xattr);
    if (rc)
        return rc;
    /* The header is durable before any data can be. */
    return fdatasync(fd) ? -errno : 0;
}

int efs_do_lookup(fuse_req_t req, fuse_ino_t parent, const char *name, struct fuse_entry_param *e)
{
    struct efs *fs = fs_of(req);
    struct inode *p = inode_of(req, parent);
    struct bname bn;
    int rc;

    memset(e, 0, sizeof *e);
    rc = map_name(fs, parent, p, name, &bn, -ENOENT);
    if (rc)
        return rc;
    return efs_lookup_backing(fs, p->fd, bn.b, e);
}

/* ---- namespace ------------------------------------------------------------------------------ */

/* Give a new entry the caller's ownership (the daemon runs as root), honouring setgid dirs. */
static void own(fuse_req_t req, struct inode *parent, int dirfd, const char *name, bool is_dir)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    struct stat pst;
    gid_t gid = ctx->gid;
    static _Atomic int root = -1; /* the daemon's euid does not change */
    if (root < 0)
        root = geteuid() == 0;
    if (!root)
        return;
    if (fstatat(parent->fd, "", &pst, AT_EMPTY_PATH) == 0 && (pst.st_mode & S_ISGID)) {
        gid = pst.st_gid;
        if (is_dir) {
            struct stat st;
            if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                char p[EFS_PROCPATH_MAX];
                int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                if (fd >= 0) {
                    (void)fchmodat(AT_FDCWD, efs_procpath(fd, p), (st.st_mode & 07777) | S_ISGID, 0);
                    close(fd);
                }
            }
        }
    }
    (void)fchownat(dirfd, name, ctx->uid, gid, AT_SYMLINK_NOFOLLOW);
}

/* Reply to a request that made the entry bn (its backing name, mapped already) in dir, or failed (rc). */
static void reply_new_entry(fuse_req_t req, struct inode *dir, const struct bname *bn, int rc)
{
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    if (!rc)
        rc = efs_lookup_backing(fs_of(req), dir->fd, bn->b, &e);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_entry(req, &e);
}

void efs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct efs *fs = fs_of(req);
    struct inode *p = inode_of(req, parent);
    struct bname bn;
    char tmp[64];
    uint8_t id[EFS_DIRID_LEN];
    int rc = map_name(fs, parent, p, name, &bn, -EPERM), dfd;

    if (!rc && !fs->names) {
        if (mkdirat(p->fd, bn.b, mode))
            rc = -errno;
        else
            own(req, p, p->fd, bn.b, true);
    } else if (!rc && !(rc = prepare_name(p, &bn))) {
        /* A directory never exists without its durable id, so that a crash never leaves one whose
         * entries cannot be named: a spare directory (spares.c) whose id was made durable in a batch is
         * renamed into place ... */
        rc = efs_spares_take_dir(fs->spares, p->fd, bn.b, mode);
        if (!rc) {
            own(req, p, p->fd, bn.b, true);
        } else if (rc == -EAGAIN) {
            /* ... or, with none ready, one is made under a temporary name with its id, then renamed. */
            temp_name(tmp);
            if (mkdirat(p->fd, tmp, mode)) {
                rc = -errno;
            } else if ((dfd = openat(p->fd, tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
                rc = -errno;
                unlinkat(p->fd, tmp, AT_REMOVEDIR);
            } else {
                rc = efs_dirid_create_at(dfd, fs->cfg->dirids_in_xattr, id);
                if (!rc)
                    own(req, p, p->fd, tmp, true);
                if (!rc && renameat2(p->fd, tmp, p->fd, bn.b, RENAME_NOREPLACE))
                    rc = -errno;
                if (rc) {
                    unlinkat(dfd, EFS_DIRID_NAME, 0);
                    unlinkat(p->fd, tmp, AT_REMOVEDIR);
                }
                close(dfd);
            }
        }
        if (rc && rc != -EEXIST) /* (an existing entry of this name keeps its sidecar) */
            forget_name(p, &bn);
    }
    reply_new_entry(req, p, &bn, rc);
}

void efs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    struct efs *fs = fs_of(req);
    struct inode *p = inode_of(req, parent);
    struct bname bn;
    int rc = map_name(fs, parent, p, name, &bn, -EPERM);
    if (!rc && S_ISREG(mode))
        rc = -EPERM; /* regular files are made by create (they need a header) */
    if (!rc)
        rc = prepare_name(p, &bn);
    if (!rc && mknodat(p->fd, bn.b, mode, rdev))
        rc = -errno;
    if (!rc)
        own(req, p, p->fd, bn.b, false);
    reply_new_entry(req, p, &bn, rc);
}

void efs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    struct efs *fs = fs_of(req);
    struct inode *p = inode_of(req, parent);
    struct bname bn;
    int rc = map_name(fs, parent, p, name, &bn, -EPERM);
    if (!rc && strlen(link) >= PATH_MAX)
        rc = -ENAMETOOLONG;
    if (!rc)
        rc = prepare_name(p, &bn);
    if (!rc && !(rc = efs_symlink_create(fs->keys, fs->root.fd, p->fd, bn.b, link)))
        own(req, p, p->fd, bn.b, false);
    reply_new_entry(req, p, &bn, rc);
}

void efs_op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    struct efs *fs = fs_of(req);
    struct inode *in = inode_of(req, ino);
    char out[PATH_MAX];
    int rc = efs_symlink_read(fs->keys, fs->root.fd, in->fd, "", out);
    if (rc == -EIO)
        EFS_ERROR("symlink (inode %" PRIu64 "): target fails authentication", (uint64_t)in->ino);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_readlink(req, out);
}

/* Before the entry `backing` of dirfd is removed or replaced: an O_PATH descriptor of it if it may be a
 * symlink with a long target (for efs_symlink_forget afterwards), else -1. *st: its attributes, or st_ino
 * 0 if it could not be stated. */
static int hold_if_long_symlink(int dirfd, const char *backing, struct stat *st)
{
    if (fstatat(dirfd, backing, st, AT_SYMLINK_NOFOLLOW)) {
        st->st_ino = 0;
        return -1;
    }
    if (!efs_symlink_maybe_long(st))
        return -1;
    return openat(dirfd, backing, O_PATH | O_NOFOLLOW | O_CLOEXEC);
}

void efs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct efs *fs = fs_of(req);
    struct inode *p = inode_of(req, parent);
    struct bname bn;
    struct stat st = {0};
    uint64_t t0[2];
    int rc, held = -1, gone_fd = -1;
    efs_timing_now(t0);
    rc = map_name(fs, parent, p, name, &bn, -ENOENT);
    if (!rc)
        held = hold_if_long_symlink(p->fd, bn.b, &st);
    if (!rc && unlinkat(p->fd, bn.b, 0))
        rc = -errno;
    if (!rc)
        forget_name(p, &bn);
    if (!rc && st.st_ino && S_ISREG(st.st_mode) && st.st_nlink == 1)
        gone_fd = efs_inode_unlinked(fs, st.st_dev, st.st_ino); /* its last name: gone now if unused (inodes.c) */
    if (gone_fd >= 0 && !fs->closer) { /* no closer threads (ENVELOPEFS_CLOSER=0): closed inside the request */
        efs_inode_close_unlinked(fs, gone_fd, st.st_ino);
        gone_fd = -1;
    }
    efs_symlink_forget(fs->root.fd, held); /* (removes its target only if it was the last link) */
    efs_timing_add(&fs->unlink_req, t0); /* (before the reply: what the caller waits for, less the reply) */
    fuse_reply_err(req, -rc);
    /* Queued after the reply, so that waking a closer thread does not delay it. The RMDIR that follows a
     * directory's last UNLINK is read by the leader — this thread, which serves an UNLINK itself — after
     * this, so it finds the descriptor queued and waits for it; only if leadership was passed for other
     * queued requests (or over io_uring) may that RMDIR run first, and its backing rmdir then waits for one
     * file's eviction, as it did for every file before the closer (closer.c). */
    if (gone_fd >= 0)
        efs_inode_close_unlinked(fs, gone_fd, st.st_ino);
}

/* Remove an empty directory whose only backing entry is its id file: the id file is moved out first
 * (and back if rmdir fails), so a directory is never left without its id. */
static int rmdir_encrypted(struct inode *p, const char *backing)
{
    char tmp[64];
    struct dirent *e;
    DIR *d;
    int dfd = openat(p->fd, backing, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), rc = 0;
    if (dfd < 0)
        return -errno;
    d = fdopendir(dfd);
    if (!d) {
        rc = -errno;
        close(dfd);
        return rc;
    }
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, EFS_DIRID_NAME)) {
            closedir(d);
            return -ENOTEMPTY;
        }
    temp_name(tmp);
    if (renameat(dirfd(d), EFS_DIRID_NAME, p->fd, tmp) && errno != ENOENT) {
        rc = -errno;
    } else if (unlinkat(p->fd, backing, AT_REMOVEDIR)) {
        rc = -errno;
        (void)renameat(p->fd, tmp, dirfd(d), EFS_DIRID_NAME);
    } else {
        unlinkat(p->fd, tmp, 0);
    }
    closedir(d);
    return rc;
}

void efs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct efs *fs = fs_of(req);
    struct inode *p = inode_of(req, parent);
    struct bname bn;
    uint64_t t0[2];
    int rc;
    efs_timing_now(t0);
    rc = map_name(fs, parent, p, name, &bn, -ENOENT);
    /* Its files' descriptors closed first (closer.c): the backing rmdir would otherwise busy-walk the child
     * dentries that a closer thread is freeing at that moment. */
    if (!rc)
        efs_closer_drain(fs->closer);
    if (!rc) /* an id in an xattr goes with the directory; an id file must be moved out first */
        rc = fs->names && !fs->cfg->dirids_in_xattr ? rmdir_encrypted(p, bn.b)
                                                     : (unlinkat(p->fd, bn.b, AT_REMOVEDIR) ? -errno : 0);
    if (!rc)
        forget_name(p, &bn);
    efs_timing_add(&fs->rmdir_req, t0);
    fuse_reply_err(req, -rc);
}

void efs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    struct efs *fs = fs_of(req);
    struct inode *p = inode_of(req, parent), *np = inode_of(req, newparent);
    struct bname from, to;
    int rc = map_name(fs, parent, p, name, &from, -EPERM);
    if (!rc)
        rc = map_name(fs, newparent, np, newname, &to, -EPERM);
    int held = -1;
    if (!rc)
        rc = prepare_name(np, &to);
    if (!rc && !(flags & RENAME_EXCHANGE)) /* a replaced symlink's long target */
        held = hold_if_long_symlink(np->fd, to.b, &(struct stat){0});
    if (!rc && renameat2(p->fd, from.b, np->fd, to.b, flags))
        rc = -errno;
    efs_symlink_forget(fs->root.fd, held);
    /* the old name is gone (after an exchange both names still exist) */
    if (!rc && !(flags & RENAME_EXCHANGE) && !(p == np && !strcmp(from.b, to.b)))
        forget_name(p, &from);
    fuse_reply_err(req, -rc);
}

void efs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    struct efs *fs = fs_of(req);
    struct inode *in = inode_of(req, ino), *np = inode_of(req, newparent);
    struct bname bn;
    char p[EFS_PROCPATH_MAX];
    int rc = map_name(fs, newparent, np, newname, &bn, -EPERM);
    if (!rc)
        rc = prepare_name(np, &bn);
    if (!rc && linkat(AT_FDCWD, efs_procpath(in->fd, p), np->fd, bn.b, AT_SYMLINK_FOLLOW))
        rc = -errno;
    reply_new_entry(req, np, &bn, rc);
}

void efs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
    struct efs *fs = fs_of(req);
    struct inode *p = inode_of(req, parent), *in;
    struct fuse_entry_param e;
    efs_header h;
    efs_file_keys *fk = NULL;
    int fd = -1, rc;
    struct stat st;

    struct bname bn;

    rc = map_name(fs, parent, p, name, &bn, -EPERM);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    fk = efs_secpool_alloc(sizeof *fk);
    if (!fk) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* A spare file with a durable header becomes the new file (spares.c) ... */
    rc = prepare_name(p, &bn);
    if (!rc)
        rc = efs_spares_take(fs->spares, p->fd, bn.b, mode, &fd, &h, fk);
    if (rc == -EAGAIN) {
        /* ... or, with none ready, keys first (if the key service refuses, nothing is written), then
         * the header, durable before any data can be. */
        rc = efs_keys_new_file(fs->keys, &h, fk);
        if (!rc) {
            fd = openat(p->fd, bn.b, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, mode & 07777);
            if (fd < 0)
                rc = -errno;
        }
        if (!rc) {
            rc = write_header(fs, fd, &h);
            if (rc) {
                close(fd);
                fd = -1;
                unlinkat(p->fd, bn.b, 0);
            }
        }
    }
    if (rc) {
        if (rc != -EEXIST) /* an existing entry of this name keeps its long-name sidecar */
            forget_name(p, &bn);
        goto fail;
    }
    own(req, p, p->fd, bn.b, false);
    memset(&e, 0, sizeof e);
    rc = efs_lookup_backing(fs, p->fd, bn.b, &e); /* the name is mapped already */
    if (rc)
        goto fail;
    in = (struct inode *)(uintptr_t)e.ino;
    if (fstat(fd, &st) == 0 && st.st_ino != in->ino) {
        rc = -EIO; /* raced with a rename */
        efs_inode_unref(fs, in, 1);
        goto fail;
    }
    pthread_rwlock_wrlock(&in->rw);
    if (!in->loaded && !(rc = efs_inode_attach(fs, in, fk, &h, fs->cfg->dek_in_xattr ? 0 : efs_header_len(&h), 0)))
        fk = NULL;
    pthread_rwlock_unlock(&in->rw);
    if (rc) {
        efs_inode_unref(fs, in, 1);
        goto fail;
    }
    rc = efs_handle_new(fs, in, fd, 0, fi);
    if (rc) {
        efs_inode_unref(fs, in, 1);
        goto fail;
    }
    if (fk)
        efs_secpool_free(fk, sizeof *fk);
    e.attr.st_size = 0;
    fuse_reply_create(req, &e, fi);
    return;
fail:
    if (fd >= 0)
        close(fd);
    if (fk)
        efs_secpool_free(fk, sizeof *fk);
    fuse_reply_err(req, -rc);
}
