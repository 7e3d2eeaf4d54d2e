/*
 * server.c — the KMS JSON protocol over HTTP(S) on libmicrohttpd (thread pool, epoll): parse the
 * request, authenticate it with SigV4 against the store's access keys, throttle per account, hand it
 * with its principal to kms_core_call, and answer as AWS does: 200 with the JSON body, or 400/500 with
 * {"__type": Name, "message": ...}; an x-amzn-RequestId header on every reply. A successful call's
 * answer is parked until its audit record is durable: the connection is suspended, its worker serves
 * others, and the core's committer resumes it (kms_core_when_durable), so every connection's record
 * shares a commit; a record that could not be written turns the answer into KMSInternalException.
 *
 * On a Unix socket the kernel names each peer (SO_PEERCRED, read when the connection starts): an unsigned
 * request from a uid that --unix-principal maps acts as that principal; a signed request is always
 * judged by its signature alone, and an unsigned one from an unmapped uid is refused as on TCP.
 *
 * Why libmicrohttpd: a well-kept C HTTP/1.1 server in Debian with keep-alive, a thread pool, epoll,
 * per-connection timeouts, connection limits and TLS (GnuTLS); request bodies are bounded here.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "common/log.h"
#include "common/readfile.h"
#include "common/monotime.h"
#include "envelopefs/sigv4.h"
#include "conns.h"

#define MAX_BODY (64 * 1024)
/* Per-connection memory of libmicrohttpd (request line, headers, reply headers). It zeroes the used
 * part after every request, and by default gives half of its 32 KiB to the read buffer; 16 KiB still
 * takes several KiB of headers. */
#define CONN_MEMORY (16 * 1024)
#define AK_CACHE 256
#define BUCKETS 64

struct ak_entry {
    char id[24];
    char secret[48];
    char account[16];
    char user[64];
    char scope[48];         /* "DATE/REGION/SERVICE" of skey, "" if none */
    uint8_t skey[32];       /* SigV4 signing key of that scope (as secret as the secret) */
    uint64_t gen;           /* kms_core_generation when read from the store: stale once it moves */
};

/* --unix-principal UID=ARN, split as kms_principal names it. */
struct peer_map {
    uint32_t uid;
    char account[13];
    char user[64];
};

struct bucket {
    char account[16];
    double tokens;
    double last;
};

struct kms_server {
    struct MHD_Daemon *d;
    kms_core *core;
    kms_server_opts o;
    pthread_mutex_t lock;
    struct ak_entry *aks;        /* sodium_malloc'd: holds secrets */
    size_t ak_next, ak_used;     /* next slot to fill (a ring), slots filled so far */
    struct bucket buckets[BUCKETS];
    char *tls_cert, *tls_key;    /* PEM contents */
    int unix_fd;
    struct peer_map *peers;      /* uid → principal for unsigned requests on the Unix socket */
    size_t n_peers;
    unsigned port;
    unsigned max_connections;
    srv_conns *conns;            /* deadlines and eviction (conns.h) */
    /* Answers waiting for their audit record with the connection suspended (under lock): kms_server_stop
     * sets stopping (later calls wait in their worker) and waits for parked to reach 0, since
     * libmicrohttpd cannot stop with a connection suspended. */
    unsigned parked;
    bool stopping;
    pthread_cond_t parked_cv;
};

struct req_state {
    char *body;
    size_t len, cap;
    bool too_big;
    bool started;    /* the handler's first call (headers complete) has been seen */
    /* An answer parked until its audit record is durable (kms_core_call_async): the connection is
     * suspended; the core's committer sets outcome and resumes it, and the handler, called again, sends
     * the answer (or refuses the call if the record could not be written). */
    kms_server *srv;
    struct MHD_Connection *conn;
    char *resp;          /* the parked answer (may hold plaintext: wiped) */
    size_t resp_len;
    bool parked;
    _Atomic bool settled;
    kms_err outcome;
};

/* The connection whose request line this event-loop thread parsed last (see mhd_log). */
static __thread srv_conn *thread_conn;

/* Per connection (MHD's socket context): a srv_conn of the guard's table, which also carries the
 * caller's address as the audit trail names it. */
static void notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe)
{
    kms_server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const union MHD_ConnectionInfo *fi = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        char addr[INET6_ADDRSTRLEN] = "unix", source[64];
        if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, addr, sizeof addr);
        snprintf(source, sizeof source, "http:%s", addr);
        if (fi) /* NULL (no memory): the request then names its source "http:unknown" */
            *socket_context = srv_conn_add(s->conns, fi->connect_fd, s->tls_cert != NULL, source);
        if (*socket_context && s->unix_fd >= 0) {
            /* Who connected, as the kernel saw it at connect(2). Without it (never on Linux) the
             * connection is an anonymous one: only signed requests get through. */
            srv_conn *sc = *socket_context;
            struct ucred uc;
            socklen_t len = sizeof uc;
            if (!getsockopt(fi->connect_fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) && len == sizeof uc) {
                sc->peer_uid = (uint32_t)uc.uid;
                sc->peer_gid = (uint32_t)uc.gid;
                sc->peer_pid = (int32_t)uc.pid;
                sc->peer = true;
            }
        }
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (thread_conn == *socket_context)
            thread_conn = NULL;
        srv_conn_remove(s->conns, *socket_context);
        *socket_context = NULL;
    }
}

