/*
 * scratch.c — one locked scratch buffer per thread for short-lived plaintext (data keys, decrypted
 * payloads) in the core. sodium_malloc costs an mmap, mprotect, mlock and their undoing per call —
 * a third of the CPU of a GenerateDataKey over HTTP — so each thread allocates its buffer once and
 * callers wipe what they used. Freed (wiped) when the thread exits.
 */
#include <pthread.h>
#include <sodium.h>

#include "internal.h"

static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void release(void *p) { sodium_free(p); }
static void make_key(void) { (void)pthread_key_create(&key, release); }

uint8_t *kms_scratch(size_t n)
{
    uint8_t *p;
    if (n > KMS_SCRATCH_MAX)
        return NULL;
    pthread_once(&once, make_key);
    p = pthread_getspecific(key);
    if (!p) {
        p = sodium_malloc(KMS_SCRATCH_MAX);
        if (p && pthread_setspecific(key, p)) {
            sodium_free(p);
            p = NULL;
        }
    }
    return p;
}
