/*
 * copy.c — copy-snapshot (store.h): under the source's own key, a new snapshot row sharing every chunk
 * (no data copied); under another key, a full copy re-encrypted under a new lineage whose data key comes
 * from the new key with context {"aws:ebs:id": NEW_SNAPSHOT_ID}, as EBS does. The source may be another
 * region's store (opened read only): its data key is opened by this region's replica when the source key
 * is a multi-Region key with one here (no call across regions), else by the source region's key service;
 * the copy is a new lineage in this store — or, by EBS's incremental rule, joins the lineage of an
 * earlier copy here (same key) of an ancestor snapshot of the same source volume: the blocks whose source
 * chunk is the ancestor's (same generation) share that copy's chunks, only the others are re-sealed; the
 * `copies` table records where each copy came from. Atomic: the chunks are written and synced first, then
 * one transaction records the lineage, the chunks, the block map and the snapshot as completed; an
 * interrupted copy leaves only orphan chunk files (vol_sweep), never a snapshot.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "common/log.h"
#include "rekey.h"
#include "sector.h"
#include "store.h"

/* Re-seal one chunk (src lineage/key → dst lineage/key, new generation; see rekey.h). */
int vol_reseal(vol_chunkstore *scs, vol_chunkstore *cs, vol_sealer *s, const uint8_t *sdk, const uint8_t slin[16],
               const uint8_t *ddk, const uint8_t dlin[16], vol_chunk *k, uint64_t ngen, uint8_t *buf, uint8_t *pt)
{
    uint8_t skey[32], dkey[32], hdr[VOL_CHUNK_HDR];
    uint64_t seals = 0;
    int rc;
    if ((rc = scs->ops->pread(scs, k->gen, buf, VOL_CHUNK_FILE_SIZE, 0)))
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
                  const vol_copy_rec *rec, vol_err *e)
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
        (rc = cat->ops->map_copy(cat, src_id, out->id)) || (rc = cat->ops->copy_put(cat, rec)) ||
        (rc = cat->ops->commit(cat))) {
        cat->ops->rollback(cat);
        rc = vol_fail(e, rc, "InternalError", "the volume catalog refused the copy: %s", strerror(-rc));
    }
    free(l.wrapped);
    return rc;
}

/* Decrypt a lineage's data key through kms, naming key_id. */
static int unwrap(kmsc *kms, const char *key_id, const vol_lineage *l, kmsc_secret **dk, vol_err *e)
{
    kms_ectx_pair pair = {"aws:ebs:id", l->ctx_id};
    kms_ectx ctx = {&pair, 1};
    kmsc_error ke;
    kms_err k;
    memset(&ke, 0, sizeof ke);
    if ((k = kmsc_decrypt(kms, key_id, l->wrapped, l->wrapped_len, &ctx, dk, &ke)))
        return vol_kms_fail(e, k, &ke);
    if ((*dk)->len != 32) {
        kmsc_secret_free(*dk);
        *dk = NULL;
        return vol_fail(e, -EIO, "InternalError", "the data key of lineage %s has the wrong length", l->id);
    }
    return 0;
}

/* The source's data key for a copy from another region. A multi-Region key (mrk-) with a replica in this
 * region opens the wrapped key here as it is: ciphertext names the key by its id, which the replica
 * shares, so the source region's key service is not called at all (kms_core_mrk_replica_in answers for
 * an embedded key store; a remote one is simply asked, and a NotFoundException falls back to the source
 * region). Anything else goes to the source region's key service, opened only now. */
static int source_key(vol_store *st, const vol_copy_args *a, const vol_lineage *l, kmsc_secret **dk, vol_err *e)
{
    kmsc *here = vol_store_kms(st), *there;
    const char *id = strstr(l->key_arn, ":key/"), *region = a->src_region ? a->src_region : "";
    id = id ? id + 5 : l->key_arn;
    if (here && !strncmp(id, "mrk-", 4)) {
        kms_core *core = kmsc_embedded_core(here);
        if (!core || kms_core_mrk_replica_in(core, id, region)) {
            int rc = unwrap(here, id, l, dk, e);
            if (!rc || core || rc != -ENOENT)
                return rc;
        }
    }
    there = a->src_kms ? a->src_kms(a->src_kms_arg) : NULL;
    if (!there)
        return vol_fail(e, -EHOSTUNREACH, "InternalError", "cannot reach the key service of region %s for the data key "
                        "of the source snapshot (key %s)", region, l->key_arn);
    return unwrap(there, l->key_arn, l, dk, e);
}

