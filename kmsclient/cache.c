/*
 * cache.c — the data-key cache (kmsclient.h), modelled on the AWS Encryption SDK's caching materials
 * manager: a bounded LRU of plaintext data keys in locked memory. Entries expire by age, uses and
 * bytes; every eviction wipes the key. Every operation is O(1): a chained hash index on a 64-bit XXH3
 * of the id under a random secret per cache (then the full id compared in constant time), a recency
 * list for LRU eviction and a creation-order list so that entries past their age are dropped first.
 * Also kmsc_decrypt_cached, which keys entries by SHA-256(key id ‖ blob ‖ encryption context).
 */
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <sodium.h>
#include <xxhash.h>

#include "envelopefs/kmsclient.h"

#define HASH_SECRET_LEN 192 /* XXH3's default secret size (at least XXH3_SECRET_SIZE_MIN) */
_Static_assert(HASH_SECRET_LEN >= XXH3_SECRET_SIZE_MIN, "XXH3 secret too short");

/* Intrusive doubly linked list over entry indices (-1 = none). */
typedef struct link {
    int32_t prev, next;
} link;
typedef struct list {
    int32_t head, tail; /* head = most recent */
} list;

typedef struct entry {
    bool used;
    uint64_t hash;
    uint8_t *id;
    size_t id_len;
    kmsc_secret *key;
    int64_t created;
    uint64_t uses, bytes;
    int32_t chain;  /* next entry in the same hash bucket, or -1 */
    link lru;       /* recency order: head most recently used */
    link age;       /* creation order: tail oldest */
} entry;

struct kmsc_cache {
    pthread_mutex_t lock;
    kmsc_cache_opts o;
    entry *e;
    int32_t *heads;  /* hash buckets: index of the first entry, or -1 */
    size_t mask;     /* number of buckets - 1 (a power of two ≥ max_entries) */
    uint8_t hash_secret[HASH_SECRET_LEN];
    int32_t *unused; /* stack of unused entry indices */
    size_t n_unused;
    list lru, age;
    size_t n;
};


static void list_push_head(kmsc_cache *c, list *l, size_t off, int32_t i)
{
    link *li = (link *)((char *)&c->e[i] + off);
    li->prev = -1;
    li->next = l->head;
    if (l->head >= 0)
        ((link *)((char *)&c->e[l->head] + off))->prev = i;
    else
        l->tail = i;
    l->head = i;
}

static void list_remove(kmsc_cache *c, list *l, size_t off, int32_t i)
{
    link *li = (link *)((char *)&c->e[i] + off);
    if (li->prev >= 0)
        ((link *)((char *)&c->e[li->prev] + off))->next = li->next;
    else
        l->head = li->next;
    if (li->next >= 0)
        ((link *)((char *)&c->e[li->next] + off))->prev = li->prev;
    else
        l->tail = li->prev;
}

#define LRU_OFF offsetof(entry, lru)
#define AGE_OFF offsetof(entry, age)

static int64_t now(kmsc_cache *c)
{
    return c->o.clock ? c->o.clock(c->o.clock_arg) : (int64_t)time(NULL);
}

/* The bucket index only needs a fast hash that spreads ids well: XXH3, not a cryptographic hash. Its
 * secret is random per cache, so that ids chosen to fall into one bucket are not easy to prepare (and
 * if they were, a lookup would walk a longer chain, never match a wrong entry: ids are compared whole). */
static uint64_t hash_id(const kmsc_cache *c, const void *id, size_t len)
{
    return XXH3_64bits_withSecret(id, len, c->hash_secret, sizeof c->hash_secret);
}

/* Remove entry i from the index and both lists, wipe and free its key, return its slot. Lock held. */
static void drop(kmsc_cache *c, int32_t i)
{
    entry *x = &c->e[i];
    int32_t *p = &c->heads[x->hash & c->mask];
    while (*p != i)
        p = &c->e[*p].chain;
    *p = x->chain;
    list_remove(c, &c->lru, LRU_OFF, i);
    list_remove(c, &c->age, AGE_OFF, i);
    kmsc_secret_free(x->key);
    free(x->id);
    memset(x, 0, sizeof *x);
    c->unused[c->n_unused++] = i;
    c->n--;
}

static bool too_old(const kmsc_cache *c, const entry *x, int64_t t)
{
    return t - x->created >= c->o.max_age_s;
}

static bool used_up(const kmsc_cache *c, const entry *x)
{
    return (c->o.max_uses && x->uses >= c->o.max_uses) || (c->o.max_bytes && x->bytes >= c->o.max_bytes);
}

