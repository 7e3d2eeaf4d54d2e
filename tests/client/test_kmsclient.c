/*
 * test_kmsclient.c — the client library on an embedded store: typed calls, error mapping, the
 * data-key cache (LRU, age with an injected clock, uses, bytes, wipe on every exit, many threads) and
 * cached decrypt making no backend call on a hit while never confusing contexts or key ids; concurrent
 * use of one client and cache; jansson's buffers wiped on free once a client exists; the locked-slot pool
 * shared with the filesystem.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "envelopefs/kmsclient.h"
#include "secret.h"
#include "../kms/testutil.h"

static int64_t g_now = 1000;
static int64_t clk(void *a) { (void)a; return g_now; }

static kmsc_secret *secret_of(uint8_t byte, size_t n)
{
    kmsc_secret *s = kmsc_secret_new(n);
    memset(s->data, byte, n);
    return s;
}

static void test_cache(void)
{
    kmsc_cache_opts o = {.max_entries = 3, .max_age_s = 60, .max_uses = 5, .max_bytes = 1000, .clock = clk};
    kmsc_cache *c = kmsc_cache_new(&o);
    kmsc_secret *k1 = secret_of(1, 32), *k2 = secret_of(2, 32), *k3 = secret_of(3, 32), *k4 = secret_of(4, 32), *out;

    CHECK(c);
    CHECK(kmsc_cache_new(&(kmsc_cache_opts){.max_entries = 0, .max_age_s = 1}) == NULL);
    CHECK(kmsc_cache_put(c, "a", 1, k1) && kmsc_cache_put(c, "b", 1, k2) && kmsc_cache_put(c, "c", 1, k3));
    CHECK(kmsc_cache_size(c) == 3);
    CHECK(kmsc_cache_get(c, "a", 1, 0, &out) && out->len == 32 && out->data[0] == 1);
    kmsc_secret_free(out);
    /* "b" is now least recently used: inserting "d" evicts it */
    CHECK(kmsc_cache_put(c, "d", 1, k4));
    CHECK(!kmsc_cache_get(c, "b", 1, 0, &out) && out == NULL);
    CHECK(kmsc_cache_get(c, "a", 1, 0, &out));
    kmsc_secret_free(out);
    CHECK(kmsc_cache_size(c) == 3);
    /* uses: "a" has been used twice; 3 more reach max_uses=5, the next is a miss */
    for (int i = 0; i < 3; i++) {
        CHECK(kmsc_cache_get(c, "a", 1, 0, &out));
        kmsc_secret_free(out);
    }
    CHECK(!kmsc_cache_get(c, "a", 1, 0, &out));
    /* bytes: 600 + 400 fits 1000, one more byte does not */
    CHECK(kmsc_cache_get(c, "c", 1, 600, &out));
    kmsc_secret_free(out);
    CHECK(kmsc_cache_get(c, "c", 1, 400, &out));
    kmsc_secret_free(out);
    CHECK(!kmsc_cache_get(c, "c", 1, 1, &out));
    /* age */
    CHECK(kmsc_cache_get(c, "d", 1, 0, &out));
    kmsc_secret_free(out);
    g_now += 60;
    CHECK(!kmsc_cache_get(c, "d", 1, 0, &out));
    CHECK(kmsc_cache_size(c) == 0);
    /* a returned copy is independent of the entry; clear empties */
    CHECK(kmsc_cache_put(c, "e", 1, k1));
    CHECK(kmsc_cache_get(c, "e", 1, 0, &out));
    out->data[0] = 99;
    kmsc_secret_free(out);
    CHECK(kmsc_cache_get(c, "e", 1, 0, &out) && out->data[0] == 1);
    kmsc_secret_free(out);
    kmsc_cache_clear(c);
    CHECK(kmsc_cache_size(c) == 0 && !kmsc_cache_get(c, "e", 1, 0, &out));
    kmsc_cache_free(c);
    kmsc_cache_free(NULL);
    kmsc_secret_free(k1);
    kmsc_secret_free(k2);
    kmsc_secret_free(k3);
    kmsc_secret_free(k4);
    kmsc_secret_free(NULL);
}

