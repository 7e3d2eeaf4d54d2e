/*
 * cmd_volume.c — `envelopefs volume <verb>`: what EBS does without an API call of its own here.
 *   attach VOL [MOUNTPOINT] [--loop] [--foreground]   serve the volume as an image file (and a loop device)
 *   detach VOL                                        detach the loop device, unmount, wait for the last flush
 *   fsck VOL|SNAP                                     verify every sector; one line per damaged block, exit 1
 *   sweep                                             reclaim chunk files no catalog row names
 * Global options as for `envelopefs ec2`. Errors print the AWS CLI's line (exit 254), usage errors 252.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "attach.h"
#include "cli_aws.h"
#include "cli_vol.h"
#include "commands.h"
#include "dev.h"
#include "common/jsonwipe.h"

#define WHO "envelopefs volume"

static int usage(FILE *f, int rc)
{
    fprintf(f, "usage: envelopefs volume attach VOL [MOUNTPOINT] [--loop] [--nbd SOCKET] [--foreground]\n"
               "       envelopefs volume detach VOL\n"
               "       envelopefs volume fsck VOL|SNAP\n"
               "       envelopefs volume sweep\n"
               "global options as for `envelopefs ec2` (--store, --volume-store, --kms, --root-key-file, ...)\n");
    return rc;
}

static void print_attachment(void *arg, const char *text)
{
    const cli_vol *g = arg;
    json_t *j = json_loads(text, 0, NULL);
    if (j) {
        (void)cli_print_json(j, g->query, g->output, WHO);
        /* the attachment is made: its record (in the daemon, before the parent returns) */
        json_decref(cli_vol_last_response);
        cli_vol_last_response = j;
        cli_ec2_audit(g, "AttachVolume", NULL, json_string_value(json_object_get(j, "VolumeId")), 0);
    }
}

static int attach(cli_vol *g)
{
    vol_attach_opts o = {0};
    vol_err e = {"", ""};
    char *dir = cli_vol_store_dir(g), mnt[PATH_MAX], nbdpath[PATH_MAX];
    int rc;
    for (int i = 1; i < g->nrest; i++) {
        const char *a = g->rest[i];
        if (!strcmp(a, "--loop"))
            o.loop = true;
        else if (!strcmp(a, "--foreground") || !strcmp(a, "-f"))
            o.foreground = true;
        else if (!strcmp(a, "--nbd") && i + 1 < g->nrest) {
            const char *p = g->rest[++i];
            if (p[0] != '/') { /* the daemon runs in / */
                char cwd[PATH_MAX];
                if (!getcwd(cwd, sizeof cwd) || snprintf(nbdpath, sizeof nbdpath, "%s/%s", cwd, p) >= (int)sizeof nbdpath) {
                    free(dir);
                    fprintf(stderr, WHO ": --nbd %s: path too long\n", p);
                    return CLI_EXIT_USAGE;
                }
                p = nbdpath;
            }
            o.nbd = p;
        }
        else if (a[0] == '-') {
            free(dir);
            fprintf(stderr, WHO ": unknown option %s\n", a);
            return usage(stderr, CLI_EXIT_USAGE);
        } else if (!o.volume_id)
            o.volume_id = a;
        else if (!o.mountpoint) {
            if (!realpath(a, mnt)) {
                fprintf(stderr, WHO ": mount point %s: %s\n", a, strerror(errno));
                free(dir);
                return CLI_EXIT_USAGE;
            }
            o.mountpoint = mnt;
        } else {
            free(dir);
            return usage(stderr, CLI_EXIT_USAGE);
        }
    }
    if (!o.volume_id || !dir) {
        free(dir);
        return usage(stderr, CLI_EXIT_USAGE);
    }
    o.store_dir = dir;
    o.open_kms = cli_vol_open_kms;
    o.open_kms_arg = g;
    o.print = print_attachment;
    o.print_arg = g;
    rc = vol_attach_run(&o, &e);
    free(dir);
    if (rc) {
        rc = cli_service_error(e.code[0] ? e.code : "InternalError", "AttachVolume", e.message);
        cli_ec2_audit(g, "AttachVolume", NULL, o.volume_id, rc);
        return rc;
    }
    return 0;
}

static int detach(cli_vol *g)
{
    vol_err e = {"", ""};
    char *dir = cli_vol_store_dir(g);
    int rc;
    if (g->nrest != 2 || !dir) {
        free(dir);
        return usage(stderr, CLI_EXIT_USAGE);
    }
    rc = vol_detach(dir, g->rest[1], &e);
    free(dir);
    rc = rc ? cli_service_error(e.code, "DetachVolume", e.message) : 0;
    cli_ec2_audit(g, "DetachVolume", NULL, g->rest[1], rc);
    return rc;
}

