/*
 * copy.c — copy-snapshot (store.h): under the source's own key, a new snapshot row sharing every chunk
 * (no data copied); under another key, a full copy re-encrypted under a new lineage whose data key comes
 * from the new key with context {"aws:ebs:id": NEW_SNAPSHOT_ID}, as EBS does. Atomic: the chunks are
 * written and synced first, then one transaction records the lineage, the chunks, the block map and the
 * snapshot as completed; an interrupted copy leaves only orphan chunk files (vol_sweep), never a snapshot.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "common/log.h"
#include "sector.h"
#include "store.h"

struct blocks {
    uint64_t *block, *gen;
    size_t n, cap;
};
static int add_block(void *arg, uint64_t block, uint64_t gen)
{
    struct blocks *b = arg;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        uint64_t *x = realloc(b->block, cap * sizeof *x), *y;
        if (!x)
            return -ENOMEM;
        b->block = x;
        if (!(y = realloc(b->gen, cap * sizeof *y)))
            return -ENOMEM;
        b->gen = y;
        b->cap = cap;
    }
    b->block[b->n] = block;
    b->gen[b->n++] = gen;
    return 0;
}

/* Re-seal one chunk (src lineage/key → dst lineage/key, new generation). k: the source's catalog row,
 * replaced by the new chunk's. */
static int reseal(vol_store *st, vol_sealer *s, const uint8_t *sdk, const uint8_t slin[16], const uint8_t *ddk,
                  const uint8_t dlin[16], vol_chunk *k, uint64_t ngen, uint8_t *buf, uint8_t *pt)
{
    vol_chunkstore *cs = vol_store_chunks(st);
    uint8_t skey[32], dkey[32], hdr[VOL_CHUNK_HDR];
    uint64_t seals = 0;
    int rc;
    if ((rc = cs->ops->pread(cs, k->gen, buf, VOL_CHUNK_FILE_SIZE, 0)))
        return rc;
    if (vol_chunk_header_check(buf, VOL_CHUNK_HDR, slin, k->block, k->gen))
        return -EBADMSG;
    if ((rc = vol_chunk_key(sdk, slin, k->block, k->gen, skey)) || (rc = vol_chunk_key(ddk, dlin, k->block, ngen, dkey)))
        goto out;
    vol_chunk_header(hdr, dlin, k->block, ngen);
    if ((rc = cs->ops->pwrite(cs, ngen, hdr, sizeof hdr, 0)))
        goto out;
    for (unsigned i = 0; i < VOL_SECTORS; i++) {
        uint8_t *slot = buf + vol_slot_offset(i);
        uint32_t ctr;
        if ((rc = vol_sector_open(s, skey, slin, k->block, k->gen, i, k->ctr[i], slot, pt, &ctr)))
            goto out;
        k->ctr[i] = 0;
        if (ctr == 0)
            continue; /* never written: stays a hole */
        if ((rc = vol_sector_seal(s, dkey, dlin, k->block, ngen, i, 1, NULL, pt, slot)) ||
            (rc = cs->ops->pwrite(cs, ngen, slot, VOL_SLOT_SIZE, vol_slot_offset(i))))
            goto out;
        k->ctr[i] = 1;
        seals++;
    }
    rc = cs->ops->sync(cs, ngen);
    k->gen = ngen;
    k->refs = 1;
    k->seals = seals;
out:
    sodium_memzero(skey, sizeof skey);
    sodium_memzero(dkey, sizeof dkey);
    return rc;
}

/* --rewrap-only: a lineage record with the source's binding and data key, wrapped under arn for the new
 * snapshot; the chunks are shared. */
