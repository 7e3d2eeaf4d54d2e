/*
 * http.c — the HTTP(S) backend of kmsclient: the AWS KMS JSON protocol over libcurl with SigV4
 * signing, so envelopefs can use AWS KMS, moto, LocalStack or `envelopefs kms serve`.
 *
 * Credentials come from kmsc_opts, else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN,
 * else the profile (opts, AWS_PROFILE, "default") in AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials.
 * Region: opts, AWS_REGION, AWS_DEFAULT_REGION, the profile in AWS_CONFIG_FILE or ~/.aws/config,
 * else us-east-1. Connections are reused through a small pool of curl handles. ThrottlingException,
 * 5xx and transport errors are retried with exponential backoff and full jitter, a bounded number of
 * times.
 *
 * "unix:PATH" (or "unix:///PATH"; PATH absolute) is HTTP over a Unix socket (`envelopefs kms serve
 * --unix`): requests are signed when credentials are found as above, and sent unsigned otherwise, for
 * a server that knows the caller by its uid (--unix-principal).
 *
 * With kmsc_opts.via_service the signed header X-Envelopefs-Via-Service names the service the
 * call is made through (NAME.REGION.amazonaws.com).
 */
#include <ctype.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "backend.h"
#include "envelopefs/sigv4.h"

#define POOL 16

typedef struct http_impl {
    char *endpoint;       /* URL to POST to */
    char *host;           /* Host header value */
    char *region;
    char *access_key;
    char *secret;         /* sodium_malloc'd */
    char *token;
    char *unix_path;      /* HTTP over this Unix socket, or NULL */
    char *via;            /* X-Envelopefs-Via-Service, or NULL */
    long timeout_ms;
    int max_retries;
    bool insecure;
    char *ca_file;
    pthread_mutex_t lock;
    CURL *idle[POOL];
    int n_idle;
    char account[16];     /* the caller's account, once learned (http_account) */
} http_impl;

/* ---- configuration files -------------------------------------------------------------------- */

/* Value of `key` in [section] of an INI file; malloc'd or NULL. */
static char *ini_get(const char *path, const char *section, const char *key)
{
    FILE *f = fopen(path, "re");
    char line[1024], cur[256] = "";
    char *out = NULL;
    if (!f)
        return NULL;
    while (fgets(line, sizeof line, f)) {
        char *p = line, *e, *eq;
        while (isspace((unsigned char)*p))
            p++;
        e = p + strlen(p);
        while (e > p && isspace((unsigned char)e[-1]))
            *--e = 0;
        if (*p == '#' || *p == ';' || !*p)
            continue;
        if (*p == '[') {
            char *close = strchr(p, ']');
            if (close) {
                *close = 0;
                snprintf(cur, sizeof cur, "%s", p + 1);
            }
            continue;
        }
        eq = strchr(p, '=');
        if (!eq || strcmp(cur, section))
            continue;
        *eq = 0;
        e = eq;
        while (e > p && isspace((unsigned char)e[-1]))
            *--e = 0;
        if (strcmp(p, key))
            continue;
        p = eq + 1;
        while (isspace((unsigned char)*p))
            p++;
        free(out);
        out = strdup(p);
    }
    sodium_memzero(line, sizeof line);
    fclose(f);
    return out;
}

static char *aws_file(const char *env, const char *name)
{
    const char *v = getenv(env), *home = getenv("HOME");
    char *p = NULL;
    if (v && *v)
        return strdup(v);
    if (asprintf(&p, "%s/.aws/%s", home ? home : "", name) < 0)
        return NULL;
    return p;
}

static char *env_dup(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? strdup(v) : NULL;
}

/* ---- curl ----------------------------------------------------------------------------------- */

struct buf {
    char *p;
    size_t n;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct buf *b = ud;
    size_t n = size * nmemb;
    char *np;
    if (b->n + n > (1u << 20))
        return 0; /* a KMS response is small; refuse a runaway body */
    np = realloc(b->p, b->n + n + 1);
    if (!np)
        return 0;
    b->p = np;
    memcpy(b->p + b->n, ptr, n);
    b->n += n;
    b->p[b->n] = 0;
    return n;
}

static CURL *take(http_impl *h)
{
    CURL *c = NULL;
    pthread_mutex_lock(&h->lock);
    if (h->n_idle)
        c = h->idle[--h->n_idle];
    pthread_mutex_unlock(&h->lock);
    if (!c)
        c = curl_easy_init();
    else
        curl_easy_reset(c);
    return c;
}

