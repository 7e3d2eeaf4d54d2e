/*
 * cmd_ebs.c — `envelopefs ebs <operation>`: the EBS direct API shaped like `aws ebs`, over the local
 * volume store (vol/direct.h): start-snapshot, put-snapshot-block, complete-snapshot,
 * list-snapshot-blocks, list-changed-blocks, get-snapshot-block. Block data goes in as
 * --block-data fileb://FILE and out to the OUTFILE argument of get-snapshot-block, as with the AWS CLI.
 * Each call leaves one record (eventSource ebs.amazonaws.com: cli_ec2_audit.c) before its answer is
 * printed and before get-snapshot-block's data is written out.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "cli_aws.h"
#include "cli_vol.h"
#include "commands.h"
#include "common/jsonwipe.h"
#include "common/readfile.h"
#include "direct.h"
#include "share.h"

#define WHO "envelopefs ebs"
#define BLOCK_SIZE VOL_BLOCK_SIZE

static json_t *iso(int64_t t)
{
    char buf[40];
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    return json_string(buf);
}

static int start_snapshot(cli_vol *g, const struct cli_args *a, vol_store *st)
{
    const char *size, *parent, *key, *desc;
    uint64_t gib = 0;
    vol_snapshot s;
    vol_err e = {"", ""};
    int rc;
    if ((rc = cli_need1(WHO, a, "volume-size", &size, true)) || (rc = cli_need1(WHO, a, "parent-snapshot-id", &parent, false)) ||
        (rc = cli_need1(WHO, a, "kms-key-arn", &key, false)) || (rc = cli_need1(WHO, a, "description", &desc, false)))
        return rc;
    if (!cli_parse_u64(size, &gib))
        return cli_service_error("ValidationException", "StartSnapshot", "VolumeSize must be a number (Reason: INVALID_VOLUME_SIZE)");
    if (vol_ebs_start(st, gib, parent, cli_arg1(a, "encrypted") != NULL, key, desc, NULL, &s, &e))
        return cli_service_error(e.code, "StartSnapshot", e.message);
    {
        json_t *j = cli_snapshot_json(st, &s);
        json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:I, s:i, s:s, s:s, s:s}", "Description", s.description ? s.description : "",
                              "SnapshotId", s.id, "OwnerId", json_string_value(json_object_get(j, "OwnerId")) ?: "",
                              "StartTime", iso(s.started), "VolumeSize", (json_int_t)s.volume_size, "BlockSize",
                              (int)BLOCK_SIZE, "Status", "pending", "KmsKeyArn",
                              json_string_value(json_object_get(j, "KmsKeyId")) ?: "", "SseType", "sse-ebs");
        if (o && parent)
            json_object_set_new(o, "ParentSnapshotId", json_string(parent));
        json_decref(j);
        vol_snapshot_clear(&s);
        return cli_vol_print(g, WHO, o);
    }
}

static int put_block(cli_vol *g, const struct cli_args *a, vol_store *st)
{
    const char *snap, *idx, *data, *len, *sum, *alg;
    uint64_t block = 0, dlen = 0;
    uint8_t *buf;
    size_t n = 0;
    vol_err e = {"", ""};
    int rc;
    if ((rc = cli_need1(WHO, a, "snapshot-id", &snap, true)) || (rc = cli_need1(WHO, a, "block-index", &idx, true)) ||
        (rc = cli_need1(WHO, a, "block-data", &data, true)) || (rc = cli_need1(WHO, a, "data-length", &len, true)) ||
        (rc = cli_need1(WHO, a, "checksum", &sum, true)) || (rc = cli_need1(WHO, a, "checksum-algorithm", &alg, true)))
        return rc;
    if (strcmp(alg, "SHA256"))
        return cli_service_error("ValidationException", "PutSnapshotBlock", "ChecksumAlgorithm must be SHA256 (Reason: INVALID_CHECKSUM)");
    if (!cli_parse_u64(idx, &block) || !cli_parse_u64(len, &dlen))
        return cli_service_error("ValidationException", "PutSnapshotBlock", "BlockIndex and DataLength are numbers (Reason: INVALID_BLOCK)");
    if (strncmp(data, "fileb://", 8)) {
        fprintf(stderr, WHO ": --block-data takes fileb://FILE\n");
        return CLI_EXIT_USAGE;
    }
    if (!(buf = (uint8_t *)efs_read_file(data + 8, &n))) {
        fprintf(stderr, WHO ": cannot read %s: %s\n", data + 8, strerror(errno));
        return CLI_EXIT_USAGE;
    }
    if (dlen != n) {
        free(buf);
        return cli_service_error("ValidationException", "PutSnapshotBlock",
                                 "DataLength does not match the data sent (Reason: INVALID_DATA_LENGTH)");
    }
    rc = vol_ebs_put(st, snap, block, buf, n, sum, &e);
    free(buf);
    if (rc)
        return cli_service_error(e.code, "PutSnapshotBlock", e.message);
    return cli_vol_print(g, WHO, json_pack("{s:s, s:s}", "Checksum", sum, "ChecksumAlgorithm", "SHA256"));
}

static int complete(cli_vol *g, const struct cli_args *a, vol_store *st)
{
    const char *snap, *count, *sum, *alg, *method;
    uint64_t n = 0;
    vol_err e = {"", ""};
    int rc;
    if ((rc = cli_need1(WHO, a, "snapshot-id", &snap, true)) || (rc = cli_need1(WHO, a, "changed-blocks-count", &count, true)) ||
        (rc = cli_need1(WHO, a, "checksum", &sum, false)) || (rc = cli_need1(WHO, a, "checksum-algorithm", &alg, false)) ||
        (rc = cli_need1(WHO, a, "checksum-aggregation-method", &method, false)))
        return rc;
    if (!cli_parse_u64(count, &n))
        return cli_service_error("ValidationException", "CompleteSnapshot", "ChangedBlocksCount must be a number");
    if (sum && ((alg && strcmp(alg, "SHA256")) || (method && strcmp(method, "LINEAR"))))
        return cli_service_error("ValidationException", "CompleteSnapshot",
                                 "only the SHA256 algorithm with the LINEAR aggregation (Reason: INVALID_CHECKSUM)");
    if (vol_ebs_complete(st, snap, (int64_t)n, sum, &e))
        return cli_service_error(e.code, "CompleteSnapshot", e.message);
    return cli_vol_print(g, WHO, json_pack("{s:s}", "Status", "completed"));
}

/* Listings: every block of a snapshot's map, or where two snapshots' maps differ. */
struct entry {
    uint64_t block, gen;
};
struct list {
    struct entry *e;
    size_t n, cap;
};
static int add(void *arg, uint64_t block, uint64_t gen)
{
    struct list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        struct entry *x = realloc(l->e, cap * sizeof *x);
        if (!x)
            return -ENOMEM;
        l->e = x;
        l->cap = cap;
    }
    l->e[l->n++] = (struct entry){block, gen};
    return 0;
}

