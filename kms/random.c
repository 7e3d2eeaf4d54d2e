/*
 * random.c — random bytes for the key service's per-call path (data keys, blob nonces, request ids).
 *
 * libsodium's randombytes_buf is one getrandom system call per call (three per GenerateDataKey, ~8 %
 * of the server's CPU), and OpenSSL's DRBG calls getpid() on every generate for its fork check (a
 * system call with this glibc), so neither is cheaper. Instead each thread keeps a pool of
 * KMS_RANDOM_POOL bytes read from the kernel's CSPRNG with one getrandom call, in locked memory
 * (sodium_malloc), and hands every byte out once: bytes are wiped from the pool as they are taken,
 * so what remains in memory is only what has not been used yet. Every call still gets fresh kernel
 * randomness; nothing is reused. A fork in any thread invalidates every pool (pthread_atfork bumps a
 * generation the pools compare against), so a child never repeats its parent's bytes. Requests larger
 * than a quarter of the pool go to the kernel directly.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>

#include <sodium.h>

#include "internal.h"

#define KMS_RANDOM_POOL 4096

struct pool {
    size_t pos;               /* bytes before pos have been handed out (and wiped) */
    unsigned gen;             /* fork generation the bytes were read in */
    uint8_t buf[KMS_RANDOM_POOL];
};

static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static atomic_uint fork_gen = 1;

static void release(void *p) { sodium_free(p); }
static void after_fork_child(void) { atomic_fetch_add(&fork_gen, 1); }
static void setup(void)
{
    (void)pthread_key_create(&key, release);
    (void)pthread_atfork(NULL, NULL, after_fork_child);
}

/* Fill buf from the kernel (getrandom blocks only before the CSPRNG is first seeded). */
static int kernel_random(uint8_t *buf, size_t n)
{
    while (n) {
        ssize_t r = getrandom(buf, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += r;
        n -= (size_t)r;
    }
    return 0;
}

int kms_random(uint8_t *out, size_t n)
{
    struct pool *p;
    unsigned gen = atomic_load(&fork_gen);
    if (n > KMS_RANDOM_POOL / 4)
        return kernel_random(out, n);
    pthread_once(&once, setup);
    p = pthread_getspecific(key);
    if (!p) {
        p = sodium_malloc(sizeof *p);
        if (!p)
            return -1;
        if (pthread_setspecific(key, p)) {
            sodium_free(p);
            return -1;
        }
        p->pos = KMS_RANDOM_POOL;
        p->gen = 0;
    }
    if (p->gen != gen || KMS_RANDOM_POOL - p->pos < n) {
        sodium_memzero(p->buf, sizeof p->buf);
        p->pos = KMS_RANDOM_POOL;
        if (kernel_random(p->buf, sizeof p->buf))
            return -1;
        p->pos = 0;
        p->gen = gen;
    }
    memcpy(out, p->buf + p->pos, n);
    sodium_memzero(p->buf + p->pos, n);
    p->pos += n;
    return 0;
}
