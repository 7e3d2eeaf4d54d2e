/*
 * cmd_fs.c — the filesystem subcommands: `envelopefs init`, `mount`, `unmount`, `fsck`.
 * Argument parsing and key-service setup live here; the filesystem itself is in fs/.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <sodium.h>

#include "cli_common.h"
#include "commands.h"
#include "efs.h"
#include "common/log.h"

enum { OPT_DEK_XATTR = 1000, OPT_BUCKET, OPT_PLAIN_NAMES, OPT_BLOCK, OPT_KEY_ID };

/* Take the key-service options (cli_take_kms_options) out of argv before getopt sees the rest; 0, or 2
 * after saying which option lacks its value. */
static int take_kms_options(const char *cmd, int *argc, char **argv, cli_kms_opts *k)
{
    const char *bad = cli_take_kms_options(argc, argv, k);
    if (!bad)
        return 0;
    fprintf(stderr, "envelopefs %s: %s needs a value\n", cmd, bad);
    return 2;
}

static bool dir_is_empty(const char *path, int *err)
{
    DIR *d = opendir(path);
    struct dirent *e;
    bool empty = true;
    if (!d) {
        *err = errno;
        return false;
    }
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            empty = false;
            break;
        }
    closedir(d);
    *err = 0;
    return empty;
}

static void init_usage(FILE *f)
{
    fprintf(f, "usage: envelopefs init CIPHERDIR --kms-key-id KEY [--kms URL] [--dek-in-xattr] [--bucket-key]\n"
               "                      [--plaintext-names] [--block-size N] [--store DIR] [--root-key-file F]\n"
               "                      [--passphrase-file F]\n"
               "Writes CIPHERDIR/envelopefs.conf for a new encrypted directory whose files get data keys from KEY.\n"
               "  --kms URL          key service (default: local:<store>, the embedded key service; http(s)://HOST:PORT,\n"
               "                     unix:/SOCKET for `kms serve --unix`, by uid without credentials)\n"
               "  --dek-in-xattr     keep each file's header (wrapped data key) in an xattr, not in the file\n"
               "  --bucket-key       one intermediate key per mount wraps per-file keys locally (fewer KMS calls)\n"
               "  --plaintext-names  keep file and directory names in the clear (default: encrypted)\n"
               "  --block-size N     plaintext block size, a power of two from 512 to 1048576 (default 4096)\n");
}

int cmd_init(int argc, char **argv)
{
    static const struct option long_opts[] = {
        {"kms-key-id", required_argument, NULL, OPT_KEY_ID}, {"dek-in-xattr", no_argument, NULL, OPT_DEK_XATTR},
        {"bucket-key", no_argument, NULL, OPT_BUCKET}, {"plaintext-names", no_argument, NULL, OPT_PLAIN_NAMES},
        {"block-size", required_argument, NULL, OPT_BLOCK}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    cli_kms_opts k = {0};
    efs_config cfg;
    const char *key_id = NULL;
    char dir[PATH_MAX], why[512], *url;
    kmsc *kms;
    int c, err, rc;
    long bs = 4096;

    memset(&cfg, 0, sizeof cfg);
    if ((rc = take_kms_options("init", &argc, argv, &k)))
        return rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_KEY_ID: key_id = optarg; break;
        case OPT_DEK_XATTR: cfg.dek_in_xattr = true; break;
        case OPT_BUCKET: cfg.bucket_key = true; break;
        case OPT_PLAIN_NAMES: cfg.plaintext_names = true; break;
        case OPT_BLOCK: bs = strtol(optarg, NULL, 10); break;
        case 'h': init_usage(stdout); return 0;
        default: init_usage(stderr); return 2;
        }
    }
    if (optind != argc - 1 || !key_id) {
        init_usage(stderr);
        return 2;
    }
    if (bs < 512 || bs > (1 << 20) || (bs & (bs - 1))) {
        fprintf(stderr, "envelopefs init: --block-size must be a power of two from 512 to 1048576\n");
        return 2;
    }
    if (!realpath(argv[optind], dir)) {
        fprintf(stderr, "envelopefs init: %s: %s\n", argv[optind], strerror(errno));
        return 1;
    }
    if (!dir_is_empty(dir, &err)) {
        fprintf(stderr, "envelopefs init: %s: %s\n", dir, err ? strerror(err) : "directory is not empty (refusing to init)");
        return 1;
    }
    url = cli_kms_url(&k);
    kms = url ? cli_open_kms(&k, url) : NULL;
    if (!kms) {
        free(url);
        return 1;
    }
    cfg.format = EFS_CONFIG_FORMAT;
    /* Directory ids go in an xattr of each backing directory (read with its inode: no extra disk read
     * per directory) where the backing filesystem has user xattrs, else in a file inside it. */
    if (!setxattr(dir, "user.envelopefs.probe", "1", 1, 0)) {
        cfg.dirids_in_xattr = true;
        (void)removexattr(dir, "user.envelopefs.probe");
    }
    randombytes_buf(cfg.fs_id, EFS_FS_ID_LEN);
    sodium_bin2hex(cfg.fs_id_hex, sizeof cfg.fs_id_hex, cfg.fs_id, EFS_FS_ID_LEN);
    cfg.kms_url = url;
    cfg.key_id = strdup(key_id);
    cfg.block_size = (uint32_t)bs;
    rc = efs_keys_init_config(&cfg, kms, why, sizeof why);
    kmsc_free(kms);
    if (rc) {
        fprintf(stderr, "envelopefs init: %s\n", why);
        efs_config_clear(&cfg);
        return 1;
    }
    rc = efs_config_store(dir, &cfg);
    if (rc) {
        fprintf(stderr, "envelopefs init: cannot write %s/%s: %s\n", dir, EFS_CONFIG_NAME, strerror(-rc));
        efs_config_clear(&cfg);
        return 1;
    }
    printf("{\n    \"CipherDir\": \"%s\",\n    \"FilesystemId\": \"%s\",\n    \"KeyId\": \"%s\",\n    \"Kms\": \"%s\",\n"
           "    \"DekLocation\": \"%s\",\n    \"BucketKey\": %s,\n    \"BlockSize\": %u\n}\n",
           dir, cfg.fs_id_hex, cfg.key_id, cfg.kms_url, cfg.dek_in_xattr ? "xattr" : "header",
           cfg.bucket_key ? "true" : "false", cfg.block_size);
    efs_config_clear(&cfg);
    return 0;
}

