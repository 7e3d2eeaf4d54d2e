/*
 * import.c — imported key material (Origin EXTERNAL; AWS KMS's semantics): GetParametersForImport gives an
 * RSA wrapping public key (RSA_2048/3072/4096, made per call with the core lock released) and an import
 * token valid 24 hours that carries the wrapping private key sealed under the root key (importtoken.h: the
 * service keeps nothing between the calls); ImportKeyMaterial unwraps 32 bytes of material (RSAES-OAEP
 * SHA-1/SHA-256, or RSA_AES_KEY_WRAP_SHA_1/SHA_256: an OAEP-wrapped AES-256 key, then AES key wrap with
 * padding, RFC 5649), with ExpirationModel / ValidTo (at most 365 days; past it the material is deleted and
 * the key is PendingImport again, kms_sweep_deletions); DeleteImportedKeyMaterial deletes it at once. A key
 * takes only the material it was first given (a keyed hash of it is kept): anything else is
 * IncorrectKeyMaterialException. Imported keys are symmetric (SYMMETRIC_DEFAULT) and never rotated.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/rsa.h>
#include <sodium.h>

#include "common/jsonb64.h"
#include "importtoken.h"
#include "keymat.h"
#include "oputil.h"

#define DAY 86400
#define TOKEN_AAD "envelopefs-import-token-v1"

/* The key of the request: Origin EXTERNAL, not pending deletion. */
static kms_err external_key(struct op_ctx *x, json_t *in, kms_key **k)
{
    char arn[160];
    kms_err e = kms_op_resolve_any(x, in, k);
    if (e)
        return e;
    kms_op_key_arn(x->core, *k, arn, sizeof arn);
    if (!(*k)->external)
        return kms_op_fail(x, KMS_ERR_UNSUPPORTED_OPERATION,
                           "%s has Origin AWS_KMS: only keys created with Origin EXTERNAL take imported key material.", arn);
    if ((*k)->state == KS_PENDING_DELETION)
        return kms_op_fail(x, KMS_ERR_INVALID_STATE, "%s is pending deletion.", arn);
    return KMS_OK;
}

static size_t token_aad(uint8_t *aad, const uint8_t *header)
{
    memcpy(aad, TOKEN_AAD, sizeof TOKEN_AAD - 1);
    memcpy(aad + sizeof TOKEN_AAD - 1, header, KMS_IMPORT_TOKEN_HEADER);
    return sizeof TOKEN_AAD - 1 + KMS_IMPORT_TOKEN_HEADER;
}

kms_err kms_op_get_parameters_for_import(struct op_ctx *x, json_t *in, json_t **out)
{
    const char *alg_name, *spec_name;
    int alg, spec;
    kms_key *k;
    EVP_PKEY *pk = NULL;
    uint8_t *priv = NULL, *pub = NULL, *token = NULL, aad[64];
    size_t priv_len = 0, pub_len = 0, token_len;
    int64_t valid_to;
    char arn[160];
    kms_err e;

    if ((e = kms_op_get_str(x, in, "WrappingAlgorithm", true, &alg_name)) ||
        (e = kms_op_get_str(x, in, "WrappingKeySpec", true, &spec_name)))
        return e;
    if ((alg = kms_wrap_alg_parse(alg_name)) < 0)
        return kms_op_fail(x, !strcmp(alg_name, "RSAES_PKCS1_V1_5") || !strcmp(alg_name, "SM2PKE")
                                  ? KMS_ERR_UNSUPPORTED_OPERATION : KMS_ERR_VALIDATION,
                           "WrappingAlgorithm %s is not supported: use RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, "
                           "RSA_AES_KEY_WRAP_SHA_1 or RSA_AES_KEY_WRAP_SHA_256", alg_name);
    spec = kms_spec_parse(spec_name);
    if (spec < 0 || !kms_spec_is_rsa((enum kms_key_spec)spec))
        return kms_op_fail(x, !strcmp(spec_name, "SM2") ? KMS_ERR_UNSUPPORTED_OPERATION : KMS_ERR_VALIDATION,
                           "1 validation error detected: Value '%s' at 'wrappingKeySpec' failed to satisfy constraint: "
                           "Member must satisfy enum value set: [RSA_2048, RSA_3072, RSA_4096]", spec_name);
    if ((e = external_key(x, in, &k)))
        return e;
    if (!(pk = kms_op_keygen(x, (enum kms_key_spec)spec))) /* seconds for RSA_4096: without the lock */
        return kms_op_fail(x, KMS_ERR_INTERNAL, "could not generate a wrapping key");
    if ((e = external_key(x, in, &k)))
        goto out;
    if (kms_keymat_from_pkey(pk, &priv, &priv_len) || !(pub = kms_keymat_public_der(pk, &pub_len))) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    valid_to = kms_now(x->core) + KMS_IMPORT_TOKEN_VALIDITY;
    token_len = KMS_IMPORT_TOKEN_HEADER + priv_len + KMS_SEAL_OVERHEAD;
    if (!(token = malloc(token_len))) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    kms_import_token_header(token, alg, spec, k->raw_id, valid_to);
    kms_store_seal(x->core, aad, token_aad(aad, token), priv, priv_len, token + KMS_IMPORT_TOKEN_HEADER);
    kms_op_key_arn(x->core, k, arn, sizeof arn);
    *out = json_pack("{s:s, s:o, s:o, s:I}", "KeyId", arn, "ImportToken", efs_json_base64(token, token_len), "PublicKey",
                     efs_json_base64(pub, pub_len), "ParametersValidTo", (json_int_t)valid_to);
    if (!*out)
        e = KMS_ERR_NOMEM;
out:
    EVP_PKEY_free(pk);
    sodium_free(priv);
    free(pub);
    free(token);
    return e;
}

