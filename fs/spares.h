/*
 * spares.h — a pool of spare encrypted files whose headers are already durable, so that creating a file
 * costs a rename instead of a header write plus fdatasync (see spares.c).
 */
#ifndef EFS_SPARES_H
#define EFS_SPARES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "format.h"
#include "keys.h"

typedef struct efs_spares efs_spares;

/* The reserved directory, at the root of CIPHERDIR, that holds spares (hidden by readdir and fsck). */
#define EFS_SPARES_DIR ".envelopefs-spares"

/* Start the pool for the filesystem whose backing root is root_fd (borrowed, as are keys and cfg, which
 * must outlive the pool). Leftover spares of an earlier mount are removed. *out is NULL (and 0 is
 * returned) when the pool cannot be set up: creates then simply take the synchronous path. */
int efs_spares_new(int root_fd, efs_keys *keys, const efs_config *cfg, efs_spares **out)
    __attribute__((warn_unused_result));
/* Stop the filler, remove unused spares, wipe their keys. NULL is a no-op. */
void efs_spares_free(efs_spares *s);

/*
 * Create (dirfd, name) from a spare: renamed into place with RENAME_NOREPLACE and chmod'ed to mode.
 * On success returns 0, *fd is an O_RDWR descriptor of the new file, *h its header and *fk its keys
 * (copied into the caller's locked memory). -EAGAIN: no spare ready (nothing done; the caller creates
 * the file itself). Other -errno: the create failed (e.g. -EEXIST), nothing is left behind.
 * Either way the pool is asked to refill.
 */
int efs_spares_take(efs_spares *s, int dirfd, const char *name, mode_t mode, int *fd, efs_header *h,
                    efs_file_keys *fk) __attribute__((warn_unused_result));

/*
 * Make directory (dirfd, name) from a spare directory that already holds its durable directory id
 * (encrypted names only): renamed into place with RENAME_NOREPLACE, chmod'ed to mode, times set to now.
 * 0, or -EAGAIN when none is ready (nothing done: the caller makes it itself), or another -errno (e.g.
 * -EEXIST; nothing left behind). Ownership is the caller's to set.
 */
int efs_spares_take_dir(efs_spares *s, int dirfd, const char *name, mode_t mode) __attribute__((warn_unused_result));
/* How many mkdirs a spare directory has served (0 for NULL). */
uint64_t efs_spares_taken_dirs(efs_spares *s);

/* How many creates a spare has served (0 for NULL). */
uint64_t efs_spares_taken(efs_spares *s);

#endif
