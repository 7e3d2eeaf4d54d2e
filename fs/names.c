/*
 * names.c — encrypted names (see names.h).
 */
#include "names.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "common/jsonb64.h"

#define AD_LABEL "envelopefs name v1"
#define SIV_TAG 16
#define DIRID_MAGIC "EFD1"

struct efs_names {
    uint8_t *key; /* 64 bytes, locked */
    EVP_CIPHER *siv;
};

int efs_names_new(const uint8_t key[64], efs_names **out)
{
    efs_names *n = calloc(1, sizeof *n);
    if (!n)
        return -ENOMEM;
    n->key = sodium_malloc(64);
    n->siv = EVP_CIPHER_fetch(NULL, "AES-256-SIV", NULL);
    if (!n->key || !n->siv) {
        int rc = n->siv ? -ENOMEM : -ENOSYS; /* no AES-SIV in this OpenSSL */
        efs_names_free(n);
        return rc;
    }
    memcpy(n->key, key, 64);
    *out = n;
    return 0;
}

void efs_names_free(efs_names *n)
{
    if (!n)
        return;
    if (n->key)
        sodium_free(n->key);
    EVP_CIPHER_free(n->siv);
    free(n);
}

static int siv(efs_names *n, int enc, const uint8_t dirid[EFS_DIRID_LEN], const uint8_t *in, size_t in_len,
               uint8_t *tag, uint8_t *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, ok;
    if (!c)
        return -ENOMEM;
    ok = EVP_CipherInit_ex2(c, n->siv, n->key, NULL, enc, NULL) == 1;
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, SIV_TAG, tag) == 1;
    ok = ok && EVP_CipherUpdate(c, NULL, &len, (const uint8_t *)AD_LABEL, (int)strlen(AD_LABEL)) == 1 &&
         EVP_CipherUpdate(c, NULL, &len, dirid, EFS_DIRID_LEN) == 1 &&
         EVP_CipherUpdate(c, out, &len, in, (int)in_len) == 1 && EVP_CipherFinal_ex(c, out + len, &len) == 1;
    if (ok && enc)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, SIV_TAG, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : (enc ? -EIO : -EBADMSG);
}

