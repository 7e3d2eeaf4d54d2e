/*
 * blockcrypt.c — seal and open authenticated blocks under an owner-chosen key and AAD (see blockcrypt.h).
 */
#include "blockcrypt.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "common/evp.h"

/*
 * HKDF-SHA256 (RFC 5869) with no salt, 32 bytes out, from libsodium's HMAC-SHA256: PRK = HMAC(0^32, IKM),
 * OKM = T(1) = HMAC(PRK, info ‖ 0x01). The same bytes as OpenSSL's EVP HKDF (the golden trees and
 * test_content's RFC 5869 vector check it) at half its cost: OpenSSL 3 fetches the algorithm from its
 * provider on every EVP_PKEY_CTX, about 10 µs per call here, and every new or opened file derives keys.
 */
static void hkdf_extract(const uint8_t *ikm, size_t ikm_len, uint8_t prk[32])
{
    static const uint8_t zero_salt[crypto_auth_hmacsha256_KEYBYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, zero_salt, sizeof zero_salt);
    crypto_auth_hmacsha256_update(&st, ikm, ikm_len);
    crypto_auth_hmacsha256_final(&st, prk);
    sodium_memzero(&st, sizeof st);
}

static void hkdf_expand32(const uint8_t prk[32], const char *info, uint8_t out[32])
{
    static const uint8_t one = 1;
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, prk, 32);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)info, strlen(info));
    crypto_auth_hmacsha256_update(&st, &one, 1);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

int efs_hkdf32(const uint8_t *ikm, size_t ikm_len, const char *info, uint8_t out[32])
{
    uint8_t prk[32];
    hkdf_extract(ikm, ikm_len, prk);
    hkdf_expand32(prk, info, out);
    sodium_memzero(prk, sizeof prk);
    return 0;
}

int efs_hmac_sha256(const uint8_t key[32], const uint8_t *msg, size_t n, uint8_t out[32])
{
    return crypto_auth_hmacsha256(out, msg, n, key) == 0 ? 0 : -EIO;
}

static _Atomic uint64_t key_gen; /* 0 is never a valid generation */

int efs_file_keys_derive(const uint8_t dek[EFS_DEK_LEN], efs_file_keys *k)
{
    uint8_t prk[32];
    hkdf_extract(dek, EFS_DEK_LEN, prk); /* one extract, two expands: the same as two efs_hkdf32 calls */
    hkdf_expand32(prk, "envelopefs v1 block", k->block_key);
    hkdf_expand32(prk, "envelopefs v1 header-mac", k->mac_key);
    sodium_memzero(prk, sizeof prk);
    k->gen = efs_file_keys_new_gen();
    return 0;
}

uint64_t efs_file_keys_new_gen(void) { return ++key_gen; }

int efs_plain_size(uint64_t data_len, uint32_t bs, uint64_t *size)
{
    uint64_t stored = (uint64_t)bs + EFS_BLOCK_OVERHEAD;
    uint64_t full = data_len / stored, rem = data_len % stored;
    *size = full * bs;
    if (rem == 0)
        return 0;
    if (rem <= EFS_BLOCK_OVERHEAD)
        return -EINVAL;
    *size += rem - EFS_BLOCK_OVERHEAD;
    return 0;
}

uint64_t efs_data_len(uint64_t size, uint32_t bs)
{
    uint64_t full = size / bs, rem = size % bs;
    return full * ((uint64_t)bs + EFS_BLOCK_OVERHEAD) + (rem ? rem + EFS_BLOCK_OVERHEAD : 0);
}

int efs_file_bind(const void *file_binding, uint64_t blockno, efs_block_binding *b)
{
    const efs_file_binding *f = file_binding;
    b->key = f->keys;
    b->aad_len = 4 + EFS_FILE_ID_LEN + 8;
    memcpy(b->aad, "EFB1", 4);
    memcpy(b->aad + 4, f->file_id, EFS_FILE_ID_LEN);
    for (int i = 0; i < 8; i++)
        b->aad[20 + i] = (uint8_t)(blockno >> (8 * i));
    return 0;
}

/*
 * Per-thread crypto state, reused across blocks:
 * - one EVP context for encryption and one for decryption, each remembering the generation of the
 *   key whose AES schedule it holds, so consecutive blocks of one file only set a new nonce (the key
 *   schedule lives in OpenSSL's context memory until the thread ends or the key changes);
 * - a pool of random bytes for nonces, refilled from the OS 4 KiB at a time instead of one getrandom
 *   call per block. A forked child discards its inherited pool (pool_epoch).
 */
struct thread_crypto {
    EVP_CIPHER_CTX *enc, *dec;
    uint64_t enc_gen, dec_gen;
    unsigned pool_epoch;
    size_t pool_used;
    uint8_t pool[4096];
};

static pthread_key_t tc_key;
static pthread_once_t tc_once = PTHREAD_ONCE_INIT;
static _Atomic unsigned fork_epoch = 1;

static void tc_free(void *p)
{
    struct thread_crypto *tc = p;
    EVP_CIPHER_CTX_free(tc->enc);
    EVP_CIPHER_CTX_free(tc->dec);
    sodium_memzero(tc, sizeof *tc);
    free(tc);
}
static void tc_after_fork(void) { fork_epoch++; }
static void tc_key_init(void)
{
    (void)pthread_key_create(&tc_key, tc_free);
    (void)pthread_atfork(NULL, NULL, tc_after_fork);
}

