/*
 * fuzz_blob.c — kms_blob_parse (kms/blob.c), the KMS ciphertext blob header: any bytes either fail
 * with -EINVAL or yield a blob whose pointers all lie inside the input and add up to it, and whose
 * header kms_blob_write_header writes back byte for byte.
 */
#include <errno.h>
#include <string.h>

#include "blob.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kms_blob b;
    uint8_t hdr[KMS_BLOB_HEADER_LEN];
    int rc;

    memset(&b, 0, sizeof b);
    rc = kms_blob_parse(data, size, &b);
    FUZZ_CHECK(rc == 0 || rc == -EINVAL);
    if (rc) {
        /* The reasons the contract gives, and no others. */
        FUZZ_CHECK(size < KMS_BLOB_OVERHEAD || size > KMS_BLOB_MAX || data[0] != KMS_BLOB_VERSION ||
                   data[1] != KMS_BLOB_ALG_AES256GCM || !(data[18] | data[19] | data[20] | data[21]));
        return 0;
    }
    FUZZ_CHECK(size >= KMS_BLOB_OVERHEAD && size <= KMS_BLOB_MAX);
    FUZZ_CHECK(b.version != 0);
    FUZZ_CHECK(b.header == data);
    FUZZ_CHECK(b.nonce == data + KMS_BLOB_HEADER_LEN - KMS_BLOB_NONCE_LEN);
    FUZZ_CHECK(b.ciphertext == data + KMS_BLOB_HEADER_LEN);
    FUZZ_CHECK(b.ciphertext_len == size - KMS_BLOB_OVERHEAD);
    FUZZ_CHECK(b.tag == b.ciphertext + b.ciphertext_len);
    FUZZ_CHECK(b.tag + KMS_BLOB_TAG_LEN == data + size);
    FUZZ_CHECK(!memcmp(b.key_id, data + 2, 16));
    kms_blob_write_header(hdr, b.key_id, b.version, b.nonce);
    FUZZ_CHECK(!memcmp(hdr, data, KMS_BLOB_HEADER_LEN));
    return 0;
}