static srv_conn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* libmicrohttpd calls this when a request line has been read: the request's deadline starts. Its
 * result becomes the request's state (*con_cls of the handler; freed by completed()). */
static void *request_started(void *cls, const char *uri, struct MHD_Connection *c)
{
    srv_conn *sc = conn_of(c);
    (void)cls;
    (void)uri;
    srv_conn_request_started(sc);
    thread_conn = sc;
    return calloc(1, sizeof(struct req_state));
}

/* libmicrohttpd 0.9.75 answers a Content-Length it cannot parse (too many digits, not a number) with
 * its own 413/400, but its state machine then builds the status line and headers a second time, so
 * the client reads two of them. No callback runs between the two (the handler is never called), so
 * the answer is given here, when libmicrohttpd logs the error on the event-loop thread that is
 * parsing that request (the connection whose request line this thread read last, if its headers have
 * not reached the handler yet; otherwise nothing is done and the doubled reply goes out): our reply, once, written to the socket, which is then shut down so that
 * libmicrohttpd's doubled reply fails with EPIPE and the connection closes. Over TLS a plain write
 * is impossible: the connection is just closed. */
static void answer_bad_length(srv_conn *sc, bool too_large)
{
    char buf[512];
    const char *body = too_large ? "{\"__type\":\"ValidationException\",\"message\":\"Content-Length is too large\"}"
                                 : "{\"__type\":\"SerializationException\",\"message\":\"Content-Length is not a number\"}";
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %s\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     too_large ? "413 Content Too Large" : "400 Bad Request", strlen(body), body);
    if (!sc->tls && n > 0 && (size_t)n < sizeof buf)
        (void)!send(sc->fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT); /* best effort: it closes anyway */
    shutdown(sc->fd, SHUT_RDWR);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[256];
    (void)cls;
    if (strstr(fmt, "Content-Length") && thread_conn && !thread_conn->headers_done &&
        atomic_load_explicit(&thread_conn->phase, memory_order_relaxed) == SRV_IN_REQUEST) {
        answer_bad_length(thread_conn, strstr(fmt, "Too large") != NULL);
        thread_conn = NULL;
    }
    /* Where libmicrohttpd's own logger wrote (stderr): the daemon sets its log level after the server
     * has started, so the event-loop threads do not read it. */
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = 0;
    fprintf(stderr, "libmicrohttpd: %s\n", line);
}

/* Look up (and cache) an access key; copies into out. A cached entry is used only while the core's
 * generation is the one it was read at: a key deleted from the store (by the CLI, another process) is
 * refused from KMS_FRESHNESS_MS after the deletion on, like any other change to the store. */
/* The cache slot holding akid, or s->ak_used if none. s->lock held. */
static size_t slot_of(const kms_server *s, const char *akid)
{
    size_t i;
    for (i = 0; i < s->ak_used; i++) /* slots fill from 0: only the used ones are scanned */
        if (!strcmp(s->aks[i].id, akid))
            break;
    return i;
}

static kms_err find_key(kms_server *s, const char *akid, struct ak_entry *out)
{
    uint64_t gen = kms_core_generation(s->core);
    size_t i;
    kms_err e;
    pthread_mutex_lock(&s->lock);
    i = slot_of(s, akid);
    if (i < s->ak_used && s->aks[i].gen == gen) {
        *out = s->aks[i];
        pthread_mutex_unlock(&s->lock);
        return KMS_OK;
    }
    pthread_mutex_unlock(&s->lock);
    memset(out, 0, sizeof *out);
    if (strlen(akid) >= sizeof out->id)
        return KMS_ERR_UNRECOGNIZED_CLIENT;
    e = kms_core_lookup_access_key(s->core, akid, out->secret, sizeof out->secret, out->account, sizeof out->account,
                                   out->user, sizeof out->user);
    pthread_mutex_lock(&s->lock);
    i = slot_of(s, akid); /* the slot found above may have been reused meanwhile */
    if (e) {
        if (i < s->ak_used && e == KMS_ERR_UNRECOGNIZED_CLIENT) /* deleted: forget it */
            sodium_memzero(&s->aks[i], sizeof s->aks[i]);
        pthread_mutex_unlock(&s->lock);
        return e == KMS_ERR_UNRECOGNIZED_CLIENT ? e : KMS_ERR_INTERNAL;
    }
    snprintf(out->id, sizeof out->id, "%s", akid);
    out->gen = gen;
    if (i == s->ak_used) { /* not cached: take the next slot of the ring */
        i = s->ak_next;
        s->ak_next = (s->ak_next + 1) % AK_CACHE;
        if (s->ak_used < AK_CACHE)
            s->ak_used++;
    }
    s->aks[i] = *out;
    pthread_mutex_unlock(&s->lock);
    return KMS_OK;
}

