/*
 * format.c — encode/parse the encrypted-file header and encrypt/decrypt blocks (see format.h).
 */
#include "format.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <sodium.h>

#include "common/evp.h"

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

size_t efs_header_len(const efs_header *h)
{
    return h->version == EFS_HDR_VERSION_PADDED ? h->total_len : EFS_HDR_FIXED + (size_t)h->wrapped_len + EFS_HDR_TAG;
}

/* Does h describe a header that can be encoded? */
static bool header_ok(const efs_header *h)
{
    size_t need = EFS_HDR_FIXED + (size_t)h->wrapped_len + EFS_HDR_TAG;
    if (h->wrapped_len > EFS_WRAPPED_MAX)
        return false;
    if (h->version == EFS_HDR_VERSION)
        return true;
    return h->version == EFS_HDR_VERSION_PADDED && h->total_len >= need && h->total_len <= EFS_HDR_MAX;
}

/* Everything the tag covers: the fields, then (version 2) zeros up to the tag. Returns its length. */
static size_t encode_body(const efs_header *h, uint8_t *out)
{
    size_t n = EFS_HDR_FIXED + h->wrapped_len, body = efs_header_len(h) - EFS_HDR_TAG;
    memcpy(out, EFS_HDR_MAGIC, 4);
    put16(out + 4, h->version);
    put16(out + 6, (uint16_t)efs_header_len(h));
    put32(out + 8, h->block_size);
    out[12] = h->key_mode;
    out[13] = out[14] = out[15] = 0;
    memcpy(out + 16, h->file_id, EFS_FILE_ID_LEN);
    put16(out + 32, h->wrapped_len);
    memcpy(out + EFS_HDR_FIXED, h->wrapped, h->wrapped_len);
    memset(out + n, 0, body - n);
    return body;
}

int efs_header_encode(const efs_header *h, uint8_t *out, size_t cap)
{
    size_t n;
    if (!header_ok(h) || cap < efs_header_len(h))
        return -EINVAL;
    n = encode_body(h, out);
    memcpy(out + n, h->tag, EFS_HDR_TAG);
    return 0;
}

int efs_header_parse(const uint8_t *buf, size_t len, efs_header *h, size_t *hdr_len)
{
    uint16_t total, wl;
    if (len < EFS_HDR_FIXED + EFS_HDR_TAG || memcmp(buf, EFS_HDR_MAGIC, 4))
        return -EINVAL;
    memset(h, 0, sizeof *h);
    h->version = get16(buf + 4);
    if (h->version != EFS_HDR_VERSION && h->version != EFS_HDR_VERSION_PADDED)
        return -EINVAL;
    total = get16(buf + 6);
    h->block_size = get32(buf + 8);
    h->key_mode = buf[12];
    if (buf[13] || buf[14] || buf[15])
        return -EINVAL;
    if (h->key_mode != EFS_KEYMODE_KMS && h->key_mode != EFS_KEYMODE_BUCKET)
        return -EINVAL;
    if (h->block_size < 512 || h->block_size > (1u << 20) || (h->block_size & (h->block_size - 1)))
        return -EINVAL;
    memcpy(h->file_id, buf + 16, EFS_FILE_ID_LEN);
    wl = get16(buf + 32);
    if (wl == 0 || wl > EFS_WRAPPED_MAX || len < total)
        return -EINVAL;
    if (h->version == EFS_HDR_VERSION ? total != EFS_HDR_FIXED + wl + EFS_HDR_TAG
                                      : total < EFS_HDR_FIXED + wl + EFS_HDR_TAG || total > EFS_HDR_MAX)
        return -EINVAL;
    for (size_t i = EFS_HDR_FIXED + wl; i < (size_t)total - EFS_HDR_TAG; i++) /* version 2 padding */
        if (buf[i])
            return -EINVAL;
    h->wrapped_len = wl;
    h->total_len = h->version == EFS_HDR_VERSION_PADDED ? total : 0;
    memcpy(h->wrapped, buf + EFS_HDR_FIXED, wl);
    memcpy(h->tag, buf + total - EFS_HDR_TAG, EFS_HDR_TAG);
    *hdr_len = total;
    return 0;
}

int efs_hkdf32(const uint8_t *ikm, size_t ikm_len, const char *info, uint8_t out[32])
{
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    size_t outlen = 32;
    int ok = pctx && EVP_PKEY_derive_init(pctx) == 1 && EVP_PKEY_CTX_set_hkdf_md(pctx, efs_evp_sha256()) == 1 &&
             EVP_PKEY_CTX_set1_hkdf_key(pctx, ikm, (int)ikm_len) == 1 &&
             EVP_PKEY_CTX_add1_hkdf_info(pctx, (const unsigned char *)info, (int)strlen(info)) == 1 &&
             EVP_PKEY_derive(pctx, out, &outlen) == 1 && outlen == 32;
    EVP_PKEY_CTX_free(pctx);
    return ok ? 0 : -EIO;
}

static _Atomic uint64_t key_gen; /* 0 is never a valid generation */

