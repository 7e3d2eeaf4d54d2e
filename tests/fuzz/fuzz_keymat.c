/*
 * fuzz_keymat.c — kms_keymat_decode (kms/keymat.c), the decoder of an asymmetric key's stored material
 * (a DER PKCS#8 PrivateKeyInfo) for one key spec, and signature verification over the key it yields.
 * Input: one byte choosing the spec (RSA_2048 + byte % 7), then the DER. Invariants: decoding either fails
 * or gives a key of exactly that spec whose public key encodes to a SubjectPublicKeyInfo that decodes to
 * the same key, whose material re-encodes and decodes again to the same key, and on which verifying any
 * bytes as a signature of any algorithm fails or succeeds without harm (the rest of the input is taken as a
 * signature of a zero digest, which is never valid).
 */
#include <string.h>

#include <openssl/x509.h>
#include <sodium.h>

#include "fuzz.h"
#include "keymat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum kms_key_spec s;
    EVP_PKEY *pk = NULL, *again = NULL, *pub = NULL;
    uint8_t *der, *mat = NULL, zero[64] = {0};
    const unsigned char *p;
    size_t n, mlen;
    int rc;

    if (size < 1)
        return 0;
    s = (enum kms_key_spec)(KMS_SPEC_RSA_2048 + data[0] % 7);
    rc = kms_keymat_decode(s, data + 1, size - 1, &pk);
    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK((rc == 0) == (pk != NULL));
    if (rc)
        return 0;
    FUZZ_CHECK(kms_spec_is_rsa(s) ? EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA && EVP_PKEY_get_bits(pk) == kms_spec_rsa_bits(s)
                                  : EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC);
    der = kms_keymat_public_der(pk, &n);
    FUZZ_CHECK(der != NULL);
    p = der;
    pub = d2i_PUBKEY(NULL, &p, (long)n);
    FUZZ_CHECK(pub && p == der + n && EVP_PKEY_eq(pk, pub) == 1);
    free(der);
    FUZZ_CHECK(kms_keymat_from_pkey(pk, &mat, &mlen) == 0);
    FUZZ_CHECK(kms_keymat_decode(s, mat, mlen, &again) == 0 && EVP_PKEY_eq(pk, again) == 1);
    sodium_free(mat);
    for (int a = 0; a < KMS_ALG__COUNT; a++) {
        const enum kms_key_usage u = KMS_USAGE_SIGN_VERIFY;
        if (!kms_key_supports(s, u, (enum kms_alg)a))
            continue;
        /* a zero digest with any signature bytes: must not verify (or crash) */
        FUZZ_CHECK(kms_asym_verify_digest(pk, (enum kms_alg)a, zero, kms_alg_digest_len((enum kms_alg)a), data + 1,
                                          size - 1) == -1);
    }
    EVP_PKEY_free(pub);
    EVP_PKEY_free(again);
    EVP_PKEY_free(pk);
    return 0;
}
