/*
 * secmem.h — small secrets (file keys, DEKs) in locked, wiped memory without system calls per allocation.
 */
#ifndef EFS_SECMEM_H
#define EFS_SECMEM_H

#include <stddef.h>

/* Locked memory for n bytes (zeroed), or NULL. Sizes up to EFS_SECMEM_SLOT come from a pool of mlocked
 * slabs; larger ones from sodium_malloc. Free with efs_secmem_free and the same n. */
#define EFS_SECMEM_SLOT 128
void *efs_secmem_alloc(size_t n) __attribute__((warn_unused_result, malloc));
/* Wipe and release p (n as allocated). NULL is a no-op. */
void efs_secmem_free(void *p, size_t n);

#endif
