/*
 * loop.c — the FUSE request loop (see loop.h): leader/followers instead of libfuse's multi-threaded loop.
 *
 * libfuse's loop keeps every idle worker blocked in read() on /dev/fuse; the kernel hands each request to
 * the worker that has waited longest, so a client that sends one request at a time (tar, cp -r, git)
 * wakes a different, cache-cold thread — often on the other CPU — for every request, and libfuse keeps
 * spawning a spare reader. Here only the leader reads. A request that can be answered quickly is served
 * by the leader itself, which then reads the next one: a sequential client ping-pongs with one thread.
 * Before serving a request that may take long (data, fsync, directory listings) the leader passes
 * leadership to a follower (waking or starting one, up to max_threads), so parallel work still runs in
 * parallel. When more requests are already queued (poll says so: concurrent clients) and the request is
 * a quick one, the leader only *releases* leadership if another thread will be free soon — one that
 * finished while the leader was reading a queued request and waits for the release (up to HANDOFF_NS,
 * instead of sleeping on the condition variable), or one serving a quick request it began less than
 * SOON_NS ago: every thread that finishes takes a free leadership and reads the next request without a
 * wake-up, so two threads alternate between reading and serving with no hand-off through the condition
 * variable. Otherwise — nobody will be free soon (the others wait for the disk, or there are none) — it
 * passes as for a long request.
 * Either way a free leadership is never left without a thread that will take it: the releasing leader
 * itself is still serving and takes it back when it finishes, if no one has. Before it blocks in read,
 * the leader polls for the next request for a few microseconds (spin(), below).
 * Small READs of a session run with efs_loop_run_nowait_reads (the directory mount) are an exception to
 * the rule for queued requests: the leader serves them itself in nowait mode (nowait.h) and keeps
 * leadership, unless the READ handler says it is about to block (its inode locked for writing, its stored
 * blocks not in the backing page cache: leader_blocks()); only then, and only if requests are queued, is
 * leadership released or passed as above. Decrypting a cached 4 KiB block costs less than a hand-off
 * (stop 18: the hand-offs were a quarter of the daemon's CPU at QD16, decryption an eighth), and the
 * queued READs of a random reader over cached backing data then cost no futex call and no context switch.
 *
 * Every request is read by one thread, which serves it and replies exactly once, in that thread (loop.h's
 * buffer contract). Shutdown as in libfuse: the session ends (unmount: the read returns 0/-ENODEV) or a
 * signal handler calls fuse_session_exit; the calling thread, which serves no requests itself, wakes up,
 * and cancels the threads blocked in read (cancellation is enabled only there, never while a request is
 * being served).
 */
#include "loop.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/monotime.h"
#include "fusereq.h"
#include "nowait.h"

#define MAX_LOOP_THREADS 64
#define SMALL_IO (64 * 1024) /* a READ or WRITE up to this size is served without passing leadership */
/* A thread that began serving a quick request less than this long ago will take leadership soon: a
 * cached 4 KiB READ is served in ~5-15 µs on these VMs, a wake-up of a sleeping follower costs more. */
#define SOON_NS (50 * 1000)
/* How long a thread that finished serving waits for a leader reading a queued request to release
 * leadership before it sleeps as a follower. */
#define HANDOFF_NS (10 * 1000)

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

struct loop {
    struct fuse_session *se;
    pthread_mutex_t lock;
    pthread_cond_t cv;       /* followers wait here for leadership */
    sem_t finished;          /* posted when the session ends */
    pthread_t threads[MAX_LOOP_THREADS];
    unsigned nthreads, max_threads, idle;
    _Atomic unsigned handoff; /* threads waiting a little for leadership to be released (not idle) */
    _Atomic unsigned nslots; /* slots handed out (one per thread, at its start) */
    /* per thread: when it began serving its current quick request (efs_mono_ns), 0 when it serves none */
    _Atomic int64_t quick_since[MAX_LOOP_THREADS];
    _Atomic bool leader;     /* a thread holds leadership (reads the next request); written under lock */
    bool stop;
    int err;
    long spin_ns;            /* the leader polls this long for the next request before blocking */
    bool nowait_reads;       /* small READs are served by the leader in nowait mode (efs_loop_run_nowait_reads) */
    unsigned cold;           /* consecutive waits longer than spin_ns (leader only): spinning is off */
    unsigned unspun_run;     /* reads without spinning since the last spin or probe (leader only) */
    efs_loop_counts *counts; /* the caller's, or own below */
    efs_loop_counts own;
};

