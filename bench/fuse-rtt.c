/*
 * fuse-rtt.c — what one FUSE request round trip costs on this machine over each kernel transport, for
 * scripts/bench-fuse-rtt: the classic /dev/fuse read/writev loop (blocking, or spinning 20 µs on a
 * non-blocking descriptor before it sleeps, as envelopefs's own loop does) and FUSE over io_uring (kernel
 * 6.14+, `fuse.enable_uring`; one thread per CPU queue, pinned, one io_uring each, a request fetched and
 * the previous reply committed in one io_uring_enter).
 *
 * A raw FUSE server, no libfuse: the root directory holds one file, "f"; every other name is ENOENT; no
 * entry or attribute is cached, so each stat(2) of the client is one LOOKUP (ENOENT) or a LOOKUP and a
 * GETATTR (the file). Not a filesystem: the server answers only INIT, LOOKUP, GETATTR and FORGET.
 *
 *   fuse-rtt serve dev|devspin|uring MOUNTPOINT    (root; runs until unmounted)
 *   fuse-rtt client PATH COUNT                     (prints µs per stat)
 *
 * The io_uring ABI (kernel uapi fuse.h, protocol 7.42+) comes from fs/uring_abi.h: Debian 12's headers
 * are older.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "uring_abi.h" /* fs/: the io_uring part of the kernel ABI */

#define PAYLOAD (1u << 20) /* ≥ max_write and max_pages × 4 KiB */
#define SPIN_NS 20000
#define ENTRIES 2          /* ring entries per queue */

static int g_fd, g_uring, g_spin;

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void fill_attr(struct fuse_attr *a, uint64_t ino)
{
    memset(a, 0, sizeof *a);
    a->ino = ino;
    a->mode = ino == FUSE_ROOT_ID ? (S_IFDIR | 0755) : (S_IFREG | 0644);
    a->nlink = ino == FUSE_ROOT_ID ? 2 : 1;
    a->size = ino == FUSE_ROOT_ID ? 0 : 4096;
    a->blksize = 4096;
}

/* One request: h, then its arguments at arg (NUL-terminated for names). The reply (out header, then its
 * arguments) goes to out; returns its length, 0 for none (FORGET). */
static size_t handle(const struct fuse_in_header *h, const char *arg, char *out)
{
    struct fuse_out_header *oh = (struct fuse_out_header *)out;
    char *o = out + sizeof *oh;
    size_t olen = 0;
    int err = 0;
    switch (h->opcode) {
    case FUSE_INIT: {
        const struct fuse_init_in *in = (const struct fuse_init_in *)arg;
        struct fuse_init_out io;
        memset(&io, 0, sizeof io);
        io.major = FUSE_KERNEL_VERSION;
        io.minor = in->minor < 44 ? in->minor : 44;
        io.max_readahead = in->max_readahead;
        io.flags = FUSE_INIT_EXT | FUSE_MAX_PAGES | FUSE_BIG_WRITES | FUSE_ASYNC_READ;
        io.flags2 = g_uring ? EFS_FUSE_OVER_IO_URING_FLAGS2 : 0;
        io.max_write = PAYLOAD;
        io.max_pages = 256;
        io.max_background = 16;
        io.congestion_threshold = 12;
        io.time_gran = 1;
        memcpy(o, &io, sizeof io);
        olen = sizeof io;
        break;
    }
    case FUSE_LOOKUP:
        if (h->nodeid == FUSE_ROOT_ID && !strcmp(arg, "f")) {
            struct fuse_entry_out e;
            memset(&e, 0, sizeof e);
            e.nodeid = 2;
            fill_attr(&e.attr, 2);
            memcpy(o, &e, sizeof e);
            olen = sizeof e;
        } else {
            err = -ENOENT;
        }
        break;
    case FUSE_GETATTR: {
        struct fuse_attr_out a;
        memset(&a, 0, sizeof a);
        fill_attr(&a.attr, h->nodeid);
        memcpy(o, &a, sizeof a);
        olen = sizeof a;
        break;
    }
    case FUSE_FORGET:
    case FUSE_BATCH_FORGET:
        return 0;
    default:
        err = -ENOSYS;
    }
    oh->error = err;
    oh->unique = h->unique;
    oh->len = (uint32_t)(sizeof *oh + (err ? 0 : olen));
    return oh->len;
}

