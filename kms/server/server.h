/*
 * server.h — `envelopefs kms serve`: the key service over HTTP(S) speaking the AWS KMS JSON protocol,
 * every request authenticated with SigV4 against access keys in the store (or, unsigned on a Unix
 * socket, by the peer's uid when a mapping names it) and passed, with its principal, to the core's
 * single dispatch point.
 */
#ifndef ENVELOPEFS_KMS_SERVER_H
#define ENVELOPEFS_KMS_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "envelopefs/kms.h"

#define KMS_SERVER_MAX_CONNECTIONS 60000

/* An unsigned request on the Unix socket from uid acts as arn (arn:aws:iam::ACCOUNT:root or :user/NAME). */
typedef struct kms_unix_principal {
    uint32_t uid;
    const char *arn;
} kms_unix_principal;

typedef struct kms_server_opts {
    const char *listen;        /* "127.0.0.1:PORT" (default 127.0.0.1:4599) */
    const char *unix_path;     /* listen on a Unix socket instead */
    unsigned unix_mode;        /* its file mode (who may connect); 0 = 0600 */
    const kms_unix_principal *unix_principals; /* uid → principal for unsigned requests on it */
    size_t n_unix_principals;
    const char *tls_cert;      /* PEM files: serve HTTPS */
    const char *tls_key;
    unsigned threads;          /* 0 = number of CPUs */
    double rate_limit;         /* requests per second per account; 0 = 10000 (AWS's default) */
    unsigned max_connections;  /* 0 = what RLIMIT_NOFILE allows, at most KMS_SERVER_MAX_CONNECTIONS */
    unsigned per_ip_limit;     /* connections per source address; 0 = 256 */
    unsigned timeout_s;        /* a connection's wait for its next request line; 0 = 30 */
    unsigned request_timeout_s;/* a whole request (headers, body, reply) from its request line; 0 = 20 */
    int64_t max_skew_s;        /* 0 = 300 */
    /* Access key ids (comma-separated) whose requests may say, in the signed header
     * X-Envelopefs-Via-Service: NAME.REGION.amazonaws.com, that they come through that service
     * (kms:ViaService, kms:GrantIsForAWSResource), as the EC2 side of `envelopefs volume` does. The
     * header from any other key, or unsigned, is ignored. NULL: none. */
    const char *trust_via_service;
    /* Access key ids (comma-separated) that may use the replication protocol between servers
     * (EnvelopefsReplication.*: another region's server replicating multi-Region keys here). NULL: any signed
     * access key (the core then requires a principal of the key's account). */
    const char *replication_keys;
} kms_server_opts;

typedef struct kms_server kms_server;

/* Start serving core (borrowed; must outlive the server). On error *errmsg gets a malloc'd message. */
kms_err kms_server_start(kms_core *core, const kms_server_opts *o, kms_server **out, char **errmsg);
/* The bound TCP port (useful with port 0). */
unsigned kms_server_port(kms_server *s);
/* Stop accepting, finish in-flight requests, free. NULL is a no-op. */
void kms_server_stop(kms_server *s);

#endif
