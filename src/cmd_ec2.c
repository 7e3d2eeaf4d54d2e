/*
 * cmd_ec2.c — `envelopefs ec2 <operation>`: EBS's control plane shaped like `aws ec2` over the local
 * volume store (vol/store.h): create-, describe- and delete-volume(s), create-, describe- and
 * delete-snapshot(s), and the account's encryption defaults. Output is the response JSON the AWS CLI
 * prints; errors print its "An error occurred (Code) ..." line with EC2's codes and exit 254, usage
 * errors 252.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli_aws.h"
#include "cli_vol.h"
#include "cli_vol_sign.h"
#include "commands.h"
#include "common/jsonwipe.h"

#define WHO "envelopefs ec2"

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cli_vol_usage_verr(WHO, fmt, ap);
    va_end(ap);
    return CLI_EXIT_USAGE;
}
/* --tag-specifications: JSON ([{"ResourceType":"volume","Tags":[{"Key":..,"Value":..}]}]) or the
 * shorthand ResourceType=volume,Tags=[{Key=k,Value=v},{Key=k2,Value=v2}]. Returns the tags (a JSON array
 * text, malloc'd) for resource type rtype, "" when none; NULL on a malformed value. */
static char *tag_spec(char **vals, int n, const char *rtype)
{
    json_t *tags = json_array();
    char *out = NULL;
    for (int i = 0; i < n && tags; i++) {
        const char *s = vals[i];
        if (s[0] == '[' || s[0] == '{') {
            json_t *j = json_loads(s, 0, NULL), *spec;
            size_t k;
            if (!j)
                goto bad;
            if (json_is_object(j)) {
                json_t *arr = json_array();
                json_array_append(arr, j);
                json_decref(j);
                j = arr;
            }
            json_array_foreach(j, k, spec) {
                json_t *t;
                size_t m;
                const char *rt = json_string_value(json_object_get(spec, "ResourceType"));
                if (rt && strcmp(rt, rtype))
                    continue;
                json_array_foreach(json_object_get(spec, "Tags"), m, t) {
                    if (!json_is_string(json_object_get(t, "Key"))) {
                        json_decref(j);
                        goto bad;
                    }
                    json_array_append_new(tags, json_pack("{s:s, s:s}", "Key", json_string_value(json_object_get(t, "Key")),
                                                          "Value", json_string_value(json_object_get(t, "Value")) ?: ""));
                }
            }
            json_decref(j);
        } else {
            const char *rt = strstr(s, "ResourceType="), *t = strstr(s, "Tags=[");
            if (!t)
                goto bad;
            if (rt && strncmp(rt + 13, rtype, strlen(rtype)))
                continue;
            for (t += 6; *t && *t != ']';) {
                char key[256], val[256];
                const char *end;
                if (*t == ',') {
                    t++;
                    continue;
                }
                if (*t != '{' || !(end = strchr(t, '}')))
                    goto bad;
                if (sscanf(t, "{Key=%255[^,}],Value=%255[^}]}", key, val) == 2)
                    json_array_append_new(tags, json_pack("{s:s, s:s}", "Key", key, "Value", val));
                else if (sscanf(t, "{Key=%255[^,}]}", key) == 1)
                    json_array_append_new(tags, json_pack("{s:s, s:s}", "Key", key, "Value", ""));
                else
                    goto bad;
                t = end + 1;
            }
        }
    }
    if (!tags)
        return NULL;
    out = json_array_size(tags) ? json_dumps(tags, JSON_COMPACT) : strdup("");
    json_decref(tags);
    return out;
bad:
    json_decref(tags);
    return NULL;
}

