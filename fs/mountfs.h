/*
 * mountfs.h — the directory mount's shared state and the functions its modules share (internal to fs/):
 *   inodes.c     the inode table, pinning and descriptor eviction, loading a file's keys and content
 *   namespace.c  names (plaintext or encrypted), lookups, creating, linking, renaming, removing entries
 *   dirs.c       directory listings (readdir, readdirplus)
 *   xattrs.c     user.* extended attributes (values sealed); stats.c the statistics xattr's JSON
 *   symlink.c    symlink targets (sealed)
 *   fuse_fs.c    the FUSE operations table, file contents, attributes
 *   mount.c      process-wide setup and one FUSE session's setup (efs_mount_run)
 * Contents are content.c's; file keys keys.c's.
 *
 * Lock order (inodes.c): fs->table_lock → inode->rw → the content group's write_lock (content.c).
 * Every request is replied to exactly once, by the thread that serves it.
 */
#ifndef ENVELOPEFS_FS_MOUNTFS_H
#define ENVELOPEFS_FS_MOUNTFS_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "closer.h"
#include "content.h"
#include "efs.h"
#include "fuseio.h"
#include "loop.h"
#include "names.h"
#include "spares.h"
#include "uring.h"

#define HASH_BUCKETS 65536
#define IO_CHUNK (1u << 20) /* max_write, max_readahead */

struct inode {
    struct inode *next;          /* hash chain */
    int fd;                      /* O_PATH, or -1 while evicted (reopened from fh); see efs_inode_pin() */
    struct file_handle *fh;      /* to reopen fd, taken when first evicted (table_lock); NULL: not yet */
    int no_handle;               /* the backing filesystem gave no handle: never evicted (table_lock) */
    int unlinked;                /* its last name went through this mount (a hint; __atomic; setattr checks) */
    int gone;                    /* closed at that unlink (efs_inode_unlinked): no fd any more, never found in
                                  * the table; GETATTR and the kernel's times flush answered from gone_st
                                  * (set once under table_lock, read __atomic acquire) */
    struct stat *gone_st;        /* its attributes after the unlink (nlink 0), while gone */
    int pins;                    /* operations using fd right now; protected by fs->table_lock */
    ino_t ino;
    dev_t dev;
    mode_t type;                 /* S_IFMT bits */
    uint64_t nlookup;            /* protected by fs->table_lock */
    int nopen;                   /* protected by fs->table_lock */
    pthread_rwlock_t rw;         /* regular files: contents (content.h's lock) and the fields below */
    int loaded;                  /* keys and content valid */
    efs_file_keys *keys;         /* locked memory (common/secpool.c) while loaded */
    efs_file_binding fb;         /* keys and file id: the blocks' binding (efs_file_bind) */
    efs_content *content;        /* while loaded: size, blocks, writes in flight */
    int64_t hdr_len_cache;       /* -1 unknown; for getattr of files that are not open */
    int dirid_ok;                /* directories with encrypted names: dirid below is valid */
    uint8_t dirid[EFS_DIRID_LEN];
};

/* Time spent in a piece of code, summed over calls (stats): wall (CLOCK_MONOTONIC) and the calling thread's
 * CPU (CLOCK_THREAD_CPUTIME_ID), which a shared machine does not inflate the way it does wall time. */
typedef struct {
    _Atomic uint64_t n, wall_ns, cpu_ns;
} efs_timing;

/* Both clocks now, in ns: t[0] wall, t[1] thread CPU. */
static inline void efs_timing_now(uint64_t t[2])
{
    struct timespec w, c;
    clock_gettime(CLOCK_MONOTONIC, &w);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c);
    t[0] = (uint64_t)w.tv_sec * 1000000000u + (uint64_t)w.tv_nsec;
    t[1] = (uint64_t)c.tv_sec * 1000000000u + (uint64_t)c.tv_nsec;
}

/* Add the time since t0 (efs_timing_now) to tm. */
static inline void efs_timing_add(efs_timing *tm, const uint64_t t0[2])
{
    uint64_t t1[2];
    efs_timing_now(t1);
    tm->n++;
    tm->wall_ns += t1[0] - t0[0];
    tm->cpu_ns += t1[1] - t0[1];
}

/* An open regular file (fi->fh). */
struct handle {
    int fd;
    struct inode *in;
};

struct efs {
    efs_fuseio *io;              /* first member: libfuse hands the custom I/O the session's userdata */
    struct inode root;
    pthread_mutex_t table_lock;
    efs_content_group *writes;   /* the WRITEs in flight of every file (content.c) */
    struct inode *table[HASH_BUCKETS];
    efs_keys *keys;
    efs_spares *spares;          /* NULL: every create writes and syncs its own header */
    efs_names *names;            /* NULL with plaintext names */
    const efs_config *cfg;
    double timeout;
    int writeback_cache;         /* the kernel keeps regular files' mtime and ctime (FUSE_CAP_WRITEBACK_CACHE) */
    struct fuse_session *se;     /* for notifications to the kernel */
    _Atomic uint64_t getxattr_requests; /* observed by tests: writes must not cost one each */
    _Atomic uint64_t negative_lookups;  /* LOOKUPs answered with a negative entry (tests: it is cached) */
    efs_uring *uring;                   /* FUSE over io_uring (uring.c), or NULL */
    efs_loop_counts loop;               /* the /dev/fuse request loop's counters (loop.h) */
    _Atomic uint64_t unlink_closes;     /* files closed at their unlink, not at FORGET (efs_inode_unlinked) */
    efs_timing unlink_req;              /* UNLINK requests: count, wall and thread CPU time (efs_op_unlink) */
    efs_timing unlink_close;            /* of which handing the unlinked file's last descriptor to the closer */
    efs_timing rmdir_req;               /* RMDIR requests (efs_op_rmdir), including its wait for the closer */
    efs_closer *closer;                 /* closes removed files' descriptors off the request path (closer.c) */
    _Atomic uint64_t header_probes;     /* headers read only for a size (config format ≤ 2); tests: 0 in format 3 */
    int mount_fd;                /* the backing root, for open_by_handle_at */
    long nfds, fd_budget;        /* inode fds open / allowed before evicting idle ones (table_lock) */
    size_t evict_cursor;
};