int efs_name_encrypt(efs_names *n, const uint8_t dirid[EFS_DIRID_LEN], const char *name, char backing[EFS_BACKING_MAX],
                     bool *is_long, char full[EFS_ENC_MAX])
{
    size_t len = strlen(name);
    uint8_t buf[SIV_TAG + 255];
    int rc;
    if (len == 0 || len > 255 || memchr(name, '/', len))
        return len > 255 ? -ENAMETOOLONG : -EINVAL;
    rc = siv(n, 1, dirid, (const uint8_t *)name, len, buf, buf + SIV_TAG);
    if (rc)
        return rc;
    sodium_bin2base64(full, EFS_ENC_MAX, buf, SIV_TAG + len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (strlen(full) <= 255) {
        memcpy(backing, full, strlen(full) + 1);
        *is_long = false;
    } else {
        uint8_t h[32];
        char hb[64];
        crypto_hash_sha256(h, (const uint8_t *)full, strlen(full));
        sodium_bin2base64(hb, sizeof hb, h, sizeof h, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        snprintf(backing, EFS_BACKING_MAX, "L.%s", hb);
        *is_long = true;
    }
    return 0;
}

int efs_name_decrypt(efs_names *n, const uint8_t dirid[EFS_DIRID_LEN], const char *enc, char out[256])
{
    uint8_t buf[SIV_TAG + 255 + 4];
    size_t bl = 0;
    int rc;
    /* efs_base64_decode, not sodium_base642bin: libsodium 1.0.18 decodes every byte >= 0x80 as '_', which
     * would let a second backing name decrypt to the same plaintext name. */
    if (efs_base64_decode(buf, sizeof buf, enc, strlen(enc), NULL, &bl, sodium_base64_VARIANT_URLSAFE_NO_PADDING) ||
        bl <= SIV_TAG || bl > SIV_TAG + 255)
        return -EBADMSG;
    rc = siv(n, 0, dirid, buf + SIV_TAG, bl - SIV_TAG, buf, (uint8_t *)out);
    if (rc)
        return -EBADMSG;
    out[bl - SIV_TAG] = 0;
    if (memchr(out, 0, bl - SIV_TAG) || memchr(out, '/', bl - SIV_TAG))
        return -EBADMSG;
    return 0;
}

enum efs_entry_kind efs_name_kind(const char *b)
{
    size_t l = strlen(b);
    if (!strncmp(b, "L.", 2))
        return l > 5 && !strcmp(b + l - 5, ".name") ? EFS_ENTRY_INTERNAL : EFS_ENTRY_LONG;
    if (strchr(b, '.'))
        return EFS_ENTRY_INTERNAL; /* envelopefs.dirid, temp files, ., .. */
    return EFS_ENTRY_NAME;
}

void efs_longname_sidecar(const char *backing, char out[EFS_BACKING_MAX])
{
    snprintf(out, EFS_BACKING_MAX, "%s.name", backing);
}

/* fsync the directory dirfd (which may be O_PATH: fsync needs the directory opened itself). */
static int fsync_dir_at(int dirfd)
{
    int d = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    if (d < 0 || fsync(d))
        rc = -errno;
    if (d >= 0)
        close(d);
    return rc;
}

static int write_durable_at(int dirfd, const char *name, const void *data, size_t len)
{
    char tmp[EFS_BACKING_MAX + 32];
    uint8_t r[8];
    int fd, rc = 0;
    randombytes_buf(r, sizeof r);
    snprintf(tmp, sizeof tmp, ".envelopefs.tmp.%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5],
             r[6], r[7]);
    fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
    if (fd < 0)
        return -errno;
    if (write(fd, data, len) != (ssize_t)len || fsync(fd))
        rc = errno ? -errno : -EIO;
    close(fd);
    if (!rc && renameat(dirfd, tmp, dirfd, name))
        rc = -errno;
    if (rc)
        unlinkat(dirfd, tmp, 0);
    else
        rc = fsync_dir_at(dirfd);
    return rc;
}

char *efs_procpath(int fd, char buf[EFS_PROCPATH_MAX])
{
    snprintf(buf, EFS_PROCPATH_MAX, "/proc/self/fd/%d", fd);
    return buf;
}

static void dirid_fresh(uint8_t buf[4 + EFS_DIRID_LEN])
{
    memcpy(buf, DIRID_MAGIC, 4);
    randombytes_buf(buf + 4, EFS_DIRID_LEN);
}

int efs_dirid_create_at(int dirfd, bool in_xattr, uint8_t out[EFS_DIRID_LEN])
{
    uint8_t buf[4 + EFS_DIRID_LEN];
    char p[EFS_PROCPATH_MAX];
    dirid_fresh(buf);
    memcpy(out, buf + 4, EFS_DIRID_LEN);
    if (!in_xattr)
        return write_durable_at(dirfd, EFS_DIRID_NAME, buf, sizeof buf);
    if (setxattr(efs_procpath(dirfd, p), EFS_XATTR_DIRID, buf, sizeof buf, XATTR_CREATE))
        return -errno;
    return fsync_dir_at(dirfd); /* the xattr is the directory's metadata */
}

int efs_dirid_write_at(int dirfd, bool in_xattr, int *fd_out)
{
    uint8_t buf[4 + EFS_DIRID_LEN];
    int fd, rc = 0;
    dirid_fresh(buf);
    *fd_out = -1;
    if (in_xattr)
        return fsetxattr(dirfd, EFS_XATTR_DIRID, buf, sizeof buf, XATTR_CREATE) ? -errno : 0;
    fd = openat(dirfd, EFS_DIRID_NAME, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0400);
    if (fd < 0)
        return -errno;
    if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) {
        rc = errno ? -errno : -EIO;
        close(fd);
        (void)unlinkat(dirfd, EFS_DIRID_NAME, 0);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

int efs_dirid_read_at(int dirfd, bool in_xattr, uint8_t out[EFS_DIRID_LEN])
{
    uint8_t buf[4 + EFS_DIRID_LEN + 1];
    ssize_t n;
    if (in_xattr) {
        char p[EFS_PROCPATH_MAX];
        n = getxattr(efs_procpath(dirfd, p), EFS_XATTR_DIRID, buf, sizeof buf); /* dirfd may be O_PATH */
        if (n < 0 && errno != ENODATA && errno != ERANGE)
            return -errno;
    } else {
        int fd = openat(dirfd, EFS_DIRID_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            return errno == ENOENT ? -EIO : -errno;
        n = read(fd, buf, sizeof buf);
        close(fd);
    }
    if (n != 4 + EFS_DIRID_LEN || memcmp(buf, DIRID_MAGIC, 4))
        return -EIO;
    memcpy(out, buf + 4, EFS_DIRID_LEN);
    return 0;
}

int efs_longname_write_at(int dirfd, const char *backing, const char *full)
{
    char side[EFS_BACKING_MAX];
    efs_longname_sidecar(backing, side);
    return write_durable_at(dirfd, side, full, strlen(full));
}

int efs_longname_read_at(int dirfd, const char *backing, char full[EFS_ENC_MAX])
{
    char side[EFS_BACKING_MAX];
    ssize_t n;
    int fd;
    efs_longname_sidecar(backing, side);
    fd = openat(dirfd, side, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    n = read(fd, full, EFS_ENC_MAX - 1);
    close(fd);
    if (n <= 0)
        return -EBADMSG;
    full[n] = 0;
    return 0;
}

int efs_longname_remove_at(int dirfd, const char *backing)
{
    char side[EFS_BACKING_MAX];
    efs_longname_sidecar(backing, side);
    return unlinkat(dirfd, side, 0) && errno != ENOENT ? -errno : 0;
}

int efs_longname_check(const char *backing, const char *full)
{
    uint8_t h[32];
    char hb[64], want[EFS_BACKING_MAX];
    crypto_hash_sha256(h, (const uint8_t *)full, strlen(full));
    sodium_bin2base64(hb, sizeof hb, h, sizeof h, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    snprintf(want, sizeof want, "L.%s", hb);
    return strcmp(want, backing) ? -EBADMSG : 0;
}

int efs_name_from_backing(efs_names *n, int dirfd, const uint8_t dirid[EFS_DIRID_LEN], const char *backing, char out[256])
{
    char full[EFS_ENC_MAX];
    int rc;
    switch (efs_name_kind(backing)) {
    case EFS_ENTRY_NAME:
        return efs_name_decrypt(n, dirid, backing, out);
    case EFS_ENTRY_LONG:
        rc = efs_longname_read_at(dirfd, backing, full);
        if (rc)
            return rc == -ENOENT ? -EBADMSG : rc;
        if (efs_longname_check(backing, full))
            return -EBADMSG;
        return efs_name_decrypt(n, dirid, full, out);
    default:
        return -ENOENT;
    }
}
