/*
 * chunkstore.h — where chunk bytes live, behind a small interface (a vtable and an opaque handle) so a
 * backend other than local files (S3 objects, say) can replace chunkstore_file.c. A chunk is named by
 * its generation (unique in the store); its bytes are the chunk file format of sector.h. The store
 * knows nothing of keys or of the catalog.
 * Error convention: 0 / -errno. Thread safety: every call may come from any thread.
 */
#ifndef ENVELOPEFS_VOL_CHUNKSTORE_H
#define ENVELOPEFS_VOL_CHUNKSTORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct vol_chunkstore vol_chunkstore;

typedef struct vol_chunkstore_ops {
    void (*close)(vol_chunkstore *cs);
    /* Read up to n bytes at off; bytes past the end of what is stored read as zeros. -ENOENT: no chunk. */
    int (*pread)(vol_chunkstore *cs, uint64_t gen, void *buf, size_t n, uint64_t off);
    /* Write n bytes at off, creating the chunk if needed (not yet durable). */
    int (*pwrite)(vol_chunkstore *cs, uint64_t gen, const void *buf, size_t n, uint64_t off);
    /* Make the chunk's bytes and its existence durable. */
    int (*sync)(vol_chunkstore *cs, uint64_t gen);
    /* The same for n chunks at once (a batch of a copy or rekey): on return 0 every one is durable; on an
     * error, any may not be. A backend may overlap the work (start every write-back, then wait). */
    int (*sync_many)(vol_chunkstore *cs, const uint64_t *gens, size_t n);
    /* Remove the chunk (no error if absent). */
    int (*remove)(vol_chunkstore *cs, uint64_t gen);
    /* Call fn for every stored chunk; fn returning non-zero stops (and is returned). */
    int (*list)(vol_chunkstore *cs, int (*fn)(void *arg, uint64_t gen), void *arg);
    /* Bytes of storage used (allocated), for statistics and tests. */
    int64_t (*bytes_used)(vol_chunkstore *cs);
} vol_chunkstore_ops;

struct vol_chunkstore {
    const vol_chunkstore_ops *ops;
};

/* Local files: one file per chunk, DIR/<2 hex>/<16 hex of gen> (sparse: unwritten sectors are holes).
 * dir is created (0700) if missing. */
int vol_chunkstore_file_open(const char *dir, vol_chunkstore **out) __attribute__((warn_unused_result));
/* Read only (another region's chunks, read by copy-snapshot): nothing is created; pwrite, sync and remove
 * are -EROFS. */
int vol_chunkstore_file_open_ro(const char *dir, vol_chunkstore **out) __attribute__((warn_unused_result));
/* The path of a chunk's file in a file store (for fsck messages and tests); malloc'd. */
char *vol_chunkstore_file_path(const char *dir, uint64_t gen);

static inline void vol_chunkstore_close(vol_chunkstore *cs)
{
    if (cs)
        cs->ops->close(cs);
}

#endif