/* Limits of 0 mean unlimited; put replaces; a full cache evicts an expired entry before the LRU one. */
static void test_cache_limits(void)
{
    kmsc_cache_opts o = {.max_entries = 2, .max_age_s = 60, .clock = clk};
    kmsc_cache *c;
    kmsc_secret *k1 = secret_of(1, 16), *k2 = secret_of(2, 16), *k3 = secret_of(3, 16), *out;

    g_now = 5000;
    c = kmsc_cache_new(&o);
    CHECK(c);
    CHECK(kmsc_cache_new(&(kmsc_cache_opts){.max_entries = 1, .max_age_s = 0}) == NULL);
    CHECK(kmsc_cache_new(NULL) == NULL);
    CHECK(kmsc_cache_put(c, "a", 1, k1));
    for (int i = 0; i < 1000; i++) { /* no use or byte limit */
        CHECK(kmsc_cache_get(c, "a", 1, UINT32_MAX, &out));
        kmsc_secret_free(out);
    }
    /* put under an existing id replaces the key and its counters */
    CHECK(kmsc_cache_put(c, "a", 1, k2));
    CHECK(kmsc_cache_size(c) == 1);
    CHECK(kmsc_cache_get(c, "a", 1, 0, &out) && out->data[0] == 2 && out->len == 16);
    kmsc_secret_free(out);
    /* ids are compared in full: same prefix, different length */
    CHECK(!kmsc_cache_get(c, "ab", 2, 0, &out) && !kmsc_cache_get(c, "", 0, 0, &out));
    g_now += 30;
    CHECK(kmsc_cache_put(c, "b", 1, k3));
    CHECK(kmsc_cache_get(c, "a", 1, 0, &out)); /* "a" most recently used, but older */
    kmsc_secret_free(out);
    g_now += 31; /* "a" is 61 s old: expired; "b" is 31 s old */
    CHECK(kmsc_cache_put(c, "c", 1, k1));
    CHECK(kmsc_cache_get(c, "b", 1, 0, &out) && out->data[0] == 3);
    kmsc_secret_free(out);
    CHECK(kmsc_cache_get(c, "c", 1, 0, &out) && out->data[0] == 1);
    kmsc_secret_free(out);
    CHECK(!kmsc_cache_get(c, "a", 1, 0, &out));
    CHECK(kmsc_cache_size(c) == 2);
    /* the caller's key may be freed after put: the cache holds its own copy */
    {
        kmsc_secret *tmp = secret_of(7, 8);
        CHECK(kmsc_cache_put(c, "t", 1, tmp));
        kmsc_secret_free(tmp);
        CHECK(kmsc_cache_get(c, "t", 1, 0, &out) && out->len == 8 && out->data[7] == 7);
        kmsc_secret_free(out);
    }
    kmsc_cache_free(c);
    kmsc_secret_free(k1);
    kmsc_secret_free(k2);
    kmsc_secret_free(k3);
}

/* Every way a key leaves the cache releases its locked slot exactly once, and a released slot is wiped. */
static void test_cache_wipe(void)
{
    kmsc_cache_opts o = {.max_entries = 2, .max_age_s = 10, .max_uses = 1, .clock = clk};
    kmsc_cache *c = kmsc_cache_new(&o);
    kmsc_secret *k = secret_of(9, 32), *out, *big, *again;
    size_t base = kmsc_secret_pool_in_use();
    uint8_t *slot;
    CHECK(c);
    g_now = 9000;
    CHECK(kmsc_cache_put(c, "a", 1, k) && kmsc_cache_put(c, "b", 1, k));
    CHECK_EQ_INT(kmsc_secret_pool_in_use(), base + 2);
    CHECK(kmsc_cache_put(c, "c", 1, k)); /* LRU eviction of "a" */
    CHECK_EQ_INT(kmsc_secret_pool_in_use(), base + 2);
    CHECK(kmsc_cache_put(c, "c", 1, k)); /* replacement of "c" */
    CHECK_EQ_INT(kmsc_secret_pool_in_use(), base + 2);
    CHECK(kmsc_cache_get(c, "b", 1, 0, &out)); /* a hit hands out a copy; that was b's last use */
    CHECK_EQ_INT(kmsc_secret_pool_in_use(), base + 2);
    CHECK_EQ_INT(kmsc_cache_size(c), 1);
    kmsc_secret_free(out);
    CHECK_EQ_INT(kmsc_secret_pool_in_use(), base + 1);
    CHECK(!kmsc_cache_get(c, "b", 1, 0, &out));
    g_now += 10;
    CHECK(!kmsc_cache_get(c, "c", 1, 0, &out)); /* too old: released now */
    CHECK_EQ_INT(kmsc_secret_pool_in_use(), base);
    CHECK(kmsc_cache_put(c, "d", 1, k) && kmsc_cache_put(c, "e", 1, k));
    kmsc_cache_clear(c);
    CHECK_EQ_INT(kmsc_secret_pool_in_use(), base);
    CHECK(kmsc_cache_put(c, "f", 1, k));
    kmsc_cache_free(c);
    CHECK_EQ_INT(kmsc_secret_pool_in_use(), base);
    /* the pool is a stack: the slot just released comes back next, and it was wiped */
    CHECK(kmsc_cache_put((c = kmsc_cache_new(&o)), "g", 1, k));
    kmsc_cache_free(c); /* the entry's slot (holding 9s) is released and wiped */
    again = kmsc_secret_new(32);
    CHECK(again && again->len == 32);
    slot = again->data;
    for (size_t i = 0; i < KMSC_SECRET_SLOT; i++)
        CHECK(slot[i] == 0);
    kmsc_secret_free(again);
    /* secrets larger than the pool's largest slot have their own sodium_malloc block */
    big = kmsc_secret_new(EFS_SECPOOL_MAX + 1);
    CHECK(big && kmsc_secret_pool_in_use() == base);
    memset(big->data, 1, big->len);
    kmsc_secret_free(big);
    /* many slots: the pool grows past one slab and shrinks back */
    {
        kmsc_secret *many[3000];
        for (int i = 0; i < 3000; i++) {
            many[i] = secret_of((uint8_t)i, 32);
            CHECK(many[i]);
        }
        for (int i = 0; i < 3000; i++)
            CHECK(many[i]->data[31] == (uint8_t)i);
        for (int i = 0; i < 3000; i++)
            kmsc_secret_free(many[i]);
        CHECK_EQ_INT(kmsc_secret_pool_in_use(), base);
    }
    kmsc_secret_free(k);
}

