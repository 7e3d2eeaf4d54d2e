/*
 * jsonwipe.c — jansson allocation functions that wipe every block on free (see jsonwipe.h).
 */
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>

#include <jansson.h>
#include <sodium.h>

#include "jsonwipe.h"

static void *wipe_malloc(size_t n)
{
    return malloc(n);
}

static void wipe_free(void *p)
{
    if (!p)
        return;
    sodium_memzero(p, malloc_usable_size(p));
    free(p);
}

static void install(void)
{
    json_set_alloc_funcs(wipe_malloc, wipe_free);
}

void kmsc_json_wipe_on_free(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    (void)pthread_once(&once, install);
}
