/*
 * inodes.c — the directory mount's inode table (see mountfs.h): one `struct inode` per backing inode,
 * keyed by (st_dev, st_ino), holding an O_PATH descriptor and a lookup count; the FUSE node id is the
 * pointer. Every operation that uses an inode's descriptor holds it pinned; idle inodes' descriptors are
 * closed when too many are open (eviction) and reopened from their file handles when next used. Regular
 * files also carry, while open, their file keys (locked memory) and content (content.c).
 *
 * Lock order, everywhere in the mount:
 *     fs->table_lock  →  inode->rw  →  the content group's write_lock (content.c)
 * table_lock guards the table, nlookup, nopen, pins, fd (eviction) and the fd count; rw an inode's keys and
 * content (shared for reads, exclusive for writes, truncates, loads and unloads); write_lock the lists of
 * WRITEs in flight. inode_destroy runs without table_lock (closing a large unlinked file's last descriptor
 * can take long). The closer's own lock (closer.c) is a leaf: efs_inode_unlinked hands it a descriptor
 * after releasing table_lock, and the closer threads take no other lock.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/secpool.h"
#include "mountfs.h"
#include "symlink.h"

const char *efs_inode_what(struct inode *in, char *buf, size_t cap)
{
    snprintf(buf, cap, "file (inode %" PRIu64 ")", (uint64_t)in->ino);
    return buf;
}

/* Give the inode its keys (adopted: locked memory) and its content for the file of header h whose data
 * starts at data_off and holds size plaintext bytes (rw lock held exclusively). */
int efs_inode_attach(struct efs *fs, struct inode *in, efs_file_keys *keys, const efs_header *h,
                        uint64_t data_off, uint64_t size)
{
    char w[64];
    efs_content_params cp = {.block_size = h->block_size, .data_off = data_off, .size = size,
                             .bind = efs_file_bind, .bind_arg = &in->fb, .lock = &in->rw,
                             .group = fs->writes, .what = efs_inode_what(in, w, sizeof w)};
    int rc;
    in->fb.keys = keys;
    memcpy(in->fb.file_id, h->file_id, EFS_FILE_ID_LEN);
    rc = efs_content_new(&cp, &in->content);
    if (rc)
        return rc;
    in->keys = keys;
    in->hdr_len_cache = (int64_t)data_off;
    in->loaded = 1;
    return 0;
}

/* Load keys into the inode (rw lock held exclusively). fd: an open backing fd. */
int efs_inode_load(struct efs *fs, struct inode *in, int fd, const char *what)
{
    efs_header h;
    size_t hl, hlen;
    struct stat st;
    int rc;
    uint64_t size;

    if (in->loaded)
        return 0;
    rc = efs_header_load(fd, fs->cfg->dek_in_xattr, &h, &hlen, &hl);
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
    rc = efs_inode_attach(fs, in, in->keys, &h, hl, size);
    if (rc) {
        efs_secpool_free(in->keys, sizeof *in->keys);
        in->keys = NULL;
    }
    return rc;
}

void efs_inode_unload(struct inode *in)
{
    efs_content_free(in->content);
    in->content = NULL;
    if (in->keys) {
        efs_secpool_free(in->keys, sizeof *in->keys);
        in->keys = NULL;
    }
    in->loaded = 0;
}

