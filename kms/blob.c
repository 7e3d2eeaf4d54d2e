/*
 * blob.c — parse and build the KMS ciphertext blob header (see blob.h). No crypto here.
 */
#include "blob.h"

#include <errno.h>
#include <string.h>

int kms_blob_parse(const uint8_t *buf, size_t len, kms_blob *out)
{
    if (!buf || len < KMS_BLOB_OVERHEAD || len > KMS_BLOB_MAX)
        return -EINVAL;
    if (buf[0] != KMS_BLOB_VERSION || buf[1] != KMS_BLOB_ALG_AES256GCM)
        return -EINVAL;
    memcpy(out->key_id, buf + 2, 16);
    out->version = (uint32_t)buf[18] << 24 | (uint32_t)buf[19] << 16 | (uint32_t)buf[20] << 8 | buf[21];
    if (out->version == 0)
        return -EINVAL;
    out->header = buf;
    out->nonce = buf + 22;
    out->ciphertext = buf + KMS_BLOB_HEADER_LEN;
    out->ciphertext_len = len - KMS_BLOB_OVERHEAD;
    out->tag = buf + len - KMS_BLOB_TAG_LEN;
    return 0;
}

void kms_blob_write_header(uint8_t out[KMS_BLOB_HEADER_LEN], const uint8_t key_id[16],
                           uint32_t version, const uint8_t nonce[KMS_BLOB_NONCE_LEN])
{
    out[0] = KMS_BLOB_VERSION;
    out[1] = KMS_BLOB_ALG_AES256GCM;
    memcpy(out + 2, key_id, 16);
    out[18] = (uint8_t)(version >> 24);
    out[19] = (uint8_t)(version >> 16);
    out[20] = (uint8_t)(version >> 8);
    out[21] = (uint8_t)version;
    memcpy(out + 22, nonce, KMS_BLOB_NONCE_LEN);
}
