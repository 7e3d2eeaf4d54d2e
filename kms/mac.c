/*
 * mac.c — the operations of HMAC keys (KeySpec HMAC_224/256/384/512, KeyUsage GENERATE_VERIFY_MAC):
 * GenerateMac and VerifyMac, HMAC (RFC 2104) with the SHA-2 hash of the key's size, the key being the
 * spec's length in random bytes (28, 32, 48 or 64), held in locked memory. VerifyMac recomputes the MAC
 * and compares in constant time; a mismatch (or a MAC of another length) is KMSInvalidMacException.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/hmac.h>
#include <sodium.h>

#include "common/jsonb64.h"
#include "oputil.h"

/* The common front: message, algorithm, an Enabled HMAC key that supports it; the MAC into mac. */
static kms_err compute(struct op_ctx *x, json_t *in, kms_key **k, enum kms_alg *alg, uint8_t mac[EVP_MAX_MD_SIZE],
                       size_t *mac_len)
{
    const char *alg_name;
    uint8_t *msg = NULL;
    const uint8_t *key;
    size_t n = 0, key_len;
    unsigned int ml = 0;
    int a;
    kms_err e;

    if ((e = kms_op_get_b64(x, in, "Message", true, 4096, &msg, &n)) ||
        (e = kms_op_get_str(x, in, "MacAlgorithm", true, &alg_name)))
        goto out;
    if ((a = kms_alg_parse(KMS_ALG_MAC, alg_name)) < 0) {
        e = kms_op_fail(x, KMS_ERR_VALIDATION,
                        "1 validation error detected: Value '%s' at 'macAlgorithm' failed to satisfy constraint: "
                        "Member must satisfy enum value set: [HMAC_SHA_224, HMAC_SHA_256, HMAC_SHA_384, HMAC_SHA_512]",
                        alg_name);
        goto out;
    }
    if ((e = kms_op_resolve_usable(x, in, k)))
        goto out;
    if ((*k)->usage != KMS_USAGE_GENERATE_VERIFY_MAC) {
        e = kms_op_wrong_usage(x, *k);
        goto out;
    }
    if (!kms_key_supports((*k)->spec, (*k)->usage, (enum kms_alg)a)) {
        e = kms_op_fail(x, KMS_ERR_INVALID_KEY_USAGE, "Algorithm %s is incompatible with key spec %s.", alg_name,
                        kms_spec_name((*k)->spec));
        goto out;
    }
    *alg = (enum kms_alg)a;
    if ((e = kms_store_material(x->core, *k, &(*k)->versions[0], &key, &key_len, x->msg)))
        goto out;
    if (!HMAC(kms_alg_md(*alg), key, (int)key_len, msg, n, mac, &ml)) {
        e = kms_op_fail(x, KMS_ERR_INTERNAL, "HMAC failed");
        goto out;
    }
    *mac_len = ml;
out:
    if (msg) {
        sodium_memzero(msg, n);
        free(msg);
    }
    return e;
}

kms_err kms_op_generate_mac(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    enum kms_alg a;
    uint8_t mac[EVP_MAX_MD_SIZE];
    size_t n = 0;
    char arn[160];
    kms_err e = compute(x, in, &k, &a, mac, &n);
    if (e)
        return e;
    kms_op_key_arn(x->core, k, arn, sizeof arn);
    *out = json_pack("{s:o, s:s, s:s}", "Mac", efs_json_base64(mac, n), "MacAlgorithm", kms_alg_name(a), "KeyId", arn);
    sodium_memzero(mac, sizeof mac);
    return *out ? KMS_OK : KMS_ERR_NOMEM;
}

kms_err kms_op_verify_mac(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    enum kms_alg a;
    uint8_t mac[EVP_MAX_MD_SIZE], *given = NULL;
    size_t n = 0, given_len = 0;
    char arn[160];
    kms_err e = kms_op_get_b64(x, in, "Mac", true, 6144, &given, &given_len);
    if (!e)
        e = compute(x, in, &k, &a, mac, &n);
    if (!e && (given_len != n || sodium_memcmp(given, mac, n)))
        e = kms_op_fail(x, KMS_ERR_INVALID_MAC, NULL);
    sodium_memzero(mac, sizeof mac);
    free(given);
    if (e)
        return e;
    kms_op_key_arn(x->core, k, arn, sizeof arn);
    *out = json_pack("{s:s, s:b, s:s}", "KeyId", arn, "MacValid", 1, "MacAlgorithm", kms_alg_name(a));
    return *out ? KMS_OK : KMS_ERR_NOMEM;
}
