/*
 * test_dev_parallel.c — the volume data path (vol/dev.c) under concurrent requests, as the attach daemon's
 * threads issue them. Phase 1: writers on blocks of their own (random, unaligned, multi-block writes,
 * partial and whole-block discards, each checking its reads against its own model), writers hammering one
 * sector and readers of that sector and its block (every read must be one whole write, never a torn
 * one), and a thread flushing all along; afterwards every byte is checked, again after the device is
 * closed and reopened, and each chunk's seal count in the catalog must equal the sectors sealed into it.
 * Phase 2: a point-in-time snapshot taken while threads write the sectors of the same four blocks
 * (interleaved: every block is written by every thread, so copy-on-write races with writes): half of the
 * writes complete before the snapshot call (a barrier), a quarter run during it, a quarter begin after it
 * returned; the snapshot must hold every write acknowledged before the call began and none begun after it
 * returned (orders from one atomic ticket counter), the volume every write; both pass vol_check. Also run
 * under TSan (scripts/test's TSan pass) for the locking itself.
 * ENVELOPEFS_TEST_SCALE (default 1) multiplies the operation counts.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "catalog.h"
#include "chunkstore.h"
#include "dev.h"
#include "store.h"

#include "volcheck.h"

#define SEC VOL_SECTOR_SIZE
#define WRITERS 4
#define OWN_BLOCKS 4                          /* blocks each phase-1 writer owns */
#define OWN_BYTES ((size_t)OWN_BLOCKS * VOL_BLOCK_SIZE)
#define HOT_BLOCK 100                         /* the block of the contended sector */
#define HOT_SECTOR 5
#define HOT_WRITERS 3
#define HOT_READERS 3
#define SNAP_BLOCK 200                        /* phase 2: blocks SNAP_BLOCK .. + SNAP_BLOCKS - 1 */
#define SNAP_BLOCKS 4
#define SNAP_SECTORS (SNAP_BLOCKS * VOL_SECTORS)
#define SNAP_WRITERS 4

static vol_dev *dev;
static int scale = 1;
static atomic_bool stop_flush;
static atomic_int flushes, hot_done;
static atomic_uint_fast64_t ticket;
static _Atomic int errors; /* checks failed in threads (CHECK's counter is not atomic) */

#define TCHECK(c)                                                                                                \
    do {                                                                                                         \
        if (!(c)) {                                                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);                                \
            atomic_fetch_add(&errors, 1);                                                                        \
        }                                                                                                        \
    } while (0)

