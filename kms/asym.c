/*
 * asym.c — the operations of asymmetric keys (RSA and ECC key pairs, keyspec.h): GetPublicKey, Sign,
 * Verify, and Encrypt / Decrypt with RSAES_OAEP_SHA_1 / _SHA_256. The private key never leaves the core:
 * it is unsealed from the store into an OpenSSL key object (kms_store_pkey) and used under the core lock.
 * Semantics and errors follow AWS KMS: a key of the wrong usage is InvalidKeyUsageException, an algorithm
 * the key spec does not support is InvalidKeyUsageException ("Algorithm X is incompatible with key spec
 * Y."), a DIGEST of the wrong length and oversized RSA plaintext are ValidationException, a signature that
 * does not verify is KMSInvalidSignatureException.
 *
 * Algorithms as AWS defines them: RSASSA-PSS with MGF1 of the same hash and a salt as long as the hash,
 * RSASSA-PKCS1-v1_5 with the DigestInfo of the hash, ECDSA signatures DER-encoded (X9.62), RSAES-OAEP
 * with MGF1 of the same hash and no label. MessageType DIGEST skips the hash step (the message is the
 * digest); RAW hashes the message (1-4096 bytes) first.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/rsa.h>
#include <sodium.h>

#include "common/jsonb64.h"
#include "keymat.h"
#include "oputil.h"

#define MAX_SIG 1024 /* larger than any signature of these specs (RSA_4096: 512 bytes) */

static kms_err incompatible(struct op_ctx *x, const char *alg, const kms_key *k)
{
    return kms_op_fail(x, KMS_ERR_INVALID_KEY_USAGE, "Algorithm %s is incompatible with key spec %s.", alg,
                       kms_spec_name(k->spec));
}

/* The key pair of an Enabled asymmetric key. */
static kms_err key_pair(struct op_ctx *x, kms_key *k, EVP_PKEY **pk)
{
    return kms_store_pkey(x->core, k, &k->versions[0], pk, x->msg);
}

/* A context for one sign / verify / encrypt / decrypt with algorithm a set up as AWS defines it. */
static EVP_PKEY_CTX *pkey_ctx(EVP_PKEY *pk, enum kms_alg a, int (*init)(EVP_PKEY_CTX *))
{
    const EVP_MD *md = kms_alg_md(a);
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    int ok;
    if (!pc)
        return NULL;
    ok = init(pc) == 1;
    switch (a) {
    case KMS_ALG_RSAES_OAEP_SHA_1:
    case KMS_ALG_RSAES_OAEP_SHA_256:
        ok = ok && EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_oaep_md(pc, md) == 1 && EVP_PKEY_CTX_set_rsa_mgf1_md(pc, md) == 1;
        break;
    case KMS_ALG_RSASSA_PSS_SHA_256:
    case KMS_ALG_RSASSA_PSS_SHA_384:
    case KMS_ALG_RSASSA_PSS_SHA_512:
        ok = ok && EVP_PKEY_CTX_set_signature_md(pc, md) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) == 1 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(pc, md) == 1;
        break;
    case KMS_ALG_RSASSA_PKCS1_V1_5_SHA_256:
    case KMS_ALG_RSASSA_PKCS1_V1_5_SHA_384:
    case KMS_ALG_RSASSA_PKCS1_V1_5_SHA_512:
        ok = ok && EVP_PKEY_CTX_set_signature_md(pc, md) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1;
        break;
    default: /* ECDSA */
        ok = ok && EVP_PKEY_CTX_set_signature_md(pc, md) == 1;
        break;
    }
    if (!ok) {
        EVP_PKEY_CTX_free(pc);
        return NULL;
    }
    return pc;
}

/* The version's prepared context for one operation (0 sign, 1 verify, 2 encrypt, 3 decrypt) and algorithm,
 * made at first use and reused by every later call (creating one fetches the algorithm from the provider and
 * sets its parameters, several times the cost of an ECDSA verification). Borrowed; NULL on failure. */
