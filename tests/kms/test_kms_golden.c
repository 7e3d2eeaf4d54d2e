/*
 * test_kms_golden.c — golden vectors for the KMS ciphertext blob (docs/FORMAT.md): fixed key
 * material, key id, version, nonce, context and plaintext must give exactly the recorded bytes, and
 * the recorded bytes must parse and open. A format change breaks this test on purpose: bump the blob
 * version and add a new vector instead of editing these.
 */
#include <string.h>

#include <sodium.h>

#include "aead.h"
#include "blob.h"
#include "ectx.h"
#include "keymat.h"
#include "testutil.h"

/* v1 vector: material = 00 01 .. 1f, key id = 11 22 .. (uuid 1122..), version 2, nonce = a0 a1 .. ab,
 * plaintext "envelopefs golden", context {"fs":"golden","purpose":"test"}. */
static const char GOLDEN_V1[] = "0101112233445566778899aabbccddeeff1100000002a0a1a2a3a4a5a6a7a8a9aaab83760a4829a472da0416a7b46816a4bb1ee63e3482885a0e258cba644cba7648f3";
static const char CTX_HEX[] = "000200026673000667"
                              "6f6c64656e0007707572706f7365000474657374";

static void hex(const uint8_t *b, size_t n, char *out)
{
    sodium_bin2hex(out, n * 2 + 1, b, n);
}

/* Keystore format 2, sealed key material of a key that is not SYMMETRIC_DEFAULT (docs/FORMAT.md "Key
 * material"): root key 40 41 .. 5f, nonce 60 61 .. 77, key id 11223344-5566-7788-99aa-bbccddeeff11, version 1,
 * HMAC_256 / GENERATE_VERIFY_MAC, material 00 01 .. 1f. Added with format 2; the v1 vector above is unchanged. */
static const char MAT_AAD_V2[] = "656e76656c6f706566732d636d6b2d7632"             /* envelopefs-cmk-v2 */
                                 "31313232333334342d353536362d373738382d393961612d626263636464656566663131"
                                 "00000001" "484d41435f323536" "00" "47454e45524154455f5645524946595f4d4143";
static const char MAT_SEALED_V2[] = "606162636465666768696a6b6c6d6e6f7071727374757677"
                                    "957ff1667717e52cf5ba3d7156cfd3e4ec36bba5e974f050f976e1d18b4d411d"
                                    "043fae11d227ba046bb607844d11a915";

static void test_material_v2(void)
{
    uint8_t root[32], nonce[24], mat[32], aad[KMS_MATERIAL_AAD_MAX], sealed[24 + 32 + 16], back[32];
    const char *id = "11223344-5566-7788-99aa-bbccddeeff11";
    char h[400];
    size_t n;
    for (int i = 0; i < 32; i++) {
        root[i] = (uint8_t)(0x40 + i);
        mat[i] = (uint8_t)i;
    }
    for (int i = 0; i < 24; i++)
        nonce[i] = (uint8_t)(0x60 + i);
    n = kms_material_aad(aad, id, 1, KMS_SPEC_HMAC_256, KMS_USAGE_GENERATE_VERIFY_MAC);
    hex(aad, n, h);
    CHECK(!strcmp(h, MAT_AAD_V2));
    /* SYMMETRIC_DEFAULT keys keep format 1's AAD: "envelopefs-cmk-v1" ‖ id ‖ u32 BE version */
    n = kms_material_aad(aad, id, 2, KMS_SPEC_SYMMETRIC, KMS_USAGE_ENCRYPT_DECRYPT);
    CHECK(n == 17 + 36 + 4 && !memcmp(aad, "envelopefs-cmk-v1", 17) && !memcmp(aad + 17, id, 36) &&
          !memcmp(aad + 53, "\0\0\0\2", 4));
    n = kms_material_aad(aad, id, 1, KMS_SPEC_HMAC_256, KMS_USAGE_GENERATE_VERIFY_MAC);
    memcpy(sealed, nonce, 24);
    crypto_aead_xchacha20poly1305_ietf_encrypt(sealed + 24, NULL, mat, 32, aad, n, NULL, nonce, root);
    hex(sealed, sizeof sealed, h);
    if (getenv("GOLDEN_PRINT"))
        printf("%s\n", h);
    CHECK(!strcmp(h, MAT_SEALED_V2));
    CHECK(crypto_aead_xchacha20poly1305_ietf_decrypt(back, NULL, NULL, sealed + 24, sizeof sealed - 24, aad, n, sealed,
                                                     root) == 0 && !memcmp(back, mat, 32));
    /* another spec or usage in the AAD: the row does not open */
    n = kms_material_aad(aad, id, 1, KMS_SPEC_HMAC_512, KMS_USAGE_GENERATE_VERIFY_MAC);
    CHECK(crypto_aead_xchacha20poly1305_ietf_decrypt(back, NULL, NULL, sealed + 24, sizeof sealed - 24, aad, n, sealed,
                                                     root) != 0);
}

