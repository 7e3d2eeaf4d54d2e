/*
 * spares.c — spare files with durable headers, ready to become new files.
 *
 * A new file's header (its wrapped DEK) must be durable before any of its data can be: otherwise a power
 * loss could leave data that no key opens. Doing that at create time costs an fdatasync inside every
 * create request: an untar spent half its time there. Instead, a filler thread prepares spares in
 * EFS_SPARES_DIR — a fresh DEK from the key service, a header, a file — and makes a whole batch durable
 * together (on a journalling filesystem, one commit). A create then renames a spare into place
 * (RENAME_NOREPLACE, so O_EXCL semantics hold) and sets its mode: the header was durable before the name
 * existed, so it is durable before any data. With encrypted names the same is done for directories: a
 * spare directory holds its durable directory id (names.c), so mkdir is a rename instead of two fsyncs.
 *
 * Bounds: the pool fills only while files are being created (a take in the last SPARE_MAX_AGE seconds)
 * and spares older than that are discarded, so an idle mount holds none and costs no key-service calls,
 * and a create can use a data key generated at most SPARE_MAX_AGE seconds earlier (a CMK disabled
 * meanwhile stops creates once the pool drains: at most SPARE_MAX_AGE seconds later). When the key service
 * refuses, the filler stops until the next take; creates then take the synchronous path and report the
 * refusal.
 */
#include "spares.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "efs.h"
#include "headerio.h"
#include "names.h"
#include "common/secpool.h"
#include "common/log.h"
#include "common/monotime.h"

#define SPARE_BATCH 192    /* at most this many spares made durable together */
#define SPARE_MIN_BATCH 16 /* and, while files are being created, at least this many; fewer ready: refill now */
#define SPARE_MAX 384      /* at most this many ready */
#define SPARE_MAX_AGE 2.0  /* seconds: demand window and the oldest spare handed out */
#define FILL_CYCLE 0.1     /* seconds: at most one durability round this often while the pools are not low */
#define FILL_AHEAD 0.3     /* each round fills the pool for this long at the recent create rate */
#define SYNC_THREADS 8     /* concurrent fsyncs per batch */
#define DIR_BATCH 64       /* spare directories (encrypted names: each holds its durable directory id) */
#define DIR_MIN_BATCH 8
#define DIR_MAX 128

/* What both kinds of spare begin with: all the pool code looks at. */
struct item {
    char name[32];
    int fd;       /* the file (O_RDWR) or directory (O_RDONLY) */
    double born;
};

struct spare {
    struct item it;
    efs_header h;
    efs_file_keys *fk; /* locked memory (common/secpool.c) */
};

struct spare_dir {
    struct item it;
    int id_fd; /* its id file, until the batch is durable */
};

/* One pool (spare files or spare directories) and the demand for it. Fields under the spares' lock. */
struct pool {
    char *items;           /* `cap` items of `size` bytes, the `n` ready ones first, oldest first */
    size_t size;
    int n, cap, min_batch, batch;
    int low;               /* refill before FILL_CYCLE is over when fewer are ready (rate-dependent) */
    double last_take;
    unsigned takes;        /* since the last round */
    uint64_t taken;        /* creates (mkdirs) served */
    void (*discard)(efs_spares *s, void *item);
    const char *what;      /* for log lines */
    bool uses_kms;         /* made with a key-service call, whose refusals the creates report */
};

struct efs_spares {
    int dir_fd;
    bool with_dirs;        /* encrypted names: directories need ids, so spare directories are made too */
    efs_keys *keys;
    const efs_config *cfg;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct spare ready[SPARE_MAX];
    struct spare_dir dready[DIR_MAX];
    struct pool files, dirs;
    double last_fill;      /* when the last round started */
    unsigned long counter;
    bool unusable;         /* the backing filesystem cannot rename them into place */
    bool stop;
    /* Sync helpers: a batch's fsyncs run concurrently, so the block layer merges their cache flushes
     * (one or two device flushes per batch instead of one per spare). */
    pthread_t syncer[SYNC_THREADS];
    int nsyncers;
    pthread_mutex_t sync_lock;
    pthread_cond_t sync_go, sync_done;
    int sync_fds[SPARE_BATCH + 2 * DIR_BATCH];
    int sync_n, sync_next, sync_left, sync_err;
    bool sync_stop;
};

