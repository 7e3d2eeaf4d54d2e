/*
 * sector.h — the chunk file format (docs/FORMAT.md "Volume chunk file"): a 64-byte header naming the
 * chunk (lineage, block, generation) and 128 slots, each one 4 KiB sector sealed with AES-256-GCM under
 * the chunk's own key (HKDF of the lineage data key, bound to lineage, block and generation) with the
 * sector number and its write counter in the AAD. Pure functions of their inputs (no I/O).
 * Version 1: one slot per sector, rewritten in place. Version 2 (written since): two slots per sector, in
 * two areas of 128 slots; a sector's write with counter c goes to area vol_slot_area(c) (odd: 0, even: 1),
 * and writers choose counters so that a rewrite never touches the slot holding the last flushed version
 * (docs/DESIGN.md "Power loss"; vol_chunk_sector_open is the reading rule).
 * Error convention: 0 / -errno (-EBADMSG: authentication failed or the slot is not what the catalog
 * says it must be).
 */
#ifndef ENVELOPEFS_VOL_SECTOR_H
#define ENVELOPEFS_VOL_SECTOR_H

#include <stddef.h>
#include <stdint.h>

#include "vol.h"

#define VOL_CHUNK_MAGIC "EVC1"
#define VOL_CHUNK_VERSION 2 /* what writers write; version 1 is still read */
#define VOL_CHUNK_HDR 64
#define VOL_SLOT_NONCE 12
#define VOL_SLOT_TAG 16
#define VOL_SLOT_SIZE (4 + VOL_SLOT_NONCE + VOL_SECTOR_SIZE + VOL_SLOT_TAG)   /* 4128 */
#define VOL_CHUNK_V1_SIZE (VOL_CHUNK_HDR + VOL_SECTORS * VOL_SLOT_SIZE)       /* 528448 */
#define VOL_CHUNK_FILE_SIZE (VOL_CHUNK_HDR + 2 * VOL_SECTORS * VOL_SLOT_SIZE) /* 1056832: v2, the largest */

/* Slot of sector s in area 0 (version 1's only slot) or area 1 (version 2). */
static inline uint64_t vol_slot_offset_at(unsigned sector, unsigned area)
{
    return VOL_CHUNK_HDR + ((uint64_t)area * VOL_SECTORS + sector) * VOL_SLOT_SIZE;
}
static inline uint64_t vol_slot_offset(unsigned sector) { return vol_slot_offset_at(sector, 0); }
/* Version 2: the area a write with counter c goes to (odd counters: 0, so a chunk written once, as every
 * copy-up and upload writes it with counter 1, has only area 0, the size of a version-1 chunk). */
static inline unsigned vol_slot_area(uint32_t c) { return (c & 1u) ^ 1u; }
/* Version 2: the counter of a sector's next write, given its newest counter and the one the catalog
 * recorded at the last flush (fl ≤ newest): the first write after a flush takes fl + 1 (the other area
 * than the flushed version's), later ones newest + 2 (the same area again). */
static inline uint32_t vol_next_ctr(uint32_t newest, uint32_t fl) { return newest == fl ? newest + 1 : newest + 2; }
/* The stored bytes of a chunk (signed manifests hash them): version 2's size when the header says
 * version 2, else version 1's. hdr: VOL_CHUNK_HDR bytes. */
size_t vol_chunk_stored_size(const uint8_t *hdr);

/* The key of one chunk generation: HKDF-SHA256(data key, info "envelopefs vol v1 chunk" ‖ lineage (16)
 * ‖ block u64 LE ‖ gen u64 LE). out is wiped by the caller. */
int vol_chunk_key(const uint8_t dk[32], const uint8_t lineage[VOL_LINEAGE_LEN], uint64_t block, uint64_t gen,
                  uint8_t out[32]) __attribute__((warn_unused_result));

/* Encode / check a chunk header. vol_chunk_header writes VOL_CHUNK_VERSION; _v a given version (tests).
 * check: -EBADMSG unless it is exactly the header of version 1 or 2 for these values; *version (may be
 * NULL) receives which. */