static int fsck(cli_vol *g)
{
    const char *id = g->nrest == 2 ? g->rest[1] : NULL;
    char lineage[64] = "";
    vol_store *st;
    kmsc *kms;
    vol_lineage l;
    kmsc_secret *dk = NULL;
    vol_err e = {"", ""};
    int rc;
    if (!id)
        return usage(stderr, CLI_EXIT_USAGE);
    if (!vol_id_valid("vol-", id) && !vol_id_valid("snap-", id))
        return cli_service_error("InvalidParameterValue", "Fsck", "expecting a vol-… or snap-… id");
    if (!(st = cli_vol_open(g, true, &kms, "Fsck")))
        return CLI_EXIT_SERVICE;
    if (id[0] == 'v') {
        vol_volume v;
        if ((rc = vol_store_catalog(st)->ops->volume_get(vol_store_catalog(st), id, &v)) == 0) {
            snprintf(lineage, sizeof lineage, "%s", v.lineage);
            vol_volume_clear(&v);
        }
    } else {
        vol_snapshot s;
        if ((rc = vol_store_catalog(st)->ops->snapshot_get(vol_store_catalog(st), id, &s)) == 0) {
            snprintf(lineage, sizeof lineage, "%s", s.lineage);
            vol_snapshot_clear(&s);
        }
    }
    if (rc) {
        char msg[128];
        snprintf(msg, sizeof msg, "The %s '%s' does not exist.", id[0] == 'v' ? "volume" : "snapshot", id);
        rc = cli_service_error(id[0] == 'v' ? "InvalidVolume.NotFound" : "InvalidSnapshot.NotFound", "Fsck", msg);
        goto out;
    }
    if (id[0] == 'v' && vol_is_attached(st, id)) {
        rc = cli_service_error("VolumeInUse", "Fsck", "the volume is attached: detach it first (or check a snapshot)");
        goto out;
    }
    if (vol_lineage_of(st, lineage, &l, &e) || vol_lineage_key(st, &l, &dk, &e)) {
        rc = cli_service_error(e.code, "Fsck", e.message);
        if (!e.code[0] || strncmp(e.code, "KMS", 3))
            vol_lineage_clear(&l);
        goto out;
    }
    snprintf(lineage, sizeof lineage, "%s", l.binding);
    vol_lineage_clear(&l);
    rc = vol_check(vol_store_catalog(st), vol_store_chunks(st), id, lineage, dk->data, stdout);
    kmsc_secret_free(dk);
    if (rc < 0) {
        fprintf(stderr, WHO " fsck: %s\n", strerror(-rc));
        rc = 2;
    } else if (rc == 0) {
        printf("%s: every block is intact\n", id);
    }
out:
    vol_store_free(st);
    kmsc_free(kms);
    return rc;
}

static int sweep(cli_vol *g)
{
    vol_store *st;
    kmsc *kms;
    int freed = 0, rc;
    if (!(st = cli_vol_open(g, false, &kms, "Sweep")))
        return CLI_EXIT_SERVICE;
    rc = vol_sweep(st, &freed);
    vol_store_free(st);
    if (rc)
        return cli_service_error("InternalError", "Sweep", strerror(-rc));
    printf("{\n    \"ChunksFreed\": %d\n}\n", freed);
    return 0;
}

int cmd_volume(int argc, char **argv)
{
    cli_vol g;
    int rc = cli_vol_parse(argc, argv, WHO, &g);
    efs_json_wipe_on_free();
    if (rc)
        goto out;
    if (!g.nrest)
        rc = usage(stderr, CLI_EXIT_USAGE);
    else if (!strcmp(g.rest[0], "help") || !strcmp(g.rest[0], "--help"))
        rc = usage(stdout, 0);
    else if (!strcmp(g.rest[0], "attach"))
        rc = attach(&g);
    else if (!strcmp(g.rest[0], "detach"))
        rc = detach(&g);
    else if (!strcmp(g.rest[0], "fsck"))
        rc = fsck(&g);
    else if (!strcmp(g.rest[0], "sweep"))
        rc = sweep(&g);
    else {
        fprintf(stderr, WHO ": unknown verb '%s'\n", g.rest[0]);
        rc = usage(stderr, CLI_EXIT_USAGE);
    }
out:
    cli_vol_done(&g);
    return rc;
}
