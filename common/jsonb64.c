/*
 * jsonb64.c — base64 JSON strings (see jsonb64.h). libsodium's encoder is constant-time (the input is
 * often a key). Small inputs are encoded on the stack; the output is ASCII, so jansson's UTF-8 check
 * is skipped. Every intermediate copy is wiped.
 */
#include "envelopefs/jsonb64.h"

#include <stdlib.h>
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