struct open_ctx {
    cli_kms_opts k;
    const char *url;
};

static kmsc *reopen_kms(void *arg)
{
    struct open_ctx *o = arg;
    return cli_open_kms(&o->k, o->url);
}

static int load_and_verify(const char *dir, efs_config *cfg, struct open_ctx *oc, efs_keys **keys_out)
{
    const char *why = NULL;
    char buf[512];
    kmsc *kms;
    int rc = efs_config_load(dir, cfg, &why);
    if (rc) {
        fprintf(stderr, "envelopefs: %s/%s: %s\n", dir, EFS_CONFIG_NAME, why ? why : strerror(-rc));
        return 1;
    }
    if (!oc->url)
        oc->url = cfg->kms_url;
    kms = cli_open_kms(&oc->k, oc->url);
    if (!kms)
        return 1;
    rc = efs_keys_open(cfg, kms, keys_out, buf, sizeof buf);
    if (rc) {
        fprintf(stderr, "envelopefs: %s\n", buf);
        kmsc_free(kms);
        return 1;
    }
    return efs_keys_set_cipherdir(*keys_out, dir) ? 1 : 0;
}

static void mount_usage(FILE *f)
{
    fprintf(f, "usage: envelopefs mount CIPHERDIR MOUNTPOINT [-f] [-d] [-o opt[,opt...]] [--kms URL]\n"
               "                       [--store DIR] [--root-key-file F] [--passphrase-file F]\n"
               "Mounts the encrypted directory; runs in the background unless -f. Unmount with\n"
               "`envelopefs unmount MOUNTPOINT` or `fusermount3 -u MOUNTPOINT`.\n"
               "  -o allow_other,ro,...   FUSE mount options (default_permissions is always on)\n");
}

int cmd_mount(int argc, char **argv)
{
    static const struct option long_opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    struct open_ctx oc;
    efs_mount_opts mo;
    efs_config cfg = {0};
    efs_keys *keys = NULL;
    char dir[PATH_MAX], mnt[PATH_MAX];
    int c, rc;

    memset(&oc, 0, sizeof oc);
    memset(&mo, 0, sizeof mo);
    if ((rc = take_kms_options("mount", &argc, argv, &oc.k)))
        return rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hfdo:", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f': mo.foreground = true; break;
        case 'd': mo.debug = mo.foreground = true; break;
        case 'o': mo.fuse_opts = optarg; break;
        case 'h': mount_usage(stdout); return 0;
        default: mount_usage(stderr); return 2;
        }
    }
    oc.url = oc.k.url;
    if (optind != argc - 2) {
        mount_usage(stderr);
        return 2;
    }
    if (access("/dev/fuse", R_OK | W_OK)) {
        fprintf(stderr, "envelopefs mount: /dev/fuse is not available: %s\n", strerror(errno));
        return 1;
    }
    if (!realpath(argv[optind], dir) || !realpath(argv[optind + 1], mnt)) {
        fprintf(stderr, "envelopefs mount: %s\n", strerror(errno));
        return 1;
    }
    efs_log_init("envelopefs", false, EFS_LOG_WARN);
    /* Check everything where the user can see the errors, then let the daemon reopen it. */
    if (load_and_verify(dir, &cfg, &oc, &keys)) {
        efs_config_clear(&cfg);
        return 1;
    }
    efs_keys_free(keys);
    mo.cipherdir = dir;
    mo.mountpoint = mnt;
    mo.open_kms = reopen_kms;
    mo.open_kms_arg = &oc;
    rc = efs_mount_run(&mo, &cfg);
    efs_config_clear(&cfg);
    return rc;
}

