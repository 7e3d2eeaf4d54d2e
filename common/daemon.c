/*
 * daemon.c — implementation of daemon.h: fork with a readiness pipe. Unlike fuse_daemonize (which lets
 * the parent go as soon as the fork happened), the starting command returns when the daemon has finished
 * its setup, so a script that mounts and then looks finds the mount serving and setup errors visible.
 */
#include "common/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int efs_daemon_start(void)
{
    int pfd[2];
    pid_t pid;
    char ok = 0;

    if (pipe2(pfd, O_CLOEXEC))
        return -errno;
    fflush(NULL); /* nothing buffered is written twice */
    pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pfd[0]);
        close(pfd[1]);
        return -e;
    }
    if (pid == 0) {
        close(pfd[0]);
        (void)setsid();
        if (chdir("/")) { /* "/" always exists; nothing to do if it does not */
        }
        return pfd[1];
    }
    close(pfd[1]);
    while (read(pfd[0], &ok, 1) < 0 && errno == EINTR)
        ;
    _exit(ok == 1 ? 0 : 1); /* failed: the child printed why */
}

void efs_daemon_ready(int ready_fd)
{
    const char one = 1;
    int nfd;
    if (ready_fd < 0)
        return;
    nfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nfd >= 0) {
        (void)dup2(nfd, STDIN_FILENO);
        (void)dup2(nfd, STDOUT_FILENO);
        (void)dup2(nfd, STDERR_FILENO);
        if (nfd > STDERR_FILENO)
            close(nfd);
    }
    while (write(ready_fd, &one, 1) < 0 && errno == EINTR)
        ;
    close(ready_fd);
}