/* The SigV4 signing key of the request's scope (date/region/service) into key->skey: the cached one
 * when the scope matches, else derived (four HMACs) and cached for the next request of that scope.
 * The per-request part (body hash, canonical request, final HMAC) is always computed by the caller. */
static kms_err signing_key(kms_server *s, struct ak_entry *key, const sigv4_auth *a)
{
    char scope[sizeof key->scope];
    int n = snprintf(scope, sizeof scope, "%s/%s/%s", a->date, a->region, a->service);
    if (n < 0 || (size_t)n >= sizeof scope) /* an odd scope: derive every time, cache nothing */
        return sigv4_signing_key(key->secret, a->date, a->region, a->service, key->skey) ? KMS_ERR_INTERNAL
                                                                                        : KMS_OK;
    if (!strcmp(key->scope, scope))
        return KMS_OK;
    if (sigv4_signing_key(key->secret, a->date, a->region, a->service, key->skey))
        return KMS_ERR_INTERNAL;
    memcpy(key->scope, scope, sizeof scope);
    pthread_mutex_lock(&s->lock);
    {
        size_t i = slot_of(s, key->id);
        if (i < s->ak_used) {
            memcpy(s->aks[i].scope, scope, sizeof scope);
            memcpy(s->aks[i].skey, key->skey, sizeof key->skey);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return KMS_OK;
}

/* Token bucket per account. */
static bool allow(kms_server *s, const char *account)
{
    double t = efs_mono_s(), rate = s->o.rate_limit > 0 ? s->o.rate_limit : 10000;
    struct bucket *b = NULL, *oldest = &s->buckets[0];
    bool ok;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < BUCKETS; i++) {
        if (!strcmp(s->buckets[i].account, account)) {
            b = &s->buckets[i];
            break;
        }
        if (s->buckets[i].last < oldest->last)
            oldest = &s->buckets[i];
    }
    if (!b) {
        b = oldest;
        snprintf(b->account, sizeof b->account, "%s", account);
        b->tokens = rate;
        b->last = t;
    }
    b->tokens += (t - b->last) * rate;
    if (b->tokens > rate)
        b->tokens = rate;
    b->last = t;
    ok = b->tokens >= 1.0;
    if (ok)
        b->tokens -= 1.0;
    pthread_mutex_unlock(&s->lock);
    return ok;
}

static void free_wiped(void *p)
{
    if (p) {
        sodium_memzero(p, strlen(p));
        free(p);
    }
}

/* body (consumed) as the answer; mac: the replication protocol's response MAC header value, or NULL. */
static enum MHD_Result reply_mac(struct MHD_Connection *c, unsigned status, char *body, const char *mac)
{
    struct MHD_Response *r;
    enum MHD_Result rc;
    uint8_t rid[16];
    char id[40];
    if (!body)
        return MHD_NO;
    r = MHD_create_response_from_buffer_with_free_callback(strlen(body), body, free_wiped);
    if (!r) {
        free_wiped(body);
        return MHD_NO;
    }
    if (kms_random(rid, sizeof rid)) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    {
        static const char hx[] = "0123456789abcdef";
        size_t o = 0;
        for (size_t i = 0; i < sizeof rid; i++) { /* 8-4-4-4-12 */
            if (i == 4 || i == 6 || i == 8 || i == 10)
                id[o++] = '-';
            id[o++] = hx[rid[i] >> 4];
            id[o++] = hx[rid[i] & 15];
        }
        id[o] = 0;
    }
    MHD_add_response_header(r, "Content-Type", "application/x-amz-json-1.1");
    MHD_add_response_header(r, "x-amzn-RequestId", id);
    if (mac)
        MHD_add_response_header(r, KMS_REPLICATION_MAC_HEADER, mac);
    rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, char *body)
{
    return reply_mac(c, status, body, NULL);
}

static enum MHD_Result reply_error(struct MHD_Connection *c, kms_err e, const char *msg)
{
    json_t *o = json_pack("{s:s}", "__type", kms_err_name(e));
    char *body;
    unsigned status = 400;
    if (msg)
        json_object_set_new(o, "message", json_string(msg));
    body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (e == KMS_ERR_INTERNAL || e == KMS_ERR_IO || e == KMS_ERR_NOMEM || e == KMS_ERR_CORRUPT_STORE)
        status = 500;
    else if (e == KMS_ERR_DRY_RUN)
        status = 412; /* as AWS answers DryRunOperationException */
    else if (e == KMS_ERR_DEPENDENCY_TIMEOUT)
        status = 503;
    return reply(c, status, body);
}

/* Authenticate; on success fills the principal strings. */
/* Whether key_id is one of a comma-separated list. */
static bool listed_in(const char *list, const char *key_id)
{
    size_t kl = strlen(key_id);
    for (const char *p = list; p && *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
        if (strcspn(p, ",") == kl && !strncmp(p, key_id, kl))
            return true;
        if (!strcspn(p, ","))
            break;
    }
    return false;
}

/* The service a trusted access key's request says it comes through (kms_server_opts.trust_via_service),
 * or NULL: the header must be signed, the key listed, and the name NAME.REGION.amazonaws.com. */
static const char *via_service(const kms_server *s, struct MHD_Connection *c, const char *key_id)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Envelopefs-Via-Service"), *list, *p;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    size_t kl = strlen(key_id), n;
    bool listed = false;
    if (!v || !auth || !(list = s->o.trust_via_service) || !(p = strstr(auth, "SignedHeaders=")))
        return NULL;
    p += 14;
    n = strcspn(p, ", ");
    {
        const char *h = p;
        bool signed_ = false;
        while (h < p + n && !signed_) {
            size_t l = strcspn(h, ";, ");
            signed_ = l == 24 && !strncmp(h, "x-envelopefs-via-service", 24);
            h += l + (h[l] == ';');
            if (!l)
                break;
        }
        if (!signed_)
            return NULL;
    }
    for (p = list; *p && !listed; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
        listed = strcspn(p, ",") == kl && !strncmp(p, key_id, kl);
        if (!strcspn(p, ","))
            break;
    }
    n = strlen(v);
    if (!listed || n > 128 || n <= 14 || strcmp(v + n - 14, ".amazonaws.com") ||
        strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789.-") != n)
        return NULL;
    return v;
}

/* skey_out, sig_out (may be NULL): the request's SigV4 signing key and signature, for a response MAC. */
static kms_err authenticate(kms_server *s, struct MHD_Connection *c, const struct req_state *st,
                            struct ak_entry *key, const char **msg, char claimed[24], uint8_t *skey_out,
                            char *sig_out)
{
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *date = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Amz-Date");
    sigv4_auth a;
    sigv4_header hdrs[32];
    size_t n = 0;
    char names[1024], *save = NULL, *tok;
    int64_t t;
    kms_err e;

    if (!auth) {
        *msg = "Missing Authentication Token";
        return KMS_ERR_MISSING_AUTH;
    }
    if (sigv4_parse_auth(auth, &a)) {
        *msg = "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' (AWS4-HMAC-SHA256)";
        return KMS_ERR_INCOMPLETE_SIGNATURE;
    }
    snprintf(claimed, 24, "%s", a.access_key);
    if (strcmp(a.service, "kms")) {
        *msg = "Credential should be scoped to correct service: 'kms'.";
        return KMS_ERR_SIGNATURE_MISMATCH;
    }
    if (!date || (t = sigv4_parse_date(date)) < 0) {
        *msg = "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.";
        return KMS_ERR_INCOMPLETE_SIGNATURE;
    }
    if (llabs((long long)(t - (int64_t)time(NULL))) > (s->o.max_skew_s ? s->o.max_skew_s : 300)) {
        *msg = "Signature expired: the request time is more than 5 minutes from the server's time.";
        return KMS_ERR_CLOCK_SKEW;
    }
    snprintf(names, sizeof names, "%s", a.signed_headers);
    for (tok = strtok_r(names, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
        const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, tok);
        if (!v || n == sizeof hdrs / sizeof hdrs[0]) {
            *msg = "A signed header is missing from the request";
            return KMS_ERR_INCOMPLETE_SIGNATURE;
        }
        hdrs[n].name = tok;
        hdrs[n].value = v;
        n++;
    }
    if (!strstr(a.signed_headers, "host")) {
        *msg = "'Host' must be a signed header";
        return KMS_ERR_INCOMPLETE_SIGNATURE;
    }
    e = find_key(s, a.access_key, key);
    if (e) {
        *msg = e == KMS_ERR_UNRECOGNIZED_CLIENT ? "The security token included in the request is invalid." : NULL;
        return e;
    }
    e = signing_key(s, key, &a);
    if (!e) {
        sigv4_request r = {.method = "POST", .path = "/", .query = "", .headers = hdrs, .n_headers = n,
                           .payload = (const uint8_t *)st->body, .payload_len = st->len};
        if (sigv4_verify_with_key(&r, &a, key->skey, date)) {
            *msg = "The request signature we calculated does not match the signature you provided. Check your "
                   "AWS Secret Access Key and signing method.";
            e = KMS_ERR_SIGNATURE_MISMATCH;
        } else if (skey_out && sig_out) {
            memcpy(skey_out, key->skey, 32);
            snprintf(sig_out, 65, "%s", a.signature);
        }
    }
    sodium_memzero(key->secret, sizeof key->secret);
    sodium_memzero(key->skey, sizeof key->skey);
    return e;
}

/* The principal --unix-principal maps the connection's peer to, or NULL. */
static const struct peer_map *peer_principal(const kms_server *s, const srv_conn *sc)
{
    if (!sc || !sc->peer)
        return NULL;
    for (size_t i = 0; i < s->n_peers; i++)
        if (s->peers[i].uid == sc->peer_uid)
            return &s->peers[i];
    return NULL;
}

/* The replication protocol between servers (EnvelopefsReplication.<Operation>, docs/DESIGN.md "Replication
 * between servers"): always signed (an unsigned caller on the Unix socket is refused: the answer's MAC is keyed
 * from the signature), handed to the core's replication entry point, and a 200 answer carries
 * X-Envelopefs-Response-Mac. */
static enum MHD_Result handle_replication(kms_server *s, struct MHD_Connection *c, const struct req_state *st,
                                          const char *op)
{
    const srv_conn *cs = conn_of(c);
    struct ak_entry key;
    const char *msg = NULL;
    char claimed[24] = "", sig[65] = "", mac[65], *resp = NULL, *emsg = NULL;
    uint8_t skey[32];
    size_t resp_len = 0;
    kms_err e;
    enum MHD_Result r;
    kms_principal p = {.account = NULL, .user = "unknown", .source = cs ? cs->source : "http:unknown",
                       .user_agent = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "User-Agent")};

    if ((e = authenticate(s, c, st, &key, &msg, claimed, skey, sig))) {
        p.access_key = claimed[0] ? claimed : NULL;
        if (e != KMS_ERR_INTERNAL)
            kms_core_audit_auth_failure(s->core, &p, op, e, msg);
        return reply_error(c, e, msg);
    }
    p.account = key.account;
    p.user = key.user;
    p.access_key = key.id;
    if (s->o.replication_keys && !listed_in(s->o.replication_keys, key.id)) {
        char m[160];
        sodium_memzero(skey, sizeof skey);
        snprintf(m, sizeof m, "access key %s may not use the replication protocol on this server (--replication-keys)",
                 key.id);
        kms_core_audit_auth_failure(s->core, &p, op, KMS_ERR_ACCESS_DENIED, m);
        return reply_error(c, KMS_ERR_ACCESS_DENIED, m);
    }
    if (!allow(s, key.account)) {
        sodium_memzero(skey, sizeof skey);
        return reply_error(c, KMS_ERR_THROTTLING, "Rate exceeded");
    }
    p.source_ip = cs && strcmp(cs->source, "http:unix") ? cs->source + 5 : NULL;
    e = kms_core_replication_call(s->core, &p, op, st->body ? st->body : "{}", st->body ? st->len : 2, &resp,
                                  &resp_len, &emsg);
    if (e) {
        sodium_memzero(skey, sizeof skey);
        r = reply_error(c, e, emsg);
        free(emsg);
        return r;
    }
    kms_replication_mac(skey, sig, resp, resp_len, mac);
    sodium_memzero(skey, sizeof skey);
    sodium_memzero(&key, sizeof key);
    return reply_mac(c, 200, resp, mac);
}

