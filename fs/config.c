/*
 * config.c — parse, serialise, load and store the filesystem config (see config.h).
 */
#include "config.h"
#include "format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "common/jsonb64.h"

void efs_config_clear(efs_config *c)
{
    free(c->kms_url);
    free(c->key_id);
    free(c->fs_key_blob);
    memset(c, 0, sizeof *c);
}

static json_t *to_json(const efs_config *c, bool with_mac)
{
    char *b64;
    size_t cap = sodium_base64_encoded_len(c->fs_key_blob_len, sodium_base64_VARIANT_ORIGINAL);
    json_t *o;
    b64 = malloc(cap);
    if (!b64)
        return NULL;
    sodium_bin2base64(b64, cap, c->fs_key_blob, c->fs_key_blob_len, sodium_base64_VARIANT_ORIGINAL);
    o = json_pack("{s:i, s:s, s:s, s:s, s:s, s:i, s:s, s:b, s:s, s:s}", "format", c->format, "fs_id", c->fs_id_hex,
                  "kms_url", c->kms_url, "key_id", c->key_id, "cipher", "AES-256-GCM", "block_size",
                  (int)c->block_size, "dek_location", c->dek_in_xattr ? "xattr" : "header", "bucket_key",
                  c->bucket_key, "names", c->plaintext_names ? "plaintext" : "encrypted", "fs_key", b64);
    free(b64);
    if (o && c->format >= 3) {
        json_object_set_new(o, "header_size", json_integer(c->header_size));
        json_object_set_new(o, "dirids", json_string(c->dirids_in_xattr ? "xattr" : "file"));
    }
    if (o && with_mac) {
        char hex[65];
        sodium_bin2hex(hex, sizeof hex, c->mac, 32);
        json_object_set_new(o, "mac", json_string(hex));
    }
    return o;
}

char *efs_config_canonical(const efs_config *c)
{
    json_t *o = to_json(c, false);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return s;
}

char *efs_config_serialize(const efs_config *c)
{
    json_t *o = to_json(c, true);
    char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return s;
}

/* Field key of o is the string `yes` or `no`: 0 and *is_yes, or -1 (missing, not a string, another value). */
static int two_way(json_t *o, const char *key, const char *yes, const char *no, bool *is_yes)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (!s || (strcmp(s, yes) && strcmp(s, no)))
        return -1;
    *is_yes = !strcmp(s, yes);
    return 0;
}

