/*
 * content.c — plaintext ranges over sealed blocks (see content.h): the read, write and truncate paths of
 * the directory mount, moved here from fuse_fs.c unchanged in what they do, over a backend instead of one
 * descriptor and a block binding instead of a file id.
 */
#include "content.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <sodium.h>

#include "common/log.h"
#include "common/monotime.h"
#include "nowait.h"

#define IO_CHUNK (1u << 20)     /* stored bytes written per call on the plain path */
#define WRITE_BEHIND (8u << 20) /* plaintext bytes of a sequential run between write-behind kicks */

/* A write being served, from entry until it is placed (a list per content, on the writers' stacks). */
struct inflight {
    struct inflight *next;
    uint64_t off, end;
    bool peeked;                 /* has waited once for a queued write (writes_wait_gap) */
};

struct efs_content_group {
    pthread_mutex_t write_lock;  /* the writes lists of every content of the group */
    pthread_cond_t write_placed; /* broadcast when a write leaves its content's list (CLOCK_MONOTONIC) */
    int gap_peekers;             /* writes waiting for a queued write to arrive (write_lock) */
    bool (*requests_queued)(void *arg);
    void *arg;
    _Atomic uint64_t gap_bytes;  /* plaintext bytes written as zeros because a write began past the end */
    _Atomic uint64_t gap_waits;  /* writes that waited for an earlier one to fill their gap */
};

struct efs_content {
    uint32_t bs;
    unsigned flags;
    uint64_t data_off;
    uint64_t size;               /* plaintext size (under *lock) */
    uint64_t wb_start, wb_end;   /* write-behind: the sequential run not yet sent to disk (under *lock) */
    struct inflight *writes;     /* writes being served (group->write_lock) */
    efs_block_bind_fn bind;
    const void *bind_arg;
    pthread_rwlock_t *lock;
    efs_content_group *group;
    char what[64];
};

/* ---- layout ---------------------------------------------------------------------------------- */

uint64_t efs_range_blocks(uint64_t off, uint64_t len, uint32_t bs)
{
    return len ? (off + len - 1) / bs - off / bs + 1 : 0;
}

efs_block_span efs_range_span(uint64_t off, uint64_t len, uint32_t bs, uint64_t i)
{
    uint64_t b = off / bs + i, bstart = b * bs, end = off + len;
    uint64_t from = off > bstart ? off : bstart, to = end < bstart + bs ? end : bstart + bs;
    return (efs_block_span){.blockno = b, .skip = (uint32_t)(from - bstart), .len = (uint32_t)(to - from)};
}

/* ---- the descriptor backend ------------------------------------------------------------------ */

static int fd_of(void *arg) { return (int)(intptr_t)arg; }

/* In nowait mode (nowait.h: the FUSE loop's leader, with other requests possibly queued) the stored
 * bytes are first read with RWF_NOWAIT, which fails with EAGAIN (or reads short) unless they are in the
 * page cache; only then is the thread about to block, and says so before the plain pread. */
static _Atomic bool nowait_unsupported; /* the kernel or the backing filesystem refused RWF_NOWAIT */

static ssize_t fd_read(void *arg, void *buf, size_t len, uint64_t off)
{
    ssize_t n, got = 0;
    if (efs_nowait_active()) {
        if (!atomic_load_explicit(&nowait_unsupported, memory_order_relaxed)) {
            struct iovec v = {buf, len};
            n = preadv2(fd_of(arg), &v, 1, (off_t)off, RWF_NOWAIT);
            if (n == (ssize_t)len || n == 0) /* all of it, or nothing stored there (past the end) */
                return n;
            if (n < 0 && errno == EOPNOTSUPP)
                atomic_store_explicit(&nowait_unsupported, true, memory_order_relaxed);
            else if (n < 0 && errno != EAGAIN)
                return -errno;
            got = n > 0 ? n : 0;
        }
        efs_nowait_will_block();
    }
    n = pread(fd_of(arg), (uint8_t *)buf + got, len - (size_t)got, (off_t)(off + (uint64_t)got));
    return n < 0 ? -errno : got + n;
}

