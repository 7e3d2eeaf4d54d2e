/*
 * test_vol.c — unit tests of the volume layer without FUSE: the sector format (golden vector, tamper,
 * move, rollback), the SQLite catalog (rows, reference counts, generations, a newer format refused), the
 * file chunk store, and the data path over both (copy-on-write after a snapshot, restore, discard,
 * delete of a middle snapshot, a crash before the flush, the seal limit moving a chunk to a new key).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "catalog.h"
#include "chunkstore.h"
#include "dev.h"
#include "sector.h"
#include "share.h"
#include "store.h"

static int failures;
#define CHECK(c)                                                                                                 \
    do {                                                                                                         \
        if (!(c)) {                                                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);                                \
            failures++;                                                                                          \
        }                                                                                                        \
    } while (0)

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

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
    vol_chunk_header(hdr, lin, 5, 9);
    hex(hdr, 48, h);
    CHECK(!strcmp(h, GOLDEN_HEADER));
    if (strcmp(h, GOLDEN_HEADER))
        fprintf(stderr, "header %s\n", h);
    CHECK(vol_chunk_header_check(hdr, sizeof hdr, lin, 5, 9) == 0);
    CHECK(vol_chunk_header_check(hdr, sizeof hdr, lin, 5, 10) == -EBADMSG);

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
}

static int count_gen(void *arg, uint64_t gen)
{
    (*(int *)arg)++;
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
    CHECK(c->ops->map_copy(c, v.id, "snap-0123456789abcdef0") == 0);
    CHECK(c->ops->chunk_get(c, 3, &kg) == 0 && kg.refs == 2 && kg.ctr[127] == 0xdeadbeef && kg.block == 7);
    CHECK(c->ops->map_get(c, "snap-0123456789abcdef0", 7, &gen) == 0 && gen == 3);
    CHECK(c->ops->map_drop(c, v.id, count_gen, &n) == 0 && n == 0); /* still referenced by the snapshot */
    CHECK(c->ops->chunk_ref(c, 3, 0, &refs) == 0 && refs == 1);
    CHECK(c->ops->map_drop(c, "snap-0123456789abcdef0", count_gen, &n) == 0 && n == 1);
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
    test_catalog(dir);
    test_chunkstore(dir);
    test_dev(dir);
    test_keys(dir);
    test_share(dir);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd))
        fprintf(stderr, "cannot remove %s\n", dir);
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