static int paging(const struct cli_args *a, const char *op, uint64_t *max, uint64_t *start)
{
    const char *m = cli_arg1(a, "max-results"), *t = cli_arg1(a, "next-token"), *s = cli_arg1(a, "starting-block-index");
    *max = 10000;
    *start = 0;
    if (m && (!cli_parse_u64(m, max) || *max < 100 || *max > 10000))
        return cli_service_error("ValidationException", op, "MaxResults must be 100-10000 (Reason: INVALID_PARAMETER_VALUE)");
    if (s && !cli_parse_u64(s, start))
        return cli_service_error("ValidationException", op, "StartingBlockIndex must be a number");
    if (t) {
        uint64_t v;
        if (strncmp(t, "EBP1", 4) || !cli_parse_u64(t + 4, &v))
            return cli_service_error("ValidationException", op, "The page token is not valid (Reason: INVALID_PAGE_TOKEN)");
        *start = v;
    }
    return 0;
}

static int list_blocks(cli_vol *g, const struct cli_args *a, vol_store *st)
{
    const char *snap;
    vol_snapshot s;
    struct list l = {0};
    uint64_t max, start, shown = 0;
    json_t *arr = json_array(), *o;
    int rc;
    char tok[21], next[32] = "";
    if ((rc = cli_need1(WHO, a, "snapshot-id", &snap, true)) || (rc = paging(a, "ListSnapshotBlocks", &max, &start)))
        goto out;
    if (!vol_id_valid("snap-", snap) || vol_store_catalog(st)->ops->snapshot_get(vol_store_catalog(st), snap, &s)) {
        rc = cli_service_error("ResourceNotFoundException", "ListSnapshotBlocks", "The snapshot does not exist. (Reason: SNAPSHOT_NOT_FOUND)");
        goto out;
    }
    if ((rc = vol_store_catalog(st)->ops->map_list(vol_store_catalog(st), snap, add, &l))) {
        rc = cli_service_error("InternalServerException", "ListSnapshotBlocks", strerror(-rc));
        vol_snapshot_clear(&s);
        goto out;
    }
    for (size_t i = 0; i < l.n; i++) {
        if (l.e[i].block < start)
            continue;
        if (shown == max) {
            snprintf(next, sizeof next, "EBP1%" PRIu64, l.e[i].block);
            break;
        }
        vol_ebs_token(l.e[i].gen, tok);
        json_array_append_new(arr, json_pack("{s:I, s:s}", "BlockIndex", (json_int_t)l.e[i].block, "BlockToken", tok));
        shown++;
    }
    o = json_pack("{s:O, s:o, s:I, s:i}", "Blocks", arr, "ExpiryTime", iso(time(NULL) + 7 * 86400), "VolumeSize",
                  (json_int_t)s.volume_size, "BlockSize", (int)BLOCK_SIZE);
    if (o && next[0])
        json_object_set_new(o, "NextToken", json_string(next));
    vol_snapshot_clear(&s);
    rc = cli_vol_print(g, WHO, o);
out:
    json_decref(arr);
    free(l.e);
    return rc;
}

