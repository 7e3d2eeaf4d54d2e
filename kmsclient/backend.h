/*
 * backend.h — the interface between the client front end (client.c) and its transports.
 * A backend sends one operation's JSON body and returns the JSON response or a typed error.
 * Everything above (typed helpers, caching) is transport-independent.
 */
#ifndef ENVELOPEFS_KMSCLIENT_BACKEND_H
#define ENVELOPEFS_KMSCLIENT_BACKEND_H

#include "envelopefs/kmsclient.h"

typedef struct kmsc_backend_ops {
    const char *name;  /* "local", "http" */
    /* Same contract as kmsc_call: *resp is NUL-terminated, freed by the front end with
     * kmsc_response_free; err is never NULL here. Must be safe from many threads at once. */
    kms_err (*call)(void *impl, const char *operation, const char *req, size_t req_len,
                    char **resp, size_t *resp_len, kmsc_error *err);
    void (*free)(void *impl);  /* NULL-safe */
    /* The caller's account when the backend knows it without asking (the embedded principal's); NULL
     * when it must be learned from the service (kmsc_caller_account). May itself be NULL. */
    const char *(*account)(void *impl);
    /* Keep the account kmsc_caller_account learned for this identity (NULL: nothing kept). */
    void (*remember_account)(void *impl, const char *account);
    /* The access key id requests are signed with, NULL when unsigned (or no such op). */
    const char *(*access_key)(void *impl);
    /* The region calls go to (NULL: no such op). */
    const char *(*region)(void *impl);
} kmsc_backend_ops;

/* local:PATH — the embedded core (kmsclient/local.c). */
kms_err kmsc_backend_local_new(const kmsc_opts *opts, const char *store_dir, void **impl,
                               const kmsc_backend_ops **ops, char **errmsg);
/* The core behind an embedded backend impl. */
kms_core *kmsc_backend_local_core(void *impl);
/* The principal an embedded backend impl acts as (borrowed). */
const kms_principal *kmsc_backend_local_principal(void *impl);

/* http(s)://... — AWS KMS JSON protocol with SigV4 (kmsclient/http.c). */
kms_err kmsc_backend_http_new(const kmsc_opts *opts, void **impl, const kmsc_backend_ops **ops,
                              char **errmsg);

#endif
