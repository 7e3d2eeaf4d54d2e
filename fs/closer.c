/*
 * closer.c — the closer threads: close, off the request path, the descriptors of files removed through the
 * mount. An UNLINK that removes an unused regular file's last name hands the file's O_PATH descriptor here
 * (efs_inode_unlinked) instead of closing it: that close is where the backing filesystem frees the inode
 * and its blocks (ext4: truncate, orphan list, journal; with -o discard a wait for the device), 88–98 % of
 * the UNLINK request's wall time in an rm -rf (docs/PERFORMANCE.md), which the caller of unlink would
 * otherwise wait for. Several threads, because a close can sleep: their sleeps overlap.
 *
 * A bounded FIFO ring: when it is full the caller closes the descriptor itself (counted: the queue then
 * pushes back at the rate the backing filesystem frees files, and never holds more than cap descriptors
 * beyond the mount's descriptor budget). efs_closer_drain waits for everything queued before it: RMDIR
 * (so that the backing rmdir does not busy-walk child dentries still being freed), STATFS (space freed by an
 * rm shows at once) and unmount (efs_closer_free, before the backing filesystem is let go). Lock: c->lock, a
 * leaf — held around the ring and the counters only, never across a close; the mount takes it with no lock
 * of its own held (inodes.c), and the closer threads take no other lock.
 */
#include "closer.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/monotime.h"

#define BATCH 32     /* descriptors a thread takes out of the ring at once, at most */
#define MAX_THREADS 8

struct slot {
    int fd;
    uint64_t ino;
};

struct efs_closer {
    pthread_mutex_t lock;
    pthread_cond_t work;  /* the ring is not empty, or stop */
    pthread_cond_t done;  /* a batch was closed */
    pthread_t thread[MAX_THREADS];
    uint64_t busy_from[MAX_THREADS]; /* the first sequence number of the batch thread i is closing, or UINT64_MAX */
    size_t nthreads;
    struct slot *ring;
    size_t cap, head, len;
    uint64_t pushed, taken; /* sequence numbers: descriptors queued, taken out of the ring, ever */
    bool stop;
    efs_closer_counts n;
};

/* The calling thread's CPU time, ns (its wall clock: efs_mono_ns). */
static uint64_t cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* The calling thread's clocks and context switches now, as an efs_close_time. */
static void now(efs_close_time *t)
{
    struct rusage ru;
    t->wall_ns = (uint64_t)efs_mono_ns();
    t->cpu_ns = cpu_ns();
    if (getrusage(RUSAGE_THREAD, &ru))
        memset(&ru, 0, sizeof ru);
    t->vcsw = (uint64_t)ru.ru_nvcsw;
    t->ivcsw = (uint64_t)ru.ru_nivcsw;
}

/* sum += now - t0 */
static void add_since(efs_close_time *sum, const efs_close_time *t0)
{
    efs_close_time t1;
    now(&t1);
    sum->wall_ns += t1.wall_ns - t0->wall_ns;
    sum->cpu_ns += t1.cpu_ns - t0->cpu_ns;
    sum->vcsw += t1.vcsw - t0->vcsw;
    sum->ivcsw += t1.ivcsw - t0->ivcsw;
}

/* Closes made without a closer (c NULL: ENVELOPEFS_CLOSER=0, or its thread could not start). */
static pthread_mutex_t unthreaded_lock = PTHREAD_MUTEX_INITIALIZER;
static efs_closer_counts unthreaded;

/* close(2) and, on failure, the log line and count (the fd is gone either way: Linux never retries). */
static bool close_logged(int fd, uint64_t ino)
{
    if (close(fd) == 0)
        return true;
    EFS_ERROR("file (inode %" PRIu64 "): closing its descriptor after its unlink failed: %s", ino, strerror(errno));
    return false;
}

/* Every descriptor queued with a sequence number below this one is closed (c->lock held). */
static uint64_t closed_below(const efs_closer *c)
{
    uint64_t low = c->taken;
    for (size_t i = 0; i < c->nthreads; i++)
        if (c->busy_from[i] < low)
            low = c->busy_from[i];
    return low;
}

struct thread_arg {
    efs_closer *c;
    size_t i;
};

