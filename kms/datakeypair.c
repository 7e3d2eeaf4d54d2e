/*
 * datakeypair.c — GenerateDataKeyPair and GenerateDataKeyPairWithoutPlaintext: a fresh RSA or ECC key pair
 * for use outside the service; the private key (DER PKCS#8 PrivateKeyInfo) is returned sealed under a
 * symmetric key as an ordinary ciphertext blob bound to the encryption context (Decrypt opens it), the
 * public key (DER SubjectPublicKeyInfo) in the clear, and the plaintext private key only by the first.
 * Generating a key pair takes milliseconds (ECC) to seconds (RSA_4096), so it runs with the core lock
 * released (kms_op_keygen); the wrapping key is resolved again afterwards.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/jsonb64.h"
#include "keymat.h"
#include "oputil.h"

EVP_PKEY *kms_op_keygen(struct op_ctx *x, enum kms_key_spec s)
{
    EVP_PKEY *pk;
    pthread_mutex_unlock(&x->core->lock);
    pk = kms_keymat_keygen(s);
    pthread_mutex_lock(&x->core->lock);
    return pk;
}

/* The request's KeyPairSpec and the wrapping key: Enabled, SYMMETRIC_DEFAULT. */
static kms_err wrapping_key(struct op_ctx *x, json_t *in, kms_key **k)
{
    kms_err e = kms_op_resolve_usable(x, in, k);
    if (!e && (*k)->spec != KMS_SPEC_SYMMETRIC)
        e = kms_op_wrong_usage(x, *k);
    return e;
}

static kms_err data_key_pair(struct op_ctx *x, json_t *in, json_t **out, bool with_plaintext)
{
    const char *spec_name;
    int spec;
    kms_ectx ectx;
    kms_ectx_pair *pairs = NULL;
    kms_key *k;
    EVP_PKEY *pk = NULL;
    uint8_t *priv = NULL, *pub = NULL;
    size_t priv_len = 0, pub_len = 0;
    json_t *blob = NULL;
    char arn[160];
    kms_err e = kms_op_get_str(x, in, "KeyPairSpec", true, &spec_name);

    if (e)
        return e;
    spec = kms_spec_parse(spec_name);
    if (spec < 0 || !kms_spec_is_asymmetric((enum kms_key_spec)spec))
        return kms_op_fail(x, KMS_ERR_VALIDATION,
                           "1 validation error detected: Value '%s' at 'keyPairSpec' failed to satisfy constraint: "
                           "Member must satisfy enum value set: [RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, "
                           "ECC_NIST_P384, ECC_NIST_P521, ECC_SECG_P256K1]", spec_name);
    if ((e = kms_op_get_ectx(x, in, "EncryptionContext", &ectx, &pairs)) || (e = wrapping_key(x, in, &k)))
        goto out;
    if (!(pk = kms_op_keygen(x, (enum kms_key_spec)spec))) {
        e = kms_op_fail(x, KMS_ERR_INTERNAL, "could not generate a %s key pair", spec_name);
        goto out;
    }
    if ((e = wrapping_key(x, in, &k))) /* the lock was released: the key may have changed meanwhile */
        goto out;
    if (kms_keymat_from_pkey(pk, &priv, &priv_len) || !(pub = kms_keymat_public_der(pk, &pub_len))) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    if ((e = kms_op_seal_blob(x, k, priv, priv_len, &ectx, &blob)))
        goto out;
    kms_op_key_arn(x->core, k, arn, sizeof arn);
    *out = json_pack("{s:o, s:o, s:s, s:s}", "PrivateKeyCiphertextBlob", blob, "PublicKey",
                     efs_json_base64(pub, pub_len), "KeyId", arn, "KeyPairSpec", spec_name);
    blob = NULL;
    if (*out && with_plaintext && json_object_set_new(*out, "PrivateKeyPlaintext", efs_json_base64(priv, priv_len)))
        e = KMS_ERR_NOMEM;
    if (!*out)
        e = KMS_ERR_NOMEM;
out:
    json_decref(blob);
    EVP_PKEY_free(pk);
    sodium_free(priv); /* wipes */
    free(pub);
    free(pairs);
    return e;
}

kms_err kms_op_generate_data_key_pair(struct op_ctx *x, json_t *in, json_t **out)
{
    return data_key_pair(x, in, out, true);
}

kms_err kms_op_generate_data_key_pair_without_plaintext(struct op_ctx *x, json_t *in, json_t **out)
{
    return data_key_pair(x, in, out, false);
}
