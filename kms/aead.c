/*
 * aead.c — AES-256-GCM through OpenSSL's EVP interface (see aead.h). A kms_gcm_key is an
 * EVP_CIPHER_CTX keyed once; each seal or open re-initialises it with only a nonce (OpenSSL keeps the
 * expanded key and the GHASH table), which is most of the cost of a one-shot init for a 32-byte data
 * key. The cipher itself is fetched from the provider once (common/evp.c).
 */
#include "aead.h"

#include <openssl/evp.h>
#include <sodium.h>
#include <stdlib.h>

#include "common/evp.h"

struct kms_gcm_key {
    EVP_CIPHER_CTX *ctx;
};

kms_gcm_key *kms_gcm_key_new(const uint8_t key[32])
{
    kms_gcm_key *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->ctx = EVP_CIPHER_CTX_new();
    if (!k->ctx || EVP_CipherInit_ex(k->ctx, efs_evp_aes_256_gcm(), NULL, key, NULL, 1) != 1) {
        kms_gcm_key_free(k);
        return NULL;
    }
    return k;
}

void kms_gcm_key_free(kms_gcm_key *k)
{
    if (!k)
        return;
    EVP_CIPHER_CTX_free(k->ctx); /* cleanses the key schedule */
    free(k);
}

static int gcm(kms_gcm_key *k, int enc, const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
               const uint8_t *aad2, size_t aad2_len, const uint8_t *in, size_t in_len, uint8_t *out,
               uint8_t tag[16])
{
    EVP_CIPHER_CTX *ctx = k->ctx;
    int len = 0, rc = -1;

    if (in_len > INT32_MAX || aad1_len > INT32_MAX || aad2_len > INT32_MAX)
        return -1;
    if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, enc) != 1)
        goto out;
    if (aad1_len && EVP_CipherUpdate(ctx, NULL, &len, aad1, (int)aad1_len) != 1)
        goto out;
    if (aad2_len && EVP_CipherUpdate(ctx, NULL, &len, aad2, (int)aad2_len) != 1)
        goto out;
    if (in_len && EVP_CipherUpdate(ctx, out, &len, in, (int)in_len) != 1)
        goto out;
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1)
        goto out;
    if (EVP_CipherFinal_ex(ctx, out + len, &len) != 1)
        goto out;
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
        goto out;
    rc = 0;
out:
    if (rc && !enc && in_len)
        sodium_memzero(out, in_len);
    return rc;
}

int kms_gcm_seal(kms_gcm_key *k, const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
                 const uint8_t *aad2, size_t aad2_len, const uint8_t *pt, size_t pt_len, uint8_t *out,
                 uint8_t tag[16])
{
    return gcm(k, 1, nonce, aad1, aad1_len, aad2, aad2_len, pt, pt_len, out, tag);
}

int kms_gcm_open(kms_gcm_key *k, const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
                 const uint8_t *aad2, size_t aad2_len, const uint8_t *ct, size_t ct_len, const uint8_t tag[16],
                 uint8_t *out)
{
    return gcm(k, 0, nonce, aad1, aad1_len, aad2, aad2_len, ct, ct_len, out, (uint8_t *)tag);
}