/* The committer's report for a parked answer (any thread; must not call into the core). */
static void parked_settled(void *arg, kms_err outcome)
{
    struct req_state *st = arg;
    struct MHD_Connection *conn = st->conn; /* (st is the handler's once settled is set) */
    st->outcome = outcome;
    atomic_store(&st->settled, true);
    MHD_resume_connection(conn); /* the connection is suspended until this: it outlives st's use here */
}

/* A successful call's answer once the outcome of its record is known: the answer if the record is
 * durable, else the refusal (the answer, which may hold plaintext, wiped). */
static enum MHD_Result answer_durable(struct MHD_Connection *c, char *resp, size_t resp_len, kms_err outcome)
{
    if (outcome) {
        kms_response_free(resp, resp_len);
        return reply_error(c, KMS_ERR_INTERNAL, "the audit trail cannot be written; the call is refused");
    }
    return reply(c, 200, resp);
}

/* A successful call's answer whose record is not yet durable: suspend the connection (the worker goes on
 * with other connections) until the core reports the record written. While the server stops, wait here
 * instead. */
static enum MHD_Result park(kms_server *s, struct MHD_Connection *c, struct req_state *st, char *resp,
                            size_t resp_len, uint64_t ticket)
{
    bool stopping;
    pthread_mutex_lock(&s->lock);
    stopping = s->stopping;
    if (!stopping)
        s->parked++;
    pthread_mutex_unlock(&s->lock);
    if (stopping)
        return answer_durable(c, resp, resp_len, kms_core_wait_durable(s->core, ticket));
    st->srv = s;
    st->conn = c;
    st->resp = resp;
    st->resp_len = resp_len;
    st->parked = true;
    MHD_suspend_connection(c); /* before the core may resume it */
    kms_core_when_durable(s->core, ticket, parked_settled, st);
    return MHD_YES;
}