static int rewrap(vol_store *st, const vol_lineage *slin, const char *arn, const char *src_id, vol_snapshot *out,
                  vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    kms_ectx_pair sp = {"aws:ebs:id", slin->ctx_id}, dp = {"aws:ebs:id", out->id};
    kms_ectx sctx = {&sp, 1}, dctx = {&dp, 1};
    vol_lineage l = *slin;
    kmsc_error ke;
    uint8_t raw[VOL_LINEAGE_LEN];
    kms_err k;
    int rc;
    memset(&ke, 0, sizeof ke);
    k = kmsc_re_encrypt(vol_store_kms(st), slin->key_arn, slin->wrapped, slin->wrapped_len, &sctx, arn, &dctx,
                        &l.wrapped, &l.wrapped_len, &ke);
    if (k)
        return vol_kms_fail(e, k, &ke);
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(l.id, sizeof l.id, raw, sizeof raw);
    snprintf(l.key_arn, sizeof l.key_arn, "%s", arn);
    snprintf(l.ctx_id, sizeof l.ctx_id, "%s", out->id);
    l.created = time(NULL);
    snprintf(out->lineage, sizeof out->lineage, "%s", l.id);
    out->completed = time(NULL);
    if ((rc = cat->ops->begin(cat)) || (rc = cat->ops->lineage_put(cat, &l)) || (rc = cat->ops->snapshot_put(cat, out)) ||
        (rc = cat->ops->map_copy(cat, src_id, out->id)) || (rc = cat->ops->commit(cat))) {
        cat->ops->rollback(cat);
        rc = vol_fail(e, rc, "InternalError", "the volume catalog refused the copy: %s", strerror(-rc));
    }
    free(l.wrapped);
    return rc;
}

