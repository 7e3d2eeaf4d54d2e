/*
 * rekey.c — lazy rekey (rekey.h): a volume restored under another key than its snapshot's gets its own
 * lineage; its block map keeps naming the snapshot's chunks, which the catalog records under their own
 * lineage (chunks.lineage, the sector binding), and the source lineage is recorded for the volume
 * (owner_lineages) so its key can open them. Writes copy blocks up into the new lineage (dev.c);
 * vol_rekey_volume moves the rest eagerly, in batches, each batch's chunks synced together before the transaction that
 * points the map at it, so a kill at any point leaves the old rows and only orphan files (vol_sweep).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "common/log.h"
#include "rekey.h"

/* ---- key rings ---- */

struct names {
    char (*v)[2 * VOL_LINEAGE_LEN + 1];
    size_t n;
};
static int add_name(struct names *a, const char *s)
{
    char(*x)[2 * VOL_LINEAGE_LEN + 1] = realloc(a->v, (a->n + 1) * sizeof *x);
    if (!x)
        return -ENOMEM;
    a->v = x;
    snprintf(a->v[a->n++], sizeof *x, "%s", s ? s : "");
    return 0;
}
static int add_binding(void *arg, const char *binding, uint64_t blocks)
{
    (void)blocks;
    return add_name(arg, binding);
}
static int add_source(void *arg, const char *lineage) { return add_name(arg, lineage); }

/* Unwrap lineage record l's data key into the ring. */
static int ring_add_lineage(vol_store *st, vol_keyring *r, const vol_lineage *l, vol_err *e)
{
    kmsc_secret *dk = NULL;
    int rc = vol_lineage_key(st, l, &dk, e);
    if (rc)
        return rc;
    if ((rc = vol_keyring_add(r, l->binding, l->id, dk->data)))
        vol_fail(e, rc, "InternalError", "out of memory");
    kmsc_secret_free(dk);
    return rc;
}

int vol_owner_keys(vol_store *st, const char *owner, const char *lineage_id, vol_keyring *out, vol_err *e)
{
    return vol_owner_keys_from(st, owner, lineage_id, NULL, out, e);
}

int vol_owner_keys_from(vol_store *st, const char *owner, const char *lineage_id, const uint8_t *own_dk,
                        vol_keyring *out, vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    struct names bindings = {NULL, 0}, sources = {NULL, 0};
    vol_lineage own = {0};
    int rc;
    out->k = NULL;
    out->n = 0;
    if ((rc = vol_lineage_of(st, lineage_id, &own, e)))
        goto out;
    if (own_dk) {
        if ((rc = vol_keyring_add(out, own.binding, own.id, own_dk)))
            rc = vol_fail(e, rc, "InternalError", "out of memory");
    } else {
        rc = ring_add_lineage(st, out, &own, e);
    }
    if (rc)
        goto out;
    if ((rc = cat->ops->map_bindings(cat, owner, add_binding, &bindings)) ||
        (rc = cat->ops->source_list(cat, owner, add_source, &sources))) {
        rc = vol_fail(e, rc, "InternalError", "cannot read the block map of %s: %s", owner, strerror(-rc));
        goto out;
    }
    for (size_t i = 0; i < bindings.n && !rc; i++) {
        bool found = false;
        if (vol_keyring_find(out, bindings.v[i]))
            continue;
        for (size_t j = 0; j < sources.n && !found && !rc; j++) {
            vol_lineage l;
            if ((rc = vol_lineage_of(st, sources.v[j], &l, e)))
                break;
            if (!strcmp(l.binding, bindings.v[i])) {
                found = true;
                rc = ring_add_lineage(st, out, &l, e); /* the key service's refusal, as is */
            }
            vol_lineage_clear(&l);
        }
        if (!rc && !found)
            rc = vol_fail(e, -EIO, "InternalError", "the block map of %s names chunks of lineage %s, for which the "
                          "catalog records no key of %s", owner, bindings.v[i], owner);
    }
out:
    if (rc)
        vol_keyring_clear(out);
    vol_lineage_clear(&own);
    free(bindings.v);
    free(sources.v);
    return rc;
}