static int create_volume(cli_vol *g, const struct cli_args *a)
{
    vol_create_args c = {0};
    const char *size = NULL, *enc = cli_arg1(a, "no-encrypted");
    char **tv, *tags = NULL;
    int ntv = cli_argv_of(a, "tag-specifications", &tv), rc;
    kmsc *kms;
    vol_store *st;
    vol_volume v;
    vol_err e = {"", ""};
    if ((rc = cli_need1(WHO, a, "size", &size, false)) || (rc = cli_need1(WHO, a, "snapshot-id", &c.snapshot_id, false)) ||
        (rc = cli_need1(WHO, a, "kms-key-id", &c.kms_key_id, false)))
        return rc;
    if (enc)
        return cli_service_error("InvalidParameterValue", "CreateVolume",
                                 "envelopefs volumes are always encrypted (EBS encryption by default)");
    if (size && !cli_parse_u64(size, &c.size_gib))
        return cli_service_error("InvalidParameterValue", "CreateVolume", "Invalid value for parameter size");
    if (size && c.size_gib == 0)
        return cli_service_error("InvalidParameterValue", "CreateVolume",
                                 "Volume of 0GiB is too small; minimum is 1GiB.");
    if (ntv && !(tags = tag_spec(tv, ntv, "volume")))
        return usage_error("--tag-specifications takes ResourceType=volume,Tags=[{Key=k,Value=v}] or JSON");
    c.tags = tags && *tags ? tags : NULL;
    if (!(st = cli_vol_open(g, true, &kms, "CreateVolume"))) {
        free(tags);
        return CLI_EXIT_SERVICE;
    }
    if (vol_create_volume(st, &c, &v, &e)) {
        rc = cli_service_error(e.code, "CreateVolume", e.message);
    } else {
        rc = cli_vol_print(g, WHO, cli_volume_json(st, &v));
        vol_volume_clear(&v);
    }
    vol_store_free(st);
    kmsc_free(kms);
    free(tags);
    return rc;
}

/* --filters Name=n,Values=a,b ... (or JSON): true if x passes every filter. */
struct filter {
    char name[128];
    char *values[16];
    int n;
};
static int parse_filters(char **v, int n, struct filter *f, int cap)
{
    int nf = 0;
    for (int i = 0; i < n; i++) {
        const char *s = v[i], *vals;
        if (nf == cap)
            return -1;
        memset(&f[nf], 0, sizeof f[nf]);
        if (s[0] == '[') {
            json_t *j = json_loads(s, 0, NULL), *x;
            size_t k;
            if (!j)
                return -1;
            json_array_foreach(j, k, x) {
                json_t *y;
                size_t m;
                if (nf == cap || !json_is_string(json_object_get(x, "Name"))) {
                    json_decref(j);
                    return -1;
                }
                memset(&f[nf], 0, sizeof f[nf]);
                snprintf(f[nf].name, sizeof f[nf].name, "%s", json_string_value(json_object_get(x, "Name")));
                json_array_foreach(json_object_get(x, "Values"), m, y) if (f[nf].n < 16 && json_is_string(y))
                    f[nf].values[f[nf].n++] = strdup(json_string_value(y));
                nf++;
            }
            json_decref(j);
            continue;
        }
        if (strncmp(s, "Name=", 5) || !(vals = strstr(s, ",Values=")))
            return -1;
        snprintf(f[nf].name, sizeof f[nf].name, "%.*s", (int)(vals - s - 5), s + 5);
        for (vals += 8; *vals && f[nf].n < 16;) {
            size_t l = strcspn(vals, ",");
            f[nf].values[f[nf].n++] = strndup(vals, l);
            vals += l + (vals[l] == ',');
        }
        nf++;
    }
    return nf;
}
static void free_filters(struct filter *f, int n)
{
    for (int i = 0; i < n; i++)
        for (int k = 0; k < f[i].n; k++)
            free(f[i].values[k]);
}

/* Does the JSON object o (a Volume or Snapshot) pass filter f? Names map to fields (volume-id → VolumeId,
 * status → State, size/volume-size, snapshot-id, encrypted, kms-key-id, tag:K, tag-key). */
static bool passes(json_t *o, const struct filter *f)
{
    static const struct {
        const char *name, *field;
    } M[] = {{"volume-id", "VolumeId"}, {"snapshot-id", "SnapshotId"}, {"status", "State"}, {"size", "Size"},
             {"volume-size", "VolumeSize"}, {"encrypted", "Encrypted"}, {"kms-key-id", "KmsKeyId"},
             {"description", "Description"}, {"owner-id", "OwnerId"}, {"attachment.status", NULL}};
    char text[512];
    json_t *x = NULL;
    if (!strncmp(f->name, "tag:", 4) || !strcmp(f->name, "tag-key")) {
        json_t *t;
        size_t i;
        json_array_foreach(json_object_get(o, "Tags"), i, t) {
            const char *k = json_string_value(json_object_get(t, "Key")), *v = json_string_value(json_object_get(t, "Value"));
            for (int j = 0; j < f->n; j++)
                if (f->name[3] == ':' ? (!strcmp(k, f->name + 4) && !strcmp(v, f->values[j])) : !strcmp(k, f->values[j]))
                    return true;
        }
        return false;
    }
    for (size_t i = 0; i < sizeof M / sizeof M[0]; i++)
        if (!strcmp(M[i].name, f->name) && M[i].field)
            x = json_object_get(o, M[i].field);
    if (!x)
        return false; /* an unknown filter matches nothing */
    if (json_is_string(x))
        snprintf(text, sizeof text, "%s", json_string_value(x));
    else if (json_is_integer(x))
        snprintf(text, sizeof text, "%lld", (long long)json_integer_value(x));
    else
        snprintf(text, sizeof text, "%s", json_is_true(x) ? "true" : "false");
    for (int j = 0; j < f->n; j++)
        if (!strcmp(text, f->values[j]))
            return true;
    return false;
}

