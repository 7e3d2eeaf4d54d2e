/*
 * test_manifest.c — the snapshot manifest (docs/FORMAT.md "Snapshot manifest"): the golden vector (a
 * fixed manifest, its encoding, block-map digest and manifest digest, computed independently with
 * Python's hashlib), decoding (round trip; truncated, trailing, wrong-version and NUL-in-string bytes
 * refused), the first differing field, and the catalog's signature tables (round trip, an older catalog
 * without them opens and gains them, delete-snapshot drops a snapshot's rows).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "catalog.h"
#include "manifest.h"

#include "volcheck.h"

static void golden(vol_manifest *m)
{
    uint8_t a[32], b[32];
    vol_map_hash mh;
    memset(m, 0, sizeof *m);
    snprintf(m->snapshot_id, sizeof m->snapshot_id, "snap-0123456789abcdef0");
    snprintf(m->volume_id, sizeof m->volume_id, "vol-0123456789abcdef0");
    m->size_gib = 8;
    for (int i = 0; i < 16; i++)
        m->lineage[i] = (uint8_t)(0xa0 + i);
    snprintf(m->key_arn, sizeof m->key_arn, "arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
    for (int i = 0; i < 32; i++)
        m->wrapped_sha256[i] = (uint8_t)i;
    m->created = 1796342400;
    m->blocks = 2;
    memset(a, 0x11, sizeof a);
    memset(b, 0x22, sizeof b);
    vol_map_hash_init(&mh);
    vol_map_hash_add(&mh, 0, a);
    vol_map_hash_add(&mh, 5, b);
    vol_map_hash_final(&mh, m->map_sha256);
}

static void test_golden(void)
{
    vol_manifest m, back;
    uint8_t enc[VOL_MANIFEST_MAX], d[32];
    char h[2 * VOL_MANIFEST_MAX + 1];
    size_t len = 0;
    golden(&m);
    hex(m.map_sha256, 32, h);
    CHECK(!strcmp(h, GOLDEN_MAP_SHA256));
    CHECK(vol_manifest_encode(&m, enc, sizeof enc, &len) == 0);
    hex(enc, len, h);
    CHECK(!strcmp(h, GOLDEN_MANIFEST));
    if (strcmp(h, GOLDEN_MANIFEST))
        fprintf(stderr, "manifest: %s\n", h);
    vol_manifest_digest(enc, len, d);
    hex(d, 32, h);
    CHECK(!strcmp(h, GOLDEN_MANIFEST_SHA256));

    /* decoding: the same fields back; every damaged encoding refused */
    CHECK(vol_manifest_decode(enc, len, &back) == 0);
    CHECK(vol_manifest_diff(&m, &back) == NULL);
    CHECK(vol_manifest_decode(enc, len - 1, &back) == -EBADMSG);
    enc[len] = 0;
    CHECK(vol_manifest_decode(enc, len + 1, &back) == -EBADMSG);
    enc[4] = 2;
    CHECK(vol_manifest_decode(enc, len, &back) == -EBADMSG);
    enc[4] = 1;
    enc[6] = 0; /* a NUL inside the snapshot id */
    CHECK(vol_manifest_decode(enc, len, &back) == -EBADMSG);
    enc[6] = 's';
    enc[5] = 200; /* a length past the end */
    CHECK(vol_manifest_decode(enc, len, &back) == -EBADMSG);

    /* the first differing field is named */
    back = m;
    back.map_sha256[7] ^= 1;
    CHECK(vol_manifest_diff(&m, &back) && !strcmp(vol_manifest_diff(&m, &back), "BlockMapDigest"));
    back = m;
    back.created++;
    CHECK(!strcmp(vol_manifest_diff(&m, &back), "CompletionTime"));
    back = m;
    back.source_sha256[0] = 1;
    CHECK(!strcmp(vol_manifest_diff(&m, &back), "SourceManifestDigest"));
    /* a field too long does not encode */
    back = m;
    memset(back.key_arn, 'a', sizeof back.key_arn - 1);
    back.key_arn[sizeof back.key_arn - 1] = 0;
    CHECK(vol_manifest_encode(&back, enc, sizeof enc, &len) == 0); /* 255 fits */
    CHECK(vol_manifest_encode(&back, enc, 100, &len) == -EINVAL);
}

static int count_digests(void *arg, uint64_t block, const uint8_t *sha)
{
    (void)block;
    (void)sha;
    ++*(int *)arg;
    return 0;
}

