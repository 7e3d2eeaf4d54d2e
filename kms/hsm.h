/*
 * hsm.h — a PKCS#11 token as the key service uses it (kms/hsm.c): the module loaded with dlopen, one
 * logged-in token per (module, token label) in the process, a small pool of sessions on it behind one
 * lock, and the few operations a custom key store needs — generate an AES-256 key inside the token,
 * AES-256-GCM with it, find and destroy it. Keys are named by their CKA_ID (the KMS key's 16 raw id
 * bytes); CKA_LABEL is the key id text. Every CK_RV is turned into a kms_err and a message naming the
 * PKCS#11 function and the return value at this boundary; the PIN is never in a message.
 *
 * Thread-safe: tokens are shared by every core of the process that opens the same one (PKCS#11's login
 * is per application and token), reference-counted; each call takes a session from the pool.
 */
#ifndef ENVELOPEFS_KMS_HSM_H
#define ENVELOPEFS_KMS_HSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelopefs/kms_types.h"

typedef struct hsm_token hsm_token;

/* Why a connection failed, as AWS's ConnectionErrorCode names it (NULL when it did not fail). */
#define HSM_CODE_NOT_FOUND "CLUSTER_NOT_FOUND"         /* no module at the path, or no token by the label */
#define HSM_CODE_CREDENTIALS "INVALID_CREDENTIALS"     /* the PIN is wrong */
#define HSM_CODE_LOCKED "USER_LOCKED_OUT"              /* the token locked its user PIN */
#define HSM_CODE_INTERNAL "INTERNAL_ERROR"             /* anything else the module answered */

/* Load the module (once per path in the process), find the token whose label is `label`, log in as its
 * user with the PIN. On failure *code (non-NULL) is one of HSM_CODE_* and *msg says what happened. */
kms_err hsm_open(const char *module, const char *label, const char *pin, size_t pin_len, hsm_token **out,
                 const char **code, char **msg) KMS_WUR;
/* Drop this reference (the last one logs out, closes its sessions and finalizes the module if it is the
 * module's last token). NULL is a no-op. */
void hsm_close(hsm_token *t);

/* A new token object: an AES key of 32 bytes (CKK_AES, CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE,
 * not CKA_EXTRACTABLE, encrypt/decrypt only), CKA_ID id, CKA_LABEL label. */
kms_err hsm_generate_aes256(hsm_token *t, const uint8_t id[16], const char *label, char **msg) KMS_WUR;
/* CKM_AES_GCM with the key whose CKA_ID is id: a 12-byte iv, aad, a 16-byte tag after the ciphertext
 * (out holds n + 16 bytes). Open: KMS_ERR_INVALID_CIPHERTEXT when the token refuses the tag. */
kms_err hsm_gcm_seal(hsm_token *t, const uint8_t id[16], const uint8_t iv[12], const uint8_t *aad, size_t aad_len,
                     const uint8_t *pt, size_t n, uint8_t *out, char **msg) KMS_WUR;
kms_err hsm_gcm_open(hsm_token *t, const uint8_t id[16], const uint8_t iv[12], const uint8_t *aad, size_t aad_len,
                     const uint8_t *ct, size_t n, const uint8_t tag[16], uint8_t *pt, char **msg) KMS_WUR;
/* Destroy the key whose CKA_ID is id (KMS_OK if there is none). */
kms_err hsm_destroy_key(hsm_token *t, const uint8_t id[16], char **msg) KMS_WUR;

/* What the token says of the key with CKA_ID id (tests and diagnostics). */
typedef struct hsm_key_info {
    bool found;
    bool aes, sensitive, extractable, token;
    bool value_readable; /* whether C_GetAttributeValue(CKA_VALUE) gave the key's bytes (it must not) */
    unsigned long value_len;
    char label[64];
} hsm_key_info;
kms_err hsm_describe_key(hsm_token *t, const uint8_t id[16], hsm_key_info *info, char **msg) KMS_WUR;

#endif
