/*
 * symlink.c — symlink targets, short in the backing symlink, long in the root's store (see symlink.h).
 */
#include "symlink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "common/jsonb64.h"

#define SEALED_MAX (PATH_MAX + EFS_BLOCK_OVERHEAD)

/* Does the sealed, base64url form of an n-byte target fit in a backing symlink? */
static bool fits_short(size_t n) { return (n + EFS_BLOCK_OVERHEAD) * 4 / 3 + 4 < PATH_MAX; }

/* A long target's AAD binds its store id: store files cannot be swapped between symlinks. */
static void long_aad(const char *idhex, char out[96])
{
    snprintf(out, 96, "envelopefs long symlink v1 %s", idhex);
}

/* The store id in a backing symlink's target, or NULL if it is not a long symlink's. */
static const char *long_id(const char *backing, size_t n)
{
    size_t p = sizeof EFS_LONG_SYMLINK_PREFIX - 1;
    if (n != EFS_LONG_SYMLINK_LEN || memcmp(backing, EFS_LONG_SYMLINK_PREFIX, p))
        return NULL;
    for (size_t i = p; i < n; i++)
        if (!((backing[i] >= '0' && backing[i] <= '9') || (backing[i] >= 'a' && backing[i] <= 'f')))
            return NULL;
    return backing + p;
}

static int store_path(const char *idhex, char out[64])
{
    return snprintf(out, 64, "%s/%s", EFS_SYMLINK_STORE, idhex) < 64 ? 0 : -ENAMETOOLONG;
}