kmsc_cache *kmsc_cache_new(const kmsc_cache_opts *opts)
{
    kmsc_cache *c;
    size_t nb = 1;
    if (!opts || !opts->max_entries || opts->max_entries > INT32_MAX / 2 || opts->max_age_s <= 0 ||
        sodium_init() < 0)
        return NULL;
    while (nb < opts->max_entries)
        nb <<= 1;
    c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->o = *opts;
    c->e = calloc(opts->max_entries, sizeof *c->e);
    c->heads = malloc(nb * sizeof *c->heads);
    c->unused = malloc(opts->max_entries * sizeof *c->unused);
    if (!c->e || !c->heads || !c->unused) {
        free(c->e);
        free(c->heads);
        free(c->unused);
        free(c);
        return NULL;
    }
    for (size_t i = 0; i < nb; i++)
        c->heads[i] = -1;
    c->mask = nb - 1;
    for (size_t i = opts->max_entries; i-- > 0;)
        c->unused[c->n_unused++] = (int32_t)i;
    c->lru = c->age = (list){-1, -1};
    randombytes_buf(c->hash_secret, sizeof c->hash_secret);
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

void kmsc_cache_clear(kmsc_cache *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    while (c->lru.head >= 0)
        drop(c, c->lru.head);
    pthread_mutex_unlock(&c->lock);
}

void kmsc_cache_free(kmsc_cache *c)
{
    if (!c)
        return;
    kmsc_cache_clear(c);
    pthread_mutex_destroy(&c->lock);
    free(c->e);
    free(c->heads);
    free(c->unused);
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

static int32_t find(kmsc_cache *c, uint64_t h, const void *id, size_t len)
{
    for (int32_t i = c->heads[h & c->mask]; i >= 0; i = c->e[i].chain) {
        const entry *x = &c->e[i];
        if (x->hash == h && x->id_len == len && CRYPTO_memcmp(x->id, id, len) == 0)
            return i;
    }
    return -1;
}

bool kmsc_cache_get(kmsc_cache *c, const void *id, size_t id_len, uint64_t bytes, kmsc_secret **out)
{
    uint64_t h = hash_id(c, id, id_len);
    bool hit = false;
    int32_t i;
    *out = NULL;
    pthread_mutex_lock(&c->lock);
    i = find(c, h, id, id_len);
    if (i >= 0 && (too_old(c, &c->e[i], now(c)) || used_up(c, &c->e[i]) ||
                   (c->o.max_bytes && c->e[i].bytes + bytes > c->o.max_bytes))) {
        drop(c, i); /* expired, or this use would exceed the entry's byte budget */
        i = -1;
    }
    if (i >= 0) {
        entry *x = &c->e[i];
        kmsc_secret *copy = kmsc_secret_new(x->key->len);
        if (copy) {
            memcpy(copy->data, x->key->data, x->key->len);
            x->uses++;
            x->bytes += bytes;
            *out = copy;
            hit = true;
            if (used_up(c, x)) {
                drop(c, i); /* that was its last use: wipe it now rather than on the next lookup */
            } else {
                list_remove(c, &c->lru, LRU_OFF, i);
                list_push_head(c, &c->lru, LRU_OFF, i);
            }
        }
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

bool kmsc_cache_put(kmsc_cache *c, const void *id, size_t id_len, const kmsc_secret *key)
{
    uint64_t h = hash_id(c, id, id_len);
    kmsc_secret *copy = kmsc_secret_new(key->len);
    uint8_t *idc = malloc(id_len ? id_len : 1);
    int32_t i;
    int64_t t;
    entry *x;

    if (!copy || !idc) {
        kmsc_secret_free(copy);
        free(idc);
        return false;
    }
    memcpy(copy->data, key->data, key->len);
    memcpy(idc, id, id_len);
    pthread_mutex_lock(&c->lock);
    t = now(c);
    if ((i = find(c, h, id, id_len)) >= 0)
        drop(c, i);
    /* entries past their age go first (oldest at the tail of the creation list), then the LRU one */
    while (c->age.tail >= 0 && too_old(c, &c->e[c->age.tail], t))
        drop(c, c->age.tail);
    if (!c->n_unused)
        drop(c, c->lru.tail);
    i = c->unused[--c->n_unused];
    x = &c->e[i];
    x->used = true;
    x->hash = h;
    x->id = idc;
    x->id_len = id_len;
    x->key = copy;
    x->created = t;
    x->chain = c->heads[h & c->mask];
    c->heads[h & c->mask] = i;
    list_push_head(c, &c->lru, LRU_OFF, i);
    list_push_head(c, &c->age, AGE_OFF, i);
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
