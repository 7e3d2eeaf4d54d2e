/*
 * dev.c — the volume data path (dev.h): an in-memory table of the blocks touched so far (loaded lazily
 * from the catalog), sector sealing through sector.c, chunk bytes through the chunk-store interface and
 * durability through one catalog transaction per flush. Crash rules: a chunk's bytes are durable before
 * any catalog row names it; a chunk is freed only after the transaction that dropped its last reference
 * (a crash in between leaves an orphan file for vol_sweep); a shared chunk is never written.
 * Lazy rekey: a block whose chunk is bound to another lineage (a volume restored under another key) is
 * read with that lineage's key (vol_dev_add_key) and is never written: its first write copies it up
 * into a new chunk of the volume's own lineage, re-sealing the rest of the block under the own key.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dev.h"
#include "common/log.h"
#include "sector.h"
#include "store.h"

struct blk {
    struct blk *next;          /* hash chain */
    uint64_t block;
    uint64_t gen;              /* 0: unmapped (reads as zeros) */
    uint64_t old_gen;          /* recorded chunk this block pointed at before (unreferenced at flush) */
    uint64_t seals;
    int64_t refs;              /* as loaded; >1: shared with a snapshot or a restored volume */
    bool shared, dirty, fresh; /* fresh: gen has no catalog row yet */
    bool ours;                 /* gen was made by this device (this session) */
    unsigned key;              /* the chunk's key: 0 the volume's own lineage, i ≥ 1 d->extra.k[i - 1] */
    uint32_t ctr[VOL_SECTORS]; /* each sector's newest write counter */
};

struct vol_dev {
    pthread_mutex_t lock;
    vol_catalog *cat;
    vol_chunkstore *cs;
    vol_volume vol;
    uint8_t lineage[VOL_LINEAGE_LEN];   /* the sector binding */
    char binding[2 * VOL_LINEAGE_LEN + 1];
    uint8_t *dk;               /* 32 bytes, locked memory */
    vol_keyring extra;         /* other lineages' keys: chunks not yet moved to this lineage (lazy rekey) */
    uint64_t size;
    uint64_t seal_limit;
    bool unclean;              /* the last session died: its keys' seal counts are not exact */
    struct blk **buckets;
    size_t nbuckets, nblks;
    struct blk **dirty;
    size_t ndirty, capdirty;
    uint64_t *junk;            /* fresh generations abandoned before they were recorded: removed at flush */
    size_t njunk, capjunk;
    uint64_t gen_next, gen_end;
    vol_sealer *sealer;
};

static size_t hash_of(uint64_t b, size_t n) { return (size_t)((b * 0x9E3779B97F4A7C15ull) >> 20) & (n - 1); }

static int push_u64(uint64_t **a, size_t *n, size_t *cap, uint64_t v)
{
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 32;
        uint64_t *x = realloc(*a, c * sizeof *x);
        if (!x)
            return -ENOMEM;
        *a = x;
        *cap = c;
    }
    (*a)[(*n)++] = v;
    return 0;
}

static int mark_dirty(vol_dev *d, struct blk *b)
{
    if (b->dirty)
        return 0;
    if (d->ndirty == d->capdirty) {
        size_t c = d->capdirty ? 2 * d->capdirty : 64;
        struct blk **x = realloc(d->dirty, c * sizeof *x);
        if (!x)
            return -ENOMEM;
        d->dirty = x;
        d->capdirty = c;
    }
    d->dirty[d->ndirty++] = b;
    b->dirty = true;
    return 0;
}

static int grow(vol_dev *d)
{
    size_t n = d->nbuckets * 2;
    struct blk **nb = calloc(n, sizeof *nb);
    if (!nb)
        return -ENOMEM;
    for (size_t i = 0; i < d->nbuckets; i++)
        for (struct blk *b = d->buckets[i], *next; b; b = next) {
            next = b->next;
            b->next = nb[hash_of(b->block, n)];
            nb[hash_of(b->block, n)] = b;
        }
    free(d->buckets);
    d->buckets = nb;
    d->nbuckets = n;
    return 0;
}

