/*
 * direct.c — the EBS direct API over the volume store (direct.h). A started snapshot is a pending
 * snapshot row with its own block map (its parent's, shared by reference); each put seals a fresh chunk
 * (built in memory and written in one write per run of non-zero sectors; all-zero sectors stay holes),
 * syncs it and then, in one transaction, maps it and records the block's
 * SHA-256; completion checks the count and the LINEAR checksum (SHA-256 of the blocks' SHA-256s in index
 * order) before the snapshot turns completed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "direct.h"
#include "rekey.h"
#include "sector.h"

#define NOT_FOUND(e, id) vol_fail(e, -ENOENT, "ResourceNotFoundException", \
                                  "The snapshot '%s' does not exist. (Reason: SNAPSHOT_NOT_FOUND)", id)

/* A pending snapshot that copy-snapshot is writing (copy_progress): not the direct API's to put into or complete. */
static bool copying(vol_store *st, const char *id)
{
    vol_copy_progress p;
    return vol_store_catalog(st)->ops->progress_get(vol_store_catalog(st), id, &p) == 0;
}

static int get_snap(vol_store *st, const char *id, vol_snapshot *s, vol_err *e)
{
    if (!vol_id_valid("snap-", id))
        return vol_fail(e, -EINVAL, "ValidationException", "Invalid snapshot id %s (Reason: INVALID_SNAPSHOT_ID)", id);
    if (vol_store_catalog(st)->ops->snapshot_get(vol_store_catalog(st), id, s))
        return NOT_FOUND(e, id);
    return 0;
}

int vol_ebs_start(vol_store *st, uint64_t size_gib, const char *parent, bool encrypted, const char *kms_key_arn,
                  const char *description, const char *tags, vol_snapshot *out, vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    vol_snapshot p;
    vol_lineage lin = {0};
    char *arn = NULL;
    int rc;
    bool have_parent = parent && *parent;
    memset(out, 0, sizeof *out);
    memset(&p, 0, sizeof p);
    if (size_gib < 1 || size_gib > VOL_MAX_GIB)
        return vol_fail(e, -EINVAL, "ValidationException", "VolumeSize must be 1-%u GiB (Reason: INVALID_VOLUME_SIZE)",
                        VOL_MAX_GIB);
    if (have_parent && encrypted)
        return vol_fail(e, -EINVAL, "ValidationException",
                        "Encrypted cannot be set with ParentSnapshotId: the child takes the parent's key "
                        "(Reason: INVALID_PARAMETER_VALUE)");
    if (have_parent) {
        if ((rc = get_snap(st, parent, &p, e)))
            return rc;
        if (strcmp(p.state, "completed") || size_gib < p.volume_size) {
            rc = vol_fail(e, -EINVAL, "ValidationException", "%s (Reason: INVALID_PARENT_SNAPSHOT)",
                          strcmp(p.state, "completed") ? "the parent snapshot is not completed"
                                                       : "VolumeSize is smaller than the parent's");
            vol_snapshot_clear(&p);
            return rc;
        }
    }
    if (vol_new_id("snap-", out->id, sizeof out->id))
        return vol_fail(e, -EIO, "InternalServerException", "cannot make an id");
    snprintf(out->volume_id, sizeof out->volume_id, "vol-ffffffff");
    snprintf(out->owner, sizeof out->owner, "%s", vol_store_owner(st));
    snprintf(out->state, sizeof out->state, "pending");
    out->volume_size = size_gib;
    out->started = time(NULL);
    if ((description && !(out->description = strdup(description))) || (tags && !(out->tags = strdup(tags)))) {
        rc = vol_fail(e, -ENOMEM, "InternalServerException", "out of memory");
        goto out;
    }
    if (have_parent) {
        kmsc_secret *dk = NULL;
        if ((rc = vol_lineage_of(st, p.lineage, &lin, e)) || (rc = vol_lineage_key(st, &lin, &dk, e)))
            goto out;
        kmsc_secret_free(dk);
        if (kms_key_arn && (rc = vol_resolve_key(st, kms_key_arn, &arn, e)))
            goto out;
        if (arn && strcmp(arn, lin.key_arn)) {
            rc = vol_fail(e, -EINVAL, "ValidationException", "a child snapshot keeps its parent's key %s "
                          "(Reason: INVALID_PARAMETER_VALUE)", lin.key_arn);
            goto out;
        }
        snprintf(out->lineage, sizeof out->lineage, "%s", p.lineage);
        if ((rc = cat->ops->begin(cat)) || (rc = cat->ops->snapshot_put(cat, out)) ||
            (rc = cat->ops->map_copy(cat, parent, out->id)) || (rc = cat->ops->commit(cat)))
            goto dberr;
    } else {
        rc = kms_key_arn ? vol_resolve_key(st, kms_key_arn, &arn, e) : vol_default_key(st, true, &arn, e);
        if (rc || (rc = vol_new_lineage(st, arn, out->id, &lin, e)))
            goto out;
        snprintf(out->lineage, sizeof out->lineage, "%s", lin.id);
        if ((rc = cat->ops->begin(cat)) || (rc = cat->ops->lineage_put(cat, &lin)) ||
            (rc = cat->ops->snapshot_put(cat, out)) || (rc = cat->ops->commit(cat)))
            goto dberr;
    }
    goto out;
dberr:
    cat->ops->rollback(cat);
    vol_fail(e, rc, "InternalServerException", "the volume catalog refused the snapshot: %s", strerror(-rc));
out:
    if (rc)
        vol_snapshot_clear(out);
    vol_snapshot_clear(&p);
    vol_lineage_clear(&lin);
    free(arn);
    return rc;
}

