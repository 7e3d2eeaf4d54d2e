/*
 * test_kms_server_park.c — the server's parked answers (kms/server/server.c with kms_core_call_async and
 * kms_core_when_durable): a successful call's answer waits, with its connection suspended and its
 * libmicrohttpd worker free, until the core's committer has written its audit record. Many connections at
 * once (more than the server's two workers) all get their answers, and every answer a client has read is
 * already in the trail (read through another connection); a trail write that fails turns the parked answer
 * into KMSInternalException, never a success; the core's own API delivers each outcome exactly once; and
 * the server stops cleanly right after a burst of parked answers.
 * The server listens on a Unix socket where this process's uid is mapped to the store's account root, so
 * requests need no signature.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>

#include "envelopefs/kms.h"
#include "internal.h"
#include "server.h"
#include "testutil.h"
#include "kmstest.h"

#define CONNS 64
#define ROUNDS 4

static char g_dir[64], g_store[300], g_keyfile[320], g_sock[96], g_key[64];

static int64_t gdk_rows(void)
{
    return kmstest_sql_count(g_store, "SELECT count(*) FROM audit WHERE operation='GenerateDataKey'", NULL);
}

static int connect_unix(void)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    snprintf(a.sun_path, sizeof a.sun_path, "%s", g_sock);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    return fd;
}

static void send_gdk(int fd, int n)
{
    char body[256], req[768];
    int bl = snprintf(body, sizeof body,
                      "{\"KeyId\":\"%s\",\"KeySpec\":\"AES_256\",\"EncryptionContext\":{\"n\":\"%d\"}}", g_key, n);
    int rl = snprintf(req, sizeof req,
                      "POST / HTTP/1.1\r\nHost: kms\r\nContent-Type: application/x-amz-json-1.1\r\n"
                      "X-Amz-Target: TrentService.GenerateDataKey\r\nContent-Length: %d\r\n\r\n%s",
                      bl, body);
    CHECK(write(fd, req, (size_t)rl) == rl);
}

/* One HTTP response: its status; its body into body (cap bytes, NUL-terminated). */
static int read_reply(int fd, char *body, size_t cap)
{
    char buf[8192];
    size_t n = 0;
    char *end = NULL, *cl;
    int status = 0;
    long len;
    while (!end) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        CHECK(r > 0);
        n += (size_t)r;
        buf[n] = 0;
        end = strstr(buf, "\r\n\r\n");
    }
    CHECK(sscanf(buf, "HTTP/1.1 %d", &status) == 1);
    cl = strcasestr(buf, "Content-Length:");
    CHECK(cl && cl < end);
    len = strtol(cl + 15, NULL, 10);
    CHECK(len >= 0 && (size_t)len < cap);
    end += 4;
    while ((size_t)(buf + n - end) < (size_t)len) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        CHECK(r > 0);
        n += (size_t)r;
    }
    CHECK((size_t)(buf + n - end) == (size_t)len); /* one request in flight per connection */
    memcpy(body, end, (size_t)len);
    body[len] = 0;
    sodium_memzero(buf, sizeof buf);
    return status;
}

static kms_server *start(kms_core *c)
{
    char arn[64], *msg = NULL;
    kms_unix_principal up;
    kms_server_opts o = {0};
    kms_server *s = NULL;
    snprintf(arn, sizeof arn, "arn:aws:iam::%s:root", kms_core_account(c));
    up = (kms_unix_principal){(uint32_t)getuid(), arn};
    o.unix_path = g_sock;
    o.unix_principals = &up;
    o.n_unix_principals = 1;
    o.threads = 2;
    o.rate_limit = 1e9;
    if (kms_server_start(c, &o, &s, &msg))
        fprintf(stderr, "server: %s\n", msg ? msg : "");
    free(msg);
    CHECK(s != NULL);
    return s;
}

/* CONNS connections, each with a request in flight before any answer is read, ROUNDS times over the same
 * keep-alive connections: every answer is a data key, and every answered call's record is in the trail. */
static void test_many_connections(kms_core *c)
{
    int fd[CONNS];
    int64_t before = gdk_rows();
    char body[4096];
    int ok = 0;
    kms_server *s = start(c);
    for (int i = 0; i < CONNS; i++)
        fd[i] = connect_unix();
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < CONNS; i++)
            send_gdk(fd[i], r * CONNS + i);
        for (int i = 0; i < CONNS; i++) {
            int st = read_reply(fd[i], body, sizeof body);
            if (st != 200)
                fprintf(stderr, "%d: %s\n", st, body);
            CHECK_EQ_INT(st, 200);
            CHECK(strstr(body, "\"Plaintext\":\"") && strstr(body, "\"CiphertextBlob\":\""));
            sodium_memzero(body, sizeof body);
            ok++;
            /* durable before the answer: the trail already holds it, as another reader sees it */
            CHECK(gdk_rows() >= before + ok);
        }
    }
    CHECK_EQ_INT(ok, CONNS * ROUNDS);
    /* a burst of parked answers, then stop at once: the server waits for them (and does not abort) */
    for (int i = 0; i < CONNS; i++)
        send_gdk(fd[i], i);
    for (int i = 0; i < CONNS; i++)
        CHECK_EQ_INT(read_reply(fd[i], body, sizeof body), 200);
    for (int i = 0; i < CONNS; i++)
        send_gdk(fd[i], i);
    /* clients that leave while their answers are parked (half of them): their requests end without an
     * answer, and the stop below still finds every parked answer settled (it waited for ever before) */
    for (int i = 0; i < CONNS; i += 2)
        close(fd[i]);
    kms_server_stop(s);
    for (int i = 1; i < CONNS; i += 2)
        close(fd[i]);
    /* every call the server made was recorded (answered or not: a call the stop cut short is still a call) */
    CHECK(gdk_rows() >= before + (CONNS * (ROUNDS + 1)));
}

