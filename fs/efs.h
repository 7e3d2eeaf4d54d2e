/*
 * efs.h — the filesystem layer's entry points used by the CLI (src/cmd_fs.c): mount a CIPHERDIR,
 * check one. Error convention: 0 / -errno.
 */
#ifndef ENVELOPEFS_FS_EFS_H
#define ENVELOPEFS_FS_EFS_H

#include <stdbool.h>
#include <stdio.h>

#include "config.h"
#include "headerio.h"
#include "keys.h"

typedef struct efs_mount_opts {
    const char *cipherdir;     /* absolute */
    const char *mountpoint;    /* absolute */
    bool foreground;
    bool debug;
    const char *fuse_opts;     /* extra -o options (allow_other, ro, ...) or NULL */
    /* Called after daemonising to (re)open the key service in the process that serves the mount;
     * returns a client or NULL (message already printed/logged). */
    kmsc *(*open_kms)(void *arg);
    void *open_kms_arg;
} efs_mount_opts;

/* Mount and serve until unmounted. cfg must already be loaded and verified once by the caller
 * (so errors reach the terminal before daemonising). Returns the exit status. */
int efs_mount_run(const efs_mount_opts *o, const efs_config *cfg);

/* Check every header and block under cipherdir; print one line per damaged file/block to out.
 * Returns 0 if all is well, 1 if damage was found, -errno on failure to run. */
int efs_fsck(const char *cipherdir, efs_keys *keys, FILE *out);

/* Helpers shared by the daemon and fsck. */
int efs_keys_set_cipherdir(efs_keys *k, const char *dir);
/* Is `name` (in the root of the backing tree) reserved for envelopefs's own files? */
bool efs_reserved_root_name(const char *name);
#define EFS_XATTR_STATS "user.envelopefs.stats"

#endif