static uint64_t xs(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* A tagged sector: 8 bytes of tag, then bytes derived from it. */
static void tag_fill(uint8_t *p, uint64_t tag)
{
    uint64_t s = tag * 0x9E3779B97F4A7C15ull + 1;
    memcpy(p, &tag, 8);
    for (size_t i = 8; i < SEC; i += 8) {
        uint64_t v = xs(&s);
        memcpy(p + i, &v, 8);
    }
}
/* The tag of a whole, untorn tagged sector; 0 for all zeros; UINT64_MAX for anything else. */
static uint64_t tag_of(const uint8_t *p)
{
    uint8_t want[SEC];
    uint64_t tag;
    memcpy(&tag, p, 8);
    if (tag == 0) {
        for (size_t i = 0; i < SEC; i++)
            if (p[i])
                return UINT64_MAX;
        return 0;
    }
    tag_fill(want, tag);
    return memcmp(want, p, SEC) ? UINT64_MAX : tag;
}
static uint64_t mktag(unsigned who, unsigned round, unsigned seq) { return (uint64_t)(who + 1) << 48 | (uint64_t)round << 32 | seq; }

/* ---- phase 1 ---- */

struct writer {
    pthread_t t;
    unsigned id;
    uint8_t *model;              /* OWN_BYTES: what the region must hold */
    uint64_t seals[OWN_BLOCKS];  /* sectors sealed into each block's current chunk */
    bool mapped[OWN_BLOCKS];
};

static uint64_t own_off(const struct writer *w) { return (uint64_t)w->id * OWN_BYTES; }

static void count_seals(struct writer *w, uint64_t off, size_t n)
{
    while (n) {
        unsigned b = (unsigned)(off / VOL_BLOCK_SIZE), in = (unsigned)(off % VOL_BLOCK_SIZE);
        size_t m = VOL_BLOCK_SIZE - in < n ? VOL_BLOCK_SIZE - in : n;
        w->seals[b] += (in + m + SEC - 1) / SEC - in / SEC;
        w->mapped[b] = true;
        off += m;
        n -= m;
    }
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint64_t s = 0x1234567ull + w->id * 7919;
    uint8_t *buf = malloc(3 * VOL_BLOCK_SIZE), *got = malloc(3 * VOL_BLOCK_SIZE);
    int ops = 600 * scale;
    for (int op = 0; op < ops && buf && got; op++) {
        unsigned kind = (unsigned)(xs(&s) % 100);
        /* mostly small (a few sectors, often unaligned), sometimes up to two blocks; discards often span blocks */
        size_t n = kind < 5 || (kind >= 60 && kind < 63) ? (size_t)(xs(&s) % (2 * VOL_BLOCK_SIZE)) + 1
                                                         : (size_t)(xs(&s) % (5 * SEC)) + 1;
        uint64_t off = xs(&s) % (OWN_BYTES - n + 1);
        if (kind < 60) { /* write */
            for (size_t i = 0; i < n; i++)
                buf[i] = (uint8_t)xs(&s);
            TCHECK(vol_dev_write(dev, buf, n, own_off(w) + off) == 0);
            memcpy(w->model + off, buf, n);
            count_seals(w, off, n);
        } else if (kind < 63) { /* discard: whole blocks unmapped, the ends zeroed */
            TCHECK(vol_dev_discard(dev, own_off(w) + off, n) == 0);
            memset(w->model + off, 0, n);
            for (uint64_t o = off; o < off + n;) {
                unsigned b = (unsigned)(o / VOL_BLOCK_SIZE), in = (unsigned)(o % VOL_BLOCK_SIZE);
                size_t m = VOL_BLOCK_SIZE - in < off + n - o ? VOL_BLOCK_SIZE - in : off + n - o;
                if (m == VOL_BLOCK_SIZE) {
                    w->seals[b] = 0;
                    w->mapped[b] = false;
                } else if (w->mapped[b]) {
                    count_seals(w, o, m);
                }
                o += m;
            }
        } else { /* read back */
            TCHECK(vol_dev_read(dev, got, n, own_off(w) + off) == 0);
            TCHECK(!memcmp(got, w->model + off, n));
        }
    }
    free(buf);
    free(got);
    return NULL;
}

static uint64_t hot_last[HOT_WRITERS];

static void *hot_writer(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    uint8_t sec[SEC];
    unsigned n = 400 * (unsigned)scale;
    for (unsigned i = 1; i <= n; i++) {
        tag_fill(sec, mktag(id, 1, i));
        TCHECK(vol_dev_write(dev, sec, SEC, (uint64_t)HOT_BLOCK * VOL_BLOCK_SIZE + HOT_SECTOR * SEC) == 0);
    }
    hot_last[id] = mktag(id, 1, n);
    atomic_fetch_add(&hot_done, 1);
    return NULL;
}

static void *hot_reader(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    uint8_t *blk = malloc(VOL_BLOCK_SIZE);
    uint64_t seen[HOT_WRITERS] = {0};
    for (unsigned i = 0; blk && atomic_load(&hot_done) < HOT_WRITERS; i++) {
        uint64_t t;
        if (i % 8 == id) { /* the whole block: the other sectors are holes */
            TCHECK(vol_dev_read(dev, blk, VOL_BLOCK_SIZE, (uint64_t)HOT_BLOCK * VOL_BLOCK_SIZE) == 0);
            for (unsigned s = 0; s < VOL_SECTORS; s++)
                if (s != HOT_SECTOR)
                    TCHECK(tag_of(blk + (size_t)s * SEC) == 0);
            t = tag_of(blk + HOT_SECTOR * SEC);
        } else {
            TCHECK(vol_dev_read(dev, blk, SEC, (uint64_t)HOT_BLOCK * VOL_BLOCK_SIZE + HOT_SECTOR * SEC) == 0);
            t = tag_of(blk);
        }
        TCHECK(t != UINT64_MAX); /* one whole write, never a torn one */
        if (t && t != UINT64_MAX) {
            unsigned who = (unsigned)(t >> 48) - 1;
            TCHECK(who < HOT_WRITERS);
            /* each writer's writes are seen in order */
            if (who < HOT_WRITERS) {
                TCHECK(t >= seen[who]);
                seen[who] = t;
            }
        }
    }
    free(blk);
    return NULL;
}

static void *flusher(void *arg)
{
    while (!atomic_load(&stop_flush)) {
        TCHECK(vol_dev_flush(dev) == 0);
        atomic_fetch_add(&flushes, 1);
        usleep(2000);
    }
    return NULL;
}

static void check_phase1(struct writer *w, const char *when)
{
    uint8_t *got = malloc(OWN_BYTES), sec[SEC];
    uint64_t t;
    bool ok = false;
    for (unsigned i = 0; got && i < WRITERS; i++) {
        CHECK(vol_dev_read(dev, got, OWN_BYTES, own_off(&w[i])) == 0);
        if (memcmp(got, w[i].model, OWN_BYTES)) {
            fprintf(stderr, "%s: writer %u's region differs\n", when, i);
            CHECK(!"every byte as written");
        }
    }
    CHECK(vol_dev_read(dev, sec, SEC, (uint64_t)HOT_BLOCK * VOL_BLOCK_SIZE + HOT_SECTOR * SEC) == 0);
    t = tag_of(sec);
    for (unsigned i = 0; i < HOT_WRITERS; i++)
        ok |= t == hot_last[i];
    if (!ok)
        fprintf(stderr, "%s: the hot sector holds %016llx, not one writer's last write\n", when, (unsigned long long)t);
    CHECK(ok);
    free(got);
}

/* ---- phase 2 ---- */

struct snapw {
    pthread_t t;
    unsigned id;
    uint64_t start[SNAP_SECTORS], end[SNAP_SECTORS]; /* tickets around each round-2 write (by sector) */
};
static pthread_barrier_t bar, bar2;
static atomic_bool snap_returned;
static uint64_t snap_begin, snap_end;
static vol_snapshot snap;

static uint64_t snap_off(unsigned k) { return (uint64_t)SNAP_BLOCK * VOL_BLOCK_SIZE + (uint64_t)k * SEC; }

static void *snap_writer(void *arg)
{
    struct snapw *w = arg;
    uint8_t sec[SEC];
    unsigned mine[SNAP_SECTORS], n = 0;
    uint64_t s = 99 + w->id;
    for (unsigned k = w->id; k < SNAP_SECTORS; k += SNAP_WRITERS) { /* round 1: before the snapshot */
        tag_fill(sec, mktag(w->id, 1, k));
        TCHECK(vol_dev_write(dev, sec, SEC, snap_off(k)) == 0);
        mine[n++] = k;
    }
    pthread_barrier_wait(&bar);
    for (unsigned i = n - 1; i > 0; i--) { /* round 2, in random order, while the snapshot is taken */
        unsigned j = (unsigned)(xs(&s) % (i + 1)), x = mine[i];
        mine[i] = mine[j];
        mine[j] = x;
    }
    /* the first half before the snapshot call, the third quarter while it runs, the rest after it returned */
    for (unsigned i = 0; i < n; i++) {
        unsigned k = mine[i];
        if (i == n / 2)
            pthread_barrier_wait(&bar2);
        if (i == 3 * n / 4)
            while (!atomic_load(&snap_returned))
                sched_yield();
        tag_fill(sec, mktag(w->id, 2, k));
        w->start[k] = atomic_fetch_add(&ticket, 1);
        TCHECK(vol_dev_write(dev, sec, SEC, snap_off(k)) == 0);
        w->end[k] = atomic_fetch_add(&ticket, 1);
    }
    return NULL;
}

static void *snapshotter(void *arg)
{
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar2);
    snap_begin = atomic_fetch_add(&ticket, 1);
    TCHECK(vol_dev_snapshot(dev, "parallel", NULL, &snap, NULL) == 0);
    snap_end = atomic_fetch_add(&ticket, 1);
    atomic_store(&snap_returned, true);
    return NULL;
}

