/*
 * symlink.h — symlink targets of the directory mount (docs/FORMAT.md "Symlink targets"), sealed under the
 * filesystem's symlink key. A target whose sealed, base64url form fits in a backing symlink (≤ 3,040
 * bytes) is stored there; a longer one (up to PATH_MAX − 1 = 4,095 bytes) is sealed into a file of the
 * root's .envelopefs-symlinks/ store, named by a random id that the backing symlink holds. Used by the
 * daemon (namespace.c, inodes.c) and fsck. Error convention: 0 / -errno (-EIO: fails authentication).
 */
#ifndef ENVELOPEFS_FS_SYMLINK_H
#define ENVELOPEFS_FS_SYMLINK_H

#include <limits.h>
#include <stddef.h>
#include <sys/stat.h>

#include "keys.h"

#define EFS_SYMLINK_AAD "envelopefs symlink v1"           /* short targets (in the backing symlink) */
#define EFS_SYMLINK_STORE ".envelopefs-symlinks"          /* long targets: at the root of CIPHERDIR */
#define EFS_LONG_SYMLINK_PREFIX "envelopefs:long-symlink:v1:" /* then 32 hex digits: the store file's name */
#define EFS_LONG_SYMLINK_LEN (sizeof EFS_LONG_SYMLINK_PREFIX - 1 + 32)

/* Make the backing symlink `name` in dirfd pointing (sealed) at target (NUL-terminated, < PATH_MAX
 * bytes); root_fd: the backing root (a long target's store). -ENAMETOOLONG beyond PATH_MAX − 1. */
int efs_symlink_create(efs_keys *k, int root_fd, int dirfd, const char *name, const char *target)
    __attribute__((warn_unused_result));

/* The target of the backing symlink (dirfd, name) — name "" with dirfd an O_PATH descriptor of the symlink
 * itself — into out (PATH_MAX bytes, NUL-terminated). */
int efs_symlink_read(efs_keys *k, int root_fd, int dirfd, const char *name, char out[PATH_MAX])
    __attribute__((warn_unused_result));

/* The size lstat shows for the backing symlink whose attributes are st (the target's length): computed
 * from st for a short target, from its store file for a long one (then fd, an O_PATH descriptor of the
 * symlink, is read). */
void efs_symlink_fix_size(int root_fd, int fd, struct stat *st);

/* Whether the entry whose attributes are st is a symlink that may hold a long target (the caller then
 * keeps an O_PATH descriptor of it across its removal and calls efs_symlink_forget). */
static inline int efs_symlink_maybe_long(const struct stat *st)
{
    return S_ISLNK(st->st_mode) && (size_t)st->st_size == EFS_LONG_SYMLINK_LEN;
}

/* After an entry was unlinked or replaced by a rename: if fd (an O_PATH descriptor of it, opened before)
 * is a symlink with a long target and no link is left, remove the target's store file. Closes fd. */
void efs_symlink_forget(int root_fd, int fd);

#endif