static int list_changed(cli_vol *g, const struct cli_args *a, vol_store *st)
{
    const char *first, *second;
    vol_snapshot s1, s2;
    struct list l1 = {0}, l2 = {0};
    uint64_t max, start, shown = 0;
    json_t *arr = json_array(), *o;
    char t1[21], t2[21], next[32] = "";
    vol_catalog *cat = vol_store_catalog(st);
    size_t i = 0, j = 0;
    int rc;
    if ((rc = cli_need1(WHO, a, "second-snapshot-id", &second, true)) || (rc = cli_need1(WHO, a, "first-snapshot-id", &first, false)) ||
        (rc = paging(a, "ListChangedBlocks", &max, &start))) {
        json_decref(arr);
        return rc;
    }
    memset(&s1, 0, sizeof s1);
    if (!vol_id_valid("snap-", second) || cat->ops->snapshot_get(cat, second, &s2)) {
        json_decref(arr);
        return cli_service_error("ResourceNotFoundException", "ListChangedBlocks", "The second snapshot does not exist. (Reason: SNAPSHOT_NOT_FOUND)");
    }
    if (first && (!vol_id_valid("snap-", first) || cat->ops->snapshot_get(cat, first, &s1))) {
        vol_snapshot_clear(&s2);
        json_decref(arr);
        return cli_service_error("ResourceNotFoundException", "ListChangedBlocks", "The first snapshot does not exist. (Reason: SNAPSHOT_NOT_FOUND)");
    }
    if (first && strcmp(s1.lineage, s2.lineage)) {
        rc = cli_service_error("ValidationException", "ListChangedBlocks",
                               "The snapshots are not of one lineage (Reason: UNRELATED_SNAPSHOTS)");
        goto out;
    }
    if ((first && (rc = cat->ops->map_list(cat, first, add, &l1))) || (rc = cat->ops->map_list(cat, second, add, &l2))) {
        rc = cli_service_error("InternalServerException", "ListChangedBlocks", strerror(-rc));
        goto out;
    }
    while (i < l1.n || j < l2.n) { /* merge of two ascending lists */
        bool in1 = i < l1.n && (j >= l2.n || l1.e[i].block <= l2.e[j].block);
        bool in2 = j < l2.n && (i >= l1.n || l2.e[j].block <= l1.e[i].block);
        uint64_t block = in1 ? l1.e[i].block : l2.e[j].block;
        bool changed = !(in1 && in2 && l1.e[i].gen == l2.e[j].gen);
        if (changed && block >= start) {
            json_t *x;
            if (shown == max) {
                snprintf(next, sizeof next, "EBP1%" PRIu64, block);
                break;
            }
            x = json_pack("{s:I}", "BlockIndex", (json_int_t)block);
            if (in1) {
                vol_ebs_token(l1.e[i].gen, t1);
                json_object_set_new(x, "FirstBlockToken", json_string(t1));
            }
            if (in2) {
                vol_ebs_token(l2.e[j].gen, t2);
                json_object_set_new(x, "SecondBlockToken", json_string(t2));
            }
            json_array_append_new(arr, x);
            shown++;
        }
        i += in1;
        j += in2;
    }
    o = json_pack("{s:O, s:o, s:I, s:i}", "ChangedBlocks", arr, "ExpiryTime", iso(time(NULL) + 7 * 86400), "VolumeSize",
                  (json_int_t)s2.volume_size, "BlockSize", (int)BLOCK_SIZE);
    if (o && next[0])
        json_object_set_new(o, "NextToken", json_string(next));
    rc = cli_vol_print(g, WHO, o);
out:
    json_decref(arr);
    free(l1.e);
    free(l2.e);
    vol_snapshot_clear(&s1);
    vol_snapshot_clear(&s2);
    return rc;
}

