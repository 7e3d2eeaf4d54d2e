/*
 * cmd_ec2.c — `envelopefs ec2 <operation>`: EBS's control plane shaped like `aws ec2` over the local
 * volume store (vol/store.h): create-, describe- and delete-volume(s), create-, describe- and
 * delete-snapshot(s), copy-snapshot (also from another region's volume store, found in the regions file:
 * common/regions.h), the snapshot attributes (createVolumePermission: sharing with other accounts) and
 * the account's encryption defaults. Every call acts as the key service's caller: it sees its own
 * account's volumes and snapshots plus the snapshots shared with it (vol/share.h). Output is the
 * response JSON the AWS CLI prints; errors print its "An error occurred (Code) ..." line with EC2's
 * codes and exit 254, usage errors 252.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli_aws.h"
#include "cli_vol.h"
#include "cli_vol_sign.h"
#include "commands.h"
#include "grant.h"
#include "common/jsonwipe.h"
#include "common/regions.h"
#include "share.h"

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
    /* from a snapshot: the caller's own or one shared with it (the key service then decides on the key) */
    if ((c.snapshot_id && vol_snapshot_for_caller(st, c.snapshot_id, false, NULL, &e)) || vol_create_volume(st, &c, &v, &e)) {
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
    const char *me;            /* the caller's account ("" unknown: everything, as before owners) */
    char **owners, **restorable; /* --owner-ids, --restorable-by-user-ids (validated) */
    int nown, nrest;
    int err;
};
static const char *self_or(const struct listing *l, const char *who) { return strcmp(who, "self") ? who : l->me; }
static int add_volume(void *arg, const vol_volume *v)
{
    struct listing *l = arg;
    char owner[16];
    vol_owner_of(l->st, v->owner, v->lineage, owner);
    if (!*l->me || !strcmp(owner, l->me))
        json_array_append_new(l->arr, cli_volume_json(l->st, v));
    return 0;
}
/* A snapshot is listed when the caller may restore it (owns it or it is shared with it), then narrowed
 * by --owner-ids (its owner among them) and --restorable-by-user-ids (self: any of those; another
 * account: a snapshot the caller owns and shares with it), as EC2 does. */
static int add_snapshot(void *arg, const vol_snapshot *s)
{
    struct listing *l = arg;
    vol_catalog *cat = vol_store_catalog(l->st);
    char owner[16];
    bool visible, mine, ok;
    int rc = vol_snapshot_visible(l->st, s, l->me, &visible, &mine);
    if (rc)
        return rc;
    if (!visible)
        return 0;
    vol_owner_of(l->st, s->owner, s->lineage, owner);
    ok = !l->nown;
    for (int i = 0; i < l->nown && !ok; i++)
        ok = !strcmp(self_or(l, l->owners[i]), owner);
    if (ok && l->nrest) {
        ok = false;
        for (int i = 0; i < l->nrest && !ok; i++) {
            const char *who = self_or(l, l->restorable[i]);
            bool has = false;
            if (!strcmp(who, l->me) || !*l->me)
                ok = true;
            else if (mine && (rc = cat->ops->perm_has(cat, s->id, who, &has)))
                return rc;
            else
                ok = has;
        }
    }
    if (ok)
        json_array_append_new(l->arr, cli_snapshot_json(l->st, s));
    return 0;
}

