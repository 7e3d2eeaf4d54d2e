/*
 * copy.c — copy-snapshot (store.h): under the source's own key, a new snapshot row sharing every chunk
 * (no data copied); under another key, a full copy re-encrypted under a new lineage whose data key comes
 * from the new key with context {"aws:ebs:id": NEW_SNAPSHOT_ID}, as EBS does. The source may be another
 * region's store (opened read only): its data key is opened by this region's replica when the source key
 * is a multi-Region key with one here (no call across regions), else by the source region's key service;
 * the copy is a new lineage in this store — or, by EBS's incremental rule, joins the lineage of an
 * earlier copy here (same key) of an ancestor snapshot of the same source volume: the blocks whose source
 * chunk is the ancestor's (same generation) share that copy's chunks, only the others are re-sealed; the
 * `copies` table records where each copy came from. Honest and resumable: the copy's snapshot row is
 * `pending` from its first transaction (with its lineage and a copy_progress row); then, batch by batch in
 * ascending block order, the batch's chunks are written, then synced together, and one transaction maps them and
 * advances the progress; the transaction that records the last block also marks the snapshot completed
 * and records the copy. Memory is one batch. The copier holds run/SNAP.lock for its life: a rerun of the
 * same copy (source region and snapshot, key) takes the lock of a dead copier's copy and resumes it from
 * its recorded blocks (the same SnapshotId), and refuses while the copier lives. An interrupted batch
 * leaves only orphan chunk files (vol_sweep). A batch's chunks are re-sealed by two workers (the calling
 * thread and one more, each with its own buffers and sealers) taking chunks in turn from a shared
 * counter; the catalog is read before and written after, by the calling thread alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
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

/* Write a new chunk whose image is buf (its header and area 0; area 1 stays a hole): one chunk-store
 * write per run of written sectors (ctr[i] != 0), the header in the first when sector 0 is written. */
int vol_chunk_write_image(vol_chunkstore *cs, uint64_t gen, const uint8_t *buf, const uint32_t ctr[VOL_SECTORS])
{
    int rc = 0;
    if (!ctr[0] && (rc = cs->ops->pwrite(cs, gen, buf, VOL_CHUNK_HDR, 0)))
        return rc;
    for (unsigned s = 0, e; s < VOL_SECTORS && !rc; s = e) {
        if (!ctr[s]) {
            e = s + 1;
            continue;
        }
        for (e = s + 1; e < VOL_SECTORS && ctr[e]; e++)
            ;
        if (s == 0)
            rc = cs->ops->pwrite(cs, gen, buf, vol_slot_offset(e), 0);
        else
            rc = cs->ops->pwrite(cs, gen, buf + vol_slot_offset(s), (size_t)(e - s) * VOL_SLOT_SIZE, vol_slot_offset(s));
    }
    return rc;
}

/* Re-seal one chunk (src lineage/key → dst lineage/key, new generation; see rekey.h). The new chunk is
 * built in buf over the source's image (slot i of area 0 is rewritten once sector i is opened: no later
 * sector reads it), then written in runs; the caller syncs it. */
