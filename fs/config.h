/*
 * config.h — the filesystem config `CIPHERDIR/envelopefs.conf` (docs/FORMAT.md "Filesystem config"):
 * a JSON object naming the filesystem id, key service, CMK, cipher, block size and options, with the
 * wrapped filesystem key and an HMAC over the rest. Parsing is a pure function of the bytes; the MAC
 * is checked by efs_keys_open once the filesystem key is unwrapped.
 */
#ifndef ENVELOPEFS_FS_CONFIG_H
#define ENVELOPEFS_FS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EFS_CONFIG_NAME "envelopefs.conf"
#define EFS_CONFIG_FORMAT 3        /* written by init; formats 1 (plaintext names only) and 2 (variable
                                      file header length) are still read and written as they are */
#define EFS_FS_ID_LEN 16

typedef struct efs_config {
    int format;
    uint8_t fs_id[EFS_FS_ID_LEN];
    char fs_id_hex[2 * EFS_FS_ID_LEN + 1];
    char *kms_url;          /* malloc'd */
    char *key_id;           /* malloc'd: the CMK's ARN */
    uint32_t block_size;
    bool dek_in_xattr;
    bool bucket_key;
    bool plaintext_names;
    bool dirids_in_xattr;   /* format 3 ("dirids": "xattr"): directory ids in an xattr of each backing
                               directory, read with its inode; else ("file", formats 1-2) in envelopefs.dirid */
    uint32_t header_size;   /* format 3 with dek_location "header": every file header's length (version 2,
                               padded), so a file's plaintext size follows from its backing size alone;
                               0 otherwise (format ≤ 2: read each header; "xattr": no header in the file) */
    uint8_t *fs_key_blob;   /* malloc'd: KMS CiphertextBlob of the filesystem key */
    size_t fs_key_blob_len;
    uint8_t mac[32];
} efs_config;

/* Parse; -EINVAL with *why (static string) describing the first problem. */
int efs_config_parse(const char *buf, size_t len, efs_config *c, const char **why);
/* Canonical bytes the MAC covers (malloc'd). */
char *efs_config_canonical(const efs_config *c);
/* Full serialisation with the MAC (malloc'd). */
char *efs_config_serialize(const efs_config *c);
void efs_config_clear(efs_config *c);

/* Does every regular file's data start at the same offset (0 with the header in an xattr, header_size in
 * format 3)? Then *off (if not NULL) is it, and a file's plaintext size follows from its backing size alone;
 * false: each file's header must be read for it (formats 1-2). */
bool efs_config_data_offset(const efs_config *c, uint32_t *off);

/* Is a header of this version and encoded length what this filesystem writes? (Format 3 with headers in
 * the file: version 2 of exactly header_size bytes; otherwise version 1.) A mismatch is damage. */
bool efs_config_header_matches(const efs_config *c, unsigned version, size_t len);

/* Read CIPHERDIR/envelopefs.conf. -ENOENT if missing; -EINVAL with *why if unreadable. */
int efs_config_load(const char *cipherdir, efs_config *c, const char **why);
/* Write it durably (temp file, fsync, rename, fsync dir). */
int efs_config_store(const char *cipherdir, const efs_config *c);

#endif