static void check_seals(vol_catalog *cat, const vol_volume *v, struct writer *w)
{
    for (unsigned i = 0; i < WRITERS; i++)
        for (unsigned b = 0; b < OWN_BLOCKS; b++) {
            uint64_t block = (own_off(&w[i]) / VOL_BLOCK_SIZE) + b, gen = 0;
            vol_chunk k;
            int rc = cat->ops->map_get(cat, v->id, block, &gen);
            CHECK(w[i].mapped[b] ? rc == 0 : rc == -ENOENT);
            if (rc == 0 && cat->ops->chunk_get(cat, gen, &k) == 0) {
                if (k.seals != w[i].seals[b])
                    fprintf(stderr, "block %llu: %llu seals recorded, %llu made\n", (unsigned long long)block,
                            (unsigned long long)k.seals, (unsigned long long)w[i].seals[b]);
                CHECK(k.seals == w[i].seals[b]);
            }
        }
    {
        uint64_t gen = 0;
        vol_chunk k;
        /* every write sealed once and counted; the sector's counter (chunk version 2: +1 for the first write
         * after a flush, +2 for each later one) is 2·seals − F, F the writes that came first after a flush:
         * at least 1 (the fresh chunk's first) and at most one per flush more */
        uint64_t f = (uint64_t)atomic_load(&flushes) + 1;
        CHECK(cat->ops->map_get(cat, v->id, HOT_BLOCK, &gen) == 0 && cat->ops->chunk_get(cat, gen, &k) == 0 &&
              k.seals == (uint64_t)HOT_WRITERS * 400 * (uint64_t)scale && k.ctr[HOT_SECTOR] <= 2 * k.seals - 1 &&
              k.ctr[HOT_SECTOR] + (f < k.seals ? f : k.seals) >= 2 * k.seals);
    }
}

