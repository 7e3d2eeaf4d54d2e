/*
 * regions.h — where each region lives. A region of envelopefs stands for one key store (a directory,
 * or a key-service endpoint) and its volume store, as a region of AWS stands for one KMS and one EBS.
 * Commands that reach across regions (copy-snapshot --source-region, ReplicateKey --replica-region)
 * find the other region here; the store a command runs on is its own region (its metadata names it).
 *
 * The regions file (JSON; path from efs_regions_path) maps names to places:
 *
 *   {"regions": {
 *      "eu-west-1": {"store": "/srv/efs-eu"},
 *      "us-west-2": {"kms": "http://127.0.0.1:8081", "volume_store": "/srv/efs-usw2/volumes",
 *                    "credentials": "usw2-replicator.json"}}}
 *
 * Members of a region: "store" (key store directory; its volume store defaults to STORE/volumes),
 * "kms" (an endpoint URL: the key service is reached there instead of opening a store), "volume_store"
 * (the volume store directory), "root_key_file" (unlocks "store"; default: the usual lookup, i.e.
 * STORE/root.key), "credentials" (a "kms" region: a file, mode 0600 or stricter, holding the access key
 * a key service replicating multi-Region keys into that region signs with — the output of `envelopefs kms
 * create-access-key` on that region's store, {"AccessKey": {"AccessKeyId": ..., "SecretAccessKey": ...}},
 * or that inner object alone; read by efs_region_credentials at each use, never logged). At least one of
 * "store" and "kms"; a "kms" region needs "volume_store" to hold volumes. Relative paths are relative to the regions file's directory. Anything else is an error
 * naming it (never ignored).
 */
#ifndef ENVELOPEFS_REGIONS_H
#define ENVELOPEFS_REGIONS_H

#include <stddef.h>

typedef struct efs_region {
    char *name;          /* the region's name */
    char *store;         /* key store directory, or NULL */
    char *kms_url;       /* key-service endpoint, or NULL (then the key service is local:store) */
    char *volume_store;  /* volume store directory: as given, else STORE/volumes, else NULL */
    char *root_key_file; /* root key file for store, or NULL (the usual lookup) */
    char *credentials;   /* the credentials file of a "kms" region (path), or NULL */
} efs_region;

/* The regions file's path: `given` if non-NULL, else $ENVELOPEFS_REGIONS, else
 * $XDG_CONFIG_HOME/envelopefs/regions.json, else ~/.config/envelopefs/regions.json. malloc'd (caller
 * frees); NULL only when out of memory. */
char *efs_regions_path(const char *given) __attribute__((warn_unused_result));

/* Look `name` up in the regions file at `path` (NULL: efs_regions_path(NULL)). On success fills *out
 * (every string malloc'd; release with efs_region_clear) and returns 0. -ENOENT when the file does not
 * exist or does not name the region; -EINVAL when the file is malformed (err, if non-NULL, then says
 * what and where, NUL-terminated within errlen); another -errno when it cannot be read. *out is zeroed
 * on every failure. */
int efs_region_lookup(const char *path, const char *name, efs_region *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* The access key of r's credentials file: its id into akid (cap akid_cap) and its secret into *secret
 * (sodium_malloc'd, NUL-terminated; release with sodium_free). 0, or -ENOENT when r names no credentials
 * file, -EPERM when the file is readable or writable by group or others (or not a regular file), -EINVAL
 * when it does not hold an access key, another -errno when it cannot be read; err (if non-NULL) then says
 * which file and what, never any part of the secret. Every copy of the file's text is wiped. */
int efs_region_credentials(const efs_region *r, char *akid, size_t akid_cap, char **secret, char *err,
                           size_t errlen) __attribute__((warn_unused_result));

/* Frees the strings of *r and zeroes it; NULL or a zeroed region is a no-op. */
void efs_region_clear(efs_region *r);

#endif