static int fd_writev(void *arg, const struct iovec *iov, int count, uint64_t off)
{
    for (int i = 0; i < count;) {
        int n = count - i > IOV_MAX ? IOV_MAX : count - i;
        size_t want = 0;
        ssize_t w;
        for (int j = 0; j < n; j++)
            want += iov[i + j].iov_len;
        errno = 0;
        w = pwritev(fd_of(arg), iov + i, n, (off_t)off);
        if (w != (ssize_t)want)
            return w < 0 && errno ? -errno : -EIO;
        off += want;
        i += n;
    }
    return 0;
}

static int fd_reserve(void *arg, uint64_t off, uint64_t len)
{
    int rc = posix_fallocate(fd_of(arg), (off_t)off, (off_t)len);
    return rc && rc != EOPNOTSUPP && rc != EINVAL ? -rc : 0;
}

static int fd_set_len(void *arg, uint64_t len) { return ftruncate(fd_of(arg), (off_t)len) ? -errno : 0; }

static int fd_punch(void *arg, uint64_t off, uint64_t len)
{
    return fallocate(fd_of(arg), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) ? -errno : 0;
}

static void fd_writeback(void *arg, uint64_t off, uint64_t len)
{
    (void)sync_file_range(fd_of(arg), (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
}

static int fd_sync(void *arg, bool datasync)
{
    return (datasync ? fdatasync(fd_of(arg)) : fsync(fd_of(arg))) ? -errno : 0;
}

const efs_content_ops efs_content_fd_ops = {
    .read = fd_read, .writev = fd_writev, .reserve = fd_reserve, .set_len = fd_set_len,
    .punch = fd_punch, .writeback = fd_writeback, .sync = fd_sync,
};

static int io_write(const efs_content_io *io, const void *buf, size_t len, uint64_t off)
{
    struct iovec v = {(void *)(uintptr_t)buf, len};
    return io->ops->writev(io->arg, &v, 1, off);
}

/* ---- groups and contents ---------------------------------------------------------------------- */

int efs_content_group_new(bool (*requests_queued)(void *arg), void *arg, efs_content_group **out)
{
    efs_content_group *g = calloc(1, sizeof *g);
    pthread_condattr_t ca;
    *out = NULL;
    if (!g)
        return -ENOMEM;
    pthread_mutex_init(&g->write_lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->write_placed, &ca);
    pthread_condattr_destroy(&ca);
    g->requests_queued = requests_queued;
    g->arg = arg;
    *out = g;
    return 0;
}

void efs_content_group_free(efs_content_group *g)
{
    if (!g)
        return;
    pthread_cond_destroy(&g->write_placed);
    pthread_mutex_destroy(&g->write_lock);
    free(g);
}

uint64_t efs_content_group_gap_bytes(const efs_content_group *g) { return g ? atomic_load(&g->gap_bytes) : 0; }
uint64_t efs_content_group_gap_waits(const efs_content_group *g) { return g ? atomic_load(&g->gap_waits) : 0; }

int efs_content_new(const efs_content_params *p, efs_content **out)
{
    efs_content *c;
    *out = NULL;
    if (p->block_size < 512 || p->block_size > (1u << 20) || (p->block_size & (p->block_size - 1)) || !p->bind ||
        !p->lock || !p->group)
        return -EINVAL;
    c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->bs = p->block_size;
    c->flags = p->flags;
    c->data_off = p->data_off;
    c->size = p->size;
    c->bind = p->bind;
    c->bind_arg = p->bind_arg;
    c->lock = p->lock;
    c->group = p->group;
    snprintf(c->what, sizeof c->what, "%s", p->what ? p->what : "content");
    *out = c;
    return 0;
}

void efs_content_free(efs_content *c) { free(c); }
uint64_t efs_content_size(const efs_content *c) { return c->size; }
uint32_t efs_content_block_size(const efs_content *c) { return c->bs; }

/* ---- reading ---------------------------------------------------------------------------------- */

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* Open stored block b (in, blen + 28 bytes) into pt. */
static int open_block(efs_content *c, uint64_t b, const uint8_t *in, size_t blen, uint8_t *pt)
{
    efs_block_binding bb;
    if ((c->flags & EFS_CONTENT_ZERO_HOLES) && all_zero(in, blen + EFS_BLOCK_OVERHEAD)) {
        memset(pt, 0, blen); /* never written */
        return 0;
    }
    if (c->bind(c->bind_arg, b, &bb))
        return -EIO;
    return efs_block_open(&bb, in, blen + EFS_BLOCK_OVERHEAD, pt);
}

/* Read plaintext [off, off+len) (lock held). Returns bytes read or -errno. The stored blocks of the whole
 * range are read with one backend read and opened one by one. */
static ssize_t read_plain(efs_content *c, const efs_content_io *io, uint8_t *out, size_t len, uint64_t off)
{
    uint64_t bs = c->bs, stored = bs + EFS_BLOCK_OVERHEAD, end, first, last;
    uint64_t ct_off, ct_len, nb;
    uint8_t *ct, *pt;
    size_t done = 0;
    ssize_t n;

    if (off >= c->size)
        return 0;
    end = off + len > c->size ? c->size : off + len;
    first = off / bs;
    last = (end - 1) / bs;
    nb = efs_range_blocks(off, end - off, c->bs);
    ct_off = c->data_off + first * stored;
    ct_len = (last - first) * stored + (c->size - last * bs < bs ? c->size - last * bs : bs) + EFS_BLOCK_OVERHEAD;
    ct = malloc(ct_len);
    pt = malloc(bs);
    if (!ct || !pt) {
        free(ct);
        free(pt);
        return -ENOMEM;
    }
    n = io->ops->read(io->arg, ct, ct_len, ct_off);
    if (n < 0) {
        free(ct);
        free(pt);
        return n;
    }
    for (uint64_t i = 0; i < nb; i++) {
        efs_block_span sp = efs_range_span(off, end - off, c->bs, i);
        uint64_t b = sp.blockno, bstart = b * bs, blen = c->size - bstart < bs ? c->size - bstart : bs;
        uint64_t at = (b - first) * stored;
        bool whole = sp.skip == 0 && sp.len == blen; /* opened straight into out */
        if ((uint64_t)n < at + blen + EFS_BLOCK_OVERHEAD || open_block(c, b, ct + at, blen, whole ? out + done : pt)) {
            EFS_ERROR("%s: block %" PRIu64 " fails authentication (tampered, truncated or moved)", c->what, b);
            if (done)
                sodium_memzero(out, done);
            free(ct);
            sodium_memzero(pt, bs);
            free(pt);
            return -EIO;
        }
        if (!whole)
            memcpy(out + done, pt + sp.skip, sp.len);
        done += sp.len;
    }
    free(ct);
    sodium_memzero(pt, bs);
    free(pt);
    return (ssize_t)done;
}

ssize_t efs_content_read(efs_content *c, const efs_content_io *io, uint8_t *out, size_t len, uint64_t off)
{
    return read_plain(c, io, out, len, off);
}

/* ---- writing --------------------------------------------------------------------------------- */

/* Reserve backing space for growing the content to newsize (lock held exclusively), so that ENOSPC comes
 * before anything is written and leaves the content as it was. */
static int reserve(efs_content *c, const efs_content_io *io, uint64_t newsize)
{
    uint64_t have, need;
    if (newsize <= c->size || !io->ops->reserve)
        return 0;
    have = c->data_off + efs_data_len(c->size, c->bs);
    need = c->data_off + efs_data_len(newsize, c->bs);
    return io->ops->reserve(io->arg, have, need - have);
}

/* Seal one block of plaintext src (blen bytes) into out (blen + 28). */
static int seal_block(efs_content *c, uint64_t b, const uint8_t *src, size_t blen, uint8_t *out)
{
    efs_block_binding bb;
    int rc = c->bind(c->bind_arg, b, &bb);
    return rc ? rc : efs_block_seal(&bb, src, blen, out, out + EFS_NONCE, out + EFS_NONCE + blen);
}

/* Write plaintext (or zeros when buf == NULL) at [off, off+len), extending the content as needed (lock
 * held exclusively). Space for the new extent is reserved first, so ENOSPC leaves the content as it was. */
static int write_plain(efs_content *c, const efs_content_io *io, const uint8_t *buf, size_t len, uint64_t off)
{
    uint64_t bs = c->bs, stored = bs + EFS_BLOCK_OVERHEAD, end = off + len;
    uint64_t newsize = end > c->size ? end : c->size;
    uint64_t start = off < c->size ? off : c->size;
    uint64_t first = start / bs, last;
    uint8_t *out, *pt;
    size_t out_len = 0, out_cap;
    uint64_t out_off = c->data_off + first * stored;
    int rc = 0;

    if (len == 0 && off <= c->size)
        return 0;
    last = (end - 1) / bs;
    rc = reserve(c, io, newsize);
    if (rc)
        return rc;
    out_cap = (last - first + 1 < IO_CHUNK / bs + 1 ? last - first + 1 : IO_CHUNK / bs + 1) * stored;
    out = malloc(out_cap);
    pt = malloc(bs);
    if (!out || !pt) {
        free(out);
        free(pt);
        return -ENOMEM;
    }
    for (uint64_t b = first; b <= last; b++) {
        uint64_t bstart = b * bs;
        uint64_t blen = newsize - bstart < bs ? newsize - bstart : bs;
        uint64_t oldlen = bstart < c->size ? (c->size - bstart < bs ? c->size - bstart : bs) : 0;
        bool covers = off <= bstart && end >= bstart + blen;
        const uint8_t *src = pt;
        if (covers && buf) { /* the whole block comes from the caller: seal it from there */
            src = buf + (bstart - off);
            goto seal;
        }
        if (!covers && oldlen) {
            ssize_t n = read_plain(c, io, pt, oldlen, bstart);
            if (n < 0) {
                rc = (int)n;
                break;
            }
        }
        if (oldlen < blen && !covers)
            memset(pt + oldlen, 0, blen - oldlen);
        if (end > bstart && off < bstart + blen) {
            uint64_t from = off > bstart ? off - bstart : 0;
            uint64_t to = end < bstart + blen ? end - bstart : blen;
            if (buf)
                memcpy(pt + from, buf + (bstart + from - off), to - from);
            else
                memset(pt + from, 0, to - from);
        }
    seal:
        if (out_len + blen + EFS_BLOCK_OVERHEAD > out_cap) {
            rc = io_write(io, out, out_len, out_off);
            if (rc)
                break;
            out_off += out_len;
            out_len = 0;
        }
        rc = seal_block(c, b, src, blen, out + out_len);
        if (rc)
            break;
        out_len += blen + EFS_BLOCK_OVERHEAD;
    }
    if (!rc && out_len)
        rc = io_write(io, out, out_len, out_off);
    if (!rc)
        c->size = newsize;
    sodium_memzero(pt, bs);
    free(pt);
    free(out);
    return rc;
}

/*
 * Sealing outside the lock. The ciphertext of a block that a write covers whole depends only on the
 * block's binding (its key and AAD, fixed while the content exists: for a file its keys and id, the block
 * number) and the new plaintext — not on the content's current bytes or size. So efs_content_write seals
 * those blocks before it takes the lock and holds the lock only to place them (write_sealed): the several
 * WRITEs the kernel's writeback sends for one file at once encrypt on all CPUs instead of one at a time.
 * Placing stays serialised, so concurrent writes still land as if in some serial order.
 *
 * The blocks are sealed in place, in the caller's buffer (for the FUSE daemon: the worker thread's receive
 * buffer, see loop.h), whose plaintext is not needed afterwards. Nonces and tags go to a small per-thread
 * array, and one writev interleaves the two, so a 1 MiB write needs no second megabyte of memory and no
 * copy of its ciphertext.
 */
struct seal_buf {
    size_t cap;
    max_align_t data[];
};

static pthread_key_t seal_key;
static pthread_once_t seal_once = PTHREAD_ONCE_INIT;
static void seal_key_init(void) { (void)pthread_key_create(&seal_key, free); }

/* This thread's scratch memory of at least cap bytes (kept for its next writes), or NULL. */
static void *seal_scratch(size_t cap)
{
    struct seal_buf *b;
    pthread_once(&seal_once, seal_key_init);
    b = pthread_getspecific(seal_key);
    if (b && b->cap >= cap)
        return b->data;
    free(b);
    (void)pthread_setspecific(seal_key, NULL);
    b = malloc(sizeof *b + cap);
    if (!b || pthread_setspecific(seal_key, b)) {
        free(b);
        return NULL;
    }
    b->cap = cap;
    return b->data;
}

/* The whole blocks [a, z) of a write at off, sealed in place by seal_whole. */
struct sealed {
    uint64_t a, z;
    struct iovec *iov; /* 2·count+1 pieces: nonce, ciphertext, tag ‖ next nonce, …, tag */
    size_t niov;
};

/* Seal the whole blocks [a, z) of a write of plaintext buf at off (block-aligned a < z inside it) in
 * place; no lock needed (see above). 0; -ENOMEM with buf untouched; or -EIO: buf may be partly encrypted
 * and the write fails. */
static int seal_whole(efs_content *c, uint8_t *buf, uint64_t off, uint64_t a, uint64_t z, struct sealed *s)
{
    size_t bs = c->bs, count = (size_t)((z - a) / bs);
    size_t niov = 2 * count + 1;
    struct iovec *iov = seal_scratch(niov * sizeof *iov + count * EFS_BLOCK_OVERHEAD);
    uint8_t *meta, *data = buf + (a - off);
    int rc;
    if (!iov)
        return -ENOMEM;
    meta = (uint8_t *)(iov + niov);
    rc = efs_blocks_seal(c->bind, c->bind_arg, a / bs, data, count, bs, meta);
    if (rc)
        return rc == -ENOMEM ? rc : -EIO;
    iov[0] = (struct iovec){meta, EFS_NONCE};
    for (size_t i = 0; i < count; i++) {
        iov[2 * i + 1] = (struct iovec){data + i * bs, bs};
        iov[2 * i + 2] = (struct iovec){meta + i * EFS_BLOCK_OVERHEAD + EFS_NONCE,
                                        i + 1 < count ? EFS_BLOCK_OVERHEAD : EFS_TAG};
    }
    *s = (struct sealed){.a = a, .z = z, .iov = iov, .niov = niov};
    return 0;
}

/* Write [off, off+len) whose whole blocks s->a..s->z seal_whole sealed (lock held exclusively): the
 * partial blocks at either end (and any gap before s->a, as zeros) the plain way, the sealed blocks with
 * one writev. Space for the whole extent is reserved first. */
static int write_sealed(efs_content *c, const efs_content_io *io, const uint8_t *buf, size_t len, uint64_t off,
                        const struct sealed *s)
{
    uint64_t bs = c->bs, stored = bs + EFS_BLOCK_OVERHEAD, end = off + len;
    uint64_t at = c->data_off + s->a / bs * stored;
    int rc = reserve(c, io, end);
    if (!rc && s->a > off)
        rc = write_plain(c, io, buf, (size_t)(s->a - off), off);
    else if (!rc && c->size < s->a) /* a gap: zeros up to the first sealed block */
        rc = write_plain(c, io, NULL, (size_t)(s->a - c->size), c->size);
    if (!rc)
        rc = io->ops->writev(io->arg, s->iov, (int)s->niov, at);
    if (rc)
        return rc;
    if (s->z > c->size)
        c->size = s->z;
    return end > s->z ? write_plain(c, io, buf + (s->z - off), (size_t)(end - s->z), s->z) : 0;
}

int efs_content_truncate(efs_content *c, const efs_content_io *io, uint64_t newsize)
{
    uint64_t bs = c->bs;
    int rc;
    if (newsize == c->size)
        return 0;
    if (newsize > c->size)
        return write_plain(c, io, NULL, (size_t)(newsize - c->size), c->size);
    if (!io->ops->set_len)
        return -EINVAL;
    if (newsize % bs) {
        /* reseal the new last block at its new length */
        uint64_t bstart = newsize / bs * bs;
        size_t keep = (size_t)(newsize - bstart);
        uint8_t *pt = malloc(bs);
        ssize_t n;
        if (!pt)
            return -ENOMEM;
        n = read_plain(c, io, pt, keep, bstart);
        if (n != (ssize_t)keep) {
            free(pt);
            return n < 0 ? (int)n : -EIO;
        }
        rc = io->ops->set_len(io->arg, c->data_off + efs_data_len(bstart, (uint32_t)bs));
        if (rc) {
            sodium_memzero(pt, bs);
            free(pt);
            return rc;
        }
        c->size = bstart;
        rc = write_plain(c, io, pt, keep, bstart);
        sodium_memzero(pt, bs);
        free(pt);
        return rc;
    }
    rc = io->ops->set_len(io->arg, c->data_off + efs_data_len(newsize, (uint32_t)bs));
    if (rc)
        return rc;
    c->size = newsize;
    return 0;
}

int efs_content_discard(efs_content *c, const efs_content_io *io, uint64_t off, uint64_t len)
{
    uint64_t bs = c->bs, end = off + len, a = (off + bs - 1) / bs * bs, z = end / bs * bs;
    int rc = 0;
    if (end < off || end > c->size)
        return -EINVAL;
    if (!len)
        return 0;
    if (!(c->flags & EFS_CONTENT_ZERO_HOLES) || !io->ops->punch || z <= a)
        return write_plain(c, io, NULL, (size_t)len, off);
    if (a > off)
        rc = write_plain(c, io, NULL, (size_t)(a - off), off);
    if (!rc)
        rc = io->ops->punch(io->arg, efs_stored_off(c->data_off, c->bs, a / bs),
                            (z - a) / bs * (bs + EFS_BLOCK_OVERHEAD));
    if (!rc && end > z)
        rc = write_plain(c, io, NULL, (size_t)(end - z), z);
    return rc;
}

/*
 * Out-of-order writes. The kernel's writeback sends several WRITEs of one file at once and the worker
 * threads place them in whatever order they get the lock: a write past the end of the content may come
 * before the one that precedes it. Placed as it comes, it would first fill the gap with sealed zero
 * blocks (holes are stored as such), which the earlier write then overwrites — up to a third of a stream
 * encrypted and written twice. So a write that would leave a gap waits while another write of the same
 * content that starts lower and reaches into the gap is still being served (the lowest never waits, so all
 * finish); if none is, the gap is a real hole and is filled with zero blocks as before.
 */
static void writes_enter(efs_content *c, struct inflight *me)
{
    efs_content_group *g = c->group;
    bool peekers;
    pthread_mutex_lock(&g->write_lock);
    me->next = c->writes;
    c->writes = me;
    peekers = g->gap_peekers > 0;
    pthread_mutex_unlock(&g->write_lock);
    if (peekers) /* this may be the write one of them waits for */
        pthread_cond_broadcast(&g->write_placed);
}

static void writes_leave(efs_content *c, struct inflight *me)
{
    efs_content_group *g = c->group;
    struct inflight **pp;
    bool waiters;
    pthread_mutex_lock(&g->write_lock);
    for (pp = &c->writes; *pp != me; pp = &(*pp)->next)
        ;
    *pp = me->next;
    waiters = c->writes != NULL;
    pthread_mutex_unlock(&g->write_lock);
    if (waiters)
        pthread_cond_broadcast(&g->write_placed);
}

/* Another write in flight starts below me->off and ends past size (it may fill the gap). write_lock held. */
static bool gap_filler(const efs_content *c, const struct inflight *me, uint64_t size)
{
    for (const struct inflight *p = c->writes; p; p = p->next)
        if (p != me && p->off < me->off && p->end > size)
            return true;
    return false;
}

#define GAP_PEEK_NS 500000L /* how long a write past the end waits, once, for queued requests to be read */

/* me leaves a gap at the end of the content (lock held exclusively). If a write that may fill it is in
 * flight, wait (without the lock) until it has been placed. If none is but the group says requests are
 * queued that no thread has started yet (FUSE over io_uring: always), wait once up to GAP_PEEK_NS for such
 * a write to arrive. Returns true if the lock was released and is held again (the caller rechecks), false
 * at once if there is nothing to wait for. */
static bool writes_wait_gap(efs_content *c, struct inflight *me)
{
    efs_content_group *g = c->group;
    uint64_t size = c->size;
    bool released = false;
    pthread_mutex_lock(&g->write_lock);
    if (!gap_filler(c, me, size) && !me->peeked && g->requests_queued && g->requests_queued(g->arg)) {
        int64_t until = efs_mono_ns() + GAP_PEEK_NS; /* write_placed waits on CLOCK_MONOTONIC */
        struct timespec dl = {.tv_sec = until / 1000000000, .tv_nsec = until % 1000000000};
        me->peeked = true;
        pthread_rwlock_unlock(c->lock);
        released = true;
        g->gap_peekers++;
        while (!gap_filler(c, me, size) && pthread_cond_timedwait(&g->write_placed, &g->write_lock, &dl) == 0)
            ;
        g->gap_peekers--;
    }
    if (gap_filler(c, me, size)) {
        if (!released)
            pthread_rwlock_unlock(c->lock);
        released = true;
        while (gap_filler(c, me, size))
            pthread_cond_wait(&g->write_placed, &g->write_lock);
    }
    pthread_mutex_unlock(&g->write_lock);
    if (released)
        pthread_rwlock_wrlock(c->lock);
    return released;
}

int efs_content_write(efs_content *c, const efs_content_io *io, uint8_t *buf, size_t size, uint64_t off)
{
    uint64_t kick_from = 0, kick_to = 0, bs = c->bs;
    uint64_t a = (off + bs - 1) / bs * bs, z = (off + size) / bs * bs;
    struct sealed sealed = {0};
    bool whole = false;
    struct inflight me = {.off = off, .end = off + size};
    int rc = 0;
    writes_enter(c, &me);
    if (z > a) { /* see "Sealing outside the lock" */
        rc = seal_whole(c, buf, off, a, z, &sealed);
        whole = !rc;
        if (rc == -ENOMEM)
            rc = 0; /* nothing was sealed yet: write the plain way */
    }
    pthread_rwlock_wrlock(c->lock);
    while (!rc && me.off > c->size && writes_wait_gap(c, &me))
        c->group->gap_waits++; /* an earlier write being served filled (part of) the gap */
    if (!rc && me.off > c->size)
        c->group->gap_bytes += me.off - c->size;
    if (!rc)
        rc = whole ? write_sealed(c, io, buf, size, off, &sealed) : write_plain(c, io, buf, size, off);
    if (!rc) {
        if (off != c->wb_end) /* not a continuation: a new run starts here */
            c->wb_start = off;
        c->wb_end = off + size;
        if (c->wb_end - c->wb_start >= WRITE_BEHIND) {
            kick_from = c->data_off + efs_data_len(c->wb_start / bs * bs, c->bs);
            kick_to = c->data_off + efs_data_len(c->wb_end, c->bs);
            c->wb_start = c->wb_end;
        }
    }
    pthread_rwlock_unlock(c->lock);
    writes_leave(c, &me);
    /* Write-behind for sequential streams: send the run's ciphertext to the disk now (asynchronously; the
     * call waits only when the device queue is full, which paces the writer). Otherwise a stream's
     * ciphertext sits dirty in the backing page cache until fsync, and the disk idles while the daemon
     * encrypts, then the daemon idles while the disk writes — two stages in series instead of a pipeline.
     * Random writes start no writeback: pages under writeback would make their rewrites wait. */
    if (kick_to > kick_from && io->ops->writeback)
        io->ops->writeback(io->arg, kick_from, kick_to - kick_from);
    return rc;
}
