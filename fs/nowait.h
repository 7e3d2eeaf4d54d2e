/*
 * nowait.h — a thread's "serve without blocking" mode (nowait.c). The request loop's leader, serving a
 * small READ while other requests wait unread in /dev/fuse, sets a hook instead of handing the READ to
 * another thread; the read path then tries what it needs without blocking (the inode lock with a try-lock,
 * the backing file with preadv2(RWF_NOWAIT), which fails with EAGAIN unless the data is in the page
 * cache) and calls efs_nowait_will_block() before anything that would block: the hook hands leadership to
 * another thread there, so the queued requests are read while this one waits. Outside the mode (every
 * other thread, the io_uring transport) the read path does what it always did. Per thread; no locks.
 */
#ifndef EFS_NOWAIT_H
#define EFS_NOWAIT_H

#include <stdbool.h>

/* Enter the mode on this thread: hook(arg) runs at the first efs_nowait_will_block(), at most once. */
void efs_nowait_begin(void (*hook)(void *arg), void *arg);
/* Leave it; true if the hook ran (the thread did, or was about to do, something that blocks). */
bool efs_nowait_end(void);
/* Is this thread in the mode, with the hook not yet run (should it try without blocking)? */
bool efs_nowait_active(void);
/* This thread is about to block: run the hook if it is in the mode and the hook has not run (no-op else). */
void efs_nowait_will_block(void);

#endif
