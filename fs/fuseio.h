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

/* The custom I/O state of one session (what the INIT exchange noted; its io_uring). One per session, so
 * that a process may serve several. */
typedef struct efs_fuseio efs_fuseio;
efs_fuseio *efs_fuseio_new(void) __attribute__((warn_unused_result)); /* NULL: out of memory */
void efs_fuseio_free(efs_fuseio *io);                                  /* after the session; NULL: no-op */

/* Route the session's /dev/fuse I/O through io (after fuse_session_mount, before any request is read).
 * libfuse hands the custom I/O callbacks only the session's userdata (fuse_session_new's): it MUST be a
 * struct whose first member is an `efs_fuseio *` pointing at io. With u non-NULL, FUSE over io_uring is
 * offered in the INIT reply and u started once that is written. 0 or -errno. */
int efs_fuseio_attach(efs_fuseio *io, struct fuse_session *se, efs_uring *u) __attribute__((warn_unused_result));

/* Forget the efs_uring given to efs_fuseio_attach (before it is freed). */
void efs_fuseio_drop_uring(efs_fuseio *io);

#endif
