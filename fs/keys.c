/*
 * keys.c — filesystem key management (see keys.h). The key-service calls for data keys, their cache and
 * the mapping of its errors are envelope.c's; this file chooses the encryption contexts.
 *
 * Encryption contexts bind every wrapped key to this filesystem:
 *   filesystem key  {"envelopefs:fs-id": FSID, "envelopefs:purpose": "fs-key"}
 *   per-file DEK    {"envelopefs:fs-id": FSID, "envelopefs:file-id": FILEID}
 *   bucket key      {"envelopefs:fs-id": FSID, "envelopefs:purpose": "bucket-key", "envelopefs:bucket-key-id": ID}
 * Bucket keys (S3 Bucket Key style): one per mount, stored wrapped by the KMS in
 * CIPHERDIR/envelopefs.bk.<ID>; per-file DEKs are sealed locally with XChaCha20-Poly1305 under it
 * (AAD = fs id ‖ file id), so creating files makes no key-service call.
 */
#include "keys.h"
#include "common/secpool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "common/evp.h"
#include "envelope.h"
#include "common/log.h"
#include "names.h"

#define BK_WRAPPED_LEN (16 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + EFS_DEK_LEN + crypto_aead_xchacha20poly1305_ietf_ABYTES)

struct bucket_key {
    uint8_t id[16];
    uint8_t *key; /* locked */
};

struct efs_keys {
    kmsc *kms;
    efs_envelope *env;   /* data keys under the filesystem's CMK, and their cache */
    const efs_config *cfg;
    char *cipherdir;
    uint8_t *small_keys; /* 2 × 32 bytes, locked: symlink, xattr */
    efs_names *names;    /* NULL with plaintext names */
    pthread_mutex_t lock;
    struct bucket_key current;    /* bucket-key mode: this mount's key for new files */
    struct bucket_key *known;     /* unwrapped bucket keys of earlier mounts */
    size_t n_known;
};

static int hkdf32(const uint8_t *ikm, const char *info, uint8_t *out)
{
    return efs_hkdf32(ikm, 32, info, out);
}

static int config_mac(const efs_config *cfg, const uint8_t *fs_key, uint8_t out[32])
{
    uint8_t mk[32];
    char *canon = efs_config_canonical(cfg);
    int rc = -EIO;
    if (!canon)
        return -ENOMEM;
    if (!hkdf32(fs_key, "envelopefs v1 config-mac", mk) &&
        !efs_hmac_sha256(mk, (const uint8_t *)canon, strlen(canon), out))
        rc = 0;
    sodium_memzero(mk, sizeof mk);
    free(canon);
    return rc;
}

static void fs_ctx(const efs_config *cfg, kms_ectx_pair pairs[2], kms_ectx *ctx)
{
    pairs[0] = (kms_ectx_pair){"envelopefs:fs-id", cfg->fs_id_hex};
    pairs[1] = (kms_ectx_pair){"envelopefs:purpose", "fs-key"};
    *ctx = (kms_ectx){pairs, 2};
}

int efs_keys_init_config(efs_config *cfg, kmsc *kms, char *why, size_t why_cap)
{
    kms_ectx_pair pairs[2];
    kms_ectx ctx;
    kmsc_data_key *dk = NULL;
    kmsc_error err;
    int rc;
    fs_ctx(cfg, pairs, &ctx);
    if (kmsc_generate_data_key(kms, cfg->key_id, &ctx, 32, &dk, &err)) {
        snprintf(why, why_cap, "GenerateDataKey for the filesystem key failed: %s: %s", err.name, err.message);
        return err.code == KMS_ERR_NOT_FOUND || err.code == KMS_ERR_DISABLED ? -EACCES : -EIO;
    }
    free(cfg->key_id);
    cfg->key_id = strdup(dk->key_arn); /* record the ARN, not an alias that may move */
    cfg->fs_key_blob = malloc(dk->ciphertext_len);
    if (!cfg->key_id || !cfg->fs_key_blob) {
        kmsc_data_key_free(dk);
        return -ENOMEM;
    }
    memcpy(cfg->fs_key_blob, dk->ciphertext, dk->ciphertext_len);
    cfg->fs_key_blob_len = dk->ciphertext_len;
    if (cfg->format >= 3 && !cfg->dek_in_xattr) {
        /* Every file header gets one length: a file's DEK is wrapped like this key (the same CMK, 32
         * bytes) or locally (BK_WRAPPED_LEN). 64 bytes spare, rounded up to 64, for a key service whose
         * ciphertexts vary a little; a DEK that still does not fit makes that create fail clearly. */
        size_t w = cfg->bucket_key ? BK_WRAPPED_LEN : dk->ciphertext_len;
        size_t hs = (EFS_HDR_FIXED + w + EFS_HDR_TAG + 64 + 63) / 64 * 64;
        if (w > EFS_WRAPPED_MAX || hs > EFS_HDR_MAX) {
            snprintf(why, why_cap, "the key service's ciphertexts (%zu bytes) are too large for a file header", w);
            kmsc_data_key_free(dk);
            return -EINVAL;
        }
        cfg->header_size = (uint32_t)hs;
    }
    rc = config_mac(cfg, dk->plaintext->data, cfg->mac);
    kmsc_data_key_free(dk);
    return rc;
}