/* Plaintext size for getattr of a regular file. */
static void efs_inode_fix_size(struct efs *fs, struct inode *in, struct stat *st)
{
    uint64_t size = 0;
    if (!S_ISREG(st->st_mode))
        return;
    pthread_rwlock_rdlock(&in->rw);
    if (in->loaded) {
        st->st_size = (off_t)efs_content_size(in->content);
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

int efs_inode_stat(struct efs *fs, struct inode *in, struct stat *st)
{
    if (fstatat(in->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
        return -errno;
    efs_inode_fix_size(fs, in, st);
    efs_symlink_fix_size(fs->root.fd, in->fd, st);
    return 0;
}

/* ---- inode table ---------------------------------------------------------------------------- */

static size_t bucket(ino_t ino, dev_t dev) { return (size_t)((ino * 2654435761u) ^ dev) % HASH_BUCKETS; }

void efs_inode_init(struct inode *in)
{
    pthread_rwlock_init(&in->rw, NULL);
    in->hdr_len_cache = -1;
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

/* Close the O_PATH fds of idle inodes (no operation using them, not open) until well under the
 * budget; they are reopened from their file handles when next used. table_lock held. The kernel keeps
 * an inode for every dentry it caches, so without this a large tree exhausts RLIMIT_NOFILE. An inode's
 * handle is taken here, the first time it is evicted, not when it is made: most inodes never are (one
 * name_to_handle_at per LOOKUP or READDIRPLUS entry of a new inode saved), and this runs only over budget. */
static void evict_idle(struct efs *fs)
{
    long target = fs->fd_budget - fs->fd_budget / 8;
    for (size_t n = 0; n < HASH_BUCKETS && fs->nfds > target; n++) {
        struct inode *in = fs->table[fs->evict_cursor];
        fs->evict_cursor = (fs->evict_cursor + 1) % HASH_BUCKETS;
        for (; in && fs->nfds > target; in = in->next)
            if (in->fd >= 0 && !in->no_handle && !in->pins && !in->nopen) {
                if (!in->fh && !(in->fh = handle_of(in->fd))) {
                    in->no_handle = 1; /* no file handles here: this inode keeps its fd */
                    continue;
                }
                close(in->fd);
                in->fd = -1;
                fs->nfds--;
            }
    }
}

/* Make in->fd usable for the duration of an operation: reopen it if evicted. 0 or -errno. */
int efs_inode_pin(struct efs *fs, struct inode *in)
{
    int rc = 0;
    pthread_mutex_lock(&fs->table_lock);
    if (in->fd < 0 && in->gone) {
        rc = -ENOENT; /* closed when its last name went (efs_inode_unlinked) */
    } else if (in->fd < 0) {
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

struct inode *efs_inode_take_if_unused(struct efs *fs, struct inode *in);
void efs_inode_destroy(struct inode *in);

void efs_inode_unpin(struct efs *fs, struct inode *in)
{
    struct inode *dead;
    pthread_mutex_lock(&fs->table_lock);
    in->pins--;
    dead = efs_inode_take_if_unused(fs, in); /* a forget may have come while it was pinned */
    pthread_mutex_unlock(&fs->table_lock);
    efs_inode_destroy(dead);
}

/* The known inode for st, referenced (nlookup) and pinned; if it was evicted it adopts *fd (which
 * is then set to -1). NULL if unknown. table_lock held. */
/* The inode (dev, ino) in the table, or NULL. table_lock held. */
static struct inode *inode_find_locked(struct efs *fs, dev_t dev, ino_t ino)
{
    struct inode *in;
    for (in = fs->table[bucket(ino, dev)]; in; in = in->next)
        if (in->ino == ino && in->dev == dev && !in->gone)
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
static struct inode *efs_inode_get(struct efs *fs, int fd, const struct stat *st)
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
    efs_inode_init(in);
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
void efs_inode_destroy(struct inode *in)
{
    if (!in)
        return;
    efs_inode_unload(in);
    if (in->fd >= 0)
        close(in->fd);
    free(in->fh);
    free(in->gone_st);
    pthread_rwlock_destroy(&in->rw);
    free(in);
}

/* If nothing refers to in any more, take it out of the table and return it for the caller to pass to
 * inode_destroy once it has released table_lock (held here); NULL otherwise. Its descriptor is no longer
 * counted from now on. */
struct inode *efs_inode_take_if_unused(struct efs *fs, struct inode *in)
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

void efs_inode_unref(struct efs *fs, struct inode *in, uint64_t n)
{
    struct inode *dead;
    pthread_mutex_lock(&fs->table_lock);
    in->nlookup = in->nlookup >= n ? in->nlookup - n : 0;
    dead = efs_inode_take_if_unused(fs, in);
    pthread_mutex_unlock(&fs->table_lock);
    efs_inode_destroy(dead);
}

/* Fill e for the referenced, pinned inode in whose backing attributes are st, and unpin it. */
static void efs_entry_of(struct efs *fs, struct inode *in, struct stat *st, struct fuse_entry_param *e)
{
    efs_inode_fix_size(fs, in, st);
    efs_symlink_fix_size(fs->root.fd, in->fd, st);
    efs_inode_unpin(fs, in);
    e->ino = (uintptr_t)in;
    e->attr = *st;
    e->attr_timeout = fs->timeout;
    e->entry_timeout = fs->timeout;
}

/* Look up the backing entry `backing` of the open directory dirfd: a referenced inode in e. */
int efs_lookup_backing(struct efs *fs, int dirfd, const char *backing, struct fuse_entry_param *e)
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
    in = efs_inode_get(fs, fd, &st);
    if (!in)
        return -ENOMEM;
    efs_entry_of(fs, in, &st, e);
    return 0;
}

/* Taking the descriptor out here rather than at FORGET: at FORGET the close ran in whichever thread read the
 * FORGET, often while another served the RMDIR of the file's directory, and the backing rmdir's dcache shrink
 * then busy-walks the directory's children until that eviction ends (38 % of the daemon's CPU in an rm -rf,
 * docs/PERFORMANCE.md). The close itself (where ext4 frees the file: most of an UNLINK's time) goes to the
 * closer threads, and RMDIR waits for them (efs_op_rmdir), so the busy walk does not come back. A gone inode
 * is skipped by lookups in the table (ext4 may give its number to a new file at once) but stays in it until
 * its FORGET. table_lock → rw (efs_inode_fix_size) as everywhere. */
int efs_inode_unlinked(struct efs *fs, dev_t dev, ino_t ino)
{
    struct inode *in;
    struct stat *st = malloc(sizeof *st);
    int fd = -1;
    pthread_mutex_lock(&fs->table_lock);
    in = inode_find_locked(fs, dev, ino);
    if (in) {
        __atomic_store_n(&in->unlinked, 1, __ATOMIC_RELAXED);
        if (st && in->type == S_IFREG && in->fd >= 0 && !in->pins && !in->nopen &&
            !fstatat(in->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) && st->st_nlink == 0) {
            efs_inode_fix_size(fs, in, st);
            in->gone_st = st;
            st = NULL;
            fd = in->fd;
            in->fd = -1;
            fs->nfds--;
            __atomic_store_n(&in->gone, 1, __ATOMIC_RELEASE);
            fs->unlink_closes++;
        }
    }
    pthread_mutex_unlock(&fs->table_lock);
    free(st);
    return fd;
}

void efs_inode_close_unlinked(struct efs *fs, int fd, ino_t ino)
{
    uint64_t t0[2];
    efs_timing_now(t0);
    efs_closer_close(fs->closer, fd, (uint64_t)ino); /* its last descriptor: where the backing file is freed */
    efs_timing_add(&fs->unlink_close, t0);
}

/* A readdirplus entry whose inode (dev, d_ino from getdents) the table holds already, with its descriptor
 * open: a referenced inode in e, its attributes from that descriptor — one fstat instead of opening the
 * name, stating it and closing the duplicate descriptor (lookup_backing). rm -rf lists each directory
 * twice and find or a second ls lists known entries again. -ENOENT when the inode is not known (or is
 * evicted, or the stat fails): the caller looks the name up. */
int efs_readdirplus_known(struct efs *fs, dev_t dev, ino_t ino, struct fuse_entry_param *e)
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
        efs_inode_unref(fs, in, 1); /* still pinned: unpin frees it if nothing else refers to it */
        efs_inode_unpin(fs, in);
        return -ENOENT;
    }
    memset(e, 0, sizeof *e);
    efs_entry_of(fs, in, &st, e);
    return 0;
}
