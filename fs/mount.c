/*
 * mount.c — `envelopefs mount`: efs_mount_run. Process-wide setup (malloc tuning, descriptor and core-dump
 * limits, the umask) apart from one FUSE session's (the directory mount's state, the session and its custom
 * I/O, io_uring, keys, spares, the request loop), so that one process could serve several sessions.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/daemon.h"
#include "common/log.h"
#include "loop.h"
#include "mountfs.h"

/* ---- process-wide: once per process, whatever sessions it serves ---------------------------- */

/* Request buffers are up to ~1 MiB: keep them on the heap instead of an mmap/munmap (and page faults)
 * per request, which glibc does above its default 128 KiB threshold. */
static void process_tune_malloc(void)
{
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    /* Keep freed request buffers (≈1 MiB each) instead of returning them to the kernel after every
     * request: trimming made each write fault its output buffer in again (4 % of a streaming write). */
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    mallopt(M_ARENA_MAX, 2); /* workers share two heaps: freed buffers are reused across threads */
}

/* One O_PATH descriptor per inode the kernel knows (as in libfuse's passthrough_ll): raise the descriptor
 * limit — as root up to the kernel's nr_open, otherwise to the hard limit. */
static void process_raise_nofile(void)
{
    struct rlimit nofile;
    FILE *f = fopen("/proc/sys/fs/nr_open", "re");
    unsigned long nr_open = 0;
    if (f) {
        if (fscanf(f, "%lu", &nr_open) != 1)
            nr_open = 0;
        fclose(f);
    }
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
        struct rlimit want = nofile;
        if (nr_open > want.rlim_max)
            want.rlim_max = (rlim_t)nr_open;
        want.rlim_cur = want.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &want)) {
            nofile.rlim_cur = nofile.rlim_max;
            (void)setrlimit(RLIMIT_NOFILE, &nofile);
        }
    }
}

/* The daemon holds keys: no core dumps. (PR_SET_DUMPABLE 0 would also forbid the /proc/self/fd magic
 * links this daemon resolves for chmod/utimens/xattrs.) */
static void process_no_core_dumps(void)
{
    struct rlimit rl = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &rl);
}

/* Modes arrive with the caller's umask applied: create exactly what is asked. (After the key service is
 * open: its own files keep the process's umask.) */
static void process_serving_umask(void) { umask(0); }

/* Worker threads for the request loop and the leader's spin. Each thread holds a ~1 MiB receive buffer
 * once it has served a large write (whole blocks are sealed in place; reads and partial blocks use
 * short-lived buffers): twice the CPUs (4 to 16) bounds the daemon's memory and still overlaps I/O. A
 * client sending one request at a time is served by one thread (loop.c). Spinning for the next request pays
 * off only with a CPU for the client besides the daemon's leader; ENVELOPEFS_SPIN_US overrides (0 turns it
 * off). The leader serves small READs itself without blocking (loop.h efs_loop_run_nowait_reads);
 * ENVELOPEFS_NOWAIT_READS=0 restores the hand-off of every READ queued behind others (an A/B switch). */
static void process_loop_params(unsigned *workers, unsigned *spin_us, bool *nowait_reads)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const char *sp = getenv("ENVELOPEFS_SPIN_US"), *nw = getenv("ENVELOPEFS_NOWAIT_READS");
    *workers = cpus < 2 ? 4 : cpus > 8 ? 16 : (unsigned)(2 * cpus);
    *spin_us = sp ? (unsigned)strtoul(sp, NULL, 10) : cpus >= 2 ? 20 : 0;
    *nowait_reads = !nw || strcmp(nw, "0") != 0;
}

/* ---- one session ------------------------------------------------------------------------------ */

/* Raise the kernel's readahead for this mount's bdi to `kb` (best effort, root only). The default
 * 128 KiB window makes sequential reads arrive as 128 KiB requests; 1 MiB requests halve the per-byte
 * cost of a streaming read. The bdi is found through /proc/self/mountinfo (no request to ourselves). */
static void set_readahead(const char *mountpoint, unsigned kb)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[8192], dev[32] = "", path[96];
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        char mdev[32], mnt[4096], un[4096];
        size_t j = 0;
        if (sscanf(line, "%*s %*s %31s %*s %4095s", mdev, mnt) != 2)
            continue;
        for (size_t i = 0; mnt[i] && j + 1 < sizeof un; i++) { /* mountinfo escapes space, tab, \n, \\ */
            if (mnt[i] == '\\' && mnt[i + 1] >= '0' && mnt[i + 1] <= '3' && mnt[i + 2] && mnt[i + 3]) {
                un[j++] = (char)((mnt[i + 1] - '0') * 64 + (mnt[i + 2] - '0') * 8 + (mnt[i + 3] - '0'));
                i += 3;
            } else {
                un[j++] = mnt[i];
            }
        }
        un[j] = 0;
        if (!strcmp(un, mountpoint))
            snprintf(dev, sizeof dev, "%s", mdev); /* the last match is the topmost mount */
    }
    fclose(f);
    if (!dev[0])
        return;
    snprintf(path, sizeof path, "/sys/class/bdi/%s/read_ahead_kb", dev);
    f = fopen(path, "we");
    if (!f)
        return;
    if (fprintf(f, "%u\n", kb) < 0)
        EFS_DEBUG("cannot set %s", path);
    fclose(f);
}

