/*
 * store.h — the volume store and its control plane: a directory (by default STORE/volumes beside the key
 * store) holding the catalog (catalog.db), the chunk files (chunks/) and the attach state (run/), plus the
 * EC2-shaped operations on it: create, describe and delete volumes and snapshots, the default key.
 * Keys go through kmsclient only (any backend). Each failing call returns -errno and fills a vol_err
 * with EC2's error code.
 */
#ifndef ENVELOPEFS_VOL_STORE_H
#define ENVELOPEFS_VOL_STORE_H

#include <stdbool.h>
#include <sys/types.h>

#include "envelopefs/kmsclient.h"
#include "catalog.h"
#include "chunkstore.h"
#include "vol.h"

typedef struct vol_store vol_store;

/* Open (creating) the store in dir. kms is borrowed (may be NULL for calls that need no key). */
int vol_store_open(const char *dir, kmsc *kms, vol_store **out, vol_err *e) __attribute__((warn_unused_result));
/* Open another region's store read only (for copy-snapshot --source-region): nothing is created or
 * written, no lock is taken. */
int vol_store_open_ro(const char *dir, kmsc *kms, vol_store **out, vol_err *e) __attribute__((warn_unused_result));
void vol_store_free(vol_store *st);
vol_catalog *vol_store_catalog(vol_store *st);
vol_chunkstore *vol_store_chunks(vol_store *st);
const char *vol_store_dir(vol_store *st);
kmsc *vol_store_kms(vol_store *st);
/* The caller's account as the key service tells it (kmsc_caller_account; asked once, then kept). ""
 * without a key service (then every row is the caller's, as before owners); VOL_ACCOUNT_UNKNOWN when
 * the service would not say (fail closed: such a caller owns and sees nothing). */
#define VOL_ACCOUNT_UNKNOWN "unknown"
const char *vol_store_account(vol_store *st);
/* The owner to record for what this handle creates: the caller's account, or "" when unknown (then its
 * key's account owns it). */
const char *vol_store_owner(vol_store *st);

typedef struct vol_create_args {
    uint64_t size_gib;          /* 0: the snapshot's size */
    const char *snapshot_id;    /* NULL: a new, empty volume */
    const char *kms_key_id;     /* NULL: the default key */
    const char *tags;           /* JSON array text of {"Key","Value"}, or NULL */
} vol_create_args;

int vol_create_volume(vol_store *st, const vol_create_args *a, vol_volume *out, vol_err *e) __attribute__((warn_unused_result));
int vol_delete_volume(vol_store *st, const char *id, vol_err *e) __attribute__((warn_unused_result));
/* A snapshot of a volume: point in time. An attached volume's daemon takes it (control socket). */
int vol_create_snapshot(vol_store *st, const char *volume_id, const char *description, const char *tags,
                        vol_snapshot *out, vol_err *e) __attribute__((warn_unused_result));
int vol_delete_snapshot(vol_store *st, const char *id, vol_err *e) __attribute__((warn_unused_result));

/* Record a snapshot of owner's current block map in one transaction (shared by the CLI and the attach
 * daemon, which flushes first). s->id is filled in; state pending, then completed. */
int vol_snapshot_record(vol_catalog *cat, const vol_volume *v, const char *description, const char *tags,
                        vol_snapshot *out, vol_err *e) __attribute__((warn_unused_result));

/* The key of a volume or snapshot (its lineage's key ARN) and the lineage record. */
int vol_lineage_of(vol_store *st, const char *lineage_id, vol_lineage *out, vol_err *e) __attribute__((warn_unused_result));
/* Decrypt a lineage's data key (context {"aws:ebs:id": ctx_id}); *dk in locked memory (kmsc_secret_free). */
int vol_lineage_key(vol_store *st, const vol_lineage *l, kmsc_secret **dk, vol_err *e) __attribute__((warn_unused_result));

/* The default key: the ARN of modify-ebs-default-kms-key-id's key, or of alias/aws/ebs (created on first
 * use). create: make alias/aws/ebs's key if missing. Both are the caller's account's own settings. */
int vol_default_key(vol_store *st, bool create, char **arn, vol_err *e) __attribute__((warn_unused_result));
/* What get-ebs-default-kms-key-id prints (an ARN; alias/aws/ebs's alias ARN when unchanged). */
int vol_default_key_id(vol_store *st, char **out, vol_err *e) __attribute__((warn_unused_result));
int vol_modify_default_key(vol_store *st, const char *key_id, char **arn, vol_err *e) __attribute__((warn_unused_result));
/* The key this store made for the caller's alias/aws/ebs (recorded per account; no key-service call):
 * *arn malloc'd, -ENOENT when none. */
