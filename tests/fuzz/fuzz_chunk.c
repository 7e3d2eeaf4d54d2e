/*
 * fuzz_chunk.c — the volume chunk format (vol/sector.c): a chunk header and the slots of one sector read
 * from a chunk file, with the catalog's write counter for it. Input: 64-byte header ‖ 4,128-byte slot (area
 * 0: version 1's only slot) ‖ 4,128-byte slot (area 1, version 2) ‖ u32 LE catalog counter ‖ u8 how far
 * the newest known counter is above it (short inputs are zero-padded). The header is accepted only when it
 * is exactly the expected chunk's header of version 1 or 2. Version 1: the area-0 slot opens only as a
 * hole (all zeros, counter 0) or as a sector whose counter is at least the catalog's and whose tag
 * verifies. Version 2: a sector opens only from the slot of the catalog's counter + 1's area with a counter
 * of that parity and at least the newest known, or — only when nothing newer is known — from the other
 * slot with exactly the catalog's counter (a hole when 0). Whatever opens, sealing the plaintext again
 * with the slot's own nonce and counter gives back exactly that slot's bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "sector.h"

static uint32_t get32(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static void resealed(vol_sealer *s, const uint8_t *key, const uint8_t *lin, uint32_t ctr, const uint8_t *slot,
                     const uint8_t *pt)
{
    static uint8_t again[VOL_SLOT_SIZE];
    FUZZ_CHECK(vol_sector_seal(s, key, lin, 5, 9, 3, ctr, slot + 4, pt, again) == 0);
    FUZZ_CHECK(!memcmp(again, slot, VOL_SLOT_SIZE));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t in[VOL_CHUNK_HDR + 2 * VOL_SLOT_SIZE + 5], pt[VOL_SECTOR_SIZE], key[32];
    static const uint8_t zero[VOL_SLOT_SIZE];
    static vol_sealer *s;
    static const uint8_t dk[32] = {1, 2, 3}, lin[16] = {0xa0, 0xa1};
    const uint8_t *slot = in + VOL_CHUNK_HDR, *slot1 = slot + VOL_SLOT_SIZE;
    uint32_t min, newest, ctr = 0;
    unsigned ver = 0;
    int rc;
    if (!s && (!(s = vol_sealer_new()) || vol_chunk_key(dk, lin, 5, 9, key)))
        return 0;
    memset(in, 0, sizeof in);
    memcpy(in, data, size < sizeof in ? size : sizeof in);
    min = get32(in + sizeof in - 5);
    newest = min + in[sizeof in - 1];

    rc = vol_chunk_header_check(in, VOL_CHUNK_HDR, lin, 5, 9, &ver);
    FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
    if (rc == 0) {
        uint8_t want[VOL_CHUNK_HDR];
        FUZZ_CHECK(ver == 1 || ver == 2);
        vol_chunk_header_v(want, ver, lin, 5, 9);
        FUZZ_CHECK(!memcmp(want, in, VOL_CHUNK_HDR));
        FUZZ_CHECK(vol_chunk_stored_size(in) == (ver == 2 ? VOL_CHUNK_FILE_SIZE : VOL_CHUNK_V1_SIZE));
    }

    /* version 1 */
    rc = vol_sector_open(s, key, lin, 5, 9, 3, min, slot, pt, &ctr);
    FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
    if (rc == 0 && ctr == 0)
        FUZZ_CHECK(min == 0 && !memcmp(slot, zero, VOL_SLOT_SIZE) && pt[0] == 0 && pt[VOL_SECTOR_SIZE - 1] == 0);
    else if (rc == 0) {
        FUZZ_CHECK(ctr >= min);
        resealed(s, key, lin, ctr, slot, pt);
    }

    /* version 2 */
    if (newest < min || min == UINT32_MAX)
        return 0; /* (wrapped: not a state a device reaches; refused with -EINVAL) */
    rc = vol_chunk_sector_open(s, key, lin, 5, 9, 2, 3, min, newest, slot, slot1, pt, &ctr);
    FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
    if (rc)
        return 0;
    if (ctr > min) { /* the newer slot */
        const uint8_t *n = vol_slot_area(min + 1) ? slot1 : slot;
        FUZZ_CHECK(ctr >= newest && vol_slot_area(ctr) == vol_slot_area(min + 1) && get32(n) == ctr);
        resealed(s, key, lin, ctr, n, pt);
    } else { /* the flushed one */
        const uint8_t *f = vol_slot_area(min + 1) ? slot : slot1;
        FUZZ_CHECK(ctr == min && newest == min);
        if (ctr == 0)
            FUZZ_CHECK(!memcmp(f, zero, VOL_SLOT_SIZE) && pt[0] == 0 && pt[VOL_SECTOR_SIZE - 1] == 0);
        else
            resealed(s, key, lin, ctr, f, pt);
    }
    return 0;
}