int efs_keys_open(const efs_config *cfg, kmsc *kms, efs_keys **out, char *why, size_t why_cap)
{
    kms_ectx_pair pairs[2];
    kms_ectx ctx;
    kmsc_secret *fk = NULL;
    kmsc_error err;
    uint8_t mac[32];
    efs_keys *k;

    *out = NULL;
    fs_ctx(cfg, pairs, &ctx);
    if (kmsc_decrypt(kms, cfg->key_id, cfg->fs_key_blob, cfg->fs_key_blob_len, &ctx, &fk, &err)) {
        snprintf(why, why_cap, "cannot unwrap the filesystem key with %s: %s: %s", cfg->key_id, err.name,
                 err.message);
        return -EACCES;
    }
    if (fk->len != 32 || config_mac(cfg, fk->data, mac) || CRYPTO_memcmp(mac, cfg->mac, 32)) {
        snprintf(why, why_cap, "envelopefs.conf fails authentication: it was modified");
        kmsc_secret_free(fk);
        return -EBADMSG;
    }
    k = calloc(1, sizeof *k);
    if (!k) {
        kmsc_secret_free(fk);
        return -ENOMEM;
    }
    k->kms = kms;
    k->cfg = cfg;
    k->small_keys = sodium_malloc(64);
    pthread_mutex_init(&k->lock, NULL);
    if (efs_envelope_new(kms, cfg->key_id, NULL, &k->env) || !k->small_keys || hkdf32(fk->data, "envelopefs v1 symlink", k->small_keys) ||
        hkdf32(fk->data, "envelopefs v1 xattr", k->small_keys + 32)) {
        kmsc_secret_free(fk);
        k->kms = NULL;
        efs_keys_free(k);
        return -ENOMEM;
    }
    if (!cfg->plaintext_names) {
        uint8_t *nk = sodium_malloc(64);
        int nrc = nk && !hkdf32(fk->data, "envelopefs v1 names 1", nk) && !hkdf32(fk->data, "envelopefs v1 names 2", nk + 32)
                      ? efs_names_new(nk, &k->names) : -ENOMEM;
        if (nk)
            sodium_free(nk);
        if (nrc) {
            snprintf(why, why_cap, "cannot set up name encryption (AES-256-SIV): %s", strerror(-nrc));
            kmsc_secret_free(fk);
            k->kms = NULL;
            efs_keys_free(k);
            return nrc;
        }
    }
    kmsc_secret_free(fk);
    *out = k;
    return 0;
}

struct efs_names *efs_keys_names(efs_keys *k) { return k->names; }

void efs_keys_free(efs_keys *k)
{
    if (!k)
        return;
    efs_envelope_free(k->env);
    efs_names_free(k->names);
    if (k->small_keys)
        sodium_free(k->small_keys);
    if (k->current.key)
        sodium_free(k->current.key);
    for (size_t i = 0; i < k->n_known; i++)
        sodium_free(k->known[i].key);
    free(k->known);
    free(k->cipherdir);
    pthread_mutex_destroy(&k->lock);
    kmsc_free(k->kms);
    free(k);
}

void efs_keys_clear_cache(efs_keys *k) { efs_envelope_clear_cache(k->env); }
uint64_t efs_keys_kms_calls(efs_keys *k) { return kmsc_call_count(k->kms); }
uint64_t efs_keys_cache_hits(efs_keys *k) { return efs_envelope_cache_hits(k->env); }
const efs_config *efs_keys_config(efs_keys *k) { return k->cfg; }