int vol_binding_key(vol_store *st, const char *owner, const char *lineage_id, const char *binding, kmsc_secret **dk,
                    vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    struct names sources = {NULL, 0};
    vol_lineage l = {0};
    int rc;
    *dk = NULL;
    if ((rc = vol_lineage_of(st, lineage_id, &l, e)))
        return rc;
    if (!strcmp(l.binding, binding)) {
        rc = vol_lineage_key(st, &l, dk, e);
        vol_lineage_clear(&l);
        return rc;
    }
    vol_lineage_clear(&l);
    if ((rc = cat->ops->source_list(cat, owner, add_source, &sources)))
        return vol_fail(e, rc, "InternalError", "cannot read the catalog: %s", strerror(-rc));
    rc = vol_fail(e, -EIO, "InternalError", "no key of %s opens chunks of lineage %s", owner, binding);
    for (size_t j = 0; j < sources.n; j++) {
        int r = vol_lineage_of(st, sources.v[j], &l, e);
        if (!r && !strcmp(l.binding, binding)) {
            rc = vol_lineage_key(st, &l, dk, e);
            vol_lineage_clear(&l);
            break;
        }
        vol_lineage_clear(&l);
        if (r) {
            rc = r;
            break;
        }
    }
    free(sources.v);
    return rc;
}

int vol_dev_open_keys(vol_catalog *cat, vol_chunkstore *cs, const vol_volume *v, const vol_keyring *ring, vol_dev **out)
{
    int rc;
    if (!ring->n)
        return -EINVAL;
    if ((rc = vol_dev_open(cat, cs, v, ring->k[0].binding, ring->k[0].dk, out)))
        return rc;
    for (size_t i = 1; i < ring->n; i++)
        if ((rc = vol_dev_add_key(*out, ring->k[i].binding, ring->k[i].dk))) {
            vol_dev_free(*out);
            *out = NULL;
            return rc;
        }
    return 0;
}

/* ---- status ---- */

struct count {
    const char *own;
    vol_rekey_status *s;
};
static int count_one(void *arg, const char *binding, uint64_t blocks)
{
    struct count *c = arg;
    c->s->blocks += blocks;
    c->s->lineages++;
    if (strcmp(binding, c->own))
        c->s->foreign += blocks;
    return 0;
}

int vol_rekey_status_of(vol_catalog *cat, const char *owner, const char *binding, vol_rekey_status *out)
{
    struct count c = {binding, out};
    memset(out, 0, sizeof *out);
    return cat->ops->map_bindings(cat, owner, count_one, &c);
}

/* ---- volume rekey ---- */

