/*
 * keyspec.c — the key-spec, key-usage and algorithm tables of keyspec.h (AWS KMS's names and pairings:
 * botocore's KeySpec, KeyUsageType, EncryptionAlgorithmSpec, SigningAlgorithmSpec, MacAlgorithmSpec).
 */
#include <pthread.h>
#include <string.h>

#include <openssl/obj_mac.h>

#include "keyspec.h"

static const char *const SPECS[KMS_SPEC__COUNT] = {
    "SYMMETRIC_DEFAULT", "RSA_2048",      "RSA_3072",      "RSA_4096",        "ECC_NIST_P256", "ECC_NIST_P384",
    "ECC_NIST_P521",     "ECC_SECG_P256K1", "HMAC_224",    "HMAC_256",        "HMAC_384",      "HMAC_512",
};
static const char *const USAGES[KMS_USAGE__COUNT] = {"ENCRYPT_DECRYPT", "SIGN_VERIFY", "GENERATE_VERIFY_MAC"};

static const struct {
    const char *name;
    enum kms_alg_kind kind;
    int md_bits; /* 1 = SHA-1, else SHA-2 output bits; 0: none */
} ALGS[KMS_ALG__COUNT] = {
    [KMS_ALG_SYMMETRIC_DEFAULT] = {"SYMMETRIC_DEFAULT", KMS_ALG_ENCRYPT, 0},
    [KMS_ALG_RSAES_OAEP_SHA_1] = {"RSAES_OAEP_SHA_1", KMS_ALG_ENCRYPT, 1},
    [KMS_ALG_RSAES_OAEP_SHA_256] = {"RSAES_OAEP_SHA_256", KMS_ALG_ENCRYPT, 256},
    [KMS_ALG_RSASSA_PKCS1_V1_5_SHA_256] = {"RSASSA_PKCS1_V1_5_SHA_256", KMS_ALG_SIGN, 256},
    [KMS_ALG_RSASSA_PKCS1_V1_5_SHA_384] = {"RSASSA_PKCS1_V1_5_SHA_384", KMS_ALG_SIGN, 384},
    [KMS_ALG_RSASSA_PKCS1_V1_5_SHA_512] = {"RSASSA_PKCS1_V1_5_SHA_512", KMS_ALG_SIGN, 512},
    [KMS_ALG_RSASSA_PSS_SHA_256] = {"RSASSA_PSS_SHA_256", KMS_ALG_SIGN, 256},
    [KMS_ALG_RSASSA_PSS_SHA_384] = {"RSASSA_PSS_SHA_384", KMS_ALG_SIGN, 384},
    [KMS_ALG_RSASSA_PSS_SHA_512] = {"RSASSA_PSS_SHA_512", KMS_ALG_SIGN, 512},
    [KMS_ALG_ECDSA_SHA_256] = {"ECDSA_SHA_256", KMS_ALG_SIGN, 256},
    [KMS_ALG_ECDSA_SHA_384] = {"ECDSA_SHA_384", KMS_ALG_SIGN, 384},
    [KMS_ALG_ECDSA_SHA_512] = {"ECDSA_SHA_512", KMS_ALG_SIGN, 512},
    [KMS_ALG_HMAC_SHA_224] = {"HMAC_SHA_224", KMS_ALG_MAC, 224},
    [KMS_ALG_HMAC_SHA_256] = {"HMAC_SHA_256", KMS_ALG_MAC, 256},
    [KMS_ALG_HMAC_SHA_384] = {"HMAC_SHA_384", KMS_ALG_MAC, 384},
    [KMS_ALG_HMAC_SHA_512] = {"HMAC_SHA_512", KMS_ALG_MAC, 512},
};

const char *kms_spec_name(enum kms_key_spec s) { return (unsigned)s < KMS_SPEC__COUNT ? SPECS[s] : "?"; }
const char *kms_usage_name(enum kms_key_usage u) { return (unsigned)u < KMS_USAGE__COUNT ? USAGES[u] : "?"; }
const char *kms_alg_name(enum kms_alg a) { return (unsigned)a < KMS_ALG__COUNT ? ALGS[a].name : "?"; }

