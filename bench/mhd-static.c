/*
 * mhd-static.c — the ceiling of libmicrohttpd itself for scripts/bench-kms: the same daemon options as
 * `envelopefs kms serve` (thread pool of one thread per CPU, epoll, keep-alive), a handler that reads
 * the request body and answers a fixed body with the same headers (Content-Type, x-amzn-RequestId) and
 * no other work. Usage: mhd-static PORT BODY-FILE
 */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char body[4096];
static size_t body_len;

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    static int first;
    struct MHD_Response *r;
    enum MHD_Result rc;
    (void)cls, (void)url, (void)method, (void)version, (void)upload;
    if (!*con_cls) {
        *con_cls = &first;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    r = MHD_create_response_from_buffer(body_len, body, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/x-amz-json-1.1");
    MHD_add_response_header(r, "x-amzn-RequestId", "00000000-0000-0000-0000-000000000000");
    rc = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return rc;
}

int main(int argc, char **argv)
{
    struct MHD_Daemon *d;
    FILE *f;
    if (argc != 3 || !(f = fopen(argv[2], "r"))) {
        fprintf(stderr, "usage: mhd-static PORT BODY-FILE\n");
        return 2;
    }
    body_len = fread(body, 1, sizeof body - 1, f);
    fclose(f);
    while (body_len && body[body_len - 1] == '\n')
        body_len--;
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC, (uint16_t)atoi(argv[1]), NULL,
                         NULL, handle, NULL, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)sysconf(_SC_NPROCESSORS_ONLN),
                         MHD_OPTION_CONNECTION_LIMIT, 1024u, MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    if (!d)
        return 1;
    pause();
    MHD_stop_daemon(d);
    return 0;
}
