/*
 * secret.h — how kmsc_secret memory is allocated (private to kmsclient and its tests).
 *
 * sodium_malloc costs an mmap, two mprotects, an mlock and their undoing: about 25 µs per secret, more
 * than a cache hit should cost. Secrets of up to KMSC_SECRET_SLOT bytes (every data key) therefore come
 * from a process-wide pool of locked slabs (each one sodium_malloc'd block, so locked and excluded from
 * core dumps) handed out in fixed slots; a released slot is wiped at once and reused. Larger secrets
 * get their own sodium_malloc block as before. The pool trades the per-secret guard pages for speed:
 * an overflow of a slot reaches its neighbour instead of faulting.
 */
#ifndef ENVELOPEFS_KMSCLIENT_SECRET_H
#define ENVELOPEFS_KMSCLIENT_SECRET_H

#include <stddef.h>

#define KMSC_SECRET_SLOT 64

/* Pooled slots currently handed out (for tests: every release returns its slot). */
size_t kmsc_secret_pool_in_use(void);

#endif