int kms_spec_parse(const char *name)
{
    for (int i = 0; name && i < KMS_SPEC__COUNT; i++)
        if (!strcmp(SPECS[i], name))
            return i;
    return -1;
}

int kms_usage_parse(const char *name)
{
    for (int i = 0; name && i < KMS_USAGE__COUNT; i++)
        if (!strcmp(USAGES[i], name))
            return i;
    return -1;
}

int kms_alg_parse(enum kms_alg_kind kind, const char *name)
{
    for (int i = 0; name && i < KMS_ALG__COUNT; i++)
        if (ALGS[i].kind == kind && !strcmp(ALGS[i].name, name))
            return i;
    return -1;
}

bool kms_spec_is_rsa(enum kms_key_spec s) { return s >= KMS_SPEC_RSA_2048 && s <= KMS_SPEC_RSA_4096; }
bool kms_spec_is_ecc(enum kms_key_spec s) { return s >= KMS_SPEC_ECC_NIST_P256 && s <= KMS_SPEC_ECC_SECG_P256K1; }
bool kms_spec_is_hmac(enum kms_key_spec s) { return s >= KMS_SPEC_HMAC_224 && s <= KMS_SPEC_HMAC_512; }
bool kms_spec_is_asymmetric(enum kms_key_spec s) { return kms_spec_is_rsa(s) || kms_spec_is_ecc(s); }

int kms_spec_rsa_bits(enum kms_key_spec s)
{
    switch (s) {
    case KMS_SPEC_RSA_2048: return 2048;
    case KMS_SPEC_RSA_3072: return 3072;
    case KMS_SPEC_RSA_4096: return 4096;
    default: return 0;
    }
}

int kms_spec_curve_nid(enum kms_key_spec s)
{
    switch (s) {
    case KMS_SPEC_ECC_NIST_P256: return NID_X9_62_prime256v1;
    case KMS_SPEC_ECC_NIST_P384: return NID_secp384r1;
    case KMS_SPEC_ECC_NIST_P521: return NID_secp521r1;
    case KMS_SPEC_ECC_SECG_P256K1: return NID_secp256k1;
    default: return 0;
    }
}

size_t kms_spec_hmac_key_len(enum kms_key_spec s)
{
    switch (s) {
    case KMS_SPEC_HMAC_224: return 28;
    case KMS_SPEC_HMAC_256: return 32;
    case KMS_SPEC_HMAC_384: return 48;
    case KMS_SPEC_HMAC_512: return 64;
    default: return 0;
    }
}

bool kms_spec_usage_valid(enum kms_key_spec s, enum kms_key_usage u)
{
    if (s == KMS_SPEC_SYMMETRIC)
        return u == KMS_USAGE_ENCRYPT_DECRYPT;
    if (kms_spec_is_rsa(s))
        return u == KMS_USAGE_ENCRYPT_DECRYPT || u == KMS_USAGE_SIGN_VERIFY;
    if (kms_spec_is_ecc(s))
        return u == KMS_USAGE_SIGN_VERIFY;
    return u == KMS_USAGE_GENERATE_VERIFY_MAC;
}

int kms_spec_default_usage(enum kms_key_spec s)
{
    return s == KMS_SPEC_SYMMETRIC ? KMS_USAGE_ENCRYPT_DECRYPT : -1;
}

