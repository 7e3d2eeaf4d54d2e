/*
 * importtoken.c — the import token's header and its parser (importtoken.h).
 */
#include <string.h>

#include "importtoken.h"
#include "keymat.h"
#include "keyspec.h"

#define SEALED_MIN (24 + 1 + 16)
#define SEALED_MAX (24 + KMS_KEYMAT_MAX + 16)

static const char *const WRAP[] = {NULL, "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1",
                                   "RSA_AES_KEY_WRAP_SHA_256"};

int kms_wrap_alg_parse(const char *name)
{
    for (int i = 1; name && i <= KMS_WRAP_RSA_AES_KEY_WRAP_SHA_256; i++)
        if (!strcmp(WRAP[i], name))
            return i;
    return -1;
}

const char *kms_wrap_alg_name(int a)
{
    return a >= 1 && a <= KMS_WRAP_RSA_AES_KEY_WRAP_SHA_256 ? WRAP[a] : "?";
}

void kms_import_token_header(uint8_t *out, int wrap_alg, int wrap_spec, const uint8_t key_id[16], int64_t valid_to)
{
    memcpy(out, "EFIT", 4);
    out[4] = 1;
    out[5] = (uint8_t)wrap_alg;
    out[6] = (uint8_t)wrap_spec;
    memcpy(out + 7, key_id, 16);
    for (int i = 0; i < 8; i++)
        out[23 + i] = (uint8_t)((uint64_t)valid_to >> (56 - 8 * i));
}

int kms_import_token_parse(const uint8_t *buf, size_t len, kms_import_token *t)
{
    uint64_t v = 0;
    if (!buf || len < KMS_IMPORT_TOKEN_HEADER + SEALED_MIN || len > KMS_IMPORT_TOKEN_HEADER + SEALED_MAX ||
        len > KMS_IMPORT_TOKEN_MAX || memcmp(buf, "EFIT", 4) || buf[4] != 1 || buf[5] < KMS_WRAP_RSAES_OAEP_SHA_1 ||
        buf[5] > KMS_WRAP_RSA_AES_KEY_WRAP_SHA_256 || !kms_spec_is_rsa((enum kms_key_spec)buf[6]))
        return -1;
    for (int i = 0; i < 8; i++)
        v = v << 8 | buf[23 + i];
    if (v > (uint64_t)INT64_MAX)
        return -1;
    t->wrap_alg = buf[5];
    t->wrap_spec = buf[6];
    memcpy(t->key_id, buf + 7, 16);
    t->valid_to = (int64_t)v;
    t->header = buf;
    t->sealed = buf + KMS_IMPORT_TOKEN_HEADER;
    t->sealed_len = len - KMS_IMPORT_TOKEN_HEADER;
    return 0;
}
