/*
 * loop.h — the daemon's FUSE request loop (loop.c): a leader thread serves requests that arrive one at a
 * time itself, hands leadership to followers (up to max_threads) when requests may take long or queue up
 * with no thread about to be free, and leaves it to a thread about to finish otherwise. Replaces
 * fuse_session_loop_mt.
 */
#ifndef EFS_LOOP_H
#define EFS_LOOP_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * The request buffer contract (what lets the write path seal in place, content.c "Sealing outside the
 * lock"): each thread reads requests into a buffer of its own (libfuse's per-thread fuse_buf; SPLICE_READ
 * is off, so data always arrives there, never in a pipe). A handler runs in the thread that read its request,
 * and until it returns that buffer belongs to it alone: a WRITE's data (the `buf` of the write operation,
 * const only in libfuse's prototype) may be modified in place — the daemon encrypts it there — and must not
 * be used after the handler has replied and returned, when the thread reads its next request into it.
 */

/* What a loop counts (relaxed atomics, read while it runs: the stats xattr shows them). Every read of a
 * request by the leader is one of spin_hits (it was already queued, or arrived while the leader polled),
 * spin_misses (the window ended empty and the leader blocked) or unspun (the leader blocked at once:
 * spinning was off, or spin_us is 0). While spinning is off the leader still spins before every 16th read
 * (a probe, counted in spin_hits or spin_misses). */
typedef struct efs_loop_counts {
    _Atomic uint64_t requests;    /* requests read */
    _Atomic uint64_t spin_hits;
    _Atomic uint64_t spin_misses;
    _Atomic uint64_t unspun;
    _Atomic uint64_t probe_hits;  /* spin_hits of a probe while spinning was off: it is on again */
    _Atomic uint64_t passed;      /* requests after which leadership was passed to a follower woken or started */
    _Atomic uint64_t released;    /* requests after which leadership was left free for a thread about to
                                   * finish serving, with no wake-up (more were queued, or all were busy) */
    _Atomic uint64_t threads;     /* threads started */
    _Atomic uint64_t nowait_reads;   /* small READs the leader served in nowait mode (nowait.h), keeping
                                      * leadership unless the READ would block */
    _Atomic uint64_t nowait_blocked; /* of them, READs that would have blocked (inode locked for writing,
                                      * stored blocks not cached); leadership was then released or passed
                                      * (counted there) if requests were queued */
} efs_loop_counts;

/* Serve se until it ends (unmount) or fuse_session_exit (a signal handler). The calling thread serves
 * no requests; it waits and then stops the others. spin_us: how long the leader polls for the next
 * request before blocking (0: never; see loop.c). counts (may be NULL) is updated while it runs and must
 * outlive it. 0, or -1 when reading requests failed. */
int efs_loop_run(struct fuse_session *se, unsigned max_threads, unsigned spin_us, efs_loop_counts *counts)
    __attribute__((warn_unused_result));

/* As efs_loop_run, and every READ of at most 64 KiB is served by the leader in nowait mode (nowait.h),
 * whether or not more requests are queued: leadership is released or passed only if the READ handler
 * calls efs_nowait_will_block() (it would block) while requests are queued. For a session whose READ
 * handler calls it before everything that may block (the directory mount's op_read); any other handler
 * would block the loop's only reader. */
int efs_loop_run_nowait_reads(struct fuse_session *se, unsigned max_threads, unsigned spin_us,
                              efs_loop_counts *counts) __attribute__((warn_unused_result));

/* A request is waiting in se's /dev/fuse that no thread has read yet (poll; does not block). */
bool efs_loop_requests_queued(struct fuse_session *se);

#endif
