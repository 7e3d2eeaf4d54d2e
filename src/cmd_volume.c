/*
 * cmd_volume.c — `envelopefs volume <verb>`: what EBS does without an API call of its own here.
 *   attach VOL [MOUNTPOINT] [--loop] [--foreground]   serve the volume as an image file (and a loop device)
 *   detach VOL                                        detach the loop device, unmount, wait for the last flush
 *   fsck VOL|SNAP                                     verify every sector; one line per damaged block, exit 1
 *   fsck SNAP --verify-signature [--public-key F]     recompute the signed manifest and verify its signature (cli_vol_sign.c)
 *   sign SNAP [--signing-key-id K]                    sign (or re-sign) a snapshot's manifest
 *   set-signing-key KEY|none                          the key new snapshots are signed with by default
 *   rekey VOL [--batch N]                             move every block still on its snapshot's key to the volume's own
 *   status VOL|SNAP                                   its key, blocks, and how many are still on another key
 *   sweep                                             reclaim chunk files no catalog row names
 *   lookup-events [...] / validate-audit [...]        the trail the EC2 records go to (`kms lookup-audit` /
 *                                                     `validate-audit` on it: cli_ec2_audit.c)
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
#include "share.h"
#include "cli_vol_sign.h"
#include "commands.h"
#include "dev.h"
#include "rekey.h"
#include "common/jsonwipe.h"

#define WHO "envelopefs volume"

static int usage(FILE *f, int rc)
{
    fprintf(f, "usage: envelopefs volume attach VOL [MOUNTPOINT] [--loop] [--nbd SOCKET] [--foreground]\n"
               "       envelopefs volume detach VOL\n"
               "       envelopefs volume fsck VOL|SNAP\n"
               "       envelopefs volume fsck SNAP --verify-signature [--public-key FILE.pem] [--source-public-key FILE.pem]\n"
               "                              [--signing-key-id KEY] [--no-authenticate]\n"
               "       envelopefs volume sign SNAP [--signing-key-id KEY]\n"
               "       envelopefs volume set-signing-key KEY|none\n"
               "       envelopefs volume rekey VOL [--batch N]   (detached; restartable)\n"
               "       envelopefs volume status VOL|SNAP\n"
               "       envelopefs volume sweep\n"
               "       envelopefs volume lookup-events [--lookup-attributes AttributeKey=K,AttributeValue=V] [--start-time T]\n"
               "                              [--end-time T] [--max-results N] [--next-token T]   (the EC2 records' trail)\n"
               "       envelopefs volume validate-audit [--start-time T] [--public-key HEX]\n"
               "global options as for `envelopefs ec2` (--store, --volume-store, --kms, --root-key-file, ...)\n");
    return rc;
}

static int print_attachment(void *arg, const char *text)
{
    const cli_vol *g = arg;
    json_t *j = json_loads(text, 0, NULL);
    if (!j)
        return -ENOMEM;
    /* the attachment is made: its record first (in the daemon, before the parent returns), then the answer;
       an attachment that cannot be recorded is undone by the daemon (docs/DESIGN.md) */
    json_decref(cli_vol_last_response);
    cli_vol_last_response = j;
    if (cli_ec2_audit(g, "AttachVolume", NULL, json_string_value(json_object_get(j, "VolumeId")), 0))
        return -EIO;
    (void)cli_print_json(j, g->query, g->output, WHO);
    return 0;
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
    {
        /* only the owner attaches: another account's volume does not exist for it (vol/share.h) */
        kmsc *kms;
        vol_store *st = cli_vol_open(g, true, &kms, "AttachVolume");
        if (!st) {
            free(dir);
            return CLI_EXIT_SERVICE;
        }
        rc = vol_volume_for_caller(st, o.volume_id, NULL, &e);
        vol_store_free(st);
        kmsc_free(kms);
        if (rc) {
            free(dir);
            return cli_service_error(e.code, "AttachVolume", e.message);
        }
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
    if (cli_ec2_audit(g, "DetachVolume", NULL, g->rest[1], rc) && !rc) /* (durable before it returns) */
        rc = cli_service_error("InternalError", "DetachVolume",
                               "the volume is detached but its audit record could not be written");
    return rc;
}

