/*
 * sector.c — sealing and opening 4 KiB sectors of a chunk (format in sector.h / docs/FORMAT.md).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "sector.h"

/* One context for both directions: GCM's key schedule and hash key are the same for sealing and opening,
 * so a context keyed once (vol_sealer_set_key) serves both with only a new IV per sector. */
struct vol_sealer {
    EVP_CIPHER_CTX *ctx;
};

vol_sealer *vol_sealer_new(void)
{
    vol_sealer *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (!(s->ctx = EVP_CIPHER_CTX_new()) || EVP_CipherInit_ex(s->ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, 1) != 1) {
        vol_sealer_free(s);
        return NULL;
    }
    return s;
}

int vol_sealer_set_key(vol_sealer *s, const uint8_t key[32])
{
    return EVP_CipherInit_ex(s->ctx, NULL, NULL, key, NULL, 1) == 1 ? 0 : -EIO;
}

void vol_sealer_free(vol_sealer *s)
{
    if (!s)
        return;
    EVP_CIPHER_CTX_free(s->ctx); /* (the provider wipes its key schedule as it frees it) */
    free(s);
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

int vol_lineage_bin(const char *hex, uint8_t out[VOL_LINEAGE_LEN])
{
    size_t n = 0;
    if (!hex || strlen(hex) != 2 * VOL_LINEAGE_LEN ||
        sodium_hex2bin(out, VOL_LINEAGE_LEN, hex, 2 * VOL_LINEAGE_LEN, NULL, &n, NULL) || n != VOL_LINEAGE_LEN)
        return -EINVAL;
    return 0;
}

/* HKDF-SHA256 (RFC 5869) with no salt and one block of output: PRK = HMAC(zero-length salt, dk), key =
 * HMAC(PRK, info ‖ 0x01). Through libsodium's HMAC rather than OpenSSL's EVP_PKEY HKDF, which in OpenSSL
 * 3.0 fetches its method from a global store on every call: this runs on every volume I/O, from many
 * threads at once (the golden vector in tests/vol/test_vol.c pins the output). */
int vol_chunk_key(const uint8_t dk[32], const uint8_t lineage[VOL_LINEAGE_LEN], uint64_t block, uint64_t gen,
                  uint8_t out[32])
{
    static const char label[] = "envelopefs vol v1 chunk";
    static const uint8_t one = 1;
    uint8_t info[sizeof label - 1 + VOL_LINEAGE_LEN + 16], prk[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    int rc = -EIO;
    memcpy(info, label, sizeof label - 1);
    memcpy(info + sizeof label - 1, lineage, VOL_LINEAGE_LEN);
    put64(info + sizeof label - 1 + VOL_LINEAGE_LEN, block);
    put64(info + sizeof label - 1 + VOL_LINEAGE_LEN + 8, gen);
    if (crypto_auth_hmacsha256_init(&st, (const unsigned char *)"", 0) == 0 &&
        crypto_auth_hmacsha256_update(&st, dk, 32) == 0 && crypto_auth_hmacsha256_final(&st, prk) == 0 &&
        crypto_auth_hmacsha256_init(&st, prk, sizeof prk) == 0 && crypto_auth_hmacsha256_update(&st, info, sizeof info) == 0 &&
        crypto_auth_hmacsha256_update(&st, &one, 1) == 0 && crypto_auth_hmacsha256_final(&st, out) == 0)
        rc = 0;
    sodium_memzero(prk, sizeof prk);
    sodium_memzero(&st, sizeof st);
    return rc;
}

void vol_chunk_header_v(uint8_t out[VOL_CHUNK_HDR], unsigned version, const uint8_t lineage[VOL_LINEAGE_LEN],
                        uint64_t block, uint64_t gen)
{
    memset(out, 0, VOL_CHUNK_HDR);
    memcpy(out, VOL_CHUNK_MAGIC, 4);
    out[4] = (uint8_t)version; /* u16 LE */
    put32(out + 8, VOL_SECTOR_SIZE);
    put32(out + 12, VOL_SECTORS);
    memcpy(out + 16, lineage, VOL_LINEAGE_LEN);
    put64(out + 32, block);
    put64(out + 40, gen);
}

void vol_chunk_header(uint8_t out[VOL_CHUNK_HDR], const uint8_t lineage[VOL_LINEAGE_LEN], uint64_t block, uint64_t gen)
{
    vol_chunk_header_v(out, VOL_CHUNK_VERSION, lineage, block, gen);
}

int vol_chunk_header_check(const uint8_t *hdr, size_t len, const uint8_t lineage[VOL_LINEAGE_LEN], uint64_t block,
                           uint64_t gen, unsigned *version)
{
    uint8_t want[VOL_CHUNK_HDR];
    unsigned v;
    if (len < VOL_CHUNK_HDR || (hdr[4] != 1 && hdr[4] != 2))
        return -EBADMSG;
    v = hdr[4];
    vol_chunk_header_v(want, v, lineage, block, gen);
    if (sodium_memcmp(want, hdr, VOL_CHUNK_HDR))
        return -EBADMSG;
    if (version)
        *version = v;
    return 0;
}

size_t vol_chunk_stored_size(const uint8_t *hdr)
{
    return !memcmp(hdr, VOL_CHUNK_MAGIC, 4) && hdr[4] == 2 && hdr[5] == 0 ? VOL_CHUNK_FILE_SIZE : VOL_CHUNK_V1_SIZE;
}

static void aad_of(uint8_t aad[44], const uint8_t lineage[VOL_LINEAGE_LEN], uint64_t block, uint64_t gen,
                   unsigned sector, uint32_t ctr)
{
    memcpy(aad, "EVS1", 4);
    memcpy(aad + 4, lineage, VOL_LINEAGE_LEN);
    put64(aad + 20, block);
    put64(aad + 28, gen);
    put32(aad + 36, sector);
    put32(aad + 40, ctr);
}

int vol_sector_seal(vol_sealer *s, const uint8_t key[32], const uint8_t lineage[VOL_LINEAGE_LEN], uint64_t block,
                    uint64_t gen, unsigned sector, uint32_t ctr, const uint8_t *nonce, const uint8_t pt[VOL_SECTOR_SIZE],
                    uint8_t slot[VOL_SLOT_SIZE])
{
    uint8_t aad[44];
    uint8_t *n = slot + 4, *ct = slot + 4 + VOL_SLOT_NONCE, *tag = ct + VOL_SECTOR_SIZE;
    int len = 0;
    if (ctr == 0 || sector >= VOL_SECTORS)
        return -EINVAL;
    put32(slot, ctr);
    if (nonce)
        memcpy(n, nonce, VOL_SLOT_NONCE);
    else
        randombytes_buf(n, VOL_SLOT_NONCE);
    aad_of(aad, lineage, block, gen, sector, ctr);
    if (EVP_CipherInit_ex(s->ctx, NULL, NULL, key, n, 1) != 1 || /* key NULL: the one set before */
        EVP_CipherUpdate(s->ctx, NULL, &len, aad, sizeof aad) != 1 ||
        EVP_CipherUpdate(s->ctx, ct, &len, pt, VOL_SECTOR_SIZE) != 1 || len != VOL_SECTOR_SIZE ||
        EVP_CipherFinal_ex(s->ctx, ct + len, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_GET_TAG, VOL_SLOT_TAG, tag) != 1)
        return -EIO;
    return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

int vol_sector_open(vol_sealer *s, const uint8_t key[32], const uint8_t lineage[VOL_LINEAGE_LEN], uint64_t block,
                    uint64_t gen, unsigned sector, uint32_t min_ctr, const uint8_t slot[VOL_SLOT_SIZE],
                    uint8_t pt[VOL_SECTOR_SIZE], uint32_t *ctr_out)
{
    uint8_t aad[44], tag[VOL_SLOT_TAG];
    const uint8_t *n = slot + 4, *ct = slot + 4 + VOL_SLOT_NONCE;
    uint32_t ctr = get32(slot);
    int len = 0;
    if (sector >= VOL_SECTORS)
        return -EINVAL;
    if (ctr == 0) {
        if (min_ctr || !all_zero(slot, VOL_SLOT_SIZE))
            return -EBADMSG;
        memset(pt, 0, VOL_SECTOR_SIZE);
        *ctr_out = 0;
        return 0;
    }
    if (ctr < min_ctr)
        return -EBADMSG; /* an older write of this sector than the catalog's last flush: rolled back */
    memcpy(tag, ct + VOL_SECTOR_SIZE, VOL_SLOT_TAG);
    aad_of(aad, lineage, block, gen, sector, ctr);
    if (EVP_CipherInit_ex(s->ctx, NULL, NULL, key, n, 0) != 1 || /* key NULL: the one set before */
        EVP_CipherUpdate(s->ctx, NULL, &len, aad, sizeof aad) != 1 ||
        EVP_CipherUpdate(s->ctx, pt, &len, ct, VOL_SECTOR_SIZE) != 1 ||
        EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_SET_TAG, VOL_SLOT_TAG, tag) != 1 ||
        EVP_CipherFinal_ex(s->ctx, pt + len, &len) != 1) {
        sodium_memzero(pt, VOL_SECTOR_SIZE);
        return -EBADMSG;
    }
    *ctr_out = ctr;
    return 0;
}

int vol_chunk_sector_open(vol_sealer *s, const uint8_t key[32], const uint8_t lineage[VOL_LINEAGE_LEN], uint64_t block,
                          uint64_t gen, unsigned version, unsigned sector, uint32_t fl, uint32_t newest,
                          const uint8_t *slot0, const uint8_t *slot1, uint8_t pt[VOL_SECTOR_SIZE], uint32_t *ctr_out)
{
    unsigned na;
    uint32_t got = 0, min;
    int rc;
    if (version == 1)
        return vol_sector_open(s, key, lineage, block, gen, sector, newest, slot0, pt, ctr_out);
    if (version != 2 || newest < fl || fl == UINT32_MAX)
        return -EINVAL;
    /* the newer slot: a write after the last flush (this session's, or one a crash left whole) */
    na = vol_slot_area(fl + 1);
    min = newest > fl ? newest : fl + 1;
    rc = vol_sector_open(s, key, lineage, block, gen, sector, min, na ? slot1 : slot0, pt, &got);
    if (rc == 0 && got >= min && vol_slot_area(got) == na) {
        *ctr_out = got;
        return 0;
    }
    if (rc == 0)
        sodium_memzero(pt, VOL_SECTOR_SIZE);
    if (newest > fl)
        return -EBADMSG; /* a write this session made (or read) is gone: not a torn write, a modification */
    /* else the flushed version, which no write since the flush touched: exactly fl (a hole when 0) */
    if ((rc = vol_sector_open(s, key, lineage, block, gen, sector, fl, na ? slot0 : slot1, pt, &got)))
        return rc;
    if (got != fl) {
        sodium_memzero(pt, VOL_SECTOR_SIZE);
        return -EBADMSG;
    }
    *ctr_out = got;
    return 0;
}

int vol_chunk_sector_open_one(vol_sealer *s, const uint8_t key[32], const uint8_t lineage[VOL_LINEAGE_LEN],
                              uint64_t block, uint64_t gen, unsigned version, unsigned sector, uint32_t fl,
                              uint32_t newest, const uint8_t *slot, uint8_t pt[VOL_SECTOR_SIZE], uint32_t *ctr_out)
{
    uint32_t got = 0;
    int rc;
    if (version == 1)
        return vol_sector_open(s, key, lineage, block, gen, sector, newest, slot, pt, ctr_out);
    if (version != 2 || newest < fl || fl == UINT32_MAX)
        return -EINVAL;
    /* exactly the version established: a counter of the right parity by construction (the slot's counter
     * is in the AAD, so a slot moved from the other area opens with its own counter, which differs) */
    if ((rc = vol_sector_open(s, key, lineage, block, gen, sector, newest, slot, pt, &got)))
        return rc;
    if (got != newest) {
        sodium_memzero(pt, VOL_SECTOR_SIZE);
        return -EBADMSG;
    }
    *ctr_out = got;
    return 0;
}
