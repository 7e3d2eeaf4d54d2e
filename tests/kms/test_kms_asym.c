/*
 * test_kms_asym.c — asymmetric keys, HMAC keys and data key pairs through the core's single dispatch
 * point (issue 17): CreateKey pairings of key spec and usage, DescribeKey's algorithm lists, GetPublicKey,
 * Sign / Verify (RAW and DIGEST, every algorithm, checked against OpenSSL with the downloaded public key),
 * RSA-OAEP Encrypt / Decrypt at AWS's plaintext limits (and ciphertext made by OpenSSL outside), HMAC,
 * GenerateDataKeyPair(WithoutPlaintext), ReEncrypt with RSA keys, imported key material (every wrapping
 * algorithm, expiry with an injected clock, reimport, tokens), every wrong pairing's AWS error, rotation refused, persistence
 * across a reopen, a tampered key spec column, and the migration of a keystore format 1 (the golden store
 * tests/fs/golden/v1/store, argv[1]) to format 2.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sodium.h>
#include <sqlite3.h>

#include "envelopefs/kms.h"
#include "testutil.h"
#include "kmstest.h"

static char g_dir[256], g_store[300], g_keyfile[320];

static kms_err callf(kms_core *c, json_t **out, const char *op, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static kms_err callf(kms_core *c, json_t **out, const char *op, const char *fmt, ...)
{
    static __thread char body[65536];
    char *resp = NULL, *msg = NULL;
    size_t len = 0;
    va_list ap;
    kms_err e;
    kms_principal p = {.account = "111122223333", .user = "test", .source = "test"};
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    e = kms_core_call(c, &p, op, body, strlen(body), &resp, &len, &msg);
    if (out)
        *out = e ? NULL : json_loadb(resp, len, 0, NULL);
    if (e && getenv("TEST_VERBOSE"))
        fprintf(stderr, "%s -> %s: %s\n", op, kms_err_name(e), msg ? msg : "");
    kms_response_free(resp, len);
    free(msg);
    return e;
}

static const char *jstr(json_t *o, const char *f) { return json_string_value(json_object_get(o, f)); }

static kms_core *open_store(const char *dir)
{
    kms_core *c = kmstest_open(dir, g_keyfile);
    return c;
}

/* CreateKey of spec/usage; returns the malloc'd key id. */
static char *mkkey(kms_core *c, const char *spec, const char *usage)
{
    json_t *r;
    char *id;
    CHECK(callf(c, &r, "CreateKey", "{\"KeySpec\":\"%s\",\"KeyUsage\":\"%s\"}", spec, usage) == KMS_OK);
    json_t *m = json_object_get(r, "KeyMetadata");
    CHECK(!strcmp(jstr(m, "KeySpec"), spec) && !strcmp(jstr(m, "KeyUsage"), usage));
    id = strdup(jstr(m, "KeyId"));
    json_decref(r);
    return id;
}

static char *b64(const uint8_t *b, size_t n)
{
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(cap);
    sodium_bin2base64(s, cap, b, n, sodium_base64_VARIANT_ORIGINAL);
    return s;
}

static size_t unb64(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    CHECK(s && sodium_base642bin(out, cap, s, strlen(s), NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) == 0);
    return n;
}

static EVP_PKEY *public_key(kms_core *c, const char *id, const char *spec, const char *usage)
{
    json_t *r;
    uint8_t der[4096];
    const unsigned char *p = der;
    size_t n;
    EVP_PKEY *pk;
    CHECK(callf(c, &r, "GetPublicKey", "{\"KeyId\":\"%s\"}", id) == KMS_OK);
    CHECK(!strcmp(jstr(r, "KeySpec"), spec) && !strcmp(jstr(r, "KeyUsage"), usage));
    CHECK(!strncmp(jstr(r, "KeyId"), "arn:aws:kms:", 12));
    CHECK(json_array_size(json_object_get(r, !strcmp(usage, "SIGN_VERIFY") ? "SigningAlgorithms" : "EncryptionAlgorithms")) > 0);
    n = unb64(jstr(r, "PublicKey"), der, sizeof der);
    pk = d2i_PUBKEY(NULL, &p, (long)n);
    CHECK(pk && p == der + n);
    json_decref(r);
    return pk;
}

static const EVP_MD *md_of(const char *alg)
{
    return strstr(alg, "512") ? EVP_sha512() : strstr(alg, "384") ? EVP_sha384() : EVP_sha256();
}

/* Verify sig over msg outside the service, as `openssl dgst -verify` would. */
static int ossl_verify(EVP_PKEY *pk, const char *alg, const uint8_t *msg, size_t n, const uint8_t *sig, size_t slen)
{
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    int ok = EVP_DigestVerifyInit(mc, &pc, md_of(alg), NULL, pk) == 1;
    if (ok && strstr(alg, "PSS"))
        ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) == 1;
    ok = ok && EVP_DigestVerify(mc, sig, slen, msg, n) == 1;
    EVP_MD_CTX_free(mc);
    return ok;
}

