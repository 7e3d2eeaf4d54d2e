/*
 * aead.h — AES-256-GCM (OpenSSL) with a 12-byte nonce and 16-byte tag; OpenSSL's 1/0 returns are
 * turned into 0/-1 here and nowhere else in kms/.
 *
 * A kms_gcm_key holds one key's expanded schedule (an EVP_CIPHER_CTX keyed once), so sealing a data
 * key costs only the nonce set-up and the cipher itself. It is not thread-safe: the core uses it under
 * its lock.
 */
#ifndef ENVELOPEFS_KMS_AEAD_H
#define ENVELOPEFS_KMS_AEAD_H

#include <stddef.h>
#include <stdint.h>

typedef struct kms_gcm_key kms_gcm_key;

/* A keyed context for key (32 bytes; the caller keeps and wipes its own copy). NULL on failure. */
__attribute__((warn_unused_result)) kms_gcm_key *kms_gcm_key_new(const uint8_t key[32]);
/* Wipes and frees the context; NULL is a no-op. */
void kms_gcm_key_free(kms_gcm_key *k);

/* out receives pt_len bytes; tag 16 bytes. Returns 0 or -1. */
__attribute__((warn_unused_result)) int kms_gcm_seal(kms_gcm_key *k, const uint8_t nonce[12], const uint8_t *aad1,
                                                     size_t aad1_len, const uint8_t *aad2, size_t aad2_len,
                                                     const uint8_t *pt, size_t pt_len, uint8_t *out, uint8_t tag[16]);
/* Returns 0, or -1 when authentication fails (out is wiped). */
__attribute__((warn_unused_result)) int kms_gcm_open(kms_gcm_key *k, const uint8_t nonce[12], const uint8_t *aad1,
                                                     size_t aad1_len, const uint8_t *aad2, size_t aad2_len,
                                                     const uint8_t *ct, size_t ct_len, const uint8_t tag[16],
                                                     uint8_t *out);

#endif
