/*
 * secret.h — how kmsc_secret memory is allocated (private to kmsclient and its tests).
 *
 * Secrets of up to EFS_SECPOOL_MAX bytes (every data key) take a slot of the process-wide pool of locked
 * slabs (common/secpool.c, shared with the filesystem's file keys): sodium_malloc per secret costs an mmap,
 * mprotects, an mlock and their undoing, about 25 µs, more than a cache hit should cost. A released slot is
 * wiped at once and reused. Larger secrets get their own sodium_malloc block.
 */
#ifndef ENVELOPEFS_KMSCLIENT_SECRET_H
#define ENVELOPEFS_KMSCLIENT_SECRET_H

#include <stddef.h>

#include "common/secpool.h"

#define KMSC_SECRET_SLOT 64 /* the pool's slot for secrets of up to 64 bytes (a data key: 32) */

/* Pooled slots currently handed out, by the whole process (for tests: every release returns its slot). */
size_t kmsc_secret_pool_in_use(void);

#endif