int main(void)
{
    uint8_t material[32], key_id[16], nonce[12], blob[256], *aad;
    const char *pt = "envelopefs golden";
    size_t ptlen = strlen(pt), aad_len, n;
    char h[600];
    kms_ectx_pair pairs[] = {{"purpose", "test"}, {"fs", "golden"}};
    kms_ectx ctx = {pairs, 2};
    kms_blob b;
    uint8_t out[64];

    CHECK(sodium_init() >= 0);
    for (int i = 0; i < 32; i++)
        material[i] = (uint8_t)i;
    for (int i = 0; i < 16; i++)
        key_id[i] = (uint8_t)(0x11 * ((i % 15) + 1));
    for (int i = 0; i < 12; i++)
        nonce[i] = (uint8_t)(0xa0 + i);

    /* Context encoding is sorted and length-prefixed. */
    CHECK(kms_ectx_encode(&ctx, &aad, &aad_len) == 0);
    hex(aad, aad_len, h);
    CHECK(!strcmp(h, CTX_HEX));
    {
        /* {"a":"bc"} and {"ab":"c"} encode differently */
        kms_ectx_pair p1[] = {{"a", "bc"}}, p2[] = {{"ab", "c"}};
        kms_ectx c1 = {p1, 1}, c2 = {p2, 1};
        uint8_t *e1, *e2;
        size_t l1, l2;
        CHECK(kms_ectx_encode(&c1, &e1, &l1) == 0 && kms_ectx_encode(&c2, &e2, &l2) == 0);
        CHECK(l1 == l2 && memcmp(e1, e2, l1) != 0);
        free(e1);
        free(e2);
        /* empty context is the 2-byte count 0 */
        CHECK(kms_ectx_encode(NULL, &e1, &l1) == 0 && l1 == 2 && e1[0] == 0 && e1[1] == 0);
        free(e1);
        /* duplicate and empty keys are refused */
        kms_ectx_pair d[] = {{"k", "1"}, {"k", "2"}}, em[] = {{"", "x"}};
        kms_ectx cd = {d, 2}, ce = {em, 1};
        CHECK(kms_ectx_encode(&cd, &e1, &l1) != 0);
        CHECK(kms_ectx_encode(&ce, &e1, &l1) != 0);
    }

    kms_gcm_key *gk = kms_gcm_key_new(material);
    CHECK(gk != NULL);
    kms_blob_write_header(blob, key_id, 2, nonce);
    CHECK(kms_gcm_seal(gk, nonce, blob, KMS_BLOB_HEADER_LEN, aad, aad_len, (const uint8_t *)pt, ptlen,
                       blob + KMS_BLOB_HEADER_LEN, blob + KMS_BLOB_HEADER_LEN + ptlen) == 0);
    n = KMS_BLOB_OVERHEAD + ptlen;
    hex(blob, n, h);
    if (getenv("GOLDEN_PRINT"))
        printf("%s\n", h);
    CHECK(!strcmp(h, GOLDEN_V1));

    /* The recorded bytes parse and open. */
    CHECK(sodium_hex2bin(blob, sizeof blob, GOLDEN_V1, strlen(GOLDEN_V1), NULL, &n, NULL) == 0);
    CHECK(kms_blob_parse(blob, n, &b) == 0);
    CHECK(b.version == 2 && !memcmp(b.key_id, key_id, 16) && b.ciphertext_len == ptlen);
    CHECK(kms_gcm_open(gk, b.nonce, b.header, KMS_BLOB_HEADER_LEN, aad, aad_len, b.ciphertext,
                       b.ciphertext_len, b.tag, out) == 0);
    CHECK(!memcmp(out, pt, ptlen));
    /* The keyed context is reused: a wrong tag fails and wipes out, then the same context seals the
     * same bytes again (the key schedule survives every nonce re-initialisation). */
    {
        uint8_t bad[16], again[sizeof blob];
        memcpy(bad, b.tag, 16);
        bad[0] ^= 1;
        CHECK(kms_gcm_open(gk, b.nonce, b.header, KMS_BLOB_HEADER_LEN, aad, aad_len, b.ciphertext,
                           b.ciphertext_len, bad, out) != 0);
        CHECK(sodium_is_zero(out, ptlen));
        memcpy(again, blob, KMS_BLOB_HEADER_LEN);
        CHECK(kms_gcm_seal(gk, nonce, again, KMS_BLOB_HEADER_LEN, aad, aad_len, (const uint8_t *)pt, ptlen,
                           again + KMS_BLOB_HEADER_LEN, again + KMS_BLOB_HEADER_LEN + ptlen) == 0);
        CHECK(!memcmp(again, blob, n));
    }
    kms_gcm_key_free(gk);
    kms_gcm_key_free(NULL);
    /* Parser rejects what is not a v1 blob. */
    CHECK(kms_blob_parse(blob, KMS_BLOB_OVERHEAD - 1, &b) != 0);
    blob[0] = 2;
    CHECK(kms_blob_parse(blob, n, &b) != 0);
    blob[0] = 1;
    blob[1] = 9;
    CHECK(kms_blob_parse(blob, n, &b) != 0);
    blob[1] = 1;
    memset(blob + 18, 0, 4);
    CHECK(kms_blob_parse(blob, n, &b) != 0);
    free(aad);
    test_material_v2();
    TEST_DONE();
}
