/*
 * aead.h — AES-256-GCM (OpenSSL) with a 12-byte nonce and 16-byte tag; OpenSSL's 1/0 returns are
 * turned into 0/-1 here and nowhere else in kms/.
 */
#ifndef ENVELOPEFS_KMS_AEAD_H
#define ENVELOPEFS_KMS_AEAD_H

#include <stddef.h>
#include <stdint.h>

/* out receives pt_len bytes; tag 16 bytes. Returns 0 or -1. */
int kms_gcm_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
                 const uint8_t *aad2, size_t aad2_len, const uint8_t *pt, size_t pt_len, uint8_t *out,
                 uint8_t tag[16]);
/* Returns 0, or -1 when authentication fails (out is wiped). */
int kms_gcm_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
                 const uint8_t *aad2, size_t aad2_len, const uint8_t *ct, size_t ct_len,
                 const uint8_t tag[16], uint8_t *out);

#endif