/* The block is read here; it goes to OUTFILE only once the call's record is durable (write_block). */
struct got_block {
    uint8_t *buf; /* sodium_malloc'd, BLOCK_SIZE bytes, or NULL */
    const char *outfile;
};

static int get_block(cli_vol *g, const struct cli_args *a, vol_store *st, const char *outfile, struct got_block *got)
{
    const char *snap, *idx, *tok;
    uint64_t block = 0;
    uint8_t *buf, sha[32];
    char b64[64];
    vol_err e = {"", ""};
    int rc;
    if ((rc = cli_need1(WHO, a, "snapshot-id", &snap, true)) || (rc = cli_need1(WHO, a, "block-index", &idx, true)) ||
        (rc = cli_need1(WHO, a, "block-token", &tok, true)))
        return rc;
    if (!outfile) {
        fprintf(stderr, WHO ": get-snapshot-block needs an OUTFILE argument\n");
        return CLI_EXIT_USAGE;
    }
    if (!cli_parse_u64(idx, &block))
        return cli_service_error("ValidationException", "GetSnapshotBlock", "BlockIndex must be a number (Reason: INVALID_BLOCK)");
    if (!(buf = sodium_malloc(BLOCK_SIZE)))
        return cli_service_error("InternalServerException", "GetSnapshotBlock", "out of memory");
    if (vol_ebs_get(st, snap, block, tok, buf, sha, &e)) {
        sodium_free(buf);
        return cli_service_error(e.code, "GetSnapshotBlock", e.message);
    }
    got->buf = buf;
    got->outfile = outfile;
    sodium_bin2base64(b64, sizeof b64, sha, sizeof sha, sodium_base64_VARIANT_ORIGINAL);
    return cli_vol_print(g, WHO, json_pack("{s:i, s:s, s:s}", "DataLength", (int)BLOCK_SIZE, "Checksum", b64, "ChecksumAlgorithm", "SHA256"));
}

/* OUTFILE of get-snapshot-block; 0 or 1 (message printed). */
static int write_block(const struct got_block *got)
{
    int fd = open(got->outfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, got->buf, BLOCK_SIZE) != BLOCK_SIZE || close(fd)) {
        fprintf(stderr, WHO ": writing %s: %s\n", got->outfile, strerror(errno));
        return 1;
    }
    return 0;
}

static const struct {
    const char *verb, *flags;
} VERBS[] = {
    {"start-snapshot", "volume-size parent-snapshot-id encrypted kms-key-arn description timeout client-token tags"},
    {"put-snapshot-block", "snapshot-id block-index block-data data-length checksum checksum-algorithm progress"},
    {"complete-snapshot", "snapshot-id changed-blocks-count checksum checksum-algorithm checksum-aggregation-method"},
    {"list-snapshot-blocks", "snapshot-id max-results next-token starting-block-index"},
    {"list-changed-blocks", "first-snapshot-id second-snapshot-id max-results next-token starting-block-index"},
    {"get-snapshot-block", "snapshot-id block-index block-token"},
};

/* The caller's view (vol/share.h): a snapshot another account owns and has not shared does not exist
 * for it (ResourceNotFoundException); one shared with it may be read (list, get, a parent) but not
 * written (AccessDeniedException, Reason UNAUTHORIZED_ACCOUNT). Malformed or absent ids are left to the
 * operation's own checks. Returns 0 or the exit status (error printed). */
static int ebs_gate(vol_store *st, const struct cli_args *a, const char *verb)
{
    static const struct {
        const char *verb, *op, *flags[2];
        bool owner;
    } G[] = {{"start-snapshot", "StartSnapshot", {"parent-snapshot-id", NULL}, false},
             {"put-snapshot-block", "PutSnapshotBlock", {"snapshot-id", NULL}, true},
             {"complete-snapshot", "CompleteSnapshot", {"snapshot-id", NULL}, true},
             {"list-snapshot-blocks", "ListSnapshotBlocks", {"snapshot-id", NULL}, false},
             {"list-changed-blocks", "ListChangedBlocks", {"first-snapshot-id", "second-snapshot-id"}, false},
             {"get-snapshot-block", "GetSnapshotBlock", {"snapshot-id", NULL}, false}};
    for (size_t i = 0; i < sizeof G / sizeof G[0]; i++) {
        if (strcmp(G[i].verb, verb))
            continue;
        for (int k = 0; k < 2 && G[i].flags[k]; k++) {
            const char *id = cli_arg1(a, G[i].flags[k]);
            vol_err e = {"", ""};
            char msg[sizeof e.message + 64];
            if (!id || !vol_id_valid("snap-", id) || !vol_snapshot_for_caller(st, id, G[i].owner, NULL, &e))
                continue;
            if (!strcmp(e.code, "InvalidSnapshot.NotFound")) {
                snprintf(msg, sizeof msg, "The snapshot '%s' does not exist. (Reason: SNAPSHOT_NOT_FOUND)", id);
                return cli_service_error("ResourceNotFoundException", G[i].op, msg);
            }
            if (!strcmp(e.code, "UnauthorizedOperation")) {
                snprintf(msg, sizeof msg, "%s (Reason: UNAUTHORIZED_ACCOUNT)", e.message);
                return cli_service_error("AccessDeniedException", G[i].op, msg);
            }
            return cli_service_error(e.code, G[i].op, e.message);
        }
    }
    return 0;
}