struct listing {
    vol_store *st;
    json_t *arr;
    bool volumes;
};
static int add_volume(void *arg, const vol_volume *v)
{
    struct listing *l = arg;
    json_array_append_new(l->arr, cli_volume_json(l->st, v));
    return 0;
}
static int add_snapshot(void *arg, const vol_snapshot *s)
{
    struct listing *l = arg;
    json_array_append_new(l->arr, cli_snapshot_json(l->st, s));
    return 0;
}

/* describe-volumes / describe-snapshots: ids must exist (else NotFound naming the first missing one). */
static int describe(cli_vol *g, const struct cli_args *a, bool volumes)
{
    const char *op = volumes ? "DescribeVolumes" : "DescribeSnapshots";
    const char *idflag = volumes ? "volume-ids" : "snapshot-ids", *prefix = volumes ? "vol-" : "snap-";
    const char *field = volumes ? "VolumeId" : "SnapshotId";
    char **ids, **fv, **owners;
    int nids = cli_argv_of(a, idflag, &ids), nfv = cli_argv_of(a, "filters", &fv), nown = cli_argv_of(a, "owner-ids", &owners);
    struct filter f[16];
    int nf = parse_filters(fv, nfv, f, 16), rc = 0;
    struct listing l;
    kmsc *kms;
    json_t *out, *kept;
    if (nf < 0)
        return usage_error("--filters takes Name=n,Values=v1,v2 ... or JSON");
    for (int i = 0; i < nown; i++)
        if (strcmp(owners[i], "self")) {
            free_filters(f, nf);
            return cli_service_error("InvalidUserID.Malformed", op, "only --owner-ids self is known to a local store");
        }
    for (int i = 0; i < nids; i++)
        if (!vol_id_valid(prefix, ids[i])) {
            char msg[160];
            free_filters(f, nf);
            snprintf(msg, sizeof msg, "Invalid id: \"%s\" (expecting \"%s...\")", ids[i], prefix);
            return cli_service_error(volumes ? "InvalidVolumeID.Malformed" : "InvalidSnapshotID.Malformed", op, msg);
        }
    if (!(l.st = cli_vol_open(g, false, &kms, op))) {
        free_filters(f, nf);
        return CLI_EXIT_SERVICE;
    }
    l.arr = json_array();
    l.volumes = volumes;
    rc = volumes ? vol_store_catalog(l.st)->ops->volume_list(vol_store_catalog(l.st), add_volume, &l)
                 : vol_store_catalog(l.st)->ops->snapshot_list(vol_store_catalog(l.st), add_snapshot, &l);
    if (rc) {
        rc = cli_service_error("InternalError", op, "cannot read the volume catalog");
        goto out;
    }
    for (int i = 0; i < nids; i++) {
        bool found = false;
        json_t *x;
        size_t k;
        json_array_foreach(l.arr, k, x) if (!strcmp(json_string_value(json_object_get(x, field)), ids[i])) found = true;
        if (!found) {
            char msg[160];
            snprintf(msg, sizeof msg, "The %s '%s' does not exist.", volumes ? "volume" : "snapshot", ids[i]);
            rc = cli_service_error(volumes ? "InvalidVolume.NotFound" : "InvalidSnapshot.NotFound", op, msg);
            goto out;
        }
    }
    kept = json_array();
    {
        json_t *x;
        size_t k;
        json_array_foreach(l.arr, k, x) {
            bool ok = !nids;
            for (int i = 0; i < nids; i++)
                if (!strcmp(json_string_value(json_object_get(x, field)), ids[i]))
                    ok = true;
            for (int i = 0; ok && i < nf; i++)
                ok = passes(x, &f[i]);
            if (ok)
                json_array_append(kept, x);
        }
    }
    /* Paging, as EC2: --max-results 5..1000 (not with ids); the token is the id of the last item of the
       previous page (the listing's order is stable: created, id), opaque to the caller. */
    {
        const char *mr = cli_arg1(a, "max-results"), *tok = cli_arg1(a, "next-token");
        uint64_t max = 0;
        size_t from = 0, n = json_array_size(kept);
        if (mr && nids) {
            json_decref(kept);
            rc = cli_service_error("InvalidParameterCombination", op, volumes
                ? "The parameter volumeSet cannot be used with the parameter maxResults"
                : "The parameter snapshotSet cannot be used with the parameter maxResults");
            goto out;
        }
        if (mr && (!cli_parse_u64(mr, &max) || max < 5 || max > 1000)) {
            json_decref(kept);
            rc = cli_service_error("InvalidParameterValue", op,
                                   "Value for parameter maxResults is invalid. Expecting a value between 5 and 1000.");
            goto out;
        }
        if (tok) {
            bool hit = false;
            for (size_t k = 0; k < n && !hit; k++)
                if (!strcmp(json_string_value(json_object_get(json_array_get(kept, k), field)), tok)) {
                    from = k + 1;
                    hit = true;
                }
            if (!hit) {
                json_decref(kept);
                rc = cli_service_error("InvalidNextToken", op, "The token provided is invalid or has expired.");
                goto out;
            }
        }
        if (from || (max && n - from > max)) {
            json_t *page = json_array();
            size_t end = max && n - from > max ? from + max : n;
            for (size_t k = from; k < end; k++)
                json_array_append(page, json_array_get(kept, k));
            out = json_object();
            if (end < n)
                json_object_set_new(out, "NextToken", json_string(json_string_value(
                    json_object_get(json_array_get(kept, end - 1), field))));
            json_decref(kept);
            kept = page;
        } else
            out = json_object();
    }
    json_object_set_new(out, volumes ? "Volumes" : "Snapshots", kept);
    rc = cli_vol_print(g, WHO, out);
out:
    json_decref(l.arr);
    free_filters(f, nf);
    vol_store_free(l.st);
    return rc;
}

