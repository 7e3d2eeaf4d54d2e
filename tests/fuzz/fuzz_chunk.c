/*
 * fuzz_chunk.c — the volume chunk format (vol/sector.c): a chunk header and one sector slot read from a
 * chunk file, with the catalog's write counter for it. Input: 64-byte header ‖ 4,128-byte slot ‖ u32 LE
 * catalog counter (short inputs are zero-padded). The header is accepted only when it is exactly the
 * expected chunk's; a slot opens only as a hole (all zeros, counter 0) or as a sector whose counter is at
 * least the catalog's and whose tag verifies — and then sealing the plaintext again with the slot's own
 * nonce and counter gives back exactly the slot's bytes.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "sector.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t in[VOL_CHUNK_HDR + VOL_SLOT_SIZE + 4], pt[VOL_SECTOR_SIZE], again[VOL_SLOT_SIZE], key[32];
    static vol_sealer *s;
    static const uint8_t dk[32] = {1, 2, 3}, lin[16] = {0xa0, 0xa1};
    const uint8_t *slot = in + VOL_CHUNK_HDR;
    uint32_t min, ctr = 0;
    int rc;
    if (!s && (!(s = vol_sealer_new()) || vol_chunk_key(dk, lin, 5, 9, key)))
        return 0;
    memset(in, 0, sizeof in);
    memcpy(in, data, size < sizeof in ? size : sizeof in);
    min = in[sizeof in - 4] | (uint32_t)in[sizeof in - 3] << 8 | (uint32_t)in[sizeof in - 2] << 16 |
          (uint32_t)in[sizeof in - 1] << 24;

    rc = vol_chunk_header_check(in, VOL_CHUNK_HDR, lin, 5, 9);
    FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
    if (rc == 0) {
        uint8_t want[VOL_CHUNK_HDR];
        vol_chunk_header(want, lin, 5, 9);
        FUZZ_CHECK(!memcmp(want, in, VOL_CHUNK_HDR));
    }
    rc = vol_sector_open(s, key, lin, 5, 9, 3, min, slot, pt, &ctr);
    FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
    if (rc)
        return 0;
    if (ctr == 0) {
        static const uint8_t zero[VOL_SLOT_SIZE];
        FUZZ_CHECK(min == 0 && !memcmp(slot, zero, VOL_SLOT_SIZE) && pt[0] == 0 && pt[VOL_SECTOR_SIZE - 1] == 0);
        return 0;
    }
    FUZZ_CHECK(ctr >= min);
    FUZZ_CHECK(vol_sector_seal(s, key, lin, 5, 9, 3, ctr, slot + 4, pt, again) == 0);
    FUZZ_CHECK(!memcmp(again, slot, VOL_SLOT_SIZE));
    return 0;
}
