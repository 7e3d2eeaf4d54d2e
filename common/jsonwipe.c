/*
 * jsonwipe.c — jansson allocation functions that wipe every block on free (see jsonwipe.h).
 */
#include <pthread.h>
#include <stdlib.h>

#include <jansson.h>

#include "common/wipe.h"
#include "common/jsonwipe.h"

static void *wipe_malloc(size_t n)
{
    return malloc(n);
}

static void install(void)
{
    json_set_alloc_funcs(wipe_malloc, efs_free_wiped);
}

void efs_json_wipe_on_free(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    (void)pthread_once(&once, install);
}
