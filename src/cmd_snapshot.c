/*
 * cmd_snapshot.c — `envelopefs snapshot upload IMAGE [--description D] [--kms-key-arn K]` and
 * `envelopefs snapshot download SNAP IMAGE`: a disk image into a snapshot and back through the EBS direct
 * API functions (vol/direct.h), as coldsnap does. All-zero 512 KiB blocks are not uploaded (they read as
 * zeros) and are left as holes on download; the last partial block is padded with zeros. Every block's
 * SHA-256 is checked on the way in and on the way out; the upload completes with the LINEAR checksum. A
 * progress line goes to a terminal's stderr.
 *
 * Each EBS direct-API call these commands stand for leaves its record in the account's trail, as the `ebs` verbs'
 * (eventSource ebs.amazonaws.com, cli_ec2_audit.c) and as CloudTrail would hold coldsnap's calls: upload
 * StartSnapshot, one PutSnapshotBlock per block it stores (data events) and CompleteSnapshot; download
 * ListSnapshotBlocks (one per page of 10,000 blocks, coldsnap's MaxResults) and one GetSnapshotBlock per block.
 * A block's record is durable before the next call (a block read is written to the image only after its record);
 * a record that cannot be written fails the command (a failed upload deletes its snapshot, a failed download
 * its image). The trail is opened once for them all (cli_audit_run_begin).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "cli_aws.h"
#include "cli_vol.h"
#include "share.h"
#include "commands.h"
#include "common/jsonwipe.h"
#include "direct.h"

#define WHO "envelopefs snapshot"
#define UP "snapshot.upload"
#define DOWN "snapshot.download"
#define LIST_PAGE 10000 /* ListSnapshotBlocks' MaxResults, as coldsnap pages */

/* A number as the `ebs` verbs' records hold their flags: its decimal text. */
static json_t *num(uint64_t v)
{
    char b[24];
    snprintf(b, sizeof b, "%" PRIu64, v);
    return json_string(b);
}

/* The record of one EBS call (request/response consumed); the call's own failure (code non-NULL) is recorded as it. */
static int rec(cli_vol *g, const char *cmd, const char *event, json_t *req, json_t *resp, const char *snap,
               const char *code, const char *message)
{
    int r = cli_ebs_audit_call(g, cmd, event, req, resp, snap, code, message);
    json_decref(req);
    json_decref(resp);
    return r;
}

static void progress(const char *what, uint64_t done, uint64_t total)
{
    if (isatty(STDERR_FILENO) && total)
        fprintf(stderr, "\r%s %" PRIu64 "/%" PRIu64 " blocks (%3u%%)%s", what, done, total,
                (unsigned)(done * 100 / total), done == total ? "\n" : "");
}