/* The block's entry, loaded from the catalog on first use. */
static int lookup(vol_dev *d, uint64_t block, struct blk **out)
{
    struct blk *b;
    uint64_t gen = 0;
    int rc;
    for (b = d->buckets[hash_of(block, d->nbuckets)]; b; b = b->next)
        if (b->block == block) {
            *out = b;
            return 0;
        }
    if (!(b = calloc(1, sizeof *b)))
        return -ENOMEM;
    b->block = block;
    rc = d->cat->ops->map_get(d->cat, d->vol.id, block, &gen);
    if (rc == 0) {
        vol_chunk k;
        if ((rc = d->cat->ops->chunk_get(d->cat, gen, &k))) {
            EFS_ERROR("volume %s: block %" PRIu64 " names chunk %" PRIu64 ", which the catalog lacks", d->vol.id, block, gen);
            free(b);
            return -EIO;
        }
        if (strcmp(k.lineage, d->binding)) {
            size_t i = 0;
            while (i < d->extra.n && strcmp(d->extra.k[i].binding, k.lineage))
                i++;
            if (i == d->extra.n) {
                EFS_ERROR("volume %s: block %" PRIu64 " names chunk %" PRIu64 " of lineage %s, whose key this "
                          "attachment lacks", d->vol.id, block, gen, k.lineage);
                free(b);
                return -EIO;
            }
            b->key = (unsigned)i + 1;
        }
        b->gen = gen;
        b->refs = k.refs;
        b->shared = k.refs > 1;
        b->seals = k.seals;
        memcpy(b->ctr, k.ctr, sizeof b->ctr);
    } else if (rc != -ENOENT) {
        free(b);
        return rc;
    }
    if (d->nblks >= d->nbuckets && grow(d)) {
        free(b);
        return -ENOMEM;
    }
    b->next = d->buckets[hash_of(block, d->nbuckets)];
    d->buckets[hash_of(block, d->nbuckets)] = b;
    d->nblks++;
    *out = b;
    return 0;
}

static int new_gen(vol_dev *d, uint64_t *gen)
{
    if (d->gen_next == d->gen_end) {
        int rc = d->cat->ops->gen_reserve(d->cat, 64, &d->gen_next);
        if (rc)
            return rc;
        d->gen_end = d->gen_next + 64;
    }
    *gen = d->gen_next++;
    return 0;
}

static int chunk_key(vol_dev *d, uint64_t block, uint64_t gen, uint8_t key[32])
{
    return vol_chunk_key(d->dk, d->lineage, block, gen, key);
}

/* The binding and chunk key of b's current chunk (its own lineage's or a source lineage's). */
static int blk_key(vol_dev *d, struct blk *b, uint8_t lin[VOL_LINEAGE_LEN], uint8_t key[32])
{
    if (b->key == 0) {
        memcpy(lin, d->lineage, VOL_LINEAGE_LEN);
        return chunk_key(d, b->block, b->gen, key);
    }
    if (vol_lineage_bin(d->extra.k[b->key - 1].binding, lin))
        return -EIO;
    return vol_chunk_key(d->extra.k[b->key - 1].dk, lin, b->block, b->gen, key);
}

static int start_chunk(vol_dev *d, uint64_t block, uint64_t *gen)
{
    uint8_t hdr[VOL_CHUNK_HDR];
    int rc = new_gen(d, gen);
    if (rc)
        return rc;
    vol_chunk_header(hdr, d->lineage, block, *gen);
    return d->cs->ops->pwrite(d->cs, *gen, hdr, sizeof hdr, 0);
}

