/*
 * daemon.c — implementation of daemon.h: fork with a readiness pipe. Unlike fuse_daemonize (which lets
 * the parent go as soon as the fork happened), the starting command returns when the daemon has finished
 * its setup, so a script that mounts and then looks finds the mount serving and setup errors visible.
 * efs_daemon_start_report lets the parent go on after a failure, with the child's report (the volume attach
 * daemon: the starting command records and prints the failed AttachVolume as any other failed call).
 */
#include "common/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The parent's side: the child's first byte is 1 (ready: exit 0) or 0 followed by its report (efs_daemon_fail);
 * nothing (it died) is a failure without one. report: NULL to exit 1 on failure (efs_daemon_start). */
static int wait_child(int rfd, pid_t pid, char *report, size_t cap)
{
    char ok = 0;
    size_t n = 0;
    ssize_t r;
    while ((r = read(rfd, &ok, 1)) < 0 && errno == EINTR)
        ;
    if (r == 1 && ok == 1)
        _exit(0);
    if (!report)
        _exit(1); /* failed: the child printed why */
    while (n + 1 < cap && (r = read(rfd, report + n, cap - 1 - n)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        n += (size_t)r;
    }
    report[n] = 0;
    close(rfd);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) /* its clean-up is over when we answer */
        ;
    return -ECANCELED;
}

static int start(char *report, size_t cap)
{
    int pfd[2];
    pid_t pid;

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
    return wait_child(pfd[0], pid, report, cap);
}

int efs_daemon_start(void)
{
    return start(NULL, 0);
}

int efs_daemon_start_report(char *report, size_t cap)
{
    if (!report || cap < 2)
        return -EINVAL;
    report[0] = 0;
    return start(report, cap);
}

void efs_daemon_fail(int ready_fd, const char *report)
{
    const char zero = 0;
    size_t n = report ? strlen(report) : 0, off = 0;
    if (ready_fd < 0)
        return;
    while (write(ready_fd, &zero, 1) < 0 && errno == EINTR)
        ;
    while (off < n) {
        ssize_t w = write(ready_fd, report + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    close(ready_fd);
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
