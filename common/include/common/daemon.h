/*
 * daemon.h — going to the background so that the command which started a daemon returns only once the
 * daemon is ready (or has failed, with its error printed where the user ran the command).
 *
 *   int ready = efs_daemon_start();      // parent: waits, then exits 0 (ready) or 1 (failed)
 *   ... fallible setup: errors still reach the user's stderr ...
 *   efs_daemon_ready(ready);             // the starting command returns 0; stdio goes to /dev/null
 *
 * If the child exits (or crashes) before efs_daemon_ready, the parent exits 1. Call efs_daemon_start
 * before creating any thread: only the calling thread survives the fork.
 */
#ifndef ENVELOPEFS_DAEMON_H
#define ENVELOPEFS_DAEMON_H

#include <stddef.h>

/* Forks. Returns, in the child only, the descriptor to hand to efs_daemon_ready (the child has a new
 * session and "/" as its working directory); returns -errno if the fork could not happen (nothing
 * changed). The parent never returns: it exits with the child's verdict. */
int efs_daemon_start(void) __attribute__((warn_unused_result));

/* As efs_daemon_start, except that a parent whose child fails before it is ready returns -ECANCELED (once the
 * child has exited) with the child's report (efs_daemon_fail; "" if it sent none: it died) in report[0, cap) as a
 * NUL-terminated string; the caller finishes as a failed command (the fork's copies of shared state, such as a
 * mounted FUSE session, are the child's: free them without undoing them). A ready child: the parent exits 0. */
int efs_daemon_start_report(char *report, size_t cap) __attribute__((warn_unused_result));

/* In the child, instead of efs_daemon_ready when its setup failed: sends report (text) to the parent of
 * efs_daemon_start_report and closes ready_fd (efs_daemon_start's parent ignores it and exits 1). Then exit. */
void efs_daemon_fail(int ready_fd, const char *report);

/* Tells the waiting parent that the daemon is ready, closes ready_fd and points stdin, stdout and stderr
 * at /dev/null. Switch logging away from stderr first (efs_log_init). ready_fd < 0: no-op. */
void efs_daemon_ready(int ready_fd);

#endif