/* Read and open sectors [s0, s0+n) of b's chunk into pt (n·4096 bytes). */
static int read_sectors(vol_dev *d, struct blk *b, unsigned s0, unsigned n, uint8_t *pt)
{
    uint8_t key[32], hdr[VOL_CHUNK_HDR], lin[VOL_LINEAGE_LEN];
    uint8_t *slots = malloc((size_t)n * VOL_SLOT_SIZE);
    int rc;
    if (!slots)
        return -ENOMEM;
    if ((rc = blk_key(d, b, lin, key)))
        goto out;
    if ((rc = d->cs->ops->pread(d->cs, b->gen, hdr, sizeof hdr, 0)) ||
        (rc = d->cs->ops->pread(d->cs, b->gen, slots, (size_t)n * VOL_SLOT_SIZE, vol_slot_offset(s0))))
        goto out;
    if (vol_chunk_header_check(hdr, sizeof hdr, lin, b->block, b->gen)) {
        EFS_ERROR("volume %s: block %" PRIu64 " (chunk %" PRIu64 "): the chunk header is damaged or not this chunk's",
                  d->vol.id, b->block, b->gen);
        rc = -EIO;
        goto out;
    }
    for (unsigned i = 0; i < n; i++) {
        uint32_t got = 0;
        if (vol_sector_open(d->sealer, key, lin, b->block, b->gen, s0 + i, b->ctr[s0 + i],
                            slots + (size_t)i * VOL_SLOT_SIZE, pt + (size_t)i * VOL_SECTOR_SIZE, &got)) {
            EFS_ERROR("volume %s: block %" PRIu64 " (chunk %" PRIu64 ") sector %u failed authentication "
                      "(modified, moved or rolled back)", d->vol.id, b->block, b->gen, s0 + i);
            rc = -EIO;
            break;
        }
        if (got > b->ctr[s0 + i]) { /* written after the last flush by a daemon that died: keep it */
            b->ctr[s0 + i] = got;
            if ((rc = mark_dirty(d, b)))
                break;
        }
    }
out:
    sodium_memzero(key, sizeof key);
    free(slots);
    return rc;
}

/* Move b to a fresh chunk generation (copy-on-write, or a key that has sealed enough): every sector
 * not in `covered` is re-sealed from the old chunk. */
static int copy_up(vol_dev *d, struct blk *b, const bool *covered)
{
    uint8_t key[32], *pt = NULL, *slot = NULL;
    uint32_t ctr[VOL_SECTORS] = {0};
    uint64_t gen;
    int rc = start_chunk(d, b->block, &gen);
    if (rc)
        return rc;
    if (!(pt = sodium_malloc(VOL_SECTOR_SIZE)) || !(slot = malloc(VOL_SLOT_SIZE))) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = chunk_key(d, b->block, gen, key)))
        goto out;
    for (unsigned s = 0; s < VOL_SECTORS; s++) {
        if (covered[s] || b->ctr[s] == 0)
            continue;
        if ((rc = read_sectors(d, b, s, 1, pt)) ||
            (rc = vol_sector_seal(d->sealer, key, d->lineage, b->block, gen, s, 1, NULL, pt, slot)) ||
            (rc = d->cs->ops->pwrite(d->cs, gen, slot, VOL_SLOT_SIZE, vol_slot_offset(s))))
            goto out;
        ctr[s] = 1;
    }
    if (b->fresh)
        rc = push_u64(&d->junk, &d->njunk, &d->capjunk, b->gen);
    else
        b->old_gen = b->gen;
    if (rc)
        goto out;
    b->gen = gen;
    b->key = 0;
    b->fresh = b->ours = true;
    b->shared = false;
    b->refs = 1;
    b->seals = 0;
    for (unsigned s = 0; s < VOL_SECTORS; s++)
        b->seals += ctr[s];
    memcpy(b->ctr, ctr, sizeof ctr);
    rc = mark_dirty(d, b);
out:
    sodium_memzero(key, sizeof key);
    if (pt)
        sodium_free(pt);
    free(slot);
    if (rc)
        (void)d->cs->ops->remove(d->cs, gen);
    return rc;
}