/* Seal a long target into a new store file; its id (hex) into idhex. Durable before the symlink is made. */
static int store_long(efs_keys *k, int root_fd, const char *target, size_t n, char idhex[33])
{
    uint8_t id[16], *sealed = malloc(n + EFS_BLOCK_OVERHEAD);
    char aad[96], path[64];
    size_t sl;
    int fd, rc, dfd;
    if (!sealed)
        return -ENOMEM;
    randombytes_buf(id, sizeof id);
    sodium_bin2hex(idhex, 33, id, sizeof id);
    long_aad(idhex, aad);
    rc = efs_seal_small(k, EFS_PURPOSE_SYMLINK, aad, (const uint8_t *)target, n, sealed, &sl);
    if (!rc && mkdirat(root_fd, EFS_SYMLINK_STORE, 0700) && errno != EEXIST)
        rc = -errno;
    if (!rc)
        rc = store_path(idhex, path);
    if (rc) {
        free(sealed);
        return rc;
    }
    fd = openat(root_fd, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0400);
    if (fd < 0) {
        rc = -errno;
    } else {
        if (write(fd, sealed, sl) != (ssize_t)sl || fdatasync(fd))
            rc = errno ? -errno : -EIO;
        close(fd);
        if (rc)
            (void)unlinkat(root_fd, path, 0);
    }
    free(sealed);
    if (!rc && (dfd = openat(root_fd, EFS_SYMLINK_STORE, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        (void)fsync(dfd); /* the store file's entry, too */
        close(dfd);
    }
    return rc;
}

int efs_symlink_create(efs_keys *k, int root_fd, int dirfd, const char *name, const char *target)
{
    size_t n = strlen(target), sealed_len, enc_cap = (n + EFS_BLOCK_OVERHEAD) * 4 / 3 + 8;
    uint8_t *sealed;
    char *enc, idhex[33], path[64];
    int rc;
    if (n >= PATH_MAX)
        return -ENAMETOOLONG;
    if (!fits_short(n)) {
        char backing[EFS_LONG_SYMLINK_LEN + 1];
        rc = store_long(k, root_fd, target, n, idhex);
        if (rc)
            return rc;
        snprintf(backing, sizeof backing, "%s%s", EFS_LONG_SYMLINK_PREFIX, idhex);
        if (symlinkat(backing, dirfd, name)) {
            rc = -errno;
            if (!store_path(idhex, path))
                (void)unlinkat(root_fd, path, 0);
        }
        return rc;
    }
    sealed = malloc(n + EFS_BLOCK_OVERHEAD);
    enc = malloc(enc_cap);
    if (!sealed || !enc) {
        rc = -ENOMEM;
    } else if (!(rc = efs_seal_small(k, EFS_PURPOSE_SYMLINK, EFS_SYMLINK_AAD, (const uint8_t *)target, n, sealed,
                                     &sealed_len))) {
        sodium_bin2base64(enc, enc_cap, sealed, sealed_len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        if (symlinkat(enc, dirfd, name))
            rc = -errno;
    }
    free(sealed);
    free(enc);
    return rc;
}

/* Open a long target's store file id into out. */
static int read_long(efs_keys *k, int root_fd, const char *idhex, char out[PATH_MAX])
{
    uint8_t *sealed = malloc(SEALED_MAX + 1);
    char aad[96], path[64];
    size_t ol = 0;
    ssize_t n = -1;
    int fd, rc = -EIO;
    if (!sealed)
        return -ENOMEM;
    if (!store_path(idhex, path) && (fd = openat(root_fd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) >= 0) {
        n = read(fd, sealed, SEALED_MAX + 1);
        close(fd);
    }
    long_aad(idhex, aad);
    if (n > EFS_BLOCK_OVERHEAD && n <= SEALED_MAX &&
        !efs_open_small(k, EFS_PURPOSE_SYMLINK, aad, sealed, (size_t)n, (uint8_t *)out, &ol) && ol < PATH_MAX &&
        !memchr(out, 0, ol)) {
        out[ol] = 0;
        rc = 0;
    }
    free(sealed);
    return rc;
}

int efs_symlink_read(efs_keys *k, int root_fd, int dirfd, const char *name, char out[PATH_MAX])
{
    char enc[PATH_MAX + 1];
    uint8_t raw[PATH_MAX];
    size_t raw_len, out_len;
    const char *id;
    ssize_t n = readlinkat(dirfd, name, enc, sizeof enc - 1);
    if (n < 0)
        return -errno;
    enc[n] = 0;
    if ((id = long_id(enc, (size_t)n)))
        return read_long(k, root_fd, id, out);
    if (efs_base64_decode(raw, sizeof raw, enc, (size_t)n, NULL, &raw_len, sodium_base64_VARIANT_URLSAFE_NO_PADDING) ||
        raw_len > PATH_MAX - 1 + EFS_BLOCK_OVERHEAD ||
        efs_open_small(k, EFS_PURPOSE_SYMLINK, EFS_SYMLINK_AAD, raw, raw_len, (uint8_t *)out, &out_len))
        return -EIO;
    out[out_len] = 0;
    return 0;
}

/* The store id of the backing symlink open as fd (O_PATH) into idhex, or false. */
static bool long_id_of(int fd, char idhex[33])
{
    char enc[EFS_LONG_SYMLINK_LEN + 2];
    ssize_t n = readlinkat(fd, "", enc, sizeof enc - 1);
    const char *id = n > 0 ? long_id(enc, (size_t)n) : NULL;
    if (!id)
        return false;
    memcpy(idhex, id, 32);
    idhex[32] = 0;
    return true;
}

void efs_symlink_fix_size(int root_fd, int fd, struct stat *st)
{
    char idhex[33], path[64];
    struct stat sst;
    off_t raw;
    if (!S_ISLNK(st->st_mode))
        return;
    if (efs_symlink_maybe_long(st) && long_id_of(fd, idhex)) {
        if (!store_path(idhex, path) && fstatat(root_fd, path, &sst, AT_SYMLINK_NOFOLLOW) == 0 &&
            sst.st_size > EFS_BLOCK_OVERHEAD)
            st->st_size = sst.st_size - EFS_BLOCK_OVERHEAD;
        else
            st->st_size = 0;
        return;
    }
    raw = st->st_size * 3 / 4;
    st->st_size = raw > EFS_BLOCK_OVERHEAD ? raw - EFS_BLOCK_OVERHEAD : 0;
}

void efs_symlink_forget(int root_fd, int fd)
{
    char idhex[33], path[64];
    struct stat st;
    if (fd < 0)
        return;
    if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 && st.st_nlink == 0 &&
        efs_symlink_maybe_long(&st) && long_id_of(fd, idhex) && !store_path(idhex, path))
        (void)unlinkat(root_fd, path, 0);
    close(fd);
}
