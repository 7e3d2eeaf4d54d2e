/*
 * regions.c — the regions file: region name → key store, key-service endpoint and volume store
 * (see common/include/common/regions.h for the format).
 */
#include "common/regions.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "common/jsonwipe.h"
#include "common/readfile.h"

char *efs_regions_path(const char *given)
{
    const char *s;
    char *out = NULL;

    if (given && *given)
        return strdup(given);
    s = getenv("ENVELOPEFS_REGIONS");
    if (s && *s)
        return strdup(s);
    s = getenv("XDG_CONFIG_HOME");
    if (s && *s)
        return asprintf(&out, "%s/envelopefs/regions.json", s) < 0 ? NULL : out;
    s = getenv("HOME");
    return asprintf(&out, "%s/.config/envelopefs/regions.json", s && *s ? s : ".") < 0 ? NULL : out;
}

void efs_region_clear(efs_region *r)
{
    if (!r)
        return;
    free(r->name);
    free(r->store);
    free(r->kms_url);
    free(r->volume_store);
    free(r->root_key_file);
    free(r->credentials);
    memset(r, 0, sizeof *r);
}

static void say(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* `p` resolved against the directory of the regions file (absolute paths and URLs stay). */
static char *resolve(const char *file, const char *p)
{
    const char *slash = strrchr(file, '/');
    char *out = NULL;
    if (p[0] == '/' || !slash)
        return strdup(p);
    return asprintf(&out, "%.*s/%s", (int)(slash - file), file, p) < 0 ? NULL : out;
}

int efs_region_lookup(const char *path, const char *name, efs_region *out, char *err, size_t errlen)
{
    char *own = NULL;
    json_t *root = NULL, *regions, *r, *v;
    json_error_t je;
    const char *k;
    int rc = -EINVAL;

    memset(out, 0, sizeof *out);
    say(err, errlen, "%s", "");
    if (!name || !*name) {
        say(err, errlen, "no region name given");
        return -EINVAL;
    }
    if (!path) {
        if (!(own = efs_regions_path(NULL)))
            return -ENOMEM;
        path = own;
    }
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (json_error_code(&je) == json_error_cannot_open_file) {
            FILE *f = fopen(path, "r");
            rc = f ? -EIO : (errno == ENOENT ? -ENOENT : -errno);
            if (f)
                fclose(f);
            say(err, errlen, "%s: %s", path, rc == -ENOENT ? "no regions file" : strerror(-rc));
        } else {
            say(err, errlen, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        }
        goto out;
    }
    if (!json_is_object(root)) {
        say(err, errlen, "%s: the top level must be an object {\"regions\": {...}}", path);
        goto out;
    }
    json_object_foreach(root, k, v)
        if (strcmp(k, "regions")) {
            say(err, errlen, "%s: unknown member \"%s\" (expected \"regions\")", path, k);
            goto out;
        }
    regions = json_object_get(root, "regions");
    if (!json_is_object(regions)) {
        say(err, errlen, "%s: \"regions\" must be an object of region name to place", path);
        goto out;
    }
    r = json_object_get(regions, name);
    if (!r) {
        say(err, errlen, "%s does not name region %s", path, name);
        rc = -ENOENT;
        goto out;
    }
    if (!json_is_object(r)) {
        say(err, errlen, "%s: region %s must be an object", path, name);
        goto out;
    }
    json_object_foreach(r, k, v) {
        char **slot = !strcmp(k, "store")           ? &out->store
                      : !strcmp(k, "kms")           ? &out->kms_url
                      : !strcmp(k, "volume_store")  ? &out->volume_store
                      : !strcmp(k, "root_key_file") ? &out->root_key_file
                      : !strcmp(k, "credentials")   ? &out->credentials
                                                    : NULL;
        if (!slot) {
            say(err, errlen,
                "%s: region %s: unknown member \"%s\" (store, kms, volume_store, root_key_file, credentials)", path,
                name, k);
            goto out;
        }
        if (!json_is_string(v) || !*json_string_value(v)) {
            say(err, errlen, "%s: region %s: \"%s\" must be a non-empty string", path, name, k);
            goto out;
        }
        *slot = !strcmp(k, "kms") ? strdup(json_string_value(v)) : resolve(path, json_string_value(v));
        if (!*slot) {
            rc = -ENOMEM;
            goto out;
        }
    }
    if (!out->store && !out->kms_url) {
        say(err, errlen, "%s: region %s needs \"store\" or \"kms\"", path, name);
        goto out;
    }
    if (out->credentials && !out->kms_url) {
        say(err, errlen, "%s: region %s: \"credentials\" is for a \"kms\" region", path, name);
        goto out;
    }
    if (out->kms_url && strncmp(out->kms_url, "http://", 7) && strncmp(out->kms_url, "https://", 8)) {
        say(err, errlen, "%s: region %s: \"kms\" must be an http:// or https:// URL", path, name);
        goto out;
    }
    if (!out->volume_store && out->store && asprintf(&out->volume_store, "%s/volumes", out->store) < 0) {
        out->volume_store = NULL;
        rc = -ENOMEM;
        goto out;
    }
    if (!(out->name = strdup(name))) {
        rc = -ENOMEM;
        goto out;
    }
    rc = 0;
out:
    if (rc)
        efs_region_clear(out);
    json_decref(root);
    free(own);
    return rc;
}

int efs_region_credentials(const efs_region *r, char *akid, size_t akid_cap, char **secret, char *err,
                           size_t errlen)
{
    struct stat st;
    char *text = NULL;
    size_t len = 0;
    json_t *root = NULL, *o;
    const char *id, *sk;
    int fd, rc = -EINVAL;

    *secret = NULL;
    say(err, errlen, "%s", "");
    if (!r || !r->credentials) {
        say(err, errlen, "region %s names no \"credentials\" file", r && r->name ? r->name : "?");
        return -ENOENT;
    }
    fd = open(r->credentials, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || fstat(fd, &st)) {
        rc = -errno;
        say(err, errlen, "%s: %s", r->credentials, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    close(fd);
    if (!S_ISREG(st.st_mode) || (st.st_mode & 077)) {
        say(err, errlen, "%s: a credentials file must be a regular file of mode 0600 (or stricter), not %04o",
            r->credentials, (unsigned)(st.st_mode & 07777));
        return -EPERM;
    }
    if (!(text = efs_read_file(r->credentials, &len))) {
        rc = -errno;
        say(err, errlen, "%s: %s", r->credentials, strerror(errno));
        return rc;
    }
    efs_json_wipe_on_free(); /* the parser's own copies of the secret are wiped when freed */
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    sodium_memzero(text, len);
    free(text);
    o = json_object_get(root, "AccessKey");
    if (!o)
        o = root;
    id = json_string_value(json_object_get(o, "AccessKeyId"));
    sk = json_string_value(json_object_get(o, "SecretAccessKey"));
    if (!id || !sk || !*id || !*sk || strlen(id) >= akid_cap) {
        say(err, errlen, "%s: not an access key ({\"AccessKey\": {\"AccessKeyId\": ..., \"SecretAccessKey\": ...}})",
            r->credentials);
        goto out;
    }
    if (sodium_init() < 0 || !(*secret = sodium_malloc(strlen(sk) + 1))) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(*secret, sk, strlen(sk) + 1);
    snprintf(akid, akid_cap, "%s", id);
    rc = 0;
out:
    if (sk)
        sodium_memzero((char *)sk, strlen(sk));
    json_decref(root);
    return rc;
}