static EVP_PKEY_CTX *cached_ctx(kms_key *k, int op, enum kms_alg a)
{
    static int (*const init[4])(EVP_PKEY_CTX *) = {EVP_PKEY_sign_init, EVP_PKEY_verify_init, EVP_PKEY_encrypt_init,
                                                  EVP_PKEY_decrypt_init};
    kms_version *v = &k->versions[0];
    EVP_PKEY_CTX **slot;
    if (!v->pkey)
        return NULL;
    if (!v->pctx && !(v->pctx = calloc(KMS_PCTX_SLOTS, sizeof *v->pctx)))
        return NULL;
    slot = &v->pctx[op * KMS_ALG__COUNT + (int)a];
    if (!*slot)
        *slot = pkey_ctx(v->pkey, a, init[op]);
    return *slot;
}

/* A private-key operation (an RSA signature or decryption takes ~1 ms, an ECDSA signature ~30 µs) runs with
 * the core lock released, so it does not hold up every other call: on a copy of the prepared context, which
 * holds its own reference to the key (a reload that frees the key meanwhile is harmless). Nothing the call
 * looked up before may be used after it (unlocked_end): callers take the key's ARN first. */
static EVP_PKEY_CTX *unlocked_begin(struct op_ctx *x, EVP_PKEY_CTX *prepared)
{
    EVP_PKEY_CTX *copy = prepared ? EVP_PKEY_CTX_dup(prepared) : NULL;
    if (copy)
        pthread_mutex_unlock(&x->core->lock);
    return copy;
}

static void unlocked_end(struct op_ctx *x, EVP_PKEY_CTX *copy)
{
    EVP_PKEY_CTX_free(copy);
    pthread_mutex_lock(&x->core->lock);
}

int kms_asym_verify_digest(EVP_PKEY *pk, enum kms_alg a, const uint8_t *dgst, size_t dlen, const uint8_t *sig,
                           size_t siglen)
{
    EVP_PKEY_CTX *pc = pkey_ctx(pk, a, EVP_PKEY_verify_init);
    int ok = pc && EVP_PKEY_verify(pc, sig, siglen, dgst, dlen) == 1;
    EVP_PKEY_CTX_free(pc);
    return ok ? 0 : -1;
}

kms_err kms_op_get_public_key(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    EVP_PKEY *pk;
    uint8_t *der;
    size_t n;
    char arn[160];
    kms_err e = kms_op_resolve_usable(x, in, &k);
    if (e)
        return e;
    kms_op_key_arn(x->core, k, arn, sizeof arn);
    if (!kms_spec_is_asymmetric(k->spec))
        return kms_op_fail(x, KMS_ERR_UNSUPPORTED_OPERATION,
                           "%s is not an asymmetric KMS key (key spec %s): it has no public key.", arn,
                           kms_spec_name(k->spec));
    if ((e = key_pair(x, k, &pk)))
        return e;
    if (!(der = kms_keymat_public_der(pk, &n)))
        return KMS_ERR_NOMEM;
    *out = json_pack("{s:s, s:o}", "KeyId", arn, "PublicKey", efs_json_base64(der, n));
    free(der);
    if (!*out || kms_spec_describe(*out, k->spec, k->usage))
        return KMS_ERR_NOMEM;
    return KMS_OK;
}

/* The common front of Sign and Verify: the message, its type and the algorithm; the key, which must be
 * SIGN_VERIFY and support the algorithm; the digest to sign (dgst, *dlen bytes). */
