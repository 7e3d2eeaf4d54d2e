/*
 * keyspec.h — the kinds of customer master key (AWS KMS key specs and key usages) and what each may
 * do: which CreateKey pairings are valid, which encryption, signing and MAC algorithms a key lists in
 * DescribeKey, the hash of each algorithm, and RSA-OAEP plaintext limits. Pure tables; no state.
 */
#ifndef ENVELOPEFS_KMS_KEYSPEC_H
#define ENVELOPEFS_KMS_KEYSPEC_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <openssl/evp.h>

enum kms_key_spec {
    KMS_SPEC_SYMMETRIC = 0, /* SYMMETRIC_DEFAULT: AES-256-GCM (the only kind before keystore format 2) */
    KMS_SPEC_RSA_2048,
    KMS_SPEC_RSA_3072,
    KMS_SPEC_RSA_4096,
    KMS_SPEC_ECC_NIST_P256,
    KMS_SPEC_ECC_NIST_P384,
    KMS_SPEC_ECC_NIST_P521,
    KMS_SPEC_ECC_SECG_P256K1,
    KMS_SPEC_HMAC_224,
    KMS_SPEC_HMAC_256,
    KMS_SPEC_HMAC_384,
    KMS_SPEC_HMAC_512,
    KMS_SPEC__COUNT
};

enum kms_key_usage { KMS_USAGE_ENCRYPT_DECRYPT = 0, KMS_USAGE_SIGN_VERIFY, KMS_USAGE_GENERATE_VERIFY_MAC, KMS_USAGE__COUNT };

/* Algorithms (AWS names), one enum across encryption, signing and MAC. */
enum kms_alg {
    KMS_ALG_SYMMETRIC_DEFAULT = 0,
    KMS_ALG_RSAES_OAEP_SHA_1,
    KMS_ALG_RSAES_OAEP_SHA_256,
    KMS_ALG_RSASSA_PKCS1_V1_5_SHA_256,
    KMS_ALG_RSASSA_PKCS1_V1_5_SHA_384,
    KMS_ALG_RSASSA_PKCS1_V1_5_SHA_512,
    KMS_ALG_RSASSA_PSS_SHA_256,
    KMS_ALG_RSASSA_PSS_SHA_384,
    KMS_ALG_RSASSA_PSS_SHA_512,
    KMS_ALG_ECDSA_SHA_256,
    KMS_ALG_ECDSA_SHA_384,
    KMS_ALG_ECDSA_SHA_512,
    KMS_ALG_HMAC_SHA_224,
    KMS_ALG_HMAC_SHA_256,
    KMS_ALG_HMAC_SHA_384,
    KMS_ALG_HMAC_SHA_512,
    KMS_ALG__COUNT
};

enum kms_alg_kind { KMS_ALG_ENCRYPT, KMS_ALG_SIGN, KMS_ALG_MAC };

const char *kms_spec_name(enum kms_key_spec s);
const char *kms_usage_name(enum kms_key_usage u);
const char *kms_alg_name(enum kms_alg a);
/* Name → value; -1 if unknown. */
int kms_spec_parse(const char *name);
int kms_usage_parse(const char *name);
/* An algorithm of the given kind by name; -1 if the name is not one of that kind. */
int kms_alg_parse(enum kms_alg_kind kind, const char *name);

bool kms_spec_is_rsa(enum kms_key_spec s);
bool kms_spec_is_ecc(enum kms_key_spec s);
bool kms_spec_is_hmac(enum kms_key_spec s);
bool kms_spec_is_asymmetric(enum kms_key_spec s);
/* RSA modulus bits; OpenSSL curve NID for ECC; 0 otherwise. */
int kms_spec_rsa_bits(enum kms_key_spec s);
int kms_spec_curve_nid(enum kms_key_spec s);
/* HMAC key length in bytes (the spec's bit count / 8); 0 otherwise. */
size_t kms_spec_hmac_key_len(enum kms_key_spec s);

/* Whether CreateKey may pair this spec with this usage. */
bool kms_spec_usage_valid(enum kms_key_spec s, enum kms_key_usage u);
/* The usage AWS defaults to when CreateKey names none, or -1 where KeyUsage is required. */
int kms_spec_default_usage(enum kms_key_spec s);
/* Whether a key of (spec, usage) supports algorithm a. */
bool kms_key_supports(enum kms_key_spec s, enum kms_key_usage u, enum kms_alg a);

/* The hash an algorithm uses (SHA-1 for OAEP SHA-1, ...); NULL for SYMMETRIC_DEFAULT. Never freed. */
const EVP_MD *kms_alg_md(enum kms_alg a);
/* Digest length in bytes of the algorithm's hash (the length a DIGEST message must have). */
size_t kms_alg_digest_len(enum kms_alg a);
/* Largest plaintext an RSAES algorithm encrypts under an RSA spec: k - 2·hLen - 2 (AWS's limits). */
size_t kms_rsa_oaep_max(enum kms_key_spec s, enum kms_alg a);

/* Add KeySpec, CustomerMasterKeySpec, KeyUsage and the algorithm lists (EncryptionAlgorithms,
 * SigningAlgorithms or MacAlgorithms) of a key to a KeyMetadata / GetPublicKey object. 0, or -1 on OOM. */
int kms_spec_describe(json_t *m, enum kms_key_spec s, enum kms_key_usage u);

#endif
