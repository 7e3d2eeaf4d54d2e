/*
 * fuse_fs.c — the FUSE daemon: a low-level-API passthrough (modelled on libfuse's passthrough_ll.c)
 * that encrypts every regular file with its own DEK in the format of format.h.
 *
 * Inodes: one `struct inode` per backing inode, keyed by (st_dev, st_ino), holding an O_PATH fd and a
 * lookup count; the FUSE node id is the pointer. Regular files also carry, while open, their derived
 * file keys (locked memory), header length and plaintext size, under a per-inode rwlock: reads share
 * it, writes and truncates take it exclusively (read-modify-write of partial blocks).
 * Per-open handles (fi->fh) hold a backing fd opened O_RDWR (the writeback cache may read through a
 * write-only handle) without O_APPEND (the kernel owns appends with writeback caching).
 * Every request is replied to exactly once.
 */
#define FUSE_USE_VERSION 312

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <sodium.h>

#include "efs.h"
#include "format.h"
#include "fuseio.h"
#include "killpriv.h"
#include "loop.h"
#include "spares.h"
#include "common/secpool.h"
#include "names.h"
#include "common/daemon.h"
#include "common/jsonb64.h"
#include "common/log.h"
#include "common/monotime.h"

#define HASH_BUCKETS 65536
#define IO_CHUNK (1u << 20)
#define WRITE_BEHIND (8u << 20) /* plaintext bytes of a sequential run between write-behind kicks */

struct inode {
    struct inode *next;          /* hash chain */
    int fd;                      /* O_PATH, or -1 while evicted (reopened from fh); see pin() */
    struct file_handle *fh;      /* to reopen fd; NULL: never evicted */
    int pins;                    /* operations using fd right now; protected by fs->table_lock */
    ino_t ino;
    dev_t dev;
    mode_t type;                 /* S_IFMT bits */
    uint64_t nlookup;            /* protected by fs->table_lock */
    int nopen;                   /* protected by fs->table_lock */
    pthread_rwlock_t rw;         /* regular files: contents and the fields below */
    int loaded;                  /* keys valid */
    efs_file_keys *keys;         /* locked memory (common/secpool.c) while loaded */
    uint8_t file_id[EFS_FILE_ID_LEN];
    uint32_t bs;
    uint64_t data_off;           /* header length (0 with the header in an xattr) */
    uint64_t size;               /* plaintext size while loaded */
    int64_t hdr_len_cache;       /* -1 unknown; for getattr of files that are not open */
    uint64_t wb_start, wb_end;   /* write-behind: the sequential run not yet sent to disk (under rw) */
    struct inflight *writes;     /* WRITEs being served (fs->write_lock); see op_write */
    int dirid_ok;                /* directories with encrypted names: dirid below is valid */
    uint8_t dirid[EFS_DIRID_LEN];
};

struct handle {
    int fd;
    struct inode *in;
};

/* A WRITE being served, from entry until it is placed (a list per inode, on the writers' stacks). */
struct inflight {
    struct inflight *next;
    uint64_t off, end;
    bool peeked;                 /* has waited once for a queued WRITE (writes_wait_gap) */
};

struct efs {
    struct inode root;
    pthread_mutex_t table_lock;
    pthread_mutex_t write_lock;  /* inode->writes of every inode */
    pthread_cond_t write_placed; /* broadcast when a WRITE leaves its inode's list (CLOCK_MONOTONIC) */
    int gap_peekers;             /* WRITEs waiting for a queued WRITE to arrive (write_lock) */
    struct inode *table[HASH_BUCKETS];
    efs_keys *keys;
    efs_spares *spares;          /* NULL: every create writes and syncs its own header */
    efs_names *names;            /* NULL with plaintext names */
    const efs_config *cfg;
    const char *cipherdir;
    double timeout;
    struct fuse_session *se;     /* for notifications to the kernel */
    _Atomic uint64_t getxattr_requests; /* observed by tests: writes must not cost one each */
    _Atomic uint64_t negative_lookups;  /* LOOKUPs answered with a negative entry (tests: it is cached) */
    efs_uring *uring;                   /* FUSE over io_uring (uring.c), or NULL */
    _Atomic uint64_t header_probes;     /* headers read only for a size (config format ≤ 2); tests: 0 in format 3 */
    _Atomic uint64_t gap_bytes;         /* plaintext bytes written as zeros because a WRITE began past the end */
    _Atomic uint64_t gap_waits;         /* WRITEs that waited for an earlier one to fill their gap (op_write) */
    int mount_fd;                /* the backing root, for open_by_handle_at */
    long nfds, fd_budget;        /* inode fds open / allowed before evicting idle ones (table_lock) */
    size_t evict_cursor;
};

static struct efs *fs_of(fuse_req_t req) { return fuse_req_userdata(req); }

static struct inode *inode_of(fuse_req_t req, fuse_ino_t ino)
{
    return ino == FUSE_ROOT_ID ? &fs_of(req)->root : (struct inode *)(uintptr_t)ino;
}

bool efs_reserved_root_name(const char *name)
{
    return !strcmp(name, EFS_CONFIG_NAME) || !strncmp(name, "envelopefs.bk.", 14) ||
           !strncmp(name, ".envelopefs", 11);
}

static bool reserved(fuse_ino_t parent, const char *name)
{
    return parent == FUSE_ROOT_ID && efs_reserved_root_name(name);
}

/* ---- names ---------------------------------------------------------------------------------- */

/* A plaintext name's backing entry in its directory. */
struct bname {
    char b[EFS_BACKING_MAX];
    bool is_long;
    char full[EFS_ENC_MAX];
};

/* The directory id that binds the names in dir (the filesystem id for the root). */
static int dir_id(struct efs *fs, struct inode *dir, uint8_t out[EFS_DIRID_LEN])
{
    int rc = 0;
    if (dir == &fs->root) {
        memcpy(out, fs->cfg->fs_id, EFS_DIRID_LEN);
        return 0;
    }
    pthread_mutex_lock(&fs->table_lock);
    if (dir->dirid_ok) {
        memcpy(out, dir->dirid, EFS_DIRID_LEN);
        pthread_mutex_unlock(&fs->table_lock);
        return 0;
    }
    pthread_mutex_unlock(&fs->table_lock);
    rc = efs_dirid_read_at(dir->fd, fs->cfg->dirids_in_xattr, out);
    if (rc) {
        EFS_ERROR("directory (inode %" PRIu64 "): its directory id is missing or damaged", (uint64_t)dir->ino);
        return rc;
    }
    pthread_mutex_lock(&fs->table_lock);
    memcpy(dir->dirid, out, EFS_DIRID_LEN);
    dir->dirid_ok = 1;
    pthread_mutex_unlock(&fs->table_lock);
    return 0;
}

/* Map name in directory (parent) to its backing name. Plaintext mode: identity, reserved names at
 * the root refused with `reserved_err`. */
static int map_name(struct efs *fs, fuse_ino_t parent, struct inode *dir, const char *name, struct bname *bn,
                    int reserved_err)
{
    uint8_t id[EFS_DIRID_LEN];
    int rc;
    bn->is_long = false;
    if (!fs->names) {
        if (reserved(parent, name))
            return reserved_err;
        if (strlen(name) >= sizeof bn->b)
            return -ENAMETOOLONG;
        strcpy(bn->b, name);
        return 0;
    }
    rc = dir_id(fs, dir, id);
    if (!rc)
        rc = efs_name_encrypt(fs->names, id, name, bn->b, &bn->is_long, bn->full);
    return rc;
}

/* Before an entry is made under bn: its long-name sidecar, durably. */
static int prepare_name(struct inode *dir, const struct bname *bn)
{
    return bn->is_long ? efs_longname_write_at(dir->fd, bn->b, bn->full) : 0;
}

/* After the entry bn is gone: its sidecar. */
static void forget_name(struct inode *dir, const struct bname *bn)
{
    if (bn->is_long)
        (void)efs_longname_remove_at(dir->fd, bn->b);
}

static void temp_name(char out[64])
{
    uint8_t r[8];
    randombytes_buf(r, sizeof r);
    snprintf(out, 64, ".envelopefs.tmp.%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5], r[6],
             r[7]);
}

/* ---- header access -------------------------------------------------------------------------- */

/* Read and parse the header of the backing file open as fd. */
static int read_header(struct efs *fs, int fd, efs_header *h, size_t *hdr_len)
{
    uint8_t buf[EFS_HDR_MAX];
    ssize_t n;
    if (fs->cfg->dek_in_xattr) {
        n = fgetxattr(fd, EFS_XATTR_HEADER, buf, sizeof buf);
        if (n < 0)
            return errno == ENODATA ? -EIO : -errno;
        if (efs_header_parse(buf, (size_t)n, h, hdr_len))
            return -EIO;
        *hdr_len = 0; /* data starts at 0 */
        return 0;
    }
    n = pread(fd, buf, sizeof buf, 0);
    if (n < 0)
        return -errno;
    if (efs_header_parse(buf, (size_t)n, h, hdr_len))
        return -EIO;
    return 0;
}

static int write_header(struct efs *fs, int fd, const efs_header *h)
{
    int rc = efs_header_store(fd, h, fs->cfg->dek_in_xattr);
    if (rc)
        return rc;
    /* The header is durable before any data can be. */
    return fdatasync(fd) ? -errno : 0;
}

/* Load keys into the inode (rw lock held exclusively). fd: an open backing fd. */
static int inode_load(struct efs *fs, struct inode *in, int fd, const char *what)
{
    efs_header h;
    size_t hl;
    struct stat st;
    int rc;
    uint64_t size;

    if (in->loaded)
        return 0;
    rc = read_header(fs, fd, &h, &hl);
    if (rc) {
        EFS_ERROR("%s: header unreadable or malformed", what);
        return rc == -ENOMEM ? rc : -EIO;
    }
    if (!efs_config_header_matches(fs->cfg, h.version, hl)) {
        EFS_ERROR("%s: header version %u, %zu bytes: not what this filesystem writes", what, (unsigned)h.version, hl);
        return -EIO;
    }
    in->keys = efs_secpool_alloc(sizeof *in->keys);
    if (!in->keys)
        return -ENOMEM;
    rc = efs_keys_open_file(fs->keys, &h, in->keys, what);
    if (rc) {
        efs_secpool_free(in->keys, sizeof *in->keys);
        in->keys = NULL;
        return rc;
    }
    if (fstat(fd, &st)) {
        rc = -errno;
        efs_secpool_free(in->keys, sizeof *in->keys);
        in->keys = NULL;
        return rc;
    }
    if (efs_plain_size((uint64_t)st.st_size - hl, h.block_size, &size))
        EFS_WARN("%s: last block truncated in the backing file; reads of it will fail", what);
    memcpy(in->file_id, h.file_id, EFS_FILE_ID_LEN);
    in->bs = h.block_size;
    in->data_off = hl;
    in->hdr_len_cache = (int64_t)hl;
    in->size = size;
    in->loaded = 1;
    return 0;
}

