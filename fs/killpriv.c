/*
 * killpriv.c — negotiate FUSE_HANDLE_KILLPRIV_V2 and tell the operations when to clear setuid/setgid.
 *
 * Without KILLPRIV_V2 the kernel asks the daemon for "security.capability" (GETXATTR) before every
 * write(2), to learn whether a write must drop file capabilities: one extra round trip per small
 * write, even with the writeback cache. With KILLPRIV_V2 the superblock gets SB_NOSEC, the kernel
 * stops asking, and the daemon clears setuid/setgid itself when a request carries a KILL_SUIDGID flag
 * (the kernel sets it only when the caller lacks CAP_FSETID, exactly as the VFS would decide).
 * This filesystem cannot hold security.* attributes at all (only user.* are supported), so there are
 * never file capabilities to drop; only the mode bits matter.
 *
 * libfuse 3.14 (Debian 12) predates KILLPRIV_V2 and neither offers the flag nor passes the per-request
 * KILL flags to the operations. So this module sits under libfuse as its custom I/O: on the way in it
 * notes the kernel's INIT offer and each request's KILL flag (in a thread-local: libfuse handles a
 * request in the thread that read it); on the way out it adds FUSE_HANDLE_KILLPRIV_V2 to the INIT reply
 * if the kernel offered it. Everything else passes through unchanged.
 */
#include "killpriv.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "envelopefs/log.h"
#include "fusereq.h"

static _Atomic uint64_t init_unique; /* unique of the INIT request, 0 before it */
static _Atomic int kernel_offers_v2;
static __thread bool kill_requested;

bool efs_killpriv_requested(void) { return kill_requested; }

/* Whether the caller of req belongs to group gid (primary or supplementary). */
static bool caller_in_group(fuse_req_t req, gid_t gid)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    gid_t groups[64];
    int n;
    if (ctx->gid == gid)
        return true;
    n = fuse_req_getgroups(req, (int)(sizeof groups / sizeof groups[0]), groups);
    for (int i = 0; i < n && i < (int)(sizeof groups / sizeof groups[0]); i++)
        if (groups[i] == gid)
            return true;
    return false;
}

int efs_kill_suidgid(fuse_req_t req, int fd)
{
    struct stat st;
    mode_t mode;
    if (fstat(fd, &st))
        return -errno;
    mode = st.st_mode & 07777;
    /* The kernel sent the flag because the caller lacks CAP_FSETID; the rest is the VFS's rule
     * (setattr_should_drop_suidgid): setuid always goes; setgid goes if the group may execute or
     * the caller is not in the file's group. */
    mode &= ~(mode_t)S_ISUID;
    if ((mode & S_ISGID) && ((mode & S_IXGRP) || !caller_in_group(req, st.st_gid)))
        mode &= ~(mode_t)S_ISGID;
    if (mode == (st.st_mode & 07777))
        return 0;
    if (fchmod(fd, mode))
        return -errno;
    return 1;
}

/* Note what the request in buf[0..n) asks for: the INIT offer, or this request's KILL flag. */
static void inspect_request(const unsigned char *buf, size_t n)
{
    struct fuse_in_header ih;
    kill_requested = false;
    if (n < sizeof ih)
        return;
    memcpy(&ih, buf, sizeof ih);
    buf += sizeof ih;
    n -= sizeof ih;
    switch (ih.opcode) {
    case FUSE_INIT: { /* older kernels send a shorter fuse_init_in: only up to flags must be there */
        size_t at = offsetof(struct fuse_init_in, flags);
        if (n >= at + sizeof(uint32_t)) {
            kernel_offers_v2 = (efs_fuse_field32(buf, n, at + sizeof(uint32_t), at) & FUSE_HANDLE_KILLPRIV_V2) != 0;
            init_unique = ih.unique;
        }
        break;
    }
    case FUSE_WRITE:
        kill_requested = (EFS_FUSE_FIELD(struct fuse_write_in, write_flags, buf, n) & FUSE_WRITE_KILL_SUIDGID) != 0;
        break;
    case FUSE_SETATTR:
        kill_requested = (EFS_FUSE_FIELD(struct fuse_setattr_in, valid, buf, n) & FATTR_KILL_SUIDGID) != 0;
        break;
    case FUSE_OPEN:
        kill_requested = (EFS_FUSE_FIELD(struct fuse_open_in, open_flags, buf, n) & FUSE_OPEN_KILL_SUIDGID) != 0;
        break;
    default:
        break;
    }
}

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
    ssize_t n = read(fd, buf, len);
    (void)userdata;
    if (n > 0)
        inspect_request(buf, (size_t)n);
    return n;
}

static efs_uring *uring; /* offered in the INIT reply and started once it is written; NULL: not wanted */

void efs_killpriv_set_uring(efs_uring *u) { uring = u; }

void efs_killpriv_inspect(const void *buf, size_t n) { inspect_request(buf, n); }

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    struct fuse_out_header oh;
    struct fuse_init_out out;
    uint64_t iu = init_unique;
    bool start_uring = false;
    ssize_t rc;
    (void)userdata;
    if (efs_uring_capture(iov, count)) { /* the reply of a request served from an io_uring entry */
        size_t total = 0;
        for (int i = 0; i < count; i++)
            total += iov[i].iov_len;
        return (ssize_t)total;
    }
    if (iu && count >= 2 && iov[0].iov_len >= sizeof oh && (kernel_offers_v2 || uring)) {
        memcpy(&oh, iov[0].iov_base, sizeof oh);
        if (oh.unique == iu && oh.error == 0 && iov[1].iov_len >= offsetof(struct fuse_init_out, flags) + 4 &&
            iov[1].iov_len <= sizeof out) {
            memcpy(&out, iov[1].iov_base, iov[1].iov_len);
            if (kernel_offers_v2)
                out.flags |= FUSE_HANDLE_KILLPRIV_V2;
            if (uring && iov[1].iov_len >= offsetof(struct fuse_init_out, flags2) + 4) {
                out.flags |= FUSE_INIT_EXT; /* flags2 is read only with it */
                out.flags2 |= EFS_FUSE_OVER_IO_URING_FLAGS2;
                start_uring = true;
            }
            iov[1].iov_base = &out; /* our copy, sent below */
            init_unique = 0;
        }
    }
    rc = writev(fd, iov, count);
    if (start_uring && rc >= 0 && efs_uring_start(uring))
        EFS_WARN("FUSE over io_uring could not start: serving over /dev/fuse");
    return rc;
}

int efs_killpriv_attach(struct fuse_session *se)
{
    static const struct fuse_custom_io io = {.read = io_read, .writev = io_writev};
    int fd = fuse_session_fd(se);
    if (fd < 0)
        return -EBADF;
    return fuse_session_custom_io(se, &io, fd);
}
