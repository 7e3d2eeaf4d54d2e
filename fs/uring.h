/*
 * uring.h — FUSE over io_uring for the mount daemon (experimental, opt-in: ENVELOPEFS_IO_URING=1 at mount,
 * and the fuse module's enable_uring, which only root can set). See uring.c.
 */
#ifndef EFS_URING_H
#define EFS_URING_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

/*
 * The request buffer contract, as for /dev/fuse (loop.h): a request served from a ring entry is handed to
 * libfuse in the entry's own payload buffer, which belongs to the thread serving it until its handler
 * returns; a WRITE's data may be modified in place (the daemon seals it there). The reply is copied out
 * of libfuse's iovecs (efs_uring_capture) before the handler returns, and the buffer is handed back to the
 * kernel for the next request only when the reply is committed, after the handler has returned.
 */
typedef struct efs_uring efs_uring;

/* Whether this mount should offer io_uring: ENVELOPEFS_IO_URING=1 and the kernel allowing it. Logs why
 * not when it was asked for and cannot be had. */
bool efs_uring_wanted(void);

/* Prepare (nothing runs yet) for se, whose /dev/fuse descriptor is fd; requests may carry up to
 * max_payload bytes. NULL on failure. The threads start at efs_uring_start, once INIT is answered. */
efs_uring *efs_uring_new(struct fuse_session *se, int fd, size_t max_payload) __attribute__((warn_unused_result));

/* Start one thread per CPU queue and entry: called right after the INIT reply offering io_uring was
 * written. 0 or -errno (the mount then keeps serving over /dev/fuse: the kernel uses the ring only once
 * every queue has registered). */
int efs_uring_start(efs_uring *u);

/* Called with every reply libfuse sends: true if it answers the request this thread is serving from its
 * ring (the reply is then stored in the ring entry, committed once the request handler returns). */
bool efs_uring_capture(const struct iovec *iov, int count);

/* Requests served through the rings so far. */
uint64_t efs_uring_requests(const efs_uring *u);

/* Stop and join the threads (after the session has ended or been unmounted) and free. NULL: no-op. */
void efs_uring_free(efs_uring *u);

#endif
