/*
 * headerio.c — store and load a file's header (see headerio.h).
 */
#include "headerio.h"

#include <errno.h>
#include <sys/xattr.h>
#include <unistd.h>

int efs_header_store(int fd, const efs_header *h, bool in_xattr)
{
    uint8_t buf[EFS_HDR_MAX];
    size_t len = efs_header_len(h);
    if (efs_header_encode(h, buf, sizeof buf))
        return -EIO;
    if (in_xattr)
        return fsetxattr(fd, EFS_XATTR_HEADER, buf, len, XATTR_CREATE) ? -errno : 0;
    if (pwrite(fd, buf, len, 0) != (ssize_t)len)
        return errno ? -errno : -EIO;
    return 0;
}

int efs_header_load(int fd, bool in_xattr, efs_header *h, size_t *hdr_len, size_t *data_off)
{
    uint8_t buf[EFS_HDR_MAX];
    ssize_t n;
    if (in_xattr) {
        n = fgetxattr(fd, EFS_XATTR_HEADER, buf, sizeof buf);
        if (n < 0)
            return errno == ENODATA ? -EIO : -errno;
    } else {
        n = pread(fd, buf, sizeof buf, 0);
        if (n < 0)
            return -errno;
    }
    if (efs_header_parse(buf, (size_t)n, h, hdr_len))
        return -EIO;
    *data_off = in_xattr ? 0 : *hdr_len;
    return 0;
}