bool kms_key_supports(enum kms_key_spec s, enum kms_key_usage u, enum kms_alg a)
{
    if ((unsigned)a >= KMS_ALG__COUNT || !kms_spec_usage_valid(s, u))
        return false;
    if (s == KMS_SPEC_SYMMETRIC)
        return a == KMS_ALG_SYMMETRIC_DEFAULT;
    if (kms_spec_is_rsa(s) && u == KMS_USAGE_ENCRYPT_DECRYPT)
        return a == KMS_ALG_RSAES_OAEP_SHA_1 || a == KMS_ALG_RSAES_OAEP_SHA_256;
    if (kms_spec_is_rsa(s))
        return a >= KMS_ALG_RSASSA_PKCS1_V1_5_SHA_256 && a <= KMS_ALG_RSASSA_PSS_SHA_512;
    switch (s) { /* each curve signs with the hash of its size (AWS) */
    case KMS_SPEC_ECC_NIST_P256:
    case KMS_SPEC_ECC_SECG_P256K1: return a == KMS_ALG_ECDSA_SHA_256;
    case KMS_SPEC_ECC_NIST_P384: return a == KMS_ALG_ECDSA_SHA_384;
    case KMS_SPEC_ECC_NIST_P521: return a == KMS_ALG_ECDSA_SHA_512;
    case KMS_SPEC_HMAC_224: return a == KMS_ALG_HMAC_SHA_224;
    case KMS_SPEC_HMAC_256: return a == KMS_ALG_HMAC_SHA_256;
    case KMS_SPEC_HMAC_384: return a == KMS_ALG_HMAC_SHA_384;
    case KMS_SPEC_HMAC_512: return a == KMS_ALG_HMAC_SHA_512;
    default: return false;
    }
}

/* The digests, fetched from the provider once (EVP_sha256() and friends are looked up at every use). */
static EVP_MD *g_md[5];
static pthread_once_t g_md_once = PTHREAD_ONCE_INIT;
static void fetch_mds(void)
{
    static const char *const names[5] = {"SHA1", "SHA224", "SHA256", "SHA384", "SHA512"};
    for (int i = 0; i < 5; i++)
        g_md[i] = EVP_MD_fetch(NULL, names[i], NULL);
}

const EVP_MD *kms_alg_md(enum kms_alg a)
{
    int i;
    if ((unsigned)a >= KMS_ALG__COUNT)
        return NULL;
    switch (ALGS[a].md_bits) {
    case 1: i = 0; break;
    case 224: i = 1; break;
    case 256: i = 2; break;
    case 384: i = 3; break;
    case 512: i = 4; break;
    default: return NULL;
    }
    pthread_once(&g_md_once, fetch_mds);
    if (g_md[i])
        return g_md[i];
    return i == 0 ? EVP_sha1() : i == 1 ? EVP_sha224() : i == 2 ? EVP_sha256() : i == 3 ? EVP_sha384() : EVP_sha512();
}

size_t kms_alg_digest_len(enum kms_alg a)
{
    const EVP_MD *md = kms_alg_md(a);
    return md ? (size_t)EVP_MD_get_size(md) : 0;
}

size_t kms_rsa_oaep_max(enum kms_key_spec s, enum kms_alg a)
{
    size_t k = (size_t)kms_spec_rsa_bits(s) / 8, h = kms_alg_digest_len(a);
    if (!k || (a != KMS_ALG_RSAES_OAEP_SHA_1 && a != KMS_ALG_RSAES_OAEP_SHA_256))
        return 0;
    return k - 2 * h - 2;
}

int kms_spec_describe(json_t *m, enum kms_key_spec s, enum kms_key_usage u)
{
    const char *field = u == KMS_USAGE_SIGN_VERIFY ? "SigningAlgorithms"
                        : u == KMS_USAGE_GENERATE_VERIFY_MAC ? "MacAlgorithms" : "EncryptionAlgorithms";
    json_t *arr = json_array();
    if (!arr || json_object_set_new(m, field, arr) || json_object_set_new(m, "KeySpec", json_string(kms_spec_name(s))) ||
        json_object_set_new(m, "CustomerMasterKeySpec", json_string(kms_spec_name(s))) ||
        json_object_set_new(m, "KeyUsage", json_string(kms_usage_name(u))))
        return -1;
    for (int a = 0; a < KMS_ALG__COUNT; a++)
        if (kms_key_supports(s, u, (enum kms_alg)a) && json_array_append_new(arr, json_string(ALGS[a].name)))
            return -1;
    return 0;
}
