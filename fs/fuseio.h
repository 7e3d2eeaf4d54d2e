/*
 * fuseio.h — the daemon's custom I/O under libfuse: every request read from /dev/fuse and every reply
 * written pass through fuseio.c, which adds what libfuse 3.14 does not know to the INIT reply
 * (FUSE_HANDLE_KILLPRIV_V2, FUSE_OVER_IO_URING) and hands replies of io_uring requests to uring.c.
 */
#ifndef EFS_FUSEIO_H
#define EFS_FUSEIO_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>

#include "uring.h"

/* Route the session's /dev/fuse I/O through this module (after fuse_session_mount, before any request is
 * read). With u non-NULL, FUSE over io_uring is offered in the INIT reply and u started once that is
 * written. 0 or -errno. */
int efs_fuseio_attach(struct fuse_session *se, efs_uring *u) __attribute__((warn_unused_result));

/* Forget the efs_uring given to efs_fuseio_attach (before it is freed). */
void efs_fuseio_drop_uring(void);

#endif
