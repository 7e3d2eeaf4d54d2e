/*
 * headerio.h — a regular file's header on the backing filesystem: at the start of the file, or in its
 * user.envelopefs.header xattr (config "dek_in_xattr"). The codec is format.h's. Error convention: 0 / -errno.
 */
#ifndef ENVELOPEFS_FS_HEADERIO_H
#define ENVELOPEFS_FS_HEADERIO_H

#include <stdbool.h>
#include <stddef.h>

#include "format.h"

#define EFS_XATTR_HEADER "user.envelopefs.header"

/* Write an encoded header h at the start of fd, or into its header xattr when in_xattr. Not synced. */
int efs_header_store(int fd, const efs_header *h, bool in_xattr) __attribute__((warn_unused_result));

/* Read and parse the header of the backing file open (readable) as fd: *hdr_len its encoded length,
 * *data_off where the blocks start (hdr_len, or 0 with the header in an xattr). Does not verify the tag.
 * -EIO when it is missing or malformed, another -errno when it cannot be read. */
int efs_header_load(int fd, bool in_xattr, efs_header *h, size_t *hdr_len, size_t *data_off)
    __attribute__((warn_unused_result));

#endif