/* /dev/fuse: INIT always; every request in dev/devspin mode; with io_uring, forgets. */
static void *dev_loop(void *arg)
{
    char *buf = malloc(PAYLOAD + 4096 + 1), out[512]; /* +1: names are NUL-terminated in place */
    (void)arg;
    if (!buf)
        return NULL;
    for (;;) {
        ssize_t n = read(g_fd, buf, PAYLOAD + 4096);
        size_t r;
        if (n < 0 && errno == EAGAIN) { /* devspin: poll the descriptor for a while before sleeping */
            int64_t t0 = now_ns();
            while ((n = read(g_fd, buf, PAYLOAD + 4096)) < 0 && errno == EAGAIN && now_ns() - t0 < SPIN_NS)
                ;
            if (n < 0 && errno == EAGAIN) {
                struct pollfd pf = {.fd = g_fd, .events = POLLIN};
                (void)poll(&pf, 1, -1);
                continue;
            }
        }
        if (n < 0) {
            if (errno == EINTR || errno == ENOENT)
                continue;
            break; /* ENODEV: unmounted */
        }
        buf[n] = 0;
        r = handle((const struct fuse_in_header *)buf, buf + sizeof(struct fuse_in_header), out);
        if (r && write(g_fd, out, r) < 0 && errno != ENOENT)
            perror("fuse-rtt: reply");
    }
    free(buf);
    return NULL;
}

struct queue {
    int qid;
    struct io_uring ring;
    struct efs_uring_req_header *hdr[ENTRIES];
    char *payload[ENTRIES];
    struct iovec iov[ENTRIES][2];
};

static void prep_cmd(struct queue *q, int ent, uint32_t op, uint64_t commit_id)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring); /* 128 bytes: IORING_SETUP_SQE128 */
    struct efs_uring_cmd_req req = {.commit_id = commit_id, .qid = (uint16_t)q->qid};
    if (!sqe) { /* the submission queue is full: hand it to the kernel and take a slot again */
        (void)io_uring_submit(&q->ring);
        sqe = io_uring_get_sqe(&q->ring);
        if (!sqe)
            abort();
    }
    memset(sqe, 0, 2 * sizeof *sqe);
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = g_fd;
    sqe->cmd_op = op;
    sqe->user_data = (uint64_t)ent;
    if (op == EFS_URING_CMD_REGISTER) {
        sqe->addr = (uint64_t)(uintptr_t)q->iov[ent];
        sqe->len = 2;
    }
    memcpy((char *)sqe->cmd, &req, sizeof req);
}