static bool zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static ssize_t read_full(int fd, uint8_t *buf, size_t n, off_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, off + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static int upload(cli_vol *g, vol_store *st, const char *image, const char *desc, const char *key)
{
    struct stat sb;
    uint8_t *buf = malloc(VOL_BLOCK_SIZE), sha[32];
    char b64[64];
    vol_snapshot s;
    vol_err e = {"", ""};
    crypto_hash_sha256_state agg;
    uint64_t blocks, gib, put = 0;
    int fd = open(image, O_RDONLY | O_CLOEXEC), rc = 0;
    if (fd < 0 || fstat(fd, &sb) || !buf) {
        fprintf(stderr, WHO ": %s: %s\n", image, strerror(errno));
        free(buf);
        if (fd >= 0)
            close(fd);
        return CLI_EXIT_USAGE;
    }
    gib = ((uint64_t)sb.st_size + (1ull << 30) - 1) >> 30;
    blocks = ((uint64_t)sb.st_size + VOL_BLOCK_SIZE - 1) / VOL_BLOCK_SIZE;
    {
        json_t *req = json_pack("{s:o, s:b}", "volumeSize", num(gib ? gib : 1), "encrypted", 1);
        if (req && key)
            json_object_set_new(req, "kmsKeyArn", json_string(key));
        if (req && desc)
            json_object_set_new(req, "description", json_string(desc));
        if (vol_ebs_start(st, gib ? gib : 1, NULL, true, key, desc, NULL, &s, &e)) {
            rc = cli_service_error(e.code, "StartSnapshot", e.message);
            (void)rec(g, UP, "StartSnapshot", req, NULL, NULL, e.code, e.message); /* (failing either way) */
            goto out;
        }
        if (rec(g, UP, "StartSnapshot", req,
                json_pack("{s:s, s:I, s:i, s:s}", "snapshotId", s.id, "volumeSize", (json_int_t)s.volume_size,
                          "blockSize", VOL_BLOCK_SIZE, "status", "pending"), s.id, NULL, NULL)) {
            rc = cli_service_error("InternalServerException", "StartSnapshot", "its audit record could not be written");
            goto undo;
        }
    }
    crypto_hash_sha256_init(&agg);
    for (uint64_t b = 0; b < blocks && !rc; b++) {
        ssize_t n = read_full(fd, buf, VOL_BLOCK_SIZE, (off_t)(b * VOL_BLOCK_SIZE));
        if (n < 0) {
            fprintf(stderr, WHO ": reading %s: %s\n", image, strerror(errno));
            rc = 1;
            break;
        }
        memset(buf + n, 0, VOL_BLOCK_SIZE - (size_t)n); /* the last block padded */
        if (zero(buf, VOL_BLOCK_SIZE))
            continue;
        crypto_hash_sha256(sha, buf, VOL_BLOCK_SIZE);
        crypto_hash_sha256_update(&agg, sha, sizeof sha);
        sodium_bin2base64(b64, sizeof b64, sha, sizeof sha, sodium_base64_VARIANT_ORIGINAL);
        {
            json_t *req = json_pack("{s:s, s:o, s:o, s:s, s:s}", "snapshotId", s.id, "blockIndex", num(b),
                                    "dataLength", num(VOL_BLOCK_SIZE), "checksum", b64, "checksumAlgorithm", "SHA256");
            bool failed = vol_ebs_put(st, s.id, b, buf, VOL_BLOCK_SIZE, b64, &e) != 0;
            if (failed)
                rc = cli_service_error(e.code, "PutSnapshotBlock", e.message);
            if (rec(g, UP, "PutSnapshotBlock", req,
                    failed ? NULL : json_pack("{s:s, s:s}", "checksum", b64, "checksumAlgorithm", "SHA256"), s.id,
                    failed ? e.code : NULL, e.message) && !rc)
                rc = cli_service_error("InternalServerException", "PutSnapshotBlock",
                                       "the block was stored but its audit record could not be written");
        }
        put++;
        progress("uploaded", b + 1, blocks);
    }
    if (!rc) {
        crypto_hash_sha256_final(&agg, sha);
        sodium_bin2base64(b64, sizeof b64, sha, sizeof sha, sodium_base64_VARIANT_ORIGINAL);
        json_t *req = json_pack("{s:s, s:o, s:s, s:s, s:s}", "snapshotId", s.id, "changedBlocksCount",
                                num(put), "checksum", b64, "checksumAlgorithm", "SHA256",
                                "checksumAggregationMethod", "LINEAR");
        bool failed = vol_ebs_complete(st, s.id, (int64_t)put, b64, &e) != 0;
        if (failed)
            rc = cli_service_error(e.code, "CompleteSnapshot", e.message);
        if (rec(g, UP, "CompleteSnapshot", req, failed ? NULL : json_pack("{s:s}", "status", "completed"), s.id,
                failed ? e.code : NULL, e.message) && !rc)
            rc = cli_service_error("InternalServerException", "CompleteSnapshot",
                                   "the snapshot was completed but its audit record could not be written");
    }
    if (!rc) {
        json_t *o = json_pack("{s:s, s:I, s:I}", "SnapshotId", s.id, "VolumeSize", (json_int_t)s.volume_size,
                              "ChangedBlocksCount", (json_int_t)put);
        rc = cli_print_json(o, g->query, g->output, WHO);
        json_decref(o);
    } else {
        vol_err e2;
    undo:
        if (vol_delete_snapshot(st, s.id, &e2)) /* a failed upload leaves nothing behind */
            fprintf(stderr, WHO ": the unfinished snapshot %s remains: %s\n", s.id, e2.message);
    }
    vol_snapshot_clear(&s);
out:
    close(fd);
    free(buf);
    return rc;
}

struct blocks {
    uint64_t *block, *gen;
    size_t n, cap;
};
static int add(void *arg, uint64_t block, uint64_t gen)
{
    struct blocks *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        uint64_t *x = realloc(l->block, cap * sizeof *x), *y;
        if (!x)
            return -ENOMEM;
        l->block = x;
        if (!(y = realloc(l->gen, cap * sizeof *y)))
            return -ENOMEM;
        l->gen = y;
        l->cap = cap;
    }
    l->block[l->n] = block;
    l->gen[l->n++] = gen;
    return 0;
}

