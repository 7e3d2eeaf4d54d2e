/*
 * importtoken.h — the ImportToken of GetParametersForImport / ImportKeyMaterial (docs/FORMAT.md "Import
 * token"): self-contained, so the service keeps no state between the two calls. A 31-byte header (magic
 * "EFIT", version 1, wrapping algorithm, wrapping key spec, the key's id, valid-to time) and the wrapping
 * key pair's private key (PKCS#8 DER) sealed under the store's root key with the header in the AAD.
 * kms_import_token_parse is a pure function of its bytes (tests/fuzz/fuzz_import_token.c).
 */
#ifndef ENVELOPEFS_KMS_IMPORTTOKEN_H
#define ENVELOPEFS_KMS_IMPORTTOKEN_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define KMS_IMPORT_TOKEN_HEADER 31
#define KMS_IMPORT_TOKEN_MAX 6144 /* ImportToken's limit in the API */
#define KMS_IMPORT_TOKEN_VALIDITY (24 * 3600)

enum kms_wrap_alg { KMS_WRAP_RSAES_OAEP_SHA_1 = 1, KMS_WRAP_RSAES_OAEP_SHA_256, KMS_WRAP_RSA_AES_KEY_WRAP_SHA_1,
                    KMS_WRAP_RSA_AES_KEY_WRAP_SHA_256 };

typedef struct kms_import_token {
    int wrap_alg;             /* enum kms_wrap_alg */
    int wrap_spec;            /* enum kms_key_spec: RSA_2048/3072/4096 */
    uint8_t key_id[16];       /* raw UUID of the key it is for */
    int64_t valid_to;         /* seconds since the epoch */
    const uint8_t *header;    /* the first KMS_IMPORT_TOKEN_HEADER bytes (the AAD of the sealed part) */
    const uint8_t *sealed;    /* nonce ‖ ciphertext ‖ tag, pointing into the token */
    size_t sealed_len;
} kms_import_token;

/* Write the header into out (KMS_IMPORT_TOKEN_HEADER bytes). */
void kms_import_token_header(uint8_t *out, int wrap_alg, int wrap_spec, const uint8_t key_id[16], int64_t valid_to);

/* Parse a token: 0 with *t pointing into buf, or -1 (wrong magic, version, algorithm, spec, or a sealed part
 * too short or too long to hold a private key). */
int kms_import_token_parse(const uint8_t *buf, size_t len, kms_import_token *t) __attribute__((warn_unused_result));

/* import.c, shared with the replication protocol (mrk_remote.c): RSA-OAEP with hash md (and MGF1 of md) under
 * a wrapping private key, and AES-256 key wrap with padding (RFC 5649, at most 4096 bytes) opened with kek;
 * 0 with *n set (in: pt's room; the RSA one wants a whole RSA block), or -1. */
int kms_wrap_oaep_open(EVP_PKEY *pk, const EVP_MD *md, const uint8_t *ct, size_t ct_len, uint8_t *pt, size_t *n);
int kms_wrap_kwp_open(const uint8_t kek[32], const uint8_t *ct, size_t ct_len, uint8_t *pt, size_t *n);

/* AWS's names. */
int kms_wrap_alg_parse(const char *name);
const char *kms_wrap_alg_name(int a);

#endif
