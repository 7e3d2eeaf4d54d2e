/*
 * dev.c — the volume data path (dev.h): an in-memory table of the blocks touched so far (loaded lazily
 * from the catalog), sector sealing through sector.c, chunk bytes through the chunk-store interface and
 * durability through one catalog transaction per flush. Crash rules: a chunk's bytes are durable before
 * any catalog row names it; a chunk is freed only after the transaction that dropped its last reference
 * (a crash in between leaves an orphan file for vol_sweep); a shared chunk is never written.
 * Lazy rekey: a block whose chunk is bound to another lineage (a volume restored under another key) is
 * read with that lineage's key (vol_dev_add_key) and is never written: its first write copies it up
 * into a new chunk of the volume's own lineage, re-sealing the rest of the block under the own key.
 * Chunk versions (sector.h): new chunks are version 2, whose rewrites never touch the slot of a sector's
 * last flushed version (a power cut tearing a rewrite leaves that version readable); a version-1 chunk
 * (written before) is read as it is and never written: its block's first write copies it up.
 * Reads of one slot: a version-2 sector's first read in a session opens both slots (a dead daemon may have
 * left the newer one); after it, and for what the session wrote or made, the device knows which slot
 * holds the newest version (known[] in struct blk) and reads only that one (sector.h,
 * vol_chunk_sector_open_one). Chunk keys are cached (locked memory), so a read derives none.
 *
 * Locking. I/O on different blocks runs in parallel, and reads of one block run in parallel with each
 * other; chunk-file I/O and sealing run under a block's lock only. Lock order (a thread that holds one
 * takes only locks further down the list, and never one it already holds):
 *   1. d->flush_lock  mutex: one flush or snapshot at a time (held across both of its phases).
 *   2. d->gate        rwlock, writers first. Shared: each read, write and discard request, across all of
 *                     its blocks. Exclusive: a flush's commit, a snapshot, add_key and the test hooks — the
 *                     device is quiescent then (no request is between its lookup and its reply), so every
 *                     write acknowledged before is complete and none after has started.
 *   3. b->lock        rwlock per block, writers first. Shared: a read of the block. Exclusive: a write or
 *                     discard of it — read-modify-write, copy-up, the chunk-file writes. Guards every field of
 *                     struct blk but `block` and `next` (fixed once in the table) and `dirty` (table lock).
 *                     What a reader changes is atomic: raising a sector's counter to a newer write a dead
 *                     daemon left (a max on ctr[]) and hdr_ok with ver (the chunk header's version: stored
 *                     before hdr_ok with release, read after it with acquire; writers, exclusive, use plain
 *                     accesses).
 *   4. d->tlock       mutex: the block table, the dirty list and b->dirty, the junk list.
 *      d->glock       mutex: the reserved generations (gen_next, gen_end). Never held with tlock.
 *   5. d->clock       mutex: the catalog handle (one thread at a time, catalog.h).
 *   6. d->plock       mutex: the pool of work areas (a leaf; the chunk store's own lock is a leaf too).
 *      d->klock       mutex: the chunk-key cache (a leaf).
 * Blocks are never removed from the table while the device lives, so a struct blk found under tlock stays
 * valid after it is released. Under the exclusive gate every field may be read and written (no other
 * thread holds a block); the flush and snapshot code still takes tlock and clock where it touches them.
 * A flush syncs the dirty chunks first with I/O still running (phase 1: gate shared; a few passes while
 * writes keep changing many), then, under the exclusive gate, syncs what is still unsynced and commits
 * (phase 2); each block's write sequence number (wseq) tells which chunks must be synced again.
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

/* Sectors a work area holds: the slots read or written by one chunk-store call. */
#define PIECE 32u
/* Chunk keys cached (32 bytes each, locked memory: 128 KiB), the keys of 2 GiB of a volume's blocks. */
#define KEY_CACHE 4096u

struct blk {
    struct blk *next;          /* hash chain (tlock) */
    uint64_t block;
    pthread_rwlock_t lock;
    uint64_t gen;              /* 0: unmapped (reads as zeros) */
    uint64_t old_gen;          /* recorded chunk this block pointed at before (unreferenced at flush) */
    uint64_t seals;
    uint64_t wseq;             /* bumped by every change of the chunk's bytes or of gen (flush phase 2) */
    uint64_t hdr_ok;           /* the gen whose chunk header was checked or written this session (atomic) */
    unsigned ver;              /* that chunk's version (atomic; valid while hdr_ok == gen) */
    int64_t refs;              /* as loaded; >1: shared with a snapshot or a restored volume */
    bool shared, fresh;        /* fresh: gen has no catalog row yet */
    bool dirty;                /* on d->dirty (tlock) */
    bool ours;                 /* gen was made by this device (this session) */
    unsigned key;              /* the chunk's key: 0 the volume's own lineage, i ≥ 1 d->extra.k[i - 1] */
    uint32_t ctr[VOL_SECTORS]; /* each sector's newest write counter */
    uint32_t fl[VOL_SECTORS];  /* each sector's counter as the catalog has it (the last flush; 0 in a fresh chunk) */
    uint64_t known[VOL_SECTORS / 64]; /* bit s: sector s's newest version (ctr[s]) is established this session —
                                       * written by it, in a chunk it made, or found by a read of both slots —
                                       * so a read opens only the slot holding it (atomic OR by readers) */
};

/* What one request needs besides the block: a sealer (an AES-GCM context) and buffers, taken from the
 * device's pool for the request's duration (so nothing is allocated per I/O). */
struct work {
    struct work *next;
    vol_sealer *sealer;
    uint8_t *pt;               /* PIECE sectors of plaintext, locked memory; wiped after use */
    uint8_t *slots;            /* PIECE slots */
    uint8_t *slots1;           /* PIECE slots more: a version-2 chunk's area 1 */
};