static int download(cli_vol *g, vol_store *st, const char *snap, const char *image)
{
    vol_snapshot s;
    struct blocks l = {0};
    uint8_t *buf = NULL, sha[32];
    char tok[21];
    vol_err e = {"", ""};
    int fd = -1, rc = 0;
    /* the caller's own or shared with it (vol/share.h) */
    if (!vol_id_valid("snap-", snap) || vol_snapshot_for_caller(st, snap, false, &s, &e)) {
        /* (the first call coldsnap makes: ListSnapshotBlocks, refused as EBS refuses it) */
        (void)rec(g, DOWN, "ListSnapshotBlocks", json_pack("{s:s, s:o}", "snapshotId", snap, "maxResults", num(LIST_PAGE)),
                  NULL, vol_id_valid("snap-", snap) ? snap : NULL, "ResourceNotFoundException",
                  "The snapshot does not exist. (Reason: SNAPSHOT_NOT_FOUND)");
        return cli_service_error("InvalidSnapshot.NotFound", "DownloadSnapshot", "The snapshot does not exist.");
    }
    if (strcmp(s.state, "completed")) {
        (void)rec(g, DOWN, "ListSnapshotBlocks", json_pack("{s:s, s:o}", "snapshotId", snap, "maxResults", num(LIST_PAGE)),
                  NULL, snap, "ValidationException", "The snapshot is not completed.");
        vol_snapshot_clear(&s);
        return cli_service_error("IncorrectState", "DownloadSnapshot", "The snapshot is not completed.");
    }
    if ((rc = vol_store_catalog(st)->ops->map_list(vol_store_catalog(st), snap, add, &l)) ||
        !(buf = sodium_malloc(VOL_BLOCK_SIZE))) {
        rc = cli_service_error("InternalError", "DownloadSnapshot", "cannot list the snapshot's blocks");
        (void)rec(g, DOWN, "ListSnapshotBlocks", json_pack("{s:s, s:o}", "snapshotId", snap, "maxResults", num(LIST_PAGE)),
                  NULL, snap, "InternalServerException", "cannot list the snapshot's blocks");
        goto out;
    }
    for (size_t i = 0; i == 0 || i < l.n; i += LIST_PAGE) { /* its pages, as coldsnap lists them */
        json_t *req = json_pack("{s:s, s:o}", "snapshotId", snap, "maxResults", num(LIST_PAGE));
        if (req && i)
            json_object_set_new(req, "startingBlockIndex", num(l.block[i]));
        if (rec(g, DOWN, "ListSnapshotBlocks", req, NULL, snap, NULL, NULL)) {
            rc = cli_service_error("InternalServerException", "ListSnapshotBlocks",
                                   "its audit record could not be written");
            goto out;
        }
        if (!l.n)
            break;
    }
    fd = open(image, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)(s.volume_size << 30))) { /* a sparse image: holes where nothing was written */
        fprintf(stderr, WHO ": %s: %s\n", image, strerror(errno));
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    for (size_t i = 0; i < l.n && !rc; i++) {
        vol_ebs_token(l.gen[i], tok);
        {
            json_t *req = json_pack("{s:s, s:o, s:s}", "snapshotId", snap, "blockIndex", num(l.block[i]),
                                    "blockToken", tok);
            bool failed = vol_ebs_get(st, snap, l.block[i], tok, buf, sha, &e) != 0;
            if (failed)
                rc = cli_service_error(e.code, "GetSnapshotBlock", e.message);
            /* durable before the block leaves (the `ebs get-snapshot-block` rule) */
            if (rec(g, DOWN, "GetSnapshotBlock", req, NULL, snap, failed ? e.code : NULL, e.message) && !rc)
                rc = cli_service_error("InternalServerException", "GetSnapshotBlock",
                                       "the block was read but its audit record could not be written");
            if (rc)
                break;
        }
        if (!zero(buf, VOL_BLOCK_SIZE) && pwrite(fd, buf, VOL_BLOCK_SIZE, (off_t)(l.block[i] * VOL_BLOCK_SIZE)) != VOL_BLOCK_SIZE) {
            fprintf(stderr, WHO ": writing %s: %s\n", image, strerror(errno));
            rc = 1;
        }
        progress("downloaded", i + 1, l.n);
    }
    if (!rc && fsync(fd)) {
        fprintf(stderr, WHO ": %s: %s\n", image, strerror(errno));
        rc = 1;
    }
out:
    if (fd >= 0) {
        close(fd);
        if (rc)
            unlink(image);
    }
    if (buf)
        sodium_free(buf);
    free(l.block);
    free(l.gen);
    vol_snapshot_clear(&s);
    return rc;
}

