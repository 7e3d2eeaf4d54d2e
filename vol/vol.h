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

/* New random id: prefix ("vol-", "snap-") + 17 lowercase hex digits. */
int vol_new_id(const char *prefix, char *out, size_t cap) __attribute__((warn_unused_result));
/* Is s a well-formed id with this prefix? */
bool vol_id_valid(const char *prefix, const char *s);

#endif
