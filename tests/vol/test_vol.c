/*
 * test_vol.c — unit tests of the volume layer without FUSE: the sector format (golden vectors of chunk
 * versions 1 and 2, tamper, move, rollback, version 2's slot choice), a torn rewrite after a power cut
 * (the flushed sector reads; rollback still fails) and a version-1 chunk copied up, the SQLite catalog (rows, reference counts, generations, a newer format refused), the
 * file chunk store, and the data path over both (copy-on-write after a snapshot, restore, discard,
 * delete of a middle snapshot, a crash before the flush, the seal limit moving a chunk to a new key, reads
 * of one slot once a sector's newest version is established — counted through a counting chunk store), keys
 * through the embedded key service, and lazy rekey (a volume restored under another key: reads across
 * lineages, copy-up of written blocks into the new lineage, `volume rekey` killed and rerun, the old key
 * disabled afterwards, snapshots taken part-way still readable);
 * the copies table and the read-only catalog and chunk store a copy from another region reads.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "catalog.h"
#include "chunkstore.h"
#include "dev.h"
#include "rekey.h"
#include "sector.h"
#include "share.h"
#include "store.h"

#include "volcheck.h"

static void test_sector(void)
{
    uint8_t dk[32], lin[16], key[32], nonce[12], pt[VOL_SECTOR_SIZE], back[VOL_SECTOR_SIZE], slot[VOL_SLOT_SIZE],
        digest[32], hdr[VOL_CHUNK_HDR];
    char h[2 * VOL_SLOT_SIZE + 1];
    uint32_t ctr;
    vol_sealer *s = vol_sealer_new();
    for (int i = 0; i < 32; i++)
        dk[i] = (uint8_t)i;
    for (int i = 0; i < 16; i++)
        lin[i] = (uint8_t)(0xa0 + i);
    for (int i = 0; i < 12; i++)
        nonce[i] = (uint8_t)(0xc0 + i);
    for (size_t i = 0; i < sizeof pt; i++)
        pt[i] = (uint8_t)(i * 7);
    CHECK(s);
    /* golden vector (docs/FORMAT.md "Volume chunk file"): block 5, generation 9, sector 3, counter 2 */
    CHECK(vol_chunk_key(dk, lin, 5, 9, key) == 0);
    hex(key, 32, h);
    CHECK(!strcmp(h, GOLDEN_KEY));
    if (strcmp(h, GOLDEN_KEY))
        fprintf(stderr, "chunk key %s\n", h);
    CHECK(vol_sector_seal(s, key, lin, 5, 9, 3, 2, nonce, pt, slot) == 0);
    hex(slot, 16 + 16, h); /* counter, nonce and the first 16 ciphertext bytes */
    CHECK(!strcmp(h, GOLDEN_SLOT_HEAD));
    if (strcmp(h, GOLDEN_SLOT_HEAD))
        fprintf(stderr, "slot head %s\n", h);
    hex(slot + VOL_SLOT_SIZE - 16, 16, h);
    CHECK(!strcmp(h, GOLDEN_TAG));
    if (strcmp(h, GOLDEN_TAG))
        fprintf(stderr, "tag %s\n", h);
    crypto_hash_sha256(digest, slot, sizeof slot);
    hex(digest, 32, h);
    CHECK(!strcmp(h, GOLDEN_SLOT_SHA256));
    if (strcmp(h, GOLDEN_SLOT_SHA256))
        fprintf(stderr, "slot sha256 %s\n", h);
    {
        unsigned ver = 0;
        vol_chunk_header_v(hdr, 1, lin, 5, 9);
        hex(hdr, 48, h);
        CHECK(!strcmp(h, GOLDEN_HEADER));
        if (strcmp(h, GOLDEN_HEADER))
            fprintf(stderr, "header %s\n", h);
        CHECK(vol_chunk_header_check(hdr, sizeof hdr, lin, 5, 9, &ver) == 0 && ver == 1);
        CHECK(vol_chunk_header_check(hdr, sizeof hdr, lin, 5, 10, &ver) == -EBADMSG);
        CHECK(vol_chunk_stored_size(hdr) == 528448);
        vol_chunk_header(hdr, lin, 5, 9); /* what writers write: version 2 */
        hex(hdr, 48, h);
        CHECK(!strcmp(h, GOLDEN_HEADER_V2));
        if (strcmp(h, GOLDEN_HEADER_V2))
            fprintf(stderr, "header v2 %s\n", h);
        CHECK(vol_chunk_header_check(hdr, sizeof hdr, lin, 5, 9, &ver) == 0 && ver == 2);
        CHECK(vol_chunk_stored_size(hdr) == 1056832);
        hdr[4] = 3;
        CHECK(vol_chunk_header_check(hdr, sizeof hdr, lin, 5, 9, &ver) == -EBADMSG);
        CHECK(vol_chunk_stored_size(hdr) == 528448);
    }

    CHECK(vol_sector_open(s, key, lin, 5, 9, 3, 2, slot, back, &ctr) == 0 && ctr == 2 && !memcmp(back, pt, sizeof pt));
    CHECK(vol_sector_open(s, key, lin, 5, 9, 3, 1, slot, back, &ctr) == 0 && ctr == 2); /* newer than the catalog */
    CHECK(vol_sector_open(s, key, lin, 5, 9, 3, 3, slot, back, &ctr) == -EBADMSG);      /* rolled back */
    CHECK(vol_sector_open(s, key, lin, 5, 9, 4, 2, slot, back, &ctr) == -EBADMSG);      /* moved in the chunk */
    CHECK(vol_sector_open(s, key, lin, 6, 9, 3, 2, slot, back, &ctr) == -EBADMSG);      /* another block */
    {
        uint8_t other[16], k2[32];
        memcpy(other, lin, 16);
        other[0] ^= 1;
        CHECK(vol_chunk_key(dk, other, 5, 9, k2) == 0);
        CHECK(vol_sector_open(s, k2, other, 5, 9, 3, 2, slot, back, &ctr) == -EBADMSG); /* another lineage */
    }
    slot[100] ^= 0x10;
    CHECK(vol_sector_open(s, key, lin, 5, 9, 3, 2, slot, back, &ctr) == -EBADMSG); /* a bit flip */
    slot[100] ^= 0x10;
    slot[0] = 3; /* a counter raised by hand: the AAD no longer matches */
    CHECK(vol_sector_open(s, key, lin, 5, 9, 3, 2, slot, back, &ctr) == -EBADMSG);
    memset(slot, 0, sizeof slot); /* a hole: zeros only while the catalog says never written */
    CHECK(vol_sector_open(s, key, lin, 5, 9, 3, 0, slot, back, &ctr) == 0 && ctr == 0 && back[7] == 0);
    CHECK(vol_sector_open(s, key, lin, 5, 9, 3, 1, slot, back, &ctr) == -EBADMSG);
    vol_sealer_free(s);
    /* a sealer keyed once (vol_sealer_set_key, then key NULL: dev.c's cached chunk keys, vol_reseal): the
     * same golden slot, opened by the same context in the other direction; re-keying takes effect */
    {
        uint8_t slot2[VOL_SLOT_SIZE], k2[32];
        vol_sealer *ks = vol_sealer_new();
        CHECK(ks && vol_sealer_set_key(ks, key) == 0);
        CHECK(vol_sector_seal(ks, NULL, lin, 5, 9, 3, 2, nonce, pt, slot2) == 0);
        crypto_hash_sha256(digest, slot2, sizeof slot2);
        hex(digest, 32, h);
        CHECK(!strcmp(h, GOLDEN_SLOT_SHA256));
        memset(back, 0, sizeof back);
        CHECK(vol_sector_open(ks, NULL, lin, 5, 9, 3, 2, slot2, back, &ctr) == 0 && ctr == 2 && !memcmp(back, pt, sizeof pt));
        CHECK(vol_sector_seal(ks, NULL, lin, 5, 9, 3, 2, nonce, pt, slot2) == 0); /* (after an open: sealing again) */
        crypto_hash_sha256(digest, slot2, sizeof slot2);
        hex(digest, 32, h);
        CHECK(!strcmp(h, GOLDEN_SLOT_SHA256));
        slot2[100] ^= 0x10;
        CHECK(vol_sector_open(ks, NULL, lin, 5, 9, 3, 2, slot2, back, &ctr) == -EBADMSG);
        slot2[100] ^= 0x10;
        CHECK(vol_chunk_key(dk, lin, 5, 10, k2) == 0 && vol_sealer_set_key(ks, k2) == 0); /* another chunk's key */
        CHECK(vol_sector_open(ks, NULL, lin, 5, 9, 3, 2, slot2, back, &ctr) == -EBADMSG);
        CHECK(vol_sector_open(ks, key, lin, 5, 9, 3, 2, slot2, back, &ctr) == 0 && ctr == 2); /* a key per call still wins */
        CHECK(vol_sector_open(ks, NULL, lin, 5, 9, 3, 2, slot2, back, &ctr) == 0 && ctr == 2); /* and stays set */
        sodium_memzero(k2, sizeof k2);
        vol_sealer_free(ks);
    }
}

/* The v2 golden vector's two slots of sector 3 (chunk 5, block 9): counter 1 (p1) in area 0 under nonce d0..db,
 * counter 2 (pt) in area 1 under nonce c0..cb. */
static void seal_vector(vol_sealer *s, const uint8_t key[32], const uint8_t lin[16], const uint8_t *p1,
                        const uint8_t *pt, uint8_t *a0, uint8_t *a1)
{
    uint8_t nonce[12];
    for (int i = 0; i < 12; i++)
        nonce[i] = (uint8_t)(0xd0 + i);
    CHECK(vol_sector_seal(s, key, lin, 5, 9, 3, 1, nonce, p1, a0) == 0);
    for (int i = 0; i < 12; i++)
        nonce[i] = (uint8_t)(0xc0 + i);
    CHECK(vol_sector_seal(s, key, lin, 5, 9, 3, 2, nonce, pt, a1) == 0);
}

/* Version 2 (docs/FORMAT.md "Volume chunk file"): golden chunk image — block 5, generation 9 (key as
 * above), sector 3 written with counter 1 (nonce d0…db, plaintext bytes 0x11) into area 0, flushed, then
 * rewritten with counter 2 (the version-1 golden slot: nonce c0…cb, byte i = 7·i) into area 1; then the
 * reading rule over it. */
