/*
 * fuzz_config.c — efs_config_parse (fs/config.c), the filesystem config CIPHERDIR/envelopefs.conf. A
 * parsed config must hold the values the JSON holds (read again here with jansson), and serialise
 * (efs_config_serialize) to a text that parses to the same config and serialises to the same text.
 */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <sodium.h>

#include "config.h"
#include "format.h"
#include "fuzz.h"

static const char *str(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static void same_config(const efs_config *a, const efs_config *b)
{
    FUZZ_CHECK(a->format == b->format && !memcmp(a->fs_id, b->fs_id, sizeof a->fs_id));
    FUZZ_CHECK(!strcmp(a->fs_id_hex, b->fs_id_hex) && !strcmp(a->kms_url, b->kms_url) && !strcmp(a->key_id, b->key_id));
    FUZZ_CHECK(a->block_size == b->block_size && a->dek_in_xattr == b->dek_in_xattr && a->bucket_key == b->bucket_key);
    FUZZ_CHECK(a->plaintext_names == b->plaintext_names && a->dirids_in_xattr == b->dirids_in_xattr);
    FUZZ_CHECK(a->header_size == b->header_size && a->fs_key_blob_len == b->fs_key_blob_len);
    FUZZ_CHECK(!memcmp(a->fs_key_blob, b->fs_key_blob, a->fs_key_blob_len) && !memcmp(a->mac, b->mac, 32));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    efs_config c, c2;
    const char *why = NULL;
    char *text, *text2, *b64, mac_hex[65];
    json_t *o;
    uint32_t off = 0;
    size_t cap;
    int rc = efs_config_parse((const char *)data, size, &c, &why);

    FUZZ_CHECK(rc == 0 || rc == -EINVAL);
    if (rc) {
        FUZZ_CHECK(why && *why);
        return 0;
    }
    FUZZ_CHECK(why == NULL && c.kms_url && c.key_id && c.fs_key_blob && c.fs_key_blob_len > 0);

    /* The values are the JSON's. */
    o = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    FUZZ_CHECK(json_is_object(o));
    FUZZ_CHECK(c.format >= 1 && c.format <= EFS_CONFIG_FORMAT &&
               json_integer_value(json_object_get(o, "format")) == c.format);
    FUZZ_CHECK(json_integer_value(json_object_get(o, "block_size")) == c.block_size);
    FUZZ_CHECK(!strcmp(str(o, "fs_id"), c.fs_id_hex) && !strcmp(str(o, "kms_url"), c.kms_url) &&
               !strcmp(str(o, "key_id"), c.key_id));
    cap = sodium_base64_encoded_len(c.fs_key_blob_len, sodium_base64_VARIANT_ORIGINAL);
    b64 = malloc(cap);
    FUZZ_CHECK(b64 != NULL);
    sodium_bin2base64(b64, cap, c.fs_key_blob, c.fs_key_blob_len, sodium_base64_VARIANT_ORIGINAL);
    FUZZ_CHECK(!strcmp(b64, str(o, "fs_key")));
    free(b64);
    sodium_bin2hex(mac_hex, sizeof mac_hex, c.mac, 32);
    FUZZ_CHECK(!strcasecmp(mac_hex, str(o, "mac")));
    if (c.format >= 3) {
        FUZZ_CHECK(json_integer_value(json_object_get(o, "header_size")) == c.header_size);
        FUZZ_CHECK(c.dek_in_xattr ? c.header_size == 0
                                  : c.header_size > EFS_HDR_FIXED + EFS_HDR_TAG && c.header_size <= EFS_HDR_MAX);
    } else {
        FUZZ_CHECK(c.header_size == 0 && !c.dirids_in_xattr);
    }
    json_decref(o);

    /* Where file data starts, and which headers are this filesystem's. */
    if (efs_config_data_offset(&c, &off))
        FUZZ_CHECK(off == (c.dek_in_xattr ? 0 : c.header_size));
    else
        FUZZ_CHECK(!c.dek_in_xattr && c.format < 3);
    FUZZ_CHECK(efs_config_header_matches(&c, c.header_size ? EFS_HDR_VERSION_PADDED : EFS_HDR_VERSION,
                                         c.header_size ? c.header_size : 1));

    /* Serialise, parse, serialise: a fixed point. */
    text = efs_config_serialize(&c);
    FUZZ_CHECK(text != NULL);
    rc = efs_config_parse(text, strlen(text), &c2, &why);
    if (rc)
        fprintf(stderr, "serialised config refused: %s\n%s\n", why, text);
    FUZZ_CHECK(rc == 0);
    same_config(&c, &c2);
    text2 = efs_config_serialize(&c2);
    FUZZ_CHECK(text2 && !strcmp(text, text2));
    free(text);
    free(text2);
    text = efs_config_canonical(&c);
    text2 = efs_config_canonical(&c2);
    FUZZ_CHECK(text && text2 && !strcmp(text, text2));
    free(text);
    free(text2);
    efs_config_clear(&c);
    efs_config_clear(&c2);
    return 0;
}
