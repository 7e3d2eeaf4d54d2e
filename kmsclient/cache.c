/*
 * cache.c — the data-key cache (kmsclient.h), modelled on the AWS Encryption SDK's caching materials
 * manager: a bounded LRU of plaintext data keys in locked memory. Entries expire by age, uses and
 * bytes; every eviction wipes the key. Lookups compare a 64-bit hash first, then the full id in
 * constant time; the table is a flat array (max_entries is small: hundreds to a few thousand).
 * Also kmsc_decrypt_cached, which keys entries by SHA-256(key id ‖ blob ‖ encryption context).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "envelopefs/kmsclient.h"

typedef struct entry {
    bool used;
    uint64_t hash;
    uint8_t *id;
    size_t id_len;
    kmsc_secret *key;
    int64_t created;
    uint64_t uses, bytes;
    uint64_t last_touch; /* LRU clock */
} entry;

struct kmsc_cache {
    pthread_mutex_t lock;
    kmsc_cache_opts o;
    entry *e;
    size_t n;
    uint64_t tick;
};

static int64_t now(kmsc_cache *c)
{
    return c->o.clock ? c->o.clock(c->o.clock_arg) : (int64_t)time(NULL);
}

static uint64_t hash_id(const void *id, size_t len)
{
    uint8_t h[8];
    crypto_generichash(h, sizeof h, id, len, NULL, 0);
    uint64_t v;
    memcpy(&v, h, 8);
    return v;
}

static void drop(entry *x)
{
    kmsc_secret_free(x->key);
    free(x->id);
    memset(x, 0, sizeof *x);
}

kmsc_cache *kmsc_cache_new(const kmsc_cache_opts *opts)
{
    kmsc_cache *c;
    if (!opts || !opts->max_entries || opts->max_age_s <= 0 || sodium_init() < 0)
        return NULL;
    c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->o = *opts;
    c->e = calloc(opts->max_entries, sizeof *c->e);
    if (!c->e) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

void kmsc_cache_clear(kmsc_cache *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->o.max_entries; i++)
        if (c->e[i].used)
            drop(&c->e[i]);
    c->n = 0;
    pthread_mutex_unlock(&c->lock);
}

void kmsc_cache_free(kmsc_cache *c)
{
    if (!c)
        return;
    kmsc_cache_clear(c);
    pthread_mutex_destroy(&c->lock);
    free(c->e);
    free(c);
}

size_t kmsc_cache_size(kmsc_cache *c)
{
    size_t n;
    pthread_mutex_lock(&c->lock);
    n = c->n;
    pthread_mutex_unlock(&c->lock);
    return n;
}

static bool expired(kmsc_cache *c, const entry *x, int64_t t)
{
    return t - x->created >= c->o.max_age_s || (c->o.max_uses && x->uses >= c->o.max_uses) ||
           (c->o.max_bytes && x->bytes >= c->o.max_bytes);
}

static entry *find(kmsc_cache *c, uint64_t h, const void *id, size_t len)
{
    for (size_t i = 0; i < c->o.max_entries; i++) {
        entry *x = &c->e[i];
        if (x->used && x->hash == h && x->id_len == len && CRYPTO_memcmp(x->id, id, len) == 0)
            return x;
    }
    return NULL;
}

