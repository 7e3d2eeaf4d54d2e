/*
 * cli_vol.c — shared options, store opening and EC2 JSON shapes of the volume commands (cli_vol.h).
 */
#include "cli_vol.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_aws.h"
#include "share.h"

json_t *cli_vol_last_response;
bool cli_vol_defer_print;
static bool deferred; /* cli_vol_last_response is still to be printed */

int cli_vol_parse(int argc, char **argv, const char *who, cli_vol *g)
{
    memset(g, 0, sizeof *g);
    g->output = "json";
    if (!(g->rest = calloc((size_t)argc + 1, sizeof *g->rest)))
        return 1;
    {
        const char *bad = cli_take_kms_options(&argc, argv, &g->k);
        if (bad) {
            fprintf(stderr, "%s: %s needs a value\n", who, bad);
            return CLI_EXIT_USAGE;
        }
    }
    g->k.via_service = "ec2"; /* EC2 calls the key service on the caller's behalf (kms:ViaService), as in AWS */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (!strcmp(a, "--volume-store"))
            slot = &g->volume_store;
        else if (!strcmp(a, "--query"))
            slot = &g->query;
        else if (!strcmp(a, "--output"))
            slot = &g->output;
        if (slot) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: %s needs a value\n", who, a);
                return CLI_EXIT_USAGE;
            }
            *slot = argv[++i];
        } else {
            g->rest[g->nrest++] = argv[i];
        }
    }
    if (strcmp(g->output, "json") && strcmp(g->output, "text")) {
        fprintf(stderr, "%s: --output takes json or text, not %s\n", who, g->output);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

void cli_vol_done(cli_vol *g)
{
    free(g->rest);
    json_decref(cli_vol_last_response);
    cli_vol_last_response = NULL;
    deferred = false;
}

char *cli_vol_store_dir(const cli_vol *g)
{
    const char *env = getenv("ENVELOPEFS_VOLUME_STORE");
    char *dir, *out = NULL;
    if (g->volume_store)
        return strdup(g->volume_store);
    if (env && *env)
        return strdup(env);
    if (!(dir = cli_store_dir(&g->k)))
        return NULL;
    if (asprintf(&out, "%s/volumes", dir) < 0)
        out = NULL;
    free(dir);
    return out;
}

kmsc *cli_vol_open_kms(void *g) { return cli_open_kms(&((cli_vol *)g)->k, NULL); }

vol_store *cli_vol_open(const cli_vol *g, bool with_kms, kmsc **kms, const char *op)
{
    char *dir = cli_vol_store_dir(g);
    vol_store *st = NULL;
    vol_err e = {"", ""};
    *kms = NULL;
    if (!dir)
        return NULL;
    if (with_kms && !(*kms = cli_open_kms(&g->k, NULL))) {
        free(dir);
        return NULL;
    }
    if (vol_store_open(dir, *kms, &st, &e)) {
        cli_service_error(e.code, op, e.message);
        kmsc_free(*kms);
        *kms = NULL;
        st = NULL;
    }
    free(dir);
    return st;
}

static json_t *iso_time(int64_t t)
{
    char buf[40];
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    return json_string(buf);
}

static json_t *tags_json(const char *tags)
{
    json_t *t = tags ? json_loads(tags, 0, NULL) : NULL;
    return t ? t : json_array();
}

/* key ARN and data-key id of a lineage */
static void lineage_info(vol_store *st, const char *lineage, char *arn, size_t cap, char *dek, size_t dcap)
{
    vol_lineage l;
    arn[0] = 0;
    snprintf(dek, dcap, "dek-%s", lineage);
    if (vol_lineage_of(st, lineage, &l, NULL) == 0) {
        snprintf(arn, cap, "%s", l.key_arn);
        snprintf(dek, dcap, "dek-%s", l.binding); /* one data key, one id: a rewrapped copy keeps it */
        vol_lineage_clear(&l);
    }
}

json_t *cli_volume_json(vol_store *st, const vol_volume *v)
{
    char arn[256], dek[40], *att = vol_attachment_info(st, v->id);
    json_t *o, *atts = json_array();
    lineage_info(st, v->lineage, arn, sizeof arn, dek, sizeof dek);
    if (att) {
        json_t *a = json_loads(att, 0, NULL);
        if (a) {
            json_t *x = json_pack("{s:o, s:s, s:s, s:s, s:s, s:b}", "AttachTime",
                                  iso_time(json_integer_value(json_object_get(a, "AttachTime"))), "Device",
                                  json_string_value(json_object_get(a, "Device")) ?: "", "InstanceId", "local",
                                  "State", "attached", "VolumeId", v->id, "DeleteOnTermination", 0);
            if (x)
                json_array_append_new(atts, x);
            json_decref(a);
        }
        free(att);
    }
    o = json_pack("{s:o, s:o, s:b, s:s, s:I, s:s, s:s, s:s, s:o, s:b, s:o}", "Attachments", atts, "CreateTime",
                  iso_time(v->created), "Encrypted", 1, "KmsKeyId", arn, "Size", (json_int_t)v->size_gib, "SnapshotId",
                  v->snapshot_id, "State", json_array_size(atts) ? "in-use" : "available", "VolumeId", v->id, "Tags",
                  tags_json(v->tags), "MultiAttachEnabled", 0, "VolumeType", json_string("gp3"));
    if (o && !json_array_size(json_object_get(o, "Tags")))
        json_object_del(o, "Tags");
    return o;
}

json_t *cli_snapshot_json(vol_store *st, const vol_snapshot *s)
{
    char arn[256], owner[16], dek[40];
    bool done = !strcmp(s->state, "completed");
    char progress[8] = "";
    vol_copy_progress p;
    json_t *o;
    lineage_info(st, s->lineage, arn, sizeof arn, dek, sizeof dek);
    if (done)
        snprintf(progress, sizeof progress, "100%%");
    else if (!strcmp(s->state, "pending") && vol_store_catalog(st)->ops->progress_get(vol_store_catalog(st), s->id, &p) == 0)
        /* a copy under another key while it runs: its recorded blocks (100% only once completed) */
        snprintf(progress, sizeof progress, "%u%%", (unsigned)(!p.blocks_total ? 0 : p.blocks_done >= p.blocks_total ? 99
                                                               : p.blocks_done * 100 / p.blocks_total));
    vol_owner_of(st, s->owner, s->lineage, owner);
    o = json_pack("{s:s, s:b, s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:I, s:s, s:s, s:o}", "Description",
                  s->description ? s->description : "", "Encrypted", 1, "KmsKeyId", arn, "OwnerId", owner, "Progress",
                  progress, "SnapshotId", s->id, "StartTime", iso_time(s->started), "State", s->state,
                  "VolumeId", s->volume_id, "VolumeSize", (json_int_t)s->volume_size, "DataEncryptionKeyId", dek,
                  "StorageTier", "standard", "Tags", tags_json(s->tags));
    if (o && done)
        json_object_set_new(o, "CompletionTime", iso_time(s->completed));
    if (o && !json_array_size(json_object_get(o, "Tags")))
        json_object_del(o, "Tags");
    return o;
}

int cli_vol_usage_verr(const char *who, const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", who);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see `%s help`)\n", who);
    return CLI_EXIT_USAGE;
}
__attribute__((format(printf, 2, 3))) static int usage_error(const char *who, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cli_vol_usage_verr(who, fmt, ap);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

/* allowed: space-separated flag names without "--" */
int cli_args_parse(const char *who, char **rest, int n, const char *verb, const char *allowed, struct cli_args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 0; i < n; i++) {
        const char *f = rest[i];
        const char *p;
        size_t fl;
        if (strncmp(f, "--", 2))
            return usage_error(who, "unexpected argument %s", f);
        fl = strlen(f + 2);
        for (p = allowed; (p = strstr(p, f + 2)); p += fl)
            if ((p == allowed || p[-1] == ' ') && (p[fl] == ' ' || !p[fl]))
                break;
        if (!p)
            return usage_error(who, "unknown option %s for %s", f, verb);
        if (a->n == 32)
            return usage_error(who, "too many options");
        a->name[a->n] = f + 2;
        a->val[a->n] = rest + i + 1;
        while (i + 1 < n && strncmp(rest[i + 1], "--", 2))
            a->nval[a->n]++, i++;
        a->n++;
    }
    return 0;
}