int main(void)
{
    char dir[] = "/tmp/test_dev_parallel.XXXXXX", path[512], cmd[600];
    vol_store *st = NULL;
    vol_catalog *cat;
    vol_chunkstore *cs;
    vol_volume v = {0}, r = {0};
    uint8_t dk[32];
    struct writer w[WRITERS];
    struct snapw sw[SNAP_WRITERS];
    pthread_t hw[HOT_WRITERS], hr[HOT_READERS], fl, sn;
    const char *sc = getenv("ENVELOPEFS_TEST_SCALE");
    if (sc && atoi(sc) > 0)
        scale = atoi(sc);
    if (sodium_init() < 0 || !mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/store", dir);
    CHECK(vol_store_open(path, NULL, &st, NULL) == 0);
    if (!st)
        return 1;
    cat = vol_store_catalog(st);
    cs = vol_store_chunks(st);
    randombytes_buf(dk, sizeof dk);
    snprintf(v.id, sizeof v.id, "vol-0000000000000000a");
    v.size_gib = 1;
    snprintf(v.lineage, sizeof v.lineage, "00112233445566778899aabbccddeeff");
    CHECK(cat->ops->volume_put(cat, &v) == 0);
    CHECK(vol_dev_open(cat, cs, &v, v.lineage, dk, &dev) == 0);

    /* phase 1 */
    memset(w, 0, sizeof w);
    for (unsigned i = 0; i < WRITERS; i++) {
        w[i].id = i;
        w[i].model = calloc(1, OWN_BYTES);
        CHECK(w[i].model && pthread_create(&w[i].t, NULL, writer_main, &w[i]) == 0);
    }
    for (unsigned i = 0; i < HOT_WRITERS; i++)
        CHECK(pthread_create(&hw[i], NULL, hot_writer, (void *)(uintptr_t)i) == 0);
    for (unsigned i = 0; i < HOT_READERS; i++)
        CHECK(pthread_create(&hr[i], NULL, hot_reader, (void *)(uintptr_t)i) == 0);
    CHECK(pthread_create(&fl, NULL, flusher, NULL) == 0);
    for (unsigned i = 0; i < WRITERS; i++)
        pthread_join(w[i].t, NULL);
    for (unsigned i = 0; i < HOT_WRITERS; i++)
        pthread_join(hw[i], NULL);
    for (unsigned i = 0; i < HOT_READERS; i++)
        pthread_join(hr[i], NULL);
    atomic_store(&stop_flush, true);
    pthread_join(fl, NULL);
    CHECK(atomic_load(&flushes) > 0);
    check_phase1(w, "phase 1");
    CHECK(vol_dev_flush(dev) == 0);
    check_seals(cat, &v, w);
    vol_dev_free(dev);
    CHECK(vol_dev_open(cat, cs, &v, v.lineage, dk, &dev) == 0);
    check_phase1(w, "phase 1, reopened");
    CHECK(vol_check(cat, cs, v.id, v.lineage, dk, stderr) == 0);

    /* phase 2 */
    CHECK(pthread_barrier_init(&bar, NULL, SNAP_WRITERS + 1) == 0 && pthread_barrier_init(&bar2, NULL, SNAP_WRITERS + 1) == 0);
    atomic_store(&stop_flush, false);
    CHECK(pthread_create(&fl, NULL, flusher, NULL) == 0);
    memset(sw, 0, sizeof sw);
    for (unsigned i = 0; i < SNAP_WRITERS; i++) {
        sw[i].id = i;
        CHECK(pthread_create(&sw[i].t, NULL, snap_writer, &sw[i]) == 0);
    }
    CHECK(pthread_create(&sn, NULL, snapshotter, NULL) == 0);
    for (unsigned i = 0; i < SNAP_WRITERS; i++)
        pthread_join(sw[i].t, NULL);
    pthread_join(sn, NULL);
    atomic_store(&stop_flush, true);
    pthread_join(fl, NULL);
    pthread_barrier_destroy(&bar);
    pthread_barrier_destroy(&bar2);
    CHECK(vol_dev_flush(dev) == 0);
    {
        uint8_t *live = malloc((size_t)SNAP_SECTORS * SEC), *old = malloc((size_t)SNAP_SECTORS * SEC);
        unsigned in = 0, out = 0, either = 0;
        vol_dev *rd = NULL;
        CHECK(live && old);
        /* the volume: every round-2 write */
        CHECK(vol_dev_read(dev, live, (size_t)SNAP_SECTORS * SEC, snap_off(0)) == 0);
        for (unsigned k = 0; k < SNAP_SECTORS; k++)
            CHECK(tag_of(live + (size_t)k * SEC) == mktag(k % SNAP_WRITERS, 2, k));
        check_phase1(w, "after phase 2");
        /* the snapshot, restored: round 1 everywhere, and round 2 exactly where it was acknowledged before */
        snprintf(r.id, sizeof r.id, "vol-0000000000000000b");
        r.size_gib = 1;
        snprintf(r.lineage, sizeof r.lineage, "%s", v.lineage);
        CHECK(cat->ops->volume_put(cat, &r) == 0 && cat->ops->map_copy(cat, snap.id, r.id) == 0);
        CHECK(vol_dev_open(cat, cs, &r, r.lineage, dk, &rd) == 0);
        CHECK(rd && vol_dev_read(rd, old, (size_t)SNAP_SECTORS * SEC, snap_off(0)) == 0);
        for (unsigned k = 0; k < SNAP_SECTORS; k++) {
            const struct snapw *o = &sw[k % SNAP_WRITERS];
            uint64_t t = tag_of(old + (size_t)k * SEC), r1 = mktag(k % SNAP_WRITERS, 1, k), r2 = mktag(k % SNAP_WRITERS, 2, k);
            if (o->end[k] < snap_begin) {
                CHECK(t == r2);
                in++;
            } else if (o->start[k] > snap_end) {
                CHECK(t == r1);
                out++;
            } else {
                CHECK(t == r1 || t == r2);
                either++;
            }
        }
        printf("snapshot: %u writes acknowledged before it (in it), %u begun after it (not in it), %u concurrent\n",
               in, out, either);
        CHECK(in >= SNAP_SECTORS / 2 && out >= SNAP_SECTORS / 4);
        {
            /* the phase-1 regions were quiet: the snapshot holds them as they are */
            uint8_t *got = malloc(OWN_BYTES);
            for (unsigned i = 0; got && i < WRITERS; i++) {
                CHECK(vol_dev_read(rd, got, OWN_BYTES, own_off(&w[i])) == 0);
                CHECK(!memcmp(got, w[i].model, OWN_BYTES));
            }
            free(got);
        }
        vol_dev_free(rd);
        CHECK(vol_check(cat, cs, snap.id, v.lineage, dk, stderr) == 0);
        CHECK(vol_check(cat, cs, v.id, v.lineage, dk, stderr) == 0);
        free(live);
        free(old);
    }
    vol_dev_free(dev);
    vol_snapshot_clear(&snap);
    for (unsigned i = 0; i < WRITERS; i++)
        free(w[i].model);
    vol_store_free(st);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd))
        fprintf(stderr, "cannot remove %s\n", dir);
    failures += atomic_load(&errors);
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