static void test_sector_v2(void)
{
    uint8_t dk[32], lin[16], key[32], nonce[12], pt[VOL_SECTOR_SIZE], p1[VOL_SECTOR_SIZE], back[VOL_SECTOR_SIZE],
        digest[32], *img = calloc(1, VOL_CHUNK_FILE_SIZE), *a0, *a1, save[VOL_SLOT_SIZE];
    char h[65];
    uint32_t ctr = 0;
    vol_sealer *s = vol_sealer_new();
    CHECK(s && img);
    if (!s || !img) {
        vol_sealer_free(s);
        free(img);
        return;
    }
    for (int i = 0; i < 32; i++)
        dk[i] = (uint8_t)i;
    for (int i = 0; i < 16; i++)
        lin[i] = (uint8_t)(0xa0 + i);
    for (size_t i = 0; i < sizeof pt; i++)
        pt[i] = (uint8_t)(i * 7);
    memset(p1, 0x11, sizeof p1);
    CHECK(vol_chunk_key(dk, lin, 5, 9, key) == 0);
    a0 = img + vol_slot_offset_at(3, 0);
    a1 = img + vol_slot_offset_at(3, 1);
    CHECK(vol_slot_offset_at(3, 0) == 64 + 3 * 4128 && vol_slot_offset_at(3, 1) == 540832);
    CHECK(vol_slot_area(1) == 0 && vol_slot_area(2) == 1 && vol_next_ctr(0, 0) == 1 && vol_next_ctr(1, 0) == 3 &&
          vol_next_ctr(1, 1) == 2 && vol_next_ctr(4, 1) == 6);
    vol_chunk_header(img, lin, 5, 9);
    seal_vector(s, key, lin, p1, pt, a0, a1);
    CHECK(vol_chunk_stored_size(img) == VOL_CHUNK_FILE_SIZE);
    crypto_hash_sha256(digest, a0, VOL_SLOT_SIZE);
    hex(digest, 32, h);
    CHECK(!strcmp(h, GOLDEN_V2_SLOT0_SHA256));
    if (strcmp(h, GOLDEN_V2_SLOT0_SHA256))
        fprintf(stderr, "v2 area-0 slot sha256 %s\n", h);
    crypto_hash_sha256(digest, img, VOL_CHUNK_FILE_SIZE);
    hex(digest, 32, h);
    CHECK(!strcmp(h, GOLDEN_V2_CHUNK_SHA256));
    if (strcmp(h, GOLDEN_V2_CHUNK_SHA256))
        fprintf(stderr, "v2 chunk sha256 %s\n", h);

    /* the catalog has counter 1 (flushed before the rewrite): the newer slot, counter 2 */
    CHECK(vol_chunk_image_open(s, key, lin, 5, 9, 2, 3, 1, img, back, &ctr) == 0 && ctr == 2 && !memcmp(back, pt, sizeof pt));
    /* the catalog has 2: area 0 (counter 1) is older than any write after that flush; the flushed slot */
    CHECK(vol_chunk_image_open(s, key, lin, 5, 9, 2, 3, 2, img, back, &ctr) == 0 && ctr == 2 && !memcmp(back, pt, sizeof pt));
    /* 3: both slots older than the catalog — rolled back */
    CHECK(vol_chunk_image_open(s, key, lin, 5, 9, 2, 3, 3, img, back, &ctr) == -EBADMSG);
    /* a torn rewrite (counter 2's slot: its second page as before, a hole): the flushed version, counter 1 */
    memcpy(save, a1, sizeof save);
    memset(a1 + (4096 - vol_slot_offset_at(3, 1) % 4096), 0, VOL_SLOT_SIZE - (4096 - vol_slot_offset_at(3, 1) % 4096));
    CHECK(vol_chunk_image_open(s, key, lin, 5, 9, 2, 3, 1, img, back, &ctr) == 0 && ctr == 1 && !memcmp(back, p1, sizeof p1));
    /* ... but not when this session knows of counter 2 (newest 2 > flushed 1): that write is gone */
    CHECK(vol_chunk_sector_open(s, key, lin, 5, 9, 2, 3, 1, 2, a0, a1, back, &ctr) == -EBADMSG);
    memcpy(a1, save, sizeof save);
    CHECK(vol_chunk_sector_open(s, key, lin, 5, 9, 2, 3, 1, 2, a0, a1, back, &ctr) == 0 && ctr == 2);
    /* the flushed slot (counter 2, area 1) replaced by the older version of itself (counter 1): rolled back */
    CHECK(vol_chunk_sector_open(s, key, lin, 5, 9, 2, 3, 2, 2, a0, a0, back, &ctr) == -EBADMSG);
    /* a slot moved to the other area (counter 2 in area 0, where odd counters go): refused */
    CHECK(vol_chunk_sector_open(s, key, lin, 5, 9, 2, 3, 0, 0, a1, a1, back, &ctr) == -EBADMSG);
    /* never written (counter 0): two holes are zeros; one zeroed slot of a written sector is not */
    memset(img + VOL_CHUNK_HDR, 0, VOL_CHUNK_FILE_SIZE - VOL_CHUNK_HDR);
    CHECK(vol_chunk_image_open(s, key, lin, 5, 9, 2, 3, 0, img, back, &ctr) == 0 && ctr == 0 && back[9] == 0);
    CHECK(vol_chunk_image_open(s, key, lin, 5, 9, 2, 3, 1, img, back, &ctr) == -EBADMSG);
    CHECK(vol_chunk_image_open(s, key, lin, 5, 9, 2, 3, 2, img, back, &ctr) == -EBADMSG);
    /* version 1 reads its one slot (area 0) with counter ≥ the newest known */
    for (int i = 0; i < 12; i++)
        nonce[i] = (uint8_t)(0xc0 + i);
    CHECK(vol_sector_seal(s, key, lin, 5, 9, 3, 2, nonce, pt, a0) == 0);
    CHECK(vol_chunk_image_open(s, key, lin, 5, 9, 1, 3, 2, img, back, &ctr) == 0 && ctr == 2 && !memcmp(back, pt, sizeof pt));
    CHECK(vol_chunk_image_open(s, key, lin, 5, 9, 1, 3, 3, img, back, &ctr) == -EBADMSG);
    CHECK(vol_chunk_sector_open_one(s, key, lin, 5, 9, 1, 3, 2, 2, a0, back, &ctr) == 0 && ctr == 2 && !memcmp(back, pt, sizeof pt));

    /* the one-slot rule (the newest version established): area 0 counter 1 (p1), area 1 counter 2 (pt) */
    seal_vector(s, key, lin, p1, pt, a0, a1);
    /* written this session after the flush of 1 (newest 2): area 1 */
    CHECK(vol_chunk_sector_open_one(s, key, lin, 5, 9, 2, 3, 1, 2, a1, back, &ctr) == 0 && ctr == 2 && !memcmp(back, pt, sizeof pt));
    /* 2 flushed: the same slot */
    CHECK(vol_chunk_sector_open_one(s, key, lin, 5, 9, 2, 3, 2, 2, a1, back, &ctr) == 0 && ctr == 2 && !memcmp(back, pt, sizeof pt));
    /* 1 flushed and established (no newer write found): area 0 — the other area is not looked at */
    CHECK(vol_chunk_sector_open_one(s, key, lin, 5, 9, 2, 3, 1, 1, a0, back, &ctr) == 0 && ctr == 1 && !memcmp(back, p1, sizeof p1));
    /* rolled back: the slot holding the newest replaced by the older version (counter 1) */
    CHECK(vol_chunk_sector_open_one(s, key, lin, 5, 9, 2, 3, 2, 2, a0, back, &ctr) == -EBADMSG);
    CHECK(vol_chunk_sector_open_one(s, key, lin, 5, 9, 2, 3, 1, 3, a0, back, &ctr) == -EBADMSG);
    /* swapped: the other area's slot where the newest should be (counter 2 where 1 is established) */
    CHECK(vol_chunk_sector_open_one(s, key, lin, 5, 9, 2, 3, 1, 1, a1, back, &ctr) == -EBADMSG);
    /* newer than established (a slot the session does not know of) is not the version: refused */
    CHECK(vol_chunk_sector_open_one(s, key, lin, 5, 9, 2, 3, 0, 0, a0, back, &ctr) == -EBADMSG);
    /* modified: a flipped bit; zeroed (a hole where a version is established); garbage */
    a1[100] ^= 1;
    CHECK(vol_chunk_sector_open_one(s, key, lin, 5, 9, 2, 3, 2, 2, a1, back, &ctr) == -EBADMSG);
    memset(a1, 0, VOL_SLOT_SIZE);
    CHECK(vol_chunk_sector_open_one(s, key, lin, 5, 9, 2, 3, 2, 2, a1, back, &ctr) == -EBADMSG);
    randombytes_buf(a1, VOL_SLOT_SIZE);
    CHECK(vol_chunk_sector_open_one(s, key, lin, 5, 9, 2, 3, 2, 2, a1, back, &ctr) == -EBADMSG);
    /* never written (0 established): a hole is zeros; anything else is refused */
    memset(a1, 0, VOL_SLOT_SIZE);
    CHECK(vol_chunk_sector_open_one(s, key, lin, 5, 9, 2, 3, 0, 0, a1, back, &ctr) == 0 && ctr == 0 && back[9] == 0);
    CHECK(vol_chunk_sector_open_one(s, key, lin, 5, 9, 2, 3, 2, 1, a1, back, &ctr) == -EINVAL); /* newest < flushed */
    sodium_memzero(key, sizeof key);
    vol_sealer_free(s);
    free(img);
}

static int count_gen(void *arg, uint64_t gen)
{
    (*(int *)arg)++;
    return 0;
}

static int count_text(void *arg, const char *t)
{
    (void)t;
    ++*(int *)arg;
    return 0;
}
static int count_binding(void *arg, const char *b, uint64_t blocks)
{
    (void)b;
    *(int *)arg += (int)blocks;
    return 0;
}
static int first_block(void *arg, uint64_t block, uint64_t gen)
{
    (void)gen;
    if (!*(uint64_t *)arg)
        *(uint64_t *)arg = block;
    return 0;
}