/* describe-volumes / describe-snapshots: ids must exist (else NotFound naming the first missing one). */
static int describe(cli_vol *g, const struct cli_args *a, bool volumes)
{
    const char *op = volumes ? "DescribeVolumes" : "DescribeSnapshots";
    const char *idflag = volumes ? "volume-ids" : "snapshot-ids", *prefix = volumes ? "vol-" : "snap-";
    const char *field = volumes ? "VolumeId" : "SnapshotId";
    char **ids, **fv, **owners, **rest;
    int nids = cli_argv_of(a, idflag, &ids), nfv = cli_argv_of(a, "filters", &fv), nown = cli_argv_of(a, "owner-ids", &owners);
    int nrest = cli_argv_of(a, "restorable-by-user-ids", &rest);
    struct filter f[16];
    int nf = parse_filters(fv, nfv, f, 16), rc = 0;
    struct listing l;
    kmsc *kms;
    json_t *out, *kept;
    if (nf < 0)
        return usage_error("--filters takes Name=n,Values=v1,v2 ... or JSON");
    /* owners: self, an account id, or amazon / aws-marketplace (who own nothing here); restorable by:
       self, an account id, or all (public: never, every snapshot here is encrypted) */
    for (int i = 0; i < nown + nrest; i++) {
        const char *who = i < nown ? owners[i] : rest[i - nown];
        if (strcmp(who, "self") && !vol_account_valid(who) &&
            (i < nown ? strcmp(who, "amazon") && strcmp(who, "aws-marketplace") : strcmp(who, "all"))) {
            char msg[160];
            free_filters(f, nf);
            snprintf(msg, sizeof msg, "Invalid user id: \"%s\"", who);
            return cli_service_error("InvalidUserID.Malformed", op, msg);
        }
    }
    for (int i = 0; i < nids; i++)
        if (!vol_id_valid(prefix, ids[i])) {
            char msg[160];
            free_filters(f, nf);
            snprintf(msg, sizeof msg, "Invalid id: \"%s\" (expecting \"%s...\")", ids[i], prefix);
            return cli_service_error(volumes ? "InvalidVolumeID.Malformed" : "InvalidSnapshotID.Malformed", op, msg);
        }
    if (!(l.st = cli_vol_open(g, true, &kms, op))) {
        free_filters(f, nf);
        return CLI_EXIT_SERVICE;
    }
    l.arr = json_array();
    l.volumes = volumes;
    l.me = vol_store_account(l.st);
    l.owners = owners;
    l.nown = nown;
    l.restorable = rest;
    l.nrest = nrest;
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
    kmsc_free(kms);
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
    if (!(st = cli_vol_open(g, true, &kms, op)))
        return CLI_EXIT_SERVICE;
    /* only the owner deletes (another account's volume does not exist for it) */
    if (volume ? vol_volume_for_caller(st, id, NULL, &e) || vol_delete_volume(st, id, &e)
               : vol_snapshot_for_caller(st, id, true, NULL, &e) || vol_delete_snapshot(st, id, &e))
        rc = cli_service_error(e.code, op, e.message);
    vol_store_free(st);
    kmsc_free(kms);
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
    if (!(st = cli_vol_open(g, true, &kms, "CreateSnapshot"))) {
        free(tags);
        return CLI_EXIT_SERVICE;
    }
    if (vol_volume_for_caller(st, vid, NULL, &e) || vol_create_snapshot(st, vid, desc, tags && *tags ? tags : NULL, &s, &e)) {
        rc = cli_service_error(e.code, "CreateSnapshot", e.message);
    } else {
        json_t *o = cli_snapshot_json(st, &s);
        if ((rc = cli_vol_sign_new(g, st, s.id, sk, NULL, NULL, "CreateSnapshot", o))) /* our extension: signed manifests */
            json_decref(o);
        else
            rc = cli_vol_print(g, WHO, o);
        vol_snapshot_clear(&s);
    }
    vol_store_free(st);
    kmsc_free(kms);
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

/* The source region's key service for a copy between regions, opened on first need (vol_copy_args). */
struct src_kms {
    const efs_region *r;
    kmsc *kms;
    bool tried;
};
static kmsc *open_src_kms(void *arg)
{
    struct src_kms *s = arg;
    if (!s->tried) {
        cli_kms_opts o;
        char *rk = NULL;
        memset(&o, 0, sizeof o);
        s->tried = true;
        o.store = s->r->store;
        o.url = s->r->kms_url;
        o.region = s->r->name;
        /* never this region's root key (flags, environment): the region's own, or STORE/root.key */
        if (!s->r->kms_url && !s->r->root_key_file && asprintf(&rk, "%s/root.key", s->r->store) < 0)
            rk = NULL;
        o.root_key_file = s->r->root_key_file ? s->r->root_key_file : rk;
        if (s->r->kms_url || o.root_key_file)
            s->kms = cli_open_kms(&o, NULL);
        free(rk);
    }
    return s->kms;
}

/* ENVELOPEFS_TEST_COPY_BLOCK_DELAY_MS (tests only: tests/vol/vol_copy_resume.sh): sleep this long after each
 * block, so that a test can watch and kill a copy that would otherwise finish before it looks. */
static long copy_test_delay_ms(void)
{
    static long ms = -1;
    if (ms < 0) {
        const char *v = getenv("ENVELOPEFS_TEST_COPY_BLOCK_DELAY_MS");
        ms = v && *v ? strtol(v, NULL, 10) : 0;
        if (ms < 0 || ms > 1000)
            ms = 0;
    }
    return ms;
}

static void copy_progress(void *arg, uint64_t done, uint64_t total)
{
    long delay = copy_test_delay_ms();
    if (delay) {
        struct timespec ts = {.tv_sec = delay / 1000, .tv_nsec = (delay % 1000) * 1000000L}; /* 1000 ms: 1 s, not an EINVAL */
        nanosleep(&ts, NULL);
    }
    if (isatty(STDERR_FILENO) && total)
        fprintf(stderr, "\rcopying %s: %" PRIu64 "/%" PRIu64 " blocks (%3u%%)%s", (const char *)arg, done, total,
                (unsigned)(done * 100 / total), done == total ? "\n" : "");
}

/* A rerun that resumes an interrupted copy says so (always: the caller learns it is not a new copy). */
static void copy_resumed(void *arg, const char *snapshot, uint64_t done, uint64_t total)
{
    fprintf(stderr, "copy-snapshot: resuming the interrupted copy %s of %s: %" PRIu64 " of %" PRIu64
            " blocks already recorded\n", snapshot, (const char *)arg, done, total);
}

/* This region's name: the embedded key store's, else --region / AWS_REGION / AWS_DEFAULT_REGION. */
static const char *own_region(const cli_vol *g, kmsc *kms)
{
    kms_core *core = kms ? kmsc_embedded_core(kms) : NULL;
    const char *r = core ? kms_core_region(core) : g->k.region;
    if (!r || !*r)
        r = getenv("AWS_REGION");
    if (!r || !*r)
        r = getenv("AWS_DEFAULT_REGION");
    return r && *r ? r : NULL;
}

static bool same_dir(const char *a, const char *b)
{
    char *x = realpath(a, NULL), *y = realpath(b, NULL);
    bool same = x && y && !strcmp(x, y);
    free(x);
    free(y);
    return same;
}

/* copy-snapshot --source-snapshot-id S [--source-region R] [--encrypted] [--kms-key-id K] [--description D]
 * [--rewrap-only]. R another region: its volume store (from the regions file) is read, this one written. */
static int copy_snapshot(cli_vol *g, const struct cli_args *a)
{
    const char *region, *own, *signing;
    vol_copy_args c = {0};
    efs_region r = {0};
    struct src_kms sk = {&r, NULL, false};
    vol_store *st, *src = NULL;
    vol_snapshot s;
    kmsc *kms;
    vol_err e = {"", ""};
    int rc;
    if ((rc = cli_need1(WHO, a, "source-snapshot-id", &c.src_id, true)) ||
        (rc = cli_need1(WHO, a, "source-region", &region, false)) || (rc = cli_need1(WHO, a, "kms-key-id", &c.kms_key_id, false)) ||
        (rc = cli_need1(WHO, a, "description", &c.description, false)) ||
        (rc = cli_need1(WHO, a, "signing-key-id", &signing, false)))
        return rc;
    c.rewrap_only = cli_arg1(a, "rewrap-only") != NULL;
    if (cli_arg1(a, "no-encrypted"))
        return cli_service_error("InvalidParameterValue", "CopySnapshot", "Encrypted cannot be false: envelopefs "
                                 "snapshots are always encrypted");
    if (!(st = cli_vol_open(g, true, &kms, "CopySnapshot")))
        return CLI_EXIT_SERVICE;
    own = own_region(g, kms);
    if (region && !(own && !strcmp(region, own))) {
        char err[512], *path = efs_regions_path(g->k.regions);
        int lr = path ? efs_region_lookup(path, region, &r, err, sizeof err) : -ENOMEM;
        if (lr == -ENOENT && !own && same_region(st, c.src_id, region)) {
            /* no regions file entry, an unnamed own region: the source's key says it is this store's */
        } else if (lr) {
            char msg[700];
            snprintf(msg, sizeof msg, "the source region %s is not known here (%s)", region, lr == -ENOMEM ? "out of memory" : err);
            rc = cli_service_error("InvalidParameterValue", "CopySnapshot", msg);
        } else if (!r.volume_store) {
            char msg[300];
            snprintf(msg, sizeof msg, "region %s has no volume store in the regions file (%s)", region, path);
            rc = cli_service_error("InvalidParameterValue", "CopySnapshot", msg);
        } else if (!same_dir(r.volume_store, vol_store_dir(st))) {
            if (vol_store_open_ro(r.volume_store, NULL, &src, &e))
                rc = cli_service_error(e.code, "CopySnapshot", e.message);
        }
        free(path);
    }
    /* In this store: the caller's own snapshot or one shared with it. From another region's store, the
     * source region's key service decides (the caller must be able to decrypt the source's data key). */
    if (!rc && !src && vol_snapshot_for_caller(st, c.src_id, false, NULL, &e))
        rc = cli_service_error(e.code, "CopySnapshot", e.message);
    if (!rc) {
        c.src = src;
        c.src_region = src ? region : own;
        c.src_kms = open_src_kms;
        c.src_kms_arg = &sk;
        c.progress = copy_progress;
        c.progress_arg = (void *)c.src_id;
        c.resumed = copy_resumed;
        { /* blocks per catalog transaction (docs/DESIGN.md "Copies"): a tuning knob */
            const char *b = getenv("ENVELOPEFS_COPY_BATCH");
            uint64_t n = 0;
            if (b && *b && (!cli_parse_u64(b, &n) || n < 1 || n > 65536)) {
                rc = usage_error("ENVELOPEFS_COPY_BATCH takes a number of blocks from 1 to 65536");
                goto done;
            }
            c.batch = n;
        }
        if (vol_copy_snapshot_from(st, &c, &s, &e)) {
            rc = cli_service_error(e.code, "CopySnapshot", e.message);
        } else {
            json_t *o = json_pack("{s:s}", "SnapshotId", s.id);
            /* a signed source (in this store or the source region's): the copy is re-signed */
            if ((rc = cli_vol_sign_new(g, st, s.id, signing, c.src_id, src, "CopySnapshot", o)))
                json_decref(o);
            else
                rc = cli_vol_print(g, WHO, o);
            vol_snapshot_clear(&s);
        }
    }
done:
    vol_store_free(src);
    kmsc_free(sk.kms);
    efs_region_clear(&r);
    vol_store_free(st);
    kmsc_free(kms);
    return rc;
}

/* --create-volume-permission: JSON {"Add":[{"UserId":"1234..."},{"Group":"all"}],"Remove":[...]} or the
 * shorthand Add=[{UserId=1234...},{Group=all}] / Remove=[...]. Fills add (true: Add), the user ids
 * (malloc'd strings, at most cap) and group_all. -1 when malformed, -2 when both Add and Remove hold
 * entries (EC2 takes one of them per call). */
static int cvp_parse(const char *v, bool *add, char **users, int cap, int *n, bool *group_all)
{
    json_t *j = NULL, *lists[2] = {NULL, NULL};
    int rc = 0;
    *n = 0;
    *group_all = false;
    *add = true;
    if (v[0] == '{') {
        if (!(j = json_loads(v, 0, NULL)) || !json_is_object(j)) {
            json_decref(j);
            return -1;
        }
        lists[0] = json_incref(json_object_get(j, "Add"));
        lists[1] = json_incref(json_object_get(j, "Remove"));
        json_decref(j);
    } else {
        /* shorthand: Add=[{UserId=x},{Group=all}] (Remove= likewise), comma-separated */
        for (int which = 0; which < 2; which++) {
            const char *key = which ? "Remove=[" : "Add=[", *p = strstr(v, key);
            if (!p)
                continue;
            lists[which] = json_array();
            for (p += strlen(key); *p && *p != ']';) {
                char name[16], val[64];
                const char *end;
                if (*p == ',') {
                    p++;
                    continue;
                }
                if (*p != '{' || !(end = strchr(p, '}')) || sscanf(p, "{%15[^=]=%63[^}]}", name, val) != 2) {
                    rc = -1;
                    break;
                }
                json_array_append_new(lists[which], json_pack("{s:s}", name, val));
                p = end + 1;
            }
        }
        if (!lists[0] && !lists[1])
            rc = -1;
    }
    if (!rc && json_array_size(lists[0]) && json_array_size(lists[1]))
        rc = -2;
    for (int which = 0; which < 2 && !rc; which++) {
        json_t *x;
        size_t i;
        if (lists[which] && !json_is_array(lists[which])) {
            rc = -1;
            break;
        }
        if (!json_array_size(lists[which]))
            continue;
        *add = which == 0;
        json_array_foreach(lists[which], i, x) {
            const char *u = json_string_value(json_object_get(x, "UserId")), *g = json_string_value(json_object_get(x, "Group"));
            if (g && !strcmp(g, "all"))
                *group_all = true;
            else if (u && *n < cap)
                users[(*n)++] = strdup(u);
            else {
                rc = -1;
                break;
            }
        }
    }
    json_decref(lists[0]);
    json_decref(lists[1]);
    return rc;
}

/* --attribute: createVolumePermission (productCodes: none here; modify and reset take only the former) */
static int check_attribute(const struct cli_args *a, const char *op, bool required, bool *product_codes)
{
    const char *at;
    int rc = cli_need1(WHO, a, "attribute", &at, required);
    *product_codes = false;
    if (rc)
        return rc;
    if (!at || !strcmp(at, "createVolumePermission"))
        return 0;
    if (!strcmp(at, "productCodes")) {
        *product_codes = true;
        return 0;
    }
    {
        char msg[200];
        snprintf(msg, sizeof msg, "Value (%s) for parameter attribute is invalid. Valid values: productCodes, "
                 "createVolumePermission", at);
        return cli_service_error("InvalidParameterValue", op, msg);
    }
}

/* modify-snapshot-attribute --snapshot-id S [--attribute createVolumePermission] (--operation-type add|remove
 * --user-ids A... [--group-names all] | --create-volume-permission {...}) [--dry-run] */
static int modify_snapshot_attribute(cli_vol *g, const struct cli_args *a)
{
    static const char *op = "ModifySnapshotAttribute";
    const char *id, *otype, *cvp;
    char **uv, **gv, *users[64];
    int nu = 0, ng, rc, n = 0;
    bool add = true, all = false, pc;
    vol_store *st;
    kmsc *kms;
    vol_err e = {"", ""};
    if ((rc = cli_need1(WHO, a, "snapshot-id", &id, true)) || (rc = cli_need1(WHO, a, "operation-type", &otype, false)) ||
        (rc = cli_need1(WHO, a, "create-volume-permission", &cvp, false)) || (rc = check_attribute(a, op, false, &pc)))
        return rc;
    if (pc)
        return cli_service_error("InvalidParameterValue", op, "Only createVolumePermission can be modified");
    nu = cli_argv_of(a, "user-ids", &uv);
    ng = cli_argv_of(a, "group-names", &gv);
    if (cvp) {
        if (nu || ng || otype)
            return cli_service_error("InvalidParameterCombination", op, "--create-volume-permission cannot be combined "
                                     "with --operation-type, --user-ids or --group-names");
        rc = cvp_parse(cvp, &add, users, 64, &n, &all);
        if (rc == -2) {
            rc = cli_service_error("InvalidParameterCombination", op, "You cannot both add and remove permissions "
                                   "in a single operation");
            goto out;
        }
        if (rc) {
            rc = usage_error("--create-volume-permission takes {\"Add\":[{\"UserId\":\"...\"}]} (or Remove), or "
                             "Add=[{UserId=...}]");
            goto out;
        }
    } else {
        if (!otype)
            return cli_service_error("MissingParameter", op, "The request must contain the parameter operationType");
        if (strcmp(otype, "add") && strcmp(otype, "remove")) {
            char msg[160];
            snprintf(msg, sizeof msg, "Value (%s) for parameter operationType is invalid. Valid values: add, remove", otype);
            return cli_service_error("InvalidParameterValue", op, msg);
        }
        add = !strcmp(otype, "add");
        for (int i = 0; i < ng; i++) {
            if (strcmp(gv[i], "all")) {
                char msg[160];
                snprintf(msg, sizeof msg, "Value (%s) for parameter userGroup is invalid. Valid values: all", gv[i]);
                return cli_service_error("InvalidParameterValue", op, msg);
            }
            all = true;
        }
        if (nu > 64)
            return cli_service_error("InvalidParameterValue", op, "at most 64 user ids per call");
        for (int i = 0; i < nu; i++)
            if (!(users[n++] = strdup(uv[i]))) {
                rc = 1;
                goto out;
            }
    }
    if (!(st = cli_vol_open(g, true, &kms, op))) {
        rc = CLI_EXIT_SERVICE;
        goto out;
    }
    if (cli_arg1(a, "dry-run")) {
        /* authorization only: the owner would be allowed */
        if (vol_snapshot_for_caller(st, id, true, NULL, &e))
            rc = cli_service_error(e.code, op, e.message);
        else
            rc = cli_service_error("DryRunOperation", op, "Request would have succeeded, but DryRun flag is set.");
    } else if (vol_snapshot_share(st, id, add, (const char *const *)users, n, all, &e)) {
        rc = cli_service_error(e.code, op, e.message);
    }
    vol_store_free(st);
    kmsc_free(kms);
out:
    for (int i = 0; i < n; i++)
        free(users[i]);
    return rc;
}

static int add_permission(void *arg, const char *account)
{
    return json_array_append_new(arg, json_pack("{s:s}", "UserId", account)) ? -ENOMEM : 0;
}

/* describe-snapshot-attribute / reset-snapshot-attribute --snapshot-id S --attribute A */
static int snapshot_attribute(cli_vol *g, const struct cli_args *a, bool reset)
{
    const char *op = reset ? "ResetSnapshotAttribute" : "DescribeSnapshotAttribute", *id;
    vol_store *st;
    kmsc *kms;
    vol_err e = {"", ""};
    bool pc;
    int rc;
    if ((rc = cli_need1(WHO, a, "snapshot-id", &id, true)) || (rc = check_attribute(a, op, true, &pc)))
        return rc;
    if (reset && pc)
        return cli_service_error("InvalidParameterValue", op, "Only createVolumePermission can be reset");
    if (!(st = cli_vol_open(g, true, &kms, op)))
        return CLI_EXIT_SERVICE;
    if (reset) {
        if (vol_snapshot_unshare_all(st, id, &e))
            rc = cli_service_error(e.code, op, e.message);
    } else if (pc) {
        if (vol_snapshot_for_caller(st, id, true, NULL, &e))
            rc = cli_service_error(e.code, op, e.message);
        else
            rc = cli_vol_print(g, WHO, json_pack("{s:[], s:s}", "ProductCodes", "SnapshotId", id));
    } else {
        json_t *perms = json_array();
        if (vol_snapshot_shares(st, id, add_permission, perms, &e)) {
            json_decref(perms);
            rc = cli_service_error(e.code, op, e.message);
        } else {
            rc = cli_vol_print(g, WHO, json_pack("{s:o, s:s}", "CreateVolumePermissions", perms, "SnapshotId", id));
        }
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
    {"describe-snapshots", "snapshot-ids owner-ids restorable-by-user-ids filters max-results next-token"},
    {"modify-snapshot-attribute", "snapshot-id attribute operation-type user-ids group-names create-volume-permission "
                                  "dry-run no-dry-run"},
    {"describe-snapshot-attribute", "snapshot-id attribute"},
    {"reset-snapshot-attribute", "snapshot-id attribute"},
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
               "                --region R --regions FILE --query PATH --output json|text\n"
               "copy-snapshot --source-region R reads region R's volume store as the regions file names it.\n\n"
               "operations:\n");
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
    cli_vol_defer_print = true; /* the answer goes out once the call's record is durable (below) */
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
    else if (!strcmp(verb, "modify-snapshot-attribute"))
        rc = modify_snapshot_attribute(&g, &a);
    else if (!strcmp(verb, "describe-snapshot-attribute"))
        rc = snapshot_attribute(&g, &a, false);
    else if (!strcmp(verb, "reset-snapshot-attribute"))
        rc = snapshot_attribute(&g, &a, true);
    else
        rc = ebs_defaults(&g, &a, verb);
    /* its record, eventSource ec2.amazonaws.com (cli_ec2_audit.c): durable before the answer, as the key
       service's are; a call whose record could not be written fails (it took effect, as a KMS call whose
       record fails does) */
    if (cli_ec2_audit(&g, verb, &a, NULL, rc) && !rc) {
        char action[64];
        cli_ec2_action(verb, action, sizeof action);
        cli_vol_drop_deferred();
        rc = cli_service_error("InternalError", action,
                               "the call took effect but its audit record could not be written");
    } else {
        int printed = cli_vol_print_deferred(&g, WHO);
        rc = rc ? rc : printed;
    }
out:
    cli_vol_done(&g);
    return rc;
}