#define COUNT(l, field) atomic_fetch_add_explicit(&(l)->counts->field, 1, memory_order_relaxed)

/* Requests served after passing leadership: they move data (the kernel sends several at once: readahead,
 * writeback), wait for the disk, list directories, or wait for the closer threads (RMDIR, STATFS: closer.c;
 * one per directory in an rm -rf). Everything else — lookup, create (a spare file is
 * renamed into place), setattr, xattrs, release, forget — is a few system calls. */
static bool may_take_long(uint32_t opcode)
{
    switch (opcode) {
    case FUSE_READ:
    case FUSE_WRITE:
    case FUSE_FSYNC:
    case FUSE_READDIR:
    case FUSE_FSYNCDIR:
    case FUSE_FALLOCATE:
    case FUSE_READDIRPLUS:
    case FUSE_COPY_FILE_RANGE:
    case FUSE_RMDIR:
    case FUSE_STATFS:
        return true;
    default:
        return false;
    }
}

/* Must the request in buf[0..n) be served after passing leadership? (READ and WRITE only when larger
 * than SMALL_IO.) Unknown layouts are treated as long. */
static bool served_by_follower(const unsigned char *buf, size_t n)
{
    struct fuse_in_header ih;
    uint32_t size = UINT32_MAX;
    if (n < sizeof ih)
        return true;
    memcpy(&ih, buf, sizeof ih);
    if (!may_take_long(ih.opcode))
        return false;
    if (ih.opcode == FUSE_READ)
        size = EFS_FUSE_FIELD(struct fuse_read_in, size, buf + sizeof ih, n - sizeof ih);
    else if (ih.opcode == FUSE_WRITE)
        size = EFS_FUSE_FIELD(struct fuse_write_in, size, buf + sizeof ih, n - sizeof ih);
    return size > SMALL_IO || size == 0; /* 0: body too short to tell */
}

/* Is the request in buf[0..n) a READ (of at most SMALL_IO bytes: the caller knows it is quick)? */
static bool is_read(const unsigned char *buf, size_t n)
{
    struct fuse_in_header ih;
    if (n < sizeof ih)
        return false;
    memcpy(&ih, buf, sizeof ih);
    return ih.opcode == FUSE_READ;
}

/* Is the request in buf[0..n) a FORGET (or a batch of them)? It needs no reply and costs a table update:
 * the descriptor of a file removed through the mount was closed at its unlink (inodes.c), so its FORGET
 * frees only memory. It is always served by the leader, also when requests are queued: passing
 * leadership for it woke a follower for nearly every file of an rm -rf (the client's next request is
 * queued right behind the FORGET its unlink caused). */
static bool is_forget(const unsigned char *buf, size_t n)
{
    struct fuse_in_header ih;
    if (n < sizeof ih)
        return false;
    memcpy(&ih, buf, sizeof ih);
    return ih.opcode == FUSE_FORGET || ih.opcode == FUSE_BATCH_FORGET;
}