static void test_catalog(const char *dir)
{
    char path[512];
    vol_catalog *c;
    vol_volume v = {0}, got;
    vol_chunk k = {0}, kg;
    uint64_t first, gen;
    int64_t refs;
    int n = 0;
    snprintf(path, sizeof path, "%s/cat.db", dir);
    CHECK(vol_catalog_sqlite_open(path, &c) == 0);
    snprintf(v.id, sizeof v.id, "vol-0123456789abcdef0");
    v.size_gib = 8;
    snprintf(v.lineage, sizeof v.lineage, "00112233445566778899aabbccddeeff");
    CHECK(c->ops->volume_put(c, &v) == 0);
    CHECK(c->ops->volume_put(c, &v) == -EEXIST);
    CHECK(c->ops->volume_get(c, v.id, &got) == 0 && got.size_gib == 8 && !strcmp(got.lineage, v.lineage));
    vol_volume_clear(&got);
    CHECK(c->ops->volume_get(c, "vol-00000000000000000", &got) == -ENOENT);
    CHECK(c->ops->gen_reserve(c, 10, &first) == 0 && first == 1);
    CHECK(c->ops->gen_reserve(c, 5, &gen) == 0 && gen == 11);
    k.gen = 3;
    snprintf(k.lineage, sizeof k.lineage, "%s", v.lineage);
    k.block = 7;
    k.refs = 1;
    k.ctr[0] = 1;
    k.ctr[127] = 0xdeadbeef;
    CHECK(c->ops->chunk_put(c, &k) == 0);
    CHECK(c->ops->map_set(c, v.id, 7, 3) == 0);
    /* lazy-rekey sources go with the map: copied by map_copy, dropped by map_drop */
    CHECK(c->ops->source_add(c, v.id, "ffeeddccbbaa99887766554433221100") == 0);
    CHECK(c->ops->source_add(c, v.id, "ffeeddccbbaa99887766554433221100") == 0); /* twice: one row */
    {
        /* a chunk of another lineage at block 9: map_foreign finds it (from any block up to 9), map_bindings
         * counts one block per lineage */
        vol_chunk o = k;
        uint64_t fb = 0;
        o.gen = 4;
        o.block = 9;
        snprintf(o.lineage, sizeof o.lineage, "ffeeddccbbaa99887766554433221100");
        CHECK(c->ops->chunk_put(c, &o) == 0 && c->ops->map_set(c, v.id, 9, 4) == 0);
        n = 0;
        CHECK(c->ops->map_foreign(c, v.id, v.lineage, 0, 0, first_block, &fb) == 0 && fb == 9);
        fb = 0;
        CHECK(c->ops->map_foreign(c, v.id, v.lineage, 10, 0, first_block, &fb) == 0 && fb == 0);
        CHECK(c->ops->map_bindings(c, v.id, count_binding, &n) == 0 && n == 2);
        CHECK(c->ops->map_del(c, v.id, 9) == 0 && c->ops->chunk_delete(c, 4) == 0);
    }
    CHECK(c->ops->map_copy(c, v.id, "snap-0123456789abcdef0") == 0);
    n = 0;
    CHECK(c->ops->source_list(c, "snap-0123456789abcdef0", count_text, &n) == 0 && n == 1);
    n = 0;
    CHECK(c->ops->chunk_get(c, 3, &kg) == 0 && kg.refs == 2 && kg.ctr[127] == 0xdeadbeef && kg.block == 7);
    CHECK(c->ops->map_get(c, "snap-0123456789abcdef0", 7, &gen) == 0 && gen == 3);
    CHECK(c->ops->map_drop(c, v.id, count_gen, &n) == 0 && n == 0); /* still referenced by the snapshot */
    CHECK(c->ops->chunk_ref(c, 3, 0, &refs) == 0 && refs == 1);
    CHECK(c->ops->map_drop(c, "snap-0123456789abcdef0", count_gen, &n) == 0 && n == 1);
    n = 0;
    CHECK(c->ops->source_list(c, "snap-0123456789abcdef0", count_text, &n) == 0 && n == 0);
    CHECK(c->ops->source_list(c, v.id, count_text, &n) == 0 && n == 0);
    CHECK(c->ops->begin(c) == 0 && c->ops->volume_delete(c, v.id) == 0);
    c->ops->rollback(c); /* rolled back: still there */
    CHECK(c->ops->volume_get(c, v.id, &got) == 0);
    vol_volume_clear(&got);
    vol_catalog_close(c);
    /* a catalog from a newer format is refused, unchanged */
    {
        sqlite3 *db;
        CHECK(sqlite3_open(path, &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db, "UPDATE meta SET v = '99' WHERE k = 'format'", NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(db);
        CHECK(vol_catalog_sqlite_open(path, &c) == -EPROTO);
        CHECK(vol_catalog_sqlite_open_ro(path, &c) == -EPROTO);
        CHECK(vol_catalog_sqlite_format(path) == 99); /* what the refusal names */
    }
}

static void test_chunkstore(const char *dir)
{
    char path[512], buf[16];
    vol_chunkstore *cs;
    int n = 0;
    snprintf(path, sizeof path, "%s/chunks", dir);
    CHECK(vol_chunkstore_file_open(path, &cs) == 0);
    CHECK(cs->ops->pread(cs, 42, buf, sizeof buf, 0) == -ENOENT);
    CHECK(cs->ops->pwrite(cs, 42, "hello", 5, 100) == 0);
    CHECK(cs->ops->sync(cs, 42) == 0);
    {
        uint64_t two[2] = {43, 0x1ff}; /* a batch across two directories */
        CHECK(cs->ops->pwrite(cs, 43, "a", 1, 0) == 0 && cs->ops->pwrite(cs, 0x1ff, "b", 1, 0) == 0);
        CHECK(cs->ops->sync_many(cs, two, 2) == 0 && cs->ops->sync_many(cs, two, 0) == 0);
        two[1] = 44; /* a chunk that does not exist */
        CHECK(cs->ops->sync_many(cs, two, 2) == -ENOENT);
        CHECK(cs->ops->remove(cs, 43) == 0 && cs->ops->remove(cs, 0x1ff) == 0);
    }
    CHECK(cs->ops->pread(cs, 42, buf, sizeof buf, 98) == 0 && buf[0] == 0 && !memcmp(buf + 2, "hello", 5) && buf[7] == 0);
    CHECK(cs->ops->list(cs, count_gen, &n) == 0 && n == 1);
    CHECK(cs->ops->bytes_used(cs) > 0);
    CHECK(cs->ops->remove(cs, 42) == 0 && cs->ops->remove(cs, 42) == 0);
    n = 0;
    CHECK(cs->ops->list(cs, count_gen, &n) == 0 && n == 0);
    vol_chunkstore_close(cs);
}

/* A volume over a store without a key service: the lineage row is made by hand. */
static void test_dev(const char *dir)
{
    char path[512];
    vol_store *st;
    vol_catalog *cat;
    vol_chunkstore *cs;
    vol_volume v = {0}, w = {0};
    vol_snapshot s1, s2;
    vol_dev *d;
    uint8_t dk[32], *a = malloc(3 * VOL_BLOCK_SIZE), *b = malloc(3 * VOL_BLOCK_SIZE);
    int freed = 0;
    int64_t used1, used2;
    snprintf(path, sizeof path, "%s/store", dir);
    CHECK(vol_store_open(path, NULL, &st, NULL) == 0);
    cat = vol_store_catalog(st);
    cs = vol_store_chunks(st);
    randombytes_buf(dk, sizeof dk);
    snprintf(v.id, sizeof v.id, "vol-00000000000000001");
    v.size_gib = 1;
    snprintf(v.lineage, sizeof v.lineage, "0f0e0d0c0b0a09080706050403020100");
    CHECK(cat->ops->volume_put(cat, &v) == 0);
    CHECK(vol_dev_open(cat, cs, &v, v.lineage, dk, &d) == 0);
    memset(a, 0, 3 * VOL_BLOCK_SIZE);
    /* never written: zeros, no chunk */
    CHECK(vol_dev_read(d, b, 4096, 12345) == 0 && b[0] == 0 && b[4095] == 0);
    CHECK(cs->ops->bytes_used(cs) == 0);
    /* unaligned writes across a block boundary */
    for (int i = 0; i < 100000; i++)
        a[VOL_BLOCK_SIZE - 50000 + i] = (uint8_t)(i * 13 + 1);
    CHECK(vol_dev_write(d, a + VOL_BLOCK_SIZE - 50000, 100000, VOL_BLOCK_SIZE - 50000) == 0);
    CHECK(vol_dev_read(d, b, 3 * VOL_BLOCK_SIZE, 0) == 0 && !memcmp(a, b, 3 * VOL_BLOCK_SIZE));
    CHECK(vol_dev_write(d, a, 10, (1ull << 30) - 5) == -ENOSPC); /* past the end */
    CHECK(vol_dev_flush(d) == 0);
    /* snapshot 1, overwrite part of block 0 (copy-on-write), snapshot 2 */
    CHECK(vol_dev_snapshot(d, "one", NULL, &s1, NULL) == 0 && !strcmp(s1.state, "completed"));
    memset(a + VOL_BLOCK_SIZE - 10000, 0x77, 5000);
    CHECK(vol_dev_write(d, a + VOL_BLOCK_SIZE - 10000, 5000, VOL_BLOCK_SIZE - 10000) == 0);
    CHECK(vol_dev_read(d, b, 3 * VOL_BLOCK_SIZE, 0) == 0 && !memcmp(a, b, 3 * VOL_BLOCK_SIZE));
    CHECK(vol_dev_snapshot(d, "two", NULL, &s2, NULL) == 0);
    used1 = cs->ops->bytes_used(cs);
    /* restore snapshot 1 into a new volume: it reads the old bytes */
    snprintf(w.id, sizeof w.id, "vol-00000000000000002");
    w.size_gib = 1;
    snprintf(w.lineage, sizeof w.lineage, "%s", v.lineage);
    CHECK(cat->ops->volume_put(cat, &w) == 0 && cat->ops->map_copy(cat, s1.id, w.id) == 0);
    {
        vol_dev *dw;
        uint8_t *c = malloc(3 * VOL_BLOCK_SIZE);
        CHECK(vol_dev_open(cat, cs, &w, w.lineage, dk, &dw) == 0);
        CHECK(vol_dev_read(dw, c, 3 * VOL_BLOCK_SIZE, 0) == 0);
        CHECK(c[VOL_BLOCK_SIZE - 10000] != 0x77 && c[VOL_BLOCK_SIZE - 50000] == 1);
        /* a write to the restored volume does not reach the snapshot */
        CHECK(vol_dev_write(dw, "xyz", 3, 0) == 0 && vol_dev_flush(dw) == 0);
        vol_dev_free(dw);
        free(c);
    }
    /* delete the middle snapshot: the newer one still reads; chunks only it held are freed */
    CHECK(vol_delete_snapshot(st, s1.id, NULL) == 0);
    {
        vol_volume r = {0};
        vol_dev *dr;
        snprintf(r.id, sizeof r.id, "vol-00000000000000003");
        r.size_gib = 1;
        snprintf(r.lineage, sizeof r.lineage, "%s", v.lineage);
        CHECK(cat->ops->volume_put(cat, &r) == 0 && cat->ops->map_copy(cat, s2.id, r.id) == 0);
        CHECK(vol_dev_open(cat, cs, &r, r.lineage, dk, &dr) == 0);
        CHECK(vol_dev_read(dr, b, 3 * VOL_BLOCK_SIZE, 0) == 0 && !memcmp(a, b, 3 * VOL_BLOCK_SIZE));
        vol_dev_free(dr);
    }
    /* discard of a whole block frees it at the flush */
    CHECK(vol_dev_discard(d, VOL_BLOCK_SIZE, VOL_BLOCK_SIZE) == 0 && vol_dev_flush(d) == 0);
    memset(a + VOL_BLOCK_SIZE, 0, VOL_BLOCK_SIZE);
    CHECK(vol_dev_read(d, b, 3 * VOL_BLOCK_SIZE, 0) == 0 && !memcmp(a, b, 3 * VOL_BLOCK_SIZE));
    CHECK(vol_check(cat, cs, v.id, v.lineage, dk, stdout) == 0);
    /* a crash before the flush: unflushed writes may be lost, nothing else; their chunk is an orphan */
    CHECK(vol_dev_write(d, a, 4096, 2 * VOL_BLOCK_SIZE + 8192) == 0);
    vol_dev_free(d); /* no flush: as if the daemon died */
    CHECK(vol_sweep(st, &freed) == 0 && freed == 1);
    CHECK(vol_dev_open(cat, cs, &v, v.lineage, dk, &d) == 0);
    CHECK(vol_dev_read(d, b, 3 * VOL_BLOCK_SIZE, 0) == 0 && !memcmp(a, b, 3 * VOL_BLOCK_SIZE));
    {
        /* after an unclean end, the first write to a chunk moves it to a new generation (a new key) */
        uint64_t g0 = 0, g1 = 0, g2 = 0;
        vol_dev_set_unclean(d);
        CHECK(cat->ops->map_get(cat, v.id, 0, &g0) == 0);
        CHECK(vol_dev_write(d, a, 4096, 0) == 0 && vol_dev_flush(d) == 0);
        CHECK(cat->ops->map_get(cat, v.id, 0, &g1) == 0 && g1 != g0);
        CHECK(vol_dev_write(d, a, 4096, 0) == 0 && vol_dev_flush(d) == 0);
        CHECK(cat->ops->map_get(cat, v.id, 0, &g2) == 0 && g2 == g1); /* once per chunk */
        CHECK(vol_dev_read(d, b, 3 * VOL_BLOCK_SIZE, 0) == 0 && !memcmp(a, b, 3 * VOL_BLOCK_SIZE));
    }
    /* the seal limit moves a chunk to a new generation (and key) */
    vol_dev_set_seal_limit(d, 200);
    {
        uint64_t g0 = 0, g1 = 0;
        CHECK(cat->ops->map_get(cat, v.id, 0, &g0) == 0);
        for (int i = 0; i < 3; i++)
            CHECK(vol_dev_write(d, a, 100 * 4096, 0) == 0);
        CHECK(vol_dev_flush(d) == 0);
        CHECK(cat->ops->map_get(cat, v.id, 0, &g1) == 0 && g1 != g0);
        vol_chunk k;
        CHECK(cat->ops->chunk_get(cat, g1, &k) == 0 && k.seals <= 200);
    }
    CHECK(vol_dev_read(d, b, 3 * VOL_BLOCK_SIZE, 0) == 0 && !memcmp(a, b, 3 * VOL_BLOCK_SIZE));
    CHECK(vol_check(cat, cs, v.id, v.lineage, dk, stdout) == 0);
    vol_dev_free(d);
    /* deleting every volume and snapshot frees every chunk */
    CHECK(vol_delete_volume(st, v.id, NULL) == 0);
    CHECK(vol_delete_volume(st, w.id, NULL) == 0);
    CHECK(vol_delete_volume(st, "vol-00000000000000003", NULL) == 0);
    used2 = cs->ops->bytes_used(cs);
    CHECK(used2 < used1);
    CHECK(vol_delete_snapshot(st, s2.id, NULL) == 0);
    CHECK(cs->ops->bytes_used(cs) == 0);
    vol_snapshot_clear(&s1);
    vol_snapshot_clear(&s2);
    vol_store_free(st);
    free(a);
    free(b);
}

/* Sector s of block 0 of v as a fresh device reads it (as after a crash: nothing known but the catalog);
 * the return code of the read. */
static int read_fresh(vol_catalog *cat, vol_chunkstore *cs, const vol_volume *v, const uint8_t dk[32], unsigned s,
                      uint8_t *out)
{
    vol_dev *d;
    int rc = vol_dev_open(cat, cs, v, v->lineage, dk, &d);
    if (rc)
        return rc;
    rc = vol_dev_read(d, out, VOL_SECTOR_SIZE, (uint64_t)s * VOL_SECTOR_SIZE);
    vol_dev_free(d);
    return rc;
}

/* A power cut during the writeback of a rewrite (docs/DESIGN.md "Power loss"): the rewritten slot left
 * half new, half as it was before (a page each side of the boundary inside the slot). The sector must read
 * its last flushed contents (chunk version 2 never rewrites that slot), and rollback still fails. A
 * version-1 chunk (made by hand, as older releases wrote them) reads and is copied up at its first write. */
static void test_torn(const char *dir)
{
    char path[512];
    vol_store *st;
    vol_catalog *cat;
    vol_chunkstore *cs;
    vol_volume v = {0};
    vol_dev *d;
    uint8_t dk[32], A[VOL_SECTOR_SIZE], B[VOL_SECTOR_SIZE], C[VOL_SECTOR_SIZE], D[VOL_SECTOR_SIZE], got[VOL_SECTOR_SIZE],
        newslot[VOL_SLOT_SIZE], oldslot[VOL_SLOT_SIZE], olderslot[VOL_SLOT_SIZE], hdr[VOL_CHUNK_HDR], lin0[VOL_LINEAGE_LEN];
    uint64_t gen = 0, off, cut;
    unsigned ver = 0;
    snprintf(path, sizeof path, "%s/torn", dir);
    CHECK(vol_store_open(path, NULL, &st, NULL) == 0);
    cat = vol_store_catalog(st);
    cs = vol_store_chunks(st);
    randombytes_buf(dk, sizeof dk);
    snprintf(v.id, sizeof v.id, "vol-00000000000000007");
    v.size_gib = 1;
    snprintf(v.lineage, sizeof v.lineage, "1f1e1d1c1b1a19181716151413121110");
    CHECK(vol_lineage_bin(v.lineage, lin0) == 0);
    CHECK(cat->ops->volume_put(cat, &v) == 0);
    memset(A, 0xaa, sizeof A);
    memset(B, 0xbb, sizeof B);
    memset(C, 0xcc, sizeof C);
    memset(D, 0xdd, sizeof D);

    /* sectors 0 and 1: A, flushed (counter 1, area 0); rewritten B (counter 2, area 1); the cut */
    CHECK(vol_dev_open(cat, cs, &v, v.lineage, dk, &d) == 0);
    CHECK(vol_dev_write(d, A, sizeof A, 0) == 0 && vol_dev_write(d, A, sizeof A, VOL_SECTOR_SIZE) == 0);
    CHECK(vol_dev_flush(d) == 0);
    CHECK(cat->ops->map_get(cat, v.id, 0, &gen) == 0);
    CHECK(cs->ops->pread(cs, gen, hdr, sizeof hdr, 0) == 0 && vol_chunk_header_check(hdr, sizeof hdr, lin0, 0, gen, &ver) == 0 &&
          ver == 2);
    CHECK(vol_dev_write(d, B, sizeof B, 0) == 0 && vol_dev_write(d, B, sizeof B, VOL_SECTOR_SIZE) == 0);
    vol_dev_free(d); /* no flush: the power went */
    /* sector 0's rewrite torn: its first page's part new, the rest as before (a hole) */
    off = vol_slot_offset_at(0, 1);
    cut = 4096 - off % 4096;
    memset(newslot, 0, sizeof newslot);
    CHECK(cs->ops->pwrite(cs, gen, newslot, VOL_SLOT_SIZE - cut, off + cut) == 0);
    CHECK(read_fresh(cat, cs, &v, dk, 0, got) == 0 && !memcmp(got, A, sizeof A)); /* the flushed A, not EIO */
    CHECK(read_fresh(cat, cs, &v, dk, 1, got) == 0 && !memcmp(got, B, sizeof B)); /* an untorn rewrite: as a disk may */
    CHECK(vol_check(cat, cs, v.id, v.lineage, dk, stdout) == 0);

    /* the next round: sector 1's B becomes the flushed version (read, counter raised, flushed: area 1);
     * its rewrite D goes to area 0 over A, and tears there: half D, half A */
    CHECK(vol_dev_open(cat, cs, &v, v.lineage, dk, &d) == 0);
    CHECK(vol_dev_read(d, got, sizeof got, VOL_SECTOR_SIZE) == 0 && !memcmp(got, B, sizeof B));
    CHECK(vol_dev_flush(d) == 0);
    off = vol_slot_offset_at(1, 0);
    cut = 4096 - off % 4096;
    CHECK(cs->ops->pread(cs, gen, olderslot, VOL_SLOT_SIZE, off) == 0);            /* A, counter 1 */
    CHECK(cs->ops->pread(cs, gen, oldslot, VOL_SLOT_SIZE, vol_slot_offset_at(1, 1)) == 0); /* B, counter 2 */
    CHECK(vol_dev_write(d, C, sizeof C, 0) == 0 && vol_dev_write(d, D, sizeof D, VOL_SECTOR_SIZE) == 0);
    CHECK(vol_dev_read(d, got, sizeof got, VOL_SECTOR_SIZE) == 0 && !memcmp(got, D, sizeof D));
    vol_dev_free(d);
    CHECK(cs->ops->pread(cs, gen, newslot, VOL_SLOT_SIZE, off) == 0 && newslot[0] == 3); /* D went to area 0 */
    CHECK(cs->ops->pwrite(cs, gen, olderslot + cut, VOL_SLOT_SIZE - cut, off + cut) == 0);
    CHECK(read_fresh(cat, cs, &v, dk, 1, got) == 0 && !memcmp(got, B, sizeof B)); /* the flushed B */
    CHECK(read_fresh(cat, cs, &v, dk, 0, got) == 0 && !memcmp(got, C, sizeof C)); /* C: a whole rewrite */
    CHECK(vol_check(cat, cs, v.id, v.lineage, dk, stdout) == 0);
    /* rollback: the flushed slot replaced by an older version of the sector (A, counter 1) */
    CHECK(cs->ops->pwrite(cs, gen, olderslot, VOL_SLOT_SIZE, vol_slot_offset_at(1, 1)) == 0);
    CHECK(read_fresh(cat, cs, &v, dk, 1, got) == -EIO);
    CHECK(vol_check(cat, cs, v.id, v.lineage, dk, stdout) == 1);
    /* ... or that older version in the other slot (whole): still the flushed B is what reads */
    CHECK(cs->ops->pwrite(cs, gen, oldslot, VOL_SLOT_SIZE, vol_slot_offset_at(1, 1)) == 0);
    CHECK(cs->ops->pwrite(cs, gen, olderslot, VOL_SLOT_SIZE, off) == 0);
    CHECK(read_fresh(cat, cs, &v, dk, 1, got) == 0 && !memcmp(got, B, sizeof B));
    /* an attacker zeroing a written sector (both slots, or only the flushed one): EIO, not zeros */
    memset(newslot, 0, sizeof newslot);
    CHECK(cs->ops->pwrite(cs, gen, newslot, VOL_SLOT_SIZE, vol_slot_offset_at(1, 1)) == 0);
    CHECK(read_fresh(cat, cs, &v, dk, 1, got) == -EIO);
    CHECK(cs->ops->pwrite(cs, gen, newslot, VOL_SLOT_SIZE, off) == 0);
    CHECK(read_fresh(cat, cs, &v, dk, 1, got) == -EIO);
    CHECK(vol_check(cat, cs, v.id, v.lineage, dk, stdout) == 1);

    /* a version-1 chunk for block 1 (one slot per sector, counter 3 at sector 2): read as it is; the
     * first write copies it up into a version-2 chunk, and the old file is freed at the flush */
    {
        uint8_t lin[VOL_LINEAGE_LEN], key[32], *slot = malloc(VOL_SLOT_SIZE);
        uint64_t g1 = 0, g2 = 0;
        vol_chunk k;
        vol_sealer *s = vol_sealer_new();
        int freed = -1;
        CHECK(slot && s && vol_lineage_bin(v.lineage, lin) == 0);
        CHECK(cat->ops->gen_reserve(cat, 1, &g1) == 0 && vol_chunk_key(dk, lin, 1, g1, key) == 0);
        vol_chunk_header_v(hdr, 1, lin, 1, g1);
        CHECK(vol_sector_seal(s, key, lin, 1, g1, 2, 3, NULL, A, slot) == 0);
        CHECK(cs->ops->pwrite(cs, g1, hdr, sizeof hdr, 0) == 0 && cs->ops->pwrite(cs, g1, slot, VOL_SLOT_SIZE, vol_slot_offset(2)) == 0 &&
              cs->ops->sync(cs, g1) == 0);
        memset(&k, 0, sizeof k);
        k.gen = g1;
        snprintf(k.lineage, sizeof k.lineage, "%s", v.lineage);
        k.block = 1;
        k.refs = 1;
        k.seals = 1;
        k.ctr[2] = 3;
        CHECK(cat->ops->begin(cat) == 0 && cat->ops->chunk_put(cat, &k) == 0 && cat->ops->map_set(cat, v.id, 1, g1) == 0 &&
              cat->ops->commit(cat) == 0);
        CHECK(vol_dev_open(cat, cs, &v, v.lineage, dk, &d) == 0);
        CHECK(vol_dev_read(d, got, sizeof got, VOL_BLOCK_SIZE + 2 * VOL_SECTOR_SIZE) == 0 && !memcmp(got, A, sizeof A));
        CHECK(vol_dev_write(d, B, sizeof B, VOL_BLOCK_SIZE + 5 * VOL_SECTOR_SIZE) == 0 && vol_dev_flush(d) == 0);
        CHECK(cat->ops->map_get(cat, v.id, 1, &g2) == 0 && g2 != g1);
        CHECK(cs->ops->pread(cs, g2, hdr, sizeof hdr, 0) == 0 && vol_chunk_header_check(hdr, sizeof hdr, lin, 1, g2, &ver) == 0 && ver == 2);
        CHECK(cs->ops->pread(cs, g1, hdr, sizeof hdr, 0) == -ENOENT); /* the version-1 file is gone */
        CHECK(vol_dev_read(d, got, sizeof got, VOL_BLOCK_SIZE + 2 * VOL_SECTOR_SIZE) == 0 && !memcmp(got, A, sizeof A));
        CHECK(vol_dev_read(d, got, sizeof got, VOL_BLOCK_SIZE + 5 * VOL_SECTOR_SIZE) == 0 && !memcmp(got, B, sizeof B));
        vol_dev_free(d);
        CHECK(vol_sweep(st, &freed) == 0 && freed == 0);
        sodium_memzero(key, sizeof key);
        vol_sealer_free(s);
        free(slot);
    }
    vol_store_free(st);
}

/* A chunk store that counts the reads it forwards to another (the one-slot read path's test). */
struct counting {
    vol_chunkstore base;
    vol_chunkstore *in;
    int preads;
};
static void c_close(vol_chunkstore *cs) { (void)cs; }
static int c_pread(vol_chunkstore *cs, uint64_t gen, void *buf, size_t n, uint64_t off)
{
    struct counting *c = (struct counting *)cs;
    c->preads++;
    return c->in->ops->pread(c->in, gen, buf, n, off);
}
static int c_pwrite(vol_chunkstore *cs, uint64_t gen, const void *buf, size_t n, uint64_t off)
{
    return ((struct counting *)cs)->in->ops->pwrite(((struct counting *)cs)->in, gen, buf, n, off);
}
static int c_sync(vol_chunkstore *cs, uint64_t gen) { return ((struct counting *)cs)->in->ops->sync(((struct counting *)cs)->in, gen); }
static int c_sync_many(vol_chunkstore *cs, const uint64_t *gens, size_t n)
{
    return ((struct counting *)cs)->in->ops->sync_many(((struct counting *)cs)->in, gens, n);
}
static int c_remove(vol_chunkstore *cs, uint64_t gen) { return ((struct counting *)cs)->in->ops->remove(((struct counting *)cs)->in, gen); }
static int c_list(vol_chunkstore *cs, int (*fn)(void *, uint64_t), void *arg)
{
    return ((struct counting *)cs)->in->ops->list(((struct counting *)cs)->in, fn, arg);
}
static int64_t c_used(vol_chunkstore *cs) { return ((struct counting *)cs)->in->ops->bytes_used(((struct counting *)cs)->in); }
static const vol_chunkstore_ops COUNTING = {c_close, c_pread, c_pwrite, c_sync, c_sync_many, c_remove, c_list, c_used};

/* Reads of one slot (dev.c read_sectors): a sector whose newest version the session established — it
 * wrote it, its chunk is the session's, or a read of both slots found it — reads one area (counted), and
 * returns the right bytes whatever the other area holds (garbage, an older version); the slot that holds
 * it rolled back, swapped or zeroed is still EIO. A new session reads both areas once, then one. */
static void test_one_area(const char *dir)
{
    char path[512];
    vol_store *st;
    vol_catalog *cat;
    struct counting c = {{&COUNTING}, NULL, 0};
    vol_volume v = {0};
    vol_dev *d;
    uint8_t dk[32], A[VOL_SECTOR_SIZE], B[VOL_SECTOR_SIZE], got[VOL_SECTOR_SIZE], slotA[VOL_SLOT_SIZE], slotB[VOL_SLOT_SIZE],
        junk[VOL_SLOT_SIZE];
    uint64_t gen = 0, a0 = vol_slot_offset_at(5, 0), a1 = vol_slot_offset_at(5, 1), at = 5 * VOL_SECTOR_SIZE;
    int n;
    snprintf(path, sizeof path, "%s/onearea", dir);
    CHECK(vol_store_open(path, NULL, &st, NULL) == 0);
    cat = vol_store_catalog(st);
    c.in = vol_store_chunks(st);
    randombytes_buf(dk, sizeof dk);
    snprintf(v.id, sizeof v.id, "vol-00000000000000009");
    v.size_gib = 1;
    snprintf(v.lineage, sizeof v.lineage, "2f2e2d2c2b2a29282726252423222120");
    CHECK(cat->ops->volume_put(cat, &v) == 0);
    memset(A, 0xa1, sizeof A);
    memset(B, 0xb2, sizeof B);
    randombytes_buf(junk, sizeof junk);

    /* one session: A (counter 1, area 0) flushed, B (counter 2, area 1) written */
    CHECK(vol_dev_open(cat, &c.base, &v, v.lineage, dk, &d) == 0);
    CHECK(vol_dev_write(d, A, sizeof A, at) == 0 && vol_dev_flush(d) == 0);
    CHECK(cat->ops->map_get(cat, v.id, 0, &gen) == 0);
    n = c.preads;
    CHECK(vol_dev_read(d, got, sizeof got, at) == 0 && !memcmp(got, A, sizeof A) && c.preads == n + 1); /* its own chunk */
    CHECK(c.in->ops->pread(c.in, gen, slotA, VOL_SLOT_SIZE, a0) == 0 && slotA[0] == 1);
    CHECK(vol_dev_write(d, B, sizeof B, at) == 0);
    CHECK(c.in->ops->pread(c.in, gen, slotB, VOL_SLOT_SIZE, a1) == 0 && slotB[0] == 2);
    /* the other area garbage, then the older version there: B reads, one area */
    CHECK(c.in->ops->pwrite(c.in, gen, junk, VOL_SLOT_SIZE, a0) == 0);
    n = c.preads;
    CHECK(vol_dev_read(d, got, sizeof got, at) == 0 && !memcmp(got, B, sizeof B) && c.preads == n + 1);
    CHECK(vol_dev_flush(d) == 0); /* B flushed: counter 2, area 1 */
    CHECK(vol_dev_read(d, got, sizeof got, at) == 0 && !memcmp(got, B, sizeof B));
    CHECK(c.in->ops->pwrite(c.in, gen, slotA, VOL_SLOT_SIZE, a0) == 0);
    CHECK(vol_dev_read(d, got, sizeof got, at) == 0 && !memcmp(got, B, sizeof B));
    /* rolled back (A's slot where B is), swapped (B's slot in area 0, area 1 garbage), zeroed: EIO */
    CHECK(c.in->ops->pwrite(c.in, gen, slotA, VOL_SLOT_SIZE, a1) == 0);
    CHECK(vol_dev_read(d, got, sizeof got, at) == -EIO);
    CHECK(c.in->ops->pwrite(c.in, gen, slotB, VOL_SLOT_SIZE, a0) == 0 && c.in->ops->pwrite(c.in, gen, junk, VOL_SLOT_SIZE, a1) == 0);
    CHECK(vol_dev_read(d, got, sizeof got, at) == -EIO);
    memset(got, 0, sizeof got);
    CHECK(c.in->ops->pwrite(c.in, gen, got, sizeof got, a1) == 0 && c.in->ops->pwrite(c.in, gen, got, 32, a1 + VOL_SECTOR_SIZE) == 0);
    CHECK(vol_dev_read(d, got, sizeof got, at) == -EIO);
    CHECK(c.in->ops->pwrite(c.in, gen, slotB, VOL_SLOT_SIZE, a1) == 0 && c.in->ops->pwrite(c.in, gen, junk, VOL_SLOT_SIZE, a0) == 0);
    CHECK(vol_dev_read(d, got, sizeof got, at) == 0 && !memcmp(got, B, sizeof B)); /* put back: B again */
    vol_dev_free(d);

    /* a new session: the first read looks at both areas (and finds B past the garbage), the next at one */
    CHECK(vol_dev_open(cat, &c.base, &v, v.lineage, dk, &d) == 0);
    CHECK(vol_dev_read(d, got, sizeof got, at) == 0 && !memcmp(got, B, sizeof B)); /* (the header read, too) */
    n = c.preads;
    CHECK(vol_dev_read(d, got, sizeof got, at + VOL_SECTOR_SIZE) == 0 && got[7] == 0 && c.preads == n + 2); /* sector 6: not yet */
    n = c.preads;
    CHECK(vol_dev_read(d, got, sizeof got, at) == 0 && !memcmp(got, B, sizeof B) && c.preads == n + 1);
    CHECK(vol_dev_read(d, got, sizeof got, at + VOL_SECTOR_SIZE) == 0 && got[7] == 0 && c.preads == n + 2);
    /* established, then rolled back under it: still EIO */
    CHECK(c.in->ops->pwrite(c.in, gen, slotA, VOL_SLOT_SIZE, a1) == 0);
    CHECK(vol_dev_read(d, got, sizeof got, at) == -EIO);
    vol_dev_free(d);
    CHECK(vol_check(cat, c.in, v.id, v.lineage, dk, stdout) == 1);
    vol_store_free(st);
}

static int64_t fake_now;
static int64_t fake_clock(void *arg) { return fake_now ? fake_now : (int64_t)time(NULL); }

/* Keys through a real (embedded) key service: a disabled or deleted key refuses; once the deletion
 * window has passed the volume and its snapshot are unreadable for good (crypto-shredding). */
static void test_keys(const char *dir)
{
    char ks[512], vs[512], pw[512], *msg = NULL, *resp = NULL, req[640];
    size_t resp_len = 0;
    kms_store_opts so = {0};
    kmsc_opts ko = {0};
    kmsc *kms = NULL;
    kmsc_error ke;
    vol_store *st;
    vol_volume v, w;
    vol_snapshot snap;
    vol_lineage lin;
    vol_err e;
    kmsc_secret *dk = NULL;
    vol_create_args ca = {0};
    char arn[256] = "", url[600];
    snprintf(ks, sizeof ks, "%s/keystore", dir);
    snprintf(vs, sizeof vs, "%s/volumes", dir);
    snprintf(pw, sizeof pw, "%s/pw", dir);
    {
        FILE *f = fopen(pw, "w");
        fputs("test passphrase\n", f);
        fclose(f);
    }
    so.store_dir = ks;
    so.passphrase_file = pw;
    CHECK(kms_store_init(&so, &msg) == KMS_OK);
    free(msg);
    snprintf(url, sizeof url, "local:%s", ks);
    ko.url = url;
    ko.passphrase_file = pw;
    CHECK(kmsc_new(&ko, &kms, &msg) == KMS_OK);
    free(msg);
    if (!kms)
        return;
    kms_core_set_clock(kmsc_embedded_core(kms), fake_clock, NULL);
    CHECK(kmsc_call(kms, "CreateKey", "{}", 2, &resp, &resp_len, &ke) == KMS_OK);
    {
        const char *p = resp ? strstr(resp, "\"Arn\":") : NULL;
        if (p)
            sscanf(p, "\"Arn\":%*[ \"]%255[^\"]", arn);
    }
    kmsc_response_free(resp, resp_len);
    CHECK(!strncmp(arn, "arn:aws:kms:", 12));
    CHECK(vol_store_open(vs, kms, &st, NULL) == 0);
    ca.size_gib = 1;
    ca.kms_key_id = arn;
    CHECK(vol_create_volume(st, &ca, &v, &e) == 0);
    CHECK(vol_lineage_of(st, v.lineage, &lin, NULL) == 0 && !strcmp(lin.key_arn, arn) && !strcmp(lin.ctx_id, v.id));
    CHECK(vol_lineage_key(st, &lin, &dk, &e) == 0);
    {
        vol_dev *d;
        CHECK(dk && vol_dev_open(vol_store_catalog(st), vol_store_chunks(st), &v, lin.binding, dk->data, &d) == 0);
        CHECK(vol_dev_write(d, "secret", 6, 4096) == 0 && vol_dev_flush(d) == 0);
        vol_dev_free(d);
    }
    kmsc_secret_free(dk);
    dk = NULL;
    CHECK(vol_create_snapshot(st, v.id, "before", NULL, &snap, &e) == 0);
    /* the context binds the data key to the volume it was made for */
    {
        vol_lineage other = lin;
        snprintf(other.ctx_id, sizeof other.ctx_id, "vol-00000000000000000");
        CHECK(vol_lineage_key(st, &other, &dk, &e) < 0 && !strcmp(e.code, "KMS.InvalidCiphertextException"));
    }
    snprintf(req, sizeof req, "{\"KeyId\":\"%s\"}", arn);
    CHECK(kmsc_call(kms, "DisableKey", req, strlen(req), &resp, &resp_len, &ke) == KMS_OK);
    kmsc_response_free(resp, resp_len);
    ca.size_gib = 1;
    CHECK(vol_create_volume(st, &ca, &w, &e) < 0 && !strcmp(e.code, "KMS.DisabledException"));
    ca.snapshot_id = snap.id;
    ca.kms_key_id = NULL;
    CHECK(vol_create_volume(st, &ca, &w, &e) < 0 && !strcmp(e.code, "KMS.DisabledException"));
    CHECK(vol_lineage_key(st, &lin, &dk, &e) < 0);
    snprintf(req, sizeof req, "{\"KeyId\":\"%s\",\"PendingWindowInDays\":7}", arn);
    CHECK(kmsc_call(kms, "ScheduleKeyDeletion", req, strlen(req), &resp, &resp_len, &ke) == KMS_OK);
    kmsc_response_free(resp, resp_len);
    CHECK(vol_lineage_key(st, &lin, &dk, &e) < 0 && !strcmp(e.code, "KMS.KMSInvalidStateException"));
    fake_now = time(NULL) + 8 * 86400; /* the window has passed: the key material is destroyed */
    CHECK(vol_lineage_key(st, &lin, &dk, &e) < 0 && !strcmp(e.code, "KMS.NotFoundException"));
    CHECK(vol_create_volume(st, &ca, &w, &e) < 0 && !strncmp(e.code, "KMS.", 4));
    vol_lineage_clear(&lin);
    vol_volume_clear(&v);
    vol_snapshot_clear(&snap);
    vol_store_free(st);
    kmsc_free(kms);
}

/* A key through the embedded key service: its ARN into arn. */
static void create_key(kmsc *kms, char arn[256])
{
    char *resp = NULL;
    size_t resp_len = 0;
    kmsc_error ke;
    arn[0] = 0;
    CHECK(kmsc_call(kms, "CreateKey", "{}", 2, &resp, &resp_len, &ke) == KMS_OK);
    {
        const char *p = resp ? strstr(resp, "\"Arn\":") : NULL;
        if (p)
            sscanf(p, "\"Arn\":%*[ \"]%255[^\"]", arn);
    }
    kmsc_response_free(resp, resp_len);
}

static void key_call(kmsc *kms, const char *op, const char *arn)
{
    char req[400], *resp = NULL;
    size_t resp_len = 0;
    kmsc_error ke;
    snprintf(req, sizeof req, "{\"KeyId\":\"%s\"}", arn);
    CHECK(kmsc_call(kms, op, req, strlen(req), &resp, &resp_len, &ke) == KMS_OK);
    kmsc_response_free(resp, resp_len);
}

/* The chunk lineage (binding) of owner's block. */
static void block_lineage(vol_catalog *cat, const char *owner, uint64_t block, char out[33])
{
    uint64_t gen = 0;
    vol_chunk k;
    out[0] = 0;
    if (cat->ops->map_get(cat, owner, block, &gen) == 0 && cat->ops->chunk_get(cat, gen, &k) == 0)
        snprintf(out, 33, "%s", k.lineage);
}

/* Read the whole first `n` bytes of a volume through the data path with every key its map needs. */
static int read_volume(vol_store *st, const vol_volume *v, uint8_t *buf, size_t n, vol_err *e)
{
    vol_keyring ring = {NULL, 0};
    vol_dev *d = NULL;
    int rc = vol_owner_keys(st, v->id, v->lineage, &ring, e);
    if (rc)
        return rc;
    if (!(rc = vol_dev_open_keys(vol_store_catalog(st), vol_store_chunks(st), v, &ring, &d)))
        rc = vol_dev_read(d, buf, n, 0);
    vol_dev_free(d);
    vol_keyring_clear(&ring);
    return rc;
}

static int check_owner(vol_store *st, const char *owner, const char *lineage, vol_err *e)
{
    vol_keyring ring = {NULL, 0};
    int rc = vol_owner_keys(st, owner, lineage, &ring, e);
    if (!rc)
        rc = vol_check_keys(vol_store_catalog(st), vol_store_chunks(st), owner, &ring, stdout);
    vol_keyring_clear(&ring);
    return rc;
}

struct crash {
    int batches;
};
/* The rekey's test hook: die like kill -9 once the second batch's chunks are synced, before its commit. */
static int crash_at_second(void *arg, uint64_t done, uint64_t total, bool committed)
{
    struct crash *c = arg;
    if (!committed && ++c->batches == 2)
        _exit(9);
    return 0;
}

#define RK_BLOCKS 9
/* Lazy rekey: create-volume --snapshot-id S --kms-key-id K2, then volume rekey. */
static void test_rekey(const char *dir)
{
    char ks[512], vs[512], pw[512], url[600], *msg = NULL, k1[256], k2[256], lin_b[33];
    kms_store_opts so = {0};
    kmsc_opts ko = {0};
    kmsc *kms = NULL;
    vol_store *st = NULL;
    vol_catalog *cat;
    vol_volume v, w, x, w2;
    vol_snapshot s, sw, cp;
    vol_lineage lv, lw;
    vol_keyring ring = {NULL, 0};
    vol_rekey_status rs;
    vol_err e;
    vol_create_args ca = {0};
    size_t n = RK_BLOCKS * VOL_BLOCK_SIZE;
    uint8_t *a = malloc(n), *b = malloc(n);
    uint64_t moved = 0;
    int freed = 0;
    snprintf(ks, sizeof ks, "%s/rk-keystore", dir);
    snprintf(vs, sizeof vs, "%s/rk-volumes", dir);
    snprintf(pw, sizeof pw, "%s/pw", dir);
    so.store_dir = ks;
    so.passphrase_file = pw;
    CHECK(kms_store_init(&so, &msg) == KMS_OK);
    free(msg);
    snprintf(url, sizeof url, "local:%s", ks);
    ko.url = url;
    ko.passphrase_file = pw;
    CHECK(kmsc_new(&ko, &kms, &msg) == KMS_OK);
    free(msg);
    if (!kms || !a || !b)
        return;
    create_key(kms, k1);
    create_key(kms, k2);
    CHECK(vol_store_open(vs, kms, &st, NULL) == 0);
    cat = vol_store_catalog(st);

    /* a volume under K1 with RK_BLOCKS blocks of data (and holes inside some), its snapshot */
    ca.size_gib = 1;
    ca.kms_key_id = k1;
    CHECK(vol_create_volume(st, &ca, &v, &e) == 0);
    randombytes_buf(a, n);
    for (size_t i = 0; i < RK_BLOCKS; i++)
        memset(a + i * VOL_BLOCK_SIZE + 65536, 0, 8192); /* never-written sectors stay holes */
    {
        vol_dev *d = NULL;
        CHECK(vol_owner_keys(st, v.id, v.lineage, &ring, &e) == 0 && ring.n == 1);
        CHECK(vol_dev_open_keys(cat, vol_store_chunks(st), &v, &ring, &d) == 0);
        vol_keyring_clear(&ring);
        for (size_t i = 0; i < RK_BLOCKS; i++) {
            CHECK(vol_dev_write(d, a + i * VOL_BLOCK_SIZE, 65536, i * VOL_BLOCK_SIZE) == 0);
            CHECK(vol_dev_write(d, a + i * VOL_BLOCK_SIZE + 73728, VOL_BLOCK_SIZE - 73728, i * VOL_BLOCK_SIZE + 73728) == 0);
        }
        CHECK(vol_dev_flush(d) == 0);
        vol_dev_free(d);
    }
    CHECK(vol_create_snapshot(st, v.id, "k1", NULL, &s, &e) == 0);
    CHECK(vol_lineage_of(st, v.lineage, &lv, &e) == 0);

    /* restore under K2: a lineage of its own (its data key made for the new volume), the snapshot's
     * lineage recorded as its source */
    {
        char *f = NULL;
        CHECK(cat->ops->setting_get(cat, "format", &f) == 0 && f && !strcmp(f, "1"));
        free(f);
    }
    ca.snapshot_id = s.id;
    ca.kms_key_id = k2;
    ca.size_gib = 0;
    CHECK(vol_create_volume(st, &ca, &w, &e) == 0);
    {
        /* from the first source on, the catalog is format 2 (a program that predates it refuses it) */
        char *f = NULL;
        CHECK(cat->ops->setting_get(cat, "format", &f) == 0 && f && !strcmp(f, "2"));
        free(f);
    }
    CHECK(strcmp(w.lineage, v.lineage) && !strcmp(w.snapshot_id, s.id));
    CHECK(vol_lineage_of(st, w.lineage, &lw, &e) == 0 && !strcmp(lw.key_arn, k2) && !strcmp(lw.ctx_id, w.id));
    CHECK(vol_create_volume(st, &ca, &x, &e) == 0); /* a second one, never rekeyed */
    CHECK(vol_rekey_status_of(cat, w.id, lw.binding, &rs) == 0 && rs.blocks == RK_BLOCKS && rs.foreign == RK_BLOCKS);
    /* lazy reads across lineages: every block opens under K1's data key */
    CHECK(vol_owner_keys(st, w.id, w.lineage, &ring, &e) == 0 && ring.n == 2);
    CHECK(ring.n == 2 && !strcmp(ring.k[1].lineage, v.lineage) && !strcmp(ring.k[0].lineage, w.lineage));
    vol_keyring_clear(&ring);
    memset(b, 0xee, n);
    CHECK(read_volume(st, &w, b, n, &e) == 0 && !memcmp(a, b, n));

    /* a 4 KiB write inside block 2 copies the whole block up into W's lineage */
    {
        vol_dev *d = NULL;
        CHECK(vol_owner_keys(st, w.id, w.lineage, &ring, &e) == 0);
        CHECK(vol_dev_open_keys(cat, vol_store_chunks(st), &w, &ring, &d) == 0);
        vol_keyring_clear(&ring);
        memset(a + 2 * VOL_BLOCK_SIZE + 4096 * 7, 0x5a, 4096);
        CHECK(vol_dev_write(d, a + 2 * VOL_BLOCK_SIZE + 4096 * 7, 4096, 2 * VOL_BLOCK_SIZE + 4096 * 7) == 0);
        /* and a write into a block the snapshot never had */
        memset(a + 8 * VOL_BLOCK_SIZE, 0x11, 4096);
        CHECK(vol_dev_write(d, a + 8 * VOL_BLOCK_SIZE, 4096, 8 * VOL_BLOCK_SIZE) == 0);
        CHECK(vol_dev_flush(d) == 0);
        CHECK(vol_dev_read(d, b, n, 0) == 0 && !memcmp(a, b, n));
        vol_dev_free(d);
    }
    block_lineage(cat, w.id, 2, lin_b);
    CHECK(!strcmp(lin_b, lw.binding));
    block_lineage(cat, w.id, 3, lin_b);
    CHECK(!strcmp(lin_b, lv.binding));
    block_lineage(cat, s.id, 2, lin_b); /* the snapshot is untouched */
    CHECK(!strcmp(lin_b, lv.binding));
    {
        /* the copied-up chunk holds block 2's holes as holes: its counters say never written */
        uint64_t gen = 0;
        vol_chunk k;
        CHECK(cat->ops->map_get(cat, w.id, 2, &gen) == 0 && cat->ops->chunk_get(cat, gen, &k) == 0);
        CHECK(k.ctr[16] == 0 && k.ctr[17] == 0 && k.ctr[7] == 1 && k.ctr[0] == 1 && k.seals == VOL_SECTORS - 2);
    }
    CHECK(vol_rekey_status_of(cat, w.id, lw.binding, &rs) == 0 && rs.blocks == RK_BLOCKS && rs.foreign == RK_BLOCKS - 2);
    CHECK(check_owner(st, w.id, w.lineage, &e) == 0);

    /* a snapshot part-way: its chunks keep their lineages, it needs both keys, and it restores */
    CHECK(vol_create_snapshot(st, w.id, "partial", NULL, &sw, &e) == 0);
    CHECK(check_owner(st, sw.id, sw.lineage, &e) == 0);
    ca.snapshot_id = sw.id;
    ca.kms_key_id = NULL;
    CHECK(vol_create_volume(st, &ca, &w2, &e) == 0 && !strcmp(w2.lineage, w.lineage));
    memset(b, 0xee, n);
    CHECK(read_volume(st, &w2, b, n, &e) == 0 && !memcmp(a, b, n));
    /* a full copy of it under K1 re-seals each chunk from its own lineage */
    CHECK(vol_copy_snapshot(st, sw.id, k1, false, NULL, &cp, &e) == 0);
    CHECK(check_owner(st, cp.id, cp.lineage, &e) == 0);

    /* rekey refuses while the volume is attached */
    {
        int lock = vol_lock_volume(st, w.id);
        CHECK(lock >= 0);
        CHECK(vol_rekey_volume(st, w.id, 0, NULL, NULL, NULL, &e) == -EBUSY && !strcmp(e.code, "VolumeInUse"));
        if (lock >= 0)
            close(lock);
    }
    /* volume rekey, killed (-9) after its first batch committed and its second written */
    {
        pid_t pid = fork();
        int status = 0;
        if (pid == 0) {
            kmsc *k = NULL;
            vol_store *cst = NULL;
            struct crash c = {0};
            if (kmsc_new(&ko, &k, &msg) || vol_store_open(vs, k, &cst, NULL))
                _exit(2);
            _exit(vol_rekey_volume(cst, w.id, 2, crash_at_second, &c, NULL, NULL) ? 4 : 3); /* (not reached) */
        }
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 9);
    }
    CHECK(vol_rekey_status_of(cat, w.id, lw.binding, &rs) == 0 && rs.foreign == RK_BLOCKS - 4);
    CHECK(read_volume(st, &w, b, n, &e) == 0 && !memcmp(a, b, n));
    CHECK(vol_sweep(st, &freed) == 0 && freed == 2); /* the dead run's uncommitted chunks */
    CHECK(vol_rekey_volume(st, w.id, 2, NULL, NULL, &moved, &e) == 0 && moved == RK_BLOCKS - 4);
    CHECK(vol_rekey_status_of(cat, w.id, lw.binding, &rs) == 0 && rs.foreign == 0 && rs.lineages == 1);
    CHECK(vol_rekey_volume(st, w.id, 2, NULL, NULL, &moved, &e) == 0 && moved == 0); /* nothing left */
    CHECK(vol_sweep(st, &freed) == 0 && freed == 0);

    /* K1 disabled: the rekeyed volume and the K1 copy still read; the never-rekeyed volume, the partial
     * snapshot and a restore from the K1 snapshot are refused with the key service's error */
    key_call(kms, "DisableKey", k1);
    key_call(kms, "EnableKey", k2);
    memset(b, 0xee, n);
    CHECK(read_volume(st, &w, b, n, &e) == 0 && !memcmp(a, b, n));
    CHECK(vol_owner_keys(st, w.id, w.lineage, &ring, &e) == 0 && ring.n == 1);
    vol_keyring_clear(&ring);
    CHECK(check_owner(st, w.id, w.lineage, &e) == 0);
    memset(&e, 0, sizeof e);
    CHECK(read_volume(st, &x, b, n, &e) < 0 && !strcmp(e.code, "KMS.DisabledException"));
    CHECK(vol_rekey_volume(st, x.id, 0, NULL, NULL, NULL, &e) < 0 && !strcmp(e.code, "KMS.DisabledException"));
    CHECK(check_owner(st, sw.id, sw.lineage, &e) < 0 && !strcmp(e.code, "KMS.DisabledException"));
    {
        vol_volume y;
        ca.snapshot_id = s.id;
        ca.kms_key_id = k2;
        CHECK(vol_create_volume(st, &ca, &y, &e) < 0 && !strcmp(e.code, "KMS.DisabledException"));
    }
    key_call(kms, "EnableKey", k1);
    CHECK(check_owner(st, sw.id, sw.lineage, &e) == 0);
    key_call(kms, "DisableKey", k2);
    CHECK(read_volume(st, &w, b, n, &e) < 0 && !strcmp(e.code, "KMS.DisabledException"));
    CHECK(check_owner(st, cp.id, cp.lineage, &e) == 0); /* the copy is K1's alone */
    key_call(kms, "EnableKey", k2);
    /* deleting everything frees every chunk, sources included */
    CHECK(vol_delete_volume(st, w.id, &e) == 0 && vol_delete_volume(st, w2.id, &e) == 0 &&
          vol_delete_volume(st, x.id, &e) == 0 && vol_delete_volume(st, v.id, &e) == 0);
    CHECK(vol_delete_snapshot(st, s.id, &e) == 0 && vol_delete_snapshot(st, sw.id, &e) == 0 &&
          vol_delete_snapshot(st, cp.id, &e) == 0);
    CHECK(vol_store_chunks(st)->ops->bytes_used(vol_store_chunks(st)) == 0);
    vol_lineage_clear(&lv);
    vol_lineage_clear(&lw);
    vol_volume_clear(&v);
    vol_volume_clear(&w);
    vol_volume_clear(&w2);
    vol_volume_clear(&x);
    vol_snapshot_clear(&s);
    vol_snapshot_clear(&sw);
    vol_snapshot_clear(&cp);
    vol_store_free(st);
    kmsc_free(kms);
    free(a);
    free(b);
}

static int count_copy(void *arg, const vol_copy_rec *r)
{
    (void)r;
    (*(int *)arg)++;
    return 0;
}

static int count_progress(void *arg, const vol_copy_progress *p)
{
    (void)p;
    (*(int *)arg)++;
    return 0;
}

/* The copies table (copy-snapshot's records) and the read-only catalog and chunk store of another region. */
static void test_copies_ro(const char *dir)
{
    char path[512], cdir[512];
    vol_catalog *c, *ro;
    vol_chunkstore *cs, *rcs;
    vol_snapshot sn = {0}, got;
    vol_copy_rec r = {0}, rg;
    uint8_t b[16] = {1, 2, 3}, back[16];
    char *v = NULL;
    int n = 0;
    snprintf(path, sizeof path, "%s/copies.db", dir);
    CHECK(vol_catalog_sqlite_open(path, &c) == 0);
    snprintf(sn.id, sizeof sn.id, "snap-00000000000000001");
    snprintf(sn.state, sizeof sn.state, "completed");
    CHECK(c->ops->snapshot_put(c, &sn) == 0);
    snprintf(r.snapshot, sizeof r.snapshot, "%s", sn.id);
    snprintf(r.source_region, sizeof r.source_region, "us-east-1");
    snprintf(r.source_snapshot, sizeof r.source_snapshot, "snap-0000000000000000a");
    snprintf(r.source_volume, sizeof r.source_volume, "vol-0000000000000000b");
    r.blocks_copied = 3;
    r.blocks_shared = 6;
    CHECK(c->ops->copy_put(c, &r) == 0);
    CHECK(c->ops->copy_put(c, &r) == -EEXIST);
    CHECK(c->ops->copy_get(c, sn.id, &rg) == 0 && rg.blocks_copied == 3 && rg.blocks_shared == 6 && !rg.base[0] &&
          !strcmp(rg.source_snapshot, r.source_snapshot));
    CHECK(c->ops->copy_list(c, "us-east-1", r.source_volume, count_copy, &n) == 0 && n == 1);
    CHECK(c->ops->copy_list(c, "eu-west-1", r.source_volume, count_copy, &n) == 0 && n == 1);
    /* a copy in progress: its row, listed by source, replaced as batches go, dropped with its snapshot */
    {
        vol_copy_progress pp = {0}, pg;
        vol_blocks bl = {0};
        uint64_t cnt = 0;
        snprintf(pp.rec.snapshot, sizeof pp.rec.snapshot, "snap-00000000000000002");
        snprintf(pp.rec.source_snapshot, sizeof pp.rec.source_snapshot, "%s", sn.id);
        snprintf(pp.key_arn, sizeof pp.key_arn, "arn:aws:kms:us-east-1:111122223333:key/k");
        pp.local = true;
        pp.blocks_total = 10;
        CHECK(c->ops->progress_put(c, &pp) == 0);
        pp.blocks_done = 4;
        pp.next_block = 7;
        pp.rec.blocks_copied = 4;
        CHECK(c->ops->progress_put(c, &pp) == 0);
        CHECK(c->ops->progress_get(c, pp.rec.snapshot, &pg) == 0 && pg.blocks_done == 4 && pg.next_block == 7 &&
              pg.blocks_total == 10 && pg.local && pg.rec.blocks_copied == 4 && !strcmp(pg.key_arn, pp.key_arn));
        n = 0;
        CHECK(c->ops->progress_list(c, sn.id, count_progress, &n) == 0 && n == 1);
        CHECK(c->ops->progress_list(c, pp.rec.snapshot, count_progress, &n) == 0 && n == 1);
        /* map pages and counts */
        for (uint64_t blk = 0; blk < 10; blk++)
            CHECK(c->ops->map_set(c, sn.id, blk * 3, 100 + blk) == 0);
        CHECK(c->ops->map_count(c, sn.id, &cnt) == 0 && cnt == 10);
        CHECK(c->ops->map_page(c, sn.id, 7, 4, vol_blocks_add, &bl) == 0 && bl.n == 4 && bl.block[0] == 9 &&
              bl.block[3] == 18 && bl.gen[0] == 103);
        vol_blocks_clear(&bl);
        CHECK(c->ops->map_page(c, sn.id, 28, 4, vol_blocks_add, &bl) == 0 && bl.n == 0);
        for (uint64_t blk = 0; blk < 10; blk++)
            CHECK(c->ops->map_del(c, sn.id, blk * 3) == 0);
        snprintf(sn.id, sizeof sn.id, "%s", pp.rec.snapshot);
        CHECK(c->ops->snapshot_put(c, &sn) == 0 && c->ops->snapshot_delete(c, sn.id) == 0);
        CHECK(c->ops->progress_get(c, pp.rec.snapshot, &pg) == -ENOENT);
        CHECK(c->ops->progress_drop(c, pp.rec.snapshot) == 0);
        snprintf(sn.id, sizeof sn.id, "snap-00000000000000001");
    }
    vol_catalog_close(c);
    /* read only: rows read, nothing written */
    CHECK(vol_catalog_sqlite_open_ro(path, &ro) == 0);
    CHECK(ro->ops->snapshot_get(ro, sn.id, &got) == 0 && !strcmp(got.state, "completed"));
    vol_snapshot_clear(&got);
    CHECK(ro->ops->setting_set(ro, "x", "y") != 0);
    CHECK(ro->ops->setting_get(ro, "x", &v) == -ENOENT);
    vol_catalog_close(ro);
    snprintf(cdir, sizeof cdir, "%s/missing.db", dir);
    CHECK(vol_catalog_sqlite_open_ro(cdir, &ro) == -ENOENT && access(cdir, F_OK) != 0); /* not created */
    /* a deleted snapshot takes its record along */
    CHECK(vol_catalog_sqlite_open(path, &c) == 0);
    CHECK(c->ops->snapshot_delete(c, sn.id) == 0);
    CHECK(c->ops->copy_get(c, sn.id, &rg) == -ENOENT);
    vol_catalog_close(c);
    /* a read-only chunk store reads and refuses writes */
    snprintf(cdir, sizeof cdir, "%s/rochunks", dir);
    CHECK(vol_chunkstore_file_open(cdir, &cs) == 0);
    CHECK(cs->ops->pwrite(cs, 42, b, sizeof b, 0) == 0 && cs->ops->sync(cs, 42) == 0);
    CHECK(vol_chunkstore_file_open_ro(cdir, &rcs) == 0);
    CHECK(rcs->ops->pread(rcs, 42, back, sizeof back, 0) == 0 && !memcmp(back, b, sizeof b));
    CHECK(rcs->ops->pwrite(rcs, 42, b, sizeof b, 0) == -EROFS && rcs->ops->pwrite(rcs, 43, b, 1, 0) == -EROFS);
    CHECK(rcs->ops->sync(rcs, 42) == -EROFS && rcs->ops->remove(rcs, 42) == -EROFS);
    CHECK(rcs->ops->pread(rcs, 43, back, 1, 0) == -ENOENT);
    vol_chunkstore_close(rcs);
    vol_chunkstore_close(cs);
}

static int collect_account(void *arg, const char *account)
{
    char *out = arg;
    strcat(out, account);
    strcat(out, ",");
    return 0;
}

/* Owners and createVolumePermission: the catalog's tables (additive on an old catalog), then two
 * accounts of one embedded key store on one volume store (the store's root and --as-user B). */
static void test_share(const char *dir)
{
    char path[512], ks[512], vs[512], pw[512], url[600], list[128] = "", *msg = NULL;
    const char *b_acct = "444455556666", *accts[2] = {"444455556666", "777788889999"};
    vol_catalog *c;
    vol_snapshot sn = {0}, got;
    vol_volume v, w;
    kms_store_opts so = {0};
    kmsc_opts ko = {0};
    kmsc *ka = NULL, *kb = NULL;
    vol_store *sa = NULL, *sb = NULL;
    vol_create_args ca = {0};
    vol_err e;
    bool has = true, vis = false, own = true;
    char owner[16];

    /* an old catalog: format 1 without the new tables opens and gets them */
    snprintf(path, sizeof path, "%s/old.db", dir);
    {
        sqlite3 *db;
        CHECK(sqlite3_open(path, &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db, "CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);"
                               "INSERT INTO meta VALUES ('format', '1'), ('next_gen', '1');"
                               "CREATE TABLE snapshots (id TEXT PRIMARY KEY, volume_id TEXT NOT NULL, volume_size INTEGER NOT NULL,"
                               "  lineage TEXT NOT NULL, state TEXT NOT NULL, description TEXT, started INTEGER NOT NULL,"
                               "  completed INTEGER NOT NULL, tags TEXT);"
                               "INSERT INTO snapshots VALUES ('snap-0123456789abcdef0', 'vol-0123456789abcdef0', 1, 'ab', 'completed',"
                               "  NULL, 1, 2, NULL);",
                           NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(db);
    }
    CHECK(vol_catalog_sqlite_open(path, &c) == 0);
    if (!c)
        return;
    CHECK(c->ops->snapshot_get(c, "snap-0123456789abcdef0", &got) == 0 && got.owner[0] == 0); /* no owner: the key's */
    vol_snapshot_clear(&got);
    CHECK(c->ops->perm_has(c, "snap-0123456789abcdef0", b_acct, &has) == 0 && !has);
    CHECK(c->ops->perm_add(c, "snap-0123456789abcdef0", accts[1]) == 0);
    CHECK(c->ops->perm_add(c, "snap-0123456789abcdef0", accts[0]) == 0);
    CHECK(c->ops->perm_add(c, "snap-0123456789abcdef0", accts[0]) == 0); /* idempotent */
    CHECK(c->ops->perm_list(c, "snap-0123456789abcdef0", collect_account, list) == 0 &&
          !strcmp(list, "444455556666,777788889999,"));
    CHECK(c->ops->perm_remove(c, "snap-0123456789abcdef0", accts[1]) == 0);
    CHECK(c->ops->perm_remove(c, "snap-0123456789abcdef0", accts[1]) == 0); /* absent: no error */
    CHECK(c->ops->perm_has(c, "snap-0123456789abcdef0", b_acct, &has) == 0 && has);
    snprintf(sn.id, sizeof sn.id, "snap-00000000000000001");
    snprintf(sn.volume_id, sizeof sn.volume_id, "vol-ffffffff");
    snprintf(sn.lineage, sizeof sn.lineage, "ab");
    snprintf(sn.state, sizeof sn.state, "completed");
    snprintf(sn.owner, sizeof sn.owner, "%s", b_acct);
    CHECK(c->ops->snapshot_put(c, &sn) == 0);
    sn.owner[0] = 0; /* a replace without an owner keeps the recorded one */
    CHECK(c->ops->snapshot_put(c, &sn) == 0);
    CHECK(c->ops->snapshot_get(c, sn.id, &got) == 0 && !strcmp(got.owner, b_acct));
    vol_snapshot_clear(&got);
    CHECK(c->ops->perm_add(c, sn.id, accts[1]) == 0);
    CHECK(c->ops->snapshot_delete(c, sn.id) == 0);
    CHECK(c->ops->snapshot_delete(c, sn.id) == -ENOENT);
    CHECK(c->ops->perm_has(c, sn.id, accts[1], &has) == 0 && !has); /* went with it */
    CHECK(c->ops->snapshot_put(c, &sn) == 0);                           /* the same id again: no owner left */
    CHECK(c->ops->snapshot_get(c, sn.id, &got) == 0 && got.owner[0] == 0);
    vol_snapshot_clear(&got);
    CHECK(c->ops->perm_clear(c, "snap-0123456789abcdef0") == 0);
    CHECK(c->ops->perm_has(c, "snap-0123456789abcdef0", b_acct, &has) == 0 && !has);
    vol_catalog_close(c);

    /* two accounts, one key store, one volume store */
    snprintf(ks, sizeof ks, "%s/share-keys", dir);
    snprintf(vs, sizeof vs, "%s/share-volumes", dir);
    snprintf(pw, sizeof pw, "%s/pw", dir); /* test_keys wrote it */
    so.store_dir = ks;
    so.passphrase_file = pw;
    so.account = "111122223333";
    CHECK(kms_store_init(&so, &msg) == KMS_OK);
    free(msg);
    msg = NULL;
    snprintf(url, sizeof url, "local:%s", ks);
    ko.url = url;
    ko.passphrase_file = pw;
    CHECK(kmsc_new(&ko, &ka, &msg) == KMS_OK);
    free(msg);
    msg = NULL;
    ko.as_user = "arn:aws:iam::444455556666:root";
    CHECK(kmsc_new(&ko, &kb, &msg) == KMS_OK);
    free(msg);
    if (!ka || !kb)
        goto out;
    {
        char acct[16];
        CHECK(kmsc_caller_account(ka, acct, NULL) == KMS_OK && !strcmp(acct, "111122223333"));
        CHECK(kmsc_caller_account(kb, acct, NULL) == KMS_OK && !strcmp(acct, b_acct));
    }
    CHECK(vol_store_open(vs, ka, &sa, &e) == 0);
    CHECK(vol_store_open(vs, kb, &sb, &e) == 0);
    if (!sa || !sb)
        goto out;
    CHECK(!strcmp(vol_store_account(sa), "111122223333") && !strcmp(vol_store_account(sb), b_acct));
    ca.size_gib = 1; /* under the default key: A's alias/aws/ebs */
    CHECK(vol_create_volume(sa, &ca, &v, &e) == 0 && !strcmp(v.owner, "111122223333"));
    CHECK(vol_volume_for_caller(sa, v.id, NULL, &e) == 0);
    CHECK(vol_volume_for_caller(sb, v.id, NULL, &e) == -ENOENT && !strcmp(e.code, "InvalidVolume.NotFound"));
    CHECK(vol_create_snapshot(sa, v.id, NULL, NULL, &sn, &e) == 0 && !strcmp(sn.owner, "111122223333"));
    vol_owner_of(sa, sn.owner, sn.lineage, owner);
    CHECK(!strcmp(owner, "111122223333"));
    CHECK(vol_snapshot_visible(sb, &sn, b_acct, &vis, &own) == 0 && !vis && !own);
    CHECK(vol_snapshot_for_caller(sb, sn.id, false, NULL, &e) == -ENOENT && !strcmp(e.code, "InvalidSnapshot.NotFound"));
    /* the default key's snapshot cannot be shared; a malformed account is refused first */
    CHECK(vol_snapshot_share(sa, sn.id, true, accts, 1, false, &e) < 0 && !strcmp(e.code, "OperationNotPermitted"));
    CHECK(vol_snapshot_share(sa, sn.id, true, (const char *[]){"4444"}, 1, false, &e) < 0 &&
          !strcmp(e.code, "InvalidUserID.Malformed"));
    CHECK(vol_snapshot_share(sa, sn.id, true, NULL, 0, true, &e) < 0 && !strcmp(e.code, "OperationNotPermitted"));
    /* shared by hand (as an older share would be): B sees it, may not change it */
    CHECK(vol_store_catalog(sa)->ops->perm_add(vol_store_catalog(sa), sn.id, b_acct) == 0);
    CHECK(vol_snapshot_visible(sb, &sn, b_acct, &vis, &own) == 0 && vis && !own);
    CHECK(vol_snapshot_for_caller(sb, sn.id, false, NULL, &e) == 0);
    CHECK(vol_snapshot_for_caller(sb, sn.id, true, NULL, &e) == -EPERM && !strcmp(e.code, "UnauthorizedOperation"));
    CHECK(vol_snapshot_unshare_all(sb, sn.id, &e) == -EPERM);
    CHECK(vol_snapshot_unshare_all(sa, sn.id, &e) == 0);
    CHECK(vol_snapshot_for_caller(sb, sn.id, false, NULL, &e) == -ENOENT);
    /* B's default key is B's own */
    CHECK(vol_create_volume(sb, &ca, &w, &e) == 0 && !strcmp(w.owner, b_acct));
    {
        vol_lineage l;
        CHECK(vol_lineage_of(sb, w.lineage, &l, &e) == 0 && strstr(l.key_arn, ":444455556666:key/"));
        vol_lineage_clear(&l);
    }
    vol_volume_clear(&w);
    vol_volume_clear(&v);
    vol_snapshot_clear(&sn);
out:
    vol_store_free(sa);
    vol_store_free(sb);
    kmsc_free(ka);
    kmsc_free(kb);
}

int main(void)
{
    char dir[] = "/tmp/test_vol.XXXXXX", cmd[64];
    if (sodium_init() < 0 || !mkdtemp(dir))
        return 1;
    test_sector();
    test_sector_v2();
    test_catalog(dir);
    test_chunkstore(dir);
    test_dev(dir);
    test_torn(dir);
    test_one_area(dir);
    test_keys(dir);
    test_rekey(dir);
    test_copies_ro(dir);
    test_share(dir);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd))
        fprintf(stderr, "cannot remove %s\n", dir);
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