static void spare_discard(efs_spares *s, void *item)
{
    struct spare *sp = item;
    (void)unlinkat(s->dir_fd, sp->it.name, 0);
    close(sp->it.fd);
    efs_secpool_free(sp->fk, sizeof *sp->fk);
    sodium_memzero(sp, sizeof *sp);
}

/* Make one spare (not yet durable). 0, or -errno (key-service refusals included). */
static int spare_make(efs_spares *s, struct spare *sp)
{
    int rc;
    memset(sp, 0, sizeof *sp);
    sp->it.fd = -1;
    sp->fk = efs_secpool_alloc(sizeof *sp->fk);
    if (!sp->fk)
        return -ENOMEM;
    rc = efs_keys_new_file(s->keys, &sp->h, sp->fk); /* the key service first: a refusal writes nothing */
    if (rc)
        goto fail;
    snprintf(sp->it.name, sizeof sp->it.name, "s.%lu.%08x", ++s->counter, randombytes_random());
    sp->it.fd = openat(s->dir_fd, sp->it.name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (sp->it.fd < 0) {
        rc = -errno;
        goto fail;
    }
    rc = efs_header_store(sp->it.fd, &sp->h, s->cfg->dek_in_xattr);
    if (rc) {
        (void)unlinkat(s->dir_fd, sp->it.name, 0);
        goto fail;
    }
    return 0;
fail:
    if (sp->it.fd >= 0)
        close(sp->it.fd);
    efs_secpool_free(sp->fk, sizeof *sp->fk);
    sp->fk = NULL;
    return rc;
}

static void *syncer(void *arg)
{
    efs_spares *s = arg;
    (void)pthread_setname_np(pthread_self(), "efs-sync");
    pthread_mutex_lock(&s->sync_lock);
    while (!s->sync_stop) {
        if (s->sync_next < s->sync_n) {
            int fd = s->sync_fds[s->sync_next++], rc;
            pthread_mutex_unlock(&s->sync_lock);
            rc = fsync(fd) ? -errno : 0; /* fsync: a directory's id xattr is metadata */
            pthread_mutex_lock(&s->sync_lock);
            if (rc && !s->sync_err)
                s->sync_err = rc;
            if (--s->sync_left == 0)
                pthread_cond_signal(&s->sync_done);
        } else {
            pthread_cond_wait(&s->sync_go, &s->sync_lock);
        }
    }
    pthread_mutex_unlock(&s->sync_lock);
    return NULL;
}

/* fsync every descriptor (concurrently when the helpers exist). 0 or the first -errno. For a new file fsync
 * and fdatasync write the same; a new directory's id xattr needs fsync. */
static int sync_fds(efs_spares *s, const int *fds, int n)
{
    int rc = 0;
    if (!s->nsyncers) {
        for (int i = 0; i < n && !rc; i++)
            if (fsync(fds[i]))
                rc = -errno;
        return rc;
    }
    pthread_mutex_lock(&s->sync_lock);
    memcpy(s->sync_fds, fds, (size_t)n * sizeof *fds);
    s->sync_n = s->sync_left = n;
    s->sync_next = s->sync_err = 0;
    pthread_cond_broadcast(&s->sync_go);
    while (s->sync_left)
        pthread_cond_wait(&s->sync_done, &s->sync_lock);
    rc = s->sync_err;
    s->sync_n = s->sync_next = 0;
    pthread_mutex_unlock(&s->sync_lock);
    return rc;
}

static void syncers_start(efs_spares *s)
{
    pthread_attr_t a;
    pthread_mutex_init(&s->sync_lock, NULL);
    pthread_cond_init(&s->sync_go, NULL);
    pthread_cond_init(&s->sync_done, NULL);
    if (pthread_attr_init(&a))
        return;
    (void)pthread_attr_setstacksize(&a, 64 * 1024);
    while (s->nsyncers < SYNC_THREADS && !pthread_create(&s->syncer[s->nsyncers], &a, syncer, s))
        s->nsyncers++;
    pthread_attr_destroy(&a);
}

static void syncers_stop(efs_spares *s)
{
    pthread_mutex_lock(&s->sync_lock);
    s->sync_stop = true;
    pthread_cond_broadcast(&s->sync_go);
    pthread_mutex_unlock(&s->sync_lock);
    while (s->nsyncers)
        pthread_join(s->syncer[--s->nsyncers], NULL);
    pthread_cond_destroy(&s->sync_done);
    pthread_cond_destroy(&s->sync_go);
    pthread_mutex_destroy(&s->sync_lock);
}

static void dir_discard(efs_spares *s, void *item)
{
    struct spare_dir *d = item;
    (void)unlinkat(d->it.fd, EFS_DIRID_NAME, 0);
    (void)unlinkat(s->dir_fd, d->it.name, AT_REMOVEDIR);
    close(d->it.fd);
    if (d->id_fd >= 0)
        close(d->id_fd);
    memset(d, 0, sizeof *d);
}

/* Make one spare directory holding a fresh directory id (not yet durable). 0 or -errno. */
static int dir_make(efs_spares *s, struct spare_dir *d)
{
    int rc;
    memset(d, 0, sizeof *d);
    d->it.fd = d->id_fd = -1;
    snprintf(d->it.name, sizeof d->it.name, "d.%lu.%08x", ++s->counter, randombytes_random());
    if (mkdirat(s->dir_fd, d->it.name, 0700))
        return -errno;
    d->it.fd = openat(s->dir_fd, d->it.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d->it.fd < 0) {
        rc = -errno;
        (void)unlinkat(s->dir_fd, d->it.name, AT_REMOVEDIR);
        return rc;
    }
    rc = efs_dirid_write_at(d->it.fd, s->cfg->dirids_in_xattr, &d->id_fd);
    if (rc) {
        (void)unlinkat(s->dir_fd, d->it.name, AT_REMOVEDIR);
        close(d->it.fd);
        d->it.fd = -1;
    }
    return rc;
}

static struct item *item_at(const struct pool *p, int i)
{
    return (struct item *)(p->items + (size_t)i * p->size);
}

/* Is anyone asking? (a take in the last SPARE_MAX_AGE seconds) */
static bool in_demand(const struct pool *p, double now)
{
    return now - p->last_take <= SPARE_MAX_AGE;
}

/* How many to make this round: enough for FILL_AHEAD seconds at the rate of takes since the last round
 * (elapsed seconds ago), at least min_batch, within batch and the cap; 0 without demand (none in
 * demand, or no take since the last round and enough ready). lock held. */
static int want_of(const struct pool *p, double now, double elapsed)
{
    double rate = p->takes / (elapsed > FILL_CYCLE ? elapsed : FILL_CYCLE);
    int want = (int)(rate * FILL_AHEAD + 0.5) - p->n;
    if (!in_demand(p, now) || (p->takes == 0 && p->n >= p->min_batch))
        return 0;
    if (want < p->min_batch)
        want = p->n < p->min_batch ? p->min_batch : 0;
    if (want > p->cap - p->n)
        want = p->cap - p->n;
    return want > p->batch ? p->batch : want;
}

/* Is a pool short enough to refill before FILL_CYCLE is over? lock held. */
static bool pool_low(const struct pool *p, double now)
{
    return p->n < p->low && in_demand(p, now);
}

/* Start a round: the low-water mark becomes what the recent rate uses in one FILL_CYCLE (a round takes
 * about that long), and the take count starts again. lock held. */
static void round_started(struct pool *p, double elapsed)
{
    int low = (int)(p->takes / (elapsed > FILL_CYCLE ? elapsed : FILL_CYCLE) * FILL_CYCLE + 0.5);
    p->low = low < p->min_batch ? p->min_batch : low > p->cap / 2 ? p->cap / 2 : low;
    p->takes = 0;
}

/* Discard, oldest first, what is too old to hand out. lock held (dropped around each discard). */
static void pool_expire(efs_spares *s, struct pool *p, double now)
{
    union {
        struct spare f;
        struct spare_dir d;
    } old;
    while (p->n && now - item_at(p, 0)->born > SPARE_MAX_AGE) {
        memcpy(&old, p->items, p->size);
        memmove(p->items, p->items + p->size, (size_t)(p->n - 1) * p->size);
        p->n--;
        pthread_mutex_unlock(&s->lock);
        p->discard(s, &old);
        pthread_mutex_lock(&s->lock);
    }
}

/* Add what a round made (born now). lock held. */
static void pool_add(struct pool *p, void *made, int n, double now)
{
    for (int i = 0; i < n; i++)
        ((struct item *)((char *)made + (size_t)i * p->size))->born = now;
    memcpy(p->items + (size_t)p->n * p->size, made, (size_t)n * p->size);
    p->n += n;
}

/* A round failed: log why (unless the key service refused: creates will say so) and wait for the next
 * take before trying again. lock held. */
static void round_failed(struct pool *p, int rc)
{
    if (!(p->uses_kms && rc == -EACCES))
        EFS_WARN("spare %s: %s; they are made synchronously", p->what, strerror(-rc));
    p->last_take = 0;
}

/* Wait on the filler's condition for up to sec seconds (lock held). */
static void wait_for(efs_spares *s, double sec)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until); /* the condition's clock */
    until.tv_sec += (time_t)sec;
    until.tv_nsec += (long)((sec - (double)(time_t)sec) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->wake, &s->lock, &until);
}