int vol_copy_snapshot(vol_store *st, const char *src_id, const char *kms_key_id, bool rewrap_only,
                      const char *description, vol_snapshot *out, vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    vol_snapshot src;
    vol_lineage slin = {0}, dlin = {0};
    kmsc_secret *sdk = NULL, *ddk = NULL;
    struct blocks bl = {0};
    vol_chunk *chunks = NULL;
    char *arn = NULL;
    uint8_t sl[16], dl[16], *buf = NULL, *pt = NULL;
    vol_sealer *sealer = NULL;
    uint64_t first = 0;
    int rc, slock = -1;

    memset(out, 0, sizeof *out);
    if (!vol_id_valid("snap-", src_id))
        return vol_fail(e, -EINVAL, "InvalidSnapshotID.Malformed", "Invalid id: \"%s\" (expecting \"snap-...\")", src_id);
    if ((rc = cat->ops->snapshot_get(cat, src_id, &src)))
        return vol_fail(e, rc, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", src_id);
    if (strcmp(src.state, "completed")) {
        rc = vol_fail(e, -EBUSY, "IncorrectState", "Snapshot '%s' is in the '%s' state.", src_id, src.state);
        goto out;
    }
    if ((rc = vol_lineage_of(st, src.lineage, &slin, e)))
        goto out;
    /* the source key must be usable for any copy (EBS checks it) */
    if ((rc = vol_lineage_key(st, &slin, &sdk, e)))
        goto out;
    if (kms_key_id && (rc = vol_resolve_key(st, kms_key_id, &arn, e)))
        goto out;
    if (vol_new_id("snap-", out->id, sizeof out->id)) {
        rc = vol_fail(e, -EIO, "InternalError", "cannot make an id");
        goto out;
    }
    snprintf(out->volume_id, sizeof out->volume_id, "vol-ffffffff"); /* EBS: copies name no volume */
    snprintf(out->owner, sizeof out->owner, "%s", vol_store_owner(st)); /* the copier's */
    out->volume_size = src.volume_size;
    snprintf(out->state, sizeof out->state, "completed");
    out->started = time(NULL);
    if (description && !(out->description = strdup(description))) {
        rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        goto out;
    }
    if (rewrap_only && (!arn || !strcmp(arn, slin.key_arn))) {
        rc = vol_fail(e, -EINVAL, "InvalidParameterCombination", "--rewrap-only needs a --kms-key-id other than the "
                      "source's key");
        goto out;
    }
    if (rewrap_only) {
        rc = rewrap(st, &slin, arn, src_id, out, e);
        goto out;
    }
    if (!arn || !strcmp(arn, slin.key_arn)) {
        /* the same key in the same store: share every chunk, copy nothing */
        snprintf(out->lineage, sizeof out->lineage, "%s", src.lineage);
        out->completed = time(NULL);
        if ((rc = cat->ops->begin(cat)) || (rc = cat->ops->snapshot_put(cat, out)) ||
            (rc = cat->ops->map_copy(cat, src_id, out->id)) || (rc = cat->ops->commit(cat)))
            goto dberr;
        goto out;
    }
    /* another key: a new lineage, every chunk re-sealed */
    if ((rc = vol_new_lineage(st, arn, out->id, &dlin, e)) || (rc = vol_lineage_key(st, &dlin, &ddk, e)))
        goto out;
    snprintf(out->lineage, sizeof out->lineage, "%s", dlin.id);
    if ((rc = cat->ops->map_list(cat, src_id, add_block, &bl)))
        goto dberr;
    if ((slock = vol_store_lock_shared(st)) < 0) { /* the sweep must not take chunks not yet recorded */
        rc = vol_fail(e, slock, "InternalError", "cannot lock the volume store");
        goto out;
    }
    if (bl.n && (rc = cat->ops->gen_reserve(cat, bl.n, &first)))
        goto dberr;
    if (vol_lineage_bin(slin.binding, sl) || vol_lineage_bin(dlin.binding, dl) || !(chunks = calloc(bl.n + 1, sizeof *chunks)) ||
        !(buf = malloc(VOL_CHUNK_FILE_SIZE)) || !(pt = sodium_malloc(VOL_SECTOR_SIZE)) || !(sealer = vol_sealer_new())) {
        rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        goto out;
    }
    for (size_t i = 0; i < bl.n; i++) {
        if ((rc = cat->ops->chunk_get(cat, bl.gen[i], &chunks[i])))
            goto dberr;
        if ((rc = reseal(st, sealer, sdk->data, sl, ddk->data, dl, &chunks[i], first + i, buf, pt))) {
            rc = vol_fail(e, rc == -EBADMSG ? -EIO : rc, "InternalError",
                          "block %" PRIu64 " of %s %s", bl.block[i], src_id,
                          rc == -EBADMSG ? "fails authentication (see volume fsck)" : strerror(-rc));
            goto cleanup_new;
        }
        snprintf(chunks[i].lineage, sizeof chunks[i].lineage, "%s", dlin.binding);
    }
    out->completed = time(NULL);
    if ((rc = cat->ops->begin(cat)) || (rc = cat->ops->lineage_put(cat, &dlin)))
        goto dberr_new;
    for (size_t i = 0; i < bl.n && !rc; i++)
        if (!(rc = cat->ops->chunk_put(cat, &chunks[i])))
            rc = cat->ops->map_set(cat, out->id, bl.block[i], chunks[i].gen);
    if (rc || (rc = cat->ops->snapshot_put(cat, out)) || (rc = cat->ops->commit(cat)))
        goto dberr_new;
    goto out;
dberr_new:
    cat->ops->rollback(cat);
    vol_fail(e, rc, "InternalError", "the volume catalog refused the copy: %s", strerror(-rc));
cleanup_new:
    for (size_t i = 0; i < bl.n; i++)
        (void)vol_store_chunks(st)->ops->remove(vol_store_chunks(st), first + i);
    goto out;
dberr:
    cat->ops->rollback(cat);
    vol_fail(e, rc, "InternalError", "the volume catalog refused the copy: %s", strerror(-rc));
out:
    if (slock >= 0)
        close(slock);
    if (rc)
        vol_snapshot_clear(out);
    kmsc_secret_free(sdk);
    kmsc_secret_free(ddk);
    vol_lineage_clear(&slin);
    vol_lineage_clear(&dlin);
    vol_snapshot_clear(&src);
    free(bl.block);
    free(bl.gen);
    free(chunks);
    free(buf);
    if (pt)
        sodium_free(pt);
    vol_sealer_free(sealer);
    free(arn);
    return rc;
}
