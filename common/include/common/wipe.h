/*
 * wipe.h — free a malloc'd block after zeroing all of it (malloc_usable_size, not just what the caller
 * wrote). For allocators handed to libraries whose scratch buffers may hold plaintext: jansson's
 * (common/jsonwipe.c) and yajl's (common/jsonparse.c).
 */
#ifndef ENVELOPEFS_WIPE_H
#define ENVELOPEFS_WIPE_H

/* NULL is a no-op. p must come from malloc/calloc/realloc. */
void efs_free_wiped(void *p);

#endif
