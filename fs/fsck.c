/*
 * fsck.c — `envelopefs fsck`: walk the backing tree, check every file header (structure, wrapped
 * key, tag) and every block, and every symlink target; name each damaged file and block.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <sodium.h>

#include "efs.h"
#include "format.h"
#include "names.h"
#include "symlink.h"

struct fsck {
    efs_keys *keys;
    efs_names *names;
    const efs_config *cfg;
    FILE *out;
    int root_fd; /* CIPHERDIR: long symlink targets' store */
    unsigned long files, damaged;
};

static void check_file(struct fsck *f, int dirfd, const char *name, const char *path)
{
    efs_header h;
    size_t hl, data_off;
    ssize_t n;
    struct stat st;
    efs_file_keys *k;
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    uint64_t stored, data_len, nblocks;
    uint8_t *ct, *pt;
    efs_file_binding fb;
    bool bad = false;

    f->files++;
    if (fd < 0) {
        fprintf(f->out, "DAMAGED %s: cannot open: %s\n", path, strerror(errno));
        f->damaged++;
        return;
    }
    if (efs_header_load(fd, f->cfg->dek_in_xattr, &h, &hl, &data_off)) {
        fprintf(f->out, "DAMAGED %s: header missing or malformed\n", path);
        f->damaged++;
        close(fd);
        return;
    }
    if (!efs_config_header_matches(f->cfg, h.version, hl)) {
        fprintf(f->out, "DAMAGED %s: header version %u, %zu bytes: not what this filesystem writes\n", path,
                (unsigned)h.version, hl);
        f->damaged++;
        close(fd);
        return;
    }
    k = sodium_malloc(sizeof *k);
    if (!k || efs_keys_open_file(f->keys, &h, k, path)) {
        fprintf(f->out, "DAMAGED %s: header fails authentication or its data key cannot be unwrapped\n", path);
        f->damaged++;
        if (k)
            sodium_free(k);
        close(fd);
        return;
    }
    fstat(fd, &st);
    fb.keys = k;
    memcpy(fb.file_id, h.file_id, EFS_FILE_ID_LEN);
    stored = (uint64_t)h.block_size + EFS_BLOCK_OVERHEAD;
    data_len = (uint64_t)st.st_size - data_off;
    nblocks = (data_len + stored - 1) / stored;
    ct = malloc(stored);
    pt = malloc(h.block_size);
    for (uint64_t b = 0; ct && pt && b < nblocks; b++) {
        uint64_t len = data_len - b * stored < stored ? data_len - b * stored : stored;
        efs_block_binding bb;
        n = pread(fd, ct, len, (off_t)(data_off + b * stored));
        if (n != (ssize_t)len || efs_file_bind(&fb, b, &bb) || efs_block_open(&bb, ct, (size_t)len, pt)) {
            fprintf(f->out, "DAMAGED %s: block %" PRIu64 " fails authentication\n", path, b);
            bad = true;
        }
    }
    if (bad)
        f->damaged++;
    free(ct);
    if (pt) {
        sodium_memzero(pt, h.block_size);
        free(pt);
    }
    sodium_free(k);
    close(fd);
}

static void check_symlink(struct fsck *f, int dirfd, const char *name, const char *path)
{
    char out[PATH_MAX];
    int rc = efs_symlink_read(f->keys, f->root_fd, dirfd, name, out);
    f->files++;
    if (rc == -EIO) {
        fprintf(f->out, "DAMAGED %s: symlink target fails authentication\n", path);
        f->damaged++;
    }
    sodium_memzero(out, sizeof out);
}

static void walk(struct fsck *f, int dir_fd, const char *path, bool root, const uint8_t *dirid)
{
    DIR *d = fdopendir(dir_fd);
    struct dirent *e;
    if (!d) {
        close(dir_fd);
        return;
    }
    while ((e = readdir(d))) {
        char sub[PATH_MAX], plain[256];
        const char *shown = e->d_name;
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (root && efs_reserved_root_name(e->d_name))
            continue;
        if (f->names) {
            int rc = efs_name_from_backing(f->names, dirfd(d), dirid, e->d_name, plain);
            if (rc == -ENOENT)
                continue; /* directory id, long-name sidecars, temporary files */
            if (rc) {
                fprintf(f->out, "DAMAGED %s/%s: name fails authentication (tampered or moved from another "
                                "directory)\n", path, e->d_name);
                f->damaged++;
                continue;
            }
            shown = plain;
        }
        snprintf(sub, sizeof sub, "%s/%s", path, shown);
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW))
            continue;
        if (S_ISDIR(st.st_mode)) {
            int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            uint8_t id[EFS_DIRID_LEN];
            if (fd < 0)
                continue;
            if (f->names && efs_dirid_read_at(fd, f->cfg->dirids_in_xattr, id)) {
                fprintf(f->out, "DAMAGED %s: directory id missing or damaged (its entries cannot be named)\n", sub);
                f->damaged++;
                close(fd);
                continue;
            }
            walk(f, fd, sub, false, id);
        } else if (S_ISREG(st.st_mode)) {
            check_file(f, dirfd(d), e->d_name, sub);
        } else if (S_ISLNK(st.st_mode)) {
            check_symlink(f, dirfd(d), e->d_name, sub);
        }
    }
    closedir(d);
}

int efs_fsck(const char *cipherdir, efs_keys *keys, FILE *out)
{
    struct fsck f = {.keys = keys, .names = efs_keys_names(keys), .cfg = efs_keys_config(keys), .out = out};
    int fd = open(cipherdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    f.root_fd = open(cipherdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (f.root_fd < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    walk(&f, fd, cipherdir, true, f.cfg->fs_id);
    close(f.root_fd);
    fprintf(out, "%lu entries checked, %lu damaged\n", f.files, f.damaged);
    return f.damaged ? 1 : 0;
}
