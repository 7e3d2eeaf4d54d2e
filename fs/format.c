/*
 * format.c — the encrypted file's header: encode, parse, seal and verify (see format.h). Blocks are
 * blockcrypt.c's.
 */
#include "format.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>


#include "common/evp.h"

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

size_t efs_header_len(const efs_header *h)
{
    return h->version == EFS_HDR_VERSION_PADDED ? h->total_len : EFS_HDR_FIXED + (size_t)h->wrapped_len + EFS_HDR_TAG;
}

/* Does h describe a header that can be encoded? */
static bool header_ok(const efs_header *h)
{
    size_t need = EFS_HDR_FIXED + (size_t)h->wrapped_len + EFS_HDR_TAG;
    if (h->wrapped_len > EFS_WRAPPED_MAX)
        return false;
    if (h->version == EFS_HDR_VERSION)
        return true;
    return h->version == EFS_HDR_VERSION_PADDED && h->total_len >= need && h->total_len <= EFS_HDR_MAX;
}

/* Everything the tag covers: the fields, then (version 2) zeros up to the tag. Returns its length. */
static size_t encode_body(const efs_header *h, uint8_t *out)
{
    size_t n = EFS_HDR_FIXED + h->wrapped_len, body = efs_header_len(h) - EFS_HDR_TAG;
    memcpy(out, EFS_HDR_MAGIC, 4);
    put16(out + 4, h->version);
    put16(out + 6, (uint16_t)efs_header_len(h));
    put32(out + 8, h->block_size);
    out[12] = h->key_mode;
    out[13] = out[14] = out[15] = 0;
    memcpy(out + 16, h->file_id, EFS_FILE_ID_LEN);
    put16(out + 32, h->wrapped_len);
    memcpy(out + EFS_HDR_FIXED, h->wrapped, h->wrapped_len);
    memset(out + n, 0, body - n);
    return body;
}

int efs_header_encode(const efs_header *h, uint8_t *out, size_t cap)
{
    size_t n;
    if (!header_ok(h) || cap < efs_header_len(h))
        return -EINVAL;
    n = encode_body(h, out);
    memcpy(out + n, h->tag, EFS_HDR_TAG);
    return 0;
}

int efs_header_parse(const uint8_t *buf, size_t len, efs_header *h, size_t *hdr_len)
{
    uint16_t total, wl;
    if (len < EFS_HDR_FIXED + EFS_HDR_TAG || memcmp(buf, EFS_HDR_MAGIC, 4))
        return -EINVAL;
    memset(h, 0, sizeof *h);
    h->version = get16(buf + 4);
    if (h->version != EFS_HDR_VERSION && h->version != EFS_HDR_VERSION_PADDED)
        return -EINVAL;
    total = get16(buf + 6);
    h->block_size = get32(buf + 8);
    h->key_mode = buf[12];
    if (buf[13] || buf[14] || buf[15])
        return -EINVAL;
    if (h->key_mode != EFS_KEYMODE_KMS && h->key_mode != EFS_KEYMODE_BUCKET)
        return -EINVAL;
    if (h->block_size < 512 || h->block_size > (1u << 20) || (h->block_size & (h->block_size - 1)))
        return -EINVAL;
    memcpy(h->file_id, buf + 16, EFS_FILE_ID_LEN);
    wl = get16(buf + 32);
    if (wl == 0 || wl > EFS_WRAPPED_MAX || len < total)
        return -EINVAL;
    if (h->version == EFS_HDR_VERSION ? total != EFS_HDR_FIXED + wl + EFS_HDR_TAG
                                      : total < EFS_HDR_FIXED + wl + EFS_HDR_TAG || total > EFS_HDR_MAX)
        return -EINVAL;
    for (size_t i = EFS_HDR_FIXED + wl; i < (size_t)total - EFS_HDR_TAG; i++) /* version 2 padding */
        if (buf[i])
            return -EINVAL;
    h->wrapped_len = wl;
    h->total_len = h->version == EFS_HDR_VERSION_PADDED ? total : 0;
    memcpy(h->wrapped, buf + EFS_HDR_FIXED, wl);
    memcpy(h->tag, buf + total - EFS_HDR_TAG, EFS_HDR_TAG);
    *hdr_len = total;
    return 0;
}

static int header_mac(const efs_header *h, const efs_file_keys *k, uint8_t out[EFS_HDR_TAG])
{
    uint8_t body[EFS_HDR_MAX], mac[32];
    size_t n;
    if (!header_ok(h))
        return -EINVAL;
    n = encode_body(h, body);
    if (efs_hmac_sha256(k->mac_key, body, n, mac))
        return -EIO;
    memcpy(out, mac, EFS_HDR_TAG);
    return 0;
}

int efs_header_seal(efs_header *h, const efs_file_keys *k)
{
    return header_mac(h, k, h->tag);
}

int efs_header_verify(const efs_header *h, const efs_file_keys *k)
{
    uint8_t t[EFS_HDR_TAG];
    int rc = header_mac(h, k, t);
    if (rc)
        return rc;
    return CRYPTO_memcmp(t, h->tag, EFS_HDR_TAG) ? -EBADMSG : 0;
}