static int delete_thing(cli_vol *g, const struct cli_args *a, bool volume)
{
    const char *id, *op = volume ? "DeleteVolume" : "DeleteSnapshot";
    vol_store *st;
    kmsc *kms;
    vol_err e = {"", ""};
    int rc = cli_need1(WHO, a, volume ? "volume-id" : "snapshot-id", &id, true);
    if (rc)
        return rc;
    if (!(st = cli_vol_open(g, false, &kms, op)))
        return CLI_EXIT_SERVICE;
    if (volume ? vol_delete_volume(st, id, &e) : vol_delete_snapshot(st, id, &e))
        rc = cli_service_error(e.code, op, e.message);
    vol_store_free(st);
    return rc;
}

static int create_snapshot(cli_vol *g, const struct cli_args *a)
{
    const char *vid, *desc, *sk;
    char **tv, *tags = NULL;
    int ntv = cli_argv_of(a, "tag-specifications", &tv), rc;
    vol_store *st;
    vol_snapshot s;
    kmsc *kms;
    vol_err e = {"", ""};
    if ((rc = cli_need1(WHO, a, "volume-id", &vid, true)) || (rc = cli_need1(WHO, a, "description", &desc, false)) ||
        (rc = cli_need1(WHO, a, "signing-key-id", &sk, false)))
        return rc;
    if (ntv && !(tags = tag_spec(tv, ntv, "snapshot")))
        return usage_error("--tag-specifications takes ResourceType=snapshot,Tags=[{Key=k,Value=v}] or JSON");
    if (!(st = cli_vol_open(g, false, &kms, "CreateSnapshot"))) {
        free(tags);
        return CLI_EXIT_SERVICE;
    }
    if (vol_create_snapshot(st, vid, desc, tags && *tags ? tags : NULL, &s, &e)) {
        rc = cli_service_error(e.code, "CreateSnapshot", e.message);
    } else {
        json_t *o = cli_snapshot_json(st, &s);
        if ((rc = cli_vol_sign_new(g, st, s.id, sk, NULL, "CreateSnapshot", o))) /* our extension: signed manifests */
            json_decref(o);
        else
            rc = cli_vol_print(g, WHO, o);
        vol_snapshot_clear(&s);
    }
    vol_store_free(st);
    free(tags);
    return rc;
}