static void *filler(void *arg)
{
    efs_spares *s = arg;
    struct spare batch[SPARE_BATCH];
    struct spare_dir dbatch[DIR_BATCH];
    int fds[SPARE_BATCH + 2 * DIR_BATCH];
    (void)pthread_setname_np(pthread_self(), "efs-spares");
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        double now = efs_mono_s();
        int want, wantd, n = 0, nd = 0, nfds = 0, rc = 0, rcd = 0;
        pool_expire(s, &s->files, now);
        pool_expire(s, &s->dirs, now);
        /* Every round costs a journal commit (or, without a journal, a write per spare plus a cache
         * flush), and frequent commits slow every other metadata change on the backing filesystem: at
         * most one round per FILL_CYCLE unless a pool runs low, each sized to the recent create rate. */
        if (now - s->last_fill < FILL_CYCLE && !pool_low(&s->files, now) && !pool_low(&s->dirs, now)) {
            wait_for(s, s->last_fill + FILL_CYCLE - now);
            continue;
        }
        want = want_of(&s->files, now, now - s->last_fill);
        wantd = want_of(&s->dirs, now, now - s->last_fill); /* no takes without encrypted names */
        if (want <= 0 && wantd <= 0) {
            wait_for(s, 1.0); /* wake up to expire spares */
            continue;
        }
        round_started(&s->files, now - s->last_fill);
        round_started(&s->dirs, now - s->last_fill);
        s->last_fill = now;
        pthread_mutex_unlock(&s->lock);
        /* The batch's data keys are audited in one key-service commit (embedded store), made before
         * any of its spares can be taken; if it fails, the whole batch is discarded below. */
        if (want > 0) {
            int brc;
            efs_keys_batch_begin(s->keys);
            while (n < want && !(rc = spare_make(s, &batch[n])))
                fds[nfds++] = batch[n++].it.fd;
            brc = efs_keys_batch_end(s->keys);
            if (brc && !rc)
                rc = brc;
        }
        while (nd < wantd && !(rcd = dir_make(s, &dbatch[nd]))) {
            if (dbatch[nd].id_fd >= 0)
                fds[nfds++] = dbatch[nd].id_fd;
            fds[nfds++] = dbatch[nd++].it.fd;
        }
        /* Make the batch durable: start every header's writeback, then fsync each (and each new
         * directory with its id), concurrently. On a journalling filesystem the first
         * fsync commits the transaction holding them all and the rest only flush the device cache —
         * flushes the block layer merges when they arrive together; unlike syncfs, nothing but the
         * spares is written (an untar's dirty data stays in the page cache). */
        for (int i = 0; i < n; i++)
            (void)sync_file_range(batch[i].it.fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        if (nfds) {
            int src = sync_fds(s, fds, nfds);
            if (src && n && !rc)
                rc = src;
            if (src && nd && !rcd)
                rcd = src;
        }
        if (rc)
            while (n)
                spare_discard(s, &batch[--n]);
        if (rcd)
            while (nd)
                dir_discard(s, &dbatch[--nd]);
        for (int i = 0; i < nd; i++) {
            if (dbatch[i].id_fd >= 0)
                close(dbatch[i].id_fd);
            dbatch[i].id_fd = -1;
        }
        pthread_mutex_lock(&s->lock);
        now = efs_mono_s();
        pool_add(&s->files, batch, n, now);
        pool_add(&s->dirs, dbatch, nd, now);
        if (rc)
            round_failed(&s->files, rc);
        if (rcd)
            round_failed(&s->dirs, rcd);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void clear_dir(int dir_fd)
{
    int fd = dup(dir_fd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (unlinkat(dir_fd, e->d_name, 0) && errno == EISDIR) { /* a spare directory and its id */
            int sub = openat(dir_fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                (void)unlinkat(sub, EFS_DIRID_NAME, 0);
                close(sub);
            }
            (void)unlinkat(dir_fd, e->d_name, AT_REMOVEDIR);
        }
    }
    closedir(d);
}

int efs_spares_new(int root_fd, efs_keys *keys, const efs_config *cfg, efs_spares **out)
{
    efs_spares *s;
    *out = NULL;
    if (mkdirat(root_fd, EFS_SPARES_DIR, 0700) && errno != EEXIST)
        return 0;
    s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->dir_fd = openat(root_fd, EFS_SPARES_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s->dir_fd < 0) {
        free(s);
        return 0;
    }
    clear_dir(s->dir_fd); /* spares of an earlier mount: unused, harmless, not reused */
    s->keys = keys;
    s->cfg = cfg;
    s->with_dirs = !cfg->plaintext_names;
    s->files = (struct pool){.items = (char *)s->ready, .size = sizeof s->ready[0], .cap = SPARE_MAX,
                             .min_batch = SPARE_MIN_BATCH, .batch = SPARE_BATCH, .low = SPARE_MIN_BATCH,
                             .discard = spare_discard, .what = "files", .uses_kms = true};
    s->dirs = (struct pool){.items = (char *)s->dready, .size = sizeof s->dready[0], .cap = DIR_MAX,
                            .min_batch = DIR_MIN_BATCH, .batch = DIR_BATCH, .low = DIR_MIN_BATCH,
                            .discard = dir_discard, .what = "directories"};
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL); /* CLOCK_REALTIME, as the filler's timed wait expects */
    syncers_start(s);
    if (pthread_create(&s->thread, NULL, filler, s)) {
        syncers_stop(s);
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->lock);
        close(s->dir_fd);
        free(s);
        return 0;
    }
    *out = s;
    return 0;
}

