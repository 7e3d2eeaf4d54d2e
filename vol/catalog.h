/*
 * catalog.h — the volume catalog behind a small interface (a vtable and an opaque handle), so that a
 * server database (PostgreSQL) can replace catalog_sqlite.c: volumes, snapshots, lineages (wrapped data
 * keys), owners and snapshot sharing, block maps (owner = a volume or snapshot id, 512 KiB block index → chunk generation), chunks
 * (reference counts, per-sector write counters) and settings. Schema: docs/FORMAT.md "Volume catalog".
 *
 * Transactions: begin/commit/rollback bracket several calls atomically (begin takes the write lock at
 * once). Calls outside a transaction are each atomic on their own.
 * Error convention: 0 / -errno (-ENOENT: no such row; -EEXIST: the row exists; -EPROTO: a catalog written
 * by a newer format; -EIO: database failure). Getters fill caller structs whose malloc'd members are
 * released with the vol_*_clear functions of vol.h. One handle is used by one thread at a time.
 */
#ifndef ENVELOPEFS_VOL_CATALOG_H
#define ENVELOPEFS_VOL_CATALOG_H

#include <stdbool.h>
#include <stdint.h>

#include "manifest.h"
#include "vol.h"

/* 1: the first format; 2: a catalog with lazy-rekey sources (owner_lineages rows), written from the
 * first source_add on, so that a program that predates them refuses it. */
#define VOL_CATALOG_FORMAT 2

typedef struct vol_catalog vol_catalog;

typedef int (*vol_volume_fn)(void *arg, const vol_volume *v);
typedef int (*vol_snapshot_fn)(void *arg, const vol_snapshot *s);
typedef int (*vol_map_fn)(void *arg, uint64_t block, uint64_t gen);
typedef int (*vol_gen_fn)(void *arg, uint64_t gen);
typedef int (*vol_text_fn)(void *arg, const char *text);
typedef int (*vol_binding_fn)(void *arg, const char *binding, uint64_t blocks);

/* Where a copied snapshot came from (copy-snapshot), for EBS's incremental rule: a copy shares the blocks
 * its source has unchanged since the source of an earlier copy (`base`) of the same volume. */
typedef struct vol_copy_rec {
    char snapshot[32];         /* the copy: a snapshot of this catalog */
    char source_region[64];    /* the source's region ("" when unnamed: this store) */
    char source_snapshot[32];
    char source_volume[32];    /* the source snapshot's volume */
    char base[32];             /* the earlier copy whose chunks it shares, or "" (a full copy) */
    uint64_t blocks_copied;    /* blocks re-sealed by this copy */
    uint64_t blocks_shared;    /* blocks shared with base (or with the source, for copies that copy no data) */
    int64_t created;
} vol_copy_rec;
typedef int (*vol_copy_fn)(void *arg, const vol_copy_rec *r);

/* A copy under another key while it runs (table copy_progress): its snapshot row is `pending` and its
 * block map holds the blocks recorded so far, batch by batch in ascending block order, so it is always
 * the source's blocks below next_block. rec is what `copies` gets at completion (blocks_copied and
 * blocks_shared so far); the row is dropped in the transaction that records the last block. */
typedef struct vol_copy_progress {
    vol_copy_rec rec;
    char key_arn[256];         /* the destination key (the copy's lineage's) */
    bool local;                /* the source is in this store (its deletion is refused while this runs) */
    uint64_t blocks_total;     /* the source's blocks */
    uint64_t blocks_done;      /* recorded so far (copied + shared) */
    uint64_t next_block;       /* the source's blocks below it are recorded */
    uint64_t runs;             /* copy-snapshot runs that worked on it (1 + resumes) */
    int64_t updated;
} vol_copy_progress;
typedef int (*vol_progress_fn)(void *arg, const vol_copy_progress *p);
typedef int (*vol_account_fn)(void *arg, const char *account);