int vol_rekey_volume(vol_store *st, const char *volume_id, uint64_t batch, vol_rekey_fn fn, void *arg, uint64_t *moved,
                     vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    vol_chunkstore *cs = vol_store_chunks(st);
    vol_volume v = {0};
    vol_keyring ring = {NULL, 0};
    vol_rekey_status status;
    vol_blocks bl = {0};
    vol_chunk *nk = NULL;
    uint64_t *freed = NULL, *gens = NULL, first = 0, done = 0, from = 0;
    uint8_t dlin[VOL_LINEAGE_LEN], *buf = NULL, *pt = NULL;
    vol_sealer *sealer[2] = {NULL, NULL}; /* open, seal (vol_reseal) */
    size_t nfreed = 0, written = 0;
    int rc, lock = -1, slock = -1;

    if (moved)
        *moved = 0;
    if (!batch)
        batch = 256;
    if (!vol_id_valid("vol-", volume_id))
        return vol_fail(e, -EINVAL, "InvalidVolumeID.Malformed", "Invalid id: \"%s\" (expecting \"vol-...\")", volume_id);
    if ((rc = cat->ops->volume_get(cat, volume_id, &v)))
        return vol_fail(e, rc, "InvalidVolume.NotFound", "The volume '%s' does not exist.", volume_id);
    if ((lock = vol_lock_volume(st, volume_id)) < 0) {
        rc = lock == -EBUSY ? vol_fail(e, -EBUSY, "VolumeInUse", "Volume %s is attached: detach it, then rekey it",
                                       volume_id)
                            : vol_fail(e, lock, "InternalError", "cannot lock volume %s: %s", volume_id, strerror(-lock));
        lock = -1;
        goto out;
    }
    if ((rc = vol_owner_keys(st, volume_id, v.lineage, &ring, e)))
        goto out;
    if ((slock = vol_store_lock_shared(st)) < 0) { /* the sweep must not take chunks not yet recorded */
        rc = vol_fail(e, slock, "InternalError", "cannot lock the volume store");
        slock = -1;
        goto out;
    }
    if (vol_lineage_bin(ring.k[0].binding, dlin) || !(nk = calloc(batch, sizeof *nk)) ||
        !(freed = calloc(batch, sizeof *freed)) || !(gens = calloc(batch, sizeof *gens)) || !(buf = malloc(VOL_CHUNK_FILE_SIZE)) ||
        !(pt = sodium_malloc(VOL_SECTOR_SIZE)) || !(sealer[0] = vol_sealer_new()) ||
        !(sealer[1] = vol_sealer_new())) {
        rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        goto out;
    }
    if ((rc = vol_rekey_status_of(cat, volume_id, ring.k[0].binding, &status)))
        goto dberr;
    for (;;) {
        bl.n = 0;
        nfreed = written = 0;
        /* (from the block after the last batch: each batch reads only its own rows, not the whole map) */
        if ((rc = cat->ops->map_foreign(cat, volume_id, ring.k[0].binding, from, batch, vol_blocks_add, &bl)))
            goto dberr;
        if (!bl.n)
            break;
        if ((rc = cat->ops->gen_reserve(cat, bl.n, &first)))
            goto dberr;
        for (size_t i = 0; i < bl.n; i++) {
            const uint8_t *sdk;
            uint8_t slin[VOL_LINEAGE_LEN];
            if ((rc = cat->ops->chunk_get(cat, bl.gen[i], &nk[i])))
                goto dberr_abort;
            if (!(sdk = vol_keyring_find(&ring, nk[i].lineage)) || vol_lineage_bin(nk[i].lineage, slin)) {
                rc = vol_fail(e, -EIO, "InternalError", "block %" PRIu64 " of %s is of lineage %s, whose key is not "
                              "loaded", bl.block[i], volume_id, nk[i].lineage);
                goto abort;
            }
            written = i + 1;
            if ((rc = vol_reseal(vol_store_chunks(st), vol_store_chunks(st), sealer, sdk, slin, ring.k[0].dk, dlin, &nk[i], first + i, buf, pt))) {
                rc = vol_fail(e, rc == -EBADMSG ? -EIO : rc, "InternalError", "block %" PRIu64 " of %s %s",
                              bl.block[i], volume_id,
                              rc == -EBADMSG ? "fails authentication (see volume fsck)" : strerror(-rc));
                goto abort;
            }
            snprintf(nk[i].lineage, sizeof nk[i].lineage, "%s", ring.k[0].binding);
        }
        for (size_t i = 0; i < bl.n; i++) /* the batch's chunks made durable together, before any row names one */
            gens[i] = first + i;
        if ((rc = cs->ops->sync_many(cs, gens, bl.n))) {
            vol_fail(e, rc, "InternalError", "syncing the rekeyed chunks of %s failed: %s", volume_id, strerror(-rc));
            goto abort;
        }
        if (fn && (rc = fn(arg, done, status.foreign, false))) {
            vol_fail(e, rc, "InternalError", "rekey of %s stopped", volume_id);
            goto abort;
        }
        if ((rc = cat->ops->begin(cat)))
            goto dberr_abort;
        for (size_t i = 0; i < bl.n && !rc; i++) {
            int64_t left = 1;
            if (!(rc = cat->ops->chunk_put(cat, &nk[i])) && !(rc = cat->ops->map_set(cat, volume_id, bl.block[i], nk[i].gen)) &&
                !(rc = cat->ops->chunk_ref(cat, bl.gen[i], -1, &left)) && left <= 0 &&
                !(rc = cat->ops->chunk_delete(cat, bl.gen[i])))
                freed[nfreed++] = bl.gen[i];
        }
        if (rc || (rc = cat->ops->commit(cat))) {
            cat->ops->rollback(cat);
            goto dberr_abort;
        }
        for (size_t i = 0; i < nfreed; i++) /* after the commit: a crash here leaves files the sweep reclaims */
            (void)cs->ops->remove(cs, freed[i]);
        done += bl.n;
        from = bl.block[bl.n - 1] + 1;
        if (moved)
            *moved = done;
        if (fn && (rc = fn(arg, done, status.foreign, true))) {
            vol_fail(e, rc, "InternalError", "rekey of %s stopped", volume_id);
            goto out;
        }
    }
    /* every block is on the volume's own lineage: it needs no other key any more */
    if ((rc = cat->ops->begin(cat)) || (rc = cat->ops->source_drop(cat, volume_id)) || (rc = cat->ops->commit(cat))) {
        cat->ops->rollback(cat);
        goto dberr;
    }
    if (done)
        EFS_INFO("volume %s: %" PRIu64 " block(s) re-encrypted under its own key", volume_id, done);
    goto out;
dberr_abort:
    vol_fail(e, rc, "InternalError", "the volume catalog refused the rekey: %s", strerror(-rc));
abort:
    for (size_t i = 0; i < written; i++)
        (void)cs->ops->remove(cs, first + i);
    goto out;
dberr:
    vol_fail(e, rc, "InternalError", "the volume catalog refused the rekey: %s", strerror(-rc));
out:
    if (slock >= 0)
        close(slock);
    if (lock >= 0)
        close(lock);
    vol_keyring_clear(&ring);
    vol_volume_clear(&v);
    vol_blocks_clear(&bl);
    free(nk);
    free(freed);
    free(gens);
    free(buf);
    if (pt)
        sodium_free(pt);
    vol_sealer_free(sealer[0]);
    vol_sealer_free(sealer[1]);
    return rc;
}
