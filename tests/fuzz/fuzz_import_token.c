/*
 * fuzz_import_token.c — kms_import_token_parse (kms/importtoken.c), the ImportToken that ImportKeyMaterial
 * receives from callers: any bytes either fail or yield a token whose fields are the header's bytes (magic,
 * version 1, a known wrapping algorithm, an RSA wrapping key spec), whose sealed part is the rest of the
 * input, and whose header kms_import_token_header writes back byte for byte.
 */
#include <string.h>

#include "fuzz.h"
#include "importtoken.h"
#include "keyspec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kms_import_token t;
    uint8_t hdr[KMS_IMPORT_TOKEN_HEADER];
    int rc;

    memset(&t, 0, sizeof t);
    rc = kms_import_token_parse(data, size, &t);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc)
        return 0;
    FUZZ_CHECK(size > KMS_IMPORT_TOKEN_HEADER && size <= KMS_IMPORT_TOKEN_MAX);
    FUZZ_CHECK(!memcmp(data, "EFIT", 4) && data[4] == 1);
    FUZZ_CHECK(t.wrap_alg >= KMS_WRAP_RSAES_OAEP_SHA_1 && t.wrap_alg <= KMS_WRAP_RSA_AES_KEY_WRAP_SHA_256);
    FUZZ_CHECK(kms_spec_is_rsa((enum kms_key_spec)t.wrap_spec));
    FUZZ_CHECK(strcmp(kms_wrap_alg_name(t.wrap_alg), "?") && kms_wrap_alg_parse(kms_wrap_alg_name(t.wrap_alg)) == t.wrap_alg);
    FUZZ_CHECK(t.valid_to >= 0);
    FUZZ_CHECK(t.header == data && t.sealed == data + KMS_IMPORT_TOKEN_HEADER);
    FUZZ_CHECK(t.sealed_len == size - KMS_IMPORT_TOKEN_HEADER && t.sealed_len > 40);
    kms_import_token_header(hdr, t.wrap_alg, t.wrap_spec, t.key_id, t.valid_to);
    FUZZ_CHECK(!memcmp(hdr, data, KMS_IMPORT_TOKEN_HEADER));
    return 0;
}
