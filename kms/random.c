/*
 * random.c — random bytes for the key service's per-call path (data keys, blob nonces, request ids).
 * libsodium's randombytes_buf is one getrandom system call per call (three per GenerateDataKey, ~8 %
 * of the server's CPU); OpenSSL's per-thread DRBGs (CTR-DRBG with AES-256, seeded from getrandom and
 * reseeded by OpenSSL, fork-safe) answer from user space. Key material comes from the private DRBG
 * (RAND_priv_bytes), nonces and ids from the public one, as OpenSSL recommends. Every call still
 * returns fresh bytes: nothing is cached or reused.
 */
#include <openssl/rand.h>

#include "internal.h"

int kms_random_secret(uint8_t *buf, size_t n)
{
    return n <= (size_t)INT32_MAX && RAND_priv_bytes(buf, (int)n) == 1 ? 0 : -1;
}

int kms_random_public(uint8_t *buf, size_t n)
{
    return n <= (size_t)INT32_MAX && RAND_bytes(buf, (int)n) == 1 ? 0 : -1;
}
