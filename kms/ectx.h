/*
 * ectx.h — canonical, unambiguous encoding of an encryption context for use as AEAD associated data.
 *
 * Encoding (big-endian, as the AWS Encryption SDK): u16 pair count, then for each pair sorted by key
 * bytes: u16 key length, key bytes, u16 value length, value bytes. {"a":"bc"} and {"ab":"c"} differ.
 * Duplicate keys are impossible in a JSON object; the encoder rejects them anyway.
 */
#ifndef ENVELOPEFS_KMS_ECTX_H
#define ENVELOPEFS_KMS_ECTX_H

#include <stddef.h>
#include <stdint.h>
#include "envelopefs/kms_types.h"

/* Encode ctx (may be NULL or empty) into a malloc'd buffer. Returns 0, -EINVAL (a key or value over
 * 65535 bytes, an empty key, duplicate keys, more than 65535 pairs) or -ENOMEM. */
int kms_ectx_encode(const kms_ectx *ctx, uint8_t **out, size_t *out_len);

#endif
