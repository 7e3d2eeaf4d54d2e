/*
 * keymat.h — key material of every key spec as the keystore holds it (docs/FORMAT.md "Key material"):
 * 32 random bytes for SYMMETRIC_DEFAULT, the key's length in random bytes for HMAC specs, and a DER
 * PKCS#8 PrivateKeyInfo for RSA and ECC specs; and the AAD that binds a sealed row to its key, version,
 * spec and usage. kms_keymat_decode is a pure function of its bytes (the material is authenticated
 * before it is decoded, but it is still parsed as untrusted input: tests/fuzz/fuzz_keymat.c).
 */
#ifndef ENVELOPEFS_KMS_KEYMAT_H
#define ENVELOPEFS_KMS_KEYMAT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "keyspec.h"

#define KMS_KEYMAT_MAX 4096        /* longest material of any spec (an RSA_4096 PKCS#8 is ~2.4 KB) */
#define KMS_MATERIAL_AAD_MAX 128

/* Fresh material for a key of spec s: *out is sodium_malloc'd (*len bytes), sodium_free it. 0 or -1. */
int kms_keymat_generate(enum kms_key_spec s, uint8_t **out, size_t *len) __attribute__((warn_unused_result));

/* Material for spec s from an existing key pair (GenerateDataKeyPair's private key, PKCS#8 DER): as above. */
int kms_keymat_from_pkey(EVP_PKEY *pk, uint8_t **out, size_t *len) __attribute__((warn_unused_result));

/* A fresh key pair of an asymmetric spec (caller EVP_PKEY_frees it); NULL on failure. */
EVP_PKEY *kms_keymat_keygen(enum kms_key_spec s);

/* Decode the material of an asymmetric spec: exactly one DER PKCS#8 PrivateKeyInfo of len bytes holding
 * an RSA key of the spec's size or an EC key on the spec's curve. *out (EVP_PKEY_free) on 0; -1 for
 * anything else. */
int kms_keymat_decode(enum kms_key_spec s, const uint8_t *der, size_t len, EVP_PKEY **out)
    __attribute__((warn_unused_result));

/* Whether len bytes are a valid material length for a symmetric or HMAC spec. */
int kms_keymat_len_ok(enum kms_key_spec s, size_t len);

/* The DER SubjectPublicKeyInfo of pk, malloc'd (*len bytes); NULL on failure. */
uint8_t *kms_keymat_public_der(EVP_PKEY *pk, size_t *len);

/* Verify sig over dlen bytes of digest with pk by algorithm a (AWS's parameters, asym.c; a fresh context, for
 * the fuzz target): 0 if sig is a valid signature, else -1. */
int kms_asym_verify_digest(EVP_PKEY *pk, enum kms_alg a, const uint8_t *dgst, size_t dlen, const uint8_t *sig,
                           size_t siglen) __attribute__((warn_unused_result));

/* The AAD of a sealed material row into aad (KMS_MATERIAL_AAD_MAX bytes); returns its length.
 * SYMMETRIC_DEFAULT keys: "envelopefs-cmk-v1" ‖ key id ‖ u32 BE version (keystore format 1, unchanged);
 * others: "envelopefs-cmk-v2" ‖ key id ‖ u32 BE version ‖ spec name ‖ 0x00 ‖ usage name. */
size_t kms_material_aad(uint8_t *aad, const char *key_id, uint32_t version, enum kms_key_spec s,
                        enum kms_key_usage u);

#endif
