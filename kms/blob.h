/*
 * blob.h — the KMS ciphertext blob (docs/FORMAT.md, "KMS ciphertext blob"): a versioned,
 * self-describing envelope naming the CMK and key-material version that sealed it.
 *
 *   off len  field
 *   0   1    format version (1)
 *   1   1    algorithm (1 = AES-256-GCM, 96-bit nonce, 128-bit tag)
 *   2   16   CMK id (UUID, 16 raw bytes)
 *   18  4    key-material version (u32 big-endian, ≥ 1)
 *   22  12   nonce
 *   34  n    ciphertext
 *   34+n 16  tag
 * AAD = bytes 0..34 ‖ canonical encryption context. Parsing is a pure function of the bytes.
 */
#ifndef ENVELOPEFS_KMS_BLOB_H
#define ENVELOPEFS_KMS_BLOB_H

#include <stddef.h>
#include <stdint.h>

#define KMS_BLOB_VERSION 1
#define KMS_BLOB_ALG_AES256GCM 1
#define KMS_BLOB_HEADER_LEN 34
#define KMS_BLOB_TAG_LEN 16
#define KMS_BLOB_NONCE_LEN 12
#define KMS_BLOB_OVERHEAD (KMS_BLOB_HEADER_LEN + KMS_BLOB_TAG_LEN)
#define KMS_BLOB_MAX 6144 /* AWS CiphertextBlob limit */

typedef struct kms_blob {
    uint8_t key_id[16];
    uint32_t version;
    const uint8_t *header;      /* points into the parsed buffer: KMS_BLOB_HEADER_LEN bytes (the AAD prefix) */
    const uint8_t *nonce;       /* into the buffer */
    const uint8_t *ciphertext;  /* into the buffer */
    size_t ciphertext_len;
    const uint8_t *tag;         /* into the buffer */
} kms_blob;

/* Parse; returns 0 or -EINVAL (too short/long, unknown version or algorithm, version 0). */
int kms_blob_parse(const uint8_t *buf, size_t len, kms_blob *out);
/* Write the 34-byte header for key_id/version/nonce into out. */
void kms_blob_write_header(uint8_t out[KMS_BLOB_HEADER_LEN], const uint8_t key_id[16],
                           uint32_t version, const uint8_t nonce[KMS_BLOB_NONCE_LEN]);

#endif