void efs_spares_free(efs_spares *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    syncers_stop(s);
    while (s->files.n)
        spare_discard(s, &s->ready[--s->files.n]);
    while (s->dirs.n)
        dir_discard(s, &s->dready[--s->dirs.n]);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    close(s->dir_fd);
    free(s);
}

/* Take the newest ready item of p that has not aged out into out (p->size bytes), discarding stale ones,
 * and count the demand. false when none (or spares are unusable here). */
static bool pool_take(efs_spares *s, struct pool *p, void *out)
{
    bool have = false;
    pthread_mutex_lock(&s->lock);
    if (s->unusable) {
        pthread_mutex_unlock(&s->lock);
        return false;
    }
    p->last_take = efs_mono_s();
    p->takes++;
    while (p->n && !have) { /* newest first; skip any that aged out */
        memcpy(out, item_at(p, --p->n), p->size);
        if (p->last_take - ((struct item *)out)->born <= SPARE_MAX_AGE) {
            have = true;
        } else {
            pthread_mutex_unlock(&s->lock);
            p->discard(s, out);
            pthread_mutex_lock(&s->lock);
        }
    }
    if (p->n < p->low) /* otherwise the filler comes round within FILL_CYCLE */
        pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    return have;
}

/* Rename the taken item into (dirfd, name) without replacing anything. 0, -errno, or -EAGAIN when this
 * filesystem cannot (no RENAME_NOREPLACE): spares are then no longer used at all. The item is discarded
 * on failure. */
