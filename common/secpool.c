/*
 * secpool.c — a pool of fixed-size slots in locked memory for small secrets (see secpool.h).
 *
 * sodium_malloc costs an mmap, three mprotects and an mlock, and sodium_free the reverse: a dozen system
 * calls and, in a multi-threaded daemon, TLB shootdowns on every CPU — per opened file and per data key, more
 * than the rest of creating a file or of a data-key cache hit. Slots here come from 64 KiB slabs, each one
 * sodium_malloc'd block (locked, guard pages around the slab, excluded from core dumps), in two sizes: 64
 * bytes (data keys) and 128 (a file's derived keys). A released slot is wiped at once and goes on a stack,
 * so the next request of its size reuses it; slabs are kept for the life of the process, so locked memory is
 * bounded by the peak number of live secrets. The trade: no guard page between slots, so an overflow of a
 * slot reaches its neighbour instead of faulting.
 */
#include "common/secpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <sodium.h>

#define SLAB_BYTES (64 * 1024)

struct size_class {
    size_t slot;
    uint8_t **free_slots; /* stack of free slots, all wiped */
    size_t n_free, cap, n_total;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct size_class classes[] = {{.slot = 64}, {.slot = EFS_SECPOOL_MAX}};

/* Lock held. Adds one slab's slots to c's stack. */
static bool grow(struct size_class *c)
{
    size_t per = SLAB_BYTES / c->slot;
    uint8_t *slab;
    if (c->n_total + per > c->cap) {
        uint8_t **nf = realloc(c->free_slots, (c->n_total + per) * sizeof *nf);
        if (!nf)
            return false;
        c->free_slots = nf;
        c->cap = c->n_total + per;
    }
    if (sodium_init() < 0 || !(slab = sodium_malloc(SLAB_BYTES))) /* never returned */
        return false;
    sodium_memzero(slab, SLAB_BYTES);
    for (size_t i = per; i-- > 0;) /* lowest address on top */
        c->free_slots[c->n_free++] = slab + i * c->slot;
    c->n_total += per;
    return true;
}

static struct size_class *class_of(size_t n)
{
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (n <= classes[i].slot)
            return &classes[i];
    return NULL;
}

void *efs_secpool_alloc(size_t n)
{
    struct size_class *c = class_of(n);
    uint8_t *p = NULL;
    if (!c) {
        if (sodium_init() < 0 || !(p = sodium_malloc(n)))
            return NULL;
        sodium_memzero(p, n);
        return p;
    }
    pthread_mutex_lock(&lock);
    if (c->n_free || grow(c))
        p = c->free_slots[--c->n_free];
    pthread_mutex_unlock(&lock);
    return p; /* wiped when it was released (or when its slab was made) */
}

void efs_secpool_free(void *p, size_t n)
{
    struct size_class *c = class_of(n);
    if (!p)
        return;
    if (!c) {
        sodium_free(p); /* wipes before unmapping */
        return;
    }
    sodium_memzero(p, c->slot);
    pthread_mutex_lock(&lock);
    c->free_slots[c->n_free++] = p; /* cannot overflow: the stack has room for every slot */
    pthread_mutex_unlock(&lock);
}

size_t efs_secpool_in_use(void)
{
    size_t n = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        n += classes[i].n_total - classes[i].n_free;
    pthread_mutex_unlock(&lock);
    return n;
}
