/*
 * ctl.h — the attach daemon's control socket (run/VOL.sock, mode 0600): one JSON request per
 * connection, one JSON reply. Today's request: {"op":"snapshot","description":…,"tags":…} — the daemon
 * quiesces writes, flushes and records the snapshot (point in time), replying with the snapshot or
 * {"code":…,"message":…}.
 */
#ifndef ENVELOPEFS_VOL_CTL_H
#define ENVELOPEFS_VOL_CTL_H

#include "vol.h"

/* Client side: ask the daemon listening on sock_path for a snapshot. */
int vol_ctl_snapshot(const char *sock_path, const char *description, const char *tags, vol_snapshot *out,
                     vol_err *e) __attribute__((warn_unused_result));

#endif
