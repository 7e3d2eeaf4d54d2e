/*
 * fuzz_header.c — efs_header_parse (fs/format.c), the header at the start of every encrypted file
 * (or in its xattr). A parsed header must describe only bytes of the input, have the fields format.h
 * allows, and encode back with efs_header_encode to exactly the bytes it was parsed from. The input's
 * first 8 bytes past the header, when present, are also taken as a backing data length for
 * efs_plain_size / efs_data_len (sizes reported to stat), which must agree with each other.
 */
#include <errno.h>
#include <string.h>

#include "format.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static efs_header h, again;
    static uint8_t enc[EFS_HDR_MAX];
    size_t hdr_len = 0, again_len = 0;
    int rc = efs_header_parse(data, size, &h, &hdr_len);

    FUZZ_CHECK(rc == 0 || rc == -EINVAL);
    if (rc)
        return 0;
    FUZZ_CHECK(hdr_len <= size && hdr_len <= EFS_HDR_MAX && hdr_len == efs_header_len(&h));
    FUZZ_CHECK(h.version == EFS_HDR_VERSION || h.version == EFS_HDR_VERSION_PADDED);
    FUZZ_CHECK(h.key_mode == EFS_KEYMODE_KMS || h.key_mode == EFS_KEYMODE_BUCKET);
    FUZZ_CHECK(h.block_size >= 512 && h.block_size <= (1u << 20) && !(h.block_size & (h.block_size - 1)));
    FUZZ_CHECK(h.wrapped_len >= 1 && h.wrapped_len <= EFS_WRAPPED_MAX);
    FUZZ_CHECK(EFS_HDR_FIXED + (size_t)h.wrapped_len + EFS_HDR_TAG <= hdr_len);
    FUZZ_CHECK(!memcmp(h.wrapped, data + EFS_HDR_FIXED, h.wrapped_len));
    FUZZ_CHECK(!memcmp(h.tag, data + hdr_len - EFS_HDR_TAG, EFS_HDR_TAG));

    /* Re-encode: the same bytes; too small a buffer is refused. */
    FUZZ_CHECK(efs_header_encode(&h, enc, hdr_len - 1) == -EINVAL);
    FUZZ_CHECK(efs_header_encode(&h, enc, sizeof enc) == 0);
    FUZZ_CHECK(!memcmp(enc, data, hdr_len));
    FUZZ_CHECK(efs_header_parse(enc, hdr_len, &again, &again_len) == 0 && again_len == hdr_len);
    FUZZ_CHECK(!memcmp(&h, &again, sizeof h));

    if (size >= hdr_len + 8) {
        uint64_t data_len = 0, plain = 0;
        memcpy(&data_len, data + hdr_len, 8);
        data_len >>= 16; /* up to 256 TiB of backing data: any file size the kernel allows */
        rc = efs_plain_size(data_len, h.block_size, &plain);
        FUZZ_CHECK(plain <= data_len);
        if (rc == 0)
            FUZZ_CHECK(efs_data_len(plain, h.block_size) == data_len);
        else
            FUZZ_CHECK(rc == -EINVAL && efs_data_len(plain, h.block_size) < data_len);
    }
    return 0;
}
