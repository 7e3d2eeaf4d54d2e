/*
 * test_closer.c — the closer threads (fs/closer.c) on their own, over pipes: a descriptor handed to them is
 * closed once a drain returns (the pipe's read end then sees end of file), also past a full queue (closed
 * by the caller) and at efs_closer_free without a drain; a close that fails is counted, not lost; without
 * a closer (NULL) the close happens at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../kms/testutil.h"
#include "closer.h"

#define PIPES 100

/* 1 if the write end of the pipe whose read end is rfd is closed (end of file), 0 if still open. */
static int writer_closed(int rfd)
{
    char b;
    ssize_t n = read(rfd, &b, 1);
    if (n == 0)
        return 1;
    CHECK(n < 0 && errno == EAGAIN);
    return 0;
}

static void make_pipes(int r[PIPES], int w[PIPES])
{
    for (int i = 0; i < PIPES; i++) {
        int p[2];
        CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
        r[i] = p[0];
        w[i] = p[1];
        CHECK_EQ_INT(writer_closed(r[i]), 0);
    }
}

static void close_readers(int r[PIPES])
{
    for (int i = 0; i < PIPES; i++)
        CHECK(close(r[i]) == 0);
}

/* More descriptors than the queue holds, then a drain: all closed, each either queued or closed inline. */
static void test_drain(void)
{
    int r[PIPES], w[PIPES];
    efs_closer *c;
    efs_closer_counts n;
    CHECK(efs_closer_new(4, 2, &c) == 0 && c);
    make_pipes(r, w);
    for (int i = 0; i < PIPES; i++)
        efs_closer_close(c, w[i], (uint64_t)i);
    efs_closer_drain(c);
    for (int i = 0; i < PIPES; i++)
        CHECK_EQ_INT(writer_closed(r[i]), 1);
    efs_closer_counts_get(c, &n);
    CHECK_EQ_INT(n.queued + n.inline_closes, PIPES);
    CHECK(n.queued > 0);
    CHECK_EQ_INT(n.errors, 0);
    /* a close that fails (no such descriptor) is logged and counted */
    efs_closer_close(c, 1 << 20, 7);
    efs_closer_drain(c);
    efs_closer_counts_get(c, &n);
    CHECK_EQ_INT(n.errors, 1);
    efs_closer_drain(c); /* nothing queued: returns at once */
    efs_closer_free(c);
    close_readers(r);
}

/* efs_closer_free closes what is still queued before it returns. */
static void test_free_closes_queued(void)
{
    int r[PIPES], w[PIPES];
    efs_closer *c;
    CHECK(efs_closer_new(PIPES, 1, &c) == 0 && c);
    make_pipes(r, w);
    for (int i = 0; i < PIPES; i++)
        efs_closer_close(c, w[i], (uint64_t)i);
    efs_closer_free(c);
    for (int i = 0; i < PIPES; i++)
        CHECK_EQ_INT(writer_closed(r[i]), 1);
    close_readers(r);
}

/* Without a closer the caller closes at once. Bad parameters are refused. */
static void test_no_closer(void)
{
    int p[2];
    efs_closer *c = (efs_closer *)1;
    CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    efs_closer_close(NULL, p[1], 1);
    CHECK_EQ_INT(writer_closed(p[0]), 1);
    CHECK(close(p[0]) == 0);
    efs_closer_drain(NULL);
    efs_closer_free(NULL);
    CHECK_EQ_INT(efs_closer_new(0, 1, &c), -EINVAL);
    CHECK(c == NULL);
    CHECK_EQ_INT(efs_closer_new(4, 0, &c), -EINVAL);
    CHECK_EQ_INT(efs_closer_new(4, 9, &c), -EINVAL);
}

int main(void)
{
    test_drain();
    test_free_closes_queued();
    test_no_closer();
    TEST_DONE();
}