static int pool_place(efs_spares *s, struct pool *p, void *item, int dirfd, const char *name)
{
    int rc;
    if (!renameat2(s->dir_fd, ((struct item *)item)->name, dirfd, name, RENAME_NOREPLACE))
        return 0;
    rc = -errno;
    p->discard(s, item);
    if (rc == -EINVAL || rc == -ENOSYS || rc == -EXDEV) {
        pthread_mutex_lock(&s->lock);
        s->unusable = true;
        pthread_mutex_unlock(&s->lock);
        EFS_WARN("spare %s: rename failed (%s); they are made synchronously", p->what, strerror(-rc));
        return -EAGAIN;
    }
    return rc;
}

static void pool_served(efs_spares *s, struct pool *p)
{
    pthread_mutex_lock(&s->lock);
    p->taken++;
    pthread_mutex_unlock(&s->lock);
}

int efs_spares_take(efs_spares *s, int dirfd, const char *name, mode_t mode, int *fd, efs_header *h,
                    efs_file_keys *fk)
{
    struct spare sp;
    int rc;
    if (!s || !pool_take(s, &s->files, &sp))
        return -EAGAIN;
    rc = pool_place(s, &s->files, &sp, dirfd, name);
    if (rc)
        return rc;
    if (fchmod(sp.it.fd, mode & 07777)) {
        rc = -errno;
        (void)unlinkat(dirfd, name, 0);
        close(sp.it.fd);
        efs_secpool_free(sp.fk, sizeof *sp.fk);
        return rc;
    }
    (void)futimens(sp.it.fd, NULL); /* born up to SPARE_MAX_AGE ago: the file is new now */
    pool_served(s, &s->files);
    *fd = sp.it.fd;
    *h = sp.h;
    memcpy(fk, sp.fk, sizeof *fk);
    efs_secpool_free(sp.fk, sizeof *sp.fk);
    sodium_memzero(&sp, sizeof sp);
    return 0;
}

