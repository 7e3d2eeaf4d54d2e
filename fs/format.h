/*
 * format.h — the encrypted file's header (docs/FORMAT.md "Encrypted file"): a versioned, authenticated
 * header carrying the file id and the wrapped data key (DEK). The AES-256-GCM blocks that follow it are
 * blockcrypt.h's; a volume, which keeps its wrapped key in a catalog, uses those without this header.
 * Everything here is a pure function of its inputs (no I/O), so each parser can be fuzzed.
 * Error convention: 0 / -errno (-EINVAL malformed, -EBADMSG authentication failure).
 */
#ifndef ENVELOPEFS_FS_FORMAT_H
#define ENVELOPEFS_FS_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "blockcrypt.h"

#define EFS_HDR_MAGIC "EnvF"
#define EFS_HDR_VERSION 1             /* variable length: 34 + W + 16 (config formats 1 and 2) */
#define EFS_HDR_VERSION_PADDED 2      /* the filesystem's fixed length, zero padding before the tag (format 3) */
#define EFS_HDR_FIXED 34              /* bytes before the wrapped DEK */
#define EFS_HDR_TAG 16
#define EFS_WRAPPED_MAX 1024
#define EFS_HDR_MAX (EFS_HDR_FIXED + EFS_WRAPPED_MAX + EFS_HDR_TAG)

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

/* Compute h->tag over the encoded header fields. */
int efs_header_seal(efs_header *h, const efs_file_keys *k);
/* 0 if the tag matches (constant time), -EBADMSG otherwise. */
int efs_header_verify(const efs_header *h, const efs_file_keys *k);

#endif
