/*
 * closer.h — a background thread that closes the last descriptors of removed files, off the request path
 * (see closer.c): closing an unlinked file's last descriptor is where the backing filesystem frees it.
 */
#ifndef EFS_CLOSER_H
#define EFS_CLOSER_H

#include <stddef.h>
#include <stdint.h>

typedef struct efs_closer efs_closer;

/* Time inside close(): wall and the closing thread's CPU (ns), and that thread's context switches meanwhile —
 * voluntary (it blocked: locks, I/O) and involuntary (preempted: it waited for a CPU). */
typedef struct {
    uint64_t wall_ns, cpu_ns, vcsw, ivcsw;
} efs_close_time;

/* What a closer has done so far (efs_closer_counts_get). */
typedef struct {
    uint64_t queued;          /* descriptors handed to the thread */
    uint64_t inline_closes;   /* closed by the caller: the queue was full (or there is no thread) */
    uint64_t errors;          /* closes that failed (each logged) */
    efs_close_time thread;    /* the closer thread's closes */
    efs_close_time inl;       /* the callers' closes */
    uint64_t drains, drain_wall_ns; /* efs_closer_drain calls that had to wait, and the wait */
} efs_closer_counts;

/* Start a closer of nthreads threads (1–8) whose queue holds at most cap descriptors. 0 or -errno (*out NULL:
 * then every efs_closer_close closes at once in its caller). */
int efs_closer_new(size_t cap, size_t nthreads, efs_closer **out) __attribute__((warn_unused_result));
/* Close fd, the descriptor of the file inode ino (for the log): queued for the thread, or closed here when
 * the queue is full or c is NULL. A failed close is logged and counted, never silent. */
void efs_closer_close(efs_closer *c, int fd, uint64_t ino);
/* Return once every descriptor queued before this call is closed. NULL: no-op. */
void efs_closer_drain(efs_closer *c);
void efs_closer_counts_get(efs_closer *c, efs_closer_counts *out); /* NULL: the inline closes since start */
/* Close what is queued, stop and join the thread, free. NULL is a no-op. */
void efs_closer_free(efs_closer *c);

#endif