bool kmsc_cache_get(kmsc_cache *c, const void *id, size_t id_len, uint64_t bytes, kmsc_secret **out)
{
    uint64_t h = hash_id(id, id_len);
    bool hit = false;
    entry *x;
    *out = NULL;
    pthread_mutex_lock(&c->lock);
    x = find(c, h, id, id_len);
    if (x && expired(c, x, now(c))) {
        drop(x);
        c->n--;
        x = NULL;
    }
    if (x && c->o.max_bytes && x->bytes + bytes > c->o.max_bytes) {
        drop(x); /* this use would exceed the entry's byte budget */
        c->n--;
        x = NULL;
    }
    if (x) {
        kmsc_secret *copy = kmsc_secret_new(x->key->len);
        if (copy) {
            memcpy(copy->data, x->key->data, x->key->len);
            x->uses++;
            x->bytes += bytes;
            x->last_touch = ++c->tick;
            *out = copy;
            hit = true;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

bool kmsc_cache_put(kmsc_cache *c, const void *id, size_t id_len, const kmsc_secret *key)
{
    uint64_t h = hash_id(id, id_len);
    kmsc_secret *copy = kmsc_secret_new(key->len);
    uint8_t *idc = malloc(id_len ? id_len : 1);
    entry *x, *victim = NULL;
    int64_t t;

    if (!copy || !idc) {
        kmsc_secret_free(copy);
        free(idc);
        return false;
    }
    memcpy(copy->data, key->data, key->len);
    memcpy(idc, id, id_len);
    pthread_mutex_lock(&c->lock);
    t = now(c);
    x = find(c, h, id, id_len);
    if (x) {
        drop(x);
        c->n--;
    }
    for (size_t i = 0; i < c->o.max_entries; i++) {
        entry *y = &c->e[i];
        if (!y->used) {
            victim = y;
            break;
        }
        if (expired(c, y, t)) {
            drop(y);
            c->n--;
            victim = y;
            break;
        }
        if (!victim || y->last_touch < victim->last_touch)
            victim = y;
    }
    if (victim->used) {
        drop(victim);
        c->n--;
    }
    victim->used = true;
    victim->hash = h;
    victim->id = idc;
    victim->id_len = id_len;
    victim->key = copy;
    victim->created = t;
    victim->last_touch = ++c->tick;
    c->n++;
    pthread_mutex_unlock(&c->lock);
    return true;
}

/* ---- cached decrypt ------------------------------------------------------------------------- */

static int cmp_pairs(const void *a, const void *b)
{
    return strcmp(((const kms_ectx_pair *)a)->key, ((const kms_ectx_pair *)b)->key);
}

static void cache_id(const char *key_id, const uint8_t *blob, size_t blob_len, const kms_ectx *ectx,
                     uint8_t out[32])
{
    crypto_hash_sha256_state st;
    uint8_t len8[8];
    crypto_hash_sha256_init(&st);
#define PUT(p, n)                                                                                                      \
    do {                                                                                                               \
        uint64_t l_ = (n);                                                                                             \
        for (int i_ = 0; i_ < 8; i_++)                                                                                 \
            len8[i_] = (uint8_t)(l_ >> (8 * i_));                                                                      \
        crypto_hash_sha256_update(&st, len8, 8);                                                                       \
        crypto_hash_sha256_update(&st, (const uint8_t *)(p), l_);                                                      \
    } while (0)
    PUT(key_id ? key_id : "", key_id ? strlen(key_id) : 0);
    PUT(blob, blob_len);
    if (ectx && ectx->n) {
        kms_ectx_pair *sorted = malloc(ectx->n * sizeof *sorted);
        if (sorted) {
            memcpy(sorted, ectx->pairs, ectx->n * sizeof *sorted);
            qsort(sorted, ectx->n, sizeof *sorted, cmp_pairs);
            for (size_t i = 0; i < ectx->n; i++) {
                PUT(sorted[i].key, strlen(sorted[i].key));
                PUT(sorted[i].value, strlen(sorted[i].value));
            }
            free(sorted);
        } else {
            PUT("\xff", 1); /* cannot sort: make the id unique-ish; still correct (a miss) */
            for (size_t i = 0; i < ectx->n; i++) {
                PUT(ectx->pairs[i].key, strlen(ectx->pairs[i].key));
                PUT(ectx->pairs[i].value, strlen(ectx->pairs[i].value));
            }
        }
    }
#undef PUT
    crypto_hash_sha256_final(&st, out);
}

kms_err kmsc_decrypt_cached(kmsc *c, kmsc_cache *cache, const char *key_id, const uint8_t *blob, size_t blob_len,
                            const kms_ectx *ectx, kmsc_secret **out, kmsc_error *err)
{
    uint8_t id[32];
    kms_err e;
    if (!cache)
        return kmsc_decrypt(c, key_id, blob, blob_len, ectx, out, err);
    cache_id(key_id, blob, blob_len, ectx, id);
    if (kmsc_cache_get(cache, id, sizeof id, 0, out))
        return KMS_OK;
    e = kmsc_decrypt(c, key_id, blob, blob_len, ectx, out, err);
    if (!e)
        (void)kmsc_cache_put(cache, id, sizeof id, *out);
    return e;
}
