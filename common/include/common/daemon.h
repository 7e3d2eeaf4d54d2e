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

/* Forks. Returns, in the child only, the descriptor to hand to efs_daemon_ready (the child has a new
 * session and "/" as its working directory); returns -errno if the fork could not happen (nothing
 * changed). The parent never returns: it exits with the child's verdict. */
int efs_daemon_start(void) __attribute__((warn_unused_result));

/* Tells the waiting parent that the daemon is ready, closes ready_fd and points stdin, stdout and stderr
 * at /dev/null. Switch logging away from stderr first (efs_log_init). ready_fd < 0: no-op. */
void efs_daemon_ready(int ready_fd);

#endif
