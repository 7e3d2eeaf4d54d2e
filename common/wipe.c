/*
 * wipe.c — efs_free_wiped (see wipe.h).
 */
#include "common/wipe.h"

#include <malloc.h>
#include <stdlib.h>

#include <sodium.h>

void efs_free_wiped(void *p)
{
    if (!p)
        return;
    sodium_memzero(p, malloc_usable_size(p));
    free(p);
}
