/*
 * manifest.h — the snapshot manifest (docs/FORMAT.md "Snapshot manifest"): a canonical, versioned byte
 * string describing one completed snapshot (ids, size, lineage, key ARN, the digest of its wrapped data
 * key, completion time, a digest over its block map with the SHA-256 of every chunk's stored bytes, and
 * for a copy the source's manifest digest), whose SHA-256 a SIGN_VERIFY key signs; and the signature
 * record the catalog keeps (table snapshot_signatures). Pure functions of their inputs (no I/O, no keys).
 * Error convention: 0 / -errno (-EINVAL: a field does not fit; -EBADMSG: bytes that are not a manifest).
 */
#ifndef ENVELOPEFS_VOL_MANIFEST_H
#define ENVELOPEFS_VOL_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "vol.h"

#define VOL_MANIFEST_MAGIC "EVSM"
#define VOL_MANIFEST_VERSION 1
#define VOL_MANIFEST_MAX 1024 /* more than the longest encoding (ids ≤ 31, ARN ≤ 255 bytes) */
#define VOL_MAP_MAGIC "EVSB"

typedef struct vol_manifest {
    char snapshot_id[32];
    char volume_id[32];
    uint64_t size_gib;
    uint8_t lineage[VOL_LINEAGE_LEN];   /* the snapshot's lineage id, raw */
    char key_arn[256];                  /* the KMS key protecting the snapshot's data key */
    uint8_t wrapped_sha256[32];         /* SHA-256 of the lineage's wrapped data key (CiphertextBlob) */
    int64_t created;                    /* the snapshot's completion time, Unix seconds */
    uint64_t blocks;                    /* mapped (written) 512 KiB blocks */
    uint8_t map_sha256[32];             /* vol_map_hash over the block map */
    char source_id[32];                 /* a copy: the source snapshot; "" otherwise */
    uint8_t source_sha256[32];          /* a copy of a signed snapshot: the source's manifest digest; else zeros */
} vol_manifest;

/* Encode m canonically into out (cap ≥ VOL_MANIFEST_MAX is always enough); *len its length. */
int vol_manifest_encode(const vol_manifest *m, uint8_t *out, size_t cap, size_t *len) __attribute__((warn_unused_result));
/* Decode exactly len bytes (the whole encoding, nothing after it). */
int vol_manifest_decode(const uint8_t *in, size_t len, vol_manifest *m) __attribute__((warn_unused_result));
/* The manifest digest: SHA-256 of the encoding (what is signed, MessageType DIGEST). */
void vol_manifest_digest(const uint8_t *enc, size_t len, uint8_t out[32]);
/* The name of the first field in which a and b differ, or NULL when they are equal. */
const char *vol_manifest_diff(const vol_manifest *a, const vol_manifest *b);

/* The block-map digest: SHA-256("EVSB" ‖ 0x01 ‖ for each mapped block in ascending order: index u64 LE ‖
 * SHA-256 of the chunk's stored bytes). */
typedef struct vol_map_hash {
    crypto_hash_sha256_state h;
    uint64_t n;
} vol_map_hash;
void vol_map_hash_init(vol_map_hash *m);
void vol_map_hash_add(vol_map_hash *m, uint64_t block, const uint8_t chunk_sha256[32]);
void vol_map_hash_final(vol_map_hash *m, uint8_t out[32]);

/* A snapshot's signature record (catalog table snapshot_signatures). Byte members malloc'd by getters;
 * vol_signature_clear frees them. */
typedef struct vol_signature {
    char snapshot_id[32];
    uint8_t *manifest;                  /* the signed manifest's encoding */
    size_t manifest_len;
    char key_arn[256];                  /* the SIGN_VERIFY key */
    char algorithm[32];                 /* ECDSA_SHA_256 | RSASSA_PSS_SHA_256 */
    uint8_t *signature;                 /* as Sign returned it (ECDSA: DER) */
    size_t signature_len;
    int64_t signed_at;
    /* a copy of a signed snapshot: the source's record as it was when copied ("" / NULL otherwise) */
    char source_id[32];
    uint8_t *source_manifest;
    size_t source_manifest_len;
    char source_key_arn[256];
    char source_algorithm[32];
    uint8_t *source_signature;
    size_t source_signature_len;
} vol_signature;
void vol_signature_clear(vol_signature *s);

#endif
