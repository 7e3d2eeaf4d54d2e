/*
 * spares.c — spare files with durable headers, ready to become new files.
 *
 * A new file's header (its wrapped DEK) must be durable before any of its data can be: otherwise a power
 * loss could leave data that no key opens. Doing that at create time costs an fdatasync inside every
 * create request: an untar spent half its time there. Instead, a filler thread prepares spares in
 * EFS_SPARES_DIR — a fresh DEK from the key service, a header, a file — and makes a whole batch durable
 * together (on a journalling filesystem, one commit). A create then renames a spare into place
 * (RENAME_NOREPLACE, so O_EXCL semantics hold) and sets its mode: the header was durable before the name
 * existed, so it is durable before any data.
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
#include "secmem.h"
#include "envelopefs/log.h"

#define SPARE_BATCH 32     /* at most this many spares made durable together */
#define SPARE_MIN_BATCH 16 /* and, while files are being created, at least this many */
#define SPARE_MAX 64       /* at most this many ready */
#define SPARE_MAX_AGE 2.0  /* seconds: demand window and the oldest spare handed out */

struct spare {
    char name[32];
    int fd;
    double born;
    efs_header h;
    efs_file_keys *fk; /* locked memory (secmem.c) */
};

struct efs_spares {
    int dir_fd;
    efs_keys *keys;
    const efs_config *cfg;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct spare ready[SPARE_MAX];
    int nready;
    double last_take;
    unsigned takes;        /* since the filler last looked: it makes about twice as many */
    unsigned long counter;
    uint64_t taken;        /* creates served by a spare */
    bool unusable;         /* the backing filesystem cannot rename them into place */
    bool stop;
};

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int efs_header_store(int fd, const efs_header *h, bool in_xattr)
{
    uint8_t buf[EFS_HDR_MAX];
    size_t len = efs_header_len(h);
    if (efs_header_encode(h, buf, sizeof buf))
        return -EIO;
    if (in_xattr)
        return fsetxattr(fd, EFS_XATTR_HEADER, buf, len, XATTR_CREATE) ? -errno : 0;
    if (pwrite(fd, buf, len, 0) != (ssize_t)len)
        return errno ? -errno : -EIO;
    return 0;
}

static void spare_discard(efs_spares *s, struct spare *sp)
{
    (void)unlinkat(s->dir_fd, sp->name, 0);
    close(sp->fd);
    efs_secmem_free(sp->fk, sizeof *sp->fk);
    sodium_memzero(sp, sizeof *sp);
}

