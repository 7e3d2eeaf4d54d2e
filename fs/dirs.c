/*
 * dirs.c — directory listings of the directory mount (see mountfs.h): entries decrypted, reserved names
 * hidden, and readdirplus answering from the inode table where it can.
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

#include "common/log.h"
#include "mountfs.h"

/* ---- directories ---------------------------------------------------------------------------- */

struct dirh {
    DIR *dp;
    struct dirent *entry;
    off_t offset;
    uint8_t dirid[EFS_DIRID_LEN];  /* encrypted names: this directory's id */
    int ahead;                     /* entries after the current one whose headers are being read */
};

/* In a filesystem without a fixed header size (config format ≤ 2), readdirplus reads every new regular
 * file's header (its length gives the plaintext size). Start those
 * reads for the next entries all at once, so a cold `ls -l` waits for one batch of disk reads instead of
 * one read per file. Leaves the stream where it was. */
static void prefetch_headers(struct dirh *d)
{
    long pos = telldir(d->dp);
    struct dirent *e;
    int n = 0, dfd = dirfd(d->dp);
    if (pos < 0)
        return;
    while (n < 64 && (e = readdir(d->dp))) {
        int fd;
        n++;
        if (e->d_type != DT_REG)
            continue;
        fd = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0) {
            (void)posix_fadvise(fd, 0, 4096, POSIX_FADV_WILLNEED);
            close(fd);
        }
    }
    seekdir(d->dp, pos);
    d->ahead = n;
}

void efs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct inode *in = inode_of(req, ino);
    struct dirh *d = calloc(1, sizeof *d);
    int fd;
    if (!d) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    if (fs_of(req)->names) {
        int rc = efs_dir_id(fs_of(req), in, d->dirid);
        if (rc) {
            free(d);
            fuse_reply_err(req, -rc);
            return;
        }
    }
    fd = openat(in->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || !(d->dp = fdopendir(fd))) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        free(d);
        fuse_reply_err(req, err);
        return;
    }
    fi->fh = (uintptr_t)d;
    fi->cache_readdir = 1;
    fuse_reply_open(req, fi);
}

/* readdir and readdirplus: entries decrypted (or, at the root of a plaintext-names filesystem,
 * the reserved names hidden); entries failing authentication are skipped with a log line. With plus,
 * each entry is also looked up (one reference the kernel will forget), which spares ls -l a LOOKUP
 * round trip per entry. */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi,
                       bool plus)
{
    struct efs *fs = fs_of(req);
    struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
    char plain[256];
    const char *name;
    char *buf = calloc(1, size), *p = buf;
    size_t rem = size;
    int err = 0;
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    if (off != d->offset) {
        seekdir(d->dp, off);
        d->entry = NULL;
        d->offset = off;
        d->ahead = 0;
    }
    for (;;) {
        struct fuse_entry_param e;
        bool dots;
        size_t n;
        if (!d->entry) {
            if (plus && !efs_config_data_offset(fs->cfg, NULL) && d->ahead-- <= 0)
                prefetch_headers(d);
            errno = 0;
            d->entry = readdir(d->dp);
            if (!d->entry) {
                err = errno;
                break;
            }
        }
        name = d->entry->d_name;
        dots = !strcmp(name, ".") || !strcmp(name, "..");
        if (dots) {
            /* shown as they are */
        } else if (fs->names) {
            int rc = efs_name_from_backing(fs->names, dirfd(d->dp), d->dirid, name, plain);
            if (rc == -EBADMSG)
                EFS_ERROR("directory (inode %" PRIu64 "): entry %s fails authentication (tampered or moved "
                          "from another directory); skipped", (uint64_t)inode_of(req, ino)->ino, name);
            if (rc) {
                d->offset = d->entry->d_off;
                d->entry = NULL;
                continue;
            }
            name = plain;
        } else if (ino == FUSE_ROOT_ID && efs_reserved_root_name(name)) {
            d->offset = d->entry->d_off;
            d->entry = NULL;
            continue;
        }
        memset(&e, 0, sizeof e);
        e.attr.st_ino = d->entry->d_ino;
        e.attr.st_mode = (mode_t)(d->entry->d_type << 12);
        if (plus && !dots) {
            struct inode *dir = inode_of(req, ino);
            int rc = dir->dev ? efs_readdirplus_known(fs, dir->dev, d->entry->d_ino, &e) : -ENOENT;
            if (rc == -ENOENT)
                rc = efs_lookup_backing(fs, dirfd(d->dp), d->entry->d_name, &e);
            if (rc == -ENOENT) { /* removed since readdir saw it */
                d->offset = d->entry->d_off;
                d->entry = NULL;
                continue;
            }
            if (rc) {
                err = -rc;
                break;
            }
        }
        n = plus ? fuse_add_direntry_plus(req, p, rem, name, &e, d->entry->d_off)
                 : fuse_add_direntry(req, p, rem, name, &e.attr, d->entry->d_off);
        if (n > rem) {
            if (e.ino) /* not sent: the kernel will not forget it */
                efs_inode_unref(fs, (struct inode *)(uintptr_t)e.ino, 1);
            break;
        }
        p += n;
        rem -= n;
        d->offset = d->entry->d_off;
        d->entry = NULL;
    }
    if (err && rem == size) /* an error with nothing to show: report it */
        fuse_reply_err(req, err);
    else
        fuse_reply_buf(req, buf, size - rem);
    free(buf);
}

void efs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, false);
}

void efs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, true);
}

void efs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
    (void)ino;
    closedir(d->dp);
    free(d);
    fuse_reply_err(req, 0);
}

void efs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
    int fd = dirfd(d->dp);
    (void)ino;
    fuse_reply_err(req, (datasync ? fdatasync(fd) : fsync(fd)) ? errno : 0);
}
