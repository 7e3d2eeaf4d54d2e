/*
 * fusereq.h — reading fields of a raw FUSE request (struct fuse_in_header, then the opcode's body, as
 * <linux/fuse.h> defines them), for the modules that look at requests before libfuse does (fuseio.c,
 * killpriv.c, loop.c). Pure functions of the bytes.
 */
#ifndef EFS_FUSEREQ_H
#define EFS_FUSEREQ_H

#include <linux/fuse.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The u32 field at `off` of a request body of n bytes, or 0 if the body is shorter than `need` (the
 * size of its struct: every field we read sits inside it). */
static inline uint32_t efs_fuse_field32(const unsigned char *body, size_t n, size_t need, size_t off)
{
    uint32_t v;
    if (n < need)
        return 0;
    memcpy(&v, body + off, sizeof v);
    return v;
}

#define EFS_FUSE_FIELD(type, member, body, n) efs_fuse_field32(body, n, sizeof(type), offsetof(type, member))

#endif