/* A shared lock on another region's run/store.lock, opened read only (its sweep then waits for the copy).
 * -1 when that store has no lock file (no sweep or attach ever ran there). */
static int lock_source(vol_store *src)
{
    char *p = NULL;
    int fd;
    if (asprintf(&p, "%s/run/store.lock", vol_store_dir(src)) < 0)
        return -ENOMEM;
    fd = open(p, O_RDONLY | O_CLOEXEC);
    free(p);
    if (fd < 0)
        return errno == ENOENT ? -1 : -errno;
    if (flock(fd, LOCK_SH)) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

struct recs {
    vol_copy_rec *r;
    size_t n, cap;
};
static int add_rec(void *arg, const vol_copy_rec *r)
{
    struct recs *x = arg;
    if (x->n == x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 16;
        vol_copy_rec *y = realloc(x->r, cap * sizeof *y);
        if (!y)
            return -ENOMEM;
        x->r = y;
        x->cap = cap;
    }
    x->r[x->n++] = *r;
    return 0;
}

/* EBS's incremental rule: an earlier copy here (completed, its lineage under arn) of a snapshot of the same
 * source volume that the source store still has, taken no later than src. The latest such source wins.
 * 1 and *base (the earlier copy), *anc (its source) filled; 0: none (a full copy); <0: error. */
static int find_base(vol_store *st, vol_store *from, const char *region, const vol_snapshot *src, const char *arn,
                     vol_snapshot *base, vol_snapshot *anc)
{
    vol_catalog *cat = vol_store_catalog(st), *scat = vol_store_catalog(from);
    struct recs x = {0};
    int rc, found = 0;
    if (!strcmp(src->volume_id, "vol-ffffffff") || !src->volume_id[0])
        return 0; /* a copy or a direct-API snapshot: no volume to follow */
    if ((rc = cat->ops->copy_list(cat, region, src->volume_id, add_rec, &x))) {
        free(x.r);
        return rc;
    }
    for (size_t i = 0; i < x.n; i++) {
        vol_snapshot d, s;
        vol_lineage l;
        bool ok;
        if (cat->ops->snapshot_get(cat, x.r[i].snapshot, &d))
            continue;
        ok = !strcmp(d.state, "completed") && cat->ops->lineage_get(cat, d.lineage, &l) == 0;
        if (ok) {
            ok = !strcmp(l.key_arn, arn);
            vol_lineage_clear(&l);
        }
        if (ok && scat->ops->snapshot_get(scat, x.r[i].source_snapshot, &s) == 0) {
            if (!strcmp(s.state, "completed") && !strcmp(s.volume_id, src->volume_id) && s.started <= src->started &&
                (!found || s.started > anc->started)) {
                if (found) {
                    vol_snapshot_clear(base);
                    vol_snapshot_clear(anc);
                }
                *base = d;
                *anc = s;
                found = 1;
                continue;
            }
            vol_snapshot_clear(&s);
        }
        vol_snapshot_clear(&d);
    }
    free(x.r);
    return found;
}

static int count_text(void *arg, const char *text)
{
    (void)text;
    ++*(int *)arg;
    return 0;
}

/* Of src's blocks (bl), those whose chunk is the ancestor's (anc: the same generation, so the same bytes)
 * take the earlier copy's chunk for that block (share[i]; 0: copy it). */
static int plan_shared(vol_catalog *scat, vol_catalog *cat, const char *anc, const char *base, const vol_blocks *bl,
                       uint64_t *share)
{
    vol_blocks am = {0}, bm = {0};
    size_t ia = 0, ib = 0;
    int rc;
    if (!(rc = scat->ops->map_list(scat, anc, vol_blocks_add, &am)) && !(rc = cat->ops->map_list(cat, base, vol_blocks_add, &bm)))
        for (size_t i = 0; i < bl->n; i++) {
            share[i] = 0;
            while (ia < am.n && am.block[ia] < bl->block[i])
                ia++;
            if (ia == am.n || am.block[ia] != bl->block[i] || am.gen[ia] != bl->gen[i])
                continue;
            while (ib < bm.n && bm.block[ib] < bl->block[i])
                ib++;
            if (ib < bm.n && bm.block[ib] == bl->block[i])
                share[i] = bm.gen[ib];
        }
    vol_blocks_clear(&am);
    vol_blocks_clear(&bm);
    return rc;
}

int vol_copy_snapshot_from(vol_store *st, const vol_copy_args *a, vol_snapshot *out, vol_err *e)
{
    vol_store *from = a->src ? a->src : st;
    vol_catalog *cat = vol_store_catalog(st), *scat = vol_store_catalog(from);
    const char *src_id = a->src_id;
    bool cross = from != st;
    vol_snapshot src, base = {0}, anc = {0};
    vol_copy_rec rec = {0};
    vol_lineage slin = {0}, dlin = {0};
    kmsc_secret *sdk = NULL, *ddk = NULL;
    vol_keyring ring = {NULL, 0};
    vol_blocks bl = {0};
    vol_chunk *chunks = NULL;
    char *arn = NULL;
    uint8_t sl[16], dl[16], *buf = NULL, *pt = NULL;
    vol_sealer *sealer = NULL;
    uint64_t first = 0, *share = NULL;
    size_t ncopy = 0;
    int rc, slock = -1, srclock = -1, incremental = 0;

    memset(out, 0, sizeof *out);
    if (!vol_id_valid("snap-", src_id))
        return vol_fail(e, -EINVAL, "InvalidSnapshotID.Malformed", "Invalid id: \"%s\" (expecting \"snap-...\")", src_id);
    if ((rc = scat->ops->snapshot_get(scat, src_id, &src)))
        return vol_fail(e, rc, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist%s%s.", src_id,
                        cross ? " in region " : "", cross && a->src_region ? a->src_region : "");
    if (strcmp(src.state, "completed")) {
        rc = vol_fail(e, -EBUSY, "IncorrectState", "Snapshot '%s' is in the '%s' state.", src_id, src.state);
        goto out;
    }
    if (cross && a->rewrap_only) {
        rc = vol_fail(e, -EINVAL, "InvalidParameterCombination", "--rewrap-only copies within one region only (a "
                      "region's chunks stay in its own store)");
        goto out;
    }
    if ((rc = vol_lineage_of(from, src.lineage, &slin, e)))
        goto out;
    /* The source keys must be usable for any copy (EBS checks it): in this store its own and, for a snapshot
     * of a volume part-way through a rekey, each other lineage its chunks are still on; from another region
     * its one key (such a snapshot is refused: finish the rekey there first). */
    if (cross) {
        int sources = 0;
        if ((rc = scat->ops->source_list(scat, src_id, count_text, &sources)))
            goto dberr;
        if (sources) {
            rc = vol_fail(e, -EINVAL, "IncorrectState", "Snapshot '%s' in region %s still has blocks under its volume's "
                          "earlier key (a lazy rekey in progress there): copy it within its region first",
                          src_id, a->src_region ? a->src_region : "");
            goto out;
        }
        rc = source_key(st, a, &slin, &sdk, e);
    } else {
        rc = vol_owner_keys(st, src_id, src.lineage, &ring, e);
    }
    if (rc)
        goto out;
    if (a->kms_key_id)
        rc = vol_resolve_key(st, a->kms_key_id, &arn, e);
    else if (cross) /* EBS: a copy into another region without a key gets that region's default key */
        rc = vol_default_key(st, true, &arn, e);
    if (rc)
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
    if (a->description)
        out->description = strdup(a->description);
    else if (cross && asprintf(&out->description, "[Copied %s from %s]", src_id, a->src_region ? a->src_region : "") < 0)
        out->description = NULL;
    if ((a->description || cross) && !out->description) {
        rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        goto out;
    }
    snprintf(rec.snapshot, sizeof rec.snapshot, "%s", out->id);
    snprintf(rec.source_region, sizeof rec.source_region, "%s", a->src_region ? a->src_region : "");
    snprintf(rec.source_snapshot, sizeof rec.source_snapshot, "%s", src_id);
    snprintf(rec.source_volume, sizeof rec.source_volume, "%s", src.volume_id);
    rec.created = out->started;
    if ((rc = scat->ops->map_list(scat, src_id, vol_blocks_add, &bl)))
        goto dberr;
    if (a->rewrap_only && (!arn || !strcmp(arn, slin.key_arn))) {
        rc = vol_fail(e, -EINVAL, "InvalidParameterCombination", "--rewrap-only needs a --kms-key-id other than the "
                      "source's key");
        goto out;
    }
    if (a->rewrap_only) {
        rec.blocks_shared = bl.n;
        rc = rewrap(st, &slin, arn, src_id, out, &rec, e);
        goto out;
    }
    if (!cross && (!arn || !strcmp(arn, slin.key_arn))) {
        /* the same key in the same store: share every chunk, copy nothing */
        snprintf(out->lineage, sizeof out->lineage, "%s", src.lineage);
        out->completed = time(NULL);
        rec.blocks_shared = bl.n;
        if ((rc = cat->ops->begin(cat)) || (rc = cat->ops->snapshot_put(cat, out)) ||
            (rc = cat->ops->map_copy(cat, src_id, out->id)) || (rc = cat->ops->copy_put(cat, &rec)) ||
            (rc = cat->ops->commit(cat)))
            goto dberr;
        goto out;
    }
    /* another key or another region: the blocks unchanged since an earlier copy's source are that copy's
     * (its lineage, its chunks); the others, or all of them, re-sealed into a new lineage */
    if (!(share = calloc(bl.n + 1, sizeof *share))) {
        rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        goto out;
    }
    if ((incremental = find_base(st, from, rec.source_region, &src, arn, &base, &anc)) < 0) {
        rc = incremental;
        goto dberr;
    }
    if (incremental) {
        if ((rc = vol_lineage_of(st, base.lineage, &dlin, e)) || (rc = vol_lineage_key(st, &dlin, &ddk, e)))
            goto out;
        if ((rc = plan_shared(scat, cat, anc.id, base.id, &bl, share)))
            goto dberr;
        snprintf(rec.base, sizeof rec.base, "%s", base.id);
    } else if ((rc = vol_new_lineage(st, arn, out->id, &dlin, e)) || (rc = vol_lineage_key(st, &dlin, &ddk, e))) {
        goto out;
    }
    snprintf(out->lineage, sizeof out->lineage, "%s", dlin.id);
    for (size_t i = 0; i < bl.n; i++)
        ncopy += !share[i];
    rec.blocks_copied = ncopy;
    rec.blocks_shared = bl.n - ncopy;
    if ((slock = vol_store_lock_shared(st)) < 0) { /* the sweep must not take chunks not yet recorded */
        rc = vol_fail(e, slock, "InternalError", "cannot lock the volume store");
        goto out;
    }
    if (cross && (srclock = lock_source(from)) < -1) {
        rc = vol_fail(e, srclock, "InternalError", "cannot lock the source region's volume store");
        goto out;
    }
    if (ncopy && (rc = cat->ops->gen_reserve(cat, ncopy, &first)))
        goto dberr;
    if (vol_lineage_bin(slin.binding, sl) || vol_lineage_bin(dlin.binding, dl) || !(chunks = calloc(bl.n + 1, sizeof *chunks)) ||
        !(buf = malloc(VOL_CHUNK_FILE_SIZE)) || !(pt = sodium_malloc(VOL_SECTOR_SIZE)) || !(sealer = vol_sealer_new())) {
        rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        goto out;
    }
    for (size_t i = 0, j = 0; i < bl.n; i++) {
        if (share[i]) {
            if (a->progress)
                a->progress(a->progress_arg, i + 1, bl.n);
            continue;
        }
        const uint8_t *key;
        if ((rc = scat->ops->chunk_get(scat, bl.gen[i], &chunks[j])))
            goto dberr_new;
        /* each chunk opens under its own lineage's key (a lazily rekeyed source names several) */
        if (!(key = cross ? sdk->data : vol_keyring_find(&ring, chunks[j].lineage)) ||
            vol_lineage_bin(chunks[j].lineage, sl)) {
            rc = vol_fail(e, -EIO, "InternalError", "block %" PRIu64 " of %s: no key of it opens lineage %s",
                          bl.block[i], src_id, chunks[j].lineage);
            goto cleanup_new;
        }
        if ((rc = vol_reseal(vol_store_chunks(from), vol_store_chunks(st), sealer, key, sl, ddk->data, dl, &chunks[j],
                             first + j, buf, pt))) {
            rc = vol_fail(e, rc == -EBADMSG ? -EIO : rc, "InternalError",
                          "block %" PRIu64 " of %s %s", bl.block[i], src_id,
                          rc == -EBADMSG ? "fails authentication (see volume fsck)" : strerror(-rc));
            goto cleanup_new;
        }
        snprintf(chunks[j].lineage, sizeof chunks[j].lineage, "%s", dlin.binding);
        j++;
        if (a->progress)
            a->progress(a->progress_arg, i + 1, bl.n);
    }
    out->completed = time(NULL);
    if ((rc = cat->ops->begin(cat)) || (!incremental && (rc = cat->ops->lineage_put(cat, &dlin))))
        goto dberr_new;
    for (size_t i = 0, j = 0; i < bl.n && !rc; i++) {
        if (share[i]) { /* the earlier copy's chunk: gone since (that copy deleted) → rerun */
            if ((rc = cat->ops->chunk_ref(cat, share[i], 1, NULL)) == -ENOENT)
                rc = -ESTALE;
            if (!rc)
                rc = cat->ops->map_set(cat, out->id, bl.block[i], share[i]);
        } else if (!(rc = cat->ops->chunk_put(cat, &chunks[j]))) {
            rc = cat->ops->map_set(cat, out->id, bl.block[i], chunks[j++].gen);
        }
    }
    if (rc || (rc = cat->ops->snapshot_put(cat, out)) || (rc = cat->ops->copy_put(cat, &rec)) ||
        (rc = cat->ops->commit(cat)))
        goto dberr_new;
    goto out;
dberr_new:
    cat->ops->rollback(cat);
    if (rc == -ESTALE)
        vol_fail(e, rc, "IncorrectState", "the earlier copy %s that this copy shares blocks with was deleted meanwhile: "
                 "copy again", base.id);
    else
        vol_fail(e, rc, "InternalError", "the volume catalog refused the copy: %s", strerror(-rc));
cleanup_new:
    for (size_t i = 0; i < ncopy; i++)
        (void)vol_store_chunks(st)->ops->remove(vol_store_chunks(st), first + i);
    goto out;
dberr:
    cat->ops->rollback(cat);
    vol_fail(e, rc, "InternalError", "the volume catalog refused the copy: %s", strerror(-rc));
out:
    if (srclock >= 0)
        close(srclock);
    if (slock >= 0)
        close(slock);
    if (rc)
        vol_snapshot_clear(out);
    kmsc_secret_free(sdk);
    vol_keyring_clear(&ring);
    kmsc_secret_free(ddk);
    vol_lineage_clear(&slin);
    vol_lineage_clear(&dlin);
    vol_snapshot_clear(&src);
    vol_snapshot_clear(&base);
    vol_snapshot_clear(&anc);
    free(share);
    vol_blocks_clear(&bl);
    free(chunks);
    free(buf);
    if (pt)
        sodium_free(pt);
    vol_sealer_free(sealer);
    free(arn);
    return rc;
}

int vol_copy_snapshot(vol_store *st, const char *src_id, const char *kms_key_id, bool rewrap_only,
                      const char *description, vol_snapshot *out, vol_err *e)
{
    vol_copy_args a = {.src_id = src_id, .kms_key_id = kms_key_id, .rewrap_only = rewrap_only, .description = description};
    return vol_copy_snapshot_from(st, &a, out, e);
}