/* Make one spare (not yet durable). 0, or -errno (key-service refusals included). */
static int spare_make(efs_spares *s, struct spare *sp)
{
    int rc;
    memset(sp, 0, sizeof *sp);
    sp->fd = -1;
    sp->fk = efs_secmem_alloc(sizeof *sp->fk);
    if (!sp->fk)
        return -ENOMEM;
    rc = efs_keys_new_file(s->keys, &sp->h, sp->fk); /* the key service first: a refusal writes nothing */
    if (rc)
        goto fail;
    snprintf(sp->name, sizeof sp->name, "s.%lu.%08x", ++s->counter, randombytes_random());
    sp->fd = openat(s->dir_fd, sp->name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (sp->fd < 0) {
        rc = -errno;
        goto fail;
    }
    rc = efs_header_store(sp->fd, &sp->h, s->cfg->dek_in_xattr);
    if (rc) {
        (void)unlinkat(s->dir_fd, sp->name, 0);
        goto fail;
    }
    return 0;
fail:
    if (sp->fd >= 0)
        close(sp->fd);
    efs_secmem_free(sp->fk, sizeof *sp->fk);
    sp->fk = NULL;
    return rc;
}

static void *filler(void *arg)
{
    efs_spares *s = arg;
    struct spare batch[SPARE_BATCH];
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        double now = now_mono();
        int want, n = 0, rc = 0;
        /* Discard what is too old to hand out (oldest first). */
        while (s->nready && now - s->ready[0].born > SPARE_MAX_AGE) {
            struct spare old = s->ready[0];
            memmove(&s->ready[0], &s->ready[1], (size_t)(s->nready - 1) * sizeof s->ready[0]);
            s->nready--;
            pthread_mutex_unlock(&s->lock);
            spare_discard(s, &old);
            pthread_mutex_lock(&s->lock);
        }
        /* Refill about twice what was taken since last time, at least SPARE_MIN_BATCH: every batch
         * costs a journal commit (or, without a journal, a write per spare plus a cache flush), so batches must
         * not shrink to a spare or two; a burst grows the pool to its cap. */
        want = 2 * (int)s->takes > SPARE_MIN_BATCH ? 2 * (int)s->takes : SPARE_MIN_BATCH;
        if (want > SPARE_MAX - s->nready)
            want = SPARE_MAX - s->nready;
        if (now - s->last_take > SPARE_MAX_AGE || (s->takes == 0 && s->nready >= SPARE_MIN_BATCH))
            want = 0;
        s->takes = 0;
        if (want <= 0) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1; /* wake up to expire spares */
            pthread_cond_timedwait(&s->wake, &s->lock, &until);
            continue;
        }
        if (want > SPARE_BATCH)
            want = SPARE_BATCH;
        pthread_mutex_unlock(&s->lock);
        while (n < want && !(rc = spare_make(s, &batch[n])))
            n++;
        /* Make the batch durable: start every header's writeback, then fdatasync each. On a journalling
         * filesystem the first fdatasync commits the transaction holding them all and the rest find
         * nothing left to do; unlike syncfs, nothing but the spares is flushed (an untar's dirty data
         * stays in the page cache). */
        for (int i = 0; i < n; i++)
            (void)sync_file_range(batch[i].fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        for (int i = 0; i < n && !rc; i++)
            if (fdatasync(batch[i].fd))
                rc = -errno;
        if (rc)
            while (n)
                spare_discard(s, &batch[--n]);
        pthread_mutex_lock(&s->lock);
        for (int i = 0; i < n; i++) {
            batch[i].born = now_mono();
            s->ready[s->nready++] = batch[i];
        }
        if (rc) {
            if (rc != -EACCES)
                EFS_WARN("spare files: %s; creates write their headers synchronously", strerror(-rc));
            s->last_take = 0; /* wait for the next create before asking the key service again */
        }
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
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            (void)unlinkat(dir_fd, e->d_name, 0);
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
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL); /* CLOCK_REALTIME, as the filler's timed wait expects */
    if (pthread_create(&s->thread, NULL, filler, s)) {
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
    while (s->nready)
        spare_discard(s, &s->ready[--s->nready]);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    close(s->dir_fd);
    free(s);
}

int efs_spares_take(efs_spares *s, int dirfd, const char *name, mode_t mode, int *fd, efs_header *h,
                    efs_file_keys *fk)
{
    struct spare sp;
    bool have = false;
    int rc = 0;
    if (!s)
        return -EAGAIN;
    pthread_mutex_lock(&s->lock);
    if (s->unusable) {
        pthread_mutex_unlock(&s->lock);
        return -EAGAIN;
    }
    s->last_take = now_mono();
    s->takes++;
    while (s->nready && !have) { /* newest first; skip any that aged out */
        sp = s->ready[--s->nready];
        if (s->last_take - sp.born <= SPARE_MAX_AGE)
            have = true;
        else {
            pthread_mutex_unlock(&s->lock);
            spare_discard(s, &sp);
            pthread_mutex_lock(&s->lock);
        }
    }
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    if (!have)
        return -EAGAIN;
    if (renameat2(s->dir_fd, sp.name, dirfd, name, RENAME_NOREPLACE)) {
        rc = -errno;
        spare_discard(s, &sp);
        if (rc == -EINVAL || rc == -ENOSYS || rc == -EXDEV) { /* no RENAME_NOREPLACE here: stop using spares */
            pthread_mutex_lock(&s->lock);
            s->unusable = true;
            pthread_mutex_unlock(&s->lock);
            EFS_WARN("spare files: rename failed (%s); creates write their headers synchronously", strerror(-rc));
            return -EAGAIN;
        }
        return rc;
    }
    if (fchmod(sp.fd, mode & 07777)) {
        rc = -errno;
        (void)unlinkat(dirfd, name, 0);
        close(sp.fd);
        efs_secmem_free(sp.fk, sizeof *sp.fk);
        return rc;
    }
    (void)futimens(sp.fd, NULL); /* born up to SPARE_MAX_AGE ago: the file is new now */
    pthread_mutex_lock(&s->lock);
    s->taken++;
    pthread_mutex_unlock(&s->lock);
    *fd = sp.fd;
    *h = sp.h;
    memcpy(fk, sp.fk, sizeof *fk);
    efs_secmem_free(sp.fk, sizeof *sp.fk);
    sodium_memzero(&sp, sizeof sp);
    return 0;
}

uint64_t efs_spares_taken(efs_spares *s)
{
    uint64_t n;
    if (!s)
        return 0;
    pthread_mutex_lock(&s->lock);
    n = s->taken;
    pthread_mutex_unlock(&s->lock);
    return n;
}