int vol_managed_key_arn(vol_store *st, char **arn) __attribute__((warn_unused_result));

/* Attachment (run/VOL.lock held by the daemon; run/VOL.json describes it). */
bool vol_is_attached(vol_store *st, const char *volume_id);
/* The attachment's JSON text (malloc'd) or NULL when not attached. */
char *vol_attachment_info(vol_store *st, const char *volume_id);
char *vol_run_path(vol_store *st, const char *volume_id, const char *suffix);
/* Take the volume's lock (exclusive, non-blocking): fd ≥ 0, or -EBUSY when attached. */
int vol_lock_volume(vol_store *st, const char *volume_id) __attribute__((warn_unused_result));
/* Shared lock on run/store.lock held by every attach daemon; the orphan sweep needs it exclusively. */
int vol_store_lock_shared(vol_store *st) __attribute__((warn_unused_result));

/* Delete chunk files no catalog row names and chunk rows no map references (only when nothing is
 * attached; returns 0 and does nothing otherwise). *freed (may be NULL): files removed. */
int vol_sweep(vol_store *st, int *freed) __attribute__((warn_unused_result));

/* copy-snapshot: kms_key_id NULL or the source's key → shares the chunks; another key → a full copy
 * re-encrypted under a new data key (context {"aws:ebs:id": the new snapshot}); rewrap_only (another key
 * required) → the source's data key re-wrapped under kms_key_id (ReEncrypt, context the new snapshot),
 * the chunks shared: constant time. A full copy is `pending` while it runs and `completed` only in the
 * transaction that records its last block; rerun after an interruption, it resumes (see copy.c). */
int vol_copy_snapshot(vol_store *st, const char *src_id, const char *kms_key_id, bool rewrap_only,
                      const char *description, vol_snapshot *out, vol_err *e) __attribute__((warn_unused_result));
/* copy-snapshot in general: from this store or another region's (src, opened with vol_store_open_ro). */
typedef struct vol_copy_args {
    const char *src_id;
    const char *kms_key_id;      /* NULL: the source's key (same store) or this region's default key (another) */
    bool rewrap_only;            /* same store only */
    const char *description;     /* NULL: none (same store), "[Copied SNAP from REGION]" (another) */
    vol_store *src;              /* the source region's store; NULL: st itself */
    const char *src_region;      /* the source region's name (messages) */
    /* The source region's key service (borrowed; NULL: unreachable, the callback says why), asked for
     * only when the source's data key cannot be opened here (a multi-Region key with a replica here can). */
    kmsc *(*src_kms)(void *arg);
    void *src_kms_arg;
    /* Called after each block copied (may be NULL): a progress line on a terminal. */
    void (*progress)(void *arg, uint64_t done, uint64_t total);
    void *progress_arg;
    /* Called (may be NULL; with progress_arg) when this run resumes an interrupted copy: its id, the blocks
     * already recorded and the source's blocks. */
    void (*resumed)(void *arg, const char *snapshot, uint64_t done, uint64_t total);
    /* Blocks recorded per catalog transaction by a copy under another key (0: VOL_COPY_BATCH). */
    uint64_t batch;
} vol_copy_args;
/* A copy under another key records its blocks in batches of this many (at most 32 MiB of data each). */
#define VOL_COPY_BATCH 64
/* The lock of a copy in progress (run/SNAP.lock, exclusive, held by its copier for its life; the file holds
 * the copier's pid): fd >= 0, or -EBUSY when its copier is alive (*holder: its pid, 0 if unknown). */
int vol_copy_lock(vol_store *st, const char *snapshot_id, long *holder) __attribute__((warn_unused_result));
/* Release it; remove: the copy completed or was deleted (the lock file goes too). */
void vol_copy_unlock(vol_store *st, const char *snapshot_id, int fd, bool remove);
int vol_copy_snapshot_from(vol_store *st, const vol_copy_args *a, vol_snapshot *out, vol_err *e)
    __attribute__((warn_unused_result));
/* Resolve a key id (id, alias, ARN; alias/aws/ebs included) to its ARN. */
int vol_resolve_key(vol_store *st, const char *key_id, char **arn, vol_err *e) __attribute__((warn_unused_result));
/* A new lineage: a data key from key_arn with context {"aws:ebs:id": ctx_id} (not yet recorded). */
int vol_new_lineage(vol_store *st, const char *key_arn, const char *ctx_id, vol_lineage *l, vol_err *e)
    __attribute__((warn_unused_result));

/* Map a kmsclient error to the EC2 code "KMS.<Name>" with its message. */
int vol_kms_fail(vol_err *e, kms_err code, const kmsc_error *ke);

#endif
