/*
 * content.h — the content layer: a plaintext byte range stored as authenticated blocks (blockcrypt.h),
 * FUSE-free. Read, write, truncate, reserve and discard of sealed blocks; the list of writes in flight
 * and the wait of a write past the end for the one that fills its gap; sealing of whole blocks outside
 * the lock; write-behind of sequential runs. Used by the directory mount (one backing file per regular
 * file, fuse_fs.c) and by volumes (512 KiB chunk files), which differ only in their backend
 * (efs_content_ops: stored bytes at an offset) and their block binding (key and AAD per block).
 *
 * Stored layout: block b (plaintext bytes [b·bs, b·bs + bs)) is stored at data_off + b·(bs + 28) as
 * nonce (12) ‖ ciphertext ‖ tag (16); the last block may be shorter (a file); there are no gaps.
 *
 * Ownership: efs_content_new copies its parameters except the pointers, which are borrowed and must
 * outlive the content: the group, the lock, the binding argument (and the keys it hands out).
 *
 * Locking: each content is guarded by its owner's rwlock (params.lock), which the owner may also use for
 * its own fields. efs_content_read: held shared (or exclusively). efs_content_write: NOT held — it seals
 * outside, then takes it exclusively itself (and may release and retake it while it waits for a gap).
 * Everything else: held exclusively. A group's internal mutex nests inside every content lock:
 *     owner's locks (e.g. inodes.c's table_lock) → content lock (rw) → group write_lock.
 * Nothing here calls back into the owner with a lock of its own held, except bind (with rw held or not).
 *
 * Errors: 0 / -errno. A block that fails authentication (tampered, torn, moved, truncated) is -EIO, with a
 * log line naming params.what and the block; the backend's errors pass through.
 */
#ifndef ENVELOPEFS_FS_CONTENT_H
#define ENVELOPEFS_FS_CONTENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "blockcrypt.h"

/* ---- layout arithmetic (pure) --------------------------------------------------------------- */

/* One block's part of a plaintext range (gocryptfs's ExplodePlainRange shape). */
typedef struct efs_block_span {
    uint64_t blockno;
    uint32_t skip; /* plaintext bytes of the block before the range */
    uint32_t len;  /* plaintext bytes of the block inside the range (1 … bs − skip) */
} efs_block_span;

/* Number of blocks that the range [off, off+len) touches (0 for len 0). bs: a power of two. */
uint64_t efs_range_blocks(uint64_t off, uint64_t len, uint32_t bs);
/* The i-th (0-based, i < efs_range_blocks) block span of [off, off+len). */
efs_block_span efs_range_span(uint64_t off, uint64_t len, uint32_t bs, uint64_t i);
/* Stored offset of block b. */
static inline uint64_t efs_stored_off(uint64_t data_off, uint32_t bs, uint64_t b)
{
    return data_off + b * ((uint64_t)bs + EFS_BLOCK_OVERHEAD);
}

/* ---- backend: stored bytes at an offset ------------------------------------------------------ */

typedef struct efs_content_ops {
    /* Read up to len stored bytes at off into buf: the count read, short only where nothing is stored
     * further (end of file), or -errno. A backend with holes (absent chunk files) returns zeros there. */
    ssize_t (*read)(void *arg, void *buf, size_t len, uint64_t off);
    /* Write all n pieces of iov at off: 0, or -errno (-EIO for a short write). */
    int (*writev)(void *arg, const struct iovec *iov, int n, uint64_t off);
    /* Reserve stored bytes [off, off+len) so that writing them cannot fail for space: 0 (also when the
     * backend cannot reserve) or -errno (-ENOSPC). NULL: nothing to reserve. */
    int (*reserve)(void *arg, uint64_t off, uint64_t len);
    /* Set the stored length to len (truncate). NULL: a fixed-size store (efs_content_truncate: -EINVAL). */
    int (*set_len)(void *arg, uint64_t len);
    /* Make [off, off+len) read as zeros and free its space. NULL: efs_content_discard writes zero blocks. */
    int (*punch)(void *arg, uint64_t off, uint64_t len);
    /* Start writing [off, off+len) to stable storage, asynchronously (advice; may be NULL). */
    void (*writeback)(void *arg, uint64_t off, uint64_t len);
    /* Make everything written durable (datasync: data only). */
    int (*sync)(void *arg, bool datasync);
} efs_content_ops;

/* A backend for one call: the directory mount passes the descriptor of the handle serving the request. */
typedef struct efs_content_io {
    const efs_content_ops *ops;
    void *arg;
} efs_content_io;

/* The backend of one file descriptor: pread, pwritev, posix_fallocate, ftruncate, punch hole,
 * sync_file_range, f(data)sync. The descriptor stays the caller's. */