int efs_spares_take_dir(efs_spares *s, int dirfd, const char *name, mode_t mode)
{
    struct spare_dir d;
    int rc;
    if (!s || !s->with_dirs || !pool_take(s, &s->dirs, &d))
        return -EAGAIN;
    rc = pool_place(s, &s->dirs, &d, dirfd, name);
    if (rc)
        return rc;
    if (fchmod(d.it.fd, mode & 07777)) {
        rc = -errno;
        (void)unlinkat(d.it.fd, EFS_DIRID_NAME, 0);
        (void)unlinkat(dirfd, name, AT_REMOVEDIR);
        close(d.it.fd);
        return rc;
    }
    (void)futimens(d.it.fd, NULL); /* made up to SPARE_MAX_AGE ago: the directory is new now */
    close(d.it.fd);
    pool_served(s, &s->dirs);
    return 0;
}

static uint64_t served(efs_spares *s, struct pool *p)
{
    uint64_t n;
    pthread_mutex_lock(&s->lock);
    n = p->taken;
    pthread_mutex_unlock(&s->lock);
    return n;
}

uint64_t efs_spares_taken_dirs(efs_spares *s)
{
    return s ? served(s, &s->dirs) : 0;
}

uint64_t efs_spares_taken(efs_spares *s)
{
    return s ? served(s, &s->files) : 0;
}