static kms_err sign_request(struct op_ctx *x, json_t *in, kms_key **k, enum kms_alg *alg, EVP_PKEY **pk,
                            uint8_t dgst[EVP_MAX_MD_SIZE], size_t *dlen)
{
    const char *alg_name, *type;
    uint8_t *msg = NULL;
    size_t n = 0;
    int a;
    bool digest;
    kms_err e;

    if ((e = kms_op_get_b64(x, in, "Message", true, 4096, &msg, &n)) ||
        (e = kms_op_get_str(x, in, "MessageType", false, &type)) ||
        (e = kms_op_get_str(x, in, "SigningAlgorithm", true, &alg_name)))
        goto out;
    if ((a = kms_alg_parse(KMS_ALG_SIGN, alg_name)) < 0) {
        e = kms_op_fail(x, KMS_ERR_VALIDATION,
                        "1 validation error detected: Value '%s' at 'signingAlgorithm' failed to satisfy constraint: "
                        "Member must satisfy enum value set: [RSASSA_PSS_SHA_256, RSASSA_PSS_SHA_384, "
                        "RSASSA_PSS_SHA_512, RSASSA_PKCS1_V1_5_SHA_256, RSASSA_PKCS1_V1_5_SHA_384, "
                        "RSASSA_PKCS1_V1_5_SHA_512, ECDSA_SHA_256, ECDSA_SHA_384, ECDSA_SHA_512]", alg_name);
        goto out;
    }
    if (type && strcmp(type, "RAW") && strcmp(type, "DIGEST")) {
        e = !strcmp(type, "EXTERNAL_MU")
                ? kms_op_fail(x, KMS_ERR_VALIDATION, "MessageType EXTERNAL_MU is valid only for ML-DSA keys.")
                : kms_op_fail(x, KMS_ERR_VALIDATION,
                              "1 validation error detected: Value '%s' at 'messageType' failed to satisfy "
                              "constraint: Member must satisfy enum value set: [RAW, DIGEST, EXTERNAL_MU]", type);
        goto out;
    }
    digest = type && !strcmp(type, "DIGEST");
    if ((e = kms_op_resolve_usable(x, in, k)))
        goto out;
    if ((*k)->usage != KMS_USAGE_SIGN_VERIFY) {
        e = kms_op_wrong_usage(x, *k);
        goto out;
    }
    if (!kms_key_supports((*k)->spec, (*k)->usage, (enum kms_alg)a)) {
        e = incompatible(x, alg_name, *k);
        goto out;
    }
    *alg = (enum kms_alg)a;
    if (digest) {
        if (n != kms_alg_digest_len(*alg)) {
            e = kms_op_fail(x, KMS_ERR_VALIDATION, "Digest is invalid length for algorithm %s.", alg_name);
            goto out;
        }
        memcpy(dgst, msg, n);
        *dlen = n;
    } else {
        unsigned int dl = 0;
        if (EVP_Digest(msg, n, dgst, &dl, kms_alg_md(*alg), NULL) != 1) {
            e = kms_op_fail(x, KMS_ERR_INTERNAL, "hashing the message failed");
            goto out;
        }
        *dlen = dl;
    }
    e = key_pair(x, *k, pk);
out:
    if (msg) {
        sodium_memzero(msg, n);
        free(msg);
    }
    return e;
}

kms_err kms_op_sign(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    enum kms_alg a;
    EVP_PKEY *pk;
    uint8_t dgst[EVP_MAX_MD_SIZE], sig[MAX_SIG];
    size_t dlen = 0, slen = sizeof sig;
    char arn[160];
    kms_err e = sign_request(x, in, &k, &a, &pk, dgst, &dlen);
    if (e)
        return e;
    kms_op_key_arn(x->core, k, arn, sizeof arn);
    {
        EVP_PKEY_CTX *pc = (size_t)EVP_PKEY_get_size(pk) <= sizeof sig ? unlocked_begin(x, cached_ctx(k, 0, a)) : NULL;
        int ok;
        if (!pc)
            return kms_op_fail(x, KMS_ERR_INTERNAL, "signing failed");
        ok = EVP_PKEY_sign(pc, sig, &slen, dgst, dlen) == 1;
        unlocked_end(x, pc); /* k is not used after this */
        if (!ok)
            return kms_op_fail(x, KMS_ERR_INTERNAL, "signing failed");
    }
    *out = json_pack("{s:s, s:o, s:s}", "KeyId", arn, "Signature", efs_json_base64(sig, slen), "SigningAlgorithm",
                     kms_alg_name(a));
    return *out ? KMS_OK : KMS_ERR_NOMEM;
}