struct vol_dev {
    pthread_mutex_t flush_lock, tlock, glock, clock, plock;
    pthread_rwlock_t gate;
    pthread_rwlockattr_t rwattr;
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
    struct work *pool;
    /* Chunk keys derived so far (an HKDF each), direct-mapped by (key, block, gen): keys in locked memory,
     * their tags beside (not secret), and beside each a sealer keyed with it once (its AES key schedule and
     * GHASH key, so a sector's sealing or opening sets only its IV). A request holds an entry's sealer
     * exclusively (busy) while it seals or opens with it; a second request on the same entry meanwhile, or
     * one whose entry is busy with another key, uses its work area's sealer with the key passed per
     * sector. An entry busy is never refilled. klock: a leaf, held for a lookup, a fill or a release. */
    pthread_mutex_t klock;
    uint8_t *keys;             /* KEY_CACHE × 32 bytes, locked memory */
    struct ktag {
        uint64_t block, gen;
        unsigned key;          /* as struct blk's key */
        bool valid;
        bool busy;             /* sl in use by one request */
        vol_sealer *sl;        /* keyed with this entry's key (created on first use; NULL before) */
    } *ktags;
    bool locks_ok;             /* every lock above was initialised (vol_dev_free) */
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

static int push_junk(vol_dev *d, uint64_t gen)
{
    int rc;
    pthread_mutex_lock(&d->tlock);
    rc = push_u64(&d->junk, &d->njunk, &d->capjunk, gen);
    pthread_mutex_unlock(&d->tlock);
    return rc;
}

/* b's lock held (either way). */
static int mark_dirty(vol_dev *d, struct blk *b)
{
    int rc = 0;
    pthread_mutex_lock(&d->tlock);
    if (!b->dirty) {
        if (d->ndirty == d->capdirty) {
            size_t c = d->capdirty ? 2 * d->capdirty : 64;
            struct blk **x = realloc(d->dirty, c * sizeof *x);
            if (!x) {
                rc = -ENOMEM;
                goto out;
            }
            d->dirty = x;
            d->capdirty = c;
        }
        d->dirty[d->ndirty++] = b;
        b->dirty = true;
    }
out:
    pthread_mutex_unlock(&d->tlock);
    return rc;
}

/* ---- work areas ---- */

static void work_free(struct work *w)
{
    if (!w)
        return;
    vol_sealer_free(w->sealer);
    if (w->pt)
        sodium_free(w->pt);
    free(w->slots);
    free(w->slots1);
    free(w);
}

static struct work *work_get(vol_dev *d)
{
    struct work *w;
    pthread_mutex_lock(&d->plock);
    if ((w = d->pool))
        d->pool = w->next;
    pthread_mutex_unlock(&d->plock);
    if (w)
        return w;
    if (!(w = calloc(1, sizeof *w)) || !(w->sealer = vol_sealer_new()) ||
        !(w->pt = sodium_malloc((size_t)PIECE * VOL_SECTOR_SIZE)) || !(w->slots = malloc((size_t)PIECE * VOL_SLOT_SIZE)) ||
        !(w->slots1 = malloc((size_t)PIECE * VOL_SLOT_SIZE))) {
        work_free(w);
        return NULL;
    }
    return w;
}

/* Back to the pool; the first wipe_sectors sectors of its plaintext buffer are wiped. */
static void work_put(vol_dev *d, struct work *w, unsigned wipe_sectors)
{
    if (wipe_sectors)
        sodium_memzero(w->pt, (size_t)wipe_sectors * VOL_SECTOR_SIZE);
    pthread_mutex_lock(&d->plock);
    w->next = d->pool;
    d->pool = w;
    pthread_mutex_unlock(&d->plock);
}

/* ---- the block table ---- */

static struct blk *find(vol_dev *d, uint64_t block)
{
    for (struct blk *b = d->buckets[hash_of(block, d->nbuckets)]; b; b = b->next)
        if (b->block == block)
            return b;
    return NULL;
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

static void blk_free(struct blk *b)
{
    pthread_rwlock_destroy(&b->lock);
    free(b);
}

/* Fill b (not yet in the table) from the catalog; clock held. */
static int load(vol_dev *d, struct blk *b)
{
    vol_chunk k;
    uint64_t gen = 0;
    int rc = d->cat->ops->map_get(d->cat, d->vol.id, b->block, &gen);
    if (rc)
        return rc == -ENOENT ? 0 : rc;
    if (d->cat->ops->chunk_get(d->cat, gen, &k)) {
        EFS_ERROR("volume %s: block %" PRIu64 " names chunk %" PRIu64 ", which the catalog lacks", d->vol.id, b->block, gen);
        return -EIO;
    }
    if (strcmp(k.lineage, d->binding)) {
        size_t i = 0;
        while (i < d->extra.n && strcmp(d->extra.k[i].binding, k.lineage))
            i++;
        if (i == d->extra.n) {
            EFS_ERROR("volume %s: block %" PRIu64 " names chunk %" PRIu64 " of lineage %s, whose key this "
                      "attachment lacks", d->vol.id, b->block, gen, k.lineage);
            return -EIO;
        }
        b->key = (unsigned)i + 1;
    }
    b->gen = gen;
    b->refs = k.refs;
    b->shared = k.refs > 1;
    b->seals = k.seals;
    memcpy(b->ctr, k.ctr, sizeof b->ctr);
    memcpy(b->fl, k.ctr, sizeof b->fl);
    return 0;
}

/* The block's entry, loaded from the catalog on first use (outside the table lock: two threads may load
 * the same block; the first to insert wins — the catalog does not change under a shared gate). Gate held. */
static int lookup(vol_dev *d, uint64_t block, struct blk **out)
{
    struct blk *b, *nb;
    int rc;
    pthread_mutex_lock(&d->tlock);
    b = find(d, block);
    pthread_mutex_unlock(&d->tlock);
    if ((*out = b))
        return 0;
    if (!(nb = calloc(1, sizeof *nb)))
        return -ENOMEM;
    if (pthread_rwlock_init(&nb->lock, &d->rwattr)) {
        free(nb);
        return -ENOMEM;
    }
    nb->block = block;
    pthread_mutex_lock(&d->clock);
    rc = load(d, nb);
    pthread_mutex_unlock(&d->clock);
    if (rc) {
        blk_free(nb);
        return rc;
    }
    pthread_mutex_lock(&d->tlock);
    if ((b = find(d, block))) {
        pthread_mutex_unlock(&d->tlock);
        blk_free(nb);
        *out = b;
        return 0;
    }
    if (d->nblks >= d->nbuckets && grow(d)) {
        pthread_mutex_unlock(&d->tlock);
        blk_free(nb);
        return -ENOMEM;
    }
    nb->next = d->buckets[hash_of(block, d->nbuckets)];
    d->buckets[hash_of(block, d->nbuckets)] = nb;
    d->nblks++;
    pthread_mutex_unlock(&d->tlock);
    *out = nb;
    return 0;
}

/* ---- chunks and sectors ---- */

static int new_gen(vol_dev *d, uint64_t *gen)
{
    int rc = 0;
    pthread_mutex_lock(&d->glock);
    if (d->gen_next == d->gen_end) {
        pthread_mutex_lock(&d->clock);
        rc = d->cat->ops->gen_reserve(d->cat, 64, &d->gen_next);
        pthread_mutex_unlock(&d->clock);
        if (!rc)
            d->gen_end = d->gen_next + 64;
    }
    if (!rc)
        *gen = d->gen_next++;
    pthread_mutex_unlock(&d->glock);
    return rc;
}

/* A chunk key in use by one request: seal and open with (s, key) — an entry's sealer keyed already and
 * key NULL, or the work area's sealer and the key itself (raw, wiped by key_drop). */
struct kref {
    vol_sealer *s;
    const uint8_t *key;
    struct ktag *t;            /* the entry whose sealer s is (busy), or NULL */
    uint8_t raw[32];
};

/* The key of chunk gen of block `block` under key `ki` (0: the volume's own, i ≥ 1: d->extra.k[i - 1]):
 * from the cache, else derived and cached; with a sealer to use it (struct kref). Given back by key_drop. */
static int cached_key(vol_dev *d, struct work *w, unsigned ki, const uint8_t *dk, const uint8_t lin[VOL_LINEAGE_LEN],
                      uint64_t block, uint64_t gen, struct kref *r)
{
    size_t i = (size_t)(((block * 0x9E3779B97F4A7C15ull) ^ (gen * 0xC2B2AE3D27D4EB4Full) ^ ki) >> 40) & (KEY_CACHE - 1);
    struct ktag *t = &d->ktags[i];
    bool fill = false;
    int rc;
    r->s = w->sealer;
    r->key = r->raw;
    r->t = NULL;
    pthread_mutex_lock(&d->klock);
    if (t->valid && t->block == block && t->gen == gen && t->key == ki) {
        if (!t->busy) {
            t->busy = true;
            r->t = t;
            fill = !t->sl; /* (a fill whose sealer could not be made left none) */
        }
        memcpy(r->raw, d->keys + i * 32, 32);
        pthread_mutex_unlock(&d->klock);
    } else {
        pthread_mutex_unlock(&d->klock);
        if ((rc = vol_chunk_key(dk, lin, block, gen, r->raw)))
            return rc;
        pthread_mutex_lock(&d->klock);
        if (!t->busy) { /* else: used once, not cached (the entry's sealer holds another key in use) */
            memcpy(d->keys + i * 32, r->raw, 32);
            t->block = block;
            t->gen = gen;
            t->key = ki;
            t->valid = t->busy = fill = true;
            r->t = t;
        }
        pthread_mutex_unlock(&d->klock);
    }
    if (!r->t)
        return 0;
    /* t is this request's until key_drop: its sealer is keyed outside klock */
    if (fill && ((!t->sl && !(t->sl = vol_sealer_new())) || vol_sealer_set_key(t->sl, r->raw))) {
        vol_sealer_free(t->sl); /* (re-made by the next use) */
        t->sl = NULL;
        pthread_mutex_lock(&d->klock);
        t->busy = false;
        pthread_mutex_unlock(&d->klock);
        r->t = NULL;
        return 0; /* the work area's sealer and the raw key */
    }
    r->s = t->sl;
    r->key = NULL;
    sodium_memzero(r->raw, sizeof r->raw);
    return 0;
}

static void key_drop(vol_dev *d, struct kref *r)
{
    sodium_memzero(r->raw, sizeof r->raw);
    if (r->t) {
        pthread_mutex_lock(&d->klock);
        r->t->busy = false;
        pthread_mutex_unlock(&d->klock);
        r->t = NULL;
    }
    r->s = NULL;
}

static int chunk_key(vol_dev *d, struct work *w, uint64_t block, uint64_t gen, struct kref *r)
{
    return cached_key(d, w, 0, d->dk, d->lineage, block, gen, r);
}

/* The binding and chunk key of b's current chunk (its own lineage's or a source lineage's). */
static int blk_key(vol_dev *d, struct work *w, struct blk *b, uint8_t lin[VOL_LINEAGE_LEN], struct kref *r)
{
    if (b->key == 0) {
        memcpy(lin, d->lineage, VOL_LINEAGE_LEN);
        return chunk_key(d, w, b->block, b->gen, r);
    }
    if (vol_lineage_bin(d->extra.k[b->key - 1].binding, lin))
        return -EIO;
    return cached_key(d, w, b->key, d->extra.k[b->key - 1].dk, lin, b->block, b->gen, r);
}

/* Known bits (struct blk): all sectors, none, one. */
static void known_all(struct blk *b) { memset(b->known, 0xff, sizeof b->known); }
static bool is_known(struct blk *b, unsigned s)
{
    return (__atomic_load_n(&b->known[s / 64], __ATOMIC_ACQUIRE) >> (s % 64)) & 1;
}
/* A reader's: released after its raise of ctr[s], so a reader that sees the bit sees the counter. */
static void set_known(struct blk *b, unsigned s) { __atomic_fetch_or(&b->known[s / 64], 1ull << (s % 64), __ATOMIC_RELEASE); }
static void clear_known(struct blk *b, unsigned s) { b->known[s / 64] &= ~(1ull << (s % 64)); /* b exclusive */ }

static int start_chunk(vol_dev *d, uint64_t block, uint64_t *gen)
{
    uint8_t hdr[VOL_CHUNK_HDR];
    int rc = new_gen(d, gen);
    if (rc)
        return rc;
    vol_chunk_header(hdr, d->lineage, block, *gen);
    return d->cs->ops->pwrite(d->cs, *gen, hdr, sizeof hdr, 0);
}

/* A reader's counter update: *c = max(*c, v); true if it rose. (b's lock held shared or exclusive.) */
static bool raise_ctr(uint32_t *c, uint32_t v)
{
    uint32_t cur = __atomic_load_n(c, __ATOMIC_RELAXED);
    while (cur < v)
        if (__atomic_compare_exchange_n(c, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            return true;
    return false;
}

/* The version of b's chunk, its header read and checked on first use in this session (a file swapped
 * later fails at its key). b's lock held (shared is enough: what a reader stores is atomic). */
static int blk_version(vol_dev *d, struct blk *b, const uint8_t lin[VOL_LINEAGE_LEN], unsigned *ver)
{
    uint8_t hdr[VOL_CHUNK_HDR];
    int rc;
    if (__atomic_load_n(&b->hdr_ok, __ATOMIC_ACQUIRE) == b->gen) {
        *ver = __atomic_load_n(&b->ver, __ATOMIC_RELAXED);
        return 0;
    }
    if ((rc = d->cs->ops->pread(d->cs, b->gen, hdr, sizeof hdr, 0)))
        return rc;
    if (vol_chunk_header_check(hdr, sizeof hdr, lin, b->block, b->gen, ver)) {
        EFS_ERROR("volume %s: block %" PRIu64 " (chunk %" PRIu64 "): the chunk header is damaged or not this chunk's",
                  d->vol.id, b->block, b->gen);
        return -EIO;
    }
    __atomic_store_n(&b->ver, *ver, __ATOMIC_RELAXED);
    __atomic_store_n(&b->hdr_ok, b->gen, __ATOMIC_RELEASE);
    return 0;
}

/* Read and open sectors [s0, s0+n) of b's chunk into pt (n·4096 bytes), PIECE slots per read through
 * w->slots (area 0) and w->slots1 (area 1). A version-2 sector whose newest version is established (known)
 * needs only the area holding it; one that is not needs both (the slot to open depends on counters a dead
 * daemon may have left), and is established by the read. So a piece reads one area when all its sectors
 * are known in the same area (a random read of a sector read or written before in this session, or of a
 * chunk this session made), both otherwise. b's lock held (shared is enough). */
static int read_sectors(vol_dev *d, struct work *w, struct blk *b, unsigned s0, unsigned n, uint8_t *pt)
{
    uint8_t lin[VOL_LINEAGE_LEN];
    struct kref k = {0};
    bool raised = false;
    unsigned ver = 0;
    int rc;
    if ((rc = blk_key(d, w, b, lin, &k)) || (rc = blk_version(d, b, lin, &ver)))
        goto out;
    for (unsigned done = 0, m; done < n && !rc; done += m) {
        bool need[2] = {true, ver == 2};
        m = n - done < PIECE ? n - done : PIECE;
        if (ver == 2) {
            need[0] = need[1] = false;
            for (unsigned i = 0; i < m; i++) {
                unsigned s = s0 + done + i;
                if (is_known(b, s))
                    need[vol_slot_area(__atomic_load_n(&b->ctr[s], __ATOMIC_RELAXED))] = true;
                else
                    need[0] = need[1] = true;
            }
        }
        for (unsigned a = 0; a < 2 && !rc; a++)
            if (need[a])
                rc = d->cs->ops->pread(d->cs, b->gen, a ? w->slots1 : w->slots, (size_t)m * VOL_SLOT_SIZE,
                                       vol_slot_offset_at(s0 + done, a));
        for (unsigned i = 0; i < m && !rc; i++) {
            unsigned s = s0 + done + i;
            bool one = ver == 2 && is_known(b, s); /* (before ctr: known is published after a raise of ctr) */
            uint32_t got = 0, min = __atomic_load_n(&b->ctr[s], __ATOMIC_RELAXED);
            const uint8_t *slot0 = w->slots + (size_t)i * VOL_SLOT_SIZE, *slot1 = w->slots1 + (size_t)i * VOL_SLOT_SIZE;
            uint8_t *out = pt + (size_t)(done + i) * VOL_SECTOR_SIZE;
            if (one ? vol_chunk_sector_open_one(k.s, k.key, lin, b->block, b->gen, ver, s, b->fl[s], min,
                                                vol_slot_area(min) ? slot1 : slot0, out, &got)
                    : vol_chunk_sector_open(k.s, k.key, lin, b->block, b->gen, ver, s, b->fl[s], min, slot0, slot1,
                                            out, &got)) {
                EFS_ERROR("volume %s: block %" PRIu64 " (chunk %" PRIu64 ") sector %u failed authentication "
                          "(modified, moved or rolled back)", d->vol.id, b->block, b->gen, s);
                rc = -EIO;
                break;
            }
            if (got > min && raise_ctr(&b->ctr[s], got)) /* written after the last flush by a daemon that died: keep it */
                raised = true;
            if (!one && ver == 2)
                set_known(b, s); /* (got, now ctr[s], is where it is: the newer slot, or exactly the flushed one) */
        }
    }
    if (raised) {
        int r = mark_dirty(d, b);
        if (!rc)
            rc = r;
    }
out:
    key_drop(d, &k);
    return rc;
}

/* Move b to a fresh chunk generation (copy-on-write, or a key that has sealed enough): every sector
 * not in `covered` is re-sealed from the old chunk, runs of live sectors (up to PIECE) at a time.
 * b's lock held exclusive. */
static int copy_up(vol_dev *d, struct work *w, struct blk *b, const bool *covered)
{
    uint8_t nonces[PIECE * VOL_SLOT_NONCE];
    struct kref k = {0};
    uint32_t ctr[VOL_SECTORS] = {0};
    uint64_t gen = 0, seals = 0;
    unsigned used = 0;
    int rc = start_chunk(d, b->block, &gen);
    if (rc) {
        if (gen)
            (void)d->cs->ops->remove(d->cs, gen);
        return rc;
    }
    if ((rc = chunk_key(d, w, b->block, gen, &k)))
        goto out;
    for (unsigned s = 0, e; s < VOL_SECTORS; s = e) {
        if (covered[s] || b->ctr[s] == 0) {
            e = s + 1;
            continue;
        }
        for (e = s + 1; e < VOL_SECTORS && e - s < PIECE && !covered[e] && b->ctr[e]; e++)
            ;
        if (e - s > used)
            used = e - s;
        if ((rc = read_sectors(d, w, b, s, e - s, w->pt)))
            goto out;
        randombytes_buf(nonces, (size_t)(e - s) * VOL_SLOT_NONCE); /* one call per run */
        for (unsigned i = s; i < e; i++) {
            if ((rc = vol_sector_seal(k.s, k.key, d->lineage, b->block, gen, i, 1, nonces + (size_t)(i - s) * VOL_SLOT_NONCE,
                                      w->pt + (size_t)(i - s) * VOL_SECTOR_SIZE, w->slots + (size_t)(i - s) * VOL_SLOT_SIZE)))
                goto out;
            ctr[i] = 1;
            seals++;
        }
        if ((rc = d->cs->ops->pwrite(d->cs, gen, w->slots, (size_t)(e - s) * VOL_SLOT_SIZE, vol_slot_offset(s))))
            goto out;
    }
    if (b->fresh)
        rc = push_junk(d, b->gen);
    else
        b->old_gen = b->gen;
    if (rc)
        goto out;
    b->gen = b->hdr_ok = gen;
    b->ver = VOL_CHUNK_VERSION;
    b->key = 0;
    b->fresh = b->ours = true;
    b->shared = false;
    b->refs = 1;
    b->seals = seals;
    b->wseq++;
    memcpy(b->ctr, ctr, sizeof ctr);
    memset(b->fl, 0, sizeof b->fl); /* no row yet: a crash before the flush leaves only an orphan */
    known_all(b);                   /* every slot of the new chunk is what this session wrote, or a hole */
    rc = mark_dirty(d, b);
out:
    key_drop(d, &k);
    if (used)
        sodium_memzero(w->pt, (size_t)used * VOL_SECTOR_SIZE);
    if (rc && b->gen != gen)
        (void)d->cs->ops->remove(d->cs, gen);
    return rc;
}

/* Write [off, off+n) inside one block; b's lock held exclusive. */
static int write_locked(vol_dev *d, struct work *w, struct blk *b, unsigned off, const uint8_t *src, size_t n)
{
    unsigned s0 = off / VOL_SECTOR_SIZE, s1 = (unsigned)((off + n + VOL_SECTOR_SIZE - 1) / VOL_SECTOR_SIZE);
    unsigned ns = s1 - s0, head = off % VOL_SECTOR_SIZE, tail = (unsigned)((off + n) % VOL_SECTOR_SIZE);
    bool covered[VOL_SECTORS] = {false}, part0, part1;
    uint8_t nonces[PIECE * VOL_SLOT_NONCE];
    struct kref k = {0};
    unsigned ver = VOL_CHUNK_VERSION;
    int rc = 0; /* read at the copy-up test below when an earlier condition short-circuits blk_version */
    for (unsigned s = s0; s < s1; s++)
        covered[s] = (uint64_t)s * VOL_SECTOR_SIZE >= off && (uint64_t)(s + 1) * VOL_SECTOR_SIZE <= off + n;
    part0 = !covered[s0];
    part1 = s1 - 1 != s0 && !covered[s1 - 1];
    if (b->gen == 0) {
        uint64_t gen = 0;
        if ((rc = start_chunk(d, b->block, &gen))) {
            if (gen)
                (void)d->cs->ops->remove(d->cs, gen);
            return rc;
        }
        b->gen = b->hdr_ok = gen;
        b->ver = VOL_CHUNK_VERSION;
        b->key = 0;
        b->fresh = b->ours = true;
        b->shared = false;
        b->refs = 1;
        b->seals = 0;
        b->wseq++;
        memset(b->ctr, 0, sizeof b->ctr);
        memset(b->fl, 0, sizeof b->fl);
        known_all(b); /* a header only: every slot a hole */
        if ((rc = mark_dirty(d, b)))
            return rc;
    } else if (b->shared || b->key || b->seals + ns > d->seal_limit || (d->unclean && !b->ours) ||
               (rc = blk_version(d, b, d->lineage, &ver)) || ver != VOL_CHUNK_VERSION) {
        /* shared: copy on write. Another lineage's chunk: copy up into this lineage (lazy rekey). The seal limit, or a key the dead last session may have used beyond its
         * recorded count: a fresh generation, so no key ever seals more than the limit (docs/DESIGN.md).
         * A version-1 chunk: never rewritten in place (a torn rewrite would lose its flushed sector). */
        if (rc || (rc = copy_up(d, w, b, covered)))
            return rc;
    }
    /* partial sectors at either end: read-modify-write in w->pt (sector 0: the first, 1: the last) */
    if (part0) {
        if ((rc = read_sectors(d, w, b, s0, 1, w->pt)))
            goto out;
        memcpy(w->pt + head, src, s1 - 1 == s0 ? n : VOL_SECTOR_SIZE - head);
    }
    if (part1) {
        if ((rc = read_sectors(d, w, b, s1 - 1, 1, w->pt + VOL_SECTOR_SIZE)))
            goto out;
        memcpy(w->pt + VOL_SECTOR_SIZE, src + ((size_t)(s1 - 1) * VOL_SECTOR_SIZE - off), tail);
    }
    if ((rc = chunk_key(d, w, b->block, b->gen, &k)) || (rc = mark_dirty(d, b)))
        goto out;
    b->wseq++;
    /* runs of up to PIECE sectors whose next counters go to the same area (sector.h: the first write
     * after a flush to the area the flushed version is not in, later ones to that area again), one
     * chunk-store write per run */
    for (unsigned done = 0, m; done < ns; done += m) {
        unsigned s = s0 + done, area = vol_slot_area(vol_next_ctr(b->ctr[s], b->fl[s]));
        for (m = 1; done + m < ns && m < PIECE && vol_slot_area(vol_next_ctr(b->ctr[s + m], b->fl[s + m])) == area; m++)
            ;
        randombytes_buf(nonces, (size_t)m * VOL_SLOT_NONCE); /* one call per run */
        for (unsigned i = 0; i < m; i++, s++) {
            const uint8_t *p = s == s0 && part0       ? w->pt
                               : s == s1 - 1 && part1 ? w->pt + VOL_SECTOR_SIZE
                                                      : src + ((size_t)s * VOL_SECTOR_SIZE - off);
            if ((rc = vol_sector_seal(k.s, k.key, d->lineage, b->block, b->gen, s, vol_next_ctr(b->ctr[s], b->fl[s]),
                                      nonces + (size_t)i * VOL_SLOT_NONCE, p, w->slots + (size_t)i * VOL_SLOT_SIZE)))
                goto out;
            b->seals++; /* counted as sealed, whatever the write does next: the key's count stays exact */
        }
        if ((rc = d->cs->ops->pwrite(d->cs, b->gen, w->slots, (size_t)m * VOL_SLOT_SIZE, vol_slot_offset_at(s0 + done, area)))) {
            for (unsigned i = 0; i < m; i++) /* what the slots hold now is unknown: the next read looks at both */
                clear_known(b, s0 + done + i);
            goto out;
        }
        for (unsigned i = 0; i < m; i++) {
            b->ctr[s0 + done + i] = vol_next_ctr(b->ctr[s0 + done + i], b->fl[s0 + done + i]);
            set_known(b, s0 + done + i);
        }
    }
out:
    key_drop(d, &k);
    if (part0 || part1)
        sodium_memzero(w->pt, 2 * VOL_SECTOR_SIZE);
    return rc;
}

typedef int (*block_fn)(vol_dev *d, struct work *w, uint64_t block, unsigned off, uint8_t *p, size_t n);

static int write_block(vol_dev *d, struct work *w, uint64_t block, unsigned off, uint8_t *src, size_t n)
{
    struct blk *b;
    int rc = lookup(d, block, &b);
    if (rc)
        return rc;
    pthread_rwlock_wrlock(&b->lock);
    rc = write_locked(d, w, b, off, src, n);
    pthread_rwlock_unlock(&b->lock);
    return rc;
}

/* Full sectors are opened straight into dst; a partial one at either end through w->pt. */
static int read_block(vol_dev *d, struct work *w, uint64_t block, unsigned off, uint8_t *dst, size_t n)
{
    unsigned end = off + (unsigned)n, f0 = (off + VOL_SECTOR_SIZE - 1) / VOL_SECTOR_SIZE, f1 = end / VOL_SECTOR_SIZE;
    unsigned head = off % VOL_SECTOR_SIZE, tail = end % VOL_SECTOR_SIZE;
    struct blk *b;
    int rc = lookup(d, block, &b);
    if (rc)
        return rc;
    pthread_rwlock_rdlock(&b->lock);
    if (b->gen == 0) {
        memset(dst, 0, n);
    } else if (f0 > f1) { /* inside one sector */
        if (!(rc = read_sectors(d, w, b, f1, 1, w->pt)))
            memcpy(dst, w->pt + head, n);
        sodium_memzero(w->pt, VOL_SECTOR_SIZE);
    } else {
        if (head && !(rc = read_sectors(d, w, b, f0 - 1, 1, w->pt)))
            memcpy(dst, w->pt + head, VOL_SECTOR_SIZE - head);
        if (!rc && f1 > f0)
            rc = read_sectors(d, w, b, f0, f1 - f0, dst + ((size_t)f0 * VOL_SECTOR_SIZE - off));
        if (!rc && tail && !(rc = read_sectors(d, w, b, f1, 1, w->pt)))
            memcpy(dst + ((size_t)f1 * VOL_SECTOR_SIZE - off), w->pt, tail);
        if (head || tail)
            sodium_memzero(w->pt, VOL_SECTOR_SIZE);
    }
    pthread_rwlock_unlock(&b->lock);
    return rc;
}

static int discard_block(vol_dev *d, struct work *w, uint64_t block, unsigned off, uint8_t *unused, size_t n)
{
    struct blk *b;
    int rc = lookup(d, block, &b);
    if (rc)
        return rc;
    pthread_rwlock_wrlock(&b->lock);
    if (b->gen == 0) {
        rc = 0;
    } else if (n < VOL_BLOCK_SIZE) { /* part of a block: zeros */
        uint8_t *z = calloc(1, n);
        rc = z ? write_locked(d, w, b, off, z, n) : -ENOMEM;
        free(z);
    } else {
        if (b->fresh)
            rc = push_junk(d, b->gen);
        else
            b->old_gen = b->gen;
        if (!rc) {
            b->gen = 0;
            b->key = 0;
            b->fresh = false;
            b->wseq++;
            memset(b->ctr, 0, sizeof b->ctr);
            memset(b->fl, 0, sizeof b->fl);
            known_all(b);
            rc = mark_dirty(d, b);
        }
    }
    pthread_rwlock_unlock(&b->lock);
    return rc;
}

/* One request: the gate shared, a work area, each block in turn under its own lock. */
static int each_block(vol_dev *d, uint8_t *p, size_t n, uint64_t off, block_fn fn)
{
    struct work *w;
    int rc = 0;
    if (off > d->size || n > d->size - off)
        return -ENOSPC;
    if (!(w = work_get(d)))
        return -ENOMEM;
    pthread_rwlock_rdlock(&d->gate);
    while (n && !rc) {
        uint64_t block = off / VOL_BLOCK_SIZE;
        unsigned in = (unsigned)(off % VOL_BLOCK_SIZE);
        size_t m = VOL_BLOCK_SIZE - in < n ? VOL_BLOCK_SIZE - in : n;
        rc = fn(d, w, block, in, p, m);
        if (p)
            p += m;
        off += m;
        n -= m;
    }
    pthread_rwlock_unlock(&d->gate);
    work_put(d, w, 0); /* (each user of w->pt wiped what it used) */
    return rc;
}

int vol_dev_read(vol_dev *d, void *buf, size_t n, uint64_t off) { return each_block(d, buf, n, off, read_block); }

int vol_dev_write(vol_dev *d, const void *buf, size_t n, uint64_t off)
{
    return each_block(d, (uint8_t *)(uintptr_t)buf, n, off, write_block);
}

int vol_dev_discard(vol_dev *d, uint64_t off, uint64_t len)
{
    if (len > SIZE_MAX)
        return -EINVAL;
    return each_block(d, NULL, (size_t)len, off, discard_block);
}

/* ---- flush and snapshot ---- */

/* What phase 1 of a flush synced: dirty[i] as it was then. */
struct synced {
    struct blk *b;
    uint64_t gen, wseq;
    bool ok;
};

/* Passes of phase 1, and how few chunks left to sync end it early (the rest is phase 2's, with I/O held
 * back). */
#define SYNC_PASSES 3
#define SYNC_FEW 8

/* Phase 1 (flush_lock held; I/O goes on): fdatasync every chunk dirty now, then, while writes keep
 * changing many of them, those written since (up to SYNC_PASSES passes). The dirty list only grows until
 * the commit clears it (under flush_lock), so s[i] stays dirty[i]. Errors are left for phase 2, which
 * syncs whatever this did not. NULL when nothing is dirty or memory is short. */
static struct synced *sync_early(vol_dev *d, size_t *n)
{
    struct synced *s = NULL;
    *n = 0;
    pthread_rwlock_rdlock(&d->gate);
    for (int pass = 0; pass < SYNC_PASSES; pass++) {
        size_t synced = 0, was = *n;
        pthread_mutex_lock(&d->tlock);
        if (d->ndirty > *n) {
            struct synced *x = realloc(s, d->ndirty * sizeof *x);
            if (x) {
                s = x;
                memset(s + *n, 0, (d->ndirty - *n) * sizeof *s);
                for (size_t i = *n; i < d->ndirty; i++)
                    s[i].b = d->dirty[i];
                *n = d->ndirty;
            }
        }
        pthread_mutex_unlock(&d->tlock);
        for (size_t i = 0; i < *n; i++) {
            struct blk *b = s[i].b;
            uint64_t gen, wseq;
            pthread_rwlock_rdlock(&b->lock);
            gen = b->gen;
            wseq = b->wseq;
            pthread_rwlock_unlock(&b->lock);
            if (!gen || (s[i].ok && s[i].gen == gen && s[i].wseq == wseq))
                continue;
            s[i].gen = gen;
            s[i].wseq = wseq;
            s[i].ok = d->cs->ops->sync(d->cs, gen) == 0;
            synced++;
        }
        if (synced <= SYNC_FEW && *n == was)
            break;
    }
    pthread_rwlock_unlock(&d->gate);
    return s;
}

/* Phase 2: the gate held exclusive (and flush_lock). */
static int flush_locked(vol_dev *d, const struct synced *early, size_t nearly)
{
    vol_catalog *cat = d->cat;
    uint64_t *freed = NULL;
    size_t nfreed = 0, capfreed = 0;
    int rc = 0;
    pthread_mutex_lock(&d->tlock);
    if (!d->ndirty && !d->njunk)
        goto out;
    for (size_t i = 0; i < d->ndirty; i++) {
        struct blk *b = d->dirty[i];
        bool done = i < nearly && early[i].b == b && early[i].ok && early[i].gen == b->gen && early[i].wseq == b->wseq;
        if (b->gen && !done && (rc = d->cs->ops->sync(d->cs, b->gen)))
            goto out;
    }
    pthread_mutex_lock(&d->clock);
    if ((rc = cat->ops->begin(cat))) {
        pthread_mutex_unlock(&d->clock);
        goto out;
    }
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
        pthread_mutex_unlock(&d->clock);
        EFS_ERROR("volume %s: the catalog refused the flush: %s", d->vol.id, strerror(-rc));
        rc = rc == -EEXIST ? -EIO : rc;
        goto out;
    }
    pthread_mutex_unlock(&d->clock);
    for (size_t i = 0; i < d->ndirty; i++) {
        struct blk *b = d->dirty[i];
        b->dirty = b->fresh = false;
        b->old_gen = 0;
        memcpy(b->fl, b->ctr, sizeof b->fl); /* what the catalog now has: the next write takes the other slot */
    }
    d->ndirty = 0;
    for (size_t i = 0; i < nfreed; i++)
        (void)d->cs->ops->remove(d->cs, freed[i]);
    for (size_t i = 0; i < d->njunk; i++)
        (void)d->cs->ops->remove(d->cs, d->junk[i]);
    d->njunk = 0;
out:
    pthread_mutex_unlock(&d->tlock);
    free(freed);
    return rc;
}

int vol_dev_flush(vol_dev *d)
{
    struct synced *early;
    size_t n;
    int rc;
    pthread_mutex_lock(&d->flush_lock);
    early = sync_early(d, &n);
    pthread_rwlock_wrlock(&d->gate);
    rc = flush_locked(d, early, n);
    pthread_rwlock_unlock(&d->gate);
    pthread_mutex_unlock(&d->flush_lock);
    free(early);
    return rc;
}

int vol_dev_snapshot(vol_dev *d, const char *description, const char *tags, vol_snapshot *out, vol_err *e)
{
    struct synced *early;
    size_t n;
    int rc;
    pthread_mutex_lock(&d->flush_lock);
    early = sync_early(d, &n);
    pthread_rwlock_wrlock(&d->gate); /* no request runs while we flush and record */
    rc = flush_locked(d, early, n);
    if (rc) {
        vol_fail(e, rc, "InternalError", "flushing volume %s failed: %s", d->vol.id, strerror(-rc));
    } else {
        pthread_mutex_lock(&d->clock);
        rc = vol_snapshot_record(d->cat, &d->vol, description, tags, out, e);
        pthread_mutex_unlock(&d->clock);
        if (!rc) {
            pthread_mutex_lock(&d->tlock);
            for (size_t i = 0; i < d->nbuckets; i++)
                for (struct blk *b = d->buckets[i]; b; b = b->next)
                    if (b->gen)
                        b->shared = true, b->refs++;
            pthread_mutex_unlock(&d->tlock);
        }
    }
    pthread_rwlock_unlock(&d->gate);
    pthread_mutex_unlock(&d->flush_lock);
    free(early);
    return rc;
}

/* ---- setup ---- */

void vol_dev_set_seal_limit(vol_dev *d, uint64_t limit)
{
    pthread_rwlock_wrlock(&d->gate);
    d->seal_limit = limit;
    pthread_rwlock_unlock(&d->gate);
}

int vol_dev_add_key(vol_dev *d, const char *binding_hex, const uint8_t dk[32])
{
    int rc = 0;
    pthread_rwlock_wrlock(&d->gate);
    if (strcmp(binding_hex, d->binding) && !vol_keyring_find(&d->extra, binding_hex))
        rc = vol_keyring_add(&d->extra, binding_hex, NULL, dk);
    pthread_rwlock_unlock(&d->gate);
    return rc;
}

void vol_dev_set_unclean(vol_dev *d)
{
    pthread_rwlock_wrlock(&d->gate);
    d->unclean = true;
    pthread_rwlock_unlock(&d->gate);
}

uint64_t vol_dev_size(const vol_dev *d) { return d->size; }

int vol_dev_open(vol_catalog *cat, vol_chunkstore *cs, const vol_volume *v, const char *binding_hex,
                 const uint8_t dk[32], vol_dev **out)
{
    vol_dev *d = calloc(1, sizeof *d);
    *out = NULL;
    if (!d)
        return -ENOMEM;
    if (pthread_rwlockattr_init(&d->rwattr)) {
        free(d);
        return -ENOMEM;
    }
    /* writers first: a flush or snapshot is not starved by a stream of requests, nor a write by readers */
    (void)pthread_rwlockattr_setkind_np(&d->rwattr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    if (pthread_rwlock_init(&d->gate, &d->rwattr)) {
        pthread_rwlockattr_destroy(&d->rwattr);
        free(d);
        return -ENOMEM;
    }
    pthread_mutex_init(&d->flush_lock, NULL);
    pthread_mutex_init(&d->tlock, NULL);
    pthread_mutex_init(&d->glock, NULL);
    pthread_mutex_init(&d->clock, NULL);
    pthread_mutex_init(&d->plock, NULL);
    pthread_mutex_init(&d->klock, NULL);
    d->locks_ok = true;
    d->cat = cat;
    d->cs = cs;
    d->vol = *v;
    d->vol.tags = NULL;
    d->size = v->size_gib << 30;
    d->seal_limit = VOL_SEAL_LIMIT;
    d->nbuckets = 1024;
    snprintf(d->binding, sizeof d->binding, "%s", binding_hex);
    if (vol_lineage_bin(binding_hex, d->lineage) || !(d->buckets = calloc(d->nbuckets, sizeof *d->buckets)) ||
        !(d->dk = sodium_malloc(32)) || !(d->keys = sodium_malloc((size_t)KEY_CACHE * 32)) ||
        !(d->ktags = calloc(KEY_CACHE, sizeof *d->ktags))) {
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
            blk_free(b);
        }
    free(d->buckets);
    free(d->dirty);
    free(d->junk);
    for (struct work *w = d->pool, *next; w; w = next) {
        next = w->next;
        work_free(w);
    }
    vol_keyring_clear(&d->extra);
    if (d->dk)
        sodium_free(d->dk);
    if (d->keys)
        sodium_free(d->keys); /* (wiped) */
    for (size_t i = 0; d->ktags && i < KEY_CACHE; i++)
        vol_sealer_free(d->ktags[i].sl); /* (the key schedules wiped as OpenSSL frees them) */
    free(d->ktags);
    if (d->locks_ok) {
        pthread_rwlock_destroy(&d->gate);
        pthread_rwlockattr_destroy(&d->rwattr);
        pthread_mutex_destroy(&d->flush_lock);
        pthread_mutex_destroy(&d->tlock);
        pthread_mutex_destroy(&d->glock);
        pthread_mutex_destroy(&d->clock);
        pthread_mutex_destroy(&d->plock);
        pthread_mutex_destroy(&d->klock);
    }
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
    unsigned badsec = 0, first = 0, ver = 0;
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
        vol_chunk_header_check(c->buf, VOL_CHUNK_HDR, lin, block, gen, &ver)) {
        fprintf(c->out, "%s: block %" PRIu64 ": chunk %" PRIu64 " is missing or its header is not this chunk's\n",
                c->owner, block, gen);
        c->bad++;
        return 0;
    }
    if (vol_chunk_key(dk, lin, block, gen, key))
        return -EIO;
    for (unsigned s = 0; s < VOL_SECTORS; s++) {
        uint32_t got;
        if (vol_chunk_image_open(c->sealer, key, lin, block, gen, ver, s, k.ctr[s], c->buf, c->pt, &got)) {
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