/* Write [off, off+n) inside one block. */
static int write_block(vol_dev *d, uint64_t block, unsigned off, const uint8_t *src, size_t n)
{
    unsigned s0 = off / VOL_SECTOR_SIZE, s1 = (unsigned)((off + n + VOL_SECTOR_SIZE - 1) / VOL_SECTOR_SIZE);
    unsigned ns = s1 - s0;
    bool covered[VOL_SECTORS] = {false};
    uint8_t key[32], *pt = NULL, *slots = NULL;
    struct blk *b;
    int rc = lookup(d, block, &b);
    if (rc)
        return rc;
    for (unsigned s = s0; s < s1; s++)
        covered[s] = (uint64_t)s * VOL_SECTOR_SIZE >= off && (uint64_t)(s + 1) * VOL_SECTOR_SIZE <= off + n;
    if (b->gen == 0) {
        uint64_t gen;
        if ((rc = start_chunk(d, block, &gen)))
            return rc;
        b->gen = gen;
        b->key = 0;
        b->fresh = b->ours = true;
        b->shared = false;
        b->refs = 1;
        b->seals = 0;
        memset(b->ctr, 0, sizeof b->ctr);
        if ((rc = mark_dirty(d, b)))
            return rc;
    } else if (b->shared || b->key || b->seals + ns > d->seal_limit || (d->unclean && !b->ours)) {
        /* shared: copy on write. Another lineage's chunk: copy up into this lineage (lazy rekey). The seal limit, or a key the dead last session may have used beyond its
         * recorded count: a fresh generation, so no key ever seals more than the limit (docs/DESIGN.md). */
        if ((rc = copy_up(d, b, covered)))
            return rc;
    }
    if (!(pt = sodium_malloc((size_t)ns * VOL_SECTOR_SIZE)) || !(slots = malloc((size_t)ns * VOL_SLOT_SIZE))) {
        rc = -ENOMEM;
        goto out;
    }
    /* partial sectors at either end: read-modify-write */
    if (!covered[s0] && (rc = read_sectors(d, b, s0, 1, pt)))
        goto out;
    if (s1 - 1 != s0 && !covered[s1 - 1] && (rc = read_sectors(d, b, s1 - 1, 1, pt + (size_t)(ns - 1) * VOL_SECTOR_SIZE)))
        goto out;
    memcpy(pt + (off - (size_t)s0 * VOL_SECTOR_SIZE), src, n);
    if ((rc = chunk_key(d, block, b->gen, key)))
        goto out;
    for (unsigned i = 0; i < ns; i++)
        if ((rc = vol_sector_seal(d->sealer, key, d->lineage, block, b->gen, s0 + i, b->ctr[s0 + i] + 1, NULL,
                                  pt + (size_t)i * VOL_SECTOR_SIZE, slots + (size_t)i * VOL_SLOT_SIZE)))
            goto out;
    if ((rc = d->cs->ops->pwrite(d->cs, b->gen, slots, (size_t)ns * VOL_SLOT_SIZE, vol_slot_offset(s0))))
        goto out;
    for (unsigned i = 0; i < ns; i++)
        b->ctr[s0 + i]++;
    b->seals += ns;
    rc = mark_dirty(d, b);
out:
    sodium_memzero(key, sizeof key);
    if (pt)
        sodium_free(pt);
    free(slots);
    return rc;
}

static int read_block(vol_dev *d, uint64_t block, unsigned off, uint8_t *dst, size_t n)
{
    unsigned s0 = off / VOL_SECTOR_SIZE, s1 = (unsigned)((off + n + VOL_SECTOR_SIZE - 1) / VOL_SECTOR_SIZE);
    uint8_t *pt;
    struct blk *b;
    int rc = lookup(d, block, &b);
    if (rc)
        return rc;
    if (b->gen == 0) {
        memset(dst, 0, n);
        return 0;
    }
    if (!(pt = sodium_malloc((size_t)(s1 - s0) * VOL_SECTOR_SIZE)))
        return -ENOMEM;
    rc = read_sectors(d, b, s0, s1 - s0, pt);
    if (!rc)
        memcpy(dst, pt + (off - (size_t)s0 * VOL_SECTOR_SIZE), n);
    sodium_free(pt);
    return rc;
}

