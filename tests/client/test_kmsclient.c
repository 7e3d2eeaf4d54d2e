/*
 * test_kmsclient.c — the client library on an embedded store: typed calls, error mapping, the
 * data-key cache (LRU, age with an injected clock, uses, bytes, wipe on clear) and cached decrypt
 * making no backend call on a hit; concurrent use of one client and cache.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "envelopefs/kmsclient.h"
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