typedef struct vol_catalog_ops {
    void (*close)(vol_catalog *c);
    int (*begin)(vol_catalog *c);
    int (*commit)(vol_catalog *c);
    void (*rollback)(vol_catalog *c);

    int (*setting_get)(vol_catalog *c, const char *key, char **value);   /* *value malloc'd; -ENOENT */
    int (*setting_set)(vol_catalog *c, const char *key, const char *value);
    int (*setting_delete)(vol_catalog *c, const char *key);               /* no error if absent */

    int (*lineage_put)(vol_catalog *c, const vol_lineage *l);             /* -EEXIST */
    int (*lineage_get)(vol_catalog *c, const char *id, vol_lineage *out);

    int (*volume_put)(vol_catalog *c, const vol_volume *v);               /* insert; -EEXIST */
    int (*volume_get)(vol_catalog *c, const char *id, vol_volume *out);
    int (*volume_delete)(vol_catalog *c, const char *id);
    int (*volume_list)(vol_catalog *c, vol_volume_fn fn, void *arg);      /* by creation time */

    int (*snapshot_put)(vol_catalog *c, const vol_snapshot *s);           /* insert or replace */
    int (*snapshot_get)(vol_catalog *c, const char *id, vol_snapshot *out);
    int (*snapshot_delete)(vol_catalog *c, const char *id);
    int (*snapshot_list)(vol_catalog *c, vol_snapshot_fn fn, void *arg);  /* by start time */
    int (*snapshot_pending)(vol_catalog *c, const char *volume_id, int *count);

    int (*map_get)(vol_catalog *c, const char *owner, uint64_t block, uint64_t *gen);   /* -ENOENT */
    int (*map_set)(vol_catalog *c, const char *owner, uint64_t block, uint64_t gen);
    int (*map_del)(vol_catalog *c, const char *owner, uint64_t block);
    int (*map_list)(vol_catalog *c, const char *owner, vol_map_fn fn, void *arg);       /* ascending blocks */
    /* Give `to` every mapping of `from` (to must have none) and add one reference to each chunk. */
    int (*map_copy)(vol_catalog *c, const char *from, const char *to);
    /* Remove every mapping of owner, dropping one reference per chunk; fn (may be NULL) gets each
     * chunk whose count fell to 0 (the caller deletes its row and then its bytes). */
    int (*map_drop)(vol_catalog *c, const char *owner, vol_gen_fn fn, void *arg);

    int (*chunk_put)(vol_catalog *c, const vol_chunk *k);                 /* insert or replace */
    int (*chunk_get)(vol_catalog *c, uint64_t gen, vol_chunk *out);
    int (*chunk_ref)(vol_catalog *c, uint64_t gen, int delta, int64_t *refs_after);
    int (*chunk_delete)(vol_catalog *c, uint64_t gen);
    int (*chunk_list)(vol_catalog *c, vol_gen_fn fn, void *arg);
    /* Blocks put into a pending snapshot through the EBS direct API, with their SHA-256 (for
     * CompleteSnapshot's count and LINEAR checksum). */
    int (*put_set)(vol_catalog *c, const char *snapshot, uint64_t block, const uint8_t sha256[32]);
    int (*put_list)(vol_catalog *c, const char *snapshot, int (*fn)(void *arg, uint64_t block, const uint8_t *sha256),
                    void *arg);                                           /* ascending blocks */
    int (*put_drop)(vol_catalog *c, const char *snapshot);
    /* Reserve n fresh generations: [*first, *first + n). Never handed out twice, even across crashes. */
    int (*gen_reserve)(vol_catalog *c, uint64_t n, uint64_t *first);

    /* Lazy rekey (table owner_lineages): the lineages besides its own whose data keys open chunks an
     * owner's block map may still name (a volume restored under another key, and its snapshots).
     * map_copy copies them along with the mappings; map_drop drops them. */
    int (*source_add)(vol_catalog *c, const char *owner, const char *lineage);        /* no error if present */
    int (*source_list)(vol_catalog *c, const char *owner, vol_text_fn fn, void *arg);
    int (*source_drop)(vol_catalog *c, const char *owner);
    /* Each distinct chunk lineage (binding) that owner's map names, with its number of blocks. */
    int (*map_bindings)(vol_catalog *c, const char *owner, vol_binding_fn fn, void *arg);
    /* owner's mappings at blocks ≥ from whose chunk is not bound to `binding`, ascending, at most limit
     * (0: all). */
    int (*map_foreign)(vol_catalog *c, const char *owner, const char *binding, uint64_t from, uint64_t limit,
                       vol_map_fn fn, void *arg);
    /* Copies (table `copies`, added to older catalogs on open): record one (-EEXIST), get one (-ENOENT),
     * list those of one source region and volume (newest first). A deleted snapshot's record goes with it. */
    int (*copy_put)(vol_catalog *c, const vol_copy_rec *r);
    int (*copy_get)(vol_catalog *c, const char *snapshot, vol_copy_rec *out);
    int (*copy_list)(vol_catalog *c, const char *source_region, const char *source_volume, vol_copy_fn fn, void *arg);
    /* A snapshot's createVolumePermission: the accounts it is shared with (table
     * create_volume_permissions). add is idempotent; remove of an absent account is no error. */
    int (*perm_add)(vol_catalog *c, const char *snapshot, const char *account);
    int (*perm_remove)(vol_catalog *c, const char *snapshot, const char *account);
    int (*perm_list)(vol_catalog *c, const char *snapshot, vol_account_fn fn, void *arg); /* ascending */
    int (*perm_has)(vol_catalog *c, const char *snapshot, const char *account, bool *has);
    int (*perm_clear)(vol_catalog *c, const char *snapshot);

    /* Signed snapshots (tables snapshot_signatures and snapshot_block_digests, docs/FORMAT.md; an older
     * catalog gains them empty when opened; snapshot_delete drops a snapshot's rows in both). */
    int (*sig_put)(vol_catalog *c, const vol_signature *s);                          /* insert or replace */
    int (*sig_get)(vol_catalog *c, const char *snapshot, vol_signature *out);        /* -ENOENT: unsigned */
    /* The per-block chunk digests the signed manifest's block-map digest was computed over. */
    int (*digest_put)(vol_catalog *c, const char *snapshot, uint64_t block, const uint8_t sha256[32]);
    int (*digest_drop)(vol_catalog *c, const char *snapshot);
    int (*digest_list)(vol_catalog *c, const char *snapshot,
                       int (*fn)(void *arg, uint64_t block, const uint8_t *sha256), void *arg); /* ascending */

    /* Copies in progress (table copy_progress, added to older catalogs on open; a read-only catalog
     * without it has none): insert or replace, get (-ENOENT), list those of one source snapshot (oldest
     * first), drop (no error if absent). snapshot_delete drops a snapshot's row. */
    int (*progress_put)(vol_catalog *c, const vol_copy_progress *p);
    int (*progress_get)(vol_catalog *c, const char *snapshot, vol_copy_progress *out);
    int (*progress_list)(vol_catalog *c, const char *source_snapshot, vol_progress_fn fn, void *arg);
    int (*progress_drop)(vol_catalog *c, const char *snapshot);
    /* owner's mappings with from <= block, ascending, at most limit (0: all): a page of a block map. */
    int (*map_page)(vol_catalog *c, const char *owner, uint64_t from, uint64_t limit, vol_map_fn fn, void *arg);
    int (*map_count)(vol_catalog *c, const char *owner, uint64_t *n);
} vol_catalog_ops;

struct vol_catalog {
    const vol_catalog_ops *ops;
};

/* SQLite: PATH (created 0600 with the schema if missing; WAL; a newer format is -EPROTO). */
int vol_catalog_sqlite_open(const char *path, vol_catalog **out) __attribute__((warn_unused_result));
/* SQLite, read only (another region's catalog, read by copy-snapshot): nothing is created or written. */
int vol_catalog_sqlite_open_ro(const char *path, vol_catalog **out) __attribute__((warn_unused_result));
/* The format PATH's catalog says it is (meta.format), read without creating, locking or changing anything
 * (SQLite's immutable open): > 0, or -errno (-ENOENT: no format row). For the error an open that returned
 * -EPROTO reports. */
int vol_catalog_sqlite_format(const char *path) __attribute__((warn_unused_result));

static inline void vol_catalog_close(vol_catalog *c)
{
    if (c)
        c->ops->close(c);
}

#endif