/* May a WRITE be queued that no worker has read yet? Over io_uring the kernel's queues cannot be looked
 * into, and WRITEs reach the ring threads of both CPUs in any order: always. (content.c, gap waits) */
static bool requests_queued(void *arg)
{
    struct efs *fs = arg;
    return fs->se && (fs->uring || efs_loop_requests_queued(fs->se));
}

/* Inode descriptors allowed before idle ones are evicted: the rest of the limit for handles, directories
 * and the key store. */
static long fd_budget(void)
{
    struct rlimit nofile;
    long lim = getrlimit(RLIMIT_NOFILE, &nofile) == 0 ? (long)nofile.rlim_cur : 1024, budget;
    const char *env = getenv("ENVELOPEFS_FD_BUDGET"); /* tests set it low to exercise eviction */
    budget = lim > 4096 ? lim - 1024 : lim / 2;
    if (env && atol(env) >= 16 && atol(env) < budget)
        budget = atol(env);
    return budget;
}

/* The directory mount's state for cipherdir, before any session: NULL on failure (printed). */
static struct efs *fs_new(const efs_mount_opts *o, const efs_config *cfg)
{
    struct efs *fs = calloc(1, sizeof *fs);
    struct stat rst;
    int fd;
    if (!fs)
        return NULL;
    pthread_mutex_init(&fs->table_lock, NULL);
    fs->io = efs_fuseio_new();
    if (!fs->io || efs_content_group_new(requests_queued, fs, &fs->writes)) {
        efs_fuseio_free(fs->io);
        pthread_mutex_destroy(&fs->table_lock);
        free(fs);
        return NULL;
    }
    fs->cfg = cfg;
    fs->timeout = 1.0;
    efs_inode_init(&fs->root);
    fs->root.nlookup = 2;
    fs->root.type = S_IFDIR;
    fd = open(o->cipherdir, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "envelopefs: cannot open %s: %s\n", o->cipherdir, strerror(errno));
        efs_content_group_free(fs->writes);
        efs_fuseio_free(fs->io);
        pthread_mutex_destroy(&fs->table_lock);
        free(fs);
        return NULL;
    }
    fs->root.fd = fd;
    if (fstat(fd, &rst) == 0) /* (the root is not in the table; its dev serves readdirplus_known) */
        fs->root.dev = rst.st_dev, fs->root.ino = rst.st_ino;
    fs->mount_fd = open(o->cipherdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fs;
}

/* Free every remaining inode (keys wiped), the descriptors, spares, keys: after the session is gone. */
static void fs_free(struct efs *fs)
{
    efs_closer_free(fs->closer); /* removed files' last descriptors closed, before the backing root is let go */
    for (size_t b = 0; b < HASH_BUCKETS; b++) {
        struct inode *in = fs->table[b];
        while (in) {
            struct inode *next = in->next;
            efs_inode_destroy(in);
            in = next;
        }
    }
    close(fs->root.fd);
    if (fs->mount_fd >= 0)
        close(fs->mount_fd);
    efs_spares_free(fs->spares); /* before the keys it uses */
    efs_keys_free(fs->keys);
    efs_content_group_free(fs->writes);
    efs_fuseio_free(fs->io);
    pthread_mutex_destroy(&fs->table_lock);
    free(fs);
}

/* A FUSE session for fs mounted on o->mountpoint, its signal handlers set (libfuse's are process-wide:
 * they end the session that set them), its readahead raised, its custom I/O attached (with io_uring when
 * wanted) before any request is read. NULL on failure (printed; nothing left mounted). */
static struct fuse_session *session_start(struct efs *fs, const efs_mount_opts *o, struct fuse_args *args)
{
    struct fuse_session *se;
    char opt[8192];
    snprintf(opt, sizeof opt, "-ofsname=envelopefs:%s,subtype=envelopefs,default_permissions%s%s", o->cipherdir,
             o->fuse_opts ? "," : "", o->fuse_opts ? o->fuse_opts : "");
    if (fuse_opt_add_arg(args, "envelopefs") || fuse_opt_add_arg(args, opt) || (o->debug && fuse_opt_add_arg(args, "-d")))
        return NULL;
    se = fuse_session_new(args, &efs_fs_ops, sizeof efs_fs_ops, fs);
    if (!se) {
        fprintf(stderr, "envelopefs: cannot create the FUSE session (bad -o options?)\n");
        return NULL;
    }
    if (fuse_set_signal_handlers(se)) {
        fuse_session_destroy(se);
        return NULL;
    }
    if (fuse_session_mount(se, o->mountpoint)) {
        fprintf(stderr, "envelopefs: cannot mount on %s\n", o->mountpoint);
        goto fail;
    }
    fs->se = se;
    set_readahead(o->mountpoint, IO_CHUNK / 1024);
    /* FUSE over io_uring, when asked for and allowed: offered in the INIT reply (fuseio.c), started once
     * that is written. Requests carry up to max_write (IO_CHUNK) bytes. */
    if (efs_uring_wanted() && !(fs->uring = efs_uring_new(se, fuse_session_fd(se), IO_CHUNK + 4096)))
        EFS_WARN("FUSE over io_uring: out of memory; serving over /dev/fuse");
    /* Before any request is read: the INIT exchange goes through it. */
    if (efs_fuseio_attach(fs->io, se, fs->uring)) {
        fprintf(stderr, "envelopefs: cannot attach the FUSE I/O layer\n");
        fuse_session_unmount(se);
        goto fail;
    }
    return se;
fail:
    fs->se = NULL;
    efs_fuseio_drop_uring(fs->io);
    efs_uring_free(fs->uring);
    fs->uring = NULL;
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return NULL;
}