int efs_keys_set_cipherdir(efs_keys *k, const char *dir);
int efs_keys_set_cipherdir(efs_keys *k, const char *dir)
{
    k->cipherdir = strdup(dir);
    return k->cipherdir ? 0 : -ENOMEM;
}

static void hex16(const uint8_t *b, char out[33]) { sodium_bin2hex(out, 33, b, 16); }

/* ---- bucket keys ---------------------------------------------------------------------------- */

static void bk_ctx(const efs_config *cfg, const char *idhex, kms_ectx_pair pairs[3], kms_ectx *ctx)
{
    pairs[0] = (kms_ectx_pair){"envelopefs:fs-id", cfg->fs_id_hex};
    pairs[1] = (kms_ectx_pair){"envelopefs:purpose", "bucket-key"};
    pairs[2] = (kms_ectx_pair){"envelopefs:bucket-key-id", idhex};
    *ctx = (kms_ectx){pairs, 3};
}

/* Create this mount's bucket key (lock held). */
static int bucket_key_create(efs_keys *k)
{
    char idhex[33], path[4200], tmp[4300];
    kms_ectx_pair pairs[3];
    kms_ectx ctx;
    kmsc_data_key *dk;
    int fd, rc;

    randombytes_buf(k->current.id, 16);
    hex16(k->current.id, idhex);
    bk_ctx(k->cfg, idhex, pairs, &ctx);
    rc = efs_envelope_generate(k->env, &ctx, 32, &dk, "bucket key");
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s/envelopefs.bk.%s", k->cipherdir, idhex);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
    if (fd < 0 || write(fd, dk->ciphertext, dk->ciphertext_len) != (ssize_t)dk->ciphertext_len || fsync(fd) ||
        rename(tmp, path)) {
        int e = errno ? -errno : -EIO;
        if (fd >= 0)
            close(fd);
        unlink(tmp);
        kmsc_data_key_free(dk);
        return e;
    }
    close(fd);
    fd = open(k->cipherdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    k->current.key = sodium_malloc(32);
    if (!k->current.key) {
        kmsc_data_key_free(dk);
        return -ENOMEM;
    }
    memcpy(k->current.key, dk->plaintext->data, 32);
    kmsc_data_key_free(dk);
    EFS_INFO("bucket key %s created", idhex);
    return 0;
}

/* Find (or load and unwrap) bucket key id (lock held). Returns borrowed key or NULL + *rc. */
static const uint8_t *bucket_key_get(efs_keys *k, const uint8_t id[16], int *rc)
{
    char idhex[33], path[4200];
    uint8_t blob[8192];
    kms_ectx_pair pairs[3];
    kms_ectx ctx;
    kmsc_secret *s;
    ssize_t n;
    int fd;
    struct bucket_key *nk;

    if (k->current.key && !memcmp(k->current.id, id, 16))
        return k->current.key;
    for (size_t i = 0; i < k->n_known; i++)
        if (!memcmp(k->known[i].id, id, 16))
            return k->known[i].key;
    hex16(id, idhex);
    snprintf(path, sizeof path, "%s/envelopefs.bk.%s", k->cipherdir, idhex);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        EFS_ERROR("bucket key %s: %s missing", idhex, path);
        *rc = -EIO;
        return NULL;
    }
    n = read(fd, blob, sizeof blob);
    close(fd);
    bk_ctx(k->cfg, idhex, pairs, &ctx);
    if (n <= 0) {
        *rc = -EIO;
        return NULL;
    }
    *rc = efs_envelope_unwrap(k->env, &ctx, blob, (size_t)n, 32, NULL, 0, &s, "bucket key");
    if (*rc)
        return NULL;
    nk = realloc(k->known, (k->n_known + 1) * sizeof *nk);
    if (!nk) {
        kmsc_secret_free(s);
        *rc = -ENOMEM;
        return NULL;
    }
    k->known = nk;
    memcpy(nk[k->n_known].id, id, 16);
    nk[k->n_known].key = sodium_malloc(32);
    if (!nk[k->n_known].key) {
        kmsc_secret_free(s);
        *rc = -ENOMEM;
        return NULL;
    }
    memcpy(nk[k->n_known].key, s->data, 32);
    kmsc_secret_free(s);
    return nk[k->n_known++].key;
}