const char *cli_arg1(const struct cli_args *a, const char *name)
{
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->name[i], name))
            return a->nval[i] ? a->val[i][0] : "";
    return NULL;
}
int cli_argv_of(const struct cli_args *a, const char *name, char ***v)
{
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->name[i], name)) {
            *v = a->val[i];
            return a->nval[i];
        }
    *v = NULL;
    return 0;
}

/* "--x" given with exactly one value; prints the usage error. */
int cli_need1(const char *who, const struct cli_args *a, const char *name, const char **out, bool required)
{
    char **v;
    int n = cli_argv_of(a, name, &v);
    *out = NULL;
    if (!n && !cli_arg1(a, name)) {
        if (required) {
            fprintf(stderr, "%s: the following arguments are required: --%s\n", who, name);
            return CLI_EXIT_USAGE;
        }
        return 0;
    }
    if (n != 1)
        return usage_error(who, "--%s takes one value", name);
    *out = v[0];
    return 0;
}

int cli_vol_print(const cli_vol *g, const char *who, json_t *o)
{
    int rc = 0;
    if (!o)
        return 1;
    if (cli_vol_defer_print) {
        rc = cli_vol_print_deferred(g, who); /* (a second answer: the first goes out first) */
        deferred = true;
    } else {
        rc = cli_print_json(o, g->query, g->output, who);
    }
    json_decref(cli_vol_last_response); /* kept for the EC2 audit record (cli_ec2_audit.c) */
    cli_vol_last_response = o;
    return rc;
}

int cli_vol_print_deferred(const cli_vol *g, const char *who)
{
    if (!deferred)
        return 0;
    deferred = false;
    return cli_print_json(cli_vol_last_response, g->query, g->output, who);
}

void cli_vol_drop_deferred(void) { deferred = false; }

bool cli_parse_u64(const char *s, uint64_t *v)
{
    char *end;
    if (!s || !*s || *s == '-')
        return false;
    errno = 0;
    *v = strtoull(s, &end, 10);
    return !*end && !errno;
}