int vol_reseal(vol_chunkstore *scs, vol_chunkstore *cs, vol_sealer *s[2], const uint8_t *sdk, const uint8_t slin[16],
               const uint8_t *ddk, const uint8_t dlin[16], vol_chunk *k, uint64_t ngen, uint8_t *buf, uint8_t *pt)
{
    uint8_t skey[32], dkey[32], nonces[VOL_SECTORS * VOL_SLOT_NONCE];
    uint64_t seals = 0;
    unsigned ver = 0;
    int rc;
    if ((rc = scs->ops->pread(scs, k->gen, buf, VOL_CHUNK_FILE_SIZE, 0)))
        return rc;
    if (vol_chunk_header_check(buf, VOL_CHUNK_HDR, slin, k->block, k->gen, &ver))
        return -EBADMSG;
    if ((rc = vol_chunk_key(sdk, slin, k->block, k->gen, skey)) || (rc = vol_chunk_key(ddk, dlin, k->block, ngen, dkey)) ||
        (rc = vol_sealer_set_key(s[0], skey)) || (rc = vol_sealer_set_key(s[1], dkey)))
        goto out;
    randombytes_buf(nonces, sizeof nonces); /* one call for the chunk's nonces, not one per sector */
    for (unsigned i = 0; i < VOL_SECTORS; i++) {
        uint8_t *slot = buf + vol_slot_offset(i); /* (read, then reused to write: area 0, counter 1) */
        uint32_t ctr;
        if ((rc = vol_chunk_image_open(s[0], NULL, slin, k->block, k->gen, ver, i, k->ctr[i], buf, pt, &ctr)))
            goto out;
        k->ctr[i] = 0;
        if (ctr == 0)
            continue; /* never written: stays a hole (not written below) */
        if ((rc = vol_sector_seal(s[1], NULL, dlin, k->block, ngen, i, 1, nonces + (size_t)i * VOL_SLOT_NONCE, pt, slot)))
            goto out;
        k->ctr[i] = 1;
        seals++;
    }
    sodium_memzero(pt, VOL_SECTOR_SIZE);
    vol_chunk_header(buf, dlin, k->block, ngen); /* (after the sectors: the source's header was checked) */
    if ((rc = vol_chunk_write_image(cs, ngen, buf, k->ctr)))
        goto out;
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

/* ---- a copy under another key, or from another region: batches, resumable ---- */

int vol_copy_lock(vol_store *st, const char *snapshot_id, long *holder)
{
    char b[32];
    int fd = vol_lock_volume(st, snapshot_id), n, rc = 0;
    ssize_t w;
    if (holder)
        *holder = 0;
    if (fd == -EBUSY) { /* alive: its pid for the message */
        char *p = vol_run_path(st, snapshot_id, ".lock");
        int r = p ? open(p, O_RDONLY | O_CLOEXEC) : -1;
        free(p);
        if (r >= 0) {
            ssize_t k = pread(r, b, sizeof b - 1, 0);
            if (k > 0 && holder) {
                b[k] = 0;
                *holder = strtol(b, NULL, 10);
            }
            close(r);
        }
        return fd;
    }
    if (fd < 0)
        return fd;
    n = snprintf(b, sizeof b, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0))
        rc = -errno;
    else if ((w = pwrite(fd, b, (size_t)n, 0)) < 0)
        rc = -errno;
    else if (w != n)
        rc = -EIO;
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

void vol_copy_unlock(vol_store *st, const char *snapshot_id, int fd, bool remove)
{
    if (fd < 0)
        return;
    if (remove) { /* while still held: a process that opened it meanwhile finds the row gone or completed */
        char *p = vol_run_path(st, snapshot_id, ".lock");
        if (p)
            unlink(p);
        free(p);
    }
    close(fd);
}

/* The copies in progress of one source that a rerun could resume: same source region, key and store. */
struct pend {
    const vol_copy_progress *want;
    vol_copy_progress *p;
    size_t n, cap;
};
static int add_pend(void *arg, const vol_copy_progress *p)
{
    struct pend *x = arg;
    if (strcmp(p->rec.source_region, x->want->rec.source_region) || strcmp(p->key_arn, x->want->key_arn) ||
        p->local != x->want->local)
        return 0;
    if (x->n == x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 4;
        vol_copy_progress *y = realloc(x->p, cap * sizeof *y);
        if (!y)
            return -ENOMEM;
        x->p = y;
        x->cap = cap;
    }
    x->p[x->n++] = *p;
    return 0;
}

/* An interrupted copy to resume, locked: 1 with *lock, *p and *cur (its pending snapshot row) filled; 0: none
 * (*running: how many are running, busy the id of one and *pid its copier); <0: error. A copy whose
 * copier is alive holds its lock, so trying the lock tells a dead copier from a live one. */
static int find_pending(vol_store *st, const vol_copy_progress *want, vol_copy_progress *p, vol_snapshot *cur, int *lock,
                        int *running, char busy[32], long *pid)
{
    vol_catalog *cat = vol_store_catalog(st);
    struct pend x = {want, NULL, 0, 0};
    int rc = cat->ops->progress_list(cat, want->rec.source_snapshot, add_pend, &x), found = 0;
    *running = 0;
    for (size_t i = 0; !rc && !found && i < x.n; i++) {
        const char *id = x.p[i].rec.snapshot;
        long holder = 0;
        int fd = vol_copy_lock(st, id, &holder);
        if (fd == -EBUSY) {
            ++*running;
            snprintf(busy, 32, "%s", id);
            *pid = holder;
            continue;
        }
        if (fd < 0) {
            rc = fd;
            break;
        }
        /* locked: read again (its copier may have completed it just before it let go) */
        if (cat->ops->progress_get(cat, id, p) == 0 && cat->ops->snapshot_get(cat, id, cur) == 0) {
            if (!strcmp(cur->state, "pending")) {
                *lock = fd;
                found = 1;
                continue;
            }
            vol_snapshot_clear(cur);
        }
        vol_copy_unlock(st, id, fd, false);
    }
    free(x.p);
    return rc ? rc : found;
}

/* In the copy's first transaction: no other copy of the same source under the same key started meanwhile. */
static int count_pend(void *arg, const vol_copy_progress *p)
{
    struct pend *x = arg;
    if (!strcmp(p->rec.source_region, x->want->rec.source_region) && !strcmp(p->key_arn, x->want->key_arn) &&
        p->local == x->want->local)
        x->n++;
    return 0;
}

/* The blocks of a batch that are the earlier copy's (incremental): share[i] its chunk, or 0 (copy it). The
 * source's chunk must be the ancestor's (the same generation: the same bytes). */
static int plan_batch(vol_catalog *scat, vol_catalog *cat, const char *anc, const char *base, const vol_blocks *pg,
                      uint64_t *share)
{
    for (size_t i = 0; i < pg->n; i++) {
        uint64_t ag = 0, bg = 0;
        int rc;
        share[i] = 0;
        if (!anc || !base)
            continue;
        if ((rc = scat->ops->map_get(scat, anc, pg->block[i], &ag)) == -ENOENT || (!rc && ag != pg->gen[i]))
            continue;
        if (rc || ((rc = cat->ops->map_get(cat, base, pg->block[i], &bg)) && rc != -ENOENT))
            return rc;
        if (!rc)
            share[i] = bg;
    }
    return 0;
}

/* One re-sealing worker's own memory: a chunk image, a sector, an opening and a sealing sealer. */
struct reseal_area {
    uint8_t *buf, *pt;
    vol_sealer *s[2];
};

static void area_free(struct reseal_area *w)
{
    free(w->buf);
    if (w->pt)
        sodium_free(w->pt);
    vol_sealer_free(w->s[0]);
    vol_sealer_free(w->s[1]);
    memset(w, 0, sizeof *w);
}

static int area_init(struct reseal_area *w)
{
    memset(w, 0, sizeof *w);
    if (!(w->buf = malloc(VOL_CHUNK_FILE_SIZE)) || !(w->pt = sodium_malloc(VOL_SECTOR_SIZE)) ||
        !(w->s[0] = vol_sealer_new()) || !(w->s[1] = vol_sealer_new())) {
        area_free(w);
        return -ENOMEM;
    }
    return 0;
}

/* A batch's re-sealing: chunks[0..n) (each opened under keys[j] and lineage sls[j], sealed into generation
 * first + j of the destination), taken in turn through next. The first failure stops both workers:
 * failed is its chunk, rc its error. */
struct reseal_batch {
    vol_chunkstore *scs, *cs;
    vol_chunk *chunks;
    const uint8_t **keys;
    const uint8_t (*sls)[VOL_LINEAGE_LEN];
    const uint8_t *ddk, *dl;
    uint64_t first;
    size_t n;
    size_t next;               /* atomic */
    int stop;                  /* atomic: a worker failed */
    pthread_mutex_t lock;      /* rc, failed */
    int rc;
    size_t failed;
};

struct reseal_worker {
    struct reseal_batch *b;
    struct reseal_area *w;
};

static void *reseal_run(void *arg)
{
    struct reseal_worker *rw = arg;
    struct reseal_batch *b = rw->b;
    for (;;) {
        size_t j;
        int rc;
        if (__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE))
            break;
        if ((j = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED)) >= b->n)
            break;
        if ((rc = vol_reseal(b->scs, b->cs, rw->w->s, b->keys[j], b->sls[j], b->ddk, b->dl, &b->chunks[j], b->first + j,
                             rw->w->buf, rw->w->pt))) {
            pthread_mutex_lock(&b->lock);
            if (!b->rc || j < b->failed) { /* the lowest chunk that failed: the same message as one thread gave */
                b->rc = rc;
                b->failed = j;
            }
            pthread_mutex_unlock(&b->lock);
            __atomic_store_n(&b->stop, 1, __ATOMIC_RELEASE);
            break;
        }
    }
    return NULL;
}

