/*
 * uring.c — FUSE over io_uring (kernel 6.14+): the kernel hands each request to a ring entry registered
 * for the CPU its caller runs on, and the daemon returns the reply and fetches the next request with one
 * io_uring_enter — no read(2) and writev(2) pair, and a same-CPU handoff instead of a cross-CPU wake-up
 * (scripts/bench-fuse-rtt: 25-60 % off a round trip with one client). Experimental and opt-in:
 * ENVELOPEFS_IO_URING=1 at mount, and root must have set the fuse module's enable_uring.
 *
 * libfuse 3.14 knows nothing of it, so this sits beside libfuse's request processing:
 *  - fuseio.c (libfuse's custom I/O) adds FUSE_OVER_IO_URING to the INIT reply and, once it is written,
 *    starts the threads here; every later reply passes through efs_uring_capture first.
 *  - Each thread owns an io_uring (128-byte SQEs) with one registered entry (a header buffer and a
 *    payload buffer) for one CPU queue; RING_THREADS threads per queue, so a request that blocks (a KMS
 *    call, the write path's wait for a gap) does not hold up its CPU's next request: the kernel gives a
 *    queue's requests to any of its free entries. Threads are pinned to their queue's CPU. Four, not
 *    two: writeback WRITEs arrive on both CPUs' queues in any order, and a WRITE past a gap waits for
 *    its filler (content.c), which must find a free entry to arrive.
 *  - A request arrives as three parts: the fuse_in_header and the operation's first argument in the
 *    header buffer, the rest in the payload. The payload buffer sits HDR_ROOM bytes into a larger
 *    allocation, and the two small parts are copied right before it, so libfuse gets the request as
 *    /dev/fuse would deliver it (fuse_session_process_buf) without the payload being copied.
 *  - The handler's reply (libfuse's writev, captured by this thread) is copied into the entry, then
 *    committed by COMMIT_AND_FETCH, which also asks for the next request. Every handler of this daemon
 *    replies in the thread that runs it (mountfs.h); a request left unanswered gets EIO.
 *  - FORGET and INTERRUPT still come through /dev/fuse (loop.c), as does everything before every queue
 *    has registered.
 * Shutdown: unmounting ends the connection, which completes every entry with an error; an eventfd per
 * thread wakes it otherwise.
 *
 * The io_uring ABI of the kernel's uapi fuse.h (protocol 7.42+) is in uring_abi.h: Debian 12's headers
 * predate it.
 */
#include "uring.h"

#include <errno.h>
#include <liburing.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "killpriv.h"
#include "uring_abi.h"

#define RING_THREADS 4       /* per CPU queue, one entry each */
#define HDR_ROOM 4096        /* room before the payload for the rebuilt header and first argument */
#define STOP_TAG UINT64_MAX  /* user_data of the eventfd read that stops a thread */

struct ring_thread {
    struct efs_uring *u;
    unsigned qid;
    pthread_t thread;
    bool running;
    int efd;                        /* eventfd: written to stop the thread */
    uint64_t efd_val;
    struct io_uring ring;
    struct efs_uring_req_header *hdr;   /* registered buffer 0 */
    char *buf;                      /* HDR_ROOM bytes, then the payload (registered buffer 1) */
    struct iovec iov[2];
    uint64_t unique;                /* the request being served, 0 between requests */
    bool replied;
};

struct efs_uring {
    struct fuse_session *se;
    int fd;
    size_t payload;
    unsigned nqueues, n;
    _Atomic uint64_t requests;
    struct ring_thread t[];
};

static __thread struct ring_thread *serving; /* this thread's entry while its handler runs */

/* Queues are per possible CPU (the kernel's nr_cpu_ids): "0-N" in /sys/devices/system/cpu/possible. */
static unsigned possible_cpus(void)
{
    FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
    unsigned lo = 0, hi = 0;
    long n = sysconf(_SC_NPROCESSORS_CONF);
    if (f) {
        int k = fscanf(f, "%u-%u", &lo, &hi);
        fclose(f);
        if (k == 2 && hi < 4096)
            return hi + 1;
        if (k == 1)
            return 1;
    }
    return n > 0 ? (unsigned)n : 1;
}

