/*
 * keymat.c — key material of every spec (keymat.h): generation, PKCS#8 encoding and checked decoding
 * with OpenSSL, and the sealing AAD.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "keymat.h"

EVP_PKEY *kms_keymat_keygen(enum kms_key_spec s)
{
    if (kms_spec_is_rsa(s))
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)kms_spec_rsa_bits(s));
    if (kms_spec_is_ecc(s))
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", OBJ_nid2sn(kms_spec_curve_nid(s)));
    return NULL;
}

int kms_keymat_from_pkey(EVP_PKEY *pk, uint8_t **out, size_t *len)
{
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pk);
    int n;
    uint8_t *buf, *p;
    *out = NULL;
    if (!p8)
        return -1;
    n = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL);
    if (n <= 0 || n > KMS_KEYMAT_MAX || !(buf = sodium_malloc((size_t)n))) {
        PKCS8_PRIV_KEY_INFO_free(p8);
        return -1;
    }
    p = buf;
    if (i2d_PKCS8_PRIV_KEY_INFO(p8, &p) != n) {
        PKCS8_PRIV_KEY_INFO_free(p8);
        sodium_free(buf);
        return -1;
    }
    PKCS8_PRIV_KEY_INFO_free(p8); /* clears the private key octets as it frees them */
    *out = buf;
    *len = (size_t)n;
    return 0;
}

int kms_keymat_generate(enum kms_key_spec s, uint8_t **out, size_t *len)
{
    *out = NULL;
    if (s == KMS_SPEC_SYMMETRIC || kms_spec_is_hmac(s)) {
        size_t n = s == KMS_SPEC_SYMMETRIC ? 32 : kms_spec_hmac_key_len(s);
        if (!(*out = sodium_malloc(n)))
            return -1;
        randombytes_buf(*out, n);
        *len = n;
        return 0;
    }
    {
        EVP_PKEY *pk = kms_keymat_keygen(s);
        int rc;
        if (!pk)
            return -1;
        rc = kms_keymat_from_pkey(pk, out, len);
        EVP_PKEY_free(pk);
        return rc;
    }
}

int kms_keymat_len_ok(enum kms_key_spec s, size_t len)
{
    if (s == KMS_SPEC_SYMMETRIC)
        return len == 32;
    if (kms_spec_is_hmac(s))
        return len == kms_spec_hmac_key_len(s);
    return len > 0 && len <= KMS_KEYMAT_MAX;
}

int kms_keymat_decode(enum kms_key_spec s, const uint8_t *der, size_t len, EVP_PKEY **out)
{
    const unsigned char *p = der;
    PKCS8_PRIV_KEY_INFO *p8;
    EVP_PKEY *pk = NULL;
    int ok = 0;

    *out = NULL;
    if (!kms_spec_is_asymmetric(s) || !der || !len || len > KMS_KEYMAT_MAX)
        return -1;
    p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
    if (!p8)
        return -1;
    if (p == der + len) /* one structure, nothing after it */
        pk = EVP_PKCS82PKEY(p8);
    PKCS8_PRIV_KEY_INFO_free(p8);
    if (!pk)
        return -1;
    if (kms_spec_is_rsa(s)) {
        ok = EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA && EVP_PKEY_get_bits(pk) == kms_spec_rsa_bits(s);
    } else if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC) {
        char group[64];
        size_t glen = 0;
        ok = EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &glen) == 1 &&
             OBJ_txt2nid(group) == kms_spec_curve_nid(s);
    }
    if (!ok) {
        EVP_PKEY_free(pk);
        return -1;
    }
    *out = pk;
    return 0;
}

uint8_t *kms_keymat_public_der(EVP_PKEY *pk, size_t *len)
{
    int n = i2d_PUBKEY(pk, NULL);
    uint8_t *buf, *p;
    if (n <= 0 || !(buf = malloc((size_t)n)))
        return NULL;
    p = buf;
    if (i2d_PUBKEY(pk, &p) != n) {
        free(buf);
        return NULL;
    }
    *len = (size_t)n;
    return buf;
}

static size_t put(uint8_t *aad, size_t o, const char *s, size_t n)
{
    if (o + n > KMS_MATERIAL_AAD_MAX)
        n = KMS_MATERIAL_AAD_MAX - o;
    memcpy(aad + o, s, n);
    return o + n;
}

size_t kms_material_aad(uint8_t *aad, const char *key_id, uint32_t version, enum kms_key_spec s,
                        enum kms_key_usage u)
{
    size_t n = put(aad, 0, s == KMS_SPEC_SYMMETRIC ? "envelopefs-cmk-v1" : "envelopefs-cmk-v2", 17);
    uint8_t be[4] = {(uint8_t)(version >> 24), (uint8_t)(version >> 16), (uint8_t)(version >> 8), (uint8_t)version};
    n = put(aad, n, key_id, strnlen(key_id, 36));
    n = put(aad, n, (const char *)be, 4);
    if (s == KMS_SPEC_SYMMETRIC)
        return n;
    n = put(aad, n, kms_spec_name(s), strlen(kms_spec_name(s)));
    n = put(aad, n, "", 1);
    return put(aad, n, kms_usage_name(u), strlen(kms_usage_name(u)));
}