/* A parked answer is done with: answered, or its connection closed (a client that left while its answer
 * was parked: libmicrohttpd then ends the request after the resume without calling the handler). */
static void unpark(struct req_state *st)
{
    kms_server *s = st->srv;
    if (!st->parked)
        return;
    st->parked = false;
    pthread_mutex_lock(&s->lock);
    s->parked--;
    pthread_cond_broadcast(&s->parked_cv);
    pthread_mutex_unlock(&s->lock);
}

/* The handler's call after the resume: the answer, or the refusal if its record could not be written. */
static enum MHD_Result answer_parked(struct MHD_Connection *c, struct req_state *st)
{
    char *resp = st->resp;
    enum MHD_Result r;
    if (!atomic_load(&st->settled))
        return MHD_YES; /* (not resumed by us: nothing to send yet) */
    st->resp = NULL;
    r = answer_durable(c, resp, st->resp_len, st->outcome);
    unpark(st);
    return r;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    kms_server *s = cls;
    struct req_state *st = *con_cls;
    const char *target, *msg = NULL, *op;
    struct ak_entry key;
    char *resp = NULL, *emsg = NULL;
    size_t resp_len;
    kms_err e;
    (void)version;

    if (!st)
        return MHD_NO; /* request_started could not allocate it */
    if (st->parked)
        return answer_parked(c, st);
    if (!st->started) {
        /* Headers complete. A body announced larger than we take is refused before it is read. */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        srv_conn *sc = conn_of(c);
        st->started = true;
        if (sc)
            sc->headers_done = true; /* past the point where libmicrohttpd checks Content-Length */
        if (cl && strtoull(cl, NULL, 10) > MAX_BODY)
            return reply_error(c, KMS_ERR_VALIDATION, "request body too large (limit 64 KiB)");
        return MHD_YES;
    }
    if (*upload_size) {
        if (st->len + *upload_size > MAX_BODY) {
            st->too_big = true;
        } else {
            if (st->len + *upload_size + 1 > st->cap) {
                /* Grown by hand, not realloc: the old block may hold plaintext and is wiped. */
                size_t cap = st->len + *upload_size + 1 + 1024;
                char *nb = malloc(cap);
                if (!nb)
                    return MHD_NO;
                if (st->body) {
                    memcpy(nb, st->body, st->len + 1);
                    sodium_memzero(st->body, st->len + 1);
                    free(st->body);
                }
                st->body = nb;
                st->cap = cap;
            }
            memcpy(st->body + st->len, upload, *upload_size);
            st->len += *upload_size;
            st->body[st->len] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "POST") || strcmp(url, "/"))
        return reply_error(c, KMS_ERR_UNKNOWN_OPERATION, "only POST / with X-Amz-Target is served");
    if (st->too_big)
        return reply_error(c, KMS_ERR_VALIDATION, "request body too large (limit 64 KiB)");
    target = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Amz-Target");
    if (target && !strncmp(target, KMS_REPLICATION_TARGET, sizeof KMS_REPLICATION_TARGET - 1))
        return handle_replication(s, c, st, target + sizeof KMS_REPLICATION_TARGET - 1);
    if (!target || strncmp(target, "TrentService.", 13))
        return reply_error(c, KMS_ERR_UNKNOWN_OPERATION, "X-Amz-Target must be TrentService.<Operation>");
    op = target + 13;
    {
        const srv_conn *cs = conn_of(c);
        kms_unix_peer peer = {0, 0, 0};
        const struct peer_map *pm = NULL;
        char claimed[24] = "", unmapped[96];
        if (cs && cs->peer) {
            peer = (kms_unix_peer){cs->peer_uid, cs->peer_gid, cs->peer_pid};
            if (!MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"))
                pm = peer_principal(s, cs); /* unsigned: the uid decides; signed: the signature does */
        }
        if (pm) {
            memset(&key, 0, sizeof key);
            memcpy(key.account, pm->account, sizeof pm->account);
            memcpy(key.user, pm->user, sizeof pm->user);
        } else if ((e = authenticate(s, c, st, &key, &msg, claimed, NULL, NULL))) {
            /* Recorded with what it claimed (rate-limited in the core: a flood cannot fill the disk). */
            kms_principal p = {.account = NULL, .user = "unknown", .access_key = claimed[0] ? claimed : NULL,
                               .source = cs ? cs->source : "http:unknown",
                               .user_agent = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "User-Agent"),
                               .unix_peer = cs && cs->peer ? &peer : NULL};
            if (e == KMS_ERR_MISSING_AUTH && cs && cs->peer) {
                snprintf(unmapped, sizeof unmapped,
                         "Missing Authentication Token (uid %u has no principal on this socket)", (unsigned)peer.uid);
                msg = unmapped;
            }
            if (e != KMS_ERR_INTERNAL)
                kms_core_audit_auth_failure(s->core, &p, op, e, msg);
            return reply_error(c, e, msg);
        }
        if (!allow(s, key.account))
            return reply_error(c, KMS_ERR_THROTTLING, "Rate exceeded");
        {
            kms_principal p = {.account = key.account, .user = key.user, .access_key = pm ? NULL : key.id,
                               .source = cs ? cs->source : "http:unknown",
                               .source_ip = cs && strcmp(cs->source, "http:unix") ? cs->source + 5 : NULL,
                               .user_agent = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "User-Agent"),
                               .unix_peer = cs && cs->peer ? &peer : NULL,
                               .via_service = pm ? NULL : via_service(s, c, key.id)};
            uint64_t ticket = 0;
            e = kms_core_call_async(s->core, &p, op, st->body ? st->body : "{}", st->body ? st->len : 2, &resp,
                                    &resp_len, &emsg, &ticket);
            if (!e && ticket)
                return park(s, c, st, resp, resp_len, ticket);
        }
    }
    if (e) {
        enum MHD_Result r = reply_error(c, e, emsg);
        free(emsg);
        return r;
    }
    return reply(c, 200, resp);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    struct req_state *st = *con_cls;
    (void)cls;
    (void)toe;
    srv_conn_request_done(conn_of(c));
    if (st) {
        kms_response_free(st->resp, st->resp_len); /* (a parked answer never sent) */
        unpark(st);
        if (st->body) {
            sodium_memzero(st->body, st->len + 1); /* only the body and its NUL were ever written */
            free(st->body);
        }
        free(st);
        *con_cls = NULL;
    }
}