static inline struct efs *fs_of(fuse_req_t req) { return fuse_req_userdata(req); }

static inline struct inode *inode_of(fuse_req_t req, fuse_ino_t ino)
{
    return ino == FUSE_ROOT_ID ? &fs_of(req)->root : (struct inode *)(uintptr_t)ino;
}

/* ---- inodes.c ---- */
void efs_inode_init(struct inode *in);
/* Make in->fd usable for the duration of an operation (reopened if evicted); undo with efs_inode_unpin. */
int efs_inode_pin(struct efs *fs, struct inode *in) __attribute__((warn_unused_result));
void efs_inode_unpin(struct efs *fs, struct inode *in);
/* Drop n lookups (FORGET); the inode goes once nothing refers to it. */
void efs_inode_unref(struct efs *fs, struct inode *in, uint64_t n);
/* Wipe, close and free an inode taken out of the table (or all of them at unmount). NULL: no-op. */
void efs_inode_destroy(struct inode *in);
/* Take in out of the table if nothing refers to it (table_lock held); the caller destroys it unlocked. */
struct inode *efs_inode_take_if_unused(struct efs *fs, struct inode *in);
/* Look up the backing entry `backing` of the open directory dirfd: a referenced inode in e. */
int efs_lookup_backing(struct efs *fs, int dirfd, const char *backing, struct fuse_entry_param *e);
/* A readdirplus entry whose inode the table holds already (-ENOENT: look the name up instead). */
int efs_readdirplus_known(struct efs *fs, dev_t dev, ino_t ino, struct fuse_entry_param *e);
const char *efs_inode_what(struct inode *in, char *buf, size_t cap); /* "file (inode N)" */
/* Give the inode its keys (adopted) and content (rw held exclusively). */
int efs_inode_attach(struct efs *fs, struct inode *in, efs_file_keys *keys, const efs_header *h, uint64_t data_off,
                     uint64_t size) __attribute__((warn_unused_result));
/* Load keys and content from the backing file open as fd (rw held exclusively); no-op when loaded. */
int efs_inode_load(struct efs *fs, struct inode *in, int fd, const char *what) __attribute__((warn_unused_result));
void efs_inode_unload(struct inode *in);
/* The regular file (dev, ino) has just lost its last name (unlink): mark it (a hint for setattr) and, if
 * nothing uses it (not open, not pinned) and it has no link left, take its descriptor out of the inode (it
 * is then gone) and return it, for efs_inode_close_unlinked; else -1. */
int efs_inode_unlinked(struct efs *fs, dev_t dev, ino_t ino) __attribute__((warn_unused_result));
/* Close that descriptor through the closer (closer.c: where the backing file is freed); timed in the stats. */
void efs_inode_close_unlinked(struct efs *fs, int fd, ino_t ino);
/* Attributes as the mount shows them (plaintext sizes). */
int efs_inode_stat(struct efs *fs, struct inode *in, struct stat *st) __attribute__((warn_unused_result));

/* ---- namespace.c ---- */
/* The directory id that binds the names in dir (the filesystem id for the root). */
int efs_dir_id(struct efs *fs, struct inode *dir, uint8_t out[EFS_DIRID_LEN]) __attribute__((warn_unused_result));
int efs_do_lookup(fuse_req_t req, fuse_ino_t parent, const char *name, struct fuse_entry_param *e);
void efs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void efs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void efs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void efs_op_readlink(fuse_req_t req, fuse_ino_t ino);
void efs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void efs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void efs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname,
                   unsigned int flags);
void efs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void efs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi);

/* ---- fuse_fs.c (used by namespace.c) ---- */
/* A handle for in over the backing fd (adopted on success), keys loaded; O_TRUNC in flags truncates. */
int efs_handle_new(struct efs *fs, struct inode *in, int fd, int flags, struct fuse_file_info *fi)
    __attribute__((warn_unused_result));
extern const struct fuse_lowlevel_ops efs_fs_ops;

/* ---- dirs.c ---- */
void efs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void efs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void efs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void efs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void efs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);

/* ---- xattrs.c, stats.c ---- */
void efs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags);
void efs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void efs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void efs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);
/* The statistics (EFS_XATTR_STATS) as JSON into buf: its length (< cap). */
int efs_stats_json(struct efs *fs, char *buf, size_t cap);

#endif
