/*
 * killpriv.h — clearing setuid/setgid on write, truncate and open(O_TRUNC) in the daemon, as the
 * kernel's FUSE_HANDLE_KILLPRIV_V2 protocol asks (see killpriv.c for why and how).
 */
#ifndef EFS_KILLPRIV_H
#define EFS_KILLPRIV_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stddef.h>

/* Note whether the raw request req[0..n) (as /dev/fuse delivers it) asks to clear setuid/setgid, for
 * efs_killpriv_requested in this thread. Called with every request before libfuse handles it. */
void efs_killpriv_note_request(const void *req, size_t n);

/* True while handling a request in which the kernel asks the daemon to clear setuid/setgid: a
 * WRITE with FUSE_WRITE_KILL_SUIDGID, a SETATTR with FATTR_KILL_SUIDGID, an OPEN with
 * FUSE_OPEN_KILL_SUIDGID. Valid in the thread that received the request. */
bool efs_killpriv_requested(void);

/* Clear setuid, and setgid when the group may execute or the caller of req is not in the file's group,
 * on the open regular file fd: what the VFS does for a caller without CAP_FSETID. 1 if the mode changed (the kernel's cached attributes are then stale:
 * the caller invalidates them), 0 if there was nothing to clear, or -errno. */
int efs_kill_suidgid(fuse_req_t req, int fd) __attribute__((warn_unused_result));

#endif