/* Re-seal the batch on two workers (one when the second thread cannot start). 0, or the failed chunk's
 * error with *failed its index. */
static int reseal_batch(struct reseal_batch *b, struct reseal_area w[2], size_t *failed)
{
    struct reseal_worker rw[2] = {{b, &w[0]}, {b, &w[1]}};
    pthread_t t;
    bool two;
    b->next = 0;
    b->stop = 0;
    b->rc = 0;
    b->failed = 0;
    two = b->n > 1 && pthread_create(&t, NULL, reseal_run, &rw[1]) == 0;
    reseal_run(&rw[0]);
    if (two)
        pthread_join(t, NULL);
    *failed = b->failed;
    return b->rc;
}

/* The full (or incremental) copy: resumes the interrupted copy of the same source under the same key if
 * there is one, else starts one (its pending snapshot row, lineage and progress in one transaction);
 * then batch by batch: the batch's chunks written and synced, then one transaction maps them, advances
 * the progress and, with the last block, completes the snapshot and records the copy. */
static int full_copy(vol_store *st, const vol_copy_args *a, vol_store *from, const vol_snapshot *src, const vol_lineage *slin,
                     const kmsc_secret *sdk, const vol_keyring *ring, const char *arn, vol_snapshot *out,
                     const vol_copy_rec *rec0, vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st), *scat = vol_store_catalog(from);
    bool cross = from != st, started = false, done = false;
    const char *src_id = src->id;
    vol_snapshot base = {0}, anc = {0}, cur = {0};
    vol_copy_progress want = {0}, p = {0};
    vol_lineage dlin = {0};
    kmsc_secret *ddk = NULL;
    vol_blocks pg = {0};
    vol_chunk *chunks = NULL;
    uint64_t first = 0, *share = NULL, batch = a->batch ? a->batch : VOL_COPY_BATCH, nc = 0, *gens = NULL, batch_cap = 0;
    uint8_t dl[16], (*sls)[VOL_LINEAGE_LEN] = NULL;
    const uint8_t **keys = NULL;
    struct reseal_area areas[2] = {{0}};
    struct reseal_batch rb = {0};
    size_t *blk_of = NULL;     /* the page index of each chunk to re-seal */
    char busy[32] = "", ancid[32] = "";
    long pid = 0;
    int rc, lock = -1, slock = -1, srclock = -1, running = 0, incremental = 0;

    want.rec = *rec0;
    snprintf(want.key_arn, sizeof want.key_arn, "%s", arn);
    want.local = !cross;
    if ((rc = find_pending(st, &want, &p, &cur, &lock, &running, busy, &pid)) < 0)
        goto dberr;
    if (rc == 1) { /* resume: the copy as it was started (its id, lineage, description, base) */
        started = true; /* pending: its lock file stays (removing it could let two copiers in) */
        vol_snapshot_clear(out);
        *out = cur;
        memset(&cur, 0, sizeof cur);
        if ((rc = vol_lineage_of(st, out->lineage, &dlin, e)) || (rc = vol_lineage_key(st, &dlin, &ddk, e)))
            goto out;
        /* the earlier copy it shares with, if still there (else the rest is copied in full, same lineage) */
        if (p.rec.base[0] && cat->ops->snapshot_get(cat, p.rec.base, &base) == 0) {
            vol_copy_rec br;
            if (cat->ops->copy_get(cat, p.rec.base, &br) == 0) {
                snprintf(ancid, sizeof ancid, "%s", br.source_snapshot);
                incremental = 1;
            }
        }
        p.runs++;
        if (a->resumed)
            a->resumed(a->progress_arg, out->id, p.blocks_done, p.blocks_total);
    } else if (running) {
        rc = vol_fail(e, -EBUSY, "IncorrectState", "The copy %s of snapshot '%s' under this key is in progress (copy-snapshot "
                      "pid %ld): wait for it to complete", busy, src_id, pid);
        goto out;
    } else {
        struct pend x = {&want, NULL, 0, 0};
        p = want;
        if ((incremental = find_base(st, from, rec0->source_region, src, arn, &base, &anc)) < 0) {
            rc = incremental;
            goto dberr;
        }
        if ((lock = vol_copy_lock(st, out->id, NULL)) < 0) { /* before its row exists: never pending unlocked */
            rc = vol_fail(e, lock, "InternalError", "cannot lock the copy %s: %s", out->id, strerror(-lock));
            goto out;
        }
        if (incremental) {
            snprintf(ancid, sizeof ancid, "%s", anc.id);
            snprintf(p.rec.base, sizeof p.rec.base, "%s", base.id);
            rc = vol_lineage_of(st, base.lineage, &dlin, e);
        } else {
            rc = vol_new_lineage(st, arn, out->id, &dlin, e);
        }
        if (rc || (rc = vol_lineage_key(st, &dlin, &ddk, e)))
            goto out;
        snprintf(out->lineage, sizeof out->lineage, "%s", dlin.id);
        snprintf(out->state, sizeof out->state, "pending");
        if ((rc = scat->ops->map_count(scat, src_id, &p.blocks_total)))
            goto dberr;
        p.runs = 1;
        p.updated = time(NULL);
        if ((rc = cat->ops->begin(cat)))
            goto dberr;
        if ((rc = cat->ops->progress_list(cat, src_id, count_pend, &x)))
            goto dberr;
        if (x.n) {
            cat->ops->rollback(cat);
            rc = vol_fail(e, -EBUSY, "IncorrectState", "Another copy of snapshot '%s' under this key started meanwhile",
                          src_id);
            goto out;
        }
        if (!cross) { /* the source is still there (its deletion waits for this transaction, then refuses) */
            vol_snapshot s2;
            if ((rc = cat->ops->snapshot_get(cat, src_id, &s2))) {
                cat->ops->rollback(cat);
                rc = vol_fail(e, rc, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", src_id);
                goto out;
            }
            vol_snapshot_clear(&s2);
        }
        if ((!incremental && (rc = cat->ops->lineage_put(cat, &dlin))) || (rc = cat->ops->snapshot_put(cat, out)) ||
            (rc = cat->ops->progress_put(cat, &p)) || (rc = cat->ops->commit(cat)))
            goto dberr;
    }
    started = true;
    if ((slock = vol_store_lock_shared(st)) < 0) { /* the sweep must not take chunks not yet recorded */
        rc = vol_fail(e, slock, "InternalError", "cannot lock the volume store");
        goto out;
    }
    if (cross && (srclock = lock_source(from)) < -1) {
        rc = vol_fail(e, srclock, "InternalError", "cannot lock the source region's volume store");
        goto out;
    }
    if (vol_lineage_bin(dlin.binding, dl) || !(chunks = calloc(batch, sizeof *chunks)) ||
        !(share = calloc(batch, sizeof *share)) || !(keys = calloc(batch, sizeof *keys)) ||
        !(sls = calloc(batch, sizeof *sls)) || !(blk_of = calloc(batch, sizeof *blk_of)) || area_init(&areas[0]) ||
        area_init(&areas[1])) {
        rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        goto out;
    }
    while (!done) {
        vol_copy_progress np = p;
        bool last;
        pg.n = 0; /* the next page of the source's map (its capacity kept: one batch) */
        nc = 0;
        if ((rc = scat->ops->map_page(scat, src_id, p.next_block, batch, vol_blocks_add, &pg)))
            goto dberr;
        last = pg.n < batch;
        if (!last && p.blocks_done + pg.n >= p.blocks_total) { /* a full last page: nothing after it? */
            vol_blocks more = {0};
            if ((rc = scat->ops->map_page(scat, src_id, pg.block[pg.n - 1] + 1, 1, vol_blocks_add, &more)))
                goto dberr;
            last = more.n == 0;
            vol_blocks_clear(&more);
        }
        if ((rc = plan_batch(scat, cat, incremental ? ancid : NULL, incremental ? base.id : NULL, &pg, share)))
            goto dberr;
        for (size_t i = 0; i < pg.n; i++)
            nc += !share[i];
        if (nc && (rc = cat->ops->gen_reserve(cat, nc, &first)))
            goto dberr;
        for (size_t i = 0, j = 0; i < pg.n; i++) { /* the catalog rows and keys, then the re-sealing */
            if (!share[i]) {
                if ((rc = scat->ops->chunk_get(scat, pg.gen[i], &chunks[j])))
                    goto dberr_batch;
                /* each chunk opens under its own lineage's key (a lazily rekeyed source names several) */
                if (!(keys[j] = cross ? sdk->data : vol_keyring_find(ring, chunks[j].lineage)) ||
                    vol_lineage_bin(chunks[j].lineage, sls[j])) {
                    rc = vol_fail(e, -EIO, "InternalError", "block %" PRIu64 " of %s: no key of it opens lineage %s",
                                  pg.block[i], src_id, chunks[j].lineage);
                    goto cleanup_batch;
                }
                blk_of[j++] = i;
            }
        }
        if (nc) {
            size_t bad = 0;
            rb = (struct reseal_batch){vol_store_chunks(from), vol_store_chunks(st), chunks, keys,
                                       (const uint8_t(*)[VOL_LINEAGE_LEN])sls, ddk->data, dl, first, (size_t)nc,
                                       0, 0, PTHREAD_MUTEX_INITIALIZER, 0, 0};
            rc = reseal_batch(&rb, areas, &bad);
            pthread_mutex_destroy(&rb.lock);
            if (rc) {
                rc = vol_fail(e, rc == -EBADMSG ? -EIO : rc, "InternalError", "block %" PRIu64 " of %s %s",
                              pg.block[blk_of[bad]], src_id, rc == -EBADMSG ? "fails authentication (see volume fsck)" : strerror(-rc));
                goto cleanup_batch;
            }
            for (uint64_t j = 0; j < nc; j++)
                snprintf(chunks[j].lineage, sizeof chunks[j].lineage, "%s", dlin.binding);
        }
        if (a->progress)
            for (size_t i = 0; i < pg.n; i++)
                a->progress(a->progress_arg, p.blocks_done + i + 1, p.blocks_total > p.blocks_done + i + 1 ?
                            p.blocks_total : p.blocks_done + i + 1);
        /* the batch's chunks made durable together (first .. first + nc - 1), then recorded */
        if (nc) {
            if (nc > batch_cap) {
                uint64_t *x = realloc(gens, nc * sizeof *gens);
                if (!x) {
                    rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
                    goto cleanup_batch;
                }
                gens = x;
                batch_cap = nc;
            }
            for (uint64_t i = 0; i < nc; i++)
                gens[i] = first + i;
            if ((rc = vol_store_chunks(st)->ops->sync_many(vol_store_chunks(st), gens, (size_t)nc))) {
                rc = vol_fail(e, rc, "InternalError", "syncing the copied chunks failed: %s", strerror(-rc));
                goto cleanup_batch;
            }
        }
        if ((rc = cat->ops->begin(cat)))
            goto dberr_batch;
        if ((rc = cat->ops->snapshot_get(cat, out->id, &cur)) || strcmp(cur.state, "pending")) {
            rc = rc == -ENOENT || !rc ? -ECANCELED : rc; /* deleted meanwhile (by a program that predates copy_progress) */
            goto dberr_batch;
        }
        vol_snapshot_clear(&cur);
        for (size_t i = 0, j = 0; i < pg.n && !rc; i++) {
            if (share[i]) { /* the earlier copy's chunk: gone since (that copy deleted) → this batch in full */
                if ((rc = cat->ops->chunk_ref(cat, share[i], 1, NULL)) == -ENOENT)
                    rc = -ESTALE;
                if (!rc)
                    rc = cat->ops->map_set(cat, out->id, pg.block[i], share[i]);
            } else if (!(rc = cat->ops->chunk_put(cat, &chunks[j]))) {
                rc = cat->ops->map_set(cat, out->id, pg.block[i], chunks[j++].gen);
            }
        }
        if (rc)
            goto dberr_batch;
        np.blocks_done += pg.n;
        np.rec.blocks_copied += nc;
        np.rec.blocks_shared += pg.n - nc;
        if (pg.n)
            np.next_block = pg.block[pg.n - 1] + 1;
        np.updated = time(NULL);
        if (last) { /* the last block: completed in this same transaction, and the copy recorded */
            snprintf(out->state, sizeof out->state, "completed");
            out->completed = time(NULL);
            if ((rc = cat->ops->snapshot_put(cat, out)) || (rc = cat->ops->copy_put(cat, &np.rec)) ||
                (rc = cat->ops->progress_drop(cat, out->id)))
                goto dberr_batch;
        } else if ((rc = cat->ops->progress_put(cat, &np))) {
            goto dberr_batch;
        }
        if ((rc = cat->ops->commit(cat))) {
            if (last)
                snprintf(out->state, sizeof out->state, "pending");
            goto dberr_batch;
        }
        p = np;
        done = last;
    }
    goto out;
dberr_batch:
    cat->ops->rollback(cat);
    vol_snapshot_clear(&cur);
    if (rc == -ESTALE)
        vol_fail(e, rc, "IncorrectState", "the earlier copy %s that this copy shares blocks with was deleted meanwhile: "
                 "run copy-snapshot again to resume %s (its other blocks are then copied in full)", base.id, out->id);
    else if (rc == -ECANCELED)
        vol_fail(e, rc, "IncorrectState", "the copy %s was deleted while it ran", out->id);
    else
        vol_fail(e, rc, "InternalError", "the volume catalog refused the copy: %s", strerror(-rc));
cleanup_batch:
    for (uint64_t i = 0; i < nc; i++) /* this batch's files; the batches recorded stay (a rerun resumes) */
        (void)vol_store_chunks(st)->ops->remove(vol_store_chunks(st), first + i);
    goto out;
dberr:
    cat->ops->rollback(cat);
    vol_fail(e, rc, "InternalError", "the volume catalog refused the copy: %s", strerror(-rc));
out:
    if (rc && started && rc != -ECANCELED) { /* say what stays behind */
        size_t n = strlen(e ? e->message : "");
        if (e && n + 1 < sizeof e->message)
            snprintf(e->message + n, sizeof e->message - n, " (the copy %s stays pending with %" PRIu64 " of %" PRIu64
                     " blocks: rerun copy-snapshot to resume it, or delete-snapshot it)", out->id, p.blocks_done,
                     p.blocks_total);
    }
    if (srclock >= 0)
        close(srclock);
    if (slock >= 0)
        close(slock);
    /* completed (or never started, or deleted): the lock file goes; else a rerun takes it */
    vol_copy_unlock(st, out->id, lock, !rc || !started || rc == -ECANCELED);
    kmsc_secret_free(ddk);
    vol_lineage_clear(&dlin);
    vol_snapshot_clear(&base);
    vol_snapshot_clear(&anc);
    vol_snapshot_clear(&cur);
    vol_blocks_clear(&pg);
    free(share);
    free(gens);
    free(chunks);
    free(keys);
    free(sls);
    free(blk_of);
    area_free(&areas[0]);
    area_free(&areas[1]);
    return rc;
}

