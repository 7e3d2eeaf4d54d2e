/*
 * jsonb64.c — base64 JSON strings (see jsonb64.h).
 */
#include "envelopefs/jsonb64.h"

#include <stdlib.h>
#include <sodium.h>

json_t *efs_json_base64(const uint8_t *data, size_t n)
{
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(cap);
    json_t *j;
    if (!s)
        return NULL;
    sodium_bin2base64(s, cap, data, n, sodium_base64_VARIANT_ORIGINAL);
    j = json_string(s);
    sodium_memzero(s, cap);
    free(s);
    return j;
}
