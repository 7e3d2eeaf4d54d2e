/*
 * dev.h — the volume's data path: a byte-addressed device over the block map of one volume. Reads map
 * 512 KiB blocks to chunks (never-written blocks read as zeros and take no space); writes go to the
 * volume's own chunks, copying a chunk shared with a snapshot on its first write (copy-on-write, into a
 * new generation under a new key); flush makes every acknowledged write durable (chunk files, then one
 * catalog transaction); snapshot records a point-in-time snapshot with writes quiesced.
 * Thread safety: every call may come from any thread. Reads and writes of different blocks run in
 * parallel, reads of one block too; a write excludes other I/O on its block only; flush and snapshot wait
 * for the requests in progress and hold new ones back only while they commit (lock order: dev.c).
 * Error convention: 0 / -errno (-EIO: a sector failed authentication; logged with block and sector).
 */
#ifndef ENVELOPEFS_VOL_DEV_H
#define ENVELOPEFS_VOL_DEV_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "catalog.h"
#include "chunkstore.h"
#include "vol.h"

typedef struct vol_dev vol_dev;

/* binding_hex: the lineage's sector binding (vol_lineage.binding). cat and cs are borrowed: cat is used by
 * one thread at a time (under the device's catalog lock; the caller must not use it while calls of the
 * device run), cs from any thread (chunkstore.h); dk (32 bytes) is copied into locked memory and wiped by
 * vol_dev_free. */
int vol_dev_open(vol_catalog *cat, vol_chunkstore *cs, const vol_volume *v, const char *binding_hex,
                 const uint8_t dk[32], vol_dev **out) __attribute__((warn_unused_result));
/* Wipes the key; does not flush (call vol_dev_flush first). NULL is a no-op. */
void vol_dev_free(vol_dev *d);
uint64_t vol_dev_size(const vol_dev *d);
int vol_dev_read(vol_dev *d, void *buf, size_t n, uint64_t off) __attribute__((warn_unused_result));
int vol_dev_write(vol_dev *d, const void *buf, size_t n, uint64_t off) __attribute__((warn_unused_result));
/* Whole 512 KiB blocks in the range are unmapped (their chunks freed at the next flush); partial ones
 * are zeroed. */
int vol_dev_discard(vol_dev *d, uint64_t off, uint64_t len) __attribute__((warn_unused_result));
int vol_dev_flush(vol_dev *d) __attribute__((warn_unused_result));
/* Quiesce, flush, record the snapshot in one catalog transaction; later writes copy on write. */
int vol_dev_snapshot(vol_dev *d, const char *description, const char *tags, vol_snapshot *out,
                     vol_err *e) __attribute__((warn_unused_result));
/* Lazy rekey: the data key of another lineage (binding_hex) whose chunks the volume's map still names;
 * those blocks are read with it and copied up into the volume's own lineage on their first write.
 * Copied into locked memory. */
int vol_dev_add_key(vol_dev *d, const char *binding_hex, const uint8_t dk[32]) __attribute__((warn_unused_result));
/* Test hook: the seal count after which a chunk moves to a fresh generation (default VOL_SEAL_LIMIT). */
void vol_dev_set_seal_limit(vol_dev *d, uint64_t limit);
/* The previous session of this volume ended without its last flush (a daemon killed): the first write to
 * each chunk it may have written moves the chunk to a fresh generation (its key's seal count is not exact). */
void vol_dev_set_unclean(vol_dev *d);

/* Verify every sector of every chunk that owner's block map names (a volume or a snapshot), printing
 * one line per damaged block to out. 0 all well, 1 damage found, -errno could not run. */
int vol_check(vol_catalog *cat, vol_chunkstore *cs, const char *owner, const char *lineage_hex,
              const uint8_t dk[32], FILE *out) __attribute__((warn_unused_result));
/* The same with a key per chunk lineage (a volume or snapshot part-way through a rekey). */
int vol_check_keys(vol_catalog *cat, vol_chunkstore *cs, const char *owner, const vol_keyring *keys, FILE *out)
    __attribute__((warn_unused_result));

#endif