/* The process-wide pool (common/secpool.c) that kmsc_secret and the filesystem's file keys share: both slot
 * sizes, reuse of the last slot released (wiped), a secret whose len shrank after allocation (base64 decoded
 * into a secret sized for the longest result) going back to the slot it came from, larger requests outside
 * the pool, growth past one slab and back. */
static void test_secpool(void)
{
    size_t base = efs_secpool_in_use();
    uint8_t *a = efs_secpool_alloc(72), *b, *c; /* a file's derived keys: a 128-byte slot */
    kmsc_secret *s;
    CHECK(a);
    for (size_t i = 0; i < EFS_SECPOOL_MAX; i++)
        CHECK(a[i] == 0);
    memset(a, 0xa5, EFS_SECPOOL_MAX);
    CHECK_EQ_INT(efs_secpool_in_use(), base + 1);
    efs_secpool_free(a, 72);
    CHECK_EQ_INT(efs_secpool_in_use(), base);
    b = efs_secpool_alloc(100); /* same size class: the slot just released, wiped */
    CHECK(b == a);
    for (size_t i = 0; i < EFS_SECPOOL_MAX; i++)
        CHECK(b[i] == 0);
    c = efs_secpool_alloc(32); /* the other class: a different slot */
    CHECK(c && c != b);
    CHECK_EQ_INT(efs_secpool_in_use(), base + 2);
    efs_secpool_free(c, 32);
    efs_secpool_free(b, 100);
    efs_secpool_free(NULL, 32);
    CHECK_EQ_INT(efs_secpool_in_use(), base);
    a = efs_secpool_alloc(EFS_SECPOOL_MAX + 1); /* outside the pool */
    CHECK(a && efs_secpool_in_use() == base);
    memset(a, 1, EFS_SECPOOL_MAX + 1);
    efs_secpool_free(a, EFS_SECPOOL_MAX + 1);
    s = kmsc_secret_new(69); /* a 128-byte slot; then only 64 bytes of it are used */
    CHECK(s);
    a = s->data;
    s->len = 64;
    kmsc_secret_free(s);
    CHECK_EQ_INT(efs_secpool_in_use(), base);
    b = efs_secpool_alloc(128); /* back on the 128-byte stack, on top */
    CHECK(b == a);
    efs_secpool_free(b, 128);
    {
        static uint8_t *many[2000];
        for (int i = 0; i < 2000; i++) {
            many[i] = efs_secpool_alloc(72);
            CHECK(many[i]);
            many[i][71] = (uint8_t)i;
        }
        for (int i = 0; i < 2000; i++)
            CHECK(many[i][71] == (uint8_t)i);
        CHECK_EQ_INT(efs_secpool_in_use(), base + 2000);
        for (int i = 0; i < 2000; i++)
            efs_secpool_free(many[i], 72);
        CHECK_EQ_INT(efs_secpool_in_use(), base);
    }
}

