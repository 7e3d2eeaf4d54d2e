/*
 * secret.c — kmsc_secret: plaintext in locked memory, wiped on free. Small secrets come from a pool of
 * locked slabs (see secret.h); larger ones from sodium_malloc.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include <sodium.h>

#include "envelopefs/kmsclient.h"
#include "secret.h"

#define SLAB_SLOTS 1024 /* 64 KiB of locked memory per slab */

/* The public struct first, so a kmsc_secret * is a secret_impl *. Only kmsc_secret_new makes them. */
typedef struct secret_impl {
    kmsc_secret pub;
    bool pooled;
} secret_impl;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t **free_slots;   /* stack of free slots (all wiped) */
static size_t n_free, cap_free, n_total;

/* Lock held. Adds one slab's slots to the free stack. */
static bool grow(void)
{
    uint8_t *slab;
    uint8_t **nf;
    if (n_total + SLAB_SLOTS > cap_free) {
        nf = realloc(free_slots, (n_total + SLAB_SLOTS) * sizeof *nf);
        if (!nf)
            return false;
        free_slots = nf;
        cap_free = n_total + SLAB_SLOTS;
    }
    slab = sodium_malloc((size_t)SLAB_SLOTS * KMSC_SECRET_SLOT); /* locked; never returned */
    if (!slab)
        return false;
    sodium_memzero(slab, (size_t)SLAB_SLOTS * KMSC_SECRET_SLOT);
    for (size_t i = SLAB_SLOTS; i-- > 0;)
        free_slots[n_free++] = slab + i * KMSC_SECRET_SLOT;
    n_total += SLAB_SLOTS;
    return true;
}

static uint8_t *slot_get(void)
{
    uint8_t *p = NULL;
    pthread_mutex_lock(&pool_lock);
    if (n_free || grow())
        p = free_slots[--n_free];
    pthread_mutex_unlock(&pool_lock);
    return p;
}

static void slot_put(uint8_t *p)
{
    sodium_memzero(p, KMSC_SECRET_SLOT);
    pthread_mutex_lock(&pool_lock);
    free_slots[n_free++] = p; /* cannot overflow: the stack holds every slot */
    pthread_mutex_unlock(&pool_lock);
}

size_t kmsc_secret_pool_in_use(void)
{
    size_t n;
    pthread_mutex_lock(&pool_lock);
    n = n_total - n_free;
    pthread_mutex_unlock(&pool_lock);
    return n;
}

kmsc_secret *kmsc_secret_new(size_t len)
{
    secret_impl *s;
    if (sodium_init() < 0)
        return NULL;
    s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->pooled = len <= KMSC_SECRET_SLOT;
    s->pub.data = s->pooled ? slot_get() : sodium_malloc(len);
    if (!s->pub.data) {
        free(s);
        return NULL;
    }
    s->pub.len = len;
    return &s->pub;
}

void kmsc_secret_free(kmsc_secret *pub)
{
    secret_impl *s = (secret_impl *)pub;
    if (!s)
        return;
    if (s->pooled)
        slot_put(s->pub.data);
    else
        sodium_free(s->pub.data); /* sodium_free wipes before unmapping */
    free(s);
}