kms_err kms_op_verify(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    enum kms_alg a;
    EVP_PKEY *pk;
    uint8_t dgst[EVP_MAX_MD_SIZE], *sig = NULL;
    size_t dlen = 0, slen = 0;
    char arn[160];
    kms_err e = kms_op_get_b64(x, in, "Signature", true, 6144, &sig, &slen);
    if (!e)
        e = sign_request(x, in, &k, &a, &pk, dgst, &dlen);
    if (!e) {
        EVP_PKEY_CTX *pc;
        int ok;
        kms_op_key_arn(x->core, k, arn, sizeof arn);
        if (!(pc = unlocked_begin(x, cached_ctx(k, 1, a)))) {
            e = kms_op_fail(x, KMS_ERR_INTERNAL, "verification failed");
        } else {
            ok = EVP_PKEY_verify(pc, sig, slen, dgst, dlen) == 1;
            unlocked_end(x, pc); /* k is not used after this */
            if (!ok)
                e = kms_op_fail(x, KMS_ERR_INVALID_SIGNATURE, NULL);
        }
    }
    free(sig);
    if (e)
        return e;
    *out = json_pack("{s:s, s:b, s:s}", "KeyId", arn, "SignatureValid", 1, "SigningAlgorithm", kms_alg_name(a));
    return *out ? KMS_OK : KMS_ERR_NOMEM;
}

/* The checks Encrypt and Decrypt share for an asymmetric key: RSA ENCRYPT_DECRYPT, an RSAES algorithm it
 * supports, no encryption context. */
static kms_err oaep_request(struct op_ctx *x, kms_key *k, const char *alg, const kms_ectx *ectx, enum kms_alg *a,
                            EVP_PKEY **pk)
{
    int v;
    if (!alg)
        alg = "SYMMETRIC_DEFAULT";
    if ((v = kms_alg_parse(KMS_ALG_ENCRYPT, alg)) < 0)
        return kms_op_fail(x, KMS_ERR_VALIDATION,
                           "1 validation error detected: Value '%s' at 'encryptionAlgorithm' failed to satisfy "
                           "constraint: Member must satisfy enum value set: [SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, "
                           "RSAES_OAEP_SHA_256]", alg);
    if (k->usage != KMS_USAGE_ENCRYPT_DECRYPT)
        return kms_op_wrong_usage(x, k);
    if (!kms_key_supports(k->spec, k->usage, (enum kms_alg)v))
        return incompatible(x, alg, k);
    if (ectx && ectx->n)
        return kms_op_fail(x, KMS_ERR_VALIDATION,
                           "EncryptionContext is not supported when encrypting/decrypting with asymmetric CMKs.");
    *a = (enum kms_alg)v;
    return key_pair(x, k, pk);
}

kms_err kms_asym_seal(struct op_ctx *x, kms_key *k, const char *alg, const kms_ectx *ectx, const uint8_t *pt, size_t n,
                      json_t **ct_json, const char **alg_name)
{
    enum kms_alg a;
    EVP_PKEY *pk;
    EVP_PKEY_CTX *pc;
    uint8_t ct[MAX_SIG];
    size_t clen = sizeof ct, max;
    kms_err e = oaep_request(x, k, alg, ectx, &a, &pk);
    if (e)
        return e;
    max = kms_rsa_oaep_max(k->spec, a);
    if (n > max)
        return kms_op_fail(x, KMS_ERR_VALIDATION, "Algorithm %s and key spec %s cannot encrypt data larger than %zu bytes.",
                           kms_alg_name(a), kms_spec_name(k->spec), max);
    pc = cached_ctx(k, 2, a);
    if (!pc || EVP_PKEY_encrypt(pc, ct, &clen, pt, n) != 1)
        return kms_op_fail(x, KMS_ERR_INTERNAL, "RSA encryption failed");
    *alg_name = kms_alg_name(a);
    *ct_json = efs_json_base64(ct, clen);
    return *ct_json ? KMS_OK : KMS_ERR_NOMEM;
}

/* Decrypt's body; with unlock, the RSA decryption runs with the core lock released and k must not be used
 * afterwards (ReEncrypt, which uses its keys afterwards, keeps the lock). */