/* Random operations against a plain reference model of the documented semantics. */
struct model_entry {
    bool used;
    int id;
    uint8_t key;
    int64_t created;
    uint64_t uses, bytes, touch;
};

static void test_cache_model(void)
{
    enum { CAP = 5, IDS = 16 };
    kmsc_cache_opts o = {.max_entries = CAP, .max_age_s = 20, .max_uses = 4, .max_bytes = 50, .clock = clk};
    kmsc_cache *c = kmsc_cache_new(&o);
    struct model_entry m[CAP];
    unsigned seed = 12345;
    uint64_t tick = 0;
    uint8_t next_key = 1;
    CHECK(c);
    memset(m, 0, sizeof m);
    g_now = 100000;
    for (int step = 0; step < 20000; step++) {
        int id = (int)(rand_r(&seed) % IDS), slot = -1;
        char idb[4];
        size_t live = 0;
        snprintf(idb, sizeof idb, "%d", id);
        g_now += rand_r(&seed) % 4 == 0 ? rand_r(&seed) % 4 : 0;
        for (int i = 0; i < CAP; i++)
            if (m[i].used && m[i].id == id)
                slot = i;
        if (rand_r(&seed) % 2) { /* get */
            uint64_t bytes = rand_r(&seed) % 21;
            kmsc_secret *out;
            bool want = false, got;
            if (slot >= 0) {
                struct model_entry *x = &m[slot];
                if (g_now - x->created >= o.max_age_s || x->uses >= o.max_uses || x->bytes >= o.max_bytes ||
                    x->bytes + bytes > o.max_bytes) {
                    x->used = false;
                } else {
                    want = true;
                    x->uses++;
                    x->bytes += bytes;
                    x->touch = ++tick;
                    if (x->uses >= o.max_uses || x->bytes >= o.max_bytes)
                        x->used = false;
                }
            }
            got = kmsc_cache_get(c, idb, strlen(idb), bytes, &out);
            CHECK(got == want);
            if (got) {
                CHECK(out->len == 8 && out->data[0] == m[slot].key && out->data[7] == m[slot].key);
                kmsc_secret_free(out);
            }
        } else { /* put */
            kmsc_secret *k = secret_of(next_key, 8);
            int victim = -1;
            if (slot >= 0)
                m[slot].used = false;
            for (int i = 0; i < CAP; i++)
                if (m[i].used && g_now - m[i].created >= o.max_age_s)
                    m[i].used = false;
            for (int i = 0; i < CAP && victim < 0; i++)
                if (!m[i].used)
                    victim = i;
            if (victim < 0)
                for (int i = 0; i < CAP; i++)
                    if (victim < 0 || m[i].touch < m[victim].touch)
                        victim = i;
            m[victim] = (struct model_entry){true, id, next_key, g_now, 0, 0, ++tick};
            CHECK(kmsc_cache_put(c, idb, strlen(idb), k));
            kmsc_secret_free(k);
            next_key = (uint8_t)(next_key % 250 + 1);
        }
        for (int i = 0; i < CAP; i++)
            live += m[i].used;
        CHECK_EQ_INT(kmsc_cache_size(c), live);
    }
    kmsc_cache_free(c);
}

struct cache_thr {
    kmsc_cache *cache;
    unsigned seed;
    int hits, wrong;
};

/* Every id "kN" maps to a key filled with byte N: a hit must return exactly that key. */
static void *cache_worker(void *p)
{
    struct cache_thr *t = p;
    for (int i = 0; i < 3000; i++) {
        uint8_t n = (uint8_t)(rand_r(&t->seed) % 32);
        char id[8];
        kmsc_secret *out;
        snprintf(id, sizeof id, "k%u", n);
        if (kmsc_cache_get(t->cache, id, strlen(id), 1, &out)) {
            t->hits++;
            for (size_t j = 0; j < out->len; j++)
                if (out->data[j] != n)
                    t->wrong++;
            if (out->len != 24)
                t->wrong++;
            kmsc_secret_free(out);
        } else {
            kmsc_secret *k = secret_of(n, 24);
            if (!kmsc_cache_put(t->cache, id, strlen(id), k))
                t->wrong++;
            kmsc_secret_free(k);
        }
        if (i % 1000 == 999 && t->seed % 2)
            kmsc_cache_clear(t->cache);
    }
    return NULL;
}