extern const efs_content_ops efs_content_fd_ops;
static inline efs_content_io efs_content_fd_io(int fd)
{
    return (efs_content_io){&efs_content_fd_ops, (void *)(intptr_t)fd};
}

/* ---- a group: the writes in flight of many contents (one mount, one volume) ------------------ */

typedef struct efs_content_group efs_content_group;

/* requests_queued(arg): may a write to any content of the group be waiting that no thread has started
 * serving yet (FUSE: requests unread in /dev/fuse, or always over io_uring)? Then a write past the end
 * waits once, briefly, for it before filling a gap with zeros. NULL: never wait for unstarted writes. */
int efs_content_group_new(bool (*requests_queued)(void *arg), void *arg, efs_content_group **out)
    __attribute__((warn_unused_result));
void efs_content_group_free(efs_content_group *g); /* no content of it may remain; NULL: no-op */
/* Counters (tests, stats): plaintext bytes written as zeros because a write began past the end;
 * writes that waited for an earlier one to fill their gap. */
uint64_t efs_content_group_gap_bytes(const efs_content_group *g);
uint64_t efs_content_group_gap_waits(const efs_content_group *g);

/* ---- a content ------------------------------------------------------------------------------ */

typedef struct efs_content efs_content;

enum {
    /* A stored block of all zero bytes (never written: a hole of the backend) reads as bs zero bytes
     * instead of failing authentication. For volumes; the directory mount stores holes as sealed zeros
     * and must not use it (an attacker could zero a block). */
    EFS_CONTENT_ZERO_HOLES = 1u << 0,
};

typedef struct efs_content_params {
    uint32_t block_size;        /* plaintext bytes per block: a power of two, 512 … 1 MiB */
    uint64_t data_off;          /* stored offset of block 0 (the file header's length; 0 for volumes) */
    uint64_t size;              /* plaintext size now */
    unsigned flags;             /* EFS_CONTENT_* */
    efs_block_bind_fn bind;     /* key and AAD of each block (efs_file_bind for the directory mount) */
    const void *bind_arg;       /* borrowed */
    pthread_rwlock_t *lock;     /* borrowed: the owner's lock guarding this content (see Locking) */
    efs_content_group *group;   /* borrowed */
    const char *what;           /* names it in log lines ("file (inode 12)"); copied, truncated to 63 */
} efs_content_params;

int efs_content_new(const efs_content_params *p, efs_content **out) __attribute__((warn_unused_result));
/* No write may be in flight (the owner's last handle is gone). NULL: no-op. */
void efs_content_free(efs_content *c);

/* Plaintext size (lock held, shared or exclusive). */
uint64_t efs_content_size(const efs_content *c);
uint32_t efs_content_block_size(const efs_content *c);

/* Read plaintext [off, off+len) into out (lock held shared): the bytes read (short at the end of the
 * content, 0 past it) or -errno (-EIO: a block fails authentication; out then holds no plaintext). */
ssize_t efs_content_read(efs_content *c, const efs_content_io *io, uint8_t *out, size_t len, uint64_t off)
    __attribute__((warn_unused_result));

/* Write buf[0, len) at off, extending the content (a gap before off is filled with sealed zeros, after
 * waiting for a write in flight that may fill it). Takes the lock exclusively itself: the caller must not
 * hold it. buf is the caller's, writable, and is CLOBBERED: its whole blocks are sealed in place before
 * the lock is taken (see "Sealing outside the lock" in content.c) — the caller must not use its contents
 * afterwards. Space is reserved first: -ENOSPC leaves the content as it was. After another error the
 * size is unchanged, but blocks inside the range may have been rewritten (a torn write: they read as the
 * old or the new plaintext, or fail authentication; never other plaintext). Sequential runs are handed to
 * the backend's writeback every 8 MiB. */
int efs_content_write(efs_content *c, const efs_content_io *io, uint8_t *buf, size_t len, uint64_t off)
    __attribute__((warn_unused_result));

/* Set the plaintext size (lock held exclusively): growing appends sealed zeros (reserved first), shrinking
 * reseals the new last block at its length and truncates the store. */
int efs_content_truncate(efs_content *c, const efs_content_io *io, uint64_t size) __attribute__((warn_unused_result));

/* Make plaintext [off, off+len) read as zeros (lock held exclusively; inside the current size, which does
 * not change): whole blocks are punched where the content has EFS_CONTENT_ZERO_HOLES and the backend can
 * punch, every other block is rewritten with zeros. -EINVAL past the size. */
int efs_content_discard(efs_content *c, const efs_content_io *io, uint64_t off, uint64_t len)
    __attribute__((warn_unused_result));

#endif