static kms_err asym_open(struct op_ctx *x, kms_key *k, const char *alg, const kms_ectx *ectx, const uint8_t *ct, size_t n,
                         uint8_t **pt_out, size_t *pt_len, const char **alg_name, bool unlock)
{
    enum kms_alg a;
    EVP_PKEY *pk;
    EVP_PKEY_CTX *pc;
    uint8_t *pt;
    size_t plen = KMS_SCRATCH_MAX;
    char arn[160];
    kms_err e;
    *pt_out = NULL;
    if (k->state != KS_ENABLED) {
        kms_op_key_arn(x->core, k, arn, sizeof arn);
        return k->state == KS_DISABLED ? kms_op_fail(x, KMS_ERR_DISABLED, "%s is disabled.", arn)
                                       : kms_op_fail(x, KMS_ERR_INVALID_STATE, "%s is pending deletion.", arn);
    }
    if ((e = oaep_request(x, k, alg, ectx, &a, &pk)))
        return e;
    if (n != (size_t)EVP_PKEY_get_size(pk))
        return kms_op_fail(x, KMS_ERR_INVALID_CIPHERTEXT, NULL);
    if (!(pt = kms_scratch(plen)))
        return KMS_ERR_NOMEM;
    pc = cached_ctx(k, 3, a);
    if (unlock && pc) {
        EVP_PKEY_CTX *copy = unlocked_begin(x, pc);
        int ok = copy && EVP_PKEY_decrypt(copy, pt, &plen, ct, n) == 1 && plen > 0;
        if (copy)
            unlocked_end(x, copy);
        if (!ok) {
            sodium_memzero(pt, KMS_SCRATCH_MAX);
            return kms_op_fail(x, KMS_ERR_INVALID_CIPHERTEXT, NULL);
        }
    } else if (!pc || EVP_PKEY_decrypt(pc, pt, &plen, ct, n) != 1 || plen == 0) {
        sodium_memzero(pt, KMS_SCRATCH_MAX);
        return kms_op_fail(x, KMS_ERR_INVALID_CIPHERTEXT, NULL);
    }
    *pt_out = pt;
    *pt_len = plen;
    *alg_name = kms_alg_name(a);
    return KMS_OK;
}

kms_err kms_asym_open(struct op_ctx *x, kms_key *k, const char *alg, const kms_ectx *ectx, const uint8_t *ct, size_t n,
                      uint8_t **pt_out, size_t *pt_len, const char **alg_name)
{
    return asym_open(x, k, alg, ectx, ct, n, pt_out, pt_len, alg_name, false);
}

kms_err kms_asym_encrypt(struct op_ctx *x, kms_key *k, const char *alg, const kms_ectx *ectx, const uint8_t *pt,
                         size_t n, json_t **out)
{
    json_t *ct;
    const char *name;
    char arn[160];
    kms_err e = kms_asym_seal(x, k, alg, ectx, pt, n, &ct, &name);
    if (e)
        return e;
    kms_op_key_arn(x->core, k, arn, sizeof arn);
    *out = json_pack("{s:o, s:s, s:s}", "CiphertextBlob", ct, "KeyId", arn, "EncryptionAlgorithm", name);
    return *out ? KMS_OK : KMS_ERR_NOMEM;
}

kms_err kms_asym_decrypt(struct op_ctx *x, kms_key *k, const char *alg, const kms_ectx *ectx, const uint8_t *ct,
                         size_t n, json_t **out)
{
    uint8_t *pt;
    size_t plen;
    const char *name;
    char arn[160];
    kms_err e;
    kms_op_key_arn(x->core, k, arn, sizeof arn); /* before the lock is released */
    if ((e = asym_open(x, k, alg, ectx, ct, n, &pt, &plen, &name, true)))
        return e;
    *out = json_pack("{s:s, s:o, s:s}", "KeyId", arn, "Plaintext", efs_json_base64(pt, plen), "EncryptionAlgorithm", name);
    sodium_memzero(pt, plen);
    return *out ? KMS_OK : KMS_ERR_NOMEM;
}
