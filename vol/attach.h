/*
 * attach.h — `envelopefs volume attach`: a daemon serving one volume as one image file over FUSE
 * (MOUNTPOINT/VOLUME_ID), optionally behind a loop device with direct I/O, with a control socket for
 * point-in-time snapshots. The volume is in-use while the daemon holds run/VOL.lock (a dead daemon
 * releases it with its life); `volume detach` detaches the loop device, unmounts and waits.
 */
#ifndef ENVELOPEFS_VOL_ATTACH_H
#define ENVELOPEFS_VOL_ATTACH_H

#include <stdbool.h>

#include "envelopefs/kmsclient.h"
#include "vol.h"

typedef struct vol_attach_opts {
    const char *store_dir;     /* the volume store */
    const char *volume_id;
    const char *mountpoint;    /* absolute, or NULL: STORE/run/VOL.mnt */
    bool loop;                 /* also set up a loop device (direct I/O, 4 KiB sectors) and print it */
    const char *nbd;           /* also serve the image over NBD on this Unix socket (nbdkit's file plugin) */
    bool foreground;
    /* Opens the key service (called before the fork to check, and again in the daemon). */
    kmsc *(*open_kms)(void *arg);
    void *open_kms_arg;
    /* Records and prints the attachment (a JSON object) where the user is, before the daemon detaches
     * from the terminal: 0, or -errno when it could not be recorded (nothing printed), and the attachment
     * is then undone (the loop device detached, the image unmounted, the grant retired; the daemon exits
     * 1, or vol_attach_run returns -EIO in the foreground). NULL: printed as indented JSON. */
    int (*print)(void *arg, const char *json);
    void *print_arg;
} vol_attach_opts;

/* Before the daemon starts, failures return -errno with e filled (nothing changed). Once started the
 * parent process exits itself with the daemon's verdict; in the foreground, returns 0 at detach. */
int vol_attach_run(const vol_attach_opts *o, vol_err *e) __attribute__((warn_unused_result));

/* Detach: losetup -d the recorded loop device, unmount, wait for the daemon to finish its last flush. */
int vol_detach(const char *store_dir, const char *volume_id, vol_err *e) __attribute__((warn_unused_result));

#endif
