/*
 * fuseio.c — the daemon's custom I/O under libfuse (see fuseio.h).
 *
 * On the way in, each request is shown to killpriv.c (its KILL_SUIDGID flag) and the kernel's INIT offer
 * is noted. On the way out, a reply belonging to a request served from an io_uring entry is captured by
 * uring.c instead of being written; the INIT reply gets FUSE_HANDLE_KILLPRIV_V2 if the kernel offered it
 * and FUSE_OVER_IO_URING if io_uring is wanted, and once that reply is written the ring threads start.
 * Everything else passes through unchanged.
 */
#include "fuseio.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/log.h"
#include "fusereq.h"
#include "killpriv.h"
#include "uring_abi.h"

struct efs_fuseio {
    _Atomic uint64_t init_unique; /* unique of the INIT request, 0 before it and once answered */
    _Atomic int kernel_offers_v2;
    efs_uring *uring;             /* offered in the INIT reply and started once it is written; or NULL */
};

/* The session's userdata starts with its efs_fuseio * (see fuseio.h). */
static efs_fuseio *io_of(void *userdata) { return *(efs_fuseio **)userdata; }

efs_fuseio *efs_fuseio_new(void) { return calloc(1, sizeof(efs_fuseio)); }
void efs_fuseio_free(efs_fuseio *io) { free(io); }
void efs_fuseio_drop_uring(efs_fuseio *io) { io->uring = NULL; }

/* Note the kernel's INIT offer in the request buf[0..n). */
static void note_init(efs_fuseio *io, const unsigned char *buf, size_t n)
{
    struct fuse_in_header ih;
    size_t at = offsetof(struct fuse_init_in, flags); /* older kernels send a shorter fuse_init_in */
    if (n < sizeof ih)
        return;
    memcpy(&ih, buf, sizeof ih);
    if (ih.opcode != FUSE_INIT || n - sizeof ih < at + sizeof(uint32_t))
        return;
    io->kernel_offers_v2 =
        (efs_fuse_field32(buf + sizeof ih, n - sizeof ih, at + sizeof(uint32_t), at) & FUSE_HANDLE_KILLPRIV_V2) != 0;
    io->init_unique = ih.unique;
}

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
    ssize_t n = read(fd, buf, len);
    if (n > 0) {
        note_init(io_of(userdata), buf, (size_t)n);
        efs_killpriv_note_request(buf, (size_t)n);
    }
    return n;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    struct fuse_out_header oh;
    struct fuse_init_out out;
    efs_fuseio *io = io_of(userdata);
    uint64_t iu = io->init_unique;
    bool start_uring = false;
    ssize_t rc;
    if (efs_uring_capture(iov, count)) { /* the reply of a request served from an io_uring entry */
        size_t total = 0;
        for (int i = 0; i < count; i++)
            total += iov[i].iov_len;
        return (ssize_t)total;
    }
    if (iu && count >= 2 && iov[0].iov_len >= sizeof oh && (io->kernel_offers_v2 || io->uring)) {
        memcpy(&oh, iov[0].iov_base, sizeof oh);
        if (oh.unique == iu && oh.error == 0 && iov[1].iov_len >= offsetof(struct fuse_init_out, flags) + 4 &&
            iov[1].iov_len <= sizeof out) {
            memcpy(&out, iov[1].iov_base, iov[1].iov_len);
            if (io->kernel_offers_v2)
                out.flags |= FUSE_HANDLE_KILLPRIV_V2;
            if (io->uring && iov[1].iov_len >= offsetof(struct fuse_init_out, flags2) + 4) {
                out.flags |= FUSE_INIT_EXT; /* flags2 is read only with it */
                out.flags2 |= EFS_FUSE_OVER_IO_URING_FLAGS2;
                start_uring = true;
            }
            iov[1].iov_base = &out; /* our copy, sent below */
            io->init_unique = 0;
        }
    }
    rc = writev(fd, iov, count);
    if (start_uring && rc >= 0 && efs_uring_start(io->uring))
        EFS_WARN("FUSE over io_uring could not start: serving over /dev/fuse");
    return rc;
}

int efs_fuseio_attach(efs_fuseio *io, struct fuse_session *se, efs_uring *u)
{
    static const struct fuse_custom_io ops = {.read = io_read, .writev = io_writev};
    int fd = fuse_session_fd(se);
    if (fd < 0)
        return -EBADF;
    io->uring = u;
    return fuse_session_custom_io(se, &ops, fd);
}