/* Clients that leave while their answers are parked: libmicrohttpd ends such a request after the resume
 * without calling the handler again, and the stop must still find no answer parked. The door (trail_mu)
 * is held until a call has queued its record (its worker then waits at it to make its promise, the
 * connection already suspended), both clients close, and only then are the records written and the
 * connections resumed, onto sockets at end of file. */
static void test_client_leaves(kms_core *c)
{
    kms_server *s = start(c);
    int fd[2] = {connect_unix(), connect_unix()};
    char body[4096];
    uint64_t t0, t = 0;
    int64_t rows;
    send_gdk(fd[0], 0); /* one answered call first: both connections known to the server */
    CHECK_EQ_INT(read_reply(fd[0], body, sizeof body), 200);
    send_gdk(fd[1], 1);
    CHECK_EQ_INT(read_reply(fd[1], body, sizeof body), 200);
    rows = gdk_rows();
    pthread_mutex_lock(&c->lock);
    t0 = c->q_ticket;
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_lock(&c->trail_mu);
    send_gdk(fd[0], 2);
    send_gdk(fd[1], 3);
    /* at least one call queued (both connections may be one worker's: it waits at the door with the first) */
    while (t < t0 + 1) { /* (try: the core takes trail_mu under its lock, never the reverse) */
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
        if (pthread_mutex_trylock(&c->lock))
            continue;
        t = c->q_ticket;
        pthread_mutex_unlock(&c->lock);
    }
    close(fd[0]);
    close(fd[1]);
    pthread_mutex_unlock(&c->trail_mu);
    kms_server_stop(s); /* returns: the parked answers were settled and their requests ended */
    /* the queued call's record is written; the other connection's request, if its worker had not read it
     * before the client left, may never have become a call */
    CHECK(gdk_rows() >= rows + 1 && gdk_rows() <= rows + 2);
}

/* A trail write that fails: the parked answer becomes the refusal, and no success is ever seen for a call
 * whose record was not written. (The maintenance thread's digest write may take the injected failure
 * instead, with nothing of ours in it: then our call succeeds rightly and the test tries again.) */
static void test_failed_write(kms_core *c)
{
    kms_server *s = start(c);
    int fd = connect_unix();
    char body[4096];
    bool refused = false;
    kms_trail_stats before, after;
    for (int attempt = 0; attempt < 20 && !refused; attempt++) {
        int st;
        int64_t rows = gdk_rows();
        kms_core_trail_stats(c, &before);
        atomic_store(&c->trail_fail_next, 1);
        send_gdk(fd, attempt);
        st = read_reply(fd, body, sizeof body);
        kms_core_trail_stats(c, &after);
        if (st == 200) {
            CHECK(gdk_rows() == rows + 1); /* its record is there */
            CHECK(atomic_load(&c->trail_fail_next) == 0);
            continue;
        }
        CHECK_EQ_INT(st, 500);
        CHECK(strstr(body, "KMSInternalException") && strstr(body, "audit trail cannot be written"));
        CHECK(!strstr(body, "Plaintext"));
        CHECK(after.failures > before.failures);
        refused = true;
        atomic_store(&c->trail_fail_next, 0);
        /* the refused call's record stays queued and a later commit writes it, before the next call's */
        send_gdk(fd, 99);
        CHECK_EQ_INT(read_reply(fd, body, sizeof body), 200);
        CHECK_EQ_INT(gdk_rows(), rows + 2);
    }
    CHECK(refused);
    close(fd);
    kms_server_stop(s);
}

/* The core's API alone: outcomes delivered once each, after the record is durable; a failed write's
 * outcome is KMS_ERR_IO. */
struct outcome {
    _Atomic int calls;
    kms_err e;
    int64_t rows_then;
};