bool efs_uring_wanted(void)
{
    const char *env = getenv("ENVELOPEFS_IO_URING");
    FILE *f;
    int c = 0;
    if (!env || strcmp(env, "1"))
        return false;
    f = fopen("/sys/module/fuse/parameters/enable_uring", "re");
    if (f) {
        c = fgetc(f);
        fclose(f);
    }
    if (c != 'Y') {
        EFS_WARN("ENVELOPEFS_IO_URING=1, but the kernel's fuse.enable_uring is %s: serving over /dev/fuse",
                 f ? "off (as root: echo Y > /sys/module/fuse/parameters/enable_uring)" : "not there (kernel < 6.14)");
        return false;
    }
    return true;
}

efs_uring *efs_uring_new(struct fuse_session *se, int fd, size_t max_payload)
{
    unsigned nq = possible_cpus();
    efs_uring *u = calloc(1, sizeof *u + (size_t)nq * RING_THREADS * sizeof(struct ring_thread));
    if (!u)
        return NULL;
    u->se = se;
    u->fd = fd;
    u->payload = max_payload;
    u->nqueues = nq;
    u->n = nq * RING_THREADS;
    for (unsigned i = 0; i < u->n; i++) {
        u->t[i].u = u;
        u->t[i].qid = i % nq;
        u->t[i].efd = -1;
    }
    return u;
}

static struct io_uring_sqe *sqe_of(struct ring_thread *t)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
    if (!sqe) { /* full (it never is: at most two in flight): hand them over and retry */
        (void)io_uring_submit(&t->ring);
        sqe = io_uring_get_sqe(&t->ring);
    }
    return sqe;
}

/* Queue a REGISTER or COMMIT_AND_FETCH of this thread's entry. 0 or -1. */
static int prep_cmd(struct ring_thread *t, uint32_t op, uint64_t commit_id)
{
    struct io_uring_sqe *sqe = sqe_of(t);
    struct efs_uring_cmd_req req = {.commit_id = commit_id, .qid = (uint16_t)t->qid};
    if (!sqe)
        return -1;
    memset(sqe, 0, 2 * sizeof *sqe); /* a 128-byte SQE */
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = t->u->fd;
    sqe->cmd_op = op;
    sqe->user_data = 0;
    if (op == EFS_URING_CMD_REGISTER) {
        sqe->addr = (uint64_t)(uintptr_t)t->iov;
        sqe->len = 2;
    }
    memcpy(sqe->cmd, &req, sizeof req);
    return 0;
}

bool efs_uring_capture(const struct iovec *iov, int count)
{
    struct ring_thread *t = serving;
    struct fuse_out_header oh;
    size_t at = 0;
    if (!t || !t->unique || count < 1 || iov[0].iov_len < sizeof oh)
        return false;
    memcpy(&oh, iov[0].iov_base, sizeof oh);
    if (oh.unique != t->unique)
        return false;
    /* The out header to the header buffer; everything after it, in order, to the payload buffer. */
    for (int i = 0; i < count; i++) {
        const char *p = iov[i].iov_base;
        size_t len = iov[i].iov_len;
        if (i == 0)
            p += sizeof oh, len -= sizeof oh;
        if (len > t->u->payload - at) { /* cannot happen (replies fit max_write); answer EIO, not garbage */
            oh.error = -EIO;
            oh.len = sizeof oh;
            at = 0;
            break;
        }
        memcpy(t->buf + HDR_ROOM + at, p, len);
        at += len;
    }
    memcpy(t->hdr->in_out, &oh, sizeof oh);
    t->hdr->ent.payload_sz = (uint32_t)at;
    t->replied = true;
    return true;
}

/* Serve the request now in t's entry; its reply is captured. */
static void serve(struct ring_thread *t)
{
    struct efs_uring_req_header *hd = t->hdr;
    struct fuse_in_header ih;
    struct fuse_buf fb;
    size_t oplen, psz = hd->ent.payload_sz;
    char *start;
    memcpy(&ih, hd->in_out, sizeof ih);
    if (ih.len < sizeof ih + psz || ih.len - sizeof ih - psz > sizeof hd->op_in || psz > t->u->payload) {
        EFS_ERROR("io_uring: malformed request (opcode %u, len %u, payload %zu)", ih.opcode, ih.len, psz);
        t->replied = false; /* answered EIO below: the handler never sees it */
        goto noreply;
    }
    oplen = ih.len - sizeof ih - psz;
    start = t->buf + HDR_ROOM - sizeof ih - oplen;
    memcpy(start, &ih, sizeof ih);
    memcpy(start + sizeof ih, hd->op_in, oplen);
    memset(&fb, 0, sizeof fb);
    fb.mem = start;
    fb.size = ih.len;
    efs_killpriv_note_request(start, fb.size);
    t->unique = ih.unique;
    t->replied = false;
    serving = t;
    fuse_session_process_buf(t->u->se, &fb);
    serving = NULL;
    t->unique = 0;
    t->u->requests++;
noreply:
    if (!t->replied) { /* no handler here leaves a request unanswered; should one, the caller gets EIO */
        struct fuse_out_header oh = {.len = sizeof oh, .error = -EIO, .unique = ih.unique};
        memcpy(hd->in_out, &oh, sizeof oh);
        hd->ent.payload_sz = 0;
    }
}

