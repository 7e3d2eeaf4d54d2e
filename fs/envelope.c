/*
 * envelope.c — data keys from the key service under a caller's encryption context (see envelope.h).
 */
#include "envelope.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

struct efs_envelope {
    kmsc *kms;
    char *key_id;
    kmsc_cache *cache;
    atomic_uint_fast64_t cache_hits;
};

int efs_envelope_new(kmsc *kms, const char *key_id, const kmsc_cache_opts *cache, efs_envelope **out)
{
    static const kmsc_cache_opts dflt = {.max_entries = 4096, .max_age_s = 600};
    efs_envelope *e = calloc(1, sizeof *e);
    *out = NULL;
    if (!e)
        return -ENOMEM;
    e->kms = kms;
    e->key_id = strdup(key_id);
    e->cache = kmsc_cache_new(cache ? cache : &dflt);
    if (!e->key_id || !e->cache) {
        efs_envelope_free(e);
        return -ENOMEM;
    }
    *out = e;
    return 0;
}

void efs_envelope_free(efs_envelope *e)
{
    if (!e)
        return;
    kmsc_cache_free(e->cache);
    free(e->key_id);
    free(e);
}

void efs_envelope_batch_begin(efs_envelope *e)
{
    kmsc_defer_begin(e->kms);
}

int efs_envelope_batch_end(efs_envelope *e)
{
    kms_err code = kmsc_defer_end(e->kms);
    if (code)
        EFS_ERROR("key service: a batch of data keys could not be audited (%s): discarded", kms_err_name(code));
    return code ? efs_envelope_errno(code) : 0;
}

int efs_envelope_errno(kms_err code)
{
    switch (code) {
    case KMS_ERR_DISABLED:
    case KMS_ERR_INVALID_STATE:
    case KMS_ERR_ACCESS_DENIED:
    case KMS_ERR_NOT_FOUND:
        return -EACCES; /* the key is disabled, scheduled for deletion, deleted or not ours to use */
    case KMS_ERR_INCORRECT_KEY:
    case KMS_ERR_INVALID_CIPHERTEXT:
        return -EIO;    /* the wrapped key was modified or belongs elsewhere */
    default:
        return -EIO;
    }
}

static int generate(efs_envelope *e, const kms_ectx *ctx, size_t n, bool plaintext, kmsc_data_key **out,
                    const char *what)
{
    kmsc_error err;
    kms_err rc = plaintext ? kmsc_generate_data_key(e->kms, e->key_id, ctx, n, out, &err)
                           : kmsc_generate_data_key_without_plaintext(e->kms, e->key_id, ctx, n, out, &err);
    if (rc) {
        EFS_ERROR("%s: key service refused the data key: %s: %s", what, err.name, err.message);
        return efs_envelope_errno(err.code);
    }
    return 0;
}

int efs_envelope_generate(efs_envelope *e, const kms_ectx *ctx, size_t n, kmsc_data_key **out, const char *what)
{
    return generate(e, ctx, n, true, out, what);
}

int efs_envelope_generate_wrapped(efs_envelope *e, const kms_ectx *ctx, size_t n, kmsc_data_key **out,
                                  const char *what)
{
    return generate(e, ctx, n, false, out, what);
}

int efs_envelope_unwrap(efs_envelope *e, const kms_ectx *ctx, const uint8_t *wrapped, size_t wrapped_len, size_t n,
                        const uint8_t *id, size_t id_len, kmsc_secret **out, const char *what)
{
    kmsc_error err;
    *out = NULL;
    if (id_len && kmsc_cache_get(e->cache, id, id_len, 0, out)) {
        atomic_fetch_add(&e->cache_hits, 1);
        return 0;
    }
    if (kmsc_decrypt(e->kms, e->key_id, wrapped, wrapped_len, ctx, out, &err)) {
        EFS_ERROR("%s: cannot unwrap its data key: %s: %s", what, err.name, err.message);
        *out = NULL;
        return efs_envelope_errno(err.code);
    }
    if ((*out)->len != n) {
        kmsc_secret_free(*out);
        *out = NULL;
        return -EIO;
    }
    if (id_len)
        (void)kmsc_cache_put(e->cache, id, id_len, *out);
    return 0;
}

void efs_envelope_remember(efs_envelope *e, const uint8_t *id, size_t id_len, const kmsc_secret *key)
{
    (void)kmsc_cache_put(e->cache, id, id_len, key);
}

size_t efs_envelope_cache_id(const uint8_t *binder, size_t binder_len, const uint8_t *wrapped, size_t wrapped_len,
                             uint8_t *id, size_t cap)
{
    if (binder_len + wrapped_len > cap || binder_len + wrapped_len == 0)
        return 0;
    if (binder_len)
        memcpy(id, binder, binder_len);
    memcpy(id + binder_len, wrapped, wrapped_len);
    return binder_len + wrapped_len;
}

const char *efs_envelope_key_id(const efs_envelope *e) { return e->key_id; }
uint64_t efs_envelope_cache_hits(const efs_envelope *e) { return atomic_load(&e->cache_hits); }
void efs_envelope_clear_cache(efs_envelope *e) { kmsc_cache_clear(e->cache); }