/* The stats xattr of a mount names its daemon's pid. Read on a thread with a deadline: a hung daemon
 * must not hang `unmount` (the probe and its thread are then left behind, and end with the process). */
struct pid_probe {
    char *mnt;
    char buf[8192]; /* the whole stats JSON (fs/xattrs.c answers from a 4 KiB buffer): a shorter one gets ERANGE */
    ssize_t n;
};

static void *probe_pid(void *arg)
{
    struct pid_probe *p = arg;
    p->n = getxattr(p->mnt, EFS_XATTR_STATS, p->buf, sizeof p->buf - 1);
    return NULL;
}

static pid_t daemon_pid(const char *mnt)
{
    struct pid_probe *p = calloc(1, sizeof *p);
    struct timespec deadline;
    pthread_t t;
    const char *f;
    pid_t pid = 0;
    if (!p || !(p->mnt = strdup(mnt)) || pthread_create(&t, NULL, probe_pid, p)) {
        if (p)
            free(p->mnt);
        free(p);
        return 0;
    }
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 2;
    if (pthread_timedjoin_np(t, NULL, &deadline)) {
        pthread_detach(t);
        return 0;
    }
    if (p->n > 0) {
        p->buf[p->n] = 0;
        if ((f = strstr(p->buf, "\"pid\":")))
            pid = (pid_t)strtol(f + 6, NULL, 10);
    }
    free(p->mnt);
    free(p);
    return pid;
}

/* Field 22 of /proc/PID/stat (start time): tells a process from a later one that reuses its pid. 0 if
 * gone or a zombie (its parent, often init, may take its time to reap it; its work is over). */
static unsigned long long start_time(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long t = 0;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    if (!(f = fopen(path, "re")))
        return 0;
    if (fgets(buf, sizeof buf, f) && (p = strrchr(buf, ')')) && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X') {
        /* after ") " come fields 3.. ; the start time is field 22 */
        for (int field = 2; p && field < 22; field++)
            p = strchr(p + 1, ' ');
        if (p)
            t = strtoull(p + 1, NULL, 10);
    }
    fclose(f);
    return t;
}

/* Unmount, then wait (up to a minute) until the daemon has finished its own cleanup — spare files
 * removed, key service closed, audit flushed — so that what follows sees a quiet CIPHERDIR. */
int cmd_unmount(int argc, char **argv)
{
    pid_t pid, dpid;
    unsigned long long started = 0;
    int status, rc = 1;
    if (argc != 2) {
        fprintf(stderr, "usage: envelopefs unmount MOUNTPOINT\n");
        return 2;
    }
    dpid = daemon_pid(argv[1]);
    if (dpid > 0)
        started = start_time(dpid);
    pid = fork();
    if (pid == 0) {
        execlp("fusermount3", "fusermount3", "-u", argv[1], (char *)NULL);
        _exit(127);
    }
    if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        rc = 0;
    else if (umount2(argv[1], 0) == 0)
        rc = 0;
    if (rc) {
        fprintf(stderr, "envelopefs unmount: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    for (int i = 0; started && i < 3000 && start_time(dpid) == started; i++) {
        struct timespec ms20 = {0, 20 * 1000 * 1000};
        nanosleep(&ms20, NULL);
    }
    if (started && start_time(dpid) == started)
        fprintf(stderr, "envelopefs unmount: %s is unmounted; its daemon (pid %ld) is still finishing\n", argv[1],
                (long)dpid);
    return 0;
}

int cmd_fsck(int argc, char **argv)
{
    static const struct option long_opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    struct open_ctx oc;
    efs_config cfg = {0};
    efs_keys *keys = NULL;
    char dir[PATH_MAX];
    int c, rc;

    memset(&oc, 0, sizeof oc);
    if ((rc = take_kms_options("fsck", &argc, argv, &oc.k)))
        return rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        if (c == 'h') {
            printf("usage: envelopefs fsck CIPHERDIR [--kms URL] [--store DIR] [--root-key-file F]\n"
                   "Checks every header and block; names each damaged file and block; exits 1 if any.\n");
            return 0;
        }
        return 2;
    }
    oc.url = oc.k.url;
    if (optind != argc - 1) {
        fprintf(stderr, "usage: envelopefs fsck CIPHERDIR\n");
        return 2;
    }
    if (!realpath(argv[optind], dir)) {
        fprintf(stderr, "envelopefs fsck: %s: %s\n", argv[optind], strerror(errno));
        return 2;
    }
    efs_log_init("envelopefs", false, EFS_LOG_ERROR);
    if (load_and_verify(dir, &cfg, &oc, &keys)) {
        efs_config_clear(&cfg);
        return 2;
    }
    rc = efs_fsck(dir, keys, stdout);
    efs_keys_free(keys);
    efs_config_clear(&cfg);
    return rc < 0 ? 2 : rc;
}