static int b64_sha(const char *b64, uint8_t out[32])
{
    size_t n = 0;
    if (!b64 || sodium_base642bin(out, 32, b64, strlen(b64), NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) || n != 32)
        return -EINVAL;
    return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

int vol_ebs_put(vol_store *st, const char *snap, uint64_t block, const uint8_t *data, size_t len,
                const char *checksum_b64, vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    vol_chunkstore *cs = vol_store_chunks(st);
    vol_snapshot s;
    vol_lineage lin = {0};
    vol_chunk k;
    kmsc_secret *dk = NULL;
    vol_sealer *sealer = NULL;
    uint8_t want[32], got[32], key[32], lb[16], nonces[VOL_SECTORS * VOL_SLOT_NONCE], *img = NULL;
    uint64_t gen = 0, old = 0;
    int64_t left = 1;
    int rc, slock = -1;
    bool had_old = false, wrote = false;
    if ((rc = get_snap(st, snap, &s, e)))
        return rc;
    memset(&k, 0, sizeof k);
    if (strcmp(s.state, "pending") || copying(st, snap)) {
        rc = vol_fail(e, -EINVAL, "ValidationException", "The snapshot %s is %s, not pending (Reason: INVALID_SNAPSHOT_ID)",
                      snap, strcmp(s.state, "pending") ? s.state : "a copy in progress");
        goto out;
    }
    if (block >= (s.volume_size << 30) / VOL_BLOCK_SIZE) {
        rc = vol_fail(e, -EINVAL, "ValidationException", "Block index %" PRIu64 " is past the end of a %" PRIu64
                      " GiB volume (Reason: INVALID_BLOCK)", block, s.volume_size);
        goto out;
    }
    if (len != VOL_BLOCK_SIZE) {
        rc = vol_fail(e, -EINVAL, "ValidationException", "The block is %zu bytes; it must be %u (Reason: INVALID_DATA_LENGTH)",
                      len, VOL_BLOCK_SIZE);
        goto out;
    }
    crypto_hash_sha256(got, data, len);
    if (b64_sha(checksum_b64, want) || sodium_memcmp(want, got, 32)) {
        rc = vol_fail(e, -EINVAL, "ValidationException", "The checksum does not match the block's SHA-256 "
                      "(Reason: INVALID_CHECKSUM)");
        goto out;
    }
    if ((rc = vol_lineage_of(st, s.lineage, &lin, e)) || (rc = vol_lineage_key(st, &lin, &dk, e)))
        goto out;
    if (vol_lineage_bin(lin.binding, lb) || !(sealer = vol_sealer_new()) || !(img = malloc(VOL_CHUNK_V1_SIZE))) {
        rc = vol_fail(e, -ENOMEM, "InternalServerException", "out of memory");
        goto out;
    }
    if ((slock = vol_store_lock_shared(st)) < 0) { /* the sweep must not take the chunk before it is recorded */
        rc = slock;
        goto ioerr;
    }
    if ((rc = cat->ops->gen_reserve(cat, 1, &gen)) || (rc = vol_chunk_key(dk->data, lb, block, gen, key)))
        goto ioerr;
    /* the chunk built whole in img (header and area 0), then written in runs of non-zero sectors */
    vol_chunk_header(img, lb, block, gen);
    randombytes_buf(nonces, sizeof nonces); /* one call for the chunk's nonces */
    for (unsigned i = 0; i < VOL_SECTORS; i++) {
        const uint8_t *pt = data + (size_t)i * VOL_SECTOR_SIZE;
        if (all_zero(pt, VOL_SECTOR_SIZE))
            continue; /* a hole: reads as zeros while its counter is 0 */
        if ((rc = vol_sector_seal(sealer, key, lb, block, gen, i, 1, nonces + (size_t)i * VOL_SLOT_NONCE, pt,
                                  img + vol_slot_offset(i))))
            goto ioerr;
        k.ctr[i] = 1;
        k.seals++;
    }
    wrote = true;
    if ((rc = vol_chunk_write_image(cs, gen, img, k.ctr)))
        goto ioerr;
    if ((rc = cs->ops->sync(cs, gen)))
        goto ioerr;
    k.gen = gen;
    snprintf(k.lineage, sizeof k.lineage, "%s", lin.binding);
    k.block = block;
    k.refs = 1;
    if ((rc = cat->ops->begin(cat)))
        goto ioerr;
    rc = cat->ops->map_get(cat, snap, block, &old);
    had_old = rc == 0;
    if ((rc != 0 && rc != -ENOENT) || (rc = cat->ops->chunk_put(cat, &k)) || (rc = cat->ops->map_set(cat, snap, block, gen)) ||
        (had_old && (rc = cat->ops->chunk_ref(cat, old, -1, &left))) ||
        (had_old && left <= 0 && (rc = cat->ops->chunk_delete(cat, old))) ||
        (rc = cat->ops->put_set(cat, snap, block, got)) || (rc = cat->ops->commit(cat))) {
        cat->ops->rollback(cat);
        goto ioerr;
    }
    wrote = false;
    if (had_old && left <= 0)
        (void)cs->ops->remove(cs, old);
    goto out;
ioerr:
    rc = vol_fail(e, rc < 0 ? rc : -EIO, "InternalServerException", "storing block %" PRIu64 " failed: %s", block,
                  strerror(rc < 0 ? -rc : EIO));
out:
    if (wrote)
        (void)cs->ops->remove(cs, gen);
    if (slock >= 0)
        close(slock);
    sodium_memzero(key, sizeof key);
    free(img);
    vol_sealer_free(sealer);
    kmsc_secret_free(dk);
    vol_lineage_clear(&lin);
    vol_snapshot_clear(&s);
    return rc;
}

struct agg {
    crypto_hash_sha256_state h;
    int64_t n;
};
static int agg_one(void *arg, uint64_t block, const uint8_t *sha)
{
    struct agg *a = arg;
    crypto_hash_sha256_update(&a->h, sha, 32);
    a->n++;
    return 0;
}

int vol_ebs_complete(vol_store *st, const char *snap, int64_t changed, const char *checksum_b64, vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    vol_snapshot s;
    struct agg a;
    uint8_t want[32], got[32];
    int rc;
    if ((rc = get_snap(st, snap, &s, e)))
        return rc;
    if (strcmp(s.state, "pending") || copying(st, snap)) {
        rc = vol_fail(e, -EINVAL, "ValidationException", "The snapshot %s is %s, not pending (Reason: INVALID_SNAPSHOT_ID)",
                      snap, strcmp(s.state, "pending") ? s.state : "a copy in progress");
        goto out;
    }
    crypto_hash_sha256_init(&a.h);
    a.n = 0;
    if ((rc = cat->ops->put_list(cat, snap, agg_one, &a))) {
        rc = vol_fail(e, rc, "InternalServerException", "cannot read the blocks put");
        goto out;
    }
    crypto_hash_sha256_final(&a.h, got);
    if (changed != a.n) {
        rc = vol_fail(e, -EINVAL, "ValidationException", "ChangedBlocksCount is %" PRId64 " but %" PRId64
                      " blocks were put (Reason: INVALID_PARAMETER_VALUE)", changed, a.n);
        goto out;
    }
    if (checksum_b64 && (b64_sha(checksum_b64, want) || sodium_memcmp(want, got, 32))) {
        rc = vol_fail(e, -EINVAL, "ValidationException", "The aggregate checksum does not match the blocks put "
                      "(Reason: INVALID_CHECKSUM)");
        goto out;
    }
    snprintf(s.state, sizeof s.state, "completed");
    s.completed = time(NULL);
    if ((rc = cat->ops->begin(cat)) || (rc = cat->ops->snapshot_put(cat, &s)) || (rc = cat->ops->put_drop(cat, snap)) ||
        (rc = cat->ops->commit(cat))) {
        cat->ops->rollback(cat);
        rc = vol_fail(e, rc, "InternalServerException", "the volume catalog refused the completion");
    }
out:
    vol_snapshot_clear(&s);
    return rc;
}

void vol_ebs_token(uint64_t gen, char out[21]) { snprintf(out, 21, "EBT1%016" PRIx64, gen); }

int vol_ebs_token_gen(const char *token, uint64_t *gen)
{
    char *end;
    if (!token || strlen(token) != 20 || strncmp(token, "EBT1", 4))
        return -EINVAL;
    *gen = strtoull(token + 4, &end, 16);
    return *end ? -EINVAL : 0;
}

int vol_ebs_get(vol_store *st, const char *snap, uint64_t block, const char *token, uint8_t *out, uint8_t sha256[32],
                vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    vol_chunkstore *cs = vol_store_chunks(st);
    vol_snapshot s;
    vol_lineage lin = {0};
    vol_chunk k;
    kmsc_secret *dk = NULL;
    vol_sealer *sealer = NULL;
    uint8_t key[32], lb[16], *buf = NULL;
    uint64_t gen = 0, tgen = 0;
    unsigned ver = 0;
    int rc;
    if ((rc = get_snap(st, snap, &s, e)))
        return rc;
    if (vol_ebs_token_gen(token, &tgen) || cat->ops->map_get(cat, snap, block, &gen) || gen != tgen) {
        rc = vol_fail(e, -EINVAL, "ValidationException", "The block token is not that of block %" PRIu64 " of %s "
                      "(Reason: INVALID_BLOCK_TOKEN)", block, snap);
        goto out;
    }
    /* (a snapshot of a volume part-way through a rekey: the chunk's own lineage's key) */
    if ((rc = cat->ops->chunk_get(cat, gen, &k)) || (rc = vol_binding_key(st, snap, s.lineage, k.lineage, &dk, e)))
        goto out;
    if (vol_lineage_bin(k.lineage, lb) || !(sealer = vol_sealer_new()) || !(buf = malloc(VOL_CHUNK_FILE_SIZE))) {
        rc = vol_fail(e, -ENOMEM, "InternalServerException", "out of memory");
        goto out;
    }
    if ((rc = cs->ops->pread(cs, gen, buf, VOL_CHUNK_FILE_SIZE, 0)) || vol_chunk_header_check(buf, VOL_CHUNK_HDR, lb, block, gen, &ver) ||
        vol_chunk_key(dk->data, lb, block, gen, key)) {
        rc = vol_fail(e, -EIO, "InternalServerException", "block %" PRIu64 " of %s is damaged (see volume fsck)", block, snap);
        goto out;
    }
    for (unsigned i = 0; i < VOL_SECTORS; i++) {
        uint32_t ctr;
        if (vol_chunk_image_open(sealer, key, lb, block, gen, ver, i, k.ctr[i], buf, out + (size_t)i * VOL_SECTOR_SIZE,
                                 &ctr)) {
            rc = vol_fail(e, -EIO, "InternalServerException", "block %" PRIu64 " of %s fails authentication "
                          "(see volume fsck)", block, snap);
            break;
        }
    }
    sodium_memzero(key, sizeof key);
    if (!rc)
        crypto_hash_sha256(sha256, out, VOL_BLOCK_SIZE);
out:
    free(buf);
    vol_sealer_free(sealer);
    kmsc_secret_free(dk);
    vol_lineage_clear(&lin);
    vol_snapshot_clear(&s);
    return rc;
}
