/*
 * http.c — the HTTP(S) backend of kmsclient (AWS KMS JSON protocol, SigV4). Under construction:
 * this placeholder refuses http(s) URLs until the network issue lands.
 */
#include <stdio.h>
#include <string.h>
#include "backend.h"

kms_err kmsc_backend_http_new(const kmsc_opts *opts, void **impl, const kmsc_backend_ops **ops,
                              char **errmsg)
{
    (void)opts; (void)impl; (void)ops;
    if (errmsg)
        *errmsg = strdup("http(s) key-service URLs are not supported by this build yet");
    return KMS_ERR_UNSUPPORTED_OPERATION;
}