static void test_catalog(const char *dir)
{
    char path[256];
    vol_catalog *c = NULL;
    vol_signature s, g;
    vol_snapshot snap;
    uint8_t man[3] = {1, 2, 3}, sig[4] = {9, 8, 7, 6}, d[32] = {0};
    sqlite3 *db;
    int n = 0;
    snprintf(path, sizeof path, "%s/catalog.db", dir);
    CHECK(vol_catalog_sqlite_open(path, &c) == 0);
    if (!c)
        return;
    /* an older catalog: without the signature tables */
    vol_catalog_close(c);
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "DROP TABLE snapshot_signatures; DROP TABLE snapshot_block_digests;", NULL, NULL, NULL) ==
          SQLITE_OK);
    sqlite3_close(db);
    CHECK(vol_catalog_sqlite_open(path, &c) == 0);
    if (!c)
        return;
    CHECK(c->ops->sig_get(c, "snap-00000000000000001", &g) == -ENOENT);

    memset(&snap, 0, sizeof snap);
    snprintf(snap.id, sizeof snap.id, "snap-00000000000000001");
    snprintf(snap.volume_id, sizeof snap.volume_id, "vol-00000000000000001");
    snprintf(snap.lineage, sizeof snap.lineage, "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
    snprintf(snap.state, sizeof snap.state, "completed");
    CHECK(c->ops->snapshot_put(c, &snap) == 0);
    memset(&s, 0, sizeof s);
    snprintf(s.snapshot_id, sizeof s.snapshot_id, "%s", snap.id);
    s.manifest = man, s.manifest_len = sizeof man;
    s.signature = sig, s.signature_len = sizeof sig;
    snprintf(s.key_arn, sizeof s.key_arn, "arn:aws:kms:us-east-1:111122223333:key/k");
    snprintf(s.algorithm, sizeof s.algorithm, "ECDSA_SHA_256");
    s.signed_at = 42;
    CHECK(c->ops->sig_put(c, &s) == 0);
    CHECK(c->ops->digest_put(c, snap.id, 3, d) == 0);
    CHECK(c->ops->digest_put(c, snap.id, 1, d) == 0);
    CHECK(c->ops->sig_get(c, snap.id, &g) == 0);
    CHECK(g.manifest_len == 3 && !memcmp(g.manifest, man, 3) && g.signature_len == 4 && !memcmp(g.signature, sig, 4));
    CHECK(!strcmp(g.algorithm, "ECDSA_SHA_256") && !strcmp(g.key_arn, s.key_arn) && g.signed_at == 42);
    CHECK(!g.source_id[0] && !g.source_manifest && !g.source_signature);
    vol_signature_clear(&g);
    /* a copy's record carries its source's */
    snprintf(s.source_id, sizeof s.source_id, "snap-00000000000000000");
    s.source_manifest = sig, s.source_manifest_len = sizeof sig;
    s.source_signature = man, s.source_signature_len = sizeof man;
    snprintf(s.source_key_arn, sizeof s.source_key_arn, "arn:aws:kms:us-east-1:111122223333:key/src");
    snprintf(s.source_algorithm, sizeof s.source_algorithm, "RSASSA_PSS_SHA_256");
    CHECK(c->ops->sig_put(c, &s) == 0);
    CHECK(c->ops->sig_get(c, snap.id, &g) == 0);
    CHECK(!strcmp(g.source_id, s.source_id) && g.source_manifest_len == 4 && g.source_signature_len == 3 &&
          !strcmp(g.source_algorithm, "RSASSA_PSS_SHA_256") && !strcmp(g.source_key_arn, s.source_key_arn));
    vol_signature_clear(&g);
    CHECK(c->ops->digest_list(c, snap.id, count_digests, &n) == 0 && n == 2);
    /* delete-snapshot drops both */
    CHECK(c->ops->snapshot_delete(c, snap.id) == 0);
    CHECK(c->ops->sig_get(c, snap.id, &g) == -ENOENT);
    n = 0;
    CHECK(c->ops->digest_list(c, snap.id, count_digests, &n) == 0 && n == 0);
    vol_catalog_close(c);
}

int main(void)
{
    char dir[] = "/tmp/test_manifest.XXXXXX", cmd[64];
    if (sodium_init() < 0 || !mkdtemp(dir))
        return 1;
    test_golden();
    test_catalog(dir);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd))
        fprintf(stderr, "cannot remove %s\n", dir);
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