bool efs_loop_requests_queued(struct fuse_session *se)
{
    struct pollfd p = {.fd = fuse_session_fd(se), .events = POLLIN};
    return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

static void *serve(void *arg);

/*
 * Before blocking in read, the leader polls /dev/fuse for up to spin_ns. A client that sends its next
 * request a few microseconds after our reply (a random reader, tar, cp) then finds the leader awake: on
 * these paravirtualised VMs putting a thread to sleep and waking it costs more than serving a small
 * request (4 KiB random reads: ~50 µs per request blocking, ~20 µs spinning). After COLD_AFTER waits in a
 * row that outlasted the window the leader stops spinning (an idle or slow client costs no CPU), but it
 * still spins before every PROBE_EVERY-th read while cold: a probe that finds a request turns spinning
 * back on. (Turning it back on only when a blocking wait turned out shorter than the window was not
 * enough: a blocking wait includes waking the leader, which on these VMs alone takes longer than the
 * window, so a fast client that had once made the leader cold — a pause between two runs — could stay
 * unspun for its whole run. The stats xattr counts loop_unspun and loop_probe_hits.)
 */
#define COLD_AFTER 8
#define PROBE_EVERY 16
static void spin(struct loop *l)
{
    int64_t t0;
    bool probe = false;
    if (l->spin_ns <= 0) {
        COUNT(l, unspun);
        return;
    }
    if (l->cold >= COLD_AFTER) {
        if (++l->unspun_run < PROBE_EVERY) {
            COUNT(l, unspun);
            return;
        }
        probe = true;
    }
    l->unspun_run = 0;
    t0 = efs_mono_ns();
    do {
        if (efs_loop_requests_queued(l->se)) {
            l->cold = 0;
            COUNT(l, spin_hits);
            if (probe)
                COUNT(l, probe_hits);
            return;
        }
    } while (efs_mono_ns() - t0 < l->spin_ns);
    if (l->cold < COLD_AFTER)
        l->cold++;
    COUNT(l, spin_misses);
}

static void free_buf(void *arg)
{
    struct fuse_buf *b = arg;
    free(b->mem);
    b->mem = NULL;
}

/* lock held: make sure someone will read the next request. True if a follower was woken or started;
 * false if a thread waits for the release (handoff) or every thread is busy (the first to finish takes
 * leadership). */
static bool pass_leadership(struct loop *l)
{
    l->leader = false;
    if (l->handoff) /* it takes leadership when its wait ends, at the latest (it looks under the lock) */
        return false;
    if (l->idle) {
        pthread_cond_signal(&l->cv);
        return true;
    } else if (l->nthreads < l->max_threads && !l->stop) { /* (efs_loop_run joins threads[0..nthreads)) */
        pthread_attr_t a;
        sigset_t all, old;
        bool started;
        if (pthread_attr_init(&a))
            return false;
        sigfillset(&all); /* signals go to the calling thread, which waits for them */
        pthread_sigmask(SIG_BLOCK, &all, &old);
        started = !pthread_create(&l->threads[l->nthreads], &a, serve, l);
        if (started) {
            l->nthreads++;
            COUNT(l, threads);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&a);
        return started;
    }
    return false; /* every thread is busy; the first to finish takes leadership */
}

/* Will another thread take leadership soon: is one waiting for it to be released, or has a thread other
 * than slot `me` begun serving a quick request less than SOON_NS before now? (Relaxed
 * reads without the lock: a wrong guess costs one wake-up too many, or a queued request waiting until a
 * thread serving a quick one finishes.) */
static bool other_back_soon(struct loop *l, unsigned me, int64_t now)
{
    unsigned n = atomic_load_explicit(&l->nslots, memory_order_relaxed);
    if (atomic_load_explicit(&l->handoff, memory_order_relaxed))
        return true;
    for (unsigned i = 0; i < n; i++) {
        int64_t t = atomic_load_explicit(&l->quick_since[i], memory_order_relaxed);
        if (i != me && t && now - t < SOON_NS)
            return true;
    }
    return false;
}

enum lead { KEPT, RELEASED, PASSED };

/* A small READ served by the leader in nowait mode (nowait.h): what the hook needs, and what it did. */
struct nowait_read {
    struct loop *l;
    unsigned me;
    enum lead lead; /* KEPT unless the hook released or passed leadership */
};

/* nowait.h's hook: the READ the leader serves is about to block (its inode is locked for writing, or its
 * stored blocks are not in the page cache). If requests are queued, let another thread read them while
 * this one waits, as for a READ passed at once (the choice between releasing and passing as in serve());
 * if none are, stay the leader and block, as a READ served alone always did. */
static void leader_blocks(void *arg)
{
    struct nowait_read *r = arg;
    struct loop *l = r->l;
    bool woke = false;
    COUNT(l, nowait_blocked);
    if (!efs_loop_requests_queued(l->se))
        return;
    atomic_store_explicit(&l->quick_since[r->me], 0, memory_order_relaxed); /* it waits: not back soon */
    r->lead = other_back_soon(l, r->me, efs_mono_ns()) ? RELEASED : PASSED;
    pthread_mutex_lock(&l->lock);
    if (r->lead == PASSED)
        woke = pass_leadership(l);
    else
        l->leader = false;
    pthread_mutex_unlock(&l->lock);
    if (woke)
        COUNT(l, passed);
    else
        COUNT(l, released);
}

static void *serve(void *arg)
{
    struct loop *l = arg;
    unsigned me = atomic_fetch_add_explicit(&l->nslots, 1, memory_order_relaxed); /* < MAX_LOOP_THREADS */
    struct fuse_buf fbuf;
    volatile bool just_quick = false; /* the request this thread served last was a quick one (volatile:
                                       * set across pthread_cleanup_push's setjmp) */
    memset(&fbuf, 0, sizeof fbuf);
    (void)pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    pthread_mutex_lock(&l->lock);
    for (;;) {
        int res;
        enum lead lead = KEPT;
        bool quick, nowait;
        struct nowait_read nr;
        int64_t wait0, now;
        if (just_quick && !l->stop && l->leader && l->spin_ns > 0) {
            /* Having served a quick request: if requests are queued, the leader is reading one and will
             * likely release leadership right after (see the header): wait a little for that instead of
             * sleeping, which would make the next request wake this thread. (Not after a long request:
             * streaming reads and writes keep both CPUs busy encrypting, where a waiting thread would
             * only take CPU from the others.) (Counted in handoff from here: the leader may release for
             * this thread even if it then finds nothing queued; it takes a free leadership below.) */
            atomic_fetch_add_explicit(&l->handoff, 1, memory_order_relaxed);
            pthread_mutex_unlock(&l->lock);
            if (efs_loop_requests_queued(l->se)) {
                int64_t t0 = efs_mono_ns();
                while (atomic_load_explicit(&l->leader, memory_order_relaxed) && efs_mono_ns() - t0 < HANDOFF_NS)
                    cpu_relax();
            }
            pthread_mutex_lock(&l->lock);
            atomic_fetch_sub_explicit(&l->handoff, 1, memory_order_relaxed);
        }
        while (!l->stop && l->leader) {
            l->idle++;
            pthread_cond_wait(&l->cv, &l->lock);
            l->idle--;
        }
        if (l->stop)
            break;
        l->leader = true;
        pthread_mutex_unlock(&l->lock);

        spin(l);
        wait0 = efs_mono_ns();
        pthread_cleanup_push(free_buf, &fbuf);
        (void)pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
        res = fuse_session_exited(l->se) ? 0 : fuse_session_receive_buf(l->se, &fbuf);
        (void)pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        pthread_cleanup_pop(0);
        now = efs_mono_ns();
        if (l->cold >= COLD_AFTER && now - wait0 < l->spin_ns)
            l->cold = 0; /* it would have been caught spinning: spin again */

        if (res == -EINTR || res == -EAGAIN) {
            pthread_mutex_lock(&l->lock);
            l->leader = false;
            if (fuse_session_exited(l->se))
                goto ended;
            continue;
        }
        if (res <= 0) {
            pthread_mutex_lock(&l->lock);
            if (res < 0 && res != -ENODEV)
                l->err = res;
            goto ended;
        }
        COUNT(l, requests);
        quick = !(fbuf.flags & FUSE_BUF_IS_FD) && !served_by_follower(fbuf.mem, (size_t)res);
        /* A small READ is served by the leader in nowait mode, whether or not more are queued: it gives
         * up leadership only if the READ would block (leader_blocks), and asks whether requests are
         * queued only then. (Before, a READ with requests queued always released or passed leadership:
         * at QD16 over cached backing data a hand-off per READ, for ~2 µs of decryption.) */
        nowait = l->nowait_reads && quick && is_read(fbuf.mem, (size_t)res);
        if (!quick)
            lead = PASSED;
        else if (!nowait && !is_forget(fbuf.mem, (size_t)res) && efs_loop_requests_queued(l->se))
            lead = other_back_soon(l, me, now) ? RELEASED : PASSED;
        if (quick)
            atomic_store_explicit(&l->quick_since[me], now ? now : 1, memory_order_relaxed);
        if (lead != KEPT) {
            bool woke = false;
            pthread_mutex_lock(&l->lock);
            if (lead == PASSED)
                woke = pass_leadership(l);
            else
                l->leader = false; /* taken by the first thread to finish, maybe this one */
            pthread_mutex_unlock(&l->lock);
            if (woke)
                COUNT(l, passed);
            else
                COUNT(l, released);
        }
        if (nowait) {
            nr = (struct nowait_read){.l = l, .me = me, .lead = KEPT};
            efs_nowait_begin(leader_blocks, &nr);
            COUNT(l, nowait_reads);
        }
        fuse_session_process_buf(l->se, &fbuf);
        if (nowait) {
            (void)efs_nowait_end();
            lead = nr.lead; /* leadership is another thread's now if the hook gave it up */
        }
        if (quick)
            atomic_store_explicit(&l->quick_since[me], 0, memory_order_relaxed);
        just_quick = quick;
        pthread_mutex_lock(&l->lock);
        if (lead == KEPT)
            l->leader = false; /* and, unless another thread took it meanwhile, take it again at once */
        /* (else: take a free leadership at once, or wait as a follower) */
    }
    pthread_mutex_unlock(&l->lock);
    free(fbuf.mem);
    return NULL;
ended: /* lock held */
    l->stop = true;
    l->leader = false;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->lock);
    sem_post(&l->finished);
    free(fbuf.mem);
    return NULL;
}

