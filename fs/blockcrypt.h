/*
 * blockcrypt.h — authenticated blocks: AES-256-GCM sealing of one block of plaintext under a key and an
 * AAD that its owner chooses (docs/FORMAT.md "Encrypted file", blocks), the keys derived from a data key,
 * and the arithmetic of sealed block sizes. Shared by the directory mount (AAD "EFB1" ‖ file id ‖ block
 * number, efs_file_bind) and volumes (their own AAD and keys per chunk, through an efs_block_bind_fn).
 * Pure functions of their inputs apart from per-thread crypto state. Error convention: 0 / -errno
 * (-EBADMSG: authentication failed; -ENOMEM: no per-thread crypto state).
 */
#ifndef ENVELOPEFS_FS_BLOCKCRYPT_H
#define ENVELOPEFS_FS_BLOCKCRYPT_H

#include <stddef.h>
#include <stdint.h>

#define EFS_FILE_ID_LEN 16
#define EFS_NONCE 12
#define EFS_TAG 16
#define EFS_BLOCK_OVERHEAD (EFS_NONCE + EFS_TAG) /* stored block = nonce ‖ ciphertext ‖ tag */
#define EFS_DEK_LEN 32
#define EFS_BLOCK_AAD_MAX 64                     /* longest AAD a binding may give a block */

/* HKDF-SHA256 (RFC 5869, empty salt) of a key into 32 bytes with an info label. 0, or -EIO. */
int efs_hkdf32(const uint8_t *ikm, size_t ikm_len, const char *info, uint8_t out[32])
    __attribute__((warn_unused_result));
/* HMAC-SHA256 of msg[0, n) under a 32-byte key. 0, or -EIO. */
int efs_hmac_sha256(const uint8_t key[32], const uint8_t *msg, size_t n, uint8_t out[32])
    __attribute__((warn_unused_result));

/* Keys derived from a data key: blocks (AES-256-GCM) and the file header's MAC (HMAC-SHA256). */
typedef struct efs_file_keys {
    uint8_t block_key[32];
    uint8_t mac_key[32];
    uint64_t gen;   /* unique per derivation: lets a thread keep this key's AES schedule loaded */
} efs_file_keys;
/* Derive with HKDF-SHA256 (info "envelopefs v1 block" / "envelopefs v1 header-mac"); sets a fresh
 * k->gen. Change the key bytes only through this function (or give a new key a fresh gen with
 * efs_file_keys_new_gen). */
int efs_file_keys_derive(const uint8_t dek[EFS_DEK_LEN], efs_file_keys *k) __attribute__((warn_unused_result));
/* A fresh generation for key bytes set by the caller (e.g. a per-chunk subkey it derived itself). */
uint64_t efs_file_keys_new_gen(void);

/* What one block is sealed under: its key (borrowed) and its AAD. */
typedef struct efs_block_binding {
    const efs_file_keys *key;
    size_t aad_len;                   /* ≤ EFS_BLOCK_AAD_MAX */
    uint8_t aad[EFS_BLOCK_AAD_MAX];
} efs_block_binding;

/* The owner's rule for block blockno: fill b (key valid until the operation that asked returns).
 * 0 or -errno. Called from any thread, with the owner's content lock held or not (see content.h). */
typedef int (*efs_block_bind_fn)(const void *arg, uint64_t blockno, efs_block_binding *b);

/* The directory mount's rule: key = keys, AAD = "EFB1" ‖ file id ‖ u64 LE block number (28 bytes). */
typedef struct efs_file_binding {
    const efs_file_keys *keys;
    uint8_t file_id[EFS_FILE_ID_LEN];
} efs_file_binding;
int efs_file_bind(const void *file_binding, uint64_t blockno, efs_block_binding *b);

/* Seal n bytes of pt: a fresh random nonce into nonce_out (12), the ciphertext into ct (may be pt itself),
 * the tag into tag_out (16). For the usual contiguous layout pass out, out + 12, out + 12 + n. */
int efs_block_seal(const efs_block_binding *b, const uint8_t *pt, size_t n, uint8_t *nonce_out, uint8_t *ct,
                   uint8_t *tag_out) __attribute__((warn_unused_result));
/* Seal count whole blocks of bs bytes, numbered first, first+1, …, in place: data (count·bs bytes) becomes
 * the ciphertexts, meta (count·28 bytes) receives each block's nonce (12) and tag (16). Stored, block i is
 * meta[28i, 28i+12) ‖ data[bs·i, bs·(i+1)) ‖ meta[28i+12, 28i+28): the tag of one block and the nonce of
 * the next are adjacent in meta, so count blocks go out as 2·count+1 iovecs. -ENOMEM (no per-thread crypto
 * state) leaves data untouched; after any other error data may be partly encrypted. */
int efs_blocks_seal(efs_block_bind_fn bind, const void *arg, uint64_t first, uint8_t *data, size_t count,
                    size_t bs, uint8_t *meta) __attribute__((warn_unused_result));
/* Open one stored block in (nonce ‖ ciphertext ‖ tag, in_len > 28 bytes) into pt (in_len − 28 bytes).
 * -EBADMSG (pt wiped) when it fails authentication. */
int efs_block_open(const efs_block_binding *b, const uint8_t *in, size_t in_len, uint8_t *pt)
    __attribute__((warn_unused_result));

/* Plaintext size of a data region (sealed blocks of bs bytes, the last one possibly shorter) of data_len
 * stored bytes. -EINVAL if the last stored block is too short to hold a block (a truncated file); *size
 * is then the size of the intact blocks. */
int efs_plain_size(uint64_t data_len, uint32_t block_size, uint64_t *size);
/* Stored length of a data region holding size plaintext bytes. */
uint64_t efs_data_len(uint64_t size, uint32_t block_size);

#endif