/* The connection limit RLIMIT_NOFILE allows (less descriptors for the store, logs and listeners),
 * at most KMS_SERVER_MAX_CONNECTIONS. `kms serve` raises the soft limit to the hard one first. */
static unsigned default_connection_limit(void)
{
    struct rlimit rl;
    rlim_t n;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return 1024;
    n = rl.rlim_cur == RLIM_INFINITY ? KMS_SERVER_MAX_CONNECTIONS + 256 : rl.rlim_cur;
    if (n < 512)
        return 256;
    n -= 256;
    return n > KMS_SERVER_MAX_CONNECTIONS ? KMS_SERVER_MAX_CONNECTIONS : (unsigned)n;
}

kms_err kms_server_start(kms_core *core, const kms_server_opts *o, kms_server **out, char **errmsg)
{
    kms_server *s;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME;
    struct sockaddr_in sin;
    unsigned threads = o->threads ? o->threads : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);

    *out = NULL;
    if (errmsg)
        *errmsg = NULL;
    s = calloc(1, sizeof *s);
    if (!s)
        return KMS_ERR_NOMEM;
    s->core = core;
    s->o = *o;
    s->unix_fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->parked_cv, NULL);
    s->aks = sodium_malloc(AK_CACHE * sizeof *s->aks);
    if (!s->aks) {
        free(s);
        return KMS_ERR_NOMEM;
    }
    memset(s->aks, 0, AK_CACHE * sizeof *s->aks);
    if (threads < 1)
        threads = 1;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(4599);
    if (o->listen) {
        char host[64];
        const char *colon = strrchr(o->listen, ':');
        unsigned long port;
        if (!colon || (size_t)(colon - o->listen) >= sizeof host) {
            if (errmsg)
                *errmsg = strdup("--listen takes ADDRESS:PORT, e.g. 127.0.0.1:4599");
            kms_server_stop(s);
            return KMS_ERR_VALIDATION;
        }
        memcpy(host, o->listen, (size_t)(colon - o->listen));
        host[colon - o->listen] = 0;
        port = strtoul(colon + 1, NULL, 10);
        if (inet_pton(AF_INET, host, &sin.sin_addr) != 1 || port > 65535) {
            if (errmsg)
                *errmsg = strdup("--listen takes an IPv4 ADDRESS:PORT, e.g. 127.0.0.1:4599");
            kms_server_stop(s);
            return KMS_ERR_VALIDATION;
        }
        sin.sin_port = htons((uint16_t)port);
    }
    if (o->tls_cert || o->tls_key) {
        s->tls_cert = o->tls_cert ? efs_read_file(o->tls_cert, NULL) : NULL;
        s->tls_key = o->tls_key ? efs_read_file(o->tls_key, NULL) : NULL;
        if (!s->tls_cert || !s->tls_key) {
            if (errmsg)
                *errmsg = strdup("--tls-cert and --tls-key must both name readable PEM files");
            kms_server_stop(s);
            return KMS_ERR_VALIDATION;
        }
        flags |= MHD_USE_TLS;
    }
    if (o->n_unix_principals && !o->unix_path) {
        if (errmsg)
            *errmsg = strdup("--unix-principal maps callers of a Unix socket: it needs --unix PATH");
        kms_server_stop(s);
        return KMS_ERR_VALIDATION;
    }
    if (o->n_unix_principals) {
        s->peers = calloc(o->n_unix_principals, sizeof *s->peers);
        if (!s->peers) {
            kms_server_stop(s);
            return KMS_ERR_NOMEM;
        }
        for (size_t i = 0; i < o->n_unix_principals; i++) {
            const kms_unix_principal *m = &o->unix_principals[i];
            struct peer_map *pm = &s->peers[s->n_peers];
            bool dup = false;
            for (size_t j = 0; j < s->n_peers; j++)
                dup |= s->peers[j].uid == m->uid;
            if (dup || !m->arn || kms_principal_split(m->arn, pm->account, pm->user, sizeof pm->user) ||
                !strcmp(pm->user, "local")) {
                if (errmsg && asprintf(errmsg,
                                       dup ? "--unix-principal: uid %u is mapped twice"
                                           : "--unix-principal: uid %u: '%s' is not arn:aws:iam::ACCOUNT:root or "
                                             "arn:aws:iam::ACCOUNT:user/NAME",
                                       (unsigned)m->uid, m->arn ? m->arn : "") < 0)
                    *errmsg = NULL;
                kms_server_stop(s);
                return KMS_ERR_VALIDATION;
            }
            pm->uid = m->uid;
            s->n_peers++;
        }
    }
    if (o->unix_path) {
        struct sockaddr_un sun;
        memset(&sun, 0, sizeof sun);
        sun.sun_family = AF_UNIX;
        if (strlen(o->unix_path) >= sizeof sun.sun_path) {
            kms_server_stop(s);
            return KMS_ERR_VALIDATION;
        }
        strcpy(sun.sun_path, o->unix_path);
        unlink(o->unix_path);
        s->unix_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s->unix_fd < 0 || bind(s->unix_fd, (struct sockaddr *)&sun, sizeof sun) || listen(s->unix_fd, 512) ||
            chmod(o->unix_path, o->unix_mode ? o->unix_mode : 0600)) {
            if (errmsg && asprintf(errmsg, "cannot listen on %s: %s", o->unix_path, strerror(errno)) < 0)
                *errmsg = NULL;
            kms_server_stop(s);
            return KMS_ERR_IO;
        }
    }
    {
        unsigned limit = o->max_connections ? o->max_connections : default_connection_limit();
        unsigned margin = limit / 32 > 8 ? limit / 32 : 8;
        srv_conns_opts co = {.idle_ms = (o->timeout_s ? o->timeout_s : 30u) * 1000u,
                             .request_ms = (o->request_timeout_s ? o->request_timeout_s : 20u) * 1000u,
                             .high_water = limit > margin ? limit - margin : limit,
                             .low_water = limit > 2 * margin ? limit - 2 * margin : limit};
        s->max_connections = limit;
        s->conns = srv_conns_new(&co);
        if (!s->conns) {
            kms_server_stop(s);
            return KMS_ERR_NOMEM;
        }
    }
    s->d = MHD_start_daemon(
        flags, 0, NULL, NULL, handle, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, MHD_OPTION_THREAD_POOL_SIZE,
        threads, MHD_OPTION_CONNECTION_LIMIT, s->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        o->per_ip_limit ? o->per_ip_limit : 256u, MHD_OPTION_CONNECTION_TIMEOUT, o->timeout_s ? o->timeout_s : 30u,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY, MHD_OPTION_URI_LOG_CALLBACK, request_started, s,
        MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_NOTIFY_CONNECTION, notify_connection, s,
        s->unix_fd >= 0 ? MHD_OPTION_LISTEN_SOCKET : MHD_OPTION_SOCK_ADDR,
        s->unix_fd >= 0 ? (intptr_t)s->unix_fd : (intptr_t)&sin,
        s->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, s->tls_cert, MHD_OPTION_HTTPS_MEM_KEY, s->tls_key,
        MHD_OPTION_END);
    if (!s->d) {
        if (errmsg && asprintf(errmsg, "cannot start the HTTP server on %s: %s",
                               o->unix_path ? o->unix_path : (o->listen ? o->listen : "127.0.0.1:4599"),
                               strerror(errno)) < 0)
            *errmsg = NULL;
        kms_server_stop(s);
        return KMS_ERR_IO;
    }
    {
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
        s->port = di ? di->port : 0;
    }
    *out = s;
    return KMS_OK;
}