static void test_create_and_describe(kms_core *c)
{
    json_t *r, *m;
    static const char *const bad[][2] = {
        {"ECC_NIST_P256", "ENCRYPT_DECRYPT"}, {"SYMMETRIC_DEFAULT", "SIGN_VERIFY"}, {"HMAC_256", "ENCRYPT_DECRYPT"},
        {"RSA_2048", "GENERATE_VERIFY_MAC"},  {"ECC_SECG_P256K1", "GENERATE_VERIFY_MAC"}, {"HMAC_512", "SIGN_VERIFY"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(callf(c, NULL, "CreateKey", "{\"KeySpec\":\"%s\",\"KeyUsage\":\"%s\"}", bad[i][0], bad[i][1]) ==
              KMS_ERR_VALIDATION);
    CHECK(callf(c, NULL, "CreateKey", "{\"KeySpec\":\"RSA_2048\"}") == KMS_ERR_VALIDATION); /* usage required */
    CHECK(callf(c, NULL, "CreateKey", "{\"KeySpec\":\"RSA_2048\",\"CustomerMasterKeySpec\":\"RSA_2048\","
                                      "\"KeyUsage\":\"SIGN_VERIFY\"}") == KMS_ERR_VALIDATION);
    CHECK(callf(c, NULL, "CreateKey", "{\"KeySpec\":\"HMAC_256\"}") == KMS_ERR_VALIDATION);
    CHECK(callf(c, NULL, "CreateKey", "{\"KeySpec\":\"RSA_1024\",\"KeyUsage\":\"SIGN_VERIFY\"}") == KMS_ERR_VALIDATION);
    CHECK(callf(c, NULL, "CreateKey", "{\"KeySpec\":\"ECC_NIST_P256\",\"KeyUsage\":\"SIGNING\"}") == KMS_ERR_VALIDATION);
    /* CustomerMasterKeySpec (deprecated) is still understood */
    CHECK(callf(c, &r, "CreateKey", "{\"CustomerMasterKeySpec\":\"ECC_NIST_P384\",\"KeyUsage\":\"SIGN_VERIFY\"}") == KMS_OK);
    m = json_object_get(r, "KeyMetadata");
    CHECK(!strcmp(jstr(m, "KeySpec"), "ECC_NIST_P384") && !strcmp(jstr(m, "CustomerMasterKeySpec"), "ECC_NIST_P384"));
    CHECK(json_array_size(json_object_get(m, "SigningAlgorithms")) == 1);
    CHECK(!strcmp(json_string_value(json_array_get(json_object_get(m, "SigningAlgorithms"), 0)), "ECDSA_SHA_384"));
    CHECK(!json_object_get(m, "EncryptionAlgorithms") && !json_object_get(m, "MacAlgorithms"));
    json_decref(r);
    /* A symmetric key lists SYMMETRIC_DEFAULT only, as before */
    CHECK(callf(c, &r, "CreateKey", "{}") == KMS_OK);
    m = json_object_get(r, "KeyMetadata");
    CHECK(!strcmp(jstr(m, "KeySpec"), "SYMMETRIC_DEFAULT") && !strcmp(jstr(m, "KeyUsage"), "ENCRYPT_DECRYPT"));
    CHECK(json_array_size(json_object_get(m, "EncryptionAlgorithms")) == 1);
    CHECK(callf(c, NULL, "GetPublicKey", "{\"KeyId\":\"%s\"}", jstr(m, "KeyId")) == KMS_ERR_UNSUPPORTED_OPERATION);
    json_decref(r);
    {
        char *h = mkkey(c, "HMAC_384", "GENERATE_VERIFY_MAC");
        CHECK(callf(c, &r, "DescribeKey", "{\"KeyId\":\"%s\"}", h) == KMS_OK);
        m = json_object_get(r, "KeyMetadata");
        CHECK(!strcmp(json_string_value(json_array_get(json_object_get(m, "MacAlgorithms"), 0)), "HMAC_SHA_384"));
        CHECK(json_array_size(json_object_get(m, "MacAlgorithms")) == 1 && !json_object_get(m, "EncryptionAlgorithms"));
        json_decref(r);
        CHECK(callf(c, NULL, "GetPublicKey", "{\"KeyId\":\"%s\"}", h) == KMS_ERR_UNSUPPORTED_OPERATION);
        free(h);
    }
}

static void sign_verify_case(kms_core *c, const char *spec, const char *alg)
{
    char *id = mkkey(c, spec, "SIGN_VERIFY");
    EVP_PKEY *pk = public_key(c, id, spec, "SIGN_VERIFY");
    const uint8_t msg[] = "envelopefs: a message to sign";
    uint8_t sig[1024], dgst[64], big[4097];
    unsigned int dl = 0;
    size_t slen;
    char *m64 = b64(msg, sizeof msg - 1), *d64, *s64, *big64;
    json_t *r;

    CHECK(EVP_Digest(msg, sizeof msg - 1, dgst, &dl, md_of(alg), NULL) == 1);
    d64 = b64(dgst, dl);
    /* RAW: signed here, verified by OpenSSL with the public key and by Verify as RAW and as DIGEST */
    CHECK(callf(c, &r, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"SigningAlgorithm\":\"%s\"}", id, m64, alg) == KMS_OK);
    CHECK(!strcmp(jstr(r, "SigningAlgorithm"), alg));
    slen = unb64(jstr(r, "Signature"), sig, sizeof sig);
    s64 = strdup(jstr(r, "Signature"));
    json_decref(r);
    CHECK(ossl_verify(pk, alg, msg, sizeof msg - 1, sig, slen));
    CHECK(callf(c, &r, "Verify", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"Signature\":\"%s\",\"SigningAlgorithm\":\"%s\"}",
                id, m64, s64, alg) == KMS_OK);
    CHECK(json_is_true(json_object_get(r, "SignatureValid")));
    json_decref(r);
    CHECK(callf(c, NULL, "Verify",
                "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"MessageType\":\"DIGEST\",\"Signature\":\"%s\",\"SigningAlgorithm\":\"%s\"}",
                id, d64, s64, alg) == KMS_OK);
    free(s64);
    /* DIGEST: the digest is signed as is; OpenSSL verifies it over the message */
    CHECK(callf(c, &r, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"MessageType\":\"DIGEST\",\"SigningAlgorithm\":\"%s\"}",
                id, d64, alg) == KMS_OK);
    slen = unb64(jstr(r, "Signature"), sig, sizeof sig);
    s64 = strdup(jstr(r, "Signature"));
    json_decref(r);
    CHECK(ossl_verify(pk, alg, msg, sizeof msg - 1, sig, slen));
    /* a changed message, a changed signature, another algorithm's hash: KMSInvalidSignatureException */
    CHECK(callf(c, NULL, "Verify", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"Signature\":\"%s\",\"SigningAlgorithm\":\"%s\"}",
                id, "b3RoZXI=", s64, alg) == KMS_ERR_INVALID_SIGNATURE);
    sig[slen / 2] ^= 1;
    {
        char *bad = b64(sig, slen);
        CHECK(callf(c, NULL, "Verify", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"Signature\":\"%s\",\"SigningAlgorithm\":\"%s\"}",
                    id, m64, bad, alg) == KMS_ERR_INVALID_SIGNATURE);
        free(bad);
    }
    CHECK(callf(c, NULL, "Verify", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"Signature\":\"AAAA\",\"SigningAlgorithm\":\"%s\"}",
                id, m64, alg) == KMS_ERR_INVALID_SIGNATURE);
    /* DIGEST of the wrong length; RAW over 4096 bytes; unknown MessageType; no algorithm */
    CHECK(callf(c, NULL, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"MessageType\":\"DIGEST\",\"SigningAlgorithm\":\"%s\"}",
                id, m64, alg) == KMS_ERR_VALIDATION);
    memset(big, 'a', sizeof big);
    big64 = b64(big, sizeof big);
    CHECK(callf(c, NULL, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"SigningAlgorithm\":\"%s\"}", id, big64, alg) ==
          KMS_ERR_VALIDATION);
    free(big64);
    big64 = b64(big, 4096);
    CHECK(callf(c, NULL, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"SigningAlgorithm\":\"%s\"}", id, big64, alg) == KMS_OK);
    free(big64);
    CHECK(callf(c, NULL, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"MessageType\":\"HASHED\",\"SigningAlgorithm\":\"%s\"}",
                id, m64, alg) == KMS_ERR_VALIDATION);
    CHECK(callf(c, NULL, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"%s\"}", id, m64) == KMS_ERR_VALIDATION);
    CHECK(callf(c, NULL, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"SigningAlgorithm\":\"NOPE\"}", id, m64) ==
          KMS_ERR_VALIDATION);
    /* an algorithm of another key spec: InvalidKeyUsageException */
    CHECK(callf(c, NULL, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"SigningAlgorithm\":\"%s\"}", id, m64,
                strncmp(spec, "RSA", 3) ? "RSASSA_PSS_SHA_256" : "ECDSA_SHA_256") == KMS_ERR_INVALID_KEY_USAGE);
    /* a signing key encrypts nothing, makes no data keys and is not rotated */
    CHECK(callf(c, NULL, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\",\"EncryptionAlgorithm\":\"RSAES_OAEP_SHA_256\"}",
                id) == KMS_ERR_INVALID_KEY_USAGE);
    CHECK(callf(c, NULL, "GenerateDataKey", "{\"KeyId\":\"%s\",\"KeySpec\":\"AES_256\"}", id) == KMS_ERR_INVALID_KEY_USAGE);
    CHECK(callf(c, NULL, "EnableKeyRotation", "{\"KeyId\":\"%s\"}", id) == KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK(callf(c, NULL, "RotateKeyOnDemand", "{\"KeyId\":\"%s\"}", id) == KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK(callf(c, NULL, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", id) == KMS_ERR_UNSUPPORTED_OPERATION);
    /* a disabled key signs nothing */
    CHECK(callf(c, NULL, "DisableKey", "{\"KeyId\":\"%s\"}", id) == KMS_OK);
    CHECK(callf(c, NULL, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"SigningAlgorithm\":\"%s\"}", id, m64, alg) ==
          KMS_ERR_DISABLED);
    CHECK(callf(c, NULL, "GetPublicKey", "{\"KeyId\":\"%s\"}", id) == KMS_ERR_DISABLED);
    CHECK(callf(c, NULL, "EnableKey", "{\"KeyId\":\"%s\"}", id) == KMS_OK);
    EVP_PKEY_free(pk);
    free(m64);
    free(d64);
    free(s64);
    free(id);
}

static void test_sign_verify(kms_core *c)
{
    static const char *const cases[][2] = {
        {"RSA_2048", "RSASSA_PSS_SHA_256"},        {"RSA_2048", "RSASSA_PKCS1_V1_5_SHA_256"},
        {"RSA_3072", "RSASSA_PSS_SHA_384"},        {"RSA_3072", "RSASSA_PKCS1_V1_5_SHA_384"},
        {"RSA_2048", "RSASSA_PSS_SHA_512"},        {"RSA_2048", "RSASSA_PKCS1_V1_5_SHA_512"},
        {"ECC_NIST_P256", "ECDSA_SHA_256"},        {"ECC_NIST_P384", "ECDSA_SHA_384"},
        {"ECC_NIST_P521", "ECDSA_SHA_512"},        {"ECC_SECG_P256K1", "ECDSA_SHA_256"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        sign_verify_case(c, cases[i][0], cases[i][1]);
    {
        /* ECC_NIST_P256 supports ECDSA_SHA_256 only */
        char *id = mkkey(c, "ECC_NIST_P256", "SIGN_VERIFY");
        CHECK(callf(c, NULL, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"SigningAlgorithm\":\"ECDSA_SHA_384\"}", id) ==
              KMS_ERR_INVALID_KEY_USAGE);
        free(id);
        /* a symmetric key and an HMAC key sign nothing */
        CHECK(callf(c, NULL, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"SigningAlgorithm\":\"ECDSA_SHA_256\"}",
                    (id = mkkey(c, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT"))) == KMS_ERR_INVALID_KEY_USAGE);
        free(id);
        CHECK(callf(c, NULL, "Verify",
                    "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"Signature\":\"aGk=\",\"SigningAlgorithm\":\"ECDSA_SHA_256\"}",
                    (id = mkkey(c, "HMAC_256", "GENERATE_VERIFY_MAC"))) == KMS_ERR_INVALID_KEY_USAGE);
        free(id);
    }
}

static void encrypt_case(kms_core *c, const char *spec, const char *alg, size_t max)
{
    char *id = mkkey(c, spec, "ENCRYPT_DECRYPT");
    EVP_PKEY *pk = public_key(c, id, spec, "ENCRYPT_DECRYPT");
    uint8_t pt[600], ct[1024];
    size_t clen = sizeof ct;
    char *p64, *c64;
    json_t *r;
    EVP_PKEY_CTX *pc;
    const EVP_MD *md = strstr(alg, "SHA_1") ? EVP_sha1() : EVP_sha256();

    randombytes_buf(pt, sizeof pt);
    p64 = b64(pt, max);
    CHECK(callf(c, &r, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"%s\",\"EncryptionAlgorithm\":\"%s\"}", id, p64, alg) ==
          KMS_OK);
    CHECK(!strcmp(jstr(r, "EncryptionAlgorithm"), alg));
    c64 = strdup(jstr(r, "CiphertextBlob"));
    CHECK(unb64(c64, ct, sizeof ct) == (size_t)EVP_PKEY_get_size(pk));
    json_decref(r);
    CHECK(callf(c, &r, "Decrypt", "{\"KeyId\":\"%s\",\"CiphertextBlob\":\"%s\",\"EncryptionAlgorithm\":\"%s\"}", id, c64,
                alg) == KMS_OK);
    CHECK(!strcmp(jstr(r, "Plaintext"), p64) && !strcmp(jstr(r, "EncryptionAlgorithm"), alg));
    json_decref(r);
    /* Decrypt needs the key and the algorithm: without them, or with the other one, InvalidCiphertext */
    CHECK(callf(c, NULL, "Decrypt", "{\"CiphertextBlob\":\"%s\",\"EncryptionAlgorithm\":\"%s\"}", c64, alg) ==
          KMS_ERR_INVALID_KEY_USAGE); /* without KeyId the symmetric path sees an algorithm it does not support */
    CHECK(callf(c, NULL, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", c64) == KMS_ERR_INVALID_CIPHERTEXT);
    CHECK(callf(c, NULL, "Decrypt", "{\"KeyId\":\"%s\",\"CiphertextBlob\":\"%s\",\"EncryptionAlgorithm\":\"%s\"}", id, c64,
                strstr(alg, "SHA_1") ? "RSAES_OAEP_SHA_256" : "RSAES_OAEP_SHA_1") == KMS_ERR_INVALID_CIPHERTEXT);
    CHECK(callf(c, NULL, "Decrypt", "{\"KeyId\":\"%s\",\"CiphertextBlob\":\"%s\"}", id, c64) == KMS_ERR_INVALID_KEY_USAGE);
    free(c64);
    /* one byte over the limit; no algorithm; an encryption context */
    free(p64);
    p64 = b64(pt, max + 1);
    CHECK(callf(c, NULL, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"%s\",\"EncryptionAlgorithm\":\"%s\"}", id, p64, alg) ==
          KMS_ERR_VALIDATION);
    free(p64);
    CHECK(callf(c, NULL, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\"}", id) == KMS_ERR_INVALID_KEY_USAGE);
    CHECK(callf(c, NULL, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\",\"EncryptionAlgorithm\":\"%s\","
                                    "\"EncryptionContext\":{\"a\":\"b\"}}", id, alg) == KMS_ERR_VALIDATION);
    CHECK(callf(c, NULL, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\",\"EncryptionAlgorithm\":\"RSAES_PKCS1\"}", id) ==
          KMS_ERR_VALIDATION);
    /* an encryption key signs nothing */
    CHECK(callf(c, NULL, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"SigningAlgorithm\":\"RSASSA_PSS_SHA_256\"}", id) ==
          KMS_ERR_INVALID_KEY_USAGE);
    /* ciphertext made outside with the public key (OpenSSL, as `openssl pkeyutl -encrypt`) decrypts */
    pc = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    CHECK(pc && EVP_PKEY_encrypt_init(pc) == 1 && EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING) == 1 &&
          EVP_PKEY_CTX_set_rsa_oaep_md(pc, md) == 1 && EVP_PKEY_CTX_set_rsa_mgf1_md(pc, md) == 1 &&
          EVP_PKEY_encrypt(pc, ct, &clen, pt, 100) == 1);
    EVP_PKEY_CTX_free(pc);
    c64 = b64(ct, clen);
    p64 = b64(pt, 100);
    CHECK(callf(c, &r, "Decrypt", "{\"KeyId\":\"%s\",\"CiphertextBlob\":\"%s\",\"EncryptionAlgorithm\":\"%s\"}", id, c64,
                alg) == KMS_OK);
    CHECK(!strcmp(jstr(r, "Plaintext"), p64));
    json_decref(r);
    /* a flipped byte fails */
    ct[5] ^= 1;
    free(c64);
    c64 = b64(ct, clen);
    CHECK(callf(c, NULL, "Decrypt", "{\"KeyId\":\"%s\",\"CiphertextBlob\":\"%s\",\"EncryptionAlgorithm\":\"%s\"}", id, c64,
                alg) == KMS_ERR_INVALID_CIPHERTEXT);
    free(c64);
    free(p64);
    EVP_PKEY_free(pk);
    free(id);
}

static void test_encrypt_decrypt(kms_core *c)
{
    /* AWS's limits: k - 2·hLen - 2 */
    encrypt_case(c, "RSA_2048", "RSAES_OAEP_SHA_1", 214);
    encrypt_case(c, "RSA_2048", "RSAES_OAEP_SHA_256", 190);
    encrypt_case(c, "RSA_3072", "RSAES_OAEP_SHA_1", 342);
    encrypt_case(c, "RSA_3072", "RSAES_OAEP_SHA_256", 318);
    encrypt_case(c, "RSA_4096", "RSAES_OAEP_SHA_1", 470);
    encrypt_case(c, "RSA_4096", "RSAES_OAEP_SHA_256", 446);
    {
        char *id = mkkey(c, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT");
        CHECK(callf(c, NULL, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\",\"EncryptionAlgorithm\":\"RSAES_OAEP_SHA_1\"}",
                    id) == KMS_ERR_INVALID_KEY_USAGE);
        free(id);
        id = mkkey(c, "ECC_NIST_P256", "SIGN_VERIFY");
        CHECK(callf(c, NULL, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\"}", id) == KMS_ERR_INVALID_KEY_USAGE);
        CHECK(callf(c, NULL, "Decrypt", "{\"KeyId\":\"%s\",\"CiphertextBlob\":\"aGk=\"}", id) == KMS_ERR_INVALID_KEY_USAGE);
        free(id);
    }
}

/* ReEncrypt between symmetric and RSA keys, in both directions (AWS allows asymmetric ENCRYPT_DECRYPT keys). */
static void test_re_encrypt(kms_core *c)
{
    char *sym = mkkey(c, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT"), *rsa = mkkey(c, "RSA_2048", "ENCRYPT_DECRYPT");
    char *rsb = mkkey(c, "RSA_3072", "ENCRYPT_DECRYPT"), *sig = mkkey(c, "ECC_NIST_P256", "SIGN_VERIFY"), *b1, *b2, *b3;
    json_t *r;
    CHECK(callf(c, &r, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"c2VjcmV0\",\"EncryptionContext\":{\"a\":\"1\"}}", sym) == KMS_OK);
    b1 = strdup(jstr(r, "CiphertextBlob"));
    json_decref(r);
    /* symmetric → RSA */
    CHECK(callf(c, &r, "ReEncrypt", "{\"CiphertextBlob\":\"%s\",\"SourceEncryptionContext\":{\"a\":\"1\"},"
                                    "\"DestinationKeyId\":\"%s\",\"DestinationEncryptionAlgorithm\":\"RSAES_OAEP_SHA_256\"}",
                b1, rsa) == KMS_OK);
    CHECK(!strcmp(jstr(r, "DestinationEncryptionAlgorithm"), "RSAES_OAEP_SHA_256") &&
          !strcmp(jstr(r, "SourceEncryptionAlgorithm"), "SYMMETRIC_DEFAULT"));
    b2 = strdup(jstr(r, "CiphertextBlob"));
    json_decref(r);
    CHECK(callf(c, &r, "Decrypt", "{\"KeyId\":\"%s\",\"CiphertextBlob\":\"%s\",\"EncryptionAlgorithm\":\"RSAES_OAEP_SHA_256\"}",
                rsa, b2) == KMS_OK);
    CHECK(!strcmp(jstr(r, "Plaintext"), "c2VjcmV0"));
    json_decref(r);
    /* RSA → RSA (another key and algorithm) → symmetric */
    CHECK(callf(c, &r, "ReEncrypt", "{\"CiphertextBlob\":\"%s\",\"SourceKeyId\":\"%s\",\"SourceEncryptionAlgorithm\":"
                                    "\"RSAES_OAEP_SHA_256\",\"DestinationKeyId\":\"%s\",\"DestinationEncryptionAlgorithm\":"
                                    "\"RSAES_OAEP_SHA_1\"}", b2, rsa, rsb) == KMS_OK);
    b3 = strdup(jstr(r, "CiphertextBlob"));
    json_decref(r);
    CHECK(callf(c, &r, "ReEncrypt", "{\"CiphertextBlob\":\"%s\",\"SourceKeyId\":\"%s\",\"SourceEncryptionAlgorithm\":"
                                    "\"RSAES_OAEP_SHA_1\",\"DestinationKeyId\":\"%s\",\"DestinationEncryptionContext\":{\"b\":\"2\"}}",
                b3, rsb, sym) == KMS_OK);
    CHECK(!strcmp(jstr(r, "SourceEncryptionAlgorithm"), "RSAES_OAEP_SHA_1"));
    CHECK(callf(c, NULL, "Decrypt", "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"b\":\"2\"}}",
                jstr(r, "CiphertextBlob")) == KMS_OK);
    json_decref(r);
    /* errors: no source algorithm for an RSA ciphertext; no destination algorithm; a context for RSA; a signing key */
    CHECK(callf(c, NULL, "ReEncrypt", "{\"CiphertextBlob\":\"%s\",\"SourceKeyId\":\"%s\",\"DestinationKeyId\":\"%s\"}",
                b2, rsa, sym) == KMS_ERR_INVALID_KEY_USAGE);
    CHECK(callf(c, NULL, "ReEncrypt", "{\"CiphertextBlob\":\"%s\",\"SourceEncryptionContext\":{\"a\":\"1\"},"
                                      "\"DestinationKeyId\":\"%s\"}", b1, rsa) == KMS_ERR_INVALID_KEY_USAGE);
    CHECK(callf(c, NULL, "ReEncrypt", "{\"CiphertextBlob\":\"%s\",\"SourceEncryptionContext\":{\"a\":\"1\"},"
                                      "\"DestinationKeyId\":\"%s\",\"DestinationEncryptionAlgorithm\":\"RSAES_OAEP_SHA_1\","
                                      "\"DestinationEncryptionContext\":{\"x\":\"y\"}}", b1, rsa) == KMS_ERR_VALIDATION);
    CHECK(callf(c, NULL, "ReEncrypt", "{\"CiphertextBlob\":\"%s\",\"SourceEncryptionContext\":{\"a\":\"1\"},"
                                      "\"DestinationKeyId\":\"%s\"}", b1, sig) == KMS_ERR_INVALID_KEY_USAGE);
    CHECK(callf(c, NULL, "ReEncrypt", "{\"CiphertextBlob\":\"%s\",\"SourceKeyId\":\"%s\",\"SourceEncryptionAlgorithm\":"
                                      "\"RSAES_OAEP_SHA_1\",\"DestinationKeyId\":\"%s\"}", b2, rsa, sym) == KMS_ERR_INVALID_CIPHERTEXT);
    free(b1);
    free(b2);
    free(b3);
    free(sym);
    free(rsa);
    free(rsb);
    free(sig);
}

static void test_hmac(kms_core *c)
{
    static const struct {
        const char *spec, *alg;
        size_t len;
    } cases[] = {{"HMAC_224", "HMAC_SHA_224", 28}, {"HMAC_256", "HMAC_SHA_256", 32},
                 {"HMAC_384", "HMAC_SHA_384", 48}, {"HMAC_512", "HMAC_SHA_512", 64}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *id = mkkey(c, cases[i].spec, "GENERATE_VERIFY_MAC"), *mac;
        uint8_t raw[128];
        json_t *r;
        CHECK(callf(c, &r, "GenerateMac", "{\"KeyId\":\"%s\",\"Message\":\"aGVsbG8=\",\"MacAlgorithm\":\"%s\"}", id,
                    cases[i].alg) == KMS_OK);
        CHECK(unb64(jstr(r, "Mac"), raw, sizeof raw) == cases[i].len && !strcmp(jstr(r, "MacAlgorithm"), cases[i].alg));
        mac = strdup(jstr(r, "Mac"));
        json_decref(r);
        CHECK(callf(c, &r, "GenerateMac", "{\"KeyId\":\"%s\",\"Message\":\"aGVsbG8=\",\"MacAlgorithm\":\"%s\"}", id,
                    cases[i].alg) == KMS_OK);
        CHECK(!strcmp(jstr(r, "Mac"), mac)); /* deterministic */
        json_decref(r);
        CHECK(callf(c, &r, "VerifyMac", "{\"KeyId\":\"%s\",\"Message\":\"aGVsbG8=\",\"Mac\":\"%s\",\"MacAlgorithm\":\"%s\"}",
                    id, mac, cases[i].alg) == KMS_OK);
        CHECK(json_is_true(json_object_get(r, "MacValid")));
        json_decref(r);
        CHECK(callf(c, NULL, "VerifyMac", "{\"KeyId\":\"%s\",\"Message\":\"aGVsbA==\",\"Mac\":\"%s\",\"MacAlgorithm\":\"%s\"}",
                    id, mac, cases[i].alg) == KMS_ERR_INVALID_MAC);
        raw[0] ^= 1;
        {
            char *bad = b64(raw, cases[i].len), *shorter = b64(raw + 1, cases[i].len - 1);
            CHECK(callf(c, NULL, "VerifyMac", "{\"KeyId\":\"%s\",\"Message\":\"aGVsbG8=\",\"Mac\":\"%s\",\"MacAlgorithm\":\"%s\"}",
                        id, bad, cases[i].alg) == KMS_ERR_INVALID_MAC);
            CHECK(callf(c, NULL, "VerifyMac", "{\"KeyId\":\"%s\",\"Message\":\"aGVsbG8=\",\"Mac\":\"%s\",\"MacAlgorithm\":\"%s\"}",
                        id, shorter, cases[i].alg) == KMS_ERR_INVALID_MAC);
            free(bad);
            free(shorter);
        }
        /* another spec's algorithm; an unknown one; no message; the wrong operations */
        CHECK(callf(c, NULL, "GenerateMac", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"MacAlgorithm\":\"%s\"}", id,
                    i ? "HMAC_SHA_224" : "HMAC_SHA_256") == KMS_ERR_INVALID_KEY_USAGE);
        CHECK(callf(c, NULL, "GenerateMac", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"MacAlgorithm\":\"HMAC_MD5\"}", id) ==
              KMS_ERR_VALIDATION);
        CHECK(callf(c, NULL, "GenerateMac", "{\"KeyId\":\"%s\",\"MacAlgorithm\":\"%s\"}", id, cases[i].alg) == KMS_ERR_VALIDATION);
        CHECK(callf(c, NULL, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\"}", id) == KMS_ERR_INVALID_KEY_USAGE);
        CHECK(callf(c, NULL, "EnableKeyRotation", "{\"KeyId\":\"%s\"}", id) == KMS_ERR_UNSUPPORTED_OPERATION);
        free(mac);
        free(id);
    }
    {
        char *id = mkkey(c, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT");
        CHECK(callf(c, NULL, "GenerateMac", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"MacAlgorithm\":\"HMAC_SHA_256\"}", id) ==
              KMS_ERR_INVALID_KEY_USAGE);
        free(id);
    }
}

static void test_data_key_pairs(kms_core *c)
{
    static const char *const specs[] = {"RSA_2048", "RSA_3072", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521",
                                        "ECC_SECG_P256K1"};
    char *wrap = mkkey(c, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT"), *asym = mkkey(c, "RSA_2048", "ENCRYPT_DECRYPT");
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        json_t *r, *d;
        uint8_t priv[4096], pub[4096], dec[4096], sig[1024];
        const unsigned char *p;
        size_t pl, ul, dl, sl = sizeof sig;
        EVP_PKEY *sk, *vk;
        EVP_MD_CTX *mc;
        PKCS8_PRIV_KEY_INFO *p8;
        CHECK(callf(c, &r, "GenerateDataKeyPair",
                    "{\"KeyId\":\"%s\",\"KeyPairSpec\":\"%s\",\"EncryptionContext\":{\"use\":\"test\"}}", wrap, specs[i]) == KMS_OK);
        CHECK(!strcmp(jstr(r, "KeyPairSpec"), specs[i]) && !strncmp(jstr(r, "KeyId"), "arn:aws:kms:", 12));
        pl = unb64(jstr(r, "PrivateKeyPlaintext"), priv, sizeof priv);
        ul = unb64(jstr(r, "PublicKey"), pub, sizeof pub);
        /* the private key is PKCS#8 and belongs to the public key: a signature by one verifies with the other */
        p = priv;
        CHECK((p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)pl)) != NULL && p == priv + pl);
        CHECK((sk = EVP_PKCS82PKEY(p8)) != NULL);
        PKCS8_PRIV_KEY_INFO_free(p8);
        p = pub;
        CHECK((vk = d2i_PUBKEY(NULL, &p, (long)ul)) != NULL);
        CHECK(EVP_PKEY_eq(sk, vk) == 1);
        mc = EVP_MD_CTX_new();
        CHECK(EVP_DigestSignInit(mc, NULL, EVP_sha256(), NULL, sk) == 1 && EVP_DigestSign(mc, sig, &sl, pub, ul) == 1);
        EVP_MD_CTX_free(mc);
        CHECK(ossl_verify(vk, "RSASSA_PKCS1_V1_5_SHA_256", pub, ul, sig, sl));
        /* the wrapped copy decrypts, under the same context only */
        CHECK(callf(c, &d, "Decrypt", "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"use\":\"test\"}}",
                    jstr(r, "PrivateKeyCiphertextBlob")) == KMS_OK);
        dl = unb64(jstr(d, "Plaintext"), dec, sizeof dec);
        CHECK(dl == pl && !memcmp(dec, priv, pl));
        json_decref(d);
        CHECK(callf(c, NULL, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", jstr(r, "PrivateKeyCiphertextBlob")) ==
              KMS_ERR_INVALID_CIPHERTEXT);
        json_decref(r);
        EVP_PKEY_free(sk);
        EVP_PKEY_free(vk);
        CHECK(callf(c, &r, "GenerateDataKeyPairWithoutPlaintext", "{\"KeyId\":\"%s\",\"KeyPairSpec\":\"%s\"}", wrap,
                    specs[i]) == KMS_OK);
        CHECK(!json_object_get(r, "PrivateKeyPlaintext") && jstr(r, "PrivateKeyCiphertextBlob") && jstr(r, "PublicKey"));
        json_decref(r);
    }
    CHECK(callf(c, NULL, "GenerateDataKeyPair", "{\"KeyId\":\"%s\",\"KeyPairSpec\":\"RSA_2048\"}", asym) ==
          KMS_ERR_INVALID_KEY_USAGE);
    CHECK(callf(c, NULL, "GenerateDataKeyPair", "{\"KeyId\":\"%s\",\"KeyPairSpec\":\"HMAC_256\"}", wrap) == KMS_ERR_VALIDATION);
    CHECK(callf(c, NULL, "GenerateDataKeyPair", "{\"KeyId\":\"%s\"}", wrap) == KMS_ERR_VALIDATION);
    CHECK(callf(c, NULL, "GenerateDataKeyPairWithoutPlaintext", "{\"KeyId\":\"%s\",\"KeyPairSpec\":\"RSA_1024\"}", wrap) ==
          KMS_ERR_VALIDATION);
    CHECK(callf(c, NULL, "GenerateDataKeyPair", "{\"KeyId\":\"alias/none\",\"KeyPairSpec\":\"RSA_2048\"}") ==
          KMS_ERR_NOT_FOUND);
    free(wrap);
    free(asym);
}

/* Signatures, verifications and RSA decryptions run with the core lock released: many threads at once,
 * beside calls that change the key tables, all succeed (and TSan sees no race, scripts/test). */
struct worker_arg {
    kms_core *c;
    const char *ecc, *rsa, *ct;
    int failures;
};

static void *asym_worker(void *p)
{
    struct worker_arg *w = p;
    for (int i = 0; i < 40; i++) {
        json_t *r;
        char *sig;
        if (callf(w->c, &r, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"SigningAlgorithm\":\"ECDSA_SHA_256\"}", w->ecc)) {
            w->failures++;
            continue;
        }
        sig = strdup(jstr(r, "Signature"));
        json_decref(r);
        if (callf(w->c, NULL, "Verify", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"Signature\":\"%s\",\"SigningAlgorithm\":"
                                        "\"ECDSA_SHA_256\"}", w->ecc, sig))
            w->failures++;
        free(sig);
        if (callf(w->c, NULL, "Decrypt", "{\"KeyId\":\"%s\",\"CiphertextBlob\":\"%s\",\"EncryptionAlgorithm\":"
                                         "\"RSAES_OAEP_SHA_256\"}", w->rsa, w->ct))
            w->failures++;
    }
    return NULL;
}

static void test_concurrent(kms_core *c)
{
    char *ecc = mkkey(c, "ECC_NIST_P256", "SIGN_VERIFY"), *rsa = mkkey(c, "RSA_2048", "ENCRYPT_DECRYPT"), *ct, *other;
    struct worker_arg w[4];
    pthread_t t[4];
    json_t *r;
    CHECK(callf(c, &r, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\",\"EncryptionAlgorithm\":\"RSAES_OAEP_SHA_256\"}",
                rsa) == KMS_OK);
    ct = strdup(jstr(r, "CiphertextBlob"));
    json_decref(r);
    other = mkkey(c, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT");
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker_arg){c, ecc, rsa, ct, 0};
        CHECK(pthread_create(&t[i], NULL, asym_worker, &w[i]) == 0);
    }
    for (int i = 0; i < 20; i++) { /* meanwhile: writes to the key tables */
        CHECK(callf(c, NULL, "DisableKey", "{\"KeyId\":\"%s\"}", other) == KMS_OK);
        CHECK(callf(c, NULL, "EnableKey", "{\"KeyId\":\"%s\"}", other) == KMS_OK);
        free(mkkey(c, "HMAC_256", "GENERATE_VERIFY_MAC"));
    }
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK_EQ_INT(w[i].failures, 0);
    }
    free(ecc);
    free(rsa);
    free(ct);
    free(other);
}

static int64_t g_now;
static int64_t fake_clock(void *arg)
{
    (void)arg;
    return g_now;
}

/* Wrap 32-byte (or n-byte) material for GetParametersForImport's response r by algorithm alg, as a client
 * outside would (OpenSSL: RSA-OAEP, or an OAEP-wrapped AES-256 key and AES key wrap with padding). */
static char *wrap_material(json_t *r, const char *alg, const uint8_t *mat, size_t n)
{
    uint8_t der[4096], out[2048], kek[32];
    const unsigned char *p = der;
    size_t dl = unb64(jstr(r, "PublicKey"), der, sizeof der), ol = sizeof out;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)dl);
    const EVP_MD *md = strstr(alg, "SHA_1") ? EVP_sha1() : EVP_sha256();
    bool kwp = strstr(alg, "AES_KEY_WRAP") != NULL;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    randombytes_buf(kek, sizeof kek);
    CHECK(pk && pc && EVP_PKEY_encrypt_init(pc) == 1 && EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING) == 1 &&
          EVP_PKEY_CTX_set_rsa_oaep_md(pc, md) == 1 && EVP_PKEY_CTX_set_rsa_mgf1_md(pc, md) == 1 &&
          EVP_PKEY_encrypt(pc, out, &ol, kwp ? kek : mat, kwp ? sizeof kek : n) == 1);
    EVP_PKEY_CTX_free(pc);
    if (kwp) {
        EVP_CIPHER_CTX *cc = EVP_CIPHER_CTX_new();
        int l1 = 0, l2 = 0;
        EVP_CIPHER_CTX_set_flags(cc, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
        CHECK(EVP_EncryptInit_ex(cc, EVP_aes_256_wrap_pad(), NULL, kek, NULL) == 1 &&
              EVP_EncryptUpdate(cc, out + ol, &l1, mat, (int)n) == 1 && EVP_EncryptFinal_ex(cc, out + ol + l1, &l2) == 1);
        EVP_CIPHER_CTX_free(cc);
        ol += (size_t)(l1 + l2);
    }
    EVP_PKEY_free(pk);
    return b64(out, ol);
}

/* GetParametersForImport then ImportKeyMaterial of mat under (alg, spec), with the extra fields given. */
static kms_err import_material(kms_core *c, const char *id, const char *alg, const char *spec, const uint8_t *mat,
                               size_t n, const char *extra)
{
    json_t *r;
    char *ekm;
    kms_err e;
    CHECK(callf(c, &r, "GetParametersForImport", "{\"KeyId\":\"%s\",\"WrappingAlgorithm\":\"%s\",\"WrappingKeySpec\":\"%s\"}",
                id, alg, spec) == KMS_OK);
    CHECK(json_integer_value(json_object_get(r, "ParametersValidTo")) == g_now + 86400);
    ekm = wrap_material(r, alg, mat, n);
    e = callf(c, NULL, "ImportKeyMaterial", "{\"KeyId\":\"%s\",\"ImportToken\":\"%s\",\"EncryptedKeyMaterial\":\"%s\"%s}", id,
              jstr(r, "ImportToken"), ekm, extra);
    free(ekm);
    json_decref(r);
    return e;
}

static const char *state_of(kms_core *c, const char *id)
{
    static char st[32];
    json_t *r;
    CHECK(callf(c, &r, "DescribeKey", "{\"KeyId\":\"%s\"}", id) == KMS_OK);
    snprintf(st, sizeof st, "%s", jstr(json_object_get(r, "KeyMetadata"), "KeyState"));
    json_decref(r);
    return st;
}

/* Imported key material (Origin EXTERNAL): every wrapping algorithm, expiry, reimport, tokens, errors. */
static void test_import(void)
{
    static const char *const algs[] = {"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1",
                                       "RSA_AES_KEY_WRAP_SHA_256"};
    static const char noexp[] = ",\"ExpirationModel\":\"KEY_MATERIAL_DOES_NOT_EXPIRE\"";
    kms_core *c = open_store(g_store);
    uint8_t mat[32], other[32];
    char extra[128], *id, *native, *ct, *tok;
    json_t *r, *m;

    g_now = 1800000000;
    kms_core_set_clock(c, fake_clock, NULL);
    CHECK(callf(c, &r, "CreateKey", "{\"Origin\":\"EXTERNAL\",\"Description\":\"byok\"}") == KMS_OK);
    m = json_object_get(r, "KeyMetadata");
    CHECK(!strcmp(jstr(m, "KeyState"), "PendingImport") && !strcmp(jstr(m, "Origin"), "EXTERNAL") &&
          json_is_false(json_object_get(m, "Enabled")));
    id = strdup(jstr(m, "KeyId"));
    json_decref(r);
    CHECK(callf(c, NULL, "CreateKey", "{\"Origin\":\"EXTERNAL\",\"KeySpec\":\"RSA_2048\",\"KeyUsage\":\"SIGN_VERIFY\"}") ==
          KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK(callf(c, NULL, "CreateKey", "{\"Origin\":\"AWS_CLOUDHSM\"}") == KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK(callf(c, NULL, "CreateKey", "{\"Origin\":\"ELSEWHERE\"}") == KMS_ERR_VALIDATION);
    /* without material: no use, no enabling */
    CHECK(callf(c, NULL, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\"}", id) == KMS_ERR_INVALID_STATE);
    CHECK(callf(c, NULL, "EnableKey", "{\"KeyId\":\"%s\"}", id) == KMS_ERR_INVALID_STATE);
    CHECK(callf(c, NULL, "GetParametersForImport", "{\"KeyId\":\"%s\",\"WrappingAlgorithm\":\"RSAES_PKCS1_V1_5\","
                                                   "\"WrappingKeySpec\":\"RSA_2048\"}", id) == KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK(callf(c, NULL, "GetParametersForImport", "{\"KeyId\":\"%s\",\"WrappingAlgorithm\":\"RSAES_OAEP_SHA_1\","
                                                   "\"WrappingKeySpec\":\"RSA_1024\"}", id) == KMS_ERR_VALIDATION);
    CHECK(callf(c, NULL, "GetParametersForImport", "{\"KeyId\":\"%s\",\"WrappingKeySpec\":\"RSA_2048\"}", id) ==
          KMS_ERR_VALIDATION);
    native = mkkey(c, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT");
    CHECK(callf(c, NULL, "GetParametersForImport", "{\"KeyId\":\"%s\",\"WrappingAlgorithm\":\"RSAES_OAEP_SHA_1\","
                                                   "\"WrappingKeySpec\":\"RSA_2048\"}", native) == KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK(callf(c, NULL, "DeleteImportedKeyMaterial", "{\"KeyId\":\"%s\"}", native) == KMS_ERR_UNSUPPORTED_OPERATION);
    randombytes_buf(mat, sizeof mat);
    randombytes_buf(other, sizeof other);
    /* ExpirationModel / ValidTo rules */
    CHECK(import_material(c, id, "RSAES_OAEP_SHA_256", "RSA_2048", mat, 32, "") == KMS_ERR_VALIDATION);
    snprintf(extra, sizeof extra, ",\"ValidTo\":%lld", (long long)g_now - 1);
    CHECK(import_material(c, id, "RSAES_OAEP_SHA_256", "RSA_2048", mat, 32, extra) == KMS_ERR_VALIDATION);
    snprintf(extra, sizeof extra, ",\"ValidTo\":%lld", (long long)g_now + 366 * 86400);
    CHECK(import_material(c, id, "RSAES_OAEP_SHA_256", "RSA_2048", mat, 32, extra) == KMS_ERR_VALIDATION);
    snprintf(extra, sizeof extra, "%s,\"ValidTo\":%lld", noexp, (long long)g_now + 100);
    CHECK(import_material(c, id, "RSAES_OAEP_SHA_256", "RSA_2048", mat, 32, extra) == KMS_ERR_VALIDATION);
    /* material of the wrong length */
    CHECK(import_material(c, id, "RSAES_OAEP_SHA_256", "RSA_2048", mat, 16, noexp) == KMS_ERR_VALIDATION);
    CHECK(!strcmp(state_of(c, id), "PendingImport"));
    /* every wrapping algorithm imports the same material; other material is refused once there is one */
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++)
        CHECK(import_material(c, id, algs[i], i == 3 ? "RSA_3072" : "RSA_2048", mat, 32, noexp) == KMS_OK);
    CHECK(!strcmp(state_of(c, id), "Enabled"));
    CHECK(import_material(c, id, "RSA_AES_KEY_WRAP_SHA_256", "RSA_2048", other, 32, noexp) == KMS_ERR_INCORRECT_KEY_MATERIAL);
    CHECK(callf(c, &r, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aW1wb3J0ZWQ=\"}", id) == KMS_OK);
    ct = strdup(jstr(r, "CiphertextBlob"));
    json_decref(r);
    CHECK(callf(c, NULL, "EnableKeyRotation", "{\"KeyId\":\"%s\"}", id) == KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK(callf(c, NULL, "RotateKeyOnDemand", "{\"KeyId\":\"%s\"}", id) == KMS_ERR_UNSUPPORTED_OPERATION);
    /* tokens: another key's, a changed byte, garbage, an expired one */
    CHECK(callf(c, &r, "GetParametersForImport", "{\"KeyId\":\"%s\",\"WrappingAlgorithm\":\"RSAES_OAEP_SHA_256\","
                                                 "\"WrappingKeySpec\":\"RSA_2048\"}", id) == KMS_OK);
    {
        char *ekm = wrap_material(r, "RSAES_OAEP_SHA_256", mat, 32);
        uint8_t raw[6144];
        size_t n = unb64(jstr(r, "ImportToken"), raw, sizeof raw);
        char *x2;
        json_t *o;
        CHECK(callf(c, &o, "CreateKey", "{\"Origin\":\"EXTERNAL\"}") == KMS_OK);
        x2 = strdup(jstr(json_object_get(o, "KeyMetadata"), "KeyId"));
        json_decref(o);
        CHECK(callf(c, NULL, "ImportKeyMaterial", "{\"KeyId\":\"%s\",\"ImportToken\":\"%s\",\"EncryptedKeyMaterial\":\"%s\"%s}",
                    x2, jstr(r, "ImportToken"), ekm, noexp) == KMS_ERR_INVALID_IMPORT_TOKEN);
        for (size_t at = 0; at < n; at += n / 7 + 1) {
            raw[at] ^= 1;
            tok = b64(raw, n);
            CHECK(callf(c, NULL, "ImportKeyMaterial", "{\"KeyId\":\"%s\",\"ImportToken\":\"%s\",\"EncryptedKeyMaterial\":\"%s\"%s}",
                        id, tok, ekm, noexp) == KMS_ERR_INVALID_IMPORT_TOKEN);
            free(tok);
            raw[at] ^= 1;
        }
        CHECK(callf(c, NULL, "ImportKeyMaterial", "{\"KeyId\":\"%s\",\"ImportToken\":\"aGVsbG8=\",\"EncryptedKeyMaterial\":\"%s\"%s}",
                    id, ekm, noexp) == KMS_ERR_INVALID_IMPORT_TOKEN);
        /* a changed EncryptedKeyMaterial */
        CHECK(callf(c, NULL, "ImportKeyMaterial", "{\"KeyId\":\"%s\",\"ImportToken\":\"%s\",\"EncryptedKeyMaterial\":\"AAAA%s\"%s}",
                    id, jstr(r, "ImportToken"), ekm + 4, noexp) == KMS_ERR_INVALID_CIPHERTEXT);
        g_now += 86400;
        CHECK(callf(c, NULL, "ImportKeyMaterial", "{\"KeyId\":\"%s\",\"ImportToken\":\"%s\",\"EncryptedKeyMaterial\":\"%s\"%s}",
                    id, jstr(r, "ImportToken"), ekm, noexp) == KMS_ERR_EXPIRED_IMPORT_TOKEN);
        free(ekm);
        free(x2);
        json_decref(r);
    }
    /* material that expires: at ValidTo the key is PendingImport again; the reimport opens old ciphertext */
    snprintf(extra, sizeof extra, ",\"ExpirationModel\":\"KEY_MATERIAL_EXPIRES\",\"ValidTo\":%lld", (long long)g_now + 3600);
    CHECK(import_material(c, id, "RSAES_OAEP_SHA_1", "RSA_2048", mat, 32, extra) == KMS_OK);
    CHECK(callf(c, &r, "DescribeKey", "{\"KeyId\":\"%s\"}", id) == KMS_OK);
    m = json_object_get(r, "KeyMetadata");
    CHECK(!strcmp(jstr(m, "ExpirationModel"), "KEY_MATERIAL_EXPIRES") &&
          json_integer_value(json_object_get(m, "ValidTo")) == g_now + 3600);
    json_decref(r);
    CHECK(callf(c, NULL, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", ct) == KMS_OK);
    g_now += 3600;
    CHECK(callf(c, NULL, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", ct) == KMS_ERR_INVALID_STATE);
    CHECK(!strcmp(state_of(c, id), "PendingImport"));
    kms_core_free(c);
    c = open_store(g_store); /* the state, the expiry and the material's digest were written through */
    kms_core_set_clock(c, fake_clock, NULL);
    CHECK(!strcmp(state_of(c, id), "PendingImport"));
    CHECK(import_material(c, id, "RSAES_OAEP_SHA_256", "RSA_2048", other, 32, noexp) == KMS_ERR_INCORRECT_KEY_MATERIAL);
    CHECK(import_material(c, id, "RSA_AES_KEY_WRAP_SHA_1", "RSA_2048", mat, 32, noexp) == KMS_OK);
    CHECK(callf(c, &r, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", ct) == KMS_OK);
    CHECK(!strcmp(jstr(r, "Plaintext"), "aW1wb3J0ZWQ="));
    json_decref(r);
    /* DeleteImportedKeyMaterial: at once; ScheduleKeyDeletion and its cancel keep PendingImport */
    CHECK(callf(c, NULL, "DeleteImportedKeyMaterial", "{\"KeyId\":\"%s\"}", id) == KMS_OK);
    CHECK(callf(c, NULL, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", ct) == KMS_ERR_INVALID_STATE);
    CHECK(callf(c, NULL, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":7}", id) == KMS_OK);
    CHECK(callf(c, NULL, "GetParametersForImport", "{\"KeyId\":\"%s\",\"WrappingAlgorithm\":\"RSAES_OAEP_SHA_1\","
                                                   "\"WrappingKeySpec\":\"RSA_2048\"}", id) == KMS_ERR_INVALID_STATE);
    CHECK(callf(c, NULL, "CancelKeyDeletion", "{\"KeyId\":\"%s\"}", id) == KMS_OK);
    CHECK(!strcmp(state_of(c, id), "PendingImport"));
    kms_core_free(c);
    {
        /* an imported key that claims to be Enabled without material is a damaged store, not a crash */
        char db[400], sql[200], *msg = NULL;
        sqlite3 *q;
        kms_store_opts so = {.store_dir = g_store, .root_key_file = g_keyfile};
        snprintf(db, sizeof db, "%s/keystore.db", g_store);
        CHECK(sqlite3_open(db, &q) == SQLITE_OK);
        snprintf(sql, sizeof sql, "UPDATE keys SET state=0 WHERE id='%s'", id);
        CHECK(sqlite3_exec(q, sql, NULL, NULL, NULL) == SQLITE_OK);
        c = NULL;
        CHECK(kms_core_open(&so, &c, &msg) == KMS_ERR_CORRUPT_STORE && c == NULL);
        free(msg);
        snprintf(sql, sizeof sql, "UPDATE keys SET state=3 WHERE id='%s'", id);
        CHECK(sqlite3_exec(q, sql, NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(q);
    }
    free(ct);
    free(native);
    free(id);
}

/* Keys survive a reopen (sealed material unsealed and decoded again); a changed key_spec column fails the
 * material's authentication (the AAD binds spec and usage). */
static void test_persistence(void)
{
    kms_core *c = open_store(g_store);
    char *sid = mkkey(c, "ECC_NIST_P256", "SIGN_VERIFY"), *hid = mkkey(c, "HMAC_256", "GENERATE_VERIFY_MAC"), *mac, *sig;
    json_t *r;
    char db[400], sql[300];
    sqlite3 *s;
    CHECK(callf(c, &r, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"SigningAlgorithm\":\"ECDSA_SHA_256\"}", sid) == KMS_OK);
    sig = strdup(jstr(r, "Signature"));
    json_decref(r);
    CHECK(callf(c, &r, "GenerateMac", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"MacAlgorithm\":\"HMAC_SHA_256\"}", hid) == KMS_OK);
    mac = strdup(jstr(r, "Mac"));
    json_decref(r);
    kms_core_free(c);
    c = open_store(g_store);
    CHECK(callf(c, NULL, "Verify", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"Signature\":\"%s\",\"SigningAlgorithm\":\"ECDSA_SHA_256\"}",
                sid, sig) == KMS_OK);
    CHECK(callf(c, NULL, "VerifyMac", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"Mac\":\"%s\",\"MacAlgorithm\":\"HMAC_SHA_256\"}",
                hid, mac) == KMS_OK);
    kms_core_free(c);
    snprintf(db, sizeof db, "%s/keystore.db", g_store);
    CHECK(sqlite3_open(db, &s) == SQLITE_OK);
    snprintf(sql, sizeof sql, "UPDATE keys SET key_spec='HMAC_512' WHERE id='%s'", hid);
    CHECK(sqlite3_exec(s, sql, NULL, NULL, NULL) == SQLITE_OK);
    snprintf(sql, sizeof sql, "UPDATE keys SET key_spec='ECC_SECG_P256K1' WHERE id='%s'", sid);
    CHECK(sqlite3_exec(s, sql, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(s);
    c = open_store(g_store);
    CHECK(callf(c, NULL, "GenerateMac", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"MacAlgorithm\":\"HMAC_SHA_512\"}", hid) ==
          KMS_ERR_CORRUPT_STORE);
    CHECK(callf(c, NULL, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"SigningAlgorithm\":\"ECDSA_SHA_256\"}", sid) ==
          KMS_ERR_CORRUPT_STORE);
    kms_core_free(c);
    free(sid);
    free(hid);
    free(mac);
    free(sig);
}

/* A keystore of format 1 (the golden store of tests/fs/golden/v1) opens, becomes format 2, keeps its keys
 * (SYMMETRIC_DEFAULT) and their material, and takes new kinds of keys. */
static void test_migration(const char *golden)
{
    char cmd[4096], dir[400], key[420], db[420];
    kms_store_opts so;
    kms_core *c = NULL;
    char *msg = NULL;
    json_t *r;
    sqlite3 *s;
    sqlite3_stmt *st;
    snprintf(dir, sizeof dir, "%s/v1store", g_dir);
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s' && chmod 700 '%s' && chmod 600 '%s/root.key'", golden, dir, dir, dir);
    CHECK(system(cmd) == 0);
    snprintf(key, sizeof key, "%s/root.key", dir);
    snprintf(db, sizeof db, "%s/keystore.db", dir);
    CHECK(sqlite3_open(db, &s) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(s, "SELECT v FROM meta WHERE k='format'", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(st, 0), "1"));
    sqlite3_finalize(st);
    sqlite3_close(s);
    memset(&so, 0, sizeof so);
    so.store_dir = dir;
    so.root_key_file = key;
    CHECK(kms_core_open(&so, &c, &msg) == KMS_OK);
    CHECK(callf(c, &r, "ListKeys", "{}") == KMS_OK);
    CHECK(json_array_size(json_object_get(r, "Keys")) >= 1);
    {
        const char *id = jstr(json_array_get(json_object_get(r, "Keys"), 0), "KeyId");
        json_t *d, *e;
        CHECK(callf(c, &d, "DescribeKey", "{\"KeyId\":\"%s\"}", id) == KMS_OK);
        CHECK(!strcmp(jstr(json_object_get(d, "KeyMetadata"), "KeySpec"), "SYMMETRIC_DEFAULT"));
        json_decref(d);
        CHECK(callf(c, &e, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\"}", id) == KMS_OK);
        CHECK(callf(c, NULL, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", jstr(e, "CiphertextBlob")) == KMS_OK);
        json_decref(e);
    }
    json_decref(r);
    free(mkkey(c, "ECC_NIST_P256", "SIGN_VERIFY"));
    kms_core_free(c);
    CHECK(sqlite3_open(db, &s) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(s, "SELECT v FROM meta WHERE k='format'", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(st, 0), "2"));
    sqlite3_finalize(st);
    sqlite3_close(s);
    c = NULL;
    CHECK(kms_core_open(&so, &c, &msg) == KMS_OK); /* a second open finds format 2: nothing to do */
    kms_core_free(c);
}

int main(int argc, char **argv)
{
    char tmpl[] = "/tmp/efs-kms-asym-XXXXXX";
    kms_core *c;

    CHECK(argc == 2);
    CHECK(sodium_init() >= 0);
    CHECK(mkdtemp(tmpl) != NULL);
    snprintf(g_dir, sizeof g_dir, "%s", tmpl);
    kmstest_init_store(g_dir, g_store, sizeof g_store, g_keyfile, sizeof g_keyfile, NULL);
    c = open_store(g_store);
    test_create_and_describe(c);
    test_sign_verify(c);
    test_encrypt_decrypt(c);
    test_re_encrypt(c);
    test_hmac(c);
    test_data_key_pairs(c);
    test_concurrent(c);
    kms_core_free(c);
    test_persistence();
    test_import();
    test_migration(argv[1]);
    {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "warning: could not remove %s\n", g_dir);
    }
    TEST_DONE();
}
