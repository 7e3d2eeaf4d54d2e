/*
 * sector.h — the chunk file format (docs/FORMAT.md "Volume chunk file"): a 64-byte header naming the
 * chunk (lineage, block, generation) and 128 slots, each one 4 KiB sector sealed with AES-256-GCM under
 * the chunk's own key (HKDF of the lineage data key, bound to lineage, block and generation) with the
 * sector number and its write counter in the AAD. Pure functions of their inputs (no I/O).
 * Error convention: 0 / -errno (-EBADMSG: authentication failed or the slot is not what the catalog
 * says it must be).
 */
#ifndef ENVELOPEFS_VOL_SECTOR_H
#define ENVELOPEFS_VOL_SECTOR_H

#include <stddef.h>
#include <stdint.h>

#include "vol.h"

#define VOL_CHUNK_MAGIC "EVC1"
#define VOL_CHUNK_VERSION 1
#define VOL_CHUNK_HDR 64
#define VOL_SLOT_NONCE 12
#define VOL_SLOT_TAG 16
#define VOL_SLOT_SIZE (4 + VOL_SLOT_NONCE + VOL_SECTOR_SIZE + VOL_SLOT_TAG) /* 4128 */
#define VOL_CHUNK_FILE_SIZE (VOL_CHUNK_HDR + VOL_SECTORS * VOL_SLOT_SIZE)   /* 528448 */

static inline uint64_t vol_slot_offset(unsigned sector) { return VOL_CHUNK_HDR + (uint64_t)sector * VOL_SLOT_SIZE; }

/* The key of one chunk generation: HKDF-SHA256(data key, info "envelopefs vol v1 chunk" ‖ lineage (16)
 * ‖ block u64 LE ‖ gen u64 LE). out is wiped by the caller. */
int vol_chunk_key(const uint8_t dk[32], const uint8_t lineage[VOL_LINEAGE_LEN], uint64_t block, uint64_t gen,
                  uint8_t out[32]) __attribute__((warn_unused_result));

/* Encode / check a chunk header. check: -EBADMSG unless it is exactly the header for these values. */
void vol_chunk_header(uint8_t out[VOL_CHUNK_HDR], const uint8_t lineage[VOL_LINEAGE_LEN], uint64_t block, uint64_t gen);
int vol_chunk_header_check(const uint8_t *hdr, size_t len, const uint8_t lineage[VOL_LINEAGE_LEN], uint64_t block,
                           uint64_t gen) __attribute__((warn_unused_result));

/* A reusable AES-256-GCM context, used by one thread at a time (dev.c: one per request, from a pool). */
typedef struct vol_sealer vol_sealer;
vol_sealer *vol_sealer_new(void);
void vol_sealer_free(vol_sealer *s);

/* Seal sector `sector` of a chunk with write counter ctr (≥ 1) into slot (VOL_SLOT_SIZE bytes):
 * ctr u32 LE ‖ random nonce ‖ ciphertext ‖ tag. AAD = "EVS1" ‖ lineage ‖ block ‖ gen ‖ sector u32 ‖ ctr u32.
 * nonce NULL: random (tests pass a fixed one for golden vectors). */
int vol_sector_seal(vol_sealer *s, const uint8_t key[32], const uint8_t lineage[VOL_LINEAGE_LEN], uint64_t block,
                    uint64_t gen, unsigned sector, uint32_t ctr, const uint8_t *nonce, const uint8_t pt[VOL_SECTOR_SIZE],
                    uint8_t slot[VOL_SLOT_SIZE]) __attribute__((warn_unused_result));

/* Open a slot. min_ctr is the counter the catalog recorded at the last flush: a slot with a smaller
 * counter is a rollback (-EBADMSG). An all-zero slot (a hole) is the never-written sector: zeros,
 * valid only when min_ctr is 0. *ctr_out receives the slot's counter (0 for a hole). */
int vol_sector_open(vol_sealer *s, const uint8_t key[32], const uint8_t lineage[VOL_LINEAGE_LEN], uint64_t block,
                    uint64_t gen, unsigned sector, uint32_t min_ctr, const uint8_t slot[VOL_SLOT_SIZE],
                    uint8_t pt[VOL_SECTOR_SIZE], uint32_t *ctr_out) __attribute__((warn_unused_result));

/* hex (32 digits) ↔ 16 bytes. */
int vol_lineage_bin(const char *hex, uint8_t out[VOL_LINEAGE_LEN]) __attribute__((warn_unused_result));

#endif