static void *run(void *arg)
{
    struct ring_thread *t = arg;
    struct io_uring_sqe *sqe;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(t->qid, &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set); /* same-CPU handoff */
    if (prep_cmd(t, EFS_URING_CMD_REGISTER, 0) || !(sqe = sqe_of(t)))
        return NULL;
    io_uring_prep_read(sqe, t->efd, &t->efd_val, sizeof t->efd_val, 0);
    sqe->user_data = STOP_TAG;
    if (io_uring_submit(&t->ring) < 0)
        return NULL;
    for (;;) {
        struct io_uring_cqe *cqe;
        uint64_t tag;
        int res, rc = io_uring_wait_cqe(&t->ring, &cqe);
        if (rc == -EINTR)
            continue;
        if (rc)
            break;
        tag = cqe->user_data;
        res = cqe->res;
        io_uring_cqe_seen(&t->ring, cqe);
        if (tag == STOP_TAG)
            break;
        if (res < 0) { /* the connection ended (unmount, abort), or the kernel refused the entry */
            if (res != -ENOTCONN && res != -ECANCELED && res != -ENODEV)
                EFS_ERROR("io_uring queue %u: %s", t->qid, strerror(-res));
            break;
        }
        serve(t);
        if (prep_cmd(t, EFS_URING_CMD_COMMIT_AND_FETCH, t->hdr->ent.commit_id) || io_uring_submit(&t->ring) < 0)
            break;
    }
    return NULL;
}

int efs_uring_start(efs_uring *u)
{
    unsigned started = 0;
    for (unsigned i = 0; i < u->n; i++) {
        struct ring_thread *t = &u->t[i];
        int rc;
        t->hdr = aligned_alloc(4096, 4096);
        t->buf = aligned_alloc(4096, HDR_ROOM + u->payload);
        t->efd = eventfd(0, EFD_CLOEXEC);
        if (!t->hdr || !t->buf || t->efd < 0)
            break;
        memset(t->hdr, 0, 4096);
        t->iov[0] = (struct iovec){t->hdr, sizeof *t->hdr};
        t->iov[1] = (struct iovec){t->buf + HDR_ROOM, u->payload};
        rc = io_uring_queue_init(4, &t->ring, IORING_SETUP_SQE128);
        if (rc) {
            EFS_WARN("io_uring: cannot set up a ring: %s", strerror(-rc));
            break;
        }
        if (pthread_create(&t->thread, NULL, run, t)) {
            io_uring_queue_exit(&t->ring);
            break;
        }
        t->running = true;
        started++;
    }
    if (started < u->n) {
        EFS_WARN("io_uring: %u of %u ring threads started; serving over /dev/fuse", started, u->n);
        return -ENOMEM;
    }
    EFS_INFO("FUSE over io_uring: %u queues, %u ring threads", u->nqueues, u->n);
    return 0;
}

uint64_t efs_uring_requests(const efs_uring *u) { return u ? u->requests : 0; }

void efs_uring_free(efs_uring *u)
{
    if (!u)
        return;
    for (unsigned i = 0; i < u->n; i++) {
        struct ring_thread *t = &u->t[i];
        if (t->running) {
            uint64_t one = 1;
            if (write(t->efd, &one, sizeof one) != sizeof one)
                EFS_WARN("io_uring: cannot wake ring thread %u", i);
            pthread_join(t->thread, NULL);
            io_uring_queue_exit(&t->ring);
        }
        if (t->efd >= 0)
            close(t->efd);
        free(t->hdr);
        free(t->buf);
    }
    free(u);
}