/* gdk_rows without CHECK (its counter is the main thread's): for the committer thread's callback. */
static int64_t gdk_rows_quiet(void)
{
    char path[400];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    snprintf(path, sizeof path, "%s/keystore.db", g_store);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM audit WHERE operation='GenerateDataKey'", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void done(void *arg, kms_err e)
{
    struct outcome *o = arg;
    o->e = e;
    o->rows_then = gdk_rows_quiet();
    atomic_fetch_add(&o->calls, 1);
}

static void test_core_api(kms_core *c)
{
    enum { N = 50 };
    static struct outcome out[N];
    kms_principal p = {.account = NULL, .user = "local", .source = "test"};
    int64_t before = gdk_rows();
    char body[256];
    for (int i = 0; i < N; i++) {
        char *resp = NULL, *msg = NULL;
        size_t len = 0;
        uint64_t ticket = 0;
        snprintf(body, sizeof body, "{\"KeyId\":\"%s\",\"KeySpec\":\"AES_128\"}", g_key);
        CHECK(kms_core_call_async(c, &p, "GenerateDataKey", body, strlen(body), &resp, &len, &msg, &ticket) ==
              KMS_OK);
        CHECK(ticket != 0);
        kms_response_free(resp, len);
        kms_core_when_durable(c, ticket, done, &out[i]);
    }
    for (int i = 0; i < N; i++) {
        while (!atomic_load(&out[i].calls)) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
        CHECK(out[i].e == KMS_OK);
        CHECK(out[i].rows_then >= before + i + 1); /* its record (and those before it) written first */
    }
    /* an error is final at once (committed inside the call): no ticket */
    {
        char *resp = NULL, *msg = NULL;
        size_t len = 0;
        uint64_t ticket = 7;
        const char *nf = "{\"KeyId\":\"alias/none\",\"KeySpec\":\"AES_128\"}";
        CHECK(kms_core_call_async(c, &p, "GenerateDataKey", nf, strlen(nf), &resp, &len, &msg, &ticket) ==
              KMS_ERR_NOT_FOUND);
        CHECK(ticket == 0 && !resp);
        free(msg);
    }
    /* a failed write: KMS_ERR_IO through the committer thread, or at once if already known */
    {
        static struct outcome f;
        char *resp = NULL, *msg = NULL;
        size_t len = 0;
        uint64_t ticket = 0;
        int64_t rows;
        snprintf(body, sizeof body, "{\"KeyId\":\"%s\",\"KeySpec\":\"AES_128\"}", g_key);
        for (int attempt = 0; attempt < 20; attempt++) {
            rows = gdk_rows();
            atomic_store(&f.calls, 0);
            atomic_store(&c->trail_fail_next, 1);
            CHECK(kms_core_call_async(c, &p, "GenerateDataKey", body, strlen(body), &resp, &len, &msg, &ticket) ==
                  KMS_OK);
            kms_response_free(resp, len);
            kms_core_when_durable(c, ticket, done, &f);
            while (!atomic_load(&f.calls)) {
                struct timespec ms = {0, 1000000};
                nanosleep(&ms, NULL);
            }
            if (f.e == KMS_ERR_IO)
                break;
            CHECK(f.e == KMS_OK && atomic_load(&c->trail_fail_next) == 0); /* a digest write took it */
        }
        CHECK(f.e == KMS_ERR_IO);
        atomic_store(&c->trail_fail_next, 0);
        /* its record stays queued and is written by a later commit, before the next call's */
        snprintf(body, sizeof body, "{\"KeyId\":\"%s\",\"KeySpec\":\"AES_128\"}", g_key);
        CHECK(kms_core_call(c, &p, "GenerateDataKey", body, strlen(body), &resp, &len, &msg) == KMS_OK);
        kms_response_free(resp, len);
        CHECK_EQ_INT(gdk_rows(), rows + 2);
    }
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(atomic_load(&out[i].calls), 1);
}

int main(void)
{
    kms_core *c;
    char *resp = NULL, *msg = NULL;
    size_t len = 0;
    json_t *j;
    CHECK(sodium_init() >= 0);
    alarm(240); /* a stop that waits for ever fails the test (SIGALRM) rather than the ctest timeout */
    snprintf(g_dir, sizeof g_dir, "/tmp/kms-park-XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL);
    kmstest_init_store(g_dir, g_store, sizeof g_store, g_keyfile, sizeof g_keyfile, NULL);
    snprintf(g_sock, sizeof g_sock, "%s/kms.sock", g_dir);
    c = kmstest_open(g_store, g_keyfile);
    CHECK(kms_core_call(c, NULL, "CreateKey", "{}", 2, &resp, &len, &msg) == KMS_OK);
    j = json_loads(resp, 0, NULL);
    CHECK(j);
    snprintf(g_key, sizeof g_key, "%s", json_string_value(json_object_get(json_object_get(j, "KeyMetadata"), "KeyId")));
    json_decref(j);
    kms_response_free(resp, len);

    test_core_api(c);
    test_many_connections(c);
    test_client_leaves(c);
    test_failed_write(c);
    {
        kms_audit_validation v;
        CHECK(kms_core_validate_audit(c, 0, NULL, &v) == KMS_OK);
        CHECK(v.valid);
    }
    kms_core_free(c);
    kmstest_rmdir(g_dir);
    TEST_DONE();
}
