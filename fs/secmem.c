/*
 * secmem.c — a pool of fixed-size slots in locked memory for small secrets.
 *
 * sodium_malloc costs an mmap, three mprotects and an mlock, and sodium_free the reverse: a dozen system
 * calls and, in a multi-threaded daemon, TLB shootdowns on every CPU — per created or opened file, about a
 * sixth of the daemon's time in an untar. Slots here come from 64 KiB slabs allocated once with
 * sodium_malloc (guard pages, mlock, excluded from core dumps) and are wiped when freed; slabs are kept for
 * the life of the process, so locked memory is bounded by the peak number of live secrets.
 */
#include "secmem.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#define SLAB_BYTES (64 * 1024)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *free_list; /* each free slot starts with the pointer to the next one */

/* Lock held. */
static int grow(void)
{
    uint8_t *slab = sodium_malloc(SLAB_BYTES);
    if (!slab)
        return -1;
    for (size_t off = 0; off + EFS_SECMEM_SLOT <= SLAB_BYTES; off += EFS_SECMEM_SLOT) {
        void *slot = slab + off;
        memcpy(slot, &free_list, sizeof free_list);
        free_list = slot;
    }
    return 0;
}

void *efs_secmem_alloc(size_t n)
{
    void *p = NULL;
    if (n > EFS_SECMEM_SLOT) {
        p = sodium_malloc(n);
        if (p)
            sodium_memzero(p, n);
        return p;
    }
    pthread_mutex_lock(&lock);
    if (free_list || grow() == 0) {
        p = free_list;
        memcpy(&free_list, p, sizeof free_list);
    }
    pthread_mutex_unlock(&lock);
    if (p)
        sodium_memzero(p, EFS_SECMEM_SLOT);
    return p;
}

void efs_secmem_free(void *p, size_t n)
{
    if (!p)
        return;
    if (n > EFS_SECMEM_SLOT) {
        sodium_free(p);
        return;
    }
    sodium_memzero(p, EFS_SECMEM_SLOT);
    pthread_mutex_lock(&lock);
    memcpy(p, &free_list, sizeof free_list);
    free_list = p;
    pthread_mutex_unlock(&lock);
}
