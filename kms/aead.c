/*
 * aead.c — AES-256-GCM through OpenSSL's EVP interface (see aead.h). The cipher is fetched from the
 * provider once: EVP_efs_evp_aes_256_gcm() makes OpenSSL 3 look it up (locks, allocations) at every init.
 */
#include "aead.h"

#include <openssl/evp.h>
#include <sodium.h>

#include "envelopefs/evp.h"

static int gcm(int enc, const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad1,
               size_t aad1_len, const uint8_t *aad2, size_t aad2_len, const uint8_t *in, size_t in_len,
               uint8_t *out, uint8_t tag[16])
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0, rc = -1;

    if (!ctx)
        return -1;
    if (EVP_CipherInit_ex(ctx, efs_evp_aes_256_gcm(), NULL, key, nonce, enc) != 1)
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
    EVP_CIPHER_CTX_free(ctx);
    if (rc && !enc && in_len)
        sodium_memzero(out, in_len);
    return rc;
}

int kms_gcm_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
                 const uint8_t *aad2, size_t aad2_len, const uint8_t *pt, size_t pt_len, uint8_t *out,
                 uint8_t tag[16])
{
    return gcm(1, key, nonce, aad1, aad1_len, aad2, aad2_len, pt, pt_len, out, tag);
}

int kms_gcm_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
                 const uint8_t *aad2, size_t aad2_len, const uint8_t *ct, size_t ct_len,
                 const uint8_t tag[16], uint8_t *out)
{
    return gcm(0, key, nonce, aad1, aad1_len, aad2, aad2_len, ct, ct_len, out, (uint8_t *)tag);
}