static void *closer_main(void *arg)
{
    efs_closer *c = ((struct thread_arg *)arg)->c;
    size_t self = ((struct thread_arg *)arg)->i;
    struct slot batch[BATCH];
    free(arg);
    pthread_mutex_lock(&c->lock);
    for (;;) {
        size_t k = 0, errs = 0, want;
        efs_close_time t0, d = {0};
        while (!c->len && !c->stop)
            pthread_cond_wait(&c->work, &c->lock);
        if (!c->len)
            break; /* stopping, and nothing left */
        /* a share of what is queued, so that the other threads' closes overlap this one's */
        want = c->len / c->nthreads ? c->len / c->nthreads : 1;
        c->busy_from[self] = c->taken;
        while (c->len && k < BATCH && k < want) {
            batch[k++] = c->ring[c->head];
            c->head = (c->head + 1) % c->cap;
            c->len--;
        }
        c->taken += k;
        pthread_mutex_unlock(&c->lock);
        now(&t0);
        for (size_t i = 0; i < k; i++)
            errs += !close_logged(batch[i].fd, batch[i].ino);
        add_since(&d, &t0);
        pthread_mutex_lock(&c->lock);
        c->n.thread.wall_ns += d.wall_ns;
        c->n.thread.cpu_ns += d.cpu_ns;
        c->n.thread.vcsw += d.vcsw;
        c->n.thread.ivcsw += d.ivcsw;
        c->n.errors += errs;
        c->busy_from[self] = UINT64_MAX;
        pthread_cond_broadcast(&c->done);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

int efs_closer_new(size_t cap, size_t nthreads, efs_closer **out)
{
    efs_closer *c;
    pthread_attr_t a;
    int rc = 0;
    *out = NULL;
    if (!cap || !nthreads || nthreads > MAX_THREADS)
        return -EINVAL;
    c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->ring = calloc(cap, sizeof *c->ring);
    if (!c->ring) {
        rc = -ENOMEM;
        goto fail_ring;
    }
    c->cap = cap;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->work, NULL);
    pthread_cond_init(&c->done, NULL);
    for (size_t i = 0; i < MAX_THREADS; i++)
        c->busy_from[i] = UINT64_MAX;
    if (pthread_attr_init(&a)) {
        rc = -ENOMEM;
        goto fail_attr;
    }
    (void)pthread_attr_setstacksize(&a, 64 * 1024);
    while (c->nthreads < nthreads) {
        struct thread_arg *ta = malloc(sizeof *ta);
        if (!ta) {
            rc = -ENOMEM;
            break;
        }
        *ta = (struct thread_arg){.c = c, .i = c->nthreads};
        pthread_mutex_lock(&c->lock); /* (nthreads is read by the running threads) */
        rc = -pthread_create(&c->thread[c->nthreads], &a, closer_main, ta);
        if (!rc)
            (void)pthread_setname_np(c->thread[c->nthreads++], "efs-closer"); /* (in top, perf and /proc) */
        pthread_mutex_unlock(&c->lock);
        if (rc) {
            free(ta);
            break;
        }
    }
    pthread_attr_destroy(&a);
    if (!c->nthreads)
        goto fail_thread;
    *out = c; /* (fewer threads than asked if some failed to start: still a closer) */
    return 0;
fail_thread:
fail_attr:
    pthread_cond_destroy(&c->done);
    pthread_cond_destroy(&c->work);
    pthread_mutex_destroy(&c->lock);
    free(c->ring);
fail_ring:
    free(c);
    return rc;
}

void efs_closer_close(efs_closer *c, int fd, uint64_t ino)
{
    pthread_mutex_t *lock = c ? &c->lock : &unthreaded_lock;
    efs_closer_counts *n = c ? &c->n : &unthreaded;
    efs_close_time t0, d = {0};
    bool ok;
    if (fd < 0)
        return;
    if (c) {
        pthread_mutex_lock(&c->lock);
        if (c->len < c->cap && !c->stop) {
            c->ring[(c->head + c->len) % c->cap] = (struct slot){.fd = fd, .ino = ino};
            c->len++;
            c->pushed++;
            c->n.queued++;
            pthread_cond_signal(&c->work);
            pthread_mutex_unlock(&c->lock);
            return;
        }
        pthread_mutex_unlock(&c->lock);
    }
    /* Full (the thread is behind: this caller waits for one close, which paces the removals to the rate
     * the backing filesystem frees files), or no thread. */
    now(&t0);
    ok = close_logged(fd, ino);
    add_since(&d, &t0);
    pthread_mutex_lock(lock);
    n->inline_closes++;
    n->errors += !ok;
    n->inl.wall_ns += d.wall_ns;
    n->inl.cpu_ns += d.cpu_ns;
    n->inl.vcsw += d.vcsw;
    n->inl.ivcsw += d.ivcsw;
    pthread_mutex_unlock(lock);
}

void efs_closer_drain(efs_closer *c)
{
    uint64_t target, w0;
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    target = c->pushed;
    if (closed_below(c) < target) {
        w0 = (uint64_t)efs_mono_ns();
        while (closed_below(c) < target)
            pthread_cond_wait(&c->done, &c->lock);
        c->n.drains++;
        c->n.drain_wall_ns += (uint64_t)efs_mono_ns() - w0;
    }
    pthread_mutex_unlock(&c->lock);
}

void efs_closer_counts_get(efs_closer *c, efs_closer_counts *out)
{
    pthread_mutex_t *lock = c ? &c->lock : &unthreaded_lock;
    pthread_mutex_lock(lock);
    *out = c ? c->n : unthreaded;
    pthread_mutex_unlock(lock);
}

void efs_closer_free(efs_closer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = true; /* the threads empty the ring before they leave */
    pthread_cond_broadcast(&c->work);
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < c->nthreads; i++)
        pthread_join(c->thread[i], NULL);
    pthread_cond_destroy(&c->done);
    pthread_cond_destroy(&c->work);
    pthread_mutex_destroy(&c->lock);
    free(c->ring);
    free(c);
}
