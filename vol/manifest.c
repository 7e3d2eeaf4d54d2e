/*
 * manifest.c — the snapshot manifest's canonical encoding, its digest and the block-map digest
 * (manifest.h; byte layout in docs/FORMAT.md "Snapshot manifest").
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "manifest.h"

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

struct wbuf {
    uint8_t *p;
    size_t n, cap;
    bool bad;
};
static void w_bytes(struct wbuf *w, const void *b, size_t n)
{
    if (w->bad || n > w->cap - w->n) {
        w->bad = true;
        return;
    }
    memcpy(w->p + w->n, b, n);
    w->n += n;
}
static void w_u64(struct wbuf *w, uint64_t v)
{
    uint8_t b[8];
    put_u64(b, v);
    w_bytes(w, b, 8);
}
/* a string with a length prefix of lenbytes (1 or 2) bytes, little-endian */
static void w_str(struct wbuf *w, const char *s, size_t max, int lenbytes)
{
    size_t n = strnlen(s, max + 1);
    uint8_t l[2] = {(uint8_t)n, (uint8_t)(n >> 8)};
    if (n > max) {
        w->bad = true;
        return;
    }
    w_bytes(w, l, (size_t)lenbytes);
    w_bytes(w, s, n);
}

int vol_manifest_encode(const vol_manifest *m, uint8_t *out, size_t cap, size_t *len)
{
    struct wbuf w = {out, 0, cap, false};
    uint8_t v = VOL_MANIFEST_VERSION;
    w_bytes(&w, VOL_MANIFEST_MAGIC, 4);
    w_bytes(&w, &v, 1);
    w_str(&w, m->snapshot_id, sizeof m->snapshot_id - 1, 1);
    w_str(&w, m->volume_id, sizeof m->volume_id - 1, 1);
    w_u64(&w, m->size_gib);
    w_bytes(&w, m->lineage, sizeof m->lineage);
    w_str(&w, m->key_arn, sizeof m->key_arn - 1, 2);
    w_bytes(&w, m->wrapped_sha256, 32);
    w_u64(&w, (uint64_t)m->created);
    w_u64(&w, m->blocks);
    w_bytes(&w, m->map_sha256, 32);
    w_str(&w, m->source_id, sizeof m->source_id - 1, 1);
    w_bytes(&w, m->source_sha256, 32);
    if (w.bad)
        return -EINVAL;
    *len = w.n;
    return 0;
}

struct rbuf {
    const uint8_t *p;
    size_t n, off;
    bool bad;
};
static const uint8_t *r_bytes(struct rbuf *r, size_t n)
{
    const uint8_t *p;
    if (r->bad || n > r->n - r->off) {
        r->bad = true;
        return NULL;
    }
    p = r->p + r->off;
    r->off += n;
    return p;
}
static void r_copy(struct rbuf *r, void *out, size_t n)
{
    const uint8_t *p = r_bytes(r, n);
    if (p)
        memcpy(out, p, n);
}
static uint64_t r_u64(struct rbuf *r)
{
    const uint8_t *p = r_bytes(r, 8);
    return p ? get_u64(p) : 0;
}
static void r_str(struct rbuf *r, char *out, size_t cap, int lenbytes)
{
    const uint8_t *l = r_bytes(r, (size_t)lenbytes), *s;
    size_t n;
    if (!l)
        return;
    n = lenbytes == 1 ? l[0] : (size_t)l[0] | (size_t)l[1] << 8;
    if (n >= cap || !(s = r_bytes(r, n))) {
        r->bad = true;
        return;
    }
    if (memchr(s, 0, n)) { /* canonical: no NUL inside a string */
        r->bad = true;
        return;
    }
    memcpy(out, s, n);
    out[n] = 0;
}

int vol_manifest_decode(const uint8_t *in, size_t len, vol_manifest *m)
{
    struct rbuf r = {in, len, 0, false};
    const uint8_t *magic, *ver;
    memset(m, 0, sizeof *m);
    magic = r_bytes(&r, 4);
    ver = r_bytes(&r, 1);
    if (!magic || memcmp(magic, VOL_MANIFEST_MAGIC, 4) || !ver || *ver != VOL_MANIFEST_VERSION)
        return -EBADMSG;
    r_str(&r, m->snapshot_id, sizeof m->snapshot_id, 1);
    r_str(&r, m->volume_id, sizeof m->volume_id, 1);
    m->size_gib = r_u64(&r);
    r_copy(&r, m->lineage, sizeof m->lineage);
    r_str(&r, m->key_arn, sizeof m->key_arn, 2);
    r_copy(&r, m->wrapped_sha256, 32);
    m->created = (int64_t)r_u64(&r);
    m->blocks = r_u64(&r);
    r_copy(&r, m->map_sha256, 32);
    r_str(&r, m->source_id, sizeof m->source_id, 1);
    r_copy(&r, m->source_sha256, 32);
    return r.bad || r.off != len ? -EBADMSG : 0;
}

void vol_manifest_digest(const uint8_t *enc, size_t len, uint8_t out[32])
{
    crypto_hash_sha256(out, enc, len);
}

const char *vol_manifest_diff(const vol_manifest *a, const vol_manifest *b)
{
    if (strcmp(a->snapshot_id, b->snapshot_id))
        return "SnapshotId";
    if (strcmp(a->volume_id, b->volume_id))
        return "VolumeId";
    if (a->size_gib != b->size_gib)
        return "VolumeSize";
    if (memcmp(a->lineage, b->lineage, sizeof a->lineage))
        return "Lineage";
    if (strcmp(a->key_arn, b->key_arn))
        return "KmsKeyId";
    if (memcmp(a->wrapped_sha256, b->wrapped_sha256, 32))
        return "WrappedDataKeyDigest";
    if (a->created != b->created)
        return "CompletionTime";
    if (a->blocks != b->blocks)
        return "Blocks";
    if (memcmp(a->map_sha256, b->map_sha256, 32))
        return "BlockMapDigest";
    if (strcmp(a->source_id, b->source_id))
        return "SourceSnapshotId";
    if (memcmp(a->source_sha256, b->source_sha256, 32))
        return "SourceManifestDigest";
    return NULL;
}

void vol_map_hash_init(vol_map_hash *m)
{
    static const uint8_t head[5] = {'E', 'V', 'S', 'B', 1};
    crypto_hash_sha256_init(&m->h);
    crypto_hash_sha256_update(&m->h, head, sizeof head);
    m->n = 0;
}

void vol_map_hash_add(vol_map_hash *m, uint64_t block, const uint8_t chunk_sha256[32])
{
    uint8_t b[8];
    put_u64(b, block);
    crypto_hash_sha256_update(&m->h, b, sizeof b);
    crypto_hash_sha256_update(&m->h, chunk_sha256, 32);
    m->n++;
}

void vol_map_hash_final(vol_map_hash *m, uint8_t out[32])
{
    crypto_hash_sha256_final(&m->h, out);
}

void vol_signature_clear(vol_signature *s)
{
    if (!s)
        return;
    free(s->manifest);
    free(s->signature);
    free(s->source_manifest);
    free(s->source_signature);
    memset(s, 0, sizeof *s);
}