int kms_wrap_oaep_open(EVP_PKEY *pk, const EVP_MD *md, const uint8_t *ct, size_t ct_len, uint8_t *pt, size_t *n)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    int ok = pc && EVP_PKEY_decrypt_init(pc) == 1 && EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_oaep_md(pc, md) == 1 && EVP_PKEY_CTX_set_rsa_mgf1_md(pc, md) == 1 &&
             EVP_PKEY_decrypt(pc, pt, n, ct, ct_len) == 1;
    EVP_PKEY_CTX_free(pc);
    return ok ? 0 : -1;
}

int kms_wrap_kwp_open(const uint8_t kek[32], const uint8_t *ct, size_t ct_len, uint8_t *pt, size_t *n)
{
    EVP_CIPHER *ciph = EVP_CIPHER_fetch(NULL, "AES-256-WRAP-PAD", NULL);
    EVP_CIPHER_CTX *cc = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0, ok;
    if (cc)
        EVP_CIPHER_CTX_set_flags(cc, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    ok = ciph && cc && ct_len <= 4096 && EVP_DecryptInit_ex(cc, ciph, NULL, kek, NULL) == 1 &&
         EVP_DecryptUpdate(cc, pt, &l1, ct, (int)ct_len) == 1 && EVP_DecryptFinal_ex(cc, pt + l1, &l2) == 1;
    EVP_CIPHER_CTX_free(cc);
    EVP_CIPHER_free(ciph);
    if (!ok)
        return -1;
    *n = (size_t)(l1 + l2);
    return 0;
}

/* The 32-byte material out of EncryptedKeyMaterial, by the token's algorithm; into mat (locked). */
static kms_err unwrap(struct op_ctx *x, const kms_import_token *t, EVP_PKEY *pk, const uint8_t *ct, size_t n,
                      uint8_t *mat /* KMS_SCRATCH_MAX */, size_t *mat_len)
{
    bool sha1 = t->wrap_alg == KMS_WRAP_RSAES_OAEP_SHA_1 || t->wrap_alg == KMS_WRAP_RSA_AES_KEY_WRAP_SHA_1;
    const EVP_MD *md = sha1 ? EVP_sha1() : EVP_sha256();
    size_t k = (size_t)EVP_PKEY_get_size(pk), l = 4096;
    *mat_len = 0;
    if (t->wrap_alg == KMS_WRAP_RSAES_OAEP_SHA_1 || t->wrap_alg == KMS_WRAP_RSAES_OAEP_SHA_256) {
        if (n != k || kms_wrap_oaep_open(pk, md, ct, n, mat, &l))
            return kms_op_fail(x, KMS_ERR_INVALID_CIPHERTEXT, NULL);
    } else {
        uint8_t kek[512]; /* OpenSSL wants room for a whole RSA block */
        size_t kl = sizeof kek;
        int rc;
        if (n <= k || kms_wrap_oaep_open(pk, md, ct, k, kek, &kl) || kl != 32) {
            sodium_memzero(kek, sizeof kek);
            return kms_op_fail(x, KMS_ERR_INVALID_CIPHERTEXT, NULL);
        }
        rc = kms_wrap_kwp_open(kek, ct + k, n - k, mat, &l);
        sodium_memzero(kek, sizeof kek);
        if (rc)
            return kms_op_fail(x, KMS_ERR_INVALID_CIPHERTEXT, NULL);
    }
    *mat_len = l;
    if (l != 32)
        return kms_op_fail(x, KMS_ERR_VALIDATION,
                           "The key material of a SYMMETRIC_DEFAULT key is 32 bytes (256 bits), not %zu.", l);
    return KMS_OK;
}

/* ExpirationModel and ValidTo of the request. */
static kms_err expiration(struct op_ctx *x, json_t *in, bool *expires, int64_t *valid_to)
{
    const char *model;
    json_t *vt = json_object_get(in, "ValidTo");
    int64_t now = kms_now(x->core);
    kms_err e = kms_op_get_str(x, in, "ExpirationModel", false, &model);
    if (e)
        return e;
    if (model && strcmp(model, "KEY_MATERIAL_EXPIRES") && strcmp(model, "KEY_MATERIAL_DOES_NOT_EXPIRE"))
        return kms_op_fail(x, KMS_ERR_VALIDATION,
                           "1 validation error detected: Value '%s' at 'expirationModel' failed to satisfy constraint: "
                           "Member must satisfy enum value set: [KEY_MATERIAL_DOES_NOT_EXPIRE, KEY_MATERIAL_EXPIRES]", model);
    *expires = !model || !strcmp(model, "KEY_MATERIAL_EXPIRES"); /* AWS's default */
    if (vt && json_is_null(vt))
        vt = NULL;
    if (vt && !json_is_number(vt))
        return kms_op_fail(x, KMS_ERR_SERIALIZATION, "ValidTo must be a timestamp (seconds since the epoch)");
    if (!*expires) {
        if (vt)
            return kms_op_fail(x, KMS_ERR_VALIDATION,
                               "ValidTo is not valid with ExpirationModel KEY_MATERIAL_DOES_NOT_EXPIRE.");
        *valid_to = 0;
        return KMS_OK;
    }
    if (!vt)
        return kms_op_fail(x, KMS_ERR_VALIDATION, "ValidTo is required when ExpirationModel is KEY_MATERIAL_EXPIRES.");
    *valid_to = (int64_t)json_number_value(vt);
    if (*valid_to <= now || *valid_to > now + 365 * DAY)
        return kms_op_fail(x, KMS_ERR_VALIDATION, "ValidTo must be in the future and at most 365 days from now.");
    return KMS_OK;
}

kms_err kms_op_import_key_material(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k, saved;
    uint8_t *tok = NULL, *ekm = NULL, *priv = NULL, *mat, aad[64], digest[32];
    size_t tok_len = 0, ekm_len = 0, mat_len = 0;
    kms_import_token t;
    EVP_PKEY *pk = NULL;
    bool expires = true;
    int64_t valid_to = 0;
    char arn[160];
    kms_err e;

    if ((e = kms_op_get_b64(x, in, "ImportToken", true, KMS_IMPORT_TOKEN_MAX, &tok, &tok_len)) ||
        (e = kms_op_get_b64(x, in, "EncryptedKeyMaterial", true, 6144, &ekm, &ekm_len)) ||
        (e = expiration(x, in, &expires, &valid_to)) || (e = external_key(x, in, &k)))
        goto out;
    if (kms_import_token_parse(tok, tok_len, &t) || memcmp(t.key_id, k->raw_id, 16) ||
        !(priv = sodium_malloc(t.sealed_len)) ||
        kms_store_unseal(x->core, aad, token_aad(aad, t.header), t.sealed, t.sealed_len, priv) ||
        kms_keymat_decode((enum kms_key_spec)t.wrap_spec, priv, t.sealed_len - KMS_SEAL_OVERHEAD, &pk)) {
        e = kms_op_fail(x, KMS_ERR_INVALID_IMPORT_TOKEN, "The import token is not valid for this key.");
        goto out;
    }
    if (kms_now(x->core) >= t.valid_to) {
        e = kms_op_fail(x, KMS_ERR_EXPIRED_IMPORT_TOKEN, "The import token expired; call GetParametersForImport again.");
        goto out;
    }
    if (!(mat = kms_scratch(KMS_SCRATCH_MAX))) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    e = unwrap(x, &t, pk, ekm, ekm_len, mat, &mat_len);
    if (!e) {
        kms_store_material_digest(x->core, mat, 32, digest);
        if (k->has_digest && sodium_memcmp(digest, k->material_digest, 32)) {
            kms_op_key_arn(x->core, k, arn, sizeof arn);
            e = kms_op_fail(x, KMS_ERR_INCORRECT_KEY_MATERIAL,
                            "The key material is not the material previously imported into %s.", arn);
        }
    }
    if (!e) {
        saved = *k;
        k->expires = expires;
        k->valid_to = valid_to;
        memcpy(k->material_digest, digest, 32);
        k->has_digest = true;
        if (k->state == KS_PENDING_IMPORT)
            k->state = KS_ENABLED;
        e = kms_store_import_material(x->core, k, mat, x->msg);
        if (e) {
            k->expires = saved.expires;
            k->valid_to = saved.valid_to;
            k->has_digest = saved.has_digest;
            memcpy(k->material_digest, saved.material_digest, 32);
            k->state = saved.state;
        }
    }
    sodium_memzero(mat, mat_len > 64 ? mat_len : 64);
    if (e)
        goto out;
    kms_op_key_arn(x->core, k, arn, sizeof arn);
    *out = json_pack("{s:s}", "KeyId", arn);
    if (!*out)
        e = KMS_ERR_NOMEM;
out:
    EVP_PKEY_free(pk);
    sodium_free(priv);
    free(tok);
    if (ekm) {
        sodium_memzero(ekm, ekm_len);
        free(ekm);
    }
    return e;
}

kms_err kms_op_delete_imported_key_material(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    enum kms_key_state old;
    char arn[160];
    kms_err e = external_key(x, in, &k);
    if (e)
        return e;
    old = k->state;
    k->state = KS_PENDING_IMPORT;
    if ((e = kms_store_delete_material(x->core, k, x->msg))) {
        k->state = old;
        return e;
    }
    kms_op_key_arn(x->core, k, arn, sizeof arn);
    *out = json_pack("{s:s}", "KeyId", arn);
    return *out ? KMS_OK : KMS_ERR_NOMEM;
}
