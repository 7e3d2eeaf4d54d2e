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
 * KILL flags to the operations. So the daemon's custom I/O under libfuse (fuseio.c) adds the flag to the
 * INIT reply when the kernel offers it, and shows every request to efs_killpriv_note_request first,
 * which notes its KILL flag in a thread-local (libfuse handles a request in the thread that received it).
 */
#include "killpriv.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>

#include "fusereq.h"

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

void efs_killpriv_note_request(const void *req, size_t n)
{
    const unsigned char *buf = req;
    struct fuse_in_header ih;
    kill_requested = false;
    if (n < sizeof ih)
        return;
    memcpy(&ih, buf, sizeof ih);
    buf += sizeof ih;
    n -= sizeof ih;
    switch (ih.opcode) {
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
