/*
 * secret.c — kmsc_secret: plaintext in locked memory, wiped on free. The bytes come from the process-wide
 * pool of locked slots (common/secpool.c) when small — every data key — and from their own sodium_malloc
 * block otherwise.
 */
#include <stdlib.h>

#include <sodium.h>

#include "envelopefs/kmsclient.h"
#include "common/secpool.h"
#include "secret.h"

/* The public struct first, so a kmsc_secret * is a secret_impl *. Only kmsc_secret_new makes them. The
 * size allocated is kept apart from pub.len, which callers may shrink (base64 is decoded into a secret
 * sized for the longest possible result). */
typedef struct secret_impl {
    kmsc_secret pub;
    size_t alloc;
} secret_impl;

size_t kmsc_secret_pool_in_use(void) { return efs_secpool_in_use(); }

kmsc_secret *kmsc_secret_new(size_t len)
{
    secret_impl *s;
    if (sodium_init() < 0)
        return NULL;
    s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->alloc = len ? len : 1;
    s->pub.data = efs_secpool_alloc(s->alloc);
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
    efs_secpool_free(s->pub.data, s->alloc);
    free(s);
}