void vol_chunk_header(uint8_t out[VOL_CHUNK_HDR], const uint8_t lineage[VOL_LINEAGE_LEN], uint64_t block, uint64_t gen);
void vol_chunk_header_v(uint8_t out[VOL_CHUNK_HDR], unsigned version, const uint8_t lineage[VOL_LINEAGE_LEN],
                        uint64_t block, uint64_t gen);
int vol_chunk_header_check(const uint8_t *hdr, size_t len, const uint8_t lineage[VOL_LINEAGE_LEN], uint64_t block,
                           uint64_t gen, unsigned *version) __attribute__((warn_unused_result));

/* A reusable AES-256-GCM context, used by one thread at a time (dev.c: one per request, from a pool, and
 * one per cached chunk key). The functions below take the key per call; key NULL means the key last set
 * with vol_sealer_set_key (or passed to an earlier call), whose AES key schedule and GHASH key are then
 * not computed again — only the IV is new (about 1,300 instructions fewer per sector, docs/PERFORMANCE.md).
 * The context holds the expanded key in OpenSSL's heap until it is re-keyed or freed (freeing wipes it). */
typedef struct vol_sealer vol_sealer;
vol_sealer *vol_sealer_new(void);
int vol_sealer_set_key(vol_sealer *s, const uint8_t key[32]) __attribute__((warn_unused_result));
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

/* Open sector `sector` of a chunk of version `version` from its slots: slot0 (area 0; version 1's only
 * slot) and slot1 (area 1; ignored by version 1). fl: the counter the catalog recorded at the last flush;
 * newest: the newest counter known (≥ fl; = fl when nothing newer is known, as after a crash).
 * Version 1: the slot must open with a counter ≥ newest. Version 2: the slot of area vol_slot_area(fl + 1)
 * if it opens with a counter ≥ max(newest, fl + 1) of that area's parity; else, only when newest = fl,
 * the other slot, which must open with exactly fl (a hole when fl is 0). *ctr_out: the counter read. */
int vol_chunk_sector_open(vol_sealer *s, const uint8_t key[32], const uint8_t lineage[VOL_LINEAGE_LEN], uint64_t block,
                          uint64_t gen, unsigned version, unsigned sector, uint32_t fl, uint32_t newest,
                          const uint8_t *slot0, const uint8_t *slot1, uint8_t pt[VOL_SECTOR_SIZE], uint32_t *ctr_out)
    __attribute__((warn_unused_result));
/* Version 2 when the sector's newest version is established (a write of this session, a chunk this
 * session made, or an earlier vol_chunk_sector_open of this session that found it): only the slot that
 * holds it is read — area vol_slot_area(newest) — and it must open with exactly newest (a hole when
 * newest is 0). fl as above (newest ≥ fl). Version 1: as vol_chunk_sector_open (its one slot). A slot
 * rolled back, swapped with the other area's or modified fails (-EBADMSG) as there; the other area is
 * not looked at (what a dead daemon may have left there is no newer version: it would have been found
 * when the version was established). */
int vol_chunk_sector_open_one(vol_sealer *s, const uint8_t key[32], const uint8_t lineage[VOL_LINEAGE_LEN],
                              uint64_t block, uint64_t gen, unsigned version, unsigned sector, uint32_t fl,
                              uint32_t newest, const uint8_t *slot, uint8_t pt[VOL_SECTOR_SIZE], uint32_t *ctr_out)
    __attribute__((warn_unused_result));
/* The same from a whole chunk image in buf (VOL_CHUNK_FILE_SIZE bytes; a version-1 chunk's tail unused). */
static inline int vol_chunk_image_open(vol_sealer *s, const uint8_t key[32], const uint8_t lineage[VOL_LINEAGE_LEN],
                                       uint64_t block, uint64_t gen, unsigned version, unsigned sector, uint32_t fl,
                                       const uint8_t *buf, uint8_t pt[VOL_SECTOR_SIZE], uint32_t *ctr_out)
{
    return vol_chunk_sector_open(s, key, lineage, block, gen, version, sector, fl, fl, buf + vol_slot_offset_at(sector, 0),
                                 buf + vol_slot_offset_at(sector, 1), pt, ctr_out);
}

/* hex (32 digits) ↔ 16 bytes. */
int vol_lineage_bin(const char *hex, uint8_t out[VOL_LINEAGE_LEN]) __attribute__((warn_unused_result));

#endif