static struct thread_crypto *thread_crypto(void)
{
    struct thread_crypto *tc;
    pthread_once(&tc_once, tc_key_init);
    tc = pthread_getspecific(tc_key);
    if (tc)
        return tc;
    tc = calloc(1, sizeof *tc);
    if (!tc)
        return NULL;
    tc->enc = EVP_CIPHER_CTX_new();
    tc->dec = EVP_CIPHER_CTX_new();
    tc->pool_used = sizeof tc->pool;
    if (!tc->enc || !tc->dec || pthread_setspecific(tc_key, tc)) {
        tc_free(tc);
        return NULL;
    }
    return tc;
}

static void nonce(struct thread_crypto *tc, uint8_t out[EFS_NONCE])
{
    if (tc->pool_used + EFS_NONCE > sizeof tc->pool || tc->pool_epoch != fork_epoch) {
        randombytes_buf(tc->pool, sizeof tc->pool);
        tc->pool_used = 0;
        tc->pool_epoch = fork_epoch;
    }
    memcpy(out, tc->pool + tc->pool_used, EFS_NONCE);
    sodium_memzero(tc->pool + tc->pool_used, EFS_NONCE); /* a nonce is handed out once */
    tc->pool_used += EFS_NONCE;
}

/* Start a GCM operation with k and iv; loads the key schedule only when the key changed. */
static int gcm_init(EVP_CIPHER_CTX *ctx, uint64_t *loaded, const efs_file_keys *k, const uint8_t *iv, int enc)
{
    if (k->gen && *loaded == k->gen)
        return EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, enc) == 1 ? 0 : -1;
    *loaded = 0;
    if (EVP_CipherInit_ex(ctx, efs_evp_aes_256_gcm(), NULL, k->block_key, iv, enc) != 1)
        return -1;
    *loaded = k->gen;
    return 0;
}

/* Encrypt one block: a fresh nonce into nonce_out, the ciphertext into ct (may be pt itself), the tag
 * into tag_out. */
static int seal_one(struct thread_crypto *tc, const efs_block_binding *b, const uint8_t *pt, size_t n,
                    uint8_t *nonce_out, uint8_t *ct, uint8_t *tag_out)
{
    EVP_CIPHER_CTX *ctx = tc->enc;
    int len = 0;
    if (b->aad_len > EFS_BLOCK_AAD_MAX || !b->key)
        return -EINVAL;
    nonce(tc, nonce_out);
    if (gcm_init(ctx, &tc->enc_gen, b->key, nonce_out, 1) ||
        EVP_EncryptUpdate(ctx, NULL, &len, b->aad, (int)b->aad_len) != 1 ||
        (n && EVP_EncryptUpdate(ctx, ct, &len, pt, (int)n) != 1) ||
        EVP_EncryptFinal_ex(ctx, ct + n, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, EFS_TAG, tag_out) != 1) {
        tc->enc_gen = 0; /* full re-initialisation next time */
        return -EIO;
    }
    return 0;
}

int efs_block_seal(const efs_block_binding *b, const uint8_t *pt, size_t n, uint8_t *nonce_out, uint8_t *ct,
                   uint8_t *tag_out)
{
    struct thread_crypto *tc = thread_crypto();
    return tc ? seal_one(tc, b, pt, n, nonce_out, ct, tag_out) : -ENOMEM;
}

int efs_blocks_seal(efs_block_bind_fn bind, const void *arg, uint64_t first, uint8_t *data, size_t count,
                    size_t bs, uint8_t *meta)
{
    struct thread_crypto *tc = thread_crypto();
    efs_block_binding b;
    if (!tc)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        uint8_t *m = meta + i * EFS_BLOCK_OVERHEAD, *d = data + i * bs;
        int rc = bind(arg, first + i, &b);
        if (!rc)
            rc = seal_one(tc, &b, d, bs, m, d, m + EFS_NONCE);
        if (rc)
            return rc == -ENOMEM ? -EIO : rc; /* (-ENOMEM promises data untouched) */
    }
    return 0;
}

int efs_block_open(const efs_block_binding *b, const uint8_t *in, size_t in_len, uint8_t *pt)
{
    struct thread_crypto *tc = thread_crypto();
    EVP_CIPHER_CTX *ctx;
    size_t n;
    int len = 0;
    if (!tc)
        return -ENOMEM;
    if (in_len <= EFS_BLOCK_OVERHEAD || b->aad_len > EFS_BLOCK_AAD_MAX || !b->key)
        return -EBADMSG;
    ctx = tc->dec;
    n = in_len - EFS_BLOCK_OVERHEAD;
    if (gcm_init(ctx, &tc->dec_gen, b->key, in, 0) ||
        EVP_DecryptUpdate(ctx, NULL, &len, b->aad, (int)b->aad_len) != 1 ||
        EVP_DecryptUpdate(ctx, pt, &len, in + EFS_NONCE, (int)n) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, EFS_TAG, (void *)(in + EFS_NONCE + n)) != 1 ||
        EVP_DecryptFinal_ex(ctx, pt + len, &len) != 1) {
        sodium_memzero(pt, n);
        tc->dec_gen = 0;
        return -EBADMSG;
    }
    return 0;
}