int vol_copy_snapshot_from(vol_store *st, const vol_copy_args *a, vol_snapshot *out, vol_err *e)
{
    vol_store *from = a->src ? a->src : st;
    vol_catalog *cat = vol_store_catalog(st), *scat = vol_store_catalog(from);
    const char *src_id = a->src_id;
    bool cross = from != st;
    vol_snapshot src;
    vol_copy_rec rec = {0};
    vol_lineage slin = {0};
    kmsc_secret *sdk = NULL;
    vol_keyring ring = {NULL, 0};
    char *arn = NULL;
    uint64_t nblocks = 0;
    int rc;

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
    if ((rc = scat->ops->map_count(scat, src_id, &nblocks)))
        goto dberr;
    if (a->rewrap_only && (!arn || !strcmp(arn, slin.key_arn))) {
        rc = vol_fail(e, -EINVAL, "InvalidParameterCombination", "--rewrap-only needs a --kms-key-id other than the "
                      "source's key");
        goto out;
    }
    if (a->rewrap_only) {
        rec.blocks_shared = nblocks;
        rc = rewrap(st, &slin, arn, src_id, out, &rec, e);
        goto out;
    }
    if (!cross && (!arn || !strcmp(arn, slin.key_arn))) {
        /* the same key in the same store: share every chunk, copy nothing */
        snprintf(out->lineage, sizeof out->lineage, "%s", src.lineage);
        out->completed = time(NULL);
        rec.blocks_shared = nblocks;
        if ((rc = cat->ops->begin(cat)) || (rc = cat->ops->snapshot_put(cat, out)) ||
            (rc = cat->ops->map_copy(cat, src_id, out->id)) || (rc = cat->ops->copy_put(cat, &rec)) ||
            (rc = cat->ops->commit(cat)))
            goto dberr;
        goto out;
    }
    /* another key or another region: re-sealed into a new lineage, or incrementally into an earlier
     * copy's, batch by batch; an interrupted one is resumed */
    rc = full_copy(st, a, from, &src, &slin, sdk, &ring, arn, out, &rec, e);
    goto out;
dberr:
    cat->ops->rollback(cat);
    vol_fail(e, rc, "InternalError", "the volume catalog refused the copy: %s", strerror(-rc));
out:
    if (rc)
        vol_snapshot_clear(out);
    kmsc_secret_free(sdk);
    vol_keyring_clear(&ring);
    vol_lineage_clear(&slin);
    vol_snapshot_clear(&src);
    free(arn);
    return rc;
}

int vol_copy_snapshot(vol_store *st, const char *src_id, const char *kms_key_id, bool rewrap_only,
                      const char *description, vol_snapshot *out, vol_err *e)
{
    vol_copy_args a = {.src_id = src_id, .kms_key_id = kms_key_id, .rewrap_only = rewrap_only, .description = description};
    return vol_copy_snapshot_from(st, &a, out, e);
}