static void inode_unload(struct inode *in)
{
    if (in->keys) {
        efs_secpool_free(in->keys, sizeof *in->keys);
        in->keys = NULL;
    }
    in->loaded = 0;
}

/* Plaintext size for getattr of a regular file. */
static void fix_size(struct efs *fs, struct inode *in, struct stat *st)
{
    uint64_t size = 0;
    if (!S_ISREG(st->st_mode))
        return;
    pthread_rwlock_rdlock(&in->rw);
    if (in->loaded) {
        st->st_size = (off_t)in->size;
        pthread_rwlock_unlock(&in->rw);
        return;
    }
    pthread_rwlock_unlock(&in->rw);
    if (in->hdr_len_cache < 0) {
        uint32_t off;
        if (efs_config_data_offset(fs->cfg, &off)) {
            in->hdr_len_cache = off; /* stat alone suffices */
        } else {
            char p[EFS_PROCPATH_MAX];
            uint8_t b[8];
            int fd = open(efs_procpath(in->fd, p), O_RDONLY | O_CLOEXEC);
            fs->header_probes++;
            if (fd >= 0) {
                if (pread(fd, b, 8, 0) == 8 && !memcmp(b, EFS_HDR_MAGIC, 4))
                    in->hdr_len_cache = b[6] | b[7] << 8;
                close(fd);
            }
        }
    }
    if (in->hdr_len_cache >= 0 && st->st_size >= in->hdr_len_cache)
        (void)efs_plain_size((uint64_t)st->st_size - (uint64_t)in->hdr_len_cache, fs->cfg->block_size, &size);
    st->st_size = (off_t)size;
}

static void fix_symlink_size(struct stat *st)
{
    if (S_ISLNK(st->st_mode)) {
        off_t raw = st->st_size * 3 / 4;
        st->st_size = raw > 28 ? raw - 28 : 0;
    }
}

static int do_stat(struct efs *fs, struct inode *in, struct stat *st)
{
    if (fstatat(in->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
        return -errno;
    fix_size(fs, in, st);
    fix_symlink_size(st);
    return 0;
}

/* ---- inode table ---------------------------------------------------------------------------- */

static size_t bucket(ino_t ino, dev_t dev) { return (size_t)((ino * 2654435761u) ^ dev) % HASH_BUCKETS; }

static void inode_init(struct inode *in)
{
    pthread_rwlock_init(&in->rw, NULL);
    in->hdr_len_cache = -1;
}

/* Close the O_PATH fds of idle inodes (no operation using them, not open) until well under the
 * budget; they are reopened from their file handles when next used. table_lock held. The kernel keeps
 * an inode for every dentry it caches, so without this a large tree exhausts RLIMIT_NOFILE. */
static void evict_idle(struct efs *fs)
{
    long target = fs->fd_budget - fs->fd_budget / 8;
    for (size_t n = 0; n < HASH_BUCKETS && fs->nfds > target; n++) {
        struct inode *in = fs->table[fs->evict_cursor];
        fs->evict_cursor = (fs->evict_cursor + 1) % HASH_BUCKETS;
        for (; in && fs->nfds > target; in = in->next)
            if (in->fd >= 0 && in->fh && !in->pins && !in->nopen) {
                close(in->fd);
                in->fd = -1;
                fs->nfds--;
            }
    }
}

/* Make in->fd usable for the duration of an operation: reopen it if evicted. 0 or -errno. */
static int pin(struct efs *fs, struct inode *in)
{
    int rc = 0;
    pthread_mutex_lock(&fs->table_lock);
    if (in->fd < 0) {
        if (fs->nfds >= fs->fd_budget)
            evict_idle(fs);
        in->fd = open_by_handle_at(fs->mount_fd, in->fh, O_PATH | O_CLOEXEC);
        if (in->fd < 0)
            rc = errno == ESTALE ? -ENOENT : -errno;
        else
            fs->nfds++;
    }
    if (!rc)
        in->pins++;
    pthread_mutex_unlock(&fs->table_lock);
    return rc;
}

static struct inode *inode_take_if_unused(struct efs *fs, struct inode *in);
static void inode_destroy(struct inode *in);

static void unpin(struct efs *fs, struct inode *in)
{
    struct inode *dead;
    pthread_mutex_lock(&fs->table_lock);
    in->pins--;
    dead = inode_take_if_unused(fs, in); /* a forget may have come while it was pinned */
    pthread_mutex_unlock(&fs->table_lock);
    inode_destroy(dead);
}

static struct file_handle *handle_of(int fd)
{
    struct file_handle *fh = malloc(sizeof *fh + MAX_HANDLE_SZ);
    int mount_id;
    if (!fh)
        return NULL;
    fh->handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(fd, "", fh, &mount_id, AT_EMPTY_PATH)) {
        free(fh);
        return NULL; /* no file handles on this filesystem: this inode keeps its fd */
    }
    {
        struct file_handle *fit = realloc(fh, sizeof *fh + fh->handle_bytes); /* 8 bytes on ext4, not 128 */
        return fit ? fit : fh;
    }
}

/* The known inode for st, referenced (nlookup) and pinned; if it was evicted it adopts *fd (which
 * is then set to -1). NULL if unknown. table_lock held. */
/* The inode (dev, ino) in the table, or NULL. table_lock held. */
static struct inode *inode_find_locked(struct efs *fs, dev_t dev, ino_t ino)
{
    struct inode *in;
    for (in = fs->table[bucket(ino, dev)]; in; in = in->next)
        if (in->ino == ino && in->dev == dev)
            break;
    return in;
}

static struct inode *inode_ref_locked(struct efs *fs, const struct stat *st, int *fd)
{
    struct inode *in = inode_find_locked(fs, st->st_dev, st->st_ino);
    if (!in)
        return NULL;
    in->nlookup++;
    in->pins++; /* before evicting, so that this one stays */
    if (in->fd < 0) {
        if (fs->nfds >= fs->fd_budget)
            evict_idle(fs);
        in->fd = *fd;
        *fd = -1;
        fs->nfds++;
    }
    return in;
}

/* Find or create the inode for (fd, st); consumes fd. Increments nlookup and returns the inode
 * pinned (the caller unpins). */
static struct inode *inode_get(struct efs *fs, int fd, const struct stat *st)
{
    size_t b = bucket(st->st_ino, st->st_dev);
    struct inode *in, *other;
    pthread_mutex_lock(&fs->table_lock);
    in = inode_ref_locked(fs, st, &fd);
    pthread_mutex_unlock(&fs->table_lock);
    if (in) {
        if (fd >= 0)
            close(fd);
        return in;
    }
    in = calloc(1, sizeof *in);
    if (!in) {
        close(fd);
        return NULL;
    }
    inode_init(in);
    in->fh = handle_of(fd); /* outside the lock: a syscall */
    in->ino = st->st_ino;
    in->dev = st->st_dev;
    in->type = st->st_mode & S_IFMT;
    in->nlookup = 1;
    in->pins = 1;
    pthread_mutex_lock(&fs->table_lock);
    other = inode_ref_locked(fs, st, &fd); /* another thread may have made it meanwhile */
    if (other) {
        pthread_mutex_unlock(&fs->table_lock);
        if (fd >= 0)
            close(fd);
        pthread_rwlock_destroy(&in->rw);
        free(in->fh);
        free(in);
        return other;
    }
    if (fs->nfds >= fs->fd_budget)
        evict_idle(fs);
    in->fd = fd;
    in->next = fs->table[b];
    fs->table[b] = in;
    fs->nfds++;
    pthread_mutex_unlock(&fs->table_lock);
    return in;
}

/* Wipe an inode's keys, close its fd and free it: one out of the table (inode_take_if_unused), or all of
 * them when the table goes. NULL is a no-op. Called without table_lock: closing the last descriptor of an
 * unlinked file is where the backing filesystem frees its blocks (ext4: truncate and journal work, long for
 * a large file), which must not hold up every request that waits for the table. */
static void inode_destroy(struct inode *in)
{
    if (!in)
        return;
    inode_unload(in);
    if (in->fd >= 0)
        close(in->fd);
    free(in->fh);
    pthread_rwlock_destroy(&in->rw);
    free(in);
}

/* If nothing refers to in any more, take it out of the table and return it for the caller to pass to
 * inode_destroy once it has released table_lock (held here); NULL otherwise. Its descriptor is no longer
 * counted from now on. */
static struct inode *inode_take_if_unused(struct efs *fs, struct inode *in)
{
    size_t b;
    struct inode **pp;
    if (in == &fs->root || in->nlookup || in->nopen || in->pins)
        return NULL;
    b = bucket(in->ino, in->dev);
    for (pp = &fs->table[b]; *pp; pp = &(*pp)->next)
        if (*pp == in) {
            *pp = in->next;
            break;
        }
    if (in->fd >= 0)
        fs->nfds--;
    return in;
}

static void unref(struct efs *fs, struct inode *in, uint64_t n)
{
    struct inode *dead;
    pthread_mutex_lock(&fs->table_lock);
    in->nlookup = in->nlookup >= n ? in->nlookup - n : 0;
    dead = inode_take_if_unused(fs, in);
    pthread_mutex_unlock(&fs->table_lock);
    inode_destroy(dead);
}

/* Fill e for the referenced, pinned inode in whose backing attributes are st, and unpin it. */
static void entry_of(struct efs *fs, struct inode *in, struct stat *st, struct fuse_entry_param *e)
{
    fix_size(fs, in, st);
    fix_symlink_size(st);
    unpin(fs, in);
    e->ino = (uintptr_t)in;
    e->attr = *st;
    e->attr_timeout = fs->timeout;
    e->entry_timeout = fs->timeout;
}

/* Look up the backing entry `backing` of the open directory dirfd: a referenced inode in e. */
static int lookup_backing(struct efs *fs, int dirfd, const char *backing, struct fuse_entry_param *e)
{
    struct inode *in;
    struct stat st;
    int fd;

    memset(e, 0, sizeof *e);
    fd = openat(dirfd, backing, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)) {
        int err = errno;
        close(fd);
        return -err;
    }
    in = inode_get(fs, fd, &st);
    if (!in)
        return -ENOMEM;
    entry_of(fs, in, &st, e);
    return 0;
}

/* A readdirplus entry whose inode (dev, d_ino from getdents) the table holds already, with its descriptor
 * open: a referenced inode in e, its attributes from that descriptor — one fstat instead of opening the
 * name, stating it and closing the duplicate descriptor (lookup_backing). rm -rf lists each directory
 * twice and find or a second ls lists known entries again. -ENOENT when the inode is not known (or is
 * evicted, or the stat fails): the caller looks the name up. */
