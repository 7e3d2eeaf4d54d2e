/*
 * secpool.h — small secrets (data keys, derived file keys) in locked, wiped memory without system calls per
 * allocation (common/secpool.c), shared by the filesystem and the key-service client.
 */
#ifndef ENVELOPEFS_SECPOOL_H
#define ENVELOPEFS_SECPOOL_H

#include <stddef.h>

/* Requests of up to EFS_SECPOOL_MAX bytes take a pooled slot (64 or 128 bytes); larger ones get their own
 * sodium_malloc block (guard pages). */
#define EFS_SECPOOL_MAX 128

/* Locked, zeroed memory for n bytes (n > 0), or NULL. Free it with efs_secpool_free and the same n. */
void *efs_secpool_alloc(size_t n) __attribute__((warn_unused_result, malloc));

/* Wipe and release p, allocated with efs_secpool_alloc(n). NULL is a no-op. */
void efs_secpool_free(void *p, size_t n);

/* Pooled slots handed out right now (tests: every release returns its slot). */
size_t efs_secpool_in_use(void);

#endif
