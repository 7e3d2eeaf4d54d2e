/*
 * vol.h — shared types and constants of the volume layer (vol/): EBS-style encrypted volumes and
 * snapshots stored as 512 KiB chunks of authenticated 4 KiB sectors. The catalog (catalog.h) and the
 * chunk store (chunkstore.h) sit behind small interfaces so other backends can replace them.
 * Error convention: 0 / -errno everywhere in vol/; control-plane calls also fill a vol_err with the EC2
 * error code the CLI prints.
 */
#ifndef ENVELOPEFS_VOL_H
#define ENVELOPEFS_VOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VOL_BLOCK_SIZE (512u * 1024u)           /* EBS's block: one chunk per written block */
#define VOL_SECTOR_SIZE 4096u
#define VOL_SECTORS (VOL_BLOCK_SIZE / VOL_SECTOR_SIZE) /* 128 */
#define VOL_MAX_GIB 65536u                       /* 64 TiB */
#define VOL_ID_LEN 21                            /* "vol-" + 17 hex; "snap-" + 17 hex is 22 */
#define VOL_LINEAGE_LEN 16                       /* raw bytes; 32 hex in the catalog */
#define VOL_MAX_PENDING 5                        /* pending snapshots per volume */
/* A chunk generation's key seals at most this many sectors before the chunk moves to a new
 * generation (and key): far below the 2^32 random-nonce bound for AES-GCM (docs/DESIGN.md). */
#define VOL_SEAL_LIMIT (1ull << 31)

/* EC2 error code and message for the CLI (filled by failing control-plane calls). */
typedef struct vol_err {
    char code[112];
    char message[384];
} vol_err;
/* Fill e (may be NULL) and return rc (a -errno). */
int vol_fail(vol_err *e, int rc, const char *code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* A lineage: one data key shared by a volume, its snapshots and volumes restored from them. */
typedef struct vol_lineage {
    char id[2 * VOL_LINEAGE_LEN + 1];  /* hex: the record's id */
    char binding[2 * VOL_LINEAGE_LEN + 1]; /* hex: bound into every sector (= id, except for a rewrapped copy,
                                            * which keeps its source's data key and binding) */
    char key_arn[256];                 /* the KMS key protecting the data key */
    char ctx_id[32];                   /* the "aws:ebs:id" the data key was generated for */
    uint8_t *wrapped;                  /* KMS CiphertextBlob (malloc'd by getters; vol_lineage_clear) */
    size_t wrapped_len;
    int64_t created;
} vol_lineage;
void vol_lineage_clear(vol_lineage *l);

typedef struct vol_volume {
    char id[32];
    uint64_t size_gib;
    char lineage[2 * VOL_LINEAGE_LEN + 1];
    char snapshot_id[32];    /* restored from, or "" */
    int64_t created;
    char *tags;              /* JSON array text of {"Key","Value"}, or NULL; malloc'd by getters */
    char owner[16];          /* owner account; "" in rows from before owners were recorded (then the
                              * account of the lineage's key: vol_owner_of) */
} vol_volume;
void vol_volume_clear(vol_volume *v);

typedef struct vol_snapshot {
    char id[32];
    char volume_id[32];
    uint64_t volume_size;    /* GiB */
    char lineage[2 * VOL_LINEAGE_LEN + 1];
    char state[16];          /* pending | completed | error */
    char *description;       /* malloc'd or NULL */
    int64_t started;
    int64_t completed;
    char *tags;              /* JSON array text or NULL */
    char owner[16];          /* owner account, as vol_volume.owner */
} vol_snapshot;
void vol_snapshot_clear(vol_snapshot *s);

/* One stored chunk: the sealed contents of one 512 KiB block in one lineage. `gen` is unique in the
 * store and never reused: it names the chunk file and is bound (with lineage and block) into the
 * chunk's key. ctr[s] is sector s's write counter as of the last flush (0 = never written: zeros). */
typedef struct vol_chunk {
    uint64_t gen;
    char lineage[2 * VOL_LINEAGE_LEN + 1];
    uint64_t block;
    int64_t refs;            /* block-map rows (volumes and snapshots) that point at it */
    uint64_t seals;          /* sectors sealed under this generation's key so far */
    uint32_t ctr[VOL_SECTORS];
} vol_chunk;

/* The data keys that open the chunks one block map names, by sector binding. A volume restored under
 * another key than its snapshot's (lazy rekey) needs its own lineage's key and, until `volume rekey`
 * has moved every block, the key of each source lineage its map still names. k[0] is the owner's own. */
typedef struct vol_key {
    char binding[2 * VOL_LINEAGE_LEN + 1];
    char lineage[2 * VOL_LINEAGE_LEN + 1];  /* the lineage record the key was unwrapped from */
    uint8_t *dk;                            /* 32 bytes, locked memory (sodium_malloc) */
} vol_key;
typedef struct vol_keyring {
    vol_key *k;
    size_t n;
} vol_keyring;
/* Add a copy of dk (32 bytes) for binding (hex) and lineage. 0 / -ENOMEM / -EINVAL. */
int vol_keyring_add(vol_keyring *r, const char *binding, const char *lineage, const uint8_t *dk)
    __attribute__((warn_unused_result));
/* The key for binding, or NULL. */
const uint8_t *vol_keyring_find(const vol_keyring *r, const char *binding);
/* Wipe and free every key (r itself is the caller's); r is left empty. */
void vol_keyring_clear(vol_keyring *r);

/* A list of block mappings (block index → chunk generation) collected from a catalog listing: pass
 * vol_blocks_add as the vol_map_fn with the list as its argument. vol_blocks_clear frees it (left empty). */
typedef struct vol_blocks {
    uint64_t *block, *gen;
    size_t n, cap;
} vol_blocks;
int vol_blocks_add(void *list, uint64_t block, uint64_t gen); /* 0 / -ENOMEM */
void vol_blocks_clear(vol_blocks *b);

/* New random id: prefix ("vol-", "snap-") + 17 lowercase hex digits. */
int vol_new_id(const char *prefix, char *out, size_t cap) __attribute__((warn_unused_result));
/* Is s a well-formed id with this prefix? */
bool vol_id_valid(const char *prefix, const char *s);

#endif
