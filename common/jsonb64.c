/*
 * jsonb64.c — base64 JSON strings (see jsonb64.h). libsodium's encoder is constant-time (the input is
 * often a key). Small inputs are encoded on the stack; the output is ASCII, so jansson's UTF-8 check
 * is skipped. Every intermediate copy is wiped.
 */
#include "common/jsonb64.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

json_t *efs_json_base64(const uint8_t *data, size_t n)
{
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char small[512], *s = cap <= sizeof small ? small : malloc(cap);
    json_t *j;
    if (!s)
        return NULL;
    sodium_bin2base64(s, cap, data, n, sodium_base64_VARIANT_ORIGINAL);
    j = json_stringn_nocheck(s, cap - 1);
    sodium_memzero(s, cap);
    if (s != small)
        free(s);
    return j;
}

int efs_base64_decode(uint8_t *out, size_t cap, const char *b64, size_t len, const char *ignore, size_t *out_len,
                      int variant)
{
    bool urlsafe = variant == sodium_base64_VARIANT_URLSAFE || variant == sodium_base64_VARIANT_URLSAFE_NO_PADDING;
    bool padded = variant == sodium_base64_VARIANT_ORIGINAL || variant == sodium_base64_VARIANT_URLSAFE;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)b64[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == (urlsafe ? '-' : '+') || c == (urlsafe ? '_' : '/') || (padded && c == '=') ||
            (c && ignore && strchr(ignore, c)))
            continue;
        return -1;
    }
    return sodium_base642bin(out, cap, b64, len, ignore, out_len, NULL, variant);
}