unsigned kms_server_port(kms_server *s) { return s->port; }

void kms_server_stop(kms_server *s)
{
    if (!s)
        return;
    if (s->d) {
        MHD_quiesce_daemon(s->d);
        /* Parked answers first: the core's committer resumes each once its record is written (or its
         * write failed), and the handler, called again, answers it; calls from now on wait in their worker. */
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        while (s->parked)
            pthread_cond_wait(&s->parked_cv, &s->lock);
        pthread_mutex_unlock(&s->lock);
        MHD_stop_daemon(s->d); /* waits for the worker threads: in-flight requests finish */
    }
    if (s->conns) {
        uint64_t expired, evicted;
        size_t open;
        srv_conns_stats(s->conns, &expired, &evicted, &open);
        EFS_INFO("server: %llu connections ended at their deadline, %llu evicted near the limit",
                 (unsigned long long)expired, (unsigned long long)evicted);
    }
    {
        kms_trail_stats ts;
        kms_core_trail_stats(s->core, &ts);
        EFS_INFO("server: audit trail: %llu records in %llu commits (at most %llu in one), %llu failed writes",
                 (unsigned long long)ts.records, (unsigned long long)ts.commits, (unsigned long long)ts.max_batch,
                 (unsigned long long)ts.failures);
    }
    srv_conns_free(s->conns);
    if (s->unix_fd >= 0)
        close(s->unix_fd);
    if (s->o.unix_path)
        unlink(s->o.unix_path);
    free(s->peers);
    if (s->aks)
        sodium_free(s->aks);
    if (s->tls_key) {
        sodium_memzero(s->tls_key, strlen(s->tls_key));
        free(s->tls_key);
    }
    free(s->tls_cert);
    pthread_cond_destroy(&s->parked_cv);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