static void bk_aad(const efs_config *cfg, const uint8_t file_id[16], uint8_t aad[32])
{
    memcpy(aad, cfg->fs_id, 16);
    memcpy(aad + 16, file_id, 16);
}

/* ---- files ---------------------------------------------------------------------------------- */

static void file_ctx(const efs_config *cfg, const char *fidhex, kms_ectx_pair pairs[2], kms_ectx *ctx)
{
    pairs[0] = (kms_ectx_pair){"envelopefs:fs-id", cfg->fs_id_hex};
    pairs[1] = (kms_ectx_pair){"envelopefs:file-id", fidhex};
    *ctx = (kms_ectx){pairs, 2};
}

void efs_keys_batch_begin(efs_keys *k)
{
    efs_envelope_batch_begin(k->env);
}

int efs_keys_batch_end(efs_keys *k)
{
    return efs_envelope_batch_end(k->env);
}

int efs_keys_new_file(efs_keys *k, efs_header *h, efs_file_keys *keys_out)
{
    uint8_t *dek = efs_secpool_alloc(EFS_DEK_LEN);
    int rc = 0;
    if (!dek)
        return -ENOMEM;
    memset(h, 0, sizeof *h);
    h->version = k->cfg->header_size ? EFS_HDR_VERSION_PADDED : EFS_HDR_VERSION;
    h->total_len = (uint16_t)k->cfg->header_size;
    h->block_size = k->cfg->block_size;
    randombytes_buf(h->file_id, sizeof h->file_id);
    if (k->cfg->bucket_key) {
        uint8_t aad[32];
        h->key_mode = EFS_KEYMODE_BUCKET;
        pthread_mutex_lock(&k->lock);
        if (!k->current.key)
            rc = bucket_key_create(k);
        if (!rc) {
            randombytes_buf(dek, EFS_DEK_LEN);
            memcpy(h->wrapped, k->current.id, 16);
            randombytes_buf(h->wrapped + 16, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
            bk_aad(k->cfg, h->file_id, aad);
            crypto_aead_xchacha20poly1305_ietf_encrypt(h->wrapped + 16 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                                       NULL, dek, EFS_DEK_LEN, aad, sizeof aad, NULL,
                                                       h->wrapped + 16, k->current.key);
            h->wrapped_len = BK_WRAPPED_LEN;
        }
        pthread_mutex_unlock(&k->lock);
    } else {
        char fid[33];
        kms_ectx_pair pairs[2];
        kms_ectx ctx;
        kmsc_data_key *dk;
        h->key_mode = EFS_KEYMODE_KMS;
        hex16(h->file_id, fid);
        file_ctx(k->cfg, fid, pairs, &ctx);
        if ((rc = efs_envelope_generate(k->env, &ctx, EFS_DEK_LEN, &dk, "new file"))) {
            /* logged */
        } else if (dk->ciphertext_len > EFS_WRAPPED_MAX ||
                   (k->cfg->header_size &&
                    EFS_HDR_FIXED + dk->ciphertext_len + EFS_HDR_TAG > k->cfg->header_size)) {
            EFS_ERROR("new file: the key service returned a %zu-byte wrapped data key, too large for this "
                      "filesystem's %u-byte file headers (was the key service changed since init?)",
                      dk->ciphertext_len, (unsigned)k->cfg->header_size);
            rc = -EIO;
            kmsc_data_key_free(dk);
        } else {
            memcpy(dek, dk->plaintext->data, EFS_DEK_LEN);
            memcpy(h->wrapped, dk->ciphertext, dk->ciphertext_len);
            h->wrapped_len = (uint16_t)dk->ciphertext_len;
            /* remember it: the creator opens the file right away */
            {
                uint8_t id[EFS_ENVELOPE_ID_MAX];
                size_t il = efs_envelope_cache_id(h->file_id, EFS_FILE_ID_LEN, h->wrapped, h->wrapped_len, id, sizeof id);
                if (il)
                    efs_envelope_remember(k->env, id, il, dk->plaintext);
            }
            kmsc_data_key_free(dk);
        }
    }
    if (!rc)
        rc = efs_file_keys_derive(dek, keys_out);
    if (!rc)
        rc = efs_header_seal(h, keys_out);
    efs_secpool_free(dek, EFS_DEK_LEN);
    return rc;
}

int efs_keys_open_file(efs_keys *k, const efs_header *h, efs_file_keys *keys_out, const char *what)
{
    kmsc_secret *dek = NULL;
    int rc = 0;
    if (h->key_mode == EFS_KEYMODE_BUCKET) {
        const uint8_t *bk;
        uint8_t aad[32];
        if (h->wrapped_len != BK_WRAPPED_LEN)
            return -EIO;
        dek = kmsc_secret_new(EFS_DEK_LEN);
        if (!dek)
            return -ENOMEM;
        pthread_mutex_lock(&k->lock);
        bk = bucket_key_get(k, h->wrapped, &rc);
        bk_aad(k->cfg, h->file_id, aad);
        if (bk && crypto_aead_xchacha20poly1305_ietf_decrypt(
                      dek->data, NULL, NULL, h->wrapped + 16 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                      EFS_DEK_LEN + crypto_aead_xchacha20poly1305_ietf_ABYTES, aad, sizeof aad, h->wrapped + 16, bk)) {
            EFS_ERROR("%s: wrapped data key fails authentication", what);
            rc = -EIO;
        }
        pthread_mutex_unlock(&k->lock);
    } else {
        uint8_t id[EFS_ENVELOPE_ID_MAX];
        size_t il = efs_envelope_cache_id(h->file_id, EFS_FILE_ID_LEN, h->wrapped, h->wrapped_len, id, sizeof id);
        char fid[33];
        kms_ectx_pair pairs[2];
        kms_ectx ctx;
        hex16(h->file_id, fid);
        file_ctx(k->cfg, fid, pairs, &ctx);
        rc = efs_envelope_unwrap(k->env, &ctx, h->wrapped, h->wrapped_len, EFS_DEK_LEN, id, il, &dek, what);
        if (rc)
            return rc;
    }
    if (!rc)
        rc = efs_file_keys_derive(dek->data, keys_out);
    if (!rc && efs_header_verify(h, keys_out)) {
        EFS_ERROR("%s: header fails authentication (modified)", what);
        rc = -EIO;
    }
    kmsc_secret_free(dek);
    if (rc)
        sodium_memzero(keys_out, sizeof *keys_out);
    return rc;
}

/* ---- small values --------------------------------------------------------------------------- */

int efs_seal_small(efs_keys *k, int purpose, const char *aad, const uint8_t *pt, size_t n, uint8_t *out,
                   size_t *out_len)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, ok;
    if (!c)
        return -ENOMEM;
    randombytes_buf(out, EFS_NONCE);
    ok = EVP_EncryptInit_ex(c, efs_evp_aes_256_gcm(), NULL, k->small_keys + 32 * purpose, out) == 1 &&
         EVP_EncryptUpdate(c, NULL, &len, (const uint8_t *)aad, (int)strlen(aad)) == 1 &&
         (n == 0 || EVP_EncryptUpdate(c, out + EFS_NONCE, &len, pt, (int)n) == 1) &&
         EVP_EncryptFinal_ex(c, out + EFS_NONCE + n, &len) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, EFS_TAG, out + EFS_NONCE + n) == 1;
    EVP_CIPHER_CTX_free(c);
    *out_len = n + EFS_BLOCK_OVERHEAD;
    return ok ? 0 : -EIO;
}