typedef int (*block_fn)(vol_dev *d, uint64_t block, unsigned off, uint8_t *p, size_t n);

static int each_block(vol_dev *d, uint8_t *p, size_t n, uint64_t off, block_fn fn)
{
    int rc = 0;
    if (off > d->size || n > d->size - off)
        return -ENOSPC;
    pthread_mutex_lock(&d->lock);
    while (n && !rc) {
        uint64_t block = off / VOL_BLOCK_SIZE;
        unsigned in = (unsigned)(off % VOL_BLOCK_SIZE);
        size_t m = VOL_BLOCK_SIZE - in < n ? VOL_BLOCK_SIZE - in : n;
        rc = fn(d, block, in, p, m);
        p += m;
        off += m;
        n -= m;
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int vol_dev_read(vol_dev *d, void *buf, size_t n, uint64_t off) { return each_block(d, buf, n, off, read_block); }

static int write_block_cb(vol_dev *d, uint64_t block, unsigned off, uint8_t *p, size_t n)
{
    return write_block(d, block, off, p, n);
}
int vol_dev_write(vol_dev *d, const void *buf, size_t n, uint64_t off)
{
    return each_block(d, (uint8_t *)(uintptr_t)buf, n, off, write_block_cb);
}

static int discard_block(vol_dev *d, uint64_t block, unsigned off, uint8_t *unused, size_t n)
{
    struct blk *b;
    int rc = lookup(d, block, &b);
    if (rc || b->gen == 0)
        return rc;
    if (n < VOL_BLOCK_SIZE) { /* part of a block: zeros */
        uint8_t *z = calloc(1, n);
        if (!z)
            return -ENOMEM;
        rc = write_block(d, block, off, z, n);
        free(z);
        return rc;
    }
    if (b->fresh)
        rc = push_u64(&d->junk, &d->njunk, &d->capjunk, b->gen);
    else
        b->old_gen = b->gen;
    if (rc)
        return rc;
    b->gen = 0;
    b->key = 0;
    b->fresh = false;
    memset(b->ctr, 0, sizeof b->ctr);
    return mark_dirty(d, b);
}

int vol_dev_discard(vol_dev *d, uint64_t off, uint64_t len)
{
    if (len > SIZE_MAX)
        return -EINVAL;
    return each_block(d, NULL, (size_t)len, off, discard_block);
}

static int flush_locked(vol_dev *d)
{
    vol_catalog *cat = d->cat;
    uint64_t *freed = NULL;
    size_t nfreed = 0, capfreed = 0;
    int rc = 0;
    if (!d->ndirty && !d->njunk)
        return 0;
    for (size_t i = 0; i < d->ndirty; i++)
        if (d->dirty[i]->gen && (rc = d->cs->ops->sync(d->cs, d->dirty[i]->gen)))
            return rc;
    if ((rc = cat->ops->begin(cat)))
        return rc;
    for (size_t i = 0; i < d->ndirty && !rc; i++) {
        struct blk *b = d->dirty[i];
        if (b->gen) {
            vol_chunk k;
            memset(&k, 0, sizeof k);
            k.gen = b->gen;
            snprintf(k.lineage, sizeof k.lineage, "%s", d->binding);
            k.block = b->block;
            k.refs = 1;
            if (!b->fresh && (rc = cat->ops->chunk_get(cat, b->gen, &k)))
                break;
            k.seals = b->seals;
            memcpy(k.ctr, b->ctr, sizeof k.ctr);
            if ((rc = cat->ops->chunk_put(cat, &k)))
                break;
            if (b->fresh)
                rc = cat->ops->map_set(cat, d->vol.id, b->block, b->gen);
        } else {
            rc = cat->ops->map_del(cat, d->vol.id, b->block);
        }
        if (!rc && b->old_gen) {
            int64_t left = 0;
            if (!(rc = cat->ops->chunk_ref(cat, b->old_gen, -1, &left)) && left <= 0 &&
                !(rc = cat->ops->chunk_delete(cat, b->old_gen)))
                rc = push_u64(&freed, &nfreed, &capfreed, b->old_gen);
        }
    }
    if (rc || (rc = cat->ops->commit(cat))) {
        cat->ops->rollback(cat);
        free(freed);
        EFS_ERROR("volume %s: the catalog refused the flush: %s", d->vol.id, strerror(-rc));
        return rc == -EEXIST ? -EIO : rc;
    }
    for (size_t i = 0; i < d->ndirty; i++) {
        struct blk *b = d->dirty[i];
        b->dirty = b->fresh = false;
        b->old_gen = 0;
    }
    d->ndirty = 0;
    for (size_t i = 0; i < nfreed; i++)
        (void)d->cs->ops->remove(d->cs, freed[i]);
    for (size_t i = 0; i < d->njunk; i++)
        (void)d->cs->ops->remove(d->cs, d->junk[i]);
    d->njunk = 0;
    free(freed);
    return 0;
}

int vol_dev_flush(vol_dev *d)
{
    int rc;
    pthread_mutex_lock(&d->lock);
    rc = flush_locked(d);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int vol_dev_snapshot(vol_dev *d, const char *description, const char *tags, vol_snapshot *out, vol_err *e)
{
    int rc;
    pthread_mutex_lock(&d->lock); /* no write runs while we flush and record */
    rc = flush_locked(d);
    if (rc) {
        vol_fail(e, rc, "InternalError", "flushing volume %s failed: %s", d->vol.id, strerror(-rc));
    } else if (!(rc = vol_snapshot_record(d->cat, &d->vol, description, tags, out, e))) {
        for (size_t i = 0; i < d->nbuckets; i++)
            for (struct blk *b = d->buckets[i]; b; b = b->next)
                if (b->gen)
                    b->shared = true, b->refs++;
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

void vol_dev_set_seal_limit(vol_dev *d, uint64_t limit) { d->seal_limit = limit; }

int vol_dev_add_key(vol_dev *d, const char *binding_hex, const uint8_t dk[32])
{
    int rc;
    if (!strcmp(binding_hex, d->binding) || vol_keyring_find(&d->extra, binding_hex))
        return 0;
    pthread_mutex_lock(&d->lock);
    rc = vol_keyring_add(&d->extra, binding_hex, NULL, dk);
    pthread_mutex_unlock(&d->lock);
    return rc;
}
void vol_dev_set_unclean(vol_dev *d) { d->unclean = true; }
uint64_t vol_dev_size(const vol_dev *d) { return d->size; }

int vol_dev_open(vol_catalog *cat, vol_chunkstore *cs, const vol_volume *v, const char *binding_hex,
                 const uint8_t dk[32], vol_dev **out)
{
    vol_dev *d = calloc(1, sizeof *d);
    *out = NULL;
    if (!d)
        return -ENOMEM;
    pthread_mutex_init(&d->lock, NULL);
    d->cat = cat;
    d->cs = cs;
    d->vol = *v;
    d->vol.tags = NULL;
    d->size = v->size_gib << 30;
    d->seal_limit = VOL_SEAL_LIMIT;
    d->nbuckets = 1024;
    snprintf(d->binding, sizeof d->binding, "%s", binding_hex);
    if (vol_lineage_bin(binding_hex, d->lineage) || !(d->buckets = calloc(d->nbuckets, sizeof *d->buckets)) ||
        !(d->dk = sodium_malloc(32)) || !(d->sealer = vol_sealer_new())) {
        vol_dev_free(d);
        return -ENOMEM;
    }
    memcpy(d->dk, dk, 32);
    *out = d;
    return 0;
}

void vol_dev_free(vol_dev *d)
{
    if (!d)
        return;
    for (size_t i = 0; d->buckets && i < d->nbuckets; i++)
        for (struct blk *b = d->buckets[i], *next; b; b = next) {
            next = b->next;
            free(b);
        }
    free(d->buckets);
    free(d->dirty);
    free(d->junk);
    vol_keyring_clear(&d->extra);
    if (d->dk)
        sodium_free(d->dk);
    vol_sealer_free(d->sealer);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

/* ---- fsck ---- */

struct check {
    vol_catalog *cat;
    vol_chunkstore *cs;
    const char *owner;
    const vol_keyring *keys;
    FILE *out;
    vol_sealer *sealer;
    uint8_t *buf, *pt;
    int bad;
};

static int check_one(void *arg, uint64_t block, uint64_t gen)
{
    struct check *c = arg;
    vol_chunk k;
    uint8_t key[32], lin[VOL_LINEAGE_LEN];
    const uint8_t *dk;
    unsigned badsec = 0, first = 0;
    if (c->cat->ops->chunk_get(c->cat, gen, &k)) {
        fprintf(c->out, "%s: block %" PRIu64 ": chunk %" PRIu64 " is missing from the catalog\n", c->owner, block, gen);
        c->bad++;
        return 0;
    }
    if (!(dk = vol_keyring_find(c->keys, k.lineage)) || vol_lineage_bin(k.lineage, lin)) {
        fprintf(c->out, "%s: block %" PRIu64 ": chunk %" PRIu64 " is of lineage %s, which no key of %s opens\n",
                c->owner, block, gen, k.lineage, c->owner);
        c->bad++;
        return 0;
    }
    if (c->cs->ops->pread(c->cs, gen, c->buf, VOL_CHUNK_FILE_SIZE, 0) ||
        vol_chunk_header_check(c->buf, VOL_CHUNK_HDR, lin, block, gen)) {
        fprintf(c->out, "%s: block %" PRIu64 ": chunk %" PRIu64 " is missing or its header is not this chunk's\n",
                c->owner, block, gen);
        c->bad++;
        return 0;
    }
    if (vol_chunk_key(dk, lin, block, gen, key))
        return -EIO;
    for (unsigned s = 0; s < VOL_SECTORS; s++) {
        uint32_t got;
        if (vol_sector_open(c->sealer, key, lin, block, gen, s, k.ctr[s], c->buf + vol_slot_offset(s), c->pt, &got)) {
            if (!badsec++)
                first = s;
        }
    }
    sodium_memzero(key, sizeof key);
    if (badsec) {
        fprintf(c->out, "%s: block %" PRIu64 " (chunk %" PRIu64 "): %u sector(s) fail authentication, first %u "
                "(modified, moved or rolled back)\n", c->owner, block, gen, badsec, first);
        c->bad++;
    }
    return 0;
}

int vol_check(vol_catalog *cat, vol_chunkstore *cs, const char *owner, const char *lineage_hex, const uint8_t dk[32],
              FILE *out)
{
    vol_keyring r = {NULL, 0};
    int rc = vol_keyring_add(&r, lineage_hex, NULL, dk);
    if (!rc)
        rc = vol_check_keys(cat, cs, owner, &r, out);
    vol_keyring_clear(&r);
    return rc;
}

int vol_check_keys(vol_catalog *cat, vol_chunkstore *cs, const char *owner, const vol_keyring *keys, FILE *out)
{
    struct check c = {cat, cs, owner, keys, out, NULL, NULL, NULL, 0};
    int rc;
    c.sealer = vol_sealer_new();
    c.buf = malloc(VOL_CHUNK_FILE_SIZE);
    c.pt = sodium_malloc(VOL_SECTOR_SIZE);
    if (!c.sealer || !c.buf || !c.pt)
        rc = -ENOMEM;
    else
        rc = cat->ops->map_list(cat, owner, check_one, &c);
    vol_sealer_free(c.sealer);
    free(c.buf);
    if (c.pt)
        sodium_free(c.pt);
    return rc ? rc : c.bad ? 1 : 0;
}
