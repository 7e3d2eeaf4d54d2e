/*
 * keys.h — the mounted filesystem's keys: the filesystem key (unwrapped once from the config; from it
 * the config MAC, symlink and xattr keys are derived), per-file DEKs (from the key service, or wrapped
 * locally under a bucket key in --bucket-key mode), and the DEK cache. Counts key-service calls.
 */
#ifndef ENVELOPEFS_FS_KEYS_H
#define ENVELOPEFS_FS_KEYS_H

#include <stdint.h>

#include "config.h"
#include "format.h"
#include "envelopefs/kmsclient.h"

typedef struct efs_keys efs_keys;

/* Unwrap the filesystem key from the config and verify the config's MAC. Takes ownership of kms
 * (freed by efs_keys_free). On error *why names the problem (static or kms message copied into why_buf). */
int efs_keys_open(const efs_config *cfg, kmsc *kms, efs_keys **out, char *why, size_t why_cap);
void efs_keys_free(efs_keys *k);

/* For init: generate a new filesystem key for cfg (fills cfg->fs_key_blob and cfg->mac). */
int efs_keys_init_config(efs_config *cfg, kmsc *kms, char *why, size_t why_cap);

/* A new file: random file id, new DEK (KMS or bucket key), sealed header. keys_out derived from it. */
int efs_keys_new_file(efs_keys *k, efs_header *h, efs_file_keys *keys_out);
/* A batch of efs_keys_new_file calls from this thread (the spare filler): their key-service audit records
 * are committed together at efs_keys_batch_end, before which no header made inside may become visible;
 * on an error (-errno) every one of them must be discarded. */
void efs_keys_batch_begin(efs_keys *k);
int efs_keys_batch_end(efs_keys *k) __attribute__((warn_unused_result));
/* Open an existing file's header: unwrap its DEK (cached) and verify the header tag.
 * -EACCES when the key service refuses (disabled/deleted key), -EIO otherwise (logged). */
int efs_keys_open_file(efs_keys *k, const efs_header *h, efs_file_keys *keys_out, const char *what);

/* Symlink targets and xattr values: AES-256-GCM under a derived key, random nonce; output is
 * base64url (symlinks) or raw (xattrs). aad binds the purpose (and xattr name). */
int efs_seal_small(efs_keys *k, int purpose, const char *aad, const uint8_t *pt, size_t n, uint8_t *out,
                   size_t *out_len); /* out: n + EFS_BLOCK_OVERHEAD */
int efs_open_small(efs_keys *k, int purpose, const char *aad, const uint8_t *in, size_t n, uint8_t *out,
                   size_t *out_len);
enum { EFS_PURPOSE_SYMLINK = 0, EFS_PURPOSE_XATTR = 1 };

/* The name cipher (NULL when the config keeps plaintext names). Borrowed. */
struct efs_names *efs_keys_names(efs_keys *k);

uint64_t efs_keys_kms_calls(efs_keys *k);
uint64_t efs_keys_cache_hits(efs_keys *k);
const efs_config *efs_keys_config(efs_keys *k);
/* Drop every cached DEK (wiped). */
void efs_keys_clear_cache(efs_keys *k);

#endif