/* Descriptors of removed files waiting for the closer threads, at most (closer.c): beyond the fd budget. */
#define CLOSER_QUEUE 128
/* The closer threads: a close can wait for the device (ext4 mounted with -o discard issues each file's discards
 * inside it, docs/PERFORMANCE.md), so several closes overlap; idle threads cost nothing. */
#define CLOSER_THREADS 4

/* The key service (opened in the serving process), the filesystem keys, the spares and the closer. 0, or 1
 * (logged). */
static int session_keys(struct efs *fs, const efs_mount_opts *o, const efs_config *cfg)
{
    char why[512];
    const char *sp = getenv("ENVELOPEFS_SPARES"); /* 0: no spare files (benchmarks compare) */
    const char *cl = getenv("ENVELOPEFS_CLOSER"); /* 0: removed files closed inside their UNLINK (to compare) */
    kmsc *kms = o->open_kms(o->open_kms_arg);
    int krc;
    if (!kms) {
        EFS_ERROR("cannot open the key service; unmounting %s", o->mountpoint);
        return 1;
    }
    krc = efs_keys_open(cfg, kms, &fs->keys, why, sizeof why);
    if (krc) {
        EFS_ERROR("%s; unmounting %s", why, o->mountpoint);
        kmsc_free(kms);
        return 1;
    }
    fs->names = efs_keys_names(fs->keys);
    if (efs_keys_set_cipherdir(fs->keys, o->cipherdir))
        return 1;
    process_serving_umask();
    if ((!sp || strcmp(sp, "0")) && efs_spares_new(fs->root.fd, fs->keys, cfg, &fs->spares))
        return 1;
    /* (here, after the daemon's fork: a thread) */
    if ((!cl || strcmp(cl, "0")) && efs_closer_new(CLOSER_QUEUE, CLOSER_THREADS, &fs->closer))
        EFS_WARN("no closer threads: removed files are closed inside their UNLINK");
    return 0;
}

int efs_mount_run(const efs_mount_opts *o, const efs_config *cfg)
{
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    struct fuse_session *se;
    struct efs *fs;
    int rc = 1, ready_fd = -1;

    process_tune_malloc();
    fs = fs_new(o, cfg);
    if (!fs)
        return 1;
    se = session_start(fs, o, &args);
    if (!se)
        goto out;
    /* The parent (`envelopefs mount`) waits until the keys are loaded and the spares cleared, so the
     * mount is serving when it returns, and until then errors go to the user's terminal. */
    if (!o->foreground && (ready_fd = efs_daemon_start()) < 0) {
        fprintf(stderr, "envelopefs: cannot go to the background: %s\n", strerror(-ready_fd));
        goto out_unmount;
    }
    process_raise_nofile();
    fs->fd_budget = fd_budget();
    process_no_core_dumps();
    if (session_keys(fs, o, cfg))
        goto out_unmount;
    if (ready_fd >= 0) {
        efs_log_init("envelopefs", true, EFS_LOG_INFO);
        efs_daemon_ready(ready_fd);
    }
    EFS_INFO("mounted %s on %s (key %s)", o->cipherdir, o->mountpoint, cfg->key_id);
    {
        unsigned workers, spin_us;
        bool nowait_reads;
        process_loop_params(&workers, &spin_us, &nowait_reads);
        if (nowait_reads) /* op_read says when it would block (nowait.h) */
            rc = efs_loop_run_nowait_reads(se, workers, spin_us, &fs->loop) ? 1 : 0;
        else
            rc = efs_loop_run(se, workers, spin_us, &fs->loop) ? 1 : 0;
    }
    fuse_session_unmount(se);
    EFS_INFO("unmounted %s", o->mountpoint);
    goto out_session;
out_unmount:
    fuse_session_unmount(se);
out_session:
    fuse_remove_signal_handlers(se);
    /* The connection is gone: the ring threads have left or are told to; none may still be serving when
     * the session and the inodes go. */
    efs_fuseio_drop_uring(fs->io);
    efs_uring_free(fs->uring);
    fs->uring = NULL;
    fuse_session_destroy(se);
out:
    fuse_opt_free_args(&args);
    fs_free(fs);
    return rc;
}