static int readdirplus_known(struct efs *fs, dev_t dev, ino_t ino, struct fuse_entry_param *e)
{
    struct inode *in;
    struct stat st;
    pthread_mutex_lock(&fs->table_lock);
    in = inode_find_locked(fs, dev, ino);
    if (in && in->fd >= 0) {
        in->nlookup++;
        in->pins++;
    } else {
        in = NULL;
    }
    pthread_mutex_unlock(&fs->table_lock);
    if (!in)
        return -ENOENT;
    if (fstatat(in->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)) {
        unref(fs, in, 1); /* still pinned: unpin frees it if nothing else refers to it */
        unpin(fs, in);
        return -ENOENT;
    }
    memset(e, 0, sizeof *e);
    entry_of(fs, in, &st, e);
    return 0;
}

static int do_lookup(fuse_req_t req, fuse_ino_t parent, const char *name, struct fuse_entry_param *e)
{
    struct efs *fs = fs_of(req);
    struct inode *p = inode_of(req, parent);
    struct bname bn;
    int rc;

    memset(e, 0, sizeof *e);
    rc = map_name(fs, parent, p, name, &bn, -ENOENT);
    if (rc)
        return rc;
    return lookup_backing(fs, p->fd, bn.b, e);
}

/* ---- FUSE operations: lifecycle ------------------------------------------------------------- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    if (conn->capable & FUSE_CAP_WRITEBACK_CACHE)
        conn->want |= FUSE_CAP_WRITEBACK_CACHE;
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
        conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
    conn->want &= ~(unsigned)FUSE_CAP_SPLICE_READ;
    conn->max_write = IO_CHUNK;
    conn->max_readahead = IO_CHUNK;
}

static void op_destroy(void *userdata)
{
    struct efs *fs = userdata;
    efs_keys_clear_cache(fs->keys);
}

static void op_lookup_body(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    int rc = do_lookup(req, parent, name, &e);
    if (rc == -ENOENT) {
        /* A negative entry (inode 0): the kernel remembers for the entry timeout that the name does not
         * exist, so probing a missing name again (PATH searches, build systems, interpreters' imports)
         * costs no round trip. A create, mkdir, link or rename of that name through this mount replaces
         * it at once; only changes made to CIPHERDIR behind the mount's back wait for the timeout, as
         * they already do for names that exist. */
        memset(&e, 0, sizeof e);
        e.entry_timeout = fs_of(req)->timeout;
        fs_of(req)->negative_lookups++;
        fuse_reply_entry(req, &e);
    } else if (rc) {
        fuse_reply_err(req, -rc);
    } else {
        fuse_reply_entry(req, &e);
    }
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    unref(fs_of(req), inode_of(req, ino), nlookup);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
    for (size_t i = 0; i < count; i++)
        unref(fs_of(req), inode_of(req, f[i].ino), f[i].nlookup);
    fuse_reply_none(req);
}

static void op_getattr_body(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat st;
    int rc = do_stat(fs_of(req), inode_of(req, ino), &st);
    (void)fi;
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, &st, fs_of(req)->timeout);
}

/* ---- contents ------------------------------------------------------------------------------- */

static const char *what_of(struct inode *in, char *buf, size_t cap)
{
    snprintf(buf, cap, "file (inode %" PRIu64 ")", (uint64_t)in->ino);
    return buf;
}

/* Read plaintext [off, off+len) (rw lock held). Returns bytes read or -errno. The stored blocks of
 * the whole range are read with one pread and decrypted one by one. */
static ssize_t read_plain(struct inode *in, int fd, uint8_t *out, size_t len, uint64_t off)
{
    uint64_t bs = in->bs, stored = bs + EFS_BLOCK_OVERHEAD, end, first, last;
    uint64_t ct_off, ct_len;
    uint8_t *ct, *pt;
    size_t done = 0;
    ssize_t n;

    if (off >= in->size)
        return 0;
    end = off + len > in->size ? in->size : off + len;
    first = off / bs;
    last = (end - 1) / bs;
    ct_off = in->data_off + first * stored;
    ct_len = (last - first) * stored + (in->size - last * bs < bs ? in->size - last * bs : bs) + EFS_BLOCK_OVERHEAD;
    ct = malloc(ct_len);
    pt = malloc(bs);
    if (!ct || !pt) {
        free(ct);
        free(pt);
        return -ENOMEM;
    }
    n = pread(fd, ct, ct_len, (off_t)ct_off);
    if (n < 0) {
        free(ct);
        free(pt);
        return -errno;
    }
    for (uint64_t b = first; b <= last; b++) {
        uint64_t bstart = b * bs, blen = in->size - bstart < bs ? in->size - bstart : bs, from, to;
        uint64_t at = (b - first) * stored;
        bool whole = bstart >= off && bstart + blen <= end; /* decrypted straight into out */
        if ((uint64_t)n < at + blen + EFS_BLOCK_OVERHEAD ||
            efs_block_decrypt(in->keys, in->file_id, b, ct + at, blen + EFS_BLOCK_OVERHEAD, whole ? out + done : pt)) {
            char w[64];
            EFS_ERROR("%s: block %" PRIu64 " fails authentication (tampered, truncated or moved)",
                      what_of(in, w, sizeof w), b);
            free(ct);
            sodium_memzero(pt, bs);
            free(pt);
            return -EIO;
        }
        from = b == first ? off - bstart : 0;
        to = bstart + blen > end ? end - bstart : blen;
        if (!whole)
            memcpy(out + done, pt + from, to - from);
        done += to - from;
    }
    free(ct);
    sodium_memzero(pt, bs);
    free(pt);
    return (ssize_t)done;
}

/* Reserve backing space for growing the file to newsize (rw lock held exclusively), so that ENOSPC
 * comes before anything is written and leaves the file as it was. */
static int reserve(struct inode *in, int fd, uint64_t newsize)
{
    uint64_t have, need;
    int rc;
    if (newsize <= in->size)
        return 0;
    have = in->data_off + efs_data_len(in->size, in->bs);
    need = in->data_off + efs_data_len(newsize, in->bs);
    rc = posix_fallocate(fd, (off_t)have, (off_t)(need - have));
    return rc && rc != EOPNOTSUPP && rc != EINVAL ? -rc : 0;
}

/* Write plaintext (or zeros when buf == NULL) at [off, off+len), extending the file as needed
 * (rw lock held exclusively). Space for the new extent is reserved first, so ENOSPC leaves the
 * file as it was. */
static int write_plain(struct inode *in, int fd, const uint8_t *buf, size_t len, uint64_t off)
{
    uint64_t bs = in->bs, stored = bs + EFS_BLOCK_OVERHEAD, end = off + len;
    uint64_t newsize = end > in->size ? end : in->size;
    uint64_t start = off < in->size ? off : in->size;
    uint64_t first = start / bs, last;
    uint8_t *out, *pt;
    size_t out_len = 0, out_cap;
    uint64_t out_off = in->data_off + first * stored;
    int rc = 0;

    if (len == 0 && off <= in->size)
        return 0;
    last = (end - 1) / bs;
    rc = reserve(in, fd, newsize);
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
        uint64_t oldlen = bstart < in->size ? (in->size - bstart < bs ? in->size - bstart : bs) : 0;
        bool covers = off <= bstart && end >= bstart + blen;
        const uint8_t *src = pt;
        if (covers && buf) { /* the whole block comes from the request: encrypt it in place */
            src = buf + (bstart - off);
            goto encrypt;
        }
        if (!covers && oldlen) {
            ssize_t n = read_plain(in, fd, pt, oldlen, bstart);
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
    encrypt:
        if (out_len + blen + EFS_BLOCK_OVERHEAD > out_cap) {
            if (pwrite(fd, out, out_len, (off_t)out_off) != (ssize_t)out_len) {
                rc = errno ? -errno : -EIO;
                break;
            }
            out_off += out_len;
            out_len = 0;
        }
        rc = efs_block_encrypt(in->keys, in->file_id, b, src, blen, out + out_len);
        if (rc)
            break;
        out_len += blen + EFS_BLOCK_OVERHEAD;
    }
    if (!rc && out_len && pwrite(fd, out, out_len, (off_t)out_off) != (ssize_t)out_len)
        rc = errno ? -errno : -EIO;
    if (!rc)
        in->size = newsize;
    sodium_memzero(pt, bs);
    free(pt);
    free(out);
    return rc;
}

/*
 * Sealing outside the inode lock. The ciphertext of a block that a write covers whole depends only on
 * the file's keys and id (fixed while the file is open), the block number and the new plaintext — not
 * on the file's current contents or size. So op_write encrypts those blocks before it takes the inode
 * lock and holds the lock only to place them (write_sealed): the several WRITEs the kernel's writeback
 * sends for one file at once encrypt on all CPUs instead of one at a time. Placing stays serialised, so
 * concurrent writes still land as if in some serial order.
 *
 * The blocks are encrypted in place, in the request's buffer: it is this worker thread's receive buffer
 * (loop.c owns it; SPLICE_READ is off, so data always arrives there), and the plaintext is not needed
 * afterwards. Nonces and tags go to a small per-thread array, and one pwritev interleaves the two, so a
 * 1 MiB WRITE needs no second megabyte of memory and no copy of its ciphertext.
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

/* The whole blocks [a, z) of a WRITE at off, sealed in place by seal_whole. */
struct sealed {
    uint64_t a, z;
    struct iovec *iov; /* 2·count+1 pieces: nonce, ciphertext, tag ‖ next nonce, …, tag */
    size_t niov;
};

/* Encrypt the whole blocks [a, z) of a WRITE of plaintext buf at off (block-aligned a < z inside it) in
 * place; no lock needed (see above). 0; -ENOMEM with buf untouched; or -EIO: buf may be partly encrypted
 * and the WRITE fails. */
