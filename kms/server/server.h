/*
 * server.h — `envelopefs kms serve`: the key service over HTTP(S) speaking the AWS KMS JSON protocol,
 * every request authenticated with SigV4 against access keys in the store and passed, with its
 * principal, to the core's single dispatch point.
 */
#ifndef ENVELOPEFS_KMS_SERVER_H
#define ENVELOPEFS_KMS_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "envelopefs/kms.h"

typedef struct kms_server_opts {
    const char *listen;        /* "127.0.0.1:PORT" (default 127.0.0.1:4599) */
    const char *unix_path;     /* listen on a Unix socket instead */
    const char *tls_cert;      /* PEM files: serve HTTPS */
    const char *tls_key;
    unsigned threads;          /* 0 = number of CPUs */
    double rate_limit;         /* requests per second per account; 0 = 10000 (AWS's default) */
    unsigned max_connections;  /* 0 = 1024 */
    unsigned timeout_s;        /* idle connection timeout; 0 = 30 */
    int64_t max_skew_s;        /* 0 = 300 */
    /* Unix socket: "UID=PRINCIPAL-ARN" entries (arn:aws:iam::ACCOUNT:root | arn:aws:iam::ACCOUNT:user/NAME).
     * A request without an Authorization header from a peer whose uid (SO_PEERCRED) is listed is served
     * as that principal; signed requests are authenticated as always; other peers need SigV4. */
    const char *const *unix_principals;
    size_t n_unix_principals;
} kms_server_opts;

typedef struct kms_server kms_server;

/* Start serving core (borrowed; must outlive the server). On error *errmsg gets a malloc'd message. */
kms_err kms_server_start(kms_core *core, const kms_server_opts *o, kms_server **out, char **errmsg);
/* The bound TCP port (useful with port 0). */
unsigned kms_server_port(kms_server *s);
/* Stop accepting, finish in-flight requests, free. NULL is a no-op. */
void kms_server_stop(kms_server *s);

#endif
