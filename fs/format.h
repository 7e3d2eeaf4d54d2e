/*
 * format.h — the encrypted file format (docs/FORMAT.md "Encrypted file"): a versioned, authenticated
 * header carrying the file id and the wrapped data key (DEK), followed by AES-256-GCM blocks.
 * Everything here is a pure function of its inputs (no I/O), so each parser can be fuzzed.
 * Error convention: 0 / -errno (-EINVAL malformed, -EBADMSG authentication failure).
 */
#ifndef ENVELOPEFS_FS_FORMAT_H
#define ENVELOPEFS_FS_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define EFS_HDR_MAGIC "EnvF"
#define EFS_HDR_VERSION 1             /* variable length: 34 + W + 16 (config formats 1 and 2) */
#define EFS_HDR_VERSION_PADDED 2      /* the filesystem's fixed length, zero padding before the tag (format 3) */
#define EFS_HDR_FIXED 34              /* bytes before the wrapped DEK */
#define EFS_HDR_TAG 16
#define EFS_WRAPPED_MAX 1024
#define EFS_HDR_MAX (EFS_HDR_FIXED + EFS_WRAPPED_MAX + EFS_HDR_TAG)
#define EFS_FILE_ID_LEN 16
#define EFS_NONCE 12
#define EFS_TAG 16
#define EFS_BLOCK_OVERHEAD (EFS_NONCE + EFS_TAG)
#define EFS_DEK_LEN 32

enum efs_key_mode {
    EFS_KEYMODE_KMS = 1,     /* wrapped = KMS CiphertextBlob of the DEK */
    EFS_KEYMODE_BUCKET = 2,  /* wrapped = bucket key id (16) ‖ nonce (24) ‖ sealed DEK (32+16) */
};

typedef struct efs_header {
    uint16_t version;
    uint32_t block_size;
    uint8_t key_mode;
    uint8_t file_id[EFS_FILE_ID_LEN];
    uint16_t wrapped_len;
    uint16_t total_len;   /* version 2: encoded length including the zero padding; unused in version 1 */
    uint8_t wrapped[EFS_WRAPPED_MAX];
    uint8_t tag[EFS_HDR_TAG];
} efs_header;

/* Total encoded length of h: 34 + W + 16 in version 1, total_len in version 2. */
size_t efs_header_len(const efs_header *h);
/* Parse the header at the start of buf; on success *hdr_len is its encoded length. Does not verify
 * the tag (that needs the DEK): call efs_header_verify after unwrapping. */
int efs_header_parse(const uint8_t *buf, size_t len, efs_header *h, size_t *hdr_len);
/* Encode h (with its tag) into out (cap ≥ efs_header_len(h)). -EINVAL if h does not fit its own
 * length (version 2: total_len < 34 + W + 16 or > EFS_HDR_MAX). */
int efs_header_encode(const efs_header *h, uint8_t *out, size_t cap);

/* HKDF-SHA256 of a key into 32 bytes with an info label. */
int efs_hkdf32(const uint8_t *ikm, size_t ikm_len, const char *info, uint8_t out[32]);

/* Keys derived from a file's DEK: blocks (AES-256-GCM) and the header MAC (HMAC-SHA256). */
typedef struct efs_file_keys {
    uint8_t block_key[32];
    uint8_t mac_key[32];
    uint64_t gen;   /* unique per derivation: lets a thread keep this key's AES schedule loaded */
} efs_file_keys;
/* Derive with HKDF-SHA256 (info "envelopefs v1 block" / "envelopefs v1 header-mac"); sets a fresh
 * k->gen. Change the key bytes only through this function. */
int efs_file_keys_derive(const uint8_t dek[EFS_DEK_LEN], efs_file_keys *k);
/* Compute h->tag over the encoded header fields. */
int efs_header_seal(efs_header *h, const efs_file_keys *k);
/* 0 if the tag matches (constant time), -EBADMSG otherwise. */
int efs_header_verify(const efs_header *h, const efs_file_keys *k);

/* Size of one stored block for n plaintext bytes. */
static inline size_t efs_block_stored(size_t n) { return n + EFS_BLOCK_OVERHEAD; }
/* Plaintext size of a file whose data region (after the header) is data_len bytes. Returns -EINVAL
 * if the last stored block is too short to hold a block (a truncated file); *size is then the size
 * of the intact blocks. */
int efs_plain_size(uint64_t data_len, uint32_t block_size, uint64_t *size);
/* Data-region length for a plaintext size. */
uint64_t efs_data_len(uint64_t size, uint32_t block_size);

/*
 * Encrypt one block: out = nonce ‖ ciphertext ‖ tag (n + 28 bytes), fresh random nonce,
 * AAD = "EFB1" ‖ file id ‖ u64 LE block number. dec: -EBADMSG when authentication fails.
 */
int efs_block_encrypt(const efs_file_keys *k, const uint8_t file_id[EFS_FILE_ID_LEN], uint64_t blockno,
                      const uint8_t *pt, size_t n, uint8_t *out);
/* Encrypt count whole blocks of bs bytes, numbered first, first+1, …, in place: data (count·bs bytes)
 * becomes the ciphertexts, meta (count·28 bytes) receives each block's nonce (12) and tag (16). Stored,
 * block i is meta[28i, 28i+12) ‖ data[bs·i, bs·(i+1)) ‖ meta[28i+12, 28i+28): the tag of one block and the
 * nonce of the next are adjacent in meta, so count blocks go out as 2·count+1 iovecs. -ENOMEM (no
 * per-thread crypto state) leaves data untouched; after -EIO data may be partly encrypted. */
int efs_blocks_seal(const efs_file_keys *k, const uint8_t file_id[EFS_FILE_ID_LEN], uint64_t first,
                    uint8_t *data, size_t count, size_t bs, uint8_t *meta) __attribute__((warn_unused_result));
int efs_block_decrypt(const efs_file_keys *k, const uint8_t file_id[EFS_FILE_ID_LEN], uint64_t blockno,
                      const uint8_t *in, size_t in_len, uint8_t *pt);

#endif