int efs_file_keys_derive(const uint8_t dek[EFS_DEK_LEN], efs_file_keys *k)
{
    k->gen = 0;
    if (efs_hkdf32(dek, EFS_DEK_LEN, "envelopefs v1 block", k->block_key) ||
        efs_hkdf32(dek, EFS_DEK_LEN, "envelopefs v1 header-mac", k->mac_key))
        return -EIO;
    k->gen = ++key_gen;
    return 0;
}

static int header_mac(const efs_header *h, const efs_file_keys *k, uint8_t out[EFS_HDR_TAG])
{
    uint8_t body[EFS_HDR_MAX], mac[32];
    unsigned int mac_len = 0;
    size_t n;
    if (!header_ok(h))
        return -EINVAL;
    n = encode_body(h, body);
    if (!HMAC(efs_evp_sha256(), k->mac_key, 32, body, n, mac, &mac_len) || mac_len != 32)
        return -EIO;
    memcpy(out, mac, EFS_HDR_TAG);
    return 0;
}

int efs_header_seal(efs_header *h, const efs_file_keys *k)
{
    return header_mac(h, k, h->tag);
}

int efs_header_verify(const efs_header *h, const efs_file_keys *k)
{
    uint8_t t[EFS_HDR_TAG];
    int rc = header_mac(h, k, t);
    if (rc)
        return rc;
    return CRYPTO_memcmp(t, h->tag, EFS_HDR_TAG) ? -EBADMSG : 0;
}

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

static void block_aad(const uint8_t file_id[EFS_FILE_ID_LEN], uint64_t blockno, uint8_t aad[28])
{
    memcpy(aad, "EFB1", 4);
    memcpy(aad + 4, file_id, EFS_FILE_ID_LEN);
    for (int i = 0; i < 8; i++)
        aad[20 + i] = (uint8_t)(blockno >> (8 * i));
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
static int seal_one(struct thread_crypto *tc, const efs_file_keys *k, const uint8_t file_id[EFS_FILE_ID_LEN],
                    uint64_t blockno, const uint8_t *pt, size_t n, uint8_t *nonce_out, uint8_t *ct, uint8_t *tag_out)
{
    EVP_CIPHER_CTX *ctx = tc->enc;
    uint8_t aad[28];
    int len = 0;
    nonce(tc, nonce_out);
    block_aad(file_id, blockno, aad);
    if (gcm_init(ctx, &tc->enc_gen, k, nonce_out, 1) ||
        EVP_EncryptUpdate(ctx, NULL, &len, aad, sizeof aad) != 1 ||
        (n && EVP_EncryptUpdate(ctx, ct, &len, pt, (int)n) != 1) ||
        EVP_EncryptFinal_ex(ctx, ct + n, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, EFS_TAG, tag_out) != 1) {
        tc->enc_gen = 0; /* full re-initialisation next time */
        return -EIO;
    }
    return 0;
}

int efs_block_encrypt(const efs_file_keys *k, const uint8_t file_id[EFS_FILE_ID_LEN], uint64_t blockno,
                      const uint8_t *pt, size_t n, uint8_t *out)
{
    struct thread_crypto *tc = thread_crypto();
    return tc ? seal_one(tc, k, file_id, blockno, pt, n, out, out + EFS_NONCE, out + EFS_NONCE + n) : -ENOMEM;
}

int efs_blocks_seal(const efs_file_keys *k, const uint8_t file_id[EFS_FILE_ID_LEN], uint64_t first,
                    uint8_t *data, size_t count, size_t bs, uint8_t *meta)
{
    struct thread_crypto *tc = thread_crypto();
    if (!tc)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        uint8_t *m = meta + i * EFS_BLOCK_OVERHEAD, *d = data + i * bs;
        int rc = seal_one(tc, k, file_id, first + i, d, bs, m, d, m + EFS_NONCE);
        if (rc)
            return rc;
    }
    return 0;
}

int efs_block_decrypt(const efs_file_keys *k, const uint8_t file_id[EFS_FILE_ID_LEN], uint64_t blockno,
                      const uint8_t *in, size_t in_len, uint8_t *pt)
{
    struct thread_crypto *tc = thread_crypto();
    EVP_CIPHER_CTX *ctx;
    uint8_t aad[28];
    size_t n;
    int len = 0;
    if (!tc)
        return -ENOMEM;
    if (in_len <= EFS_BLOCK_OVERHEAD)
        return -EBADMSG;
    ctx = tc->dec;
    n = in_len - EFS_BLOCK_OVERHEAD;
    block_aad(file_id, blockno, aad);
    if (gcm_init(ctx, &tc->dec_gen, k, in, 0) ||
        EVP_DecryptUpdate(ctx, NULL, &len, aad, sizeof aad) != 1 ||
        EVP_DecryptUpdate(ctx, pt, &len, in + EFS_NONCE, (int)n) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, EFS_TAG, (void *)(in + EFS_NONCE + n)) != 1 ||
        EVP_DecryptFinal_ex(ctx, pt + len, &len) != 1) {
        sodium_memzero(pt, n);
        tc->dec_gen = 0;
        return -EBADMSG;
    }
    return 0;
}