/* Is region the region of the source snapshot's key (this store's region)? Unknown snapshots pass (the
 * copy reports them). */
static bool same_region(vol_store *st, const char *snap_id, const char *region)
{
    vol_snapshot s;
    json_t *j;
    const char *arn, *p;
    bool same = true;
    if (vol_store_catalog(st)->ops->snapshot_get(vol_store_catalog(st), snap_id, &s))
        return true;
    j = cli_snapshot_json(st, &s);
    arn = json_string_value(json_object_get(j, "KmsKeyId"));
    /* arn:aws:kms:REGION:ACCOUNT:key/ID */
    if (arn && (p = strchr(arn, ':')) && (p = strchr(p + 1, ':')) && (p = strchr(p + 1, ':')))
        same = strncmp(p + 1, region, strlen(region)) == 0 && p[1 + strlen(region)] == ':';
    json_decref(j);
    vol_snapshot_clear(&s);
    return same;
}

/* copy-snapshot --source-snapshot-id S [--source-region R] [--encrypted] [--kms-key-id K] [--description D] */
static int copy_snapshot(cli_vol *g, const struct cli_args *a)
{
    const char *src, *region, *key, *desc, *sk;
    vol_store *st;
    vol_snapshot s;
    kmsc *kms;
    vol_err e = {"", ""};
    int rc;
    if ((rc = cli_need1(WHO, a, "source-snapshot-id", &src, true)) || (rc = cli_need1(WHO, a, "source-region", &region, false)) ||
        (rc = cli_need1(WHO, a, "kms-key-id", &key, false)) || (rc = cli_need1(WHO, a, "description", &desc, false)) ||
        (rc = cli_need1(WHO, a, "signing-key-id", &sk, false)))
        return rc;
    if (cli_arg1(a, "no-encrypted"))
        return cli_service_error("InvalidParameterValue", "CopySnapshot", "Encrypted cannot be false: envelopefs "
                                 "snapshots are always encrypted");
    if (!(st = cli_vol_open(g, true, &kms, "CopySnapshot")))
        return CLI_EXIT_SERVICE;
    if (region && !same_region(st, src, region)) {
        rc = cli_service_error("InvalidParameterValue", "CopySnapshot",
                               "copies from another region (another volume store) are not supported yet");
    } else if (vol_copy_snapshot(st, src, key, cli_arg1(a, "rewrap-only") != NULL, desc, &s, &e)) {
        rc = cli_service_error(e.code, "CopySnapshot", e.message);
    } else {
        json_t *o = json_pack("{s:s}", "SnapshotId", s.id);
        if ((rc = cli_vol_sign_new(g, st, s.id, sk, src, "CopySnapshot", o))) /* a signed source: the copy re-signed */
            json_decref(o);
        else
            rc = cli_vol_print(g, WHO, o);
        vol_snapshot_clear(&s);
    }
    vol_store_free(st);
    kmsc_free(kms);
    return rc;
}

static int ebs_defaults(cli_vol *g, const struct cli_args *a, const char *verb)
{
    vol_store *st;
    kmsc *kms;
    vol_err e = {"", ""};
    char *arn = NULL;
    int rc = 0;
    if (!strcmp(verb, "enable-ebs-encryption-by-default") || !strcmp(verb, "get-ebs-encryption-by-default"))
        return cli_vol_print(g, WHO, json_pack("{s:b, s:s}", "EbsEncryptionByDefault", 1, "SseType", "sse-ebs"));
    if (!strcmp(verb, "disable-ebs-encryption-by-default"))
        return cli_service_error("UnsupportedOperation", "DisableEbsEncryptionByDefault",
                                 "envelopefs volumes are always encrypted");
    if (!(st = cli_vol_open(g, true, &kms, "GetEbsDefaultKmsKeyId")))
        return CLI_EXIT_SERVICE;
    if (!strcmp(verb, "get-ebs-default-kms-key-id")) {
        if (vol_default_key_id(st, &arn, &e))
            rc = cli_service_error(e.code, "GetEbsDefaultKmsKeyId", e.message);
    } else {
        const char *key = "alias/aws/ebs";
        bool reset = !strcmp(verb, "reset-ebs-default-kms-key-id");
        const char *op = reset ? "ResetEbsDefaultKmsKeyId" : "ModifyEbsDefaultKmsKeyId";
        if (!reset && (rc = cli_need1(WHO, a, "kms-key-id", &key, true)))
            goto out;
        if (vol_modify_default_key(st, key, &arn, &e)) {
            rc = cli_service_error(e.code, op, e.message);
        } else {
            free(arn);
            arn = NULL;
            if (vol_default_key_id(st, &arn, &e))
                rc = cli_service_error(e.code, op, e.message);
        }
    }
    if (!rc && arn)
        rc = cli_vol_print(g, WHO, json_pack("{s:s}", "KmsKeyId", arn));
out:
    free(arn);
    vol_store_free(st);
    kmsc_free(kms);
    return rc;
}