int cmd_ebs(int argc, char **argv)
{
    cli_vol g;
    struct cli_args a;
    const char *verb, *outfile = NULL;
    vol_store *st = NULL;
    kmsc *kms = NULL;
    struct got_block got = {NULL, NULL};
    char action[64];
    int rc = cli_vol_parse(argc, argv, WHO, &g), nrest;
    efs_json_wipe_on_free();
    if (rc)
        goto out;
    if (!g.nrest || !strcmp(g.rest[0], "help") || !strcmp(g.rest[0], "--help")) {
        FILE *f = g.nrest ? stdout : stderr;
        fprintf(f, "usage: envelopefs ebs <operation> [--flag value ...] (global options as for `envelopefs ec2`)\n\n");
        for (size_t i = 0; i < sizeof VERBS / sizeof VERBS[0]; i++)
            fprintf(f, "  %s  --%s%s\n", VERBS[i].verb, VERBS[i].flags, !strcmp(VERBS[i].verb, "get-snapshot-block") ? "  OUTFILE" : "");
        rc = g.nrest ? 0 : CLI_EXIT_USAGE;
        goto out;
    }
    verb = g.rest[0];
    nrest = g.nrest - 1;
    if (!strcmp(verb, "get-snapshot-block") && nrest > 0 && strncmp(g.rest[g.nrest - 1], "--", 2) &&
        (nrest < 2 || strncmp(g.rest[g.nrest - 2], "--", 2))) {
        outfile = g.rest[g.nrest - 1]; /* the positional OUTFILE, after the last flag's value */
        nrest--;
    }
    rc = -1;
    for (size_t i = 0; i < sizeof VERBS / sizeof VERBS[0]; i++)
        if (!strcmp(verb, VERBS[i].verb))
            rc = cli_args_parse(WHO, g.rest + 1, nrest, verb, VERBS[i].flags, &a);
    if (rc < 0) {
        fprintf(stderr, WHO ": unknown operation '%s' (see `envelopefs ebs help`)\n", verb);
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    if (rc)
        goto out;
    cli_ec2_action(verb, action, sizeof action);
    cli_vol_defer_print = true; /* the answer goes out once the call's record is durable (below) */
    if (!(st = cli_vol_open(&g, true, &kms, action)))
        rc = CLI_EXIT_SERVICE;
    else if ((rc = ebs_gate(st, &a, verb)))
        ;
    else if (!strcmp(verb, "start-snapshot"))
        rc = start_snapshot(&g, &a, st);
    else if (!strcmp(verb, "put-snapshot-block"))
        rc = put_block(&g, &a, st);
    else if (!strcmp(verb, "complete-snapshot"))
        rc = complete(&g, &a, st);
    else if (!strcmp(verb, "list-snapshot-blocks"))
        rc = list_blocks(&g, &a, st);
    else if (!strcmp(verb, "list-changed-blocks"))
        rc = list_changed(&g, &a, st);
    else
        rc = get_block(&g, &a, st, outfile, &got);
    /* its record, eventSource ebs.amazonaws.com (cli_ec2_audit.c), durable before the answer (and before
       get-snapshot-block's data leaves); a call whose record could not be written fails, as an ec2 verb's */
    if (cli_ebs_audit(&g, verb, &a, rc) && !rc) {
        cli_vol_drop_deferred();
        rc = cli_service_error("InternalServerException", action,
                               got.buf ? "the block was read but its audit record could not be written"
                                       : "the call took effect but its audit record could not be written");
    } else if (!rc && got.buf && (rc = write_block(&got))) {
        cli_vol_drop_deferred();
    } else {
        int printed = cli_vol_print_deferred(&g, WHO);
        rc = rc ? rc : printed;
    }
out:
    if (got.buf)
        sodium_free(got.buf);
    vol_store_free(st);
    kmsc_free(kms);
    cli_vol_done(&g);
    return rc;
}