static int run(struct fuse_session *se, unsigned max_threads, unsigned spin_us, efs_loop_counts *counts,
               bool nowait_reads)
{
    struct loop l;
    sigset_t all, old;
    int rc;
    unsigned n;

    memset(&l, 0, sizeof l);
    l.se = se;
    l.counts = counts ? counts : &l.own;
    l.spin_ns = (long)(spin_us > 1000 ? 1000 : spin_us) * 1000;
    l.nowait_reads = nowait_reads;
    l.max_threads = max_threads < 1 ? 1 : max_threads > MAX_LOOP_THREADS ? MAX_LOOP_THREADS : max_threads;
    pthread_mutex_init(&l.lock, NULL);
    pthread_cond_init(&l.cv, NULL);
    sem_init(&l.finished, 0, 0);

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    /* Under the lock: the first thread may start more (pass_leadership appends to threads[] under it)
     * before this one would otherwise have counted it. */
    pthread_mutex_lock(&l.lock);
    rc = pthread_create(&l.threads[0], NULL, serve, &l);
    if (!rc) {
        l.nthreads = 1;
        COUNT(&l, threads);
    }
    pthread_mutex_unlock(&l.lock);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        l.err = -rc;
    } else {
        /* Wait for the end: the session ends (a thread posts) or a signal handler exits it (the handler
         * may run on another thread of the daemon: look again every second). */
        for (;;) {
            struct timespec t;
            bool stopped;
            pthread_mutex_lock(&l.lock);
            stopped = l.stop;
            pthread_mutex_unlock(&l.lock);
            if (stopped || fuse_session_exited(se))
                break;
            clock_gettime(CLOCK_REALTIME, &t);
            t.tv_sec += 1;
            (void)sem_timedwait(&l.finished, &t);
        }
        pthread_mutex_lock(&l.lock);
        l.stop = true; /* no thread is started from now on */
        pthread_cond_broadcast(&l.cv);
        n = l.nthreads;
        for (unsigned i = 0; i < n; i++)
            pthread_cancel(l.threads[i]); /* only acts on a thread blocked in read */
        pthread_mutex_unlock(&l.lock);
        for (unsigned i = 0; i < n; i++)
            pthread_join(l.threads[i], NULL);
    }
    sem_destroy(&l.finished);
    pthread_cond_destroy(&l.cv);
    pthread_mutex_destroy(&l.lock);
    if (l.err && l.err != -ENODEV)
        EFS_ERROR("FUSE loop: %s", strerror(-l.err));
    return l.err ? -1 : 0;
}

int efs_loop_run(struct fuse_session *se, unsigned max_threads, unsigned spin_us, efs_loop_counts *counts)
{
    return run(se, max_threads, spin_us, counts, false);
}

int efs_loop_run_nowait_reads(struct fuse_session *se, unsigned max_threads, unsigned spin_us,
                              efs_loop_counts *counts)
{
    return run(se, max_threads, spin_us, counts, true);
}