static const struct {
    const char *verb, *flags;
} VERBS[] = {
    {"create-volume", "size snapshot-id kms-key-id encrypted no-encrypted tag-specifications volume-type "
                      "availability-zone iops throughput"},
    {"describe-volumes", "volume-ids filters max-results next-token"},
    {"delete-volume", "volume-id"},
    {"create-snapshot", "volume-id description tag-specifications signing-key-id"},
    {"describe-snapshots", "snapshot-ids owner-ids filters max-results next-token"},
    {"delete-snapshot", "snapshot-id"},
    {"copy-snapshot", "source-snapshot-id source-region kms-key-id encrypted no-encrypted description destination-region "
                      "rewrap-only signing-key-id"},
    {"enable-ebs-encryption-by-default", ""},
    {"disable-ebs-encryption-by-default", ""},
    {"get-ebs-encryption-by-default", ""},
    {"get-ebs-default-kms-key-id", ""},
    {"modify-ebs-default-kms-key-id", "kms-key-id"},
    {"reset-ebs-default-kms-key-id", ""},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: envelopefs ec2 <operation> [--flag value ...] [global options]\n\n"
               "EBS volumes and snapshots in the local volume store (STORE/volumes, or --volume-store DIR /\n"
               "ENVELOPEFS_VOLUME_STORE); keys from the key store (--store) or a key service (--kms URL).\n"
               "global options: --store DIR --volume-store DIR --kms URL --root-key-file F --passphrase-file F\n"
               "                --region R --query PATH --output json|text\n\noperations:\n");
    for (size_t i = 0; i < sizeof VERBS / sizeof VERBS[0]; i++)
        fprintf(f, "  %s%s%s\n", VERBS[i].verb, *VERBS[i].flags ? "  --" : "", VERBS[i].flags);
    fprintf(f, "\nerrors exit 254 (usage errors 252), as the AWS CLI does. Attach with `envelopefs volume attach`.\n");
}

int cmd_ec2(int argc, char **argv)
{
    cli_vol g;
    struct cli_args a;
    const char *verb;
    int rc = cli_vol_parse(argc, argv, WHO, &g);
    efs_json_wipe_on_free();
    if (rc)
        goto out;
    if (!g.nrest || !strcmp(g.rest[0], "help") || !strcmp(g.rest[0], "--help")) {
        usage(g.nrest ? stdout : stderr);
        rc = g.nrest ? 0 : CLI_EXIT_USAGE;
        goto out;
    }
    verb = g.rest[0];
    rc = -1;
    for (size_t i = 0; i < sizeof VERBS / sizeof VERBS[0]; i++)
        if (!strcmp(verb, VERBS[i].verb))
            rc = cli_args_parse(WHO, g.rest + 1, g.nrest - 1, verb, VERBS[i].flags, &a);
    if (rc < 0) {
        rc = usage_error("unknown operation '%s'", verb);
        goto out;
    }
    if (rc)
        goto out;
    if (!strcmp(verb, "create-volume"))
        rc = create_volume(&g, &a);
    else if (!strcmp(verb, "describe-volumes"))
        rc = describe(&g, &a, true);
    else if (!strcmp(verb, "describe-snapshots"))
        rc = describe(&g, &a, false);
    else if (!strcmp(verb, "delete-volume"))
        rc = delete_thing(&g, &a, true);
    else if (!strcmp(verb, "delete-snapshot"))
        rc = delete_thing(&g, &a, false);
    else if (!strcmp(verb, "create-snapshot"))
        rc = create_snapshot(&g, &a);
    else if (!strcmp(verb, "copy-snapshot"))
        rc = copy_snapshot(&g, &a);
    else
        rc = ebs_defaults(&g, &a, verb);
out:
    cli_vol_done(&g);
    return rc;
}
