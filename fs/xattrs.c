/*
 * xattrs.c — extended attributes of the directory mount (see mountfs.h): user.* only, values sealed
 * (keys.c, small values), names in the clear; user.envelopefs.* hidden; the statistics xattr (stats.c).
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/xattr.h>

#include "common/log.h"
#include "mountfs.h"

/* ---- xattrs: user.* only, values encrypted (names are not) ---------------------------------- */

static bool hidden_xattr(const char *name)
{
    return !strncmp(name, "user.envelopefs.", 16);
}

/* Reply to getxattr/listxattr: the size when asked for it (size 0), else the value or ERANGE. */
static void reply_xattr_value(fuse_req_t req, size_t size, const void *value, size_t len)
{
    if (size == 0)
        fuse_reply_xattr(req, len);
    else if (size < len)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, value, len);
}

void efs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags)
{
    struct efs *fs = fs_of(req);
    struct inode *in = inode_of(req, ino);
    uint8_t *sealed;
    size_t sl;
    char p[EFS_PROCPATH_MAX];
    int rc;
    if (strncmp(name, "user.", 5)) {
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    if (hidden_xattr(name)) {
        fuse_reply_err(req, EPERM);
        return;
    }
    if (in->type != S_IFREG && in->type != S_IFDIR) {
        fuse_reply_err(req, EPERM);
        return;
    }
    sealed = malloc(size + EFS_BLOCK_OVERHEAD);
    if (!sealed) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    rc = efs_seal_small(fs->keys, EFS_PURPOSE_XATTR, name, (const uint8_t *)value, size, sealed, &sl);
    if (!rc && setxattr(efs_procpath(in->fd, p), name, sealed, sl, flags))
        rc = -errno;
    free(sealed);
    fuse_reply_err(req, -rc);
}

void efs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    struct efs *fs = fs_of(req);
    struct inode *in = inode_of(req, ino);
    uint8_t *sealed = NULL, *plain = NULL;
    size_t pl;
    ssize_t n;
    char p[EFS_PROCPATH_MAX];

    fs->getxattr_requests++;
    if (ino == FUSE_ROOT_ID && !strcmp(name, EFS_XATTR_STATS)) {
        char s[4096];
        int len = efs_stats_json(fs, s, sizeof s);
        reply_xattr_value(req, size, s, (size_t)len);
        return;
    }
    if (hidden_xattr(name) || (in->type != S_IFREG && in->type != S_IFDIR)) { /* (only user.* get here) */
        fuse_reply_err(req, ENODATA);
        return;
    }
    n = getxattr(efs_procpath(in->fd, p), name, NULL, 0);
    if (n < 0) {
        fuse_reply_err(req, errno);
        return;
    }
    sealed = malloc((size_t)n + 1);
    plain = malloc((size_t)n + 1);
    if (!sealed || !plain) {
        fuse_reply_err(req, ENOMEM);
        goto out;
    }
    n = getxattr(p, name, sealed, (size_t)n);
    if (n < 0) {
        fuse_reply_err(req, errno);
        goto out;
    }
    if (efs_open_small(fs->keys, EFS_PURPOSE_XATTR, name, sealed, (size_t)n, plain, &pl)) {
        EFS_ERROR("xattr %s of inode %" PRIu64 " fails authentication", name, (uint64_t)in->ino);
        fuse_reply_err(req, EIO);
        goto out;
    }
    reply_xattr_value(req, size, plain, pl);
out:
    free(sealed);
    free(plain);
}

void efs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    struct inode *in = inode_of(req, ino);
    char p[EFS_PROCPATH_MAX], *names = NULL, *out = NULL;
    ssize_t n;
    size_t o = 0;
    if (in->type != S_IFREG && in->type != S_IFDIR) {
        reply_xattr_value(req, size, NULL, 0);
        return;
    }
    n = listxattr(efs_procpath(in->fd, p), NULL, 0);
    if (n < 0) {
        fuse_reply_err(req, errno);
        return;
    }
    names = malloc((size_t)n + 1);
    out = malloc((size_t)n + 1);
    if (!names || !out) {
        fuse_reply_err(req, ENOMEM);
        goto done;
    }
    n = listxattr(p, names, (size_t)n);
    if (n < 0) {
        fuse_reply_err(req, errno);
        goto done;
    }
    for (ssize_t i = 0; i < n;) {
        size_t l = strlen(names + i) + 1;
        if (!strncmp(names + i, "user.", 5) && !hidden_xattr(names + i)) {
            memcpy(out + o, names + i, l);
            o += l;
        }
        i += (ssize_t)l;
    }
    reply_xattr_value(req, size, out, o);
done:
    free(names);
    free(out);
}

void efs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    struct inode *in = inode_of(req, ino);
    char p[EFS_PROCPATH_MAX];
    if (strncmp(name, "user.", 5)) {
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    if (hidden_xattr(name)) {
        fuse_reply_err(req, EPERM);
        return;
    }
    fuse_reply_err(req, removexattr(efs_procpath(in->fd, p), name) ? errno : 0);
}
