/*
 * monotime.h — the monotonic clock (CLOCK_MONOTONIC), for timeouts, pacing and rate limits; never for
 * wall-clock time. One definition for the daemons' request loops, the spare-file filler and the key
 * service.
 */
#ifndef ENVELOPEFS_MONOTIME_H
#define ENVELOPEFS_MONOTIME_H

#include <stdint.h>
#include <time.h>

/* Nanoseconds since an arbitrary fixed point (boot). */
static inline int64_t efs_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The same in seconds. */
static inline double efs_mono_s(void) { return (double)efs_mono_ns() / 1e9; }

#endif