static void give(http_impl *h, CURL *c)
{
    pthread_mutex_lock(&h->lock);
    if (h->n_idle < POOL) {
        h->idle[h->n_idle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&h->lock);
    if (c)
        curl_easy_cleanup(c);
}

static void set_err(kmsc_error *err, kms_err code, const char *name, const char *msg)
{
    err->code = code;
    snprintf(err->name, sizeof err->name, "%s", name ? name : kms_err_name(code));
    snprintf(err->message, sizeof err->message, "%s", msg ? msg : "");
}

/* One attempt. Returns KMS_OK, a service error (err filled), or KMS_ERR_TRANSPORT. *status set. */
static kms_err attempt(http_impl *h, const char *operation, const char *req, size_t req_len, char **resp,
                       size_t *resp_len, kmsc_error *err, long *status)
{
    char target[128], date[17], auth[1024], hbuf[7][1200];
    struct curl_slist *hl = NULL;
    struct buf b = {0};
    sigv4_header sh[6];
    size_t nh = 0;
    CURL *c;
    CURLcode cc;
    kms_err e = KMS_OK;

    *status = 0;
    snprintf(target, sizeof target, "TrentService.%s", operation);
    sigv4_format_date((int64_t)time(NULL), date);
    auth[0] = 0;
    sh[nh++] = (sigv4_header){"content-type", "application/x-amz-json-1.1"};
    sh[nh++] = (sigv4_header){"host", h->host};
    sh[nh++] = (sigv4_header){"x-amz-date", date};
    sh[nh++] = (sigv4_header){"x-amz-target", target};
    if (h->token)
        sh[nh++] = (sigv4_header){"x-amz-security-token", h->token};
    if (h->via)
        sh[nh++] = (sigv4_header){"x-envelopefs-via-service", h->via};
    if (h->access_key) { /* else unsigned: a Unix socket whose server knows us by our uid */
        sigv4_request r = {.method = "POST", .path = "/", .query = "", .headers = sh, .n_headers = nh,
                           .payload = (const uint8_t *)req, .payload_len = req_len};
        if (sigv4_sign(&r, h->access_key, h->secret, date, h->region, "kms", auth, sizeof auth)) {
            set_err(err, KMS_ERR_INTERNAL, NULL, "cannot sign the request");
            return KMS_ERR_INTERNAL;
        }
    }
    snprintf(hbuf[0], sizeof hbuf[0], "Content-Type: application/x-amz-json-1.1");
    snprintf(hbuf[1], sizeof hbuf[1], "Host: %s", h->host);
    snprintf(hbuf[2], sizeof hbuf[2], "X-Amz-Date: %s", date);
    snprintf(hbuf[3], sizeof hbuf[3], "X-Amz-Target: %s", target);
    snprintf(hbuf[4], sizeof hbuf[4], "Authorization: %s", auth);
    for (int i = 0; i < (auth[0] ? 5 : 4); i++)
        hl = curl_slist_append(hl, hbuf[i]);
    if (h->token) {
        snprintf(hbuf[5], sizeof hbuf[5], "X-Amz-Security-Token: %s", h->token);
        hl = curl_slist_append(hl, hbuf[5]);
    }
    if (h->via) {
        snprintf(hbuf[6], sizeof hbuf[6], "X-Envelopefs-Via-Service: %s", h->via);
        hl = curl_slist_append(hl, hbuf[6]);
    }
    hl = curl_slist_append(hl, "Expect:");
    c = take(h);
    if (!c || !hl) {
        curl_slist_free_all(hl);
        if (c)
            give(h, c);
        return KMS_ERR_NOMEM;
    }
    curl_easy_setopt(c, CURLOPT_URL, h->endpoint);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)req_len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, h->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, h->timeout_ms < 5000 ? h->timeout_ms : 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (h->unix_path)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, h->unix_path);
    if (h->insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (h->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_file);
    cc = curl_easy_perform(c);
    curl_slist_free_all(hl);
    sodium_memzero(auth, sizeof auth);
    if (cc != CURLE_OK) {
        set_err(err, KMS_ERR_TRANSPORT, NULL, curl_easy_strerror(cc));
        give(h, c);
        free(b.p);
        return KMS_ERR_TRANSPORT;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    give(h, c);
    if (*status == 200) {
        if (!b.p) {
            b.p = strdup("{}");
            b.n = 2;
        }
        *resp = b.p;
        *resp_len = b.n;
        return KMS_OK;
    }
    {
        json_t *o = b.p ? json_loadb(b.p, b.n, 0, NULL) : NULL;
        const char *type = json_string_value(json_object_get(o, "__type"));
        const char *msg = json_string_value(json_object_get(o, "message"));
        if (!msg)
            msg = json_string_value(json_object_get(o, "Message"));
        if (type) {
            const char *hash = strrchr(type, '#');
            e = kms_err_from_name(type);
            set_err(err, e, hash ? hash + 1 : type, msg);
        } else {
            e = *status >= 500 ? KMS_ERR_INTERNAL : KMS_ERR_REMOTE;
            char m[128];
            snprintf(m, sizeof m, "HTTP status %ld without an error body", *status);
            set_err(err, e, NULL, m);
        }
        json_decref(o);
    }
    free(b.p);
    return e;
}

static kms_err http_call(void *p, const char *operation, const char *req, size_t req_len, char **resp,
                         size_t *resp_len, kmsc_error *err)
{
    http_impl *h = p;
    kms_err e = KMS_OK;
    for (int i = 0; i <= h->max_retries; i++) {
        long status;
        e = attempt(h, operation, req, req_len, resp, resp_len, err, &status);
        if (!(e == KMS_ERR_THROTTLING || e == KMS_ERR_TRANSPORT || status >= 500))
            return e;
        if (i < h->max_retries) {
            /* full jitter: sleep uniformly in [0, min(cap, base·2^i)) */
            uint32_t cap_ms = 50u << (i < 6 ? i : 6);
            if (cap_ms > 2000)
                cap_ms = 2000;
            usleep(1000u * randombytes_uniform(cap_ms + 1));
        }
    }
    return e;
}

static void http_free(void *p)
{
    http_impl *h = p;
    if (!h)
        return;
    for (int i = 0; i < h->n_idle; i++)
        curl_easy_cleanup(h->idle[i]);
    free(h->endpoint);
    free(h->host);
    free(h->region);
    free(h->access_key);
    if (h->secret)
        sodium_free(h->secret);
    if (h->token) {
        sodium_memzero(h->token, strlen(h->token));
        free(h->token);
    }
    free(h->ca_file);
    free(h->unix_path);
    free(h->via);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

/* The caller's account, learned once per process and identity (endpoint, socket, access key): every client
 * a command opens (the verb's, its audit record's, a daemon's after its fork) asks the service once, not
 * each time. An identity's account cannot change. */
static pthread_mutex_t known_mu = PTHREAD_MUTEX_INITIALIZER;
static char known_who[1024], known_account[16];

static bool identity_of(const http_impl *h, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s\n%s\n%s", h->endpoint, h->unix_path ? h->unix_path : "",
                     h->access_key ? h->access_key : "");
    return n > 0 && (size_t)n < cap;
}

static const char *http_account(void *p)
{
    http_impl *h = p;
    char who[sizeof known_who];
    if (!h->account[0] && identity_of(h, who, sizeof who)) {
        pthread_mutex_lock(&known_mu);
        if (known_account[0] && !strcmp(who, known_who))
            memcpy(h->account, known_account, sizeof h->account);
        pthread_mutex_unlock(&known_mu);
    }
    return h->account[0] ? h->account : NULL;
}

static void http_remember_account(void *p, const char *account)
{
    http_impl *h = p;
    char who[sizeof known_who];
    if (!identity_of(h, who, sizeof who) || strlen(account) >= sizeof known_account)
        return;
    pthread_mutex_lock(&known_mu);
    memcpy(known_who, who, sizeof who);
    snprintf(known_account, sizeof known_account, "%s", account);
    pthread_mutex_unlock(&known_mu);
}

static const char *http_access_key(void *p) { return ((http_impl *)p)->access_key; }
static const char *http_region(void *p) { return ((http_impl *)p)->region; }

static const kmsc_backend_ops HTTP_OPS = {"http",          http_call,       http_free,  http_account,
                                          http_remember_account, http_access_key, http_region};

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

kms_err kmsc_backend_http_new(const kmsc_opts *opts, void **impl, const kmsc_backend_ops **ops, char **errmsg)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    http_impl *h;
    const char *url = opts->url, *rest;
    char *profile, *cred_file, *cfg_file, *ak = NULL, *sk = NULL, *tok = NULL;
    size_t hostlen;

    pthread_once(&once, global_init);
    h = calloc(1, sizeof *h);
    if (!h)
        return KMS_ERR_NOMEM;
    pthread_mutex_init(&h->lock, NULL);
    if (!strncmp(url, "unix:", 5)) {
        const char *path = !strncmp(url, "unix://", 7) ? url + 7 : url + 5;
        if (path[0] != '/') {
            if (errmsg)
                *errmsg = strdup("a unix: key-service URL names an absolute socket path: unix:/run/kms.sock");
            http_free(h);
            return KMS_ERR_VALIDATION;
        }
        h->unix_path = strdup(path);
        url = "http://localhost";
        if (!h->unix_path) {
            http_free(h);
            return KMS_ERR_NOMEM;
        }
    }
    rest = strstr(url, "://") + 3;
    hostlen = strcspn(rest, "/");
    h->host = strndup(rest, hostlen);
    if (asprintf(&h->endpoint, "%.*s/", (int)(rest - url + (ptrdiff_t)hostlen), url) < 0)
        h->endpoint = NULL;
    h->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 10000;
    h->max_retries = opts->max_retries >= 0 ? opts->max_retries : 4;
    h->insecure = opts->insecure_tls;
    h->ca_file = opts->ca_file ? strdup(opts->ca_file) : NULL;
    profile = opts->profile ? strdup(opts->profile) : env_dup("AWS_PROFILE");
    if (!profile)
        profile = strdup("default");
    cred_file = aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    cfg_file = aws_file("AWS_CONFIG_FILE", "config");
    if (opts->access_key_id && opts->secret_access_key) {
        ak = strdup(opts->access_key_id);
        sk = strdup(opts->secret_access_key);
        tok = opts->session_token ? strdup(opts->session_token) : NULL;
    } else if (getenv("AWS_ACCESS_KEY_ID") && getenv("AWS_SECRET_ACCESS_KEY")) {
        ak = env_dup("AWS_ACCESS_KEY_ID");
        sk = env_dup("AWS_SECRET_ACCESS_KEY");
        tok = env_dup("AWS_SESSION_TOKEN");
    } else if (cred_file && profile) {
        ak = ini_get(cred_file, profile, "aws_access_key_id");
        sk = ini_get(cred_file, profile, "aws_secret_access_key");
        tok = ini_get(cred_file, profile, "aws_session_token");
    }
    h->region = opts->region ? strdup(opts->region) : env_dup("AWS_REGION");
    if (!h->region)
        h->region = env_dup("AWS_DEFAULT_REGION");
    if (!h->region && cfg_file && profile) {
        char *sec = NULL;
        if (!strcmp(profile, "default") || asprintf(&sec, "profile %s", profile) < 0)
            sec = NULL;
        h->region = ini_get(cfg_file, sec ? sec : "default", "region");
        free(sec);
    }
    if (!h->region)
        h->region = strdup("us-east-1");
    free(profile);
    free(cred_file);
    free(cfg_file);
    if ((!ak || !sk || !*ak || !*sk) && h->unix_path) { /* unsigned over the socket */
        free(ak);
        if (sk) {
            sodium_memzero(sk, strlen(sk));
            free(sk);
        }
        free(tok);
        ak = sk = tok = NULL;
    } else if (!ak || !sk || !*ak || !*sk) {
        if (errmsg)
            *errmsg = strdup("no AWS credentials for the key service: set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials");
        free(ak);
        if (sk) {
            sodium_memzero(sk, strlen(sk));
            free(sk);
        }
        free(tok);
        http_free(h);
        return KMS_ERR_MISSING_AUTH;
    }
    h->access_key = ak;
    if (sk) {
        h->secret = sodium_malloc(strlen(sk) + 1);
        if (h->secret)
            memcpy(h->secret, sk, strlen(sk) + 1);
        sodium_memzero(sk, strlen(sk));
        free(sk);
    }
    h->token = tok;
    if (opts->via_service && *opts->via_service &&
        asprintf(&h->via, "%s.%s.amazonaws.com", opts->via_service, h->region) < 0) {
        http_free(h);
        return KMS_ERR_NOMEM;
    }
    if (!h->host || !h->endpoint || !h->region || (ak && !h->secret) || !*h->host) {
        http_free(h);
        if (errmsg)
            *errmsg = strdup("malformed key-service URL");
        return KMS_ERR_VALIDATION;
    }
    *impl = h;
    *ops = &HTTP_OPS;
    return KMS_OK;
}