int cmd_snapshot(int argc, char **argv)
{
    cli_vol g;
    vol_store *st = NULL;
    kmsc *kms = NULL;
    const char *desc = NULL, *key = NULL, *pos[2] = {NULL, NULL};
    int rc = cli_vol_parse(argc, argv, WHO, &g), npos = 0;
    efs_json_wipe_on_free();
    if (rc)
        goto out;
    for (int i = 1; i < g.nrest; i++) {
        if (!strcmp(g.rest[i], "--description") && i + 1 < g.nrest)
            desc = g.rest[++i];
        else if (!strcmp(g.rest[i], "--kms-key-arn") && i + 1 < g.nrest)
            key = g.rest[++i];
        else if (g.rest[i][0] != '-' && npos < 2)
            pos[npos++] = g.rest[i];
        else
            npos = 9;
    }
    if (!g.nrest || (!strcmp(g.rest[0], "upload") ? npos != 1 : !strcmp(g.rest[0], "download") ? npos != 2 || desc || key : 1)) {
        fprintf(g.nrest && !strcmp(g.rest[0], "help") ? stdout : stderr,
                "usage: envelopefs snapshot upload IMAGE [--description D] [--kms-key-arn KEY]\n"
                "       envelopefs snapshot download SNAP IMAGE\n(global options as for `envelopefs ec2`)\n");
        rc = g.nrest && !strcmp(g.rest[0], "help") ? 0 : CLI_EXIT_USAGE;
        goto out;
    }
    if (!(st = cli_vol_open(&g, true, &kms, "Snapshot"))) {
        rc = CLI_EXIT_SERVICE;
        goto out;
    }
    cli_audit_run_begin(); /* one trail for every block's record */
    rc = !strcmp(g.rest[0], "upload") ? upload(&g, st, pos[0], desc, key) : download(&g, st, pos[0], pos[1]);
    cli_audit_run_end();
out:
    vol_store_free(st);
    kmsc_free(kms);
    cli_vol_done(&g);
    return rc;
}