static void test_cache_threads(void)
{
    kmsc_cache_opts o = {.max_entries = 8, .max_age_s = 3600, .max_uses = 50, .max_bytes = 40};
    kmsc_cache *c = kmsc_cache_new(&o);
    pthread_t th[4];
    struct cache_thr t[4];
    int hits = 0;
    CHECK(c);
    for (int i = 0; i < 4; i++) {
        t[i] = (struct cache_thr){c, (unsigned)i + 1, 0, 0};
        CHECK(pthread_create(&th[i], NULL, cache_worker, &t[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
        CHECK_EQ_INT(t[i].wrong, 0);
        hits += t[i].hits;
    }
    CHECK(hits > 0);
    CHECK(kmsc_cache_size(c) <= 8);
    kmsc_cache_free(c);
}

/* kmsc_decrypt_cached: the cache id covers key id, blob and the canonical context. */
static void test_cached_ids(kmsc *c, const char *key_id, const char *other_key_id)
{
    kms_ectx_pair abc[] = {{"a", "bc"}}, ab_c[] = {{"ab", "c"}};
    kms_ectx_pair two[] = {{"x", "1"}, {"y", "2"}}, two_rev[] = {{"y", "2"}, {"x", "1"}};
    kms_ectx c_abc = {abc, 1}, c_ab_c = {ab_c, 1}, c_two = {two, 2}, c_two_rev = {two_rev, 2};
    kmsc_cache_opts co = {.max_entries = 8, .max_age_s = 300};
    kmsc_cache *cache = kmsc_cache_new(&co);
    kmsc_data_key *dk, *dk2;
    kmsc_secret *s;
    kmsc_error err;
    uint64_t calls;
    char *arn = NULL;

    CHECK(kmsc_generate_data_key(c, key_id, &c_abc, 32, &dk, &err) == KMS_OK);
    CHECK(kmsc_generate_data_key(c, key_id, &c_two, 16, &dk2, &err) == KMS_OK);
    calls = kmsc_call_count(c);
    CHECK(kmsc_decrypt_cached(c, cache, NULL, dk->ciphertext, dk->ciphertext_len, &c_abc, &s, &err) == KMS_OK);
    kmsc_secret_free(s);
    CHECK_EQ_INT(kmsc_call_count(c), calls + 1);
    /* {"a":"bc"} and {"ab":"c"} must not share an entry: the second goes to the service and fails */
    CHECK(kmsc_decrypt_cached(c, cache, NULL, dk->ciphertext, dk->ciphertext_len, &c_ab_c, &s, &err) ==
          KMS_ERR_INVALID_CIPHERTEXT);
    CHECK(s == NULL && !strcmp(err.name, "InvalidCiphertextException"));
    CHECK_EQ_INT(kmsc_call_count(c), calls + 2);
    /* order of the pairs does not matter */
    CHECK(kmsc_decrypt_cached(c, cache, NULL, dk2->ciphertext, dk2->ciphertext_len, &c_two, &s, &err) == KMS_OK);
    kmsc_secret_free(s);
    CHECK_EQ_INT(kmsc_call_count(c), calls + 3);
    CHECK(kmsc_decrypt_cached(c, cache, NULL, dk2->ciphertext, dk2->ciphertext_len, &c_two_rev, &s, &err) == KMS_OK);
    CHECK(s->len == 16 && !memcmp(s->data, dk2->plaintext->data, 16));
    kmsc_secret_free(s);
    CHECK_EQ_INT(kmsc_call_count(c), calls + 3);
    /* an explicit KeyId is part of the id: a cached entry never answers for another key */
    CHECK(kmsc_decrypt_cached(c, cache, other_key_id, dk->ciphertext, dk->ciphertext_len, &c_abc, &s, &err) ==
          KMS_ERR_INCORRECT_KEY);
    CHECK(!strcmp(err.name, "IncorrectKeyException"));
    CHECK_EQ_INT(kmsc_call_count(c), calls + 4);
    CHECK(kmsc_describe_key(c, key_id, &arn, NULL, &err) == KMS_OK);
    CHECK(kmsc_decrypt_cached(c, cache, arn, dk->ciphertext, dk->ciphertext_len, &c_abc, &s, &err) == KMS_OK);
    CHECK(!memcmp(s->data, dk->plaintext->data, 32));
    kmsc_secret_free(s);
    free(arn);
    /* a NULL cache is a plain decrypt */
    calls = kmsc_call_count(c);
    CHECK(kmsc_decrypt_cached(c, NULL, NULL, dk->ciphertext, dk->ciphertext_len, &c_abc, &s, &err) == KMS_OK);
    kmsc_secret_free(s);
    CHECK_EQ_INT(kmsc_call_count(c), calls + 1);
    kmsc_data_key_free(dk);
    kmsc_data_key_free(dk2);
    kmsc_cache_free(cache);
}

/* Errors keep their AWS names and messages; state changes show through the typed calls. */
static void test_typed_errors(kmsc *c)
{
    char *resp = NULL, key_id[64], req[200];
    size_t resp_len;
    kmsc_error err;
    kmsc_data_key *dk = NULL;
    kmsc_secret *s = NULL;
    uint8_t big[4097] = {0}, *blob = NULL;
    size_t blob_len = 0;
    bool enabled = true;

    CHECK(kmsc_call(c, "NoSuchOperation", "{}", 2, &resp, &resp_len, &err) == KMS_ERR_UNKNOWN_OPERATION);
    CHECK(resp == NULL && !strcmp(err.name, "UnknownOperationException"));
    CHECK(kmsc_call(c, "CreateKey", "{not json", 9, &resp, &resp_len, &err) == KMS_ERR_SERIALIZATION);
    CHECK(!strcmp(err.name, "SerializationException"));
    CHECK(kmsc_call(c, "CreateKey", "{}", 2, &resp, &resp_len, NULL) == KMS_OK);
    {
        const char *p = strstr(resp, "\"KeyId\":\"");
        CHECK(p);
        snprintf(key_id, 37, "%s", p + 9);
    }
    kmsc_response_free(resp, resp_len);
    CHECK(kmsc_generate_data_key(c, NULL, NULL, 32, &dk, &err) == KMS_ERR_VALIDATION && dk == NULL);
    CHECK(kmsc_generate_data_key(c, key_id, NULL, 0, &dk, &err) == KMS_ERR_VALIDATION && dk == NULL);
    CHECK(!strcmp(err.name, "ValidationException"));
    CHECK(kmsc_generate_data_key(c, key_id, NULL, 1025, &dk, &err) == KMS_ERR_VALIDATION && dk == NULL);
    CHECK(kmsc_encrypt(c, key_id, big, sizeof big, NULL, &blob, &blob_len, &err) == KMS_ERR_VALIDATION && !blob);
    CHECK(kmsc_encrypt(c, key_id, big, 4096, NULL, &blob, &blob_len, &err) == KMS_OK && blob);
    /* tampered blob */
    blob[blob_len - 1] ^= 1;
    CHECK(kmsc_decrypt(c, NULL, blob, blob_len, NULL, &s, &err) == KMS_ERR_INVALID_CIPHERTEXT && s == NULL);
    blob[blob_len - 1] ^= 1;
    CHECK(kmsc_decrypt(c, NULL, blob, blob_len, NULL, &s, &err) == KMS_OK && s->len == 4096);
    kmsc_secret_free(s);
    /* disabled key */
    snprintf(req, sizeof req, "{\"KeyId\":\"%s\"}", key_id);
    CHECK(kmsc_call(c, "DisableKey", req, strlen(req), &resp, &resp_len, &err) == KMS_OK);
    kmsc_response_free(resp, resp_len);
    CHECK(kmsc_describe_key(c, key_id, NULL, &enabled, &err) == KMS_OK && !enabled);
    CHECK(kmsc_decrypt(c, NULL, blob, blob_len, NULL, &s, &err) == KMS_ERR_DISABLED && s == NULL);
    CHECK(!strcmp(err.name, "DisabledException"));
    CHECK(kmsc_generate_data_key(c, key_id, NULL, 32, &dk, &err) == KMS_ERR_DISABLED && dk == NULL);
    /* pending deletion */
    snprintf(req, sizeof req, "{\"KeyId\":\"%s\",\"PendingWindowInDays\":7}", key_id);
    CHECK(kmsc_call(c, "ScheduleKeyDeletion", req, strlen(req), &resp, &resp_len, &err) == KMS_OK);
    kmsc_response_free(resp, resp_len);
    CHECK(kmsc_decrypt(c, NULL, blob, blob_len, NULL, &s, &err) == KMS_ERR_INVALID_STATE);
    CHECK(!strcmp(err.name, "KMSInvalidStateException"));
    CHECK(kmsc_describe_key(c, "alias/nope", NULL, NULL, &err) == KMS_ERR_NOT_FOUND);
    free(blob);
}

struct thr {
    kmsc *c;
    kmsc_cache *cache;
    const char *key;
    int ok;
};

static void *worker(void *p)
{
    struct thr *t = p;
    kms_ectx_pair pair = {"file", "x"};
    kms_ectx ctx = {&pair, 1};
    for (int i = 0; i < 100; i++) {
        kmsc_data_key *dk;
        kmsc_secret *s;
        if (kmsc_generate_data_key(t->c, t->key, &ctx, 32, &dk, NULL))
            return NULL;
        if (kmsc_decrypt_cached(t->c, t->cache, NULL, dk->ciphertext, dk->ciphertext_len, &ctx, &s, NULL) ||
            s->len != 32 || memcmp(s->data, dk->plaintext->data, 32))
            return NULL;
        kmsc_secret_free(s);
        kmsc_data_key_free(dk);
        t->ok++;
    }
    return NULL;
}

static void test_client(const char *dir)
{
    char url[400], keyfile[400], *msg = NULL, *resp = NULL, *arn = NULL;
    size_t resp_len;
    kmsc_opts o;
    kmsc *c;
    kmsc_error err;
    kmsc_data_key *dk;
    kmsc_secret *s;
    kms_ectx_pair pairs[] = {{"fs", "1"}, {"file", "abc"}};
    kms_ectx ctx = {pairs, 2}, wrong = {pairs, 1};
    char key_id[64];
    bool enabled;
    uint64_t calls;
    kmsc_cache_opts co = {.max_entries = 16, .max_age_s = 300};
    kmsc_cache *cache = kmsc_cache_new(&co);

    snprintf(url, sizeof url, "local:%s/store", dir);
    snprintf(keyfile, sizeof keyfile, "%s/store/root.key", dir);
    memset(&o, 0, sizeof o);
    o.url = url;
    o.root_key_file = keyfile;
    CHECK(kmsc_new(&o, &c, &msg) == KMS_OK);
    CHECK(kmsc_embedded_core(c) != NULL);

    /* bad URLs are clear errors */
    {
        kmsc *bad;
        kmsc_opts bo = o;
        bo.url = "ftp://x";
        CHECK(kmsc_new(&bo, &bad, &msg) == KMS_ERR_VALIDATION && msg && strstr(msg, "unsupported"));
        free(msg);
        msg = NULL;
        bo.url = "unix:kms.sock"; /* a mount's daemon runs in /: the socket's path must be absolute */
        CHECK(kmsc_new(&bo, &bad, &msg) == KMS_ERR_VALIDATION && msg && strstr(msg, "absolute"));
        free(msg);
        msg = NULL;
    }
    /* unix: needs no credentials (the server may know us by uid); a socket that is not there is a
     * transport error, not a hang */
    {
        kmsc *u;
        kmsc_opts uo;
        char *r = NULL;
        size_t rl = 0;
        memset(&uo, 0, sizeof uo);
        uo.url = "unix:///nonexistent/envelopefs-test.sock";
        uo.max_retries = 0;
        uo.timeout_ms = 2000;
        CHECK(kmsc_new(&uo, &u, &msg) == KMS_OK);
        CHECK(kmsc_call(u, "ListKeys", "{}", 2, &r, &rl, &err) == KMS_ERR_TRANSPORT);
        kmsc_free(u);
    }

    CHECK(kmsc_call(c, "CreateKey", "{}", 2, &resp, &resp_len, &err) == KMS_OK);
    {
        const char *p = strstr(resp, "\"KeyId\":\"");
        CHECK(p);
        snprintf(key_id, 37, "%s", p + 9);
    }
    kmsc_response_free(resp, resp_len);

    CHECK(kmsc_describe_key(c, key_id, &arn, &enabled, &err) == KMS_OK && enabled && strstr(arn, key_id));
    free(arn);
    CHECK(kmsc_generate_data_key(c, key_id, &ctx, 32, &dk, &err) == KMS_OK);
    CHECK(dk->plaintext && dk->plaintext->len == 32 && dk->ciphertext_len > 32 && strstr(dk->key_arn, key_id));
    CHECK(kmsc_decrypt(c, NULL, dk->ciphertext, dk->ciphertext_len, &ctx, &s, &err) == KMS_OK);
    CHECK(s->len == 32 && !memcmp(s->data, dk->plaintext->data, 32));
    kmsc_secret_free(s);
    /* errors keep their AWS names */
    CHECK(kmsc_decrypt(c, NULL, dk->ciphertext, dk->ciphertext_len, &wrong, &s, &err) == KMS_ERR_INVALID_CIPHERTEXT);
    CHECK(!strcmp(err.name, "InvalidCiphertextException") && s == NULL);
    {
        kmsc_data_key *none = NULL;
        CHECK(kmsc_generate_data_key(c, "alias/none", NULL, 32, &none, &err) == KMS_ERR_NOT_FOUND);
        CHECK(none == NULL && !strcmp(err.name, "NotFoundException") && strstr(err.message, "alias/none"));
    }

    /* cached decrypt: first call reaches the core, later ones do not */
    calls = kmsc_call_count(c);
    CHECK(kmsc_decrypt_cached(c, cache, NULL, dk->ciphertext, dk->ciphertext_len, &ctx, &s, &err) == KMS_OK);
    kmsc_secret_free(s);
    CHECK(kmsc_call_count(c) == calls + 1);
    for (int i = 0; i < 10; i++) {
        CHECK(kmsc_decrypt_cached(c, cache, NULL, dk->ciphertext, dk->ciphertext_len, &ctx, &s, &err) == KMS_OK);
        CHECK(!memcmp(s->data, dk->plaintext->data, 32));
        kmsc_secret_free(s);
    }
    CHECK(kmsc_call_count(c) == calls + 1);
    /* a different context is a different entry (and fails) */
    CHECK(kmsc_decrypt_cached(c, cache, NULL, dk->ciphertext, dk->ciphertext_len, &wrong, &s, &err) ==
          KMS_ERR_INVALID_CIPHERTEXT);
    CHECK(kmsc_call_count(c) == calls + 2);

    /* encrypt / re-encrypt */
    {
        uint8_t *blob, *blob2;
        size_t bl, bl2;
        CHECK(kmsc_encrypt(c, key_id, (const uint8_t *)"abc", 3, NULL, &blob, &bl, &err) == KMS_OK);
        CHECK(kmsc_re_encrypt(c, NULL, blob, bl, NULL, key_id, &ctx, &blob2, &bl2, &err) == KMS_OK);
        CHECK(kmsc_decrypt(c, key_id, blob2, bl2, &ctx, &s, &err) == KMS_OK && s->len == 3 && !memcmp(s->data, "abc", 3));
        kmsc_secret_free(s);
        free(blob);
        free(blob2);
    }
    {
        kmsc_data_key *wp;
        CHECK(kmsc_generate_data_key_without_plaintext(c, key_id, NULL, 16, &wp, &err) == KMS_OK && wp->plaintext == NULL);
        kmsc_data_key_free(wp);
    }
    kmsc_data_key_free(dk);

    {
        char other[64];
        const char *p;
        CHECK(kmsc_call(c, "CreateKey", "{}", 2, &resp, &resp_len, &err) == KMS_OK);
        p = strstr(resp, "\"KeyId\":\"");
        CHECK(p);
        snprintf(other, 37, "%s", p + 9);
        kmsc_response_free(resp, resp_len);
        test_cached_ids(c, key_id, other);
    }
    test_typed_errors(c);
    /* jansson's scratch buffers are wiped on free once a client exists */
    {
        json_malloc_t m;
        json_free_t f;
        json_get_alloc_funcs(&m, &f);
        CHECK(f != free && m != NULL);
    }

    /* many threads on one client and cache */
    {
        pthread_t th[4];
        struct thr t[4];
        for (int i = 0; i < 4; i++) {
            t[i] = (struct thr){c, cache, key_id, 0};
            CHECK(pthread_create(&th[i], NULL, worker, &t[i]) == 0);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            CHECK_EQ_INT(t[i].ok, 100);
        }
    }
    kmsc_cache_free(cache);
    kmsc_free(c);
    kmsc_free(NULL);
}

int main(void)
{
    char tmpl[] = "/tmp/efs-client-test-XXXXXX", cmd[600], store[300], keyfile[320];
    kms_store_opts so;
    char *msg = NULL;
    uint8_t key[32];
    int fd;

    CHECK(sodium_init() >= 0);
    CHECK(mkdtemp(tmpl));
    test_cache();
    test_cache_limits();
    test_cache_wipe();
    test_secpool();
    test_cache_model();
    test_cache_threads();
    snprintf(store, sizeof store, "%s/store", tmpl);
    CHECK(mkdir(store, 0700) == 0);
    snprintf(keyfile, sizeof keyfile, "%s/root.key", store);
    fd = open(keyfile, O_WRONLY | O_CREAT | O_EXCL, 0600);
    randombytes_buf(key, sizeof key);
    CHECK(write(fd, key, 32) == 32);
    close(fd);
    memset(&so, 0, sizeof so);
    so.store_dir = store;
    so.root_key_file = keyfile;
    CHECK(kms_store_init(&so, &msg) == KMS_OK);
    test_client(tmpl);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    CHECK(system(cmd) == 0);
    TEST_DONE();
}
