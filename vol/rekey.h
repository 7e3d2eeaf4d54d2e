/*
 * rekey.h — volumes restored under another key than their snapshot's (lazy rekey): the key ring of a
 * block map (its own lineage's key and each source lineage's key its map still names), the data path
 * opened with it, the rekey status, and `volume rekey`, which moves every block still on another
 * lineage into the volume's own (docs/DESIGN.md "Volumes and snapshots", lazy rekey).
 * Error convention: 0 / -errno with a vol_err holding EC2's (or the key service's) error code.
 */
#ifndef ENVELOPEFS_VOL_REKEY_H
#define ENVELOPEFS_VOL_REKEY_H

#include <stdbool.h>
#include <stdint.h>

#include "dev.h"
#include "sector.h"
#include "store.h"
#include "vol.h"

/* The keys that open every chunk owner's (a volume's or a snapshot's) block map names: k[0] its own
 * lineage's (lineage_id), then each source lineage (catalog source_list) whose binding the map still
 * names. Every key is unwrapped through the key service: a disabled or pending-deletion key refuses with
 * the key service's error (KMS.DisabledException, ...). out is cleared with vol_keyring_clear. */
int vol_owner_keys(vol_store *st, const char *owner, const char *lineage_id, vol_keyring *out, vol_err *e)
    __attribute__((warn_unused_result));

/* The same with the owner's own lineage's data key already unwrapped by the caller (own_dk, 32 bytes,
 * copied: e.g. decrypted under the attachment's grant); only the source lineages are unwrapped here. */
int vol_owner_keys_from(vol_store *st, const char *owner, const char *lineage_id, const uint8_t *own_dk,
                        vol_keyring *out, vol_err *e) __attribute__((warn_unused_result));

/* The one data key that opens owner's chunks bound to `binding` (its own lineage's or a source's). */
int vol_binding_key(vol_store *st, const char *owner, const char *lineage_id, const char *binding, kmsc_secret **dk,
                    vol_err *e) __attribute__((warn_unused_result));

/* vol_dev_open with every key of ring (k[0] the volume's own). */
int vol_dev_open_keys(vol_catalog *cat, vol_chunkstore *cs, const vol_volume *v, const vol_keyring *ring, vol_dev **out)
    __attribute__((warn_unused_result));

typedef struct vol_rekey_status {
    uint64_t blocks;          /* mapped blocks */
    uint64_t foreign;         /* of those, on another lineage than the owner's own (still to rekey) */
    unsigned lineages;        /* distinct lineages the map names */
} vol_rekey_status;
/* Count owner's blocks by lineage (binding = the owner's own lineage's binding). No key needed. */
int vol_rekey_status_of(vol_catalog *cat, const char *owner, const char *binding, vol_rekey_status *out)
    __attribute__((warn_unused_result));

/* Progress (and a test hook): after each batch's chunks are written and synced (committed false) and
 * after its transaction (committed true). Non-zero stops the rekey with that value (-errno). */
typedef int (*vol_rekey_fn)(void *arg, uint64_t done, uint64_t total, bool committed);

/* `volume rekey`: re-seal every block of volume_id still on another lineage into new chunks of the
 * volume's own lineage, batch blocks per transaction (0: 256). Each new chunk is synced before the
 * transaction that moves its map row; a kill at any point leaves the volume readable (old rows, orphan
 * files for vol_sweep) and a rerun continues. Refuses while the volume is attached (VolumeInUse). Once
 * no block is left on another lineage, the volume's source lineages are forgotten: their keys can be
 * disabled. *moved (may be NULL): blocks moved by this run. */
int vol_rekey_volume(vol_store *st, const char *volume_id, uint64_t batch, vol_rekey_fn fn, void *arg, uint64_t *moved,
                     vol_err *e) __attribute__((warn_unused_result));

/* Re-seal one chunk from a source lineage/key (read from scs) into a new generation of a destination
 * lineage/key (written to cs: one chunk-store write per run of written sectors, the header with the
 * first; not synced — the caller syncs a batch with sync_many before any row names it) (copy.c; shared by
 * copy-snapshot and rekey). k: the source's catalog row on entry, the new chunk's row (lineage left to the
 * caller) on return. buf: VOL_CHUNK_FILE_SIZE bytes; pt: one sector (wiped on success). s[0] opens and
 * s[1] seals, each keyed once per chunk (sector.h: key NULL for the sectors after the first). */
int vol_reseal(vol_chunkstore *scs, vol_chunkstore *cs, vol_sealer *s[2], const uint8_t *sdk, const uint8_t slin[16],
               const uint8_t *ddk, const uint8_t dlin[16], vol_chunk *k, uint64_t ngen, uint8_t *buf, uint8_t *pt)
    __attribute__((warn_unused_result));

/* Write a new chunk gen (version 2, every sector at counter 1 in area 0) from its image buf: the header
 * (VOL_CHUNK_HDR bytes) then area 0's slots at their offsets; sector i is written when ctr[i] != 0, a hole
 * otherwise. One chunk-store write per run of written sectors, the header included in the first when
 * sector 0 is written (a full chunk: one write). Not synced. */
int vol_chunk_write_image(vol_chunkstore *cs, uint64_t gen, const uint8_t *buf, const uint32_t ctr[VOL_SECTORS])
    __attribute__((warn_unused_result));

#endif
