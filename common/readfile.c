/*
 * readfile.c — efs_read_file (see readfile.h).
 */
#include "common/readfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

char *efs_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *buf = NULL;
    size_t cap, n = 0;
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st))
        goto fail;
    cap = (size_t)(st.st_size > 0 ? st.st_size : 0) + 4096;
    if (!(buf = malloc(cap + 1)))
        goto fail;
    for (;;) {
        ssize_t r;
        if (n == cap) { /* the file grew while we read it */
            errno = EFBIG;
            goto fail;
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto fail;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
fail:
    {
        int saved = errno;
        if (buf) {
            sodium_memzero(buf, cap + 1);
            free(buf);
        }
        close(fd);
        errno = saved;
    }
    return NULL;
}
