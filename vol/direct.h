/*
 * direct.h — the EBS direct API over the volume store (`envelopefs ebs`): a snapshot started empty or on
 * a parent, 512 KiB blocks put with their SHA-256 checked, completed with the block count and the LINEAR
 * aggregate checksum checked; blocks of any completed snapshot read back by index and block token.
 * Errors fill vol_err with the EBS exception name and its Reason (INVALID_BLOCK, …) in the message.
 */
#ifndef ENVELOPEFS_VOL_DIRECT_H
#define ENVELOPEFS_VOL_DIRECT_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

/* StartSnapshot. kms_key_arn NULL: the parent's key, else the default key. */
int vol_ebs_start(vol_store *st, uint64_t size_gib, const char *parent, bool encrypted, const char *kms_key_arn,
                  const char *description, const char *tags, vol_snapshot *out, vol_err *e) __attribute__((warn_unused_result));
/* PutSnapshotBlock: data is exactly VOL_BLOCK_SIZE bytes; checksum_b64 the base64 SHA-256 of it. */
int vol_ebs_put(vol_store *st, const char *snap, uint64_t block, const uint8_t *data, size_t len,
                const char *checksum_b64, vol_err *e) __attribute__((warn_unused_result));
/* CompleteSnapshot: changed = the number of blocks put; checksum_b64 (may be NULL) the LINEAR aggregate. */
int vol_ebs_complete(vol_store *st, const char *snap, int64_t changed, const char *checksum_b64,
                     vol_err *e) __attribute__((warn_unused_result));
/* The block token of a chunk generation ("EBT1" + 16 hex), and its inverse (-EINVAL if malformed). */
void vol_ebs_token(uint64_t gen, char out[21]);
int vol_ebs_token_gen(const char *token, uint64_t *gen) __attribute__((warn_unused_result));
/* GetSnapshotBlock: out receives VOL_BLOCK_SIZE bytes, sha256 their digest. */
int vol_ebs_get(vol_store *st, const char *snap, uint64_t block, const char *token, uint8_t *out, uint8_t sha256[32],
                vol_err *e) __attribute__((warn_unused_result));

#endif