int efs_config_parse(const char *buf, size_t len, efs_config *c, const char **why)
{
    json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    const char *s;
    size_t n;
    int rc = -EINVAL;

    memset(c, 0, sizeof *c);
    *why = "not a JSON object";
    if (!json_is_object(o))
        goto out;
    *why = "missing or unsupported \"format\"";
    if (!json_is_integer(json_object_get(o, "format")))
        goto out;
    {
        long long f = json_integer_value(json_object_get(o, "format")); /* range-checked before the cast */
        if (f < 1 || f > EFS_CONFIG_FORMAT) {
            *why = f > EFS_CONFIG_FORMAT ? "created by a newer envelopefs (config format too new)"
                                         : "unsupported config format";
            goto out;
        }
        c->format = (int)f;
    }
    *why = "bad \"fs_id\"";
    s = json_string_value(json_object_get(o, "fs_id"));
    if (!s || strlen(s) != 32 || sodium_hex2bin(c->fs_id, 16, s, 32, NULL, &n, NULL) || n != 16)
        goto out;
    memcpy(c->fs_id_hex, s, 33);
    *why = "missing \"kms_url\" or \"key_id\"";
    if (!json_string_value(json_object_get(o, "kms_url")) || !json_string_value(json_object_get(o, "key_id")))
        goto out;
    c->kms_url = strdup(json_string_value(json_object_get(o, "kms_url")));
    c->key_id = strdup(json_string_value(json_object_get(o, "key_id")));
    *why = "unsupported \"cipher\"";
    s = json_string_value(json_object_get(o, "cipher"));
    if (!s || strcmp(s, "AES-256-GCM"))
        goto out;
    *why = "bad \"block_size\"";
    if (!json_is_integer(json_object_get(o, "block_size")))
        goto out;
    {
        long long bs = json_integer_value(json_object_get(o, "block_size"));
        if (bs < 512 || bs > (1 << 20) || (bs & (bs - 1)))
            goto out;
        c->block_size = (uint32_t)bs;
    }
    *why = "bad \"dek_location\"";
    if (two_way(o, "dek_location", "xattr", "header", &c->dek_in_xattr))
        goto out;
    *why = "bad \"bucket_key\"";
    if (!json_is_boolean(json_object_get(o, "bucket_key")))
        goto out;
    c->bucket_key = json_is_true(json_object_get(o, "bucket_key"));
    *why = "bad \"names\"";
    if (two_way(o, "names", "plaintext", "encrypted", &c->plaintext_names))
        goto out;
    if (!c->plaintext_names && c->format < 2) {
        *why = "format 1 has no encrypted names (\"names\" must be \"plaintext\")";
        goto out;
    }
    *why = "bad \"fs_key\"";
    s = json_string_value(json_object_get(o, "fs_key"));
    if (!s)
        goto out;
    c->fs_key_blob = malloc(strlen(s) + 1);
    /* efs_base64_decode, not sodium_base642bin: libsodium 1.0.18 decodes every byte >= 0x80 as '/'. */
    if (!c->fs_key_blob ||
        efs_base64_decode(c->fs_key_blob, strlen(s) + 1, s, strlen(s), NULL, &c->fs_key_blob_len,
                          sodium_base64_VARIANT_ORIGINAL) || c->fs_key_blob_len == 0)
        goto out;
    *why = "bad \"mac\"";
    s = json_string_value(json_object_get(o, "mac"));
    if (!s || strlen(s) != 64 || sodium_hex2bin(c->mac, 32, s, 64, NULL, &n, NULL) || n != 32)
        goto out;
    if (c->format >= 3) {
        json_t *hs = json_object_get(o, "header_size");
        long long v = json_is_integer(hs) ? json_integer_value(hs) : -1;
        *why = "bad \"header_size\"";
        if (c->dek_in_xattr ? v != 0 : v < EFS_HDR_FIXED + 1 + EFS_HDR_TAG || v > EFS_HDR_MAX)
            goto out;
        c->header_size = (uint32_t)v;
        *why = "bad \"dirids\"";
        if (two_way(o, "dirids", "xattr", "file", &c->dirids_in_xattr))
            goto out;
    }
    if (json_object_size(o) != (c->format >= 3 ? 13u : 11u)) {
        *why = "unknown fields (written by a newer envelopefs?)";
        goto out;
    }
    *why = NULL;
    rc = 0;
out:
    json_decref(o);
    if (rc)
        efs_config_clear(c);
    return rc;
}

bool efs_config_data_offset(const efs_config *c, uint32_t *off)
{
    if (!c->dek_in_xattr && !c->header_size)
        return false;
    if (off)
        *off = c->dek_in_xattr ? 0 : c->header_size;
    return true;
}

bool efs_config_header_matches(const efs_config *c, unsigned version, size_t len)
{
    if (c->header_size)
        return version == EFS_HDR_VERSION_PADDED && len == c->header_size;
    return version == EFS_HDR_VERSION;
}

int efs_config_load(const char *dir, efs_config *c, const char **why)
{
    char path[4096], buf[16384];
    ssize_t n;
    int fd;
    snprintf(path, sizeof path, "%s/%s", dir, EFS_CONFIG_NAME);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *why = "no envelopefs.conf (run `envelopefs init` first)";
        return -errno;
    }
    n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 0) {
        *why = "cannot read envelopefs.conf";
        return -EIO;
    }
    return efs_config_parse(buf, (size_t)n, c, why);
}

int efs_config_store(const char *dir, const efs_config *c)
{
    char tmp[4096], path[4096], *s = efs_config_serialize(c);
    int fd, dfd, rc = 0;
    size_t len;
    if (!s)
        return -ENOMEM;
    len = strlen(s);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, EFS_CONFIG_NAME);
    snprintf(path, sizeof path, "%s/%s", dir, EFS_CONFIG_NAME);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0400);
    if (fd < 0) {
        free(s);
        return -errno;
    }
    if (write(fd, s, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd))
        rc = -errno ? -errno : -EIO;
    close(fd);
    free(s);
    if (!rc && rename(tmp, path))
        rc = -errno;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}