static void *uring_loop(void *arg)
{
    struct queue *q = arg;
    cpu_set_t set;
    int rc;
    CPU_ZERO(&set);
    CPU_SET(q->qid, &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    rc = io_uring_queue_init(2 * ENTRIES, &q->ring, IORING_SETUP_SQE128);
    if (rc) {
        fprintf(stderr, "fuse-rtt: io_uring_queue_init: %s\n", strerror(-rc));
        return NULL;
    }
    for (int e = 0; e < ENTRIES; e++) {
        q->hdr[e] = aligned_alloc(4096, 4096);
        q->payload[e] = aligned_alloc(4096, PAYLOAD);
        if (!q->hdr[e] || !q->payload[e])
            return NULL;
        memset(q->hdr[e], 0, 4096);
        q->iov[e][0] = (struct iovec){q->hdr[e], sizeof(struct efs_uring_req_header)};
        q->iov[e][1] = (struct iovec){q->payload[e], PAYLOAD};
        prep_cmd(q, e, EFS_URING_CMD_REGISTER, 0);
    }
    (void)io_uring_submit(&q->ring);
    for (;;) {
        struct io_uring_cqe *cqe;
        struct efs_uring_req_header *hd;
        const struct fuse_in_header *h;
        char in[4200], out[512];
        size_t oplen, r;
        uint32_t psz;
        int e;
        rc = io_uring_wait_cqe(&q->ring, &cqe);
        if (rc == -EINTR)
            continue;
        if (rc || cqe->res < 0) {
            if (!rc && cqe->res != -ENOTCONN && cqe->res != -ENODEV)
                fprintf(stderr, "fuse-rtt: queue %d: %s\n", q->qid, strerror(-cqe->res));
            break; /* unmounted */
        }
        e = (int)cqe->user_data;
        io_uring_cqe_seen(&q->ring, cqe);
        /* The request as /dev/fuse would deliver it: header, the op's first argument, the payload. */
        hd = q->hdr[e];
        h = (const struct fuse_in_header *)hd->in_out;
        psz = hd->ent.payload_sz;
        oplen = h->len >= sizeof *h + psz ? h->len - sizeof *h - psz : 0;
        if (oplen > sizeof hd->op_in || psz > sizeof in - sizeof hd->op_in - 1)
            oplen = psz = 0;
        memcpy(in, hd->op_in, oplen);
        memcpy(in + oplen, q->payload[e], psz);
        in[oplen + psz] = 0;
        r = handle(h, in, out);
        memcpy(hd->in_out, out, sizeof(struct fuse_out_header));
        memcpy(q->payload[e], out + sizeof(struct fuse_out_header), r - sizeof(struct fuse_out_header));
        hd->ent.payload_sz = (uint32_t)(r - sizeof(struct fuse_out_header));
        prep_cmd(q, e, EFS_URING_CMD_COMMIT_AND_FETCH, hd->ent.commit_id);
        (void)io_uring_submit(&q->ring);
    }
    io_uring_queue_exit(&q->ring);
    return NULL;
}

static int serve(const char *mode, const char *mnt)
{
    char opts[128];
    pthread_t dev;
    int ncpu = (int)sysconf(_SC_NPROCESSORS_CONF);
    g_uring = !strcmp(mode, "uring");
    g_spin = !strcmp(mode, "devspin");
    if (!g_uring && !g_spin && strcmp(mode, "dev"))
        return 2;
    g_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (g_fd < 0) {
        perror("fuse-rtt: /dev/fuse");
        return 1;
    }
    snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0", g_fd);
    if (mount("fuse-rtt", mnt, "fuse.fuse-rtt", MS_NOSUID | MS_NODEV, opts)) {
        perror("fuse-rtt: mount");
        return 1;
    }
    if (g_spin)
        (void)fcntl(g_fd, F_SETFL, O_NONBLOCK);
    if (pthread_create(&dev, NULL, dev_loop, NULL))
        return 1;
    if (g_uring) {
        usleep(200000); /* INIT answered: the ring can be registered */
        for (int i = 0; i < ncpu; i++) {
            struct queue *q = calloc(1, sizeof *q);
            pthread_t t;
            if (!q)
                return 1;
            q->qid = i;
            if (pthread_create(&t, NULL, uring_loop, q))
                return 1;
            (void)pthread_detach(t);
        }
    }
    pthread_join(dev, NULL);
    return 0;
}

static int client(const char *path, long n)
{
    struct stat st;
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++)
        (void)stat(path, &st);
    printf("%.2f\n", (double)(now_ns() - t0) / 1e3 / (double)n);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "serve"))
        return serve(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "client"))
        return client(argv[2], atol(argv[3]));
    fprintf(stderr, "usage: fuse-rtt serve dev|devspin|uring MOUNTPOINT | fuse-rtt client PATH COUNT\n");
    return 2;
}