static int seal_whole(struct inode *in, uint8_t *buf, uint64_t off, uint64_t a, uint64_t z, struct sealed *s)
{
    size_t bs = in->bs, count = (size_t)((z - a) / bs);
    size_t niov = 2 * count + 1;
    struct iovec *iov = seal_scratch(niov * sizeof *iov + count * EFS_BLOCK_OVERHEAD);
    uint8_t *meta, *data = buf + (a - off);
    int rc;
    if (!iov)
        return -ENOMEM;
    meta = (uint8_t *)(iov + niov);
    rc = efs_blocks_seal(in->keys, in->file_id, a / bs, data, count, bs, meta);
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

/* Write [off, off+len) whose whole blocks s->a..s->z seal_whole sealed (rw lock held exclusively): the
 * partial blocks at either end (and any gap before s->a, as zeros) the plain way, the sealed blocks with
 * pwritev. Space for the whole extent is reserved first. */
static int write_sealed(struct inode *in, int fd, const uint8_t *buf, size_t len, uint64_t off,
                        const struct sealed *s)
{
    uint64_t bs = in->bs, stored = bs + EFS_BLOCK_OVERHEAD, end = off + len;
    uint64_t at = in->data_off + s->a / bs * stored;
    int rc = reserve(in, fd, end);
    if (!rc && s->a > off)
        rc = write_plain(in, fd, buf, (size_t)(s->a - off), off);
    else if (!rc && in->size < s->a) /* a gap: zeros up to the first sealed block */
        rc = write_plain(in, fd, NULL, (size_t)(s->a - in->size), in->size);
    if (rc)
        return rc;
    for (size_t i = 0; i < s->niov;) {
        int n = s->niov - i > IOV_MAX ? IOV_MAX : (int)(s->niov - i);
        size_t want = 0;
        ssize_t w;
        for (int j = 0; j < n; j++)
            want += s->iov[i + (size_t)j].iov_len;
        w = pwritev(fd, s->iov + i, n, (off_t)at);
        if (w != (ssize_t)want)
            return w < 0 ? -errno : -EIO;
        at += want;
        i += (size_t)n;
    }
    if (s->z > in->size)
        in->size = s->z;
    return end > s->z ? write_plain(in, fd, buf + (s->z - off), (size_t)(end - s->z), s->z) : 0;
}

static int truncate_plain(struct inode *in, int fd, uint64_t newsize)
{
    uint64_t bs = in->bs;
    int rc;
    if (newsize == in->size)
        return 0;
    if (newsize > in->size)
        return write_plain(in, fd, NULL, (size_t)(newsize - in->size), in->size);
    if (newsize % bs) {
        /* re-encrypt the new last block at its new length */
        uint64_t bstart = newsize / bs * bs;
        size_t keep = (size_t)(newsize - bstart);
        uint8_t *pt = malloc(bs);
        ssize_t n;
        if (!pt)
            return -ENOMEM;
        n = read_plain(in, fd, pt, keep, bstart);
        if (n != (ssize_t)keep) {
            free(pt);
            return n < 0 ? (int)n : -EIO;
        }
        if (ftruncate(fd, (off_t)(in->data_off + efs_data_len(bstart, (uint32_t)bs)))) {
            free(pt);
            return -errno;
        }
        in->size = bstart;
        rc = write_plain(in, fd, pt, keep, bstart);
        sodium_memzero(pt, bs);
        free(pt);
        return rc;
    }
    if (ftruncate(fd, (off_t)(in->data_off + efs_data_len(newsize, (uint32_t)bs))))
        return -errno;
    in->size = newsize;
    return 0;
}

/* Open a backing fd for contents: O_RDWR if possible. */
static int open_backing(struct inode *in, int flags)
{
    char p[EFS_PROCPATH_MAX];
    int fd;
    /* Keep only what matters for the backing file; O_NOFOLLOW would refuse the /proc magic link,
     * O_DIRECT needs aligned I/O we do not do, O_APPEND belongs to the kernel (writeback cache). */
    flags &= O_SYNC | O_DSYNC;
    fd = open(efs_procpath(in->fd, p), flags | O_RDWR | O_CLOEXEC);
    if (fd < 0 && (errno == EACCES || errno == EROFS))
        fd = open(efs_procpath(in->fd, p), flags | O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static int handle_new(struct efs *fs, struct inode *in, int fd, int flags, struct fuse_file_info *fi)
{
    struct handle *h = calloc(1, sizeof *h);
    char w[64];
    int rc;
    if (!h)
        return -ENOMEM;
    /* Count the handle before loading the keys: RELEASE of an earlier handle is asynchronous and may run
     * right now in another thread; had it seen nopen reach 0 after our load, it would unload the keys
     * under this new handle. (Lock order: table_lock, then rw — as in op_release.) */
    pthread_mutex_lock(&fs->table_lock);
    in->nopen++;
    pthread_mutex_unlock(&fs->table_lock);
    pthread_rwlock_wrlock(&in->rw);
    rc = inode_load(fs, in, fd, what_of(in, w, sizeof w));
    if (!rc && (flags & O_TRUNC))
        rc = truncate_plain(in, fd, 0);
    pthread_rwlock_unlock(&in->rw);
    if (rc) {
        pthread_mutex_lock(&fs->table_lock);
        if (--in->nopen == 0) {
            pthread_rwlock_wrlock(&in->rw);
            inode_unload(in);
            pthread_rwlock_unlock(&in->rw);
        }
        pthread_mutex_unlock(&fs->table_lock);
        free(h);
        return rc;
    }
    h->fd = fd;
    h->in = in;
    fi->fh = (uintptr_t)h;
    fi->keep_cache = 1;
    return 0;
}

/* If the current request asks for it (see killpriv.c), clear setuid/setgid on fd and drop the
 * kernel's cached mode of ino. 0 or -errno. */
static int kill_suidgid_if_asked(fuse_req_t req, fuse_ino_t ino, int fd)
{
    int rc;
    if (!efs_killpriv_requested())
        return 0;
    rc = efs_kill_suidgid(req, fd);
    if (rc == 1) {
        (void)fuse_lowlevel_notify_inval_inode(fs_of(req)->se, ino, -1, 0); /* attributes only */
        rc = 0;
    }
    return rc;
}

static void op_open_body(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct efs *fs = fs_of(req);
    struct inode *in = inode_of(req, ino);
    int fd = open_backing(in, fi->flags), rc;
    if (fd < 0) {
        fuse_reply_err(req, -fd);
        return;
    }
    rc = kill_suidgid_if_asked(req, ino, fd); /* open(O_TRUNC) by an unprivileged caller */
    if (!rc)
        rc = handle_new(fs, in, fd, fi->flags, fi);
    if (rc) {
        close(fd);
        fuse_reply_err(req, -rc);
        return;
    }
    fuse_reply_open(req, fi);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct efs *fs = fs_of(req);
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    struct inode *in = h->in, *dead;
    (void)ino;
    close(h->fd);
    free(h);
    pthread_mutex_lock(&fs->table_lock);
    if (--in->nopen == 0) {
        pthread_rwlock_wrlock(&in->rw);
        inode_unload(in);
        pthread_rwlock_unlock(&in->rw);
    }
    dead = inode_take_if_unused(fs, in);
    pthread_mutex_unlock(&fs->table_lock);
    fuse_reply_err(req, 0);
    inode_destroy(dead);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    uint8_t *buf = malloc(size ? size : 1);
    ssize_t n;
    (void)ino;
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    pthread_rwlock_rdlock(&h->in->rw);
    n = read_plain(h->in, h->fd, buf, size, (uint64_t)off);
    pthread_rwlock_unlock(&h->in->rw);
    if (n < 0)
        fuse_reply_err(req, (int)-n);
    else
        fuse_reply_buf(req, (const char *)buf, (size_t)n);
    sodium_memzero(buf, size);
    free(buf);
}

/*
 * Out-of-order WRITEs. The kernel's writeback sends several WRITEs of one file at once and the worker
 * threads place them in whatever order they get the inode lock: a WRITE past the end of the file may come
 * before the one that precedes it. Placed as it comes, it would first fill the gap with encrypted zero
 * blocks (holes are stored as such), which the earlier WRITE then overwrites — up to a third of a stream
 * encrypted and written twice. So a WRITE that would leave a gap waits while another WRITE of the same
 * file that starts lower and reaches into the gap is still being served (the lowest never waits, so all
 * finish); if none is, the gap is a real hole and is filled with zero blocks as before.
 */
static void writes_enter(struct efs *fs, struct inode *in, struct inflight *me)
{
    bool peekers;
    pthread_mutex_lock(&fs->write_lock);
    me->next = in->writes;
    in->writes = me;
    peekers = fs->gap_peekers > 0;
    pthread_mutex_unlock(&fs->write_lock);
    if (peekers) /* this may be the WRITE one of them waits for */
        pthread_cond_broadcast(&fs->write_placed);
}

static void writes_leave(struct efs *fs, struct inode *in, struct inflight *me)
{
    struct inflight **pp;
    bool waiters;
    pthread_mutex_lock(&fs->write_lock);
    for (pp = &in->writes; *pp != me; pp = &(*pp)->next)
        ;
    *pp = me->next;
    waiters = in->writes != NULL;
    pthread_mutex_unlock(&fs->write_lock);
    if (waiters)
        pthread_cond_broadcast(&fs->write_placed);
}

/* Another WRITE in flight starts below me->off and ends past size (it may fill the gap). write_lock held. */
static bool gap_filler(const struct inode *in, const struct inflight *me, uint64_t size)
{
    for (const struct inflight *p = in->writes; p; p = p->next)
        if (p != me && p->off < me->off && p->end > size)
            return true;
    return false;
}

#define GAP_PEEK_NS 500000L /* how long a WRITE past the end waits, once, for queued requests to be read */

/* me leaves a gap at the end of the file (rw held exclusively). If a WRITE that may fill it is in flight,
 * wait (without rw) until it has been placed. If none is but requests are queued that no worker has read
 * yet (over io_uring: always), wait once up to GAP_PEEK_NS for such a WRITE to arrive. Returns true if rw was released and is
 * held again (the caller rechecks), false at once if there is nothing to wait for. */
static bool writes_wait_gap(struct efs *fs, struct inode *in, struct inflight *me)
{
    uint64_t size = in->size;
    bool released = false;
    pthread_mutex_lock(&fs->write_lock);
    /* Over io_uring the kernel's queues cannot be looked into, and WRITEs reach the ring threads of both
     * CPUs in any order: always wait once. */
    if (!gap_filler(in, me, size) && !me->peeked && fs->se && (fs->uring || efs_loop_requests_queued(fs->se))) {
        int64_t until = efs_mono_ns() + GAP_PEEK_NS; /* write_placed waits on CLOCK_MONOTONIC */
        struct timespec dl = {.tv_sec = until / 1000000000, .tv_nsec = until % 1000000000};
        me->peeked = true;
        pthread_rwlock_unlock(&in->rw);
        released = true;
        fs->gap_peekers++;
        while (!gap_filler(in, me, size) && pthread_cond_timedwait(&fs->write_placed, &fs->write_lock, &dl) == 0)
            ;
        fs->gap_peekers--;
    }
    if (gap_filler(in, me, size)) {
        if (!released)
            pthread_rwlock_unlock(&in->rw);
        released = true;
        while (gap_filler(in, me, size))
            pthread_cond_wait(&fs->write_placed, &fs->write_lock);
    }
    pthread_mutex_unlock(&fs->write_lock);
    if (released)
        pthread_rwlock_wrlock(&in->rw);
    return released;
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    struct inode *in = h->in;
    uint64_t kick_from = 0, kick_to = 0;
    uint64_t a = ((uint64_t)off + in->bs - 1) / in->bs * in->bs, z = ((uint64_t)off + size) / in->bs * in->bs;
    struct sealed sealed = {0};
    bool whole = false;
    struct inflight me = {.off = (uint64_t)off, .end = (uint64_t)off + size};
    int rc;
    rc = kill_suidgid_if_asked(req, ino, h->fd); /* an unprivileged writer */
    writes_enter(fs_of(req), in, &me);
    if (!rc && z > a) { /* buf is this thread's receive buffer: see "Sealing outside the inode lock" */
        rc = seal_whole(in, (uint8_t *)(uintptr_t)buf, (uint64_t)off, a, z, &sealed);
        whole = !rc;
        if (rc == -ENOMEM)
            rc = 0; /* nothing was encrypted yet: write the plain way */
    }
    pthread_rwlock_wrlock(&in->rw);
    while (!rc && me.off > in->size && writes_wait_gap(fs_of(req), in, &me))
        fs_of(req)->gap_waits++; /* an earlier WRITE being served filled (part of) the gap */
    if (!rc && me.off > in->size)
        fs_of(req)->gap_bytes += me.off - in->size;
    if (!rc)
        rc = whole ? write_sealed(in, h->fd, (const uint8_t *)buf, size, (uint64_t)off, &sealed)
                   : write_plain(in, h->fd, (const uint8_t *)buf, size, (uint64_t)off);
    if (!rc) {
        if ((uint64_t)off != in->wb_end) /* not a continuation: a new run starts here */
            in->wb_start = (uint64_t)off;
        in->wb_end = (uint64_t)off + size;
        if (in->wb_end - in->wb_start >= WRITE_BEHIND) {
            kick_from = in->data_off + efs_data_len(in->wb_start / in->bs * in->bs, in->bs);
            kick_to = in->data_off + efs_data_len(in->wb_end, in->bs);
            in->wb_start = in->wb_end;
        }
    }
    pthread_rwlock_unlock(&in->rw);
    writes_leave(fs_of(req), in, &me);
    /* Write-behind for sequential streams: send the run's ciphertext to the disk now (asynchronously; the
     * call waits only when the device queue is full, which paces the writer). Otherwise a stream's
     * ciphertext sits dirty in the backing page cache until fsync, and the disk idles while the daemon
     * encrypts, then the daemon idles while the disk writes — two stages in series instead of a pipeline.
     * Random writes start no writeback: pages under writeback would make their rewrites wait. */
    if (kick_to > kick_from)
        (void)sync_file_range(h->fd, (off_t)kick_from, (off_t)(kick_to - kick_from), SYNC_FILE_RANGE_WRITE);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_write(req, size);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    (void)ino;
    fuse_reply_err(req, (datasync ? fdatasync(h->fd) : fsync(h->fd)) ? errno : 0);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    int rc = 0;
    (void)ino;
    if (mode & ~FALLOC_FL_KEEP_SIZE) {
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    pthread_rwlock_wrlock(&h->in->rw);
    if (!(mode & FALLOC_FL_KEEP_SIZE) && (uint64_t)(off + len) > h->in->size)
        rc = write_plain(h->in, h->fd, NULL, (size_t)((uint64_t)(off + len) - h->in->size), h->in->size);
    pthread_rwlock_unlock(&h->in->rw);
    fuse_reply_err(req, -rc);
}

static void op_setattr_body(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid, struct fuse_file_info *fi)
{
    struct efs *fs = fs_of(req);
    struct inode *in = inode_of(req, ino);
    char p[EFS_PROCPATH_MAX];
    struct stat st;
    int rc = 0;

    if (valid & FUSE_SET_ATTR_MODE) {
        if (fchmodat(AT_FDCWD, efs_procpath(in->fd, p), attr->st_mode & 07777, 0))
            rc = -errno;
    }
    if (!rc && (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
        uid_t u = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
        gid_t g = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
        if (fchownat(in->fd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
            rc = -errno;
    }
    if (!rc && (valid & FUSE_SET_ATTR_SIZE)) {
        int fd = fi ? ((struct handle *)(uintptr_t)fi->fh)->fd : open_backing(in, 0);
        char w[64];
        if (fd < 0) {
            rc = fd;
        } else {
            bool temp = !fi, was_loaded;
            pthread_rwlock_wrlock(&in->rw);
            was_loaded = in->loaded;
            rc = inode_load(fs, in, fd, what_of(in, w, sizeof w));
            if (!rc) /* truncate by an unprivileged caller */
                rc = kill_suidgid_if_asked(req, ino, fd);
            if (!rc)
                rc = truncate_plain(in, fd, (uint64_t)attr->st_size);
            if (!was_loaded && __atomic_load_n(&in->nopen, __ATOMIC_ACQUIRE) == 0) /* an open counts first */
                inode_unload(in);
            pthread_rwlock_unlock(&in->rw);
            if (temp)
                close(fd);
        }
    }
    if (!rc && (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
        struct timespec tv[2];
        tv[0].tv_sec = 0;
        tv[1].tv_sec = 0;
        tv[0].tv_nsec = UTIME_OMIT;
        tv[1].tv_nsec = UTIME_OMIT;
        if (valid & FUSE_SET_ATTR_ATIME_NOW)
            tv[0].tv_nsec = UTIME_NOW;
        else if (valid & FUSE_SET_ATTR_ATIME)
            tv[0] = attr->st_atim;
        if (valid & FUSE_SET_ATTR_MTIME_NOW)
            tv[1].tv_nsec = UTIME_NOW;
        else if (valid & FUSE_SET_ATTR_MTIME)
            tv[1] = attr->st_mtim;
        if (in->type == S_IFLNK) {
            rc = 0; /* symlink times: not settable through /proc; keep the backing ones */
        } else if (utimensat(AT_FDCWD, efs_procpath(in->fd, p), tv, 0)) {
            rc = -errno;
        }
    }
    if (!rc)
        rc = do_stat(fs, in, &st);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, &st, fs->timeout);
}

/* ---- namespace ------------------------------------------------------------------------------ */

/* Give a new entry the caller's ownership (the daemon runs as root), honouring setgid dirs. */
static void own(fuse_req_t req, struct inode *parent, int dirfd, const char *name, bool is_dir)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    struct stat pst;
    gid_t gid = ctx->gid;
    static _Atomic int root = -1; /* the daemon's euid does not change */
    if (root < 0)
        root = geteuid() == 0;
    if (!root)
        return;
    if (fstatat(parent->fd, "", &pst, AT_EMPTY_PATH) == 0 && (pst.st_mode & S_ISGID)) {
        gid = pst.st_gid;
        if (is_dir) {
            struct stat st;
            if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                char p[EFS_PROCPATH_MAX];
                int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                if (fd >= 0) {
                    (void)fchmodat(AT_FDCWD, efs_procpath(fd, p), (st.st_mode & 07777) | S_ISGID, 0);
                    close(fd);
                }
            }
        }
    }
    (void)fchownat(dirfd, name, ctx->uid, gid, AT_SYMLINK_NOFOLLOW);
}

/* Reply to a request that made the entry bn (its backing name, mapped already) in dir, or failed (rc). */
static void reply_new_entry(fuse_req_t req, struct inode *dir, const struct bname *bn, int rc)
{
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    if (!rc)
        rc = lookup_backing(fs_of(req), dir->fd, bn->b, &e);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_entry(req, &e);
}

static void op_mkdir_body(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct efs *fs = fs_of(req);
    struct inode *p = inode_of(req, parent);
    struct bname bn;
    char tmp[64];
    uint8_t id[EFS_DIRID_LEN];
    int rc = map_name(fs, parent, p, name, &bn, -EPERM), dfd;

    if (!rc && !fs->names) {
        if (mkdirat(p->fd, bn.b, mode))
            rc = -errno;
        else
            own(req, p, p->fd, bn.b, true);
    } else if (!rc && !(rc = prepare_name(p, &bn))) {
        /* A directory never exists without its durable id, so that a crash never leaves one whose
         * entries cannot be named: a spare directory (spares.c) whose id was made durable in a batch is
         * renamed into place ... */
        rc = efs_spares_take_dir(fs->spares, p->fd, bn.b, mode);
        if (!rc) {
            own(req, p, p->fd, bn.b, true);
        } else if (rc == -EAGAIN) {
            /* ... or, with none ready, one is made under a temporary name with its id, then renamed. */
            temp_name(tmp);
            if (mkdirat(p->fd, tmp, mode)) {
                rc = -errno;
            } else if ((dfd = openat(p->fd, tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
                rc = -errno;
                unlinkat(p->fd, tmp, AT_REMOVEDIR);
            } else {
                rc = efs_dirid_create_at(dfd, fs->cfg->dirids_in_xattr, id);
                if (!rc)
                    own(req, p, p->fd, tmp, true);
                if (!rc && renameat2(p->fd, tmp, p->fd, bn.b, RENAME_NOREPLACE))
                    rc = -errno;
                if (rc) {
                    unlinkat(dfd, EFS_DIRID_NAME, 0);
                    unlinkat(p->fd, tmp, AT_REMOVEDIR);
                }
                close(dfd);
            }
        }
        if (rc && rc != -EEXIST) /* (an existing entry of this name keeps its sidecar) */
            forget_name(p, &bn);
    }
    reply_new_entry(req, p, &bn, rc);
}

static void op_mknod_body(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    struct efs *fs = fs_of(req);
    struct inode *p = inode_of(req, parent);
    struct bname bn;
    int rc = map_name(fs, parent, p, name, &bn, -EPERM);
    if (!rc && S_ISREG(mode))
        rc = -EPERM; /* regular files are made by create (they need a header) */
    if (!rc)
        rc = prepare_name(p, &bn);
    if (!rc && mknodat(p->fd, bn.b, mode, rdev))
        rc = -errno;
    if (!rc)
        own(req, p, p->fd, bn.b, false);
    reply_new_entry(req, p, &bn, rc);
}

static void op_symlink_body(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    struct efs *fs = fs_of(req);
    struct inode *p = inode_of(req, parent);
    size_t n = strlen(link), sealed_len;
    uint8_t *sealed = NULL;
    char *enc = NULL;
    struct bname bn;
    int rc = map_name(fs, parent, p, name, &bn, -EPERM);
    if (rc) {
        /* reported below */
    } else if ((n + 28) * 4 / 3 + 4 >= PATH_MAX) {
        rc = -ENAMETOOLONG;
    } else if (!(sealed = malloc(n + 28)) || !(enc = malloc((n + 28) * 4 / 3 + 8))) {
        rc = -ENOMEM;
    } else if (!(rc = efs_seal_small(fs->keys, EFS_PURPOSE_SYMLINK, "envelopefs symlink v1", (const uint8_t *)link, n,
                                      sealed, &sealed_len)) &&
               !(rc = prepare_name(p, &bn))) {
        sodium_bin2base64(enc, (n + 28) * 4 / 3 + 8, sealed, sealed_len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        if (symlinkat(enc, p->fd, bn.b))
            rc = -errno;
        else
            own(req, p, p->fd, bn.b, false);
    }
    free(sealed);
    free(enc);
    reply_new_entry(req, p, &bn, rc);
}

static void op_readlink_body(fuse_req_t req, fuse_ino_t ino)
{
    struct efs *fs = fs_of(req);
    struct inode *in = inode_of(req, ino);
    char enc[PATH_MAX + 1], out[PATH_MAX + 1];
    uint8_t raw[PATH_MAX];
    size_t raw_len, out_len;
    ssize_t n = readlinkat(in->fd, "", enc, sizeof enc - 1);
    if (n < 0) {
        fuse_reply_err(req, errno);
        return;
    }
    enc[n] = 0;
    if (efs_base64_decode(raw, sizeof raw, enc, (size_t)n, NULL, &raw_len, sodium_base64_VARIANT_URLSAFE_NO_PADDING) ||
        efs_open_small(fs->keys, EFS_PURPOSE_SYMLINK, "envelopefs symlink v1", raw, raw_len, (uint8_t *)out,
                       &out_len)) {
        EFS_ERROR("symlink (inode %" PRIu64 "): target fails authentication", (uint64_t)in->ino);
        fuse_reply_err(req, EIO);
        return;
    }
    out[out_len] = 0;
    fuse_reply_readlink(req, out);
}

static void op_unlink_body(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct efs *fs = fs_of(req);
    struct inode *p = inode_of(req, parent);
    struct bname bn;
    int rc = map_name(fs, parent, p, name, &bn, -ENOENT);
    if (!rc && unlinkat(p->fd, bn.b, 0))
        rc = -errno;
    if (!rc)
        forget_name(p, &bn);
    fuse_reply_err(req, -rc);
}

/* Remove an empty directory whose only backing entry is its id file: the id file is moved out first
 * (and back if rmdir fails), so a directory is never left without its id. */
static int rmdir_encrypted(struct inode *p, const char *backing)
{
    char tmp[64];
    struct dirent *e;
    DIR *d;
    int dfd = openat(p->fd, backing, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), rc = 0;
    if (dfd < 0)
        return -errno;
    d = fdopendir(dfd);
    if (!d) {
        rc = -errno;
        close(dfd);
        return rc;
    }
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, EFS_DIRID_NAME)) {
            closedir(d);
            return -ENOTEMPTY;
        }
    temp_name(tmp);
    if (renameat(dirfd(d), EFS_DIRID_NAME, p->fd, tmp) && errno != ENOENT) {
        rc = -errno;
    } else if (unlinkat(p->fd, backing, AT_REMOVEDIR)) {
        rc = -errno;
        (void)renameat(p->fd, tmp, dirfd(d), EFS_DIRID_NAME);
    } else {
        unlinkat(p->fd, tmp, 0);
    }
    closedir(d);
    return rc;
}

static void op_rmdir_body(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct efs *fs = fs_of(req);
    struct inode *p = inode_of(req, parent);
    struct bname bn;
    int rc = map_name(fs, parent, p, name, &bn, -ENOENT);
    if (!rc) /* an id in an xattr goes with the directory; an id file must be moved out first */
        rc = fs->names && !fs->cfg->dirids_in_xattr ? rmdir_encrypted(p, bn.b)
                                                     : (unlinkat(p->fd, bn.b, AT_REMOVEDIR) ? -errno : 0);
    if (!rc)
        forget_name(p, &bn);
    fuse_reply_err(req, -rc);
}

static void op_rename_body(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    struct efs *fs = fs_of(req);
    struct inode *p = inode_of(req, parent), *np = inode_of(req, newparent);
    struct bname from, to;
    int rc = map_name(fs, parent, p, name, &from, -EPERM);
    if (!rc)
        rc = map_name(fs, newparent, np, newname, &to, -EPERM);
    if (!rc)
        rc = prepare_name(np, &to);
    if (!rc && renameat2(p->fd, from.b, np->fd, to.b, flags))
        rc = -errno;
    /* the old name is gone (after an exchange both names still exist) */
    if (!rc && !(flags & RENAME_EXCHANGE) && !(p == np && !strcmp(from.b, to.b)))
        forget_name(p, &from);
    fuse_reply_err(req, -rc);
}

static void op_link_body(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    struct efs *fs = fs_of(req);
    struct inode *in = inode_of(req, ino), *np = inode_of(req, newparent);
    struct bname bn;
    char p[EFS_PROCPATH_MAX];
    int rc = map_name(fs, newparent, np, newname, &bn, -EPERM);
    if (!rc)
        rc = prepare_name(np, &bn);
    if (!rc && linkat(AT_FDCWD, efs_procpath(in->fd, p), np->fd, bn.b, AT_SYMLINK_FOLLOW))
        rc = -errno;
    reply_new_entry(req, np, &bn, rc);
}

static void op_create_body(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
    struct efs *fs = fs_of(req);
    struct inode *p = inode_of(req, parent), *in;
    struct fuse_entry_param e;
    efs_header h;
    efs_file_keys *fk = NULL;
    int fd = -1, rc;
    struct stat st;

    struct bname bn;

    rc = map_name(fs, parent, p, name, &bn, -EPERM);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    fk = efs_secpool_alloc(sizeof *fk);
    if (!fk) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* A spare file with a durable header becomes the new file (spares.c) ... */
    rc = prepare_name(p, &bn);
    if (!rc)
        rc = efs_spares_take(fs->spares, p->fd, bn.b, mode, &fd, &h, fk);
    if (rc == -EAGAIN) {
        /* ... or, with none ready, keys first (if the key service refuses, nothing is written), then
         * the header, durable before any data can be. */
        rc = efs_keys_new_file(fs->keys, &h, fk);
        if (!rc) {
            fd = openat(p->fd, bn.b, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, mode & 07777);
            if (fd < 0)
                rc = -errno;
        }
        if (!rc) {
            rc = write_header(fs, fd, &h);
            if (rc) {
                close(fd);
                fd = -1;
                unlinkat(p->fd, bn.b, 0);
            }
        }
    }
    if (rc) {
        if (rc != -EEXIST) /* an existing entry of this name keeps its long-name sidecar */
            forget_name(p, &bn);
        goto fail;
    }
    own(req, p, p->fd, bn.b, false);
    memset(&e, 0, sizeof e);
    rc = lookup_backing(fs, p->fd, bn.b, &e); /* the name is mapped already */
    if (rc)
        goto fail;
    in = (struct inode *)(uintptr_t)e.ino;
    if (fstat(fd, &st) == 0 && st.st_ino != in->ino) {
        rc = -EIO; /* raced with a rename */
        unref(fs, in, 1);
        goto fail;
    }
    pthread_rwlock_wrlock(&in->rw);
    if (!in->loaded) {
        in->keys = fk;
        fk = NULL;
        memcpy(in->file_id, h.file_id, EFS_FILE_ID_LEN);
        in->bs = h.block_size;
        in->data_off = fs->cfg->dek_in_xattr ? 0 : efs_header_len(&h);
        in->hdr_len_cache = (int64_t)in->data_off;
        in->size = 0;
        in->loaded = 1;
    }
    pthread_rwlock_unlock(&in->rw);
    rc = handle_new(fs, in, fd, 0, fi);
    if (rc) {
        unref(fs, in, 1);
        goto fail;
    }
    if (fk)
        efs_secpool_free(fk, sizeof *fk);
    e.attr.st_size = 0;
    fuse_reply_create(req, &e, fi);
    return;
fail:
    if (fd >= 0)
        close(fd);
    if (fk)
        efs_secpool_free(fk, sizeof *fk);
    fuse_reply_err(req, -rc);
}

/* ---- directories ---------------------------------------------------------------------------- */

struct dirh {
    DIR *dp;
    struct dirent *entry;
    off_t offset;
    uint8_t dirid[EFS_DIRID_LEN];  /* encrypted names: this directory's id */
    int ahead;                     /* entries after the current one whose headers are being read */
};

/* In a filesystem without a fixed header size (config format ≤ 2), readdirplus reads every new regular
 * file's header (its length gives the plaintext size). Start those
 * reads for the next entries all at once, so a cold `ls -l` waits for one batch of disk reads instead of
 * one read per file. Leaves the stream where it was. */
static void prefetch_headers(struct dirh *d)
{
    long pos = telldir(d->dp);
    struct dirent *e;
    int n = 0, dfd = dirfd(d->dp);
    if (pos < 0)
        return;
    while (n < 64 && (e = readdir(d->dp))) {
        int fd;
        n++;
        if (e->d_type != DT_REG)
            continue;
        fd = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0) {
            (void)posix_fadvise(fd, 0, 4096, POSIX_FADV_WILLNEED);
            close(fd);
        }
    }
    seekdir(d->dp, pos);
    d->ahead = n;
}

static void op_opendir_body(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct inode *in = inode_of(req, ino);
    struct dirh *d = calloc(1, sizeof *d);
    int fd;
    if (!d) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    if (fs_of(req)->names) {
        int rc = dir_id(fs_of(req), in, d->dirid);
        if (rc) {
            free(d);
            fuse_reply_err(req, -rc);
            return;
        }
    }
    fd = openat(in->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || !(d->dp = fdopendir(fd))) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        free(d);
        fuse_reply_err(req, err);
        return;
    }
    fi->fh = (uintptr_t)d;
    fi->cache_readdir = 1;
    fuse_reply_open(req, fi);
}

/* readdir and readdirplus: entries decrypted (or, at the root of a plaintext-names filesystem,
 * the reserved names hidden); entries failing authentication are skipped with a log line. With plus,
 * each entry is also looked up (one reference the kernel will forget), which spares ls -l a LOOKUP
 * round trip per entry. */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi,
                       bool plus)
{
    struct efs *fs = fs_of(req);
    struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
    char plain[256];
    const char *name;
    char *buf = calloc(1, size), *p = buf;
    size_t rem = size;
    int err = 0;
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    if (off != d->offset) {
        seekdir(d->dp, off);
        d->entry = NULL;
        d->offset = off;
        d->ahead = 0;
    }
    for (;;) {
        struct fuse_entry_param e;
        bool dots;
        size_t n;
        if (!d->entry) {
            if (plus && !efs_config_data_offset(fs->cfg, NULL) && d->ahead-- <= 0)
                prefetch_headers(d);
            errno = 0;
            d->entry = readdir(d->dp);
            if (!d->entry) {
                err = errno;
                break;
            }
        }
        name = d->entry->d_name;
        dots = !strcmp(name, ".") || !strcmp(name, "..");
        if (dots) {
            /* shown as they are */
        } else if (fs->names) {
            int rc = efs_name_from_backing(fs->names, dirfd(d->dp), d->dirid, name, plain);
            if (rc == -EBADMSG)
                EFS_ERROR("directory (inode %" PRIu64 "): entry %s fails authentication (tampered or moved "
                          "from another directory); skipped", (uint64_t)inode_of(req, ino)->ino, name);
            if (rc) {
                d->offset = d->entry->d_off;
                d->entry = NULL;
                continue;
            }
            name = plain;
        } else if (ino == FUSE_ROOT_ID && efs_reserved_root_name(name)) {
            d->offset = d->entry->d_off;
            d->entry = NULL;
            continue;
        }
        memset(&e, 0, sizeof e);
        e.attr.st_ino = d->entry->d_ino;
        e.attr.st_mode = (mode_t)(d->entry->d_type << 12);
        if (plus && !dots) {
            struct inode *dir = inode_of(req, ino);
            int rc = dir->dev ? readdirplus_known(fs, dir->dev, d->entry->d_ino, &e) : -ENOENT;
            if (rc == -ENOENT)
                rc = lookup_backing(fs, dirfd(d->dp), d->entry->d_name, &e);
            if (rc == -ENOENT) { /* removed since readdir saw it */
                d->offset = d->entry->d_off;
                d->entry = NULL;
                continue;
            }
            if (rc) {
                err = -rc;
                break;
            }
        }
        n = plus ? fuse_add_direntry_plus(req, p, rem, name, &e, d->entry->d_off)
                 : fuse_add_direntry(req, p, rem, name, &e.attr, d->entry->d_off);
        if (n > rem) {
            if (e.ino) /* not sent: the kernel will not forget it */
                unref(fs, (struct inode *)(uintptr_t)e.ino, 1);
            break;
        }
        p += n;
        rem -= n;
        d->offset = d->entry->d_off;
        d->entry = NULL;
    }
    if (err && rem == size) /* an error with nothing to show: report it */
        fuse_reply_err(req, err);
    else
        fuse_reply_buf(req, buf, size - rem);
    free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
    (void)ino;
    closedir(d->dp);
    free(d);
    fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
    int fd = dirfd(d->dp);
    (void)ino;
    fuse_reply_err(req, (datasync ? fdatasync(fd) : fsync(fd)) ? errno : 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct statvfs sv;
    if (fstatvfs(fs_of(req)->root.fd, &sv))
        fuse_reply_err(req, errno);
    else
        fuse_reply_statfs(req, &sv);
    (void)ino;
}

/* ---- xattrs: user.* only, values encrypted (names are not) ---------------------------------- */

static bool hidden_xattr(const char *name)
{
    return !strncmp(name, "user.envelopefs.", 16);
}

/* Reply to getxattr/listxattr: the size when asked for it (size 0), else the value or ERANGE. */
static void reply_xattr_value(fuse_req_t req, size_t size, const void *value, size_t len)
{
    if (size == 0)
        fuse_reply_xattr(req, len);
    else if (size < len)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, value, len);
}

static void op_setxattr_body(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags)
{
    struct efs *fs = fs_of(req);
    struct inode *in = inode_of(req, ino);
    uint8_t *sealed;
    size_t sl;
    char p[EFS_PROCPATH_MAX];
    int rc;
    if (strncmp(name, "user.", 5)) {
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    if (hidden_xattr(name)) {
        fuse_reply_err(req, EPERM);
        return;
    }
    if (in->type != S_IFREG && in->type != S_IFDIR) {
        fuse_reply_err(req, EPERM);
        return;
    }
    sealed = malloc(size + 28);
    if (!sealed) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    rc = efs_seal_small(fs->keys, EFS_PURPOSE_XATTR, name, (const uint8_t *)value, size, sealed, &sl);
    if (!rc && setxattr(efs_procpath(in->fd, p), name, sealed, sl, flags))
        rc = -errno;
    free(sealed);
    fuse_reply_err(req, -rc);
}

static void op_getxattr_body(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    struct efs *fs = fs_of(req);
    struct inode *in = inode_of(req, ino);
    uint8_t *sealed = NULL, *plain = NULL;
    size_t pl;
    ssize_t n;
    char p[EFS_PROCPATH_MAX];

    fs->getxattr_requests++;
    if (ino == FUSE_ROOT_ID && !strcmp(name, EFS_XATTR_STATS)) {
        char s[1024];
        long nfds, budget, pinned = 0, evictable = 0, inodes = 0;
        int len;
        pthread_mutex_lock(&fs->table_lock);
        nfds = fs->nfds;
        budget = fs->fd_budget;
        for (size_t b = 0; b < HASH_BUCKETS; b++)
            for (struct inode *i = fs->table[b]; i; i = i->next) {
                inodes++;
                pinned += i->pins > 0 || i->nopen > 0;
                evictable += i->fh != NULL;
            }
        pthread_mutex_unlock(&fs->table_lock);
        len = snprintf(s, sizeof s,
                       "{\"kms_calls\":%" PRIu64 ",\"dek_cache_hits\":%" PRIu64 ",\"inodes\":%ld,"
                       "\"inode_fds\":%ld,\"fd_budget\":%ld,\"busy_inodes\":%ld,\"evictable_inodes\":%ld,"
                       "\"getxattr_requests\":%" PRIu64 ",\"spare_creates\":%" PRIu64 ",\"spare_mkdirs\":%" PRIu64 ",\"header_probes\":%" PRIu64 ","
                       "\"gap_bytes\":%" PRIu64 ",\"gap_waits\":%" PRIu64 ",\"negative_lookups\":%" PRIu64
                       ",\"uring_requests\":%" PRIu64 ",\"pid\":%ld}",
                       efs_keys_kms_calls(fs->keys), efs_keys_cache_hits(fs->keys), inodes, nfds, budget,
                       pinned, evictable, (uint64_t)fs->getxattr_requests, efs_spares_taken(fs->spares),
                       efs_spares_taken_dirs(fs->spares), (uint64_t)fs->header_probes, (uint64_t)fs->gap_bytes,
                       (uint64_t)fs->gap_waits, (uint64_t)fs->negative_lookups,
                       efs_uring_requests(fs->uring), (long)getpid());
        reply_xattr_value(req, size, s, (size_t)len);
        return;
    }
    if (hidden_xattr(name) || (in->type != S_IFREG && in->type != S_IFDIR)) { /* (only user.* get here) */
        fuse_reply_err(req, ENODATA);
        return;
    }
    n = getxattr(efs_procpath(in->fd, p), name, NULL, 0);
    if (n < 0) {
        fuse_reply_err(req, errno);
        return;
    }
    sealed = malloc((size_t)n + 1);
    plain = malloc((size_t)n + 1);
    if (!sealed || !plain) {
        fuse_reply_err(req, ENOMEM);
        goto out;
    }
    n = getxattr(p, name, sealed, (size_t)n);
    if (n < 0) {
        fuse_reply_err(req, errno);
        goto out;
    }
    if (efs_open_small(fs->keys, EFS_PURPOSE_XATTR, name, sealed, (size_t)n, plain, &pl)) {
        EFS_ERROR("xattr %s of inode %" PRIu64 " fails authentication", name, (uint64_t)in->ino);
        fuse_reply_err(req, EIO);
        goto out;
    }
    reply_xattr_value(req, size, plain, pl);
out:
    free(sealed);
    free(plain);
}

static void op_listxattr_body(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    struct inode *in = inode_of(req, ino);
    char p[EFS_PROCPATH_MAX], *names = NULL, *out = NULL;
    ssize_t n;
    size_t o = 0;
    if (in->type != S_IFREG && in->type != S_IFDIR) {
        reply_xattr_value(req, size, NULL, 0);
        return;
    }
    n = listxattr(efs_procpath(in->fd, p), NULL, 0);
    if (n < 0) {
        fuse_reply_err(req, errno);
        return;
    }
    names = malloc((size_t)n + 1);
    out = malloc((size_t)n + 1);
    if (!names || !out) {
        fuse_reply_err(req, ENOMEM);
        goto done;
    }
    n = listxattr(p, names, (size_t)n);
    if (n < 0) {
        fuse_reply_err(req, errno);
        goto done;
    }
    for (ssize_t i = 0; i < n;) {
        size_t l = strlen(names + i) + 1;
        if (!strncmp(names + i, "user.", 5) && !hidden_xattr(names + i)) {
            memcpy(out + o, names + i, l);
            o += l;
        }
        i += (ssize_t)l;
    }
    reply_xattr_value(req, size, out, o);
done:
    free(names);
    free(out);
}

static void op_removexattr_body(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    struct inode *in = inode_of(req, ino);
    char p[EFS_PROCPATH_MAX];
    if (strncmp(name, "user.", 5)) {
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    if (hidden_xattr(name)) {
        fuse_reply_err(req, EPERM);
        return;
    }
    fuse_reply_err(req, removexattr(efs_procpath(in->fd, p), name) ? errno : 0);
}

/* ---- pinned entry points: every operation that uses an inode's fd holds it pinned ---------- */

/* Pin a, and b unless NULL, for the duration of an operation. On failure reply with the error and
 * return false; nothing stays pinned. */
static bool pin_or_reply(fuse_req_t req, struct inode *a, struct inode *b)
{
    struct efs *fs = fs_of(req);
    int rc = pin(fs, a);
    if (!rc && b && (rc = pin(fs, b)))
        unpin(fs, a);
    if (rc)
        fuse_reply_err(req, -rc);
    return !rc;
}

/* Run CALL (an op_*_body, which replies) with inodes A and B (B may be NULL) pinned. fs is read first:
 * req is gone once CALL has replied. */
#define PINNED(req, a, b, call)                                                                        \
    do {                                                                                               \
        struct efs *fs_ = fs_of(req);                                                                  \
        struct inode *a_ = (a), *b_ = (b);                                                             \
        if (!pin_or_reply(req, a_, b_))                                                                \
            return;                                                                                    \
        call;                                                                                          \
        if (b_)                                                                                        \
            unpin(fs_, b_);                                                                            \
        unpin(fs_, a_);                                                                                \
    } while (0)

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    PINNED(req, inode_of(req, parent), NULL, op_lookup_body(req, parent, name));
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    PINNED(req, inode_of(req, ino), NULL, op_getattr_body(req, ino, fi));
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid, struct fuse_file_info *fi)
{
    PINNED(req, inode_of(req, ino), NULL, op_setattr_body(req, ino, attr, valid, fi));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    PINNED(req, inode_of(req, ino), NULL, op_readlink_body(req, ino));
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    PINNED(req, inode_of(req, parent), NULL, op_mknod_body(req, parent, name, mode, rdev));
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    PINNED(req, inode_of(req, parent), NULL, op_mkdir_body(req, parent, name, mode));
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    PINNED(req, inode_of(req, parent), NULL, op_unlink_body(req, parent, name));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    PINNED(req, inode_of(req, parent), NULL, op_rmdir_body(req, parent, name));
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    PINNED(req, inode_of(req, parent), NULL, op_symlink_body(req, link, parent, name));
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    PINNED(req, inode_of(req, ino), NULL, op_open_body(req, ino, fi));
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
    PINNED(req, inode_of(req, parent), NULL, op_create_body(req, parent, name, mode, fi));
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    PINNED(req, inode_of(req, ino), NULL, op_opendir_body(req, ino, fi));
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags)
{
    PINNED(req, inode_of(req, ino), NULL, op_setxattr_body(req, ino, name, value, size, flags));
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    /* Only user.* xattrs exist. The kernel asks for security.capability before the first write to each
     * file and at every chown: answer those without touching the inode table. */
    if (strncmp(name, "user.", 5)) {
        fs_of(req)->getxattr_requests++;
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    PINNED(req, inode_of(req, ino), NULL, op_getxattr_body(req, ino, name, size));
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    PINNED(req, inode_of(req, ino), NULL, op_listxattr_body(req, ino, size));
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    PINNED(req, inode_of(req, ino), NULL, op_removexattr_body(req, ino, name));
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname, unsigned int flags)
{
    PINNED(req, inode_of(req, parent), inode_of(req, newparent),
           op_rename_body(req, parent, name, newparent, newname, flags));
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    PINNED(req, inode_of(req, ino), inode_of(req, newparent), op_link_body(req, ino, newparent, newname));
}

static const struct fuse_lowlevel_ops OPS = {
    .init = op_init,
    .destroy = op_destroy,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    /* No .flush: the daemon keeps no per-open state to flush (data is written back by the kernel before
     * FLUSH, locks are the kernel's), and the ENOSYS libfuse answers makes the kernel stop sending FLUSH at
     * every close — one round trip per file in an untar. */
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .create = op_create,
    .fallocate = op_fallocate,
};

/* ---- mount ---------------------------------------------------------------------------------- */

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

int efs_mount_run(const efs_mount_opts *o, const efs_config *cfg)
{
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    struct fuse_session *se = NULL;
    struct efs *fs;
    struct rlimit rl = {0, 0};
    char opt[8192];
    int rc = 1, fd, ready_fd = -1;
    kmsc *kms;

    /* Request buffers are up to ~1 MiB: keep them on the heap instead of an mmap/munmap (and page
     * faults) per request, which glibc does above its default 128 KiB threshold. */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    /* Keep freed request buffers (≈1 MiB each) instead of returning them to the kernel after every
     * request: trimming made each write fault its output buffer in again (4 % of a streaming write). */
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    mallopt(M_ARENA_MAX, 2); /* workers share two heaps: freed buffers are reused across threads */
    fs = calloc(1, sizeof *fs);
    if (!fs)
        return 1;
    pthread_mutex_init(&fs->table_lock, NULL);
    pthread_mutex_init(&fs->write_lock, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&fs->write_placed, &ca);
        pthread_condattr_destroy(&ca);
    }
    fs->cfg = cfg;
    fs->cipherdir = o->cipherdir;
    fs->timeout = 1.0;
    inode_init(&fs->root);
    fs->root.nlookup = 2;
    fs->root.type = S_IFDIR;
    fd = open(o->cipherdir, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "envelopefs: cannot open %s: %s\n", o->cipherdir, strerror(errno));
        free(fs);
        return 1;
    }
    fs->root.fd = fd;
    {
        struct stat rst;
        if (fstat(fd, &rst) == 0) /* (the root is not in the table; its dev serves readdirplus_known) */
            fs->root.dev = rst.st_dev, fs->root.ino = rst.st_ino;
    }
    fs->mount_fd = open(o->cipherdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    snprintf(opt, sizeof opt, "-ofsname=envelopefs:%s,subtype=envelopefs,default_permissions%s%s", o->cipherdir,
             o->fuse_opts ? "," : "", o->fuse_opts ? o->fuse_opts : "");
    if (fuse_opt_add_arg(&args, "envelopefs") || fuse_opt_add_arg(&args, opt) ||
        (o->debug && fuse_opt_add_arg(&args, "-d")))
        goto out;
    se = fuse_session_new(&args, &OPS, sizeof OPS, fs);
    if (!se) {
        fprintf(stderr, "envelopefs: cannot create the FUSE session (bad -o options?)\n");
        goto out;
    }
    if (fuse_set_signal_handlers(se))
        goto out;
    if (fuse_session_mount(se, o->mountpoint)) {
        fprintf(stderr, "envelopefs: cannot mount on %s\n", o->mountpoint);
        goto out_handlers;
    }
    fs->se = se;
    set_readahead(o->mountpoint, IO_CHUNK / 1024);
    /* FUSE over io_uring, when asked for and allowed: offered in the INIT reply (fuseio.c), started
     * once that is written. Requests carry up to max_write (IO_CHUNK) bytes. */
    if (efs_uring_wanted() && !(fs->uring = efs_uring_new(se, fuse_session_fd(se), IO_CHUNK + 4096)))
        EFS_WARN("FUSE over io_uring: out of memory; serving over /dev/fuse");
    /* Before any request is read: the INIT exchange goes through it. */
    if (efs_fuseio_attach(se, fs->uring)) {
        fprintf(stderr, "envelopefs: cannot attach the FUSE I/O layer\n");
        fuse_session_unmount(se);
        goto out_handlers;
    }
    /* The parent (`envelopefs mount`) waits until the keys are loaded and the spares cleared, so the
     * mount is serving when it returns, and until then errors go to the user's terminal. */
    if (!o->foreground && (ready_fd = efs_daemon_start()) < 0) {
        fprintf(stderr, "envelopefs: cannot go to the background: %s\n", strerror(-ready_fd));
        fuse_session_unmount(se);
        goto out_handlers;
    }
    /* One O_PATH descriptor per inode the kernel knows (as in libfuse's passthrough_ll): raise the
     * descriptor limit — as root up to the kernel's nr_open, otherwise to the hard limit. */
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
    {
        struct rlimit nofile;
        long lim = getrlimit(RLIMIT_NOFILE, &nofile) == 0 ? (long)nofile.rlim_cur : 1024;
        const char *env = getenv("ENVELOPEFS_FD_BUDGET"); /* tests set it low to exercise eviction */
        fs->fd_budget = lim > 4096 ? lim - 1024 : lim / 2; /* the rest for handles, dirs, the store */
        if (env && atol(env) >= 16 && atol(env) < fs->fd_budget)
            fs->fd_budget = atol(env);
    }
    /* The daemon holds keys: no core dumps. (PR_SET_DUMPABLE 0 would also forbid the
     * /proc/self/fd magic links this daemon resolves for chmod/utimens/xattrs.) */
    (void)setrlimit(RLIMIT_CORE, &rl);
    kms = o->open_kms(o->open_kms_arg);
    if (!kms) {
        EFS_ERROR("cannot open the key service; unmounting %s", o->mountpoint);
        fuse_session_unmount(se);
        goto out_handlers;
    }
    {
        char why[512];
        int krc = efs_keys_open(cfg, kms, &fs->keys, why, sizeof why);
        if (krc) {
            EFS_ERROR("%s; unmounting %s", why, o->mountpoint);
            kmsc_free(kms);
            fuse_session_unmount(se);
            goto out_handlers;
        }
        fs->names = efs_keys_names(fs->keys);
        if (efs_keys_set_cipherdir(fs->keys, o->cipherdir)) {
            fuse_session_unmount(se);
            goto out_handlers;
        }
    }
    umask(0); /* modes arrive with the caller's umask applied: create exactly what is asked */
    {
        const char *sp = getenv("ENVELOPEFS_SPARES"); /* 0: no spare files (benchmarks compare) */
        if ((!sp || strcmp(sp, "0")) && efs_spares_new(fs->root.fd, fs->keys, cfg, &fs->spares)) {
            fuse_session_unmount(se);
            goto out_handlers;
        }
    }
    if (ready_fd >= 0) {
        efs_log_init("envelopefs", true, EFS_LOG_INFO);
        efs_daemon_ready(ready_fd);
    }
    EFS_INFO("mounted %s on %s (key %s)", o->cipherdir, o->mountpoint, cfg->key_id);
    {
        /* Each thread holds a ~1 MiB receive buffer once it has served a large write (whole blocks are
         * encrypted in place; reads and partial blocks use short-lived buffers): twice the CPUs (4 to 16)
         * bounds the daemon's memory and still overlaps I/O. A client sending one request at a time is
         * served by one thread (loop.c). */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned workers = cpus < 2 ? 4 : cpus > 8 ? 16 : (unsigned)(2 * cpus);
        /* Spinning for the next request pays off only with a CPU for the client besides the daemon's
         * leader; ENVELOPEFS_SPIN_US overrides (0 turns it off). */
        const char *sp = getenv("ENVELOPEFS_SPIN_US");
        unsigned spin_us = sp ? (unsigned)strtoul(sp, NULL, 10) : cpus >= 2 ? 20 : 0;
        rc = efs_loop_run(se, workers, spin_us) ? 1 : 0;
    }
    fuse_session_unmount(se);
    EFS_INFO("unmounted %s", o->mountpoint);
out_handlers:
    fuse_remove_signal_handlers(se);
out:
    /* The connection is gone: the ring threads have left or are told to; none may still be serving when
     * the session and the inodes go. */
    efs_fuseio_drop_uring();
    efs_uring_free(fs->uring);
    fs->uring = NULL;
    if (se)
        fuse_session_destroy(se);
    fuse_opt_free_args(&args);
    /* free every remaining inode; wipe keys */
    for (size_t b = 0; b < HASH_BUCKETS; b++) {
        struct inode *in = fs->table[b];
        while (in) {
            struct inode *next = in->next;
            inode_destroy(in);
            in = next;
        }
    }
    close(fs->root.fd);
    if (fs->mount_fd >= 0)
        close(fs->mount_fd);
    efs_spares_free(fs->spares); /* before the keys it uses */
    efs_keys_free(fs->keys);
    pthread_mutex_destroy(&fs->table_lock);
    free(fs);
    return rc;
}