int efs_open_small(efs_keys *k, int purpose, const char *aad, const uint8_t *in, size_t n, uint8_t *out,
                   size_t *out_len)
{
    EVP_CIPHER_CTX *c;
    int len = 0, ok;
    if (n < EFS_BLOCK_OVERHEAD)
        return -EBADMSG;
    c = EVP_CIPHER_CTX_new();
    if (!c)
        return -ENOMEM;
    ok = EVP_DecryptInit_ex(c, efs_evp_aes_256_gcm(), NULL, k->small_keys + 32 * purpose, in) == 1 &&
         EVP_DecryptUpdate(c, NULL, &len, (const uint8_t *)aad, (int)strlen(aad)) == 1 &&
         (n == EFS_BLOCK_OVERHEAD || EVP_DecryptUpdate(c, out, &len, in + EFS_NONCE, (int)(n - EFS_BLOCK_OVERHEAD)) == 1) &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, EFS_TAG, (void *)(in + n - EFS_TAG)) == 1 &&
         EVP_DecryptFinal_ex(c, out + (n - EFS_BLOCK_OVERHEAD), &len) == 1;
    EVP_CIPHER_CTX_free(c);
    *out_len = n - EFS_BLOCK_OVERHEAD;
    return ok ? 0 : -EBADMSG;
}