static int fsck(cli_vol *g)
{
    const char *id = g->nrest == 2 ? g->rest[1] : NULL;
    char lineage[64] = "";
    vol_store *st;
    kmsc *kms;
    vol_keyring ring = {NULL, 0};
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
    /* every key its chunks need: a volume (or its snapshot) part-way through a rekey has more than one */
    if (vol_owner_keys(st, id, lineage, &ring, &e)) {
        rc = cli_service_error(e.code, "Fsck", e.message);
        goto out;
    }
    rc = vol_check_keys(vol_store_catalog(st), vol_store_chunks(st), id, &ring, stdout);
    vol_keyring_clear(&ring);
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

/* The owner's lineage (a volume's or a snapshot's); 0 or -ENOENT. */
static int owner_lineage(vol_store *st, const char *id, char *out, size_t cap)
{
    vol_catalog *cat = vol_store_catalog(st);
    int rc;
    if (id[0] == 'v') {
        vol_volume v;
        if ((rc = cat->ops->volume_get(cat, id, &v)) == 0)
            snprintf(out, cap, "%s", v.lineage);
        vol_volume_clear(&v);
    } else {
        vol_snapshot s;
        if ((rc = cat->ops->snapshot_get(cat, id, &s)) == 0)
            snprintf(out, cap, "%s", s.lineage);
        vol_snapshot_clear(&s);
    }
    return rc;
}

struct rekey_progress {
    bool tty;
};
static int rekey_progress(void *arg, uint64_t done, uint64_t total, bool committed)
{
    struct rekey_progress *p = arg;
    if (p->tty && committed)
        fprintf(stderr, "\r" WHO " rekey: %llu/%llu blocks", (unsigned long long)done, (unsigned long long)total);
    return 0;
}

static int rekey(cli_vol *g)
{
    const char *id = NULL;
    uint64_t batch = 0, moved = 0;
    struct rekey_progress p = {isatty(STDERR_FILENO) != 0};
    vol_store *st;
    kmsc *kms;
    vol_err e = {"", ""};
    int rc;
    for (int i = 1; i < g->nrest; i++) {
        if (!strcmp(g->rest[i], "--batch") && i + 1 < g->nrest) {
            if (!cli_parse_u64(g->rest[++i], &batch) || batch == 0 || batch > 65536) {
                fprintf(stderr, WHO ": --batch must be 1..65536\n");
                return CLI_EXIT_USAGE;
            }
        } else if (g->rest[i][0] == '-' || id) {
            return usage(stderr, CLI_EXIT_USAGE);
        } else {
            id = g->rest[i];
        }
    }
    if (!id)
        return usage(stderr, CLI_EXIT_USAGE);
    if (!(st = cli_vol_open(g, true, &kms, "RekeyVolume")))
        return CLI_EXIT_SERVICE;
    rc = vol_rekey_volume(st, id, batch, rekey_progress, &p, &moved, &e);
    if (p.tty)
        fputc('\n', stderr);
    if (rc) {
        rc = cli_service_error(e.code[0] ? e.code : "InternalError", "RekeyVolume", e.message);
    } else {
        char lineage[64] = "";
        vol_lineage l;
        json_t *o;
        if (owner_lineage(st, id, lineage, sizeof lineage) || vol_lineage_of(st, lineage, &l, &e)) {
            rc = cli_service_error("InternalError", "RekeyVolume", "the volume vanished meanwhile");
        } else {
            o = json_pack("{s:s, s:s, s:I, s:I}", "VolumeId", id, "KmsKeyId", l.key_arn, "BlocksRekeyed",
                          (json_int_t)moved, "BlocksOnOtherKeys", (json_int_t)0);
            vol_lineage_clear(&l);
            rc = cli_vol_print(g, WHO, o);
        }
    }
    vol_store_free(st);
    kmsc_free(kms);
    return rc;
}

struct key_list {
    vol_store *st;
    json_t *arr;
};
static int add_source_key(void *arg, const char *lineage)
{
    struct key_list *k = arg;
    vol_lineage l;
    if (vol_lineage_of(k->st, lineage, &l, NULL) == 0) {
        json_array_append_new(k->arr, json_string(l.key_arn));
        vol_lineage_clear(&l);
    }
    return 0;
}

/* status VOL|SNAP: the key, the blocks, how many are still on another lineage (no key service call). */
static int status(cli_vol *g)
{
    const char *id = g->nrest == 2 ? g->rest[1] : NULL;
    char lineage[64] = "";
    vol_store *st;
    kmsc *kms;
    vol_lineage l;
    vol_rekey_status s;
    vol_err e = {"", ""};
    struct key_list kl;
    json_t *o;
    int rc;
    if (!id)
        return usage(stderr, CLI_EXIT_USAGE);
    if (!vol_id_valid("vol-", id) && !vol_id_valid("snap-", id))
        return cli_service_error("InvalidParameterValue", "Status", "expecting a vol-… or snap-… id");
    if (!(st = cli_vol_open(g, false, &kms, "Status")))
        return CLI_EXIT_SERVICE;
    if (owner_lineage(st, id, lineage, sizeof lineage)) {
        char msg[128];
        snprintf(msg, sizeof msg, "The %s '%s' does not exist.", id[0] == 'v' ? "volume" : "snapshot", id);
        rc = cli_service_error(id[0] == 'v' ? "InvalidVolume.NotFound" : "InvalidSnapshot.NotFound", "Status", msg);
        goto out;
    }
    if (vol_lineage_of(st, lineage, &l, &e)) {
        rc = cli_service_error(e.code, "Status", e.message);
        goto out;
    }
    kl.st = st;
    kl.arr = json_array();
    if ((rc = vol_rekey_status_of(vol_store_catalog(st), id, l.binding, &s)) ||
        (s.foreign && (rc = vol_store_catalog(st)->ops->source_list(vol_store_catalog(st), id, add_source_key, &kl)))) {
        json_decref(kl.arr);
        vol_lineage_clear(&l);
        rc = cli_service_error("InternalError", "Status", strerror(-rc));
        goto out;
    }
    o = json_pack("{s:s, s:s, s:I, s:I, s:s, s:o}", id[0] == 'v' ? "VolumeId" : "SnapshotId", id, "KmsKeyId", l.key_arn,
                  "Blocks", (json_int_t)s.blocks, "BlocksOnOtherKeys", (json_int_t)s.foreign, "RekeyState",
                  s.foreign ? "pending" : "completed", "SourceKmsKeyIds", kl.arr);
    vol_lineage_clear(&l);
    rc = cli_vol_print(g, WHO, o);
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

/* lookup-events / validate-audit: `kms lookup-audit` / `kms validate-audit` on the trail the EC2 records of
 * the same options go to (cli_ec2_audit.c): the key store's with embedded keys, else the volume store's own
 * (created on first use, so a trail with nothing in it yet reads as empty). Flags as for those verbs. */
static int trail_verb(cli_vol *g, const char *kms_verb)
{
    bool keystore = cli_ec2_trail_is_keystore(g);
    char *dir = cli_ec2_trail_dir(g), *rk = NULL;
    char **argv = calloc((size_t)g->nrest + 12, sizeof *argv);
    int n = 0, rc = 1;
    if (!dir || !argv || (!keystore && asprintf(&rk, "%s/root.key", dir) < 0))
        goto out;
    if (!keystore) {
        kms_core *core = cli_ec2_trail_open(g, NULL);
        if (!core) {
            rc = CLI_EXIT_SERVICE;
            goto out;
        }
        kms_core_free(core);
    }
    argv[n++] = (char *)"kms";
    argv[n++] = (char *)(keystore && g->k.url ? "--kms" : "--store");
    argv[n++] = keystore && g->k.url ? (char *)g->k.url : dir;
    if (!keystore || g->k.root_key_file) { /* (the trail's own key: not one ENVELOPEFS_ROOT_KEY_FILE names) */
        argv[n++] = (char *)"--root-key-file";
        argv[n++] = keystore ? (char *)g->k.root_key_file : rk;
    }
    if (keystore && g->k.passphrase_file) {
        argv[n++] = (char *)"--passphrase-file";
        argv[n++] = (char *)g->k.passphrase_file;
    }
    argv[n++] = (char *)kms_verb;
    for (int i = 1; i < g->nrest; i++)
        argv[n++] = g->rest[i];
    rc = cmd_kms(n, argv);
out:
    free(argv);
    free(rk);
    free(dir);
    return rc;
}

static bool wants_signature(const cli_vol *g)
{
    for (int i = 1; i < g->nrest; i++)
        if (!strcmp(g->rest[i], "--verify-signature"))
            return true;
    return false;
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
    else if (!strcmp(g.rest[0], "fsck") && wants_signature(&g))
        rc = cli_volume_verify(&g);
    else if (!strcmp(g.rest[0], "fsck"))
        rc = fsck(&g);
    else if (!strcmp(g.rest[0], "sign"))
        rc = cli_volume_sign(&g);
    else if (!strcmp(g.rest[0], "set-signing-key"))
        rc = cli_volume_set_signing_key(&g);
    else if (!strcmp(g.rest[0], "rekey"))
        rc = rekey(&g);
    else if (!strcmp(g.rest[0], "status"))
        rc = status(&g);
    else if (!strcmp(g.rest[0], "sweep"))
        rc = sweep(&g);
    else if (!strcmp(g.rest[0], "lookup-events"))
        rc = trail_verb(&g, "lookup-audit");
    else if (!strcmp(g.rest[0], "validate-audit"))
        rc = trail_verb(&g, "validate-audit");
    else {
        fprintf(stderr, WHO ": unknown verb '%s'\n", g.rest[0]);
        rc = usage(stderr, CLI_EXIT_USAGE);
    }
out:
    cli_vol_done(&g);
    return rc;
}
