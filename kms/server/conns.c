/*
 * conns.c — the connection table and its reaper (see conns.h): deadlines for whole requests and for
 * idle connections, and eviction of idle connections when the server nears its connection limit.
 */
#include "conns.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/monotime.h"

#define REAP_INTERVAL_MS 200

struct srv_conns {
    srv_conns_opts o;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    srv_conn **v;
    size_t n, cap;
    bool stop, wake;
    pthread_t thread;
    uint64_t expired, evicted;
};

int64_t srv_now_ms(void) { return efs_mono_ns() / 1000000; }

static void end_conn(srv_conn *c)
{
    /* Both directions: libmicrohttpd's read sees end of file (or its write EPIPE) and closes it. */
    if (!c->ended) {
        c->ended = true;
        shutdown(c->fd, SHUT_RDWR);
    }
}

static int by_age(const void *a, const void *b)
{
    const srv_conn *x = *(srv_conn *const *)a, *y = *(srv_conn *const *)b;
    int64_t tx = atomic_load_explicit(&x->since_ms, memory_order_relaxed);
    int64_t ty = atomic_load_explicit(&y->since_ms, memory_order_relaxed);
    return tx < ty ? -1 : tx > ty;
}

/* Evict down to low_water: idle keep-alive connections first, then connections that never sent a
 * request line; both oldest first. Connections in a request are left to their deadline. Lock held. */
static void evict(srv_conns *t)
{
    size_t open = 0, want, k = 0;
    srv_conn **cand;
    for (size_t i = 0; i < t->n; i++)
        open += !t->v[i]->ended;
    if (open <= t->o.high_water)
        return;
    want = open - t->o.low_water;
    cand = malloc(t->n * sizeof *cand);
    if (!cand)
        return;
    for (int pass = 0; pass < 2 && want; pass++) {
        size_t m = 0;
        for (size_t i = 0; i < t->n; i++) {
            srv_conn *c = t->v[i];
            uint32_t r = atomic_load_explicit(&c->requests, memory_order_relaxed);
            if (!c->ended && atomic_load_explicit(&c->phase, memory_order_relaxed) == SRV_WAITING &&
                (pass == 0 ? r > 0 : r == 0))
                cand[m++] = c;
        }
        qsort(cand, m, sizeof *cand, by_age);
        for (k = 0; k < m && want; k++, want--) {
            end_conn(cand[k]);
            t->evicted++;
        }
    }
    free(cand);
}

static void *reaper(void *arg)
{
    srv_conns *t = arg;
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        struct timespec ts;
        int64_t now;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += REAP_INTERVAL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!t->stop && !t->wake && pthread_cond_timedwait(&t->cond, &t->lock, &ts) != ETIMEDOUT)
            ;
        if (t->stop)
            break;
        t->wake = false;
        now = srv_now_ms();
        for (size_t i = 0; i < t->n; i++) {
            srv_conn *c = t->v[i];
            int phase = atomic_load_explicit(&c->phase, memory_order_relaxed);
            int64_t since = atomic_load_explicit(&c->since_ms, memory_order_relaxed);
            unsigned limit = phase == SRV_IN_REQUEST ? t->o.request_ms : t->o.idle_ms;
            if (!c->ended && now - since > (int64_t)limit) {
                end_conn(c);
                t->expired++;
            }
        }
        evict(t);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

srv_conns *srv_conns_new(const srv_conns_opts *o)
{
    srv_conns *t = calloc(1, sizeof *t);
    pthread_condattr_t ca;
    if (!t)
        return NULL;
    t->o = *o;
    if (t->o.low_water > t->o.high_water)
        t->o.low_water = t->o.high_water;
    pthread_mutex_init(&t->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&t->thread, NULL, reaper, t)) {
        pthread_cond_destroy(&t->cond);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
    }
    return t;
}

void srv_conns_free(srv_conns *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    for (size_t i = 0; i < t->n; i++)
        t->v[i]->idx = (size_t)-1; /* libmicrohttpd frees them at NOTIFY_CLOSED */
    free(t->v);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

srv_conn *srv_conn_add(srv_conns *t, int fd, bool tls, const char *source)
{
    srv_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = fd;
    c->tls = tls;
    strncpy(c->source, source, sizeof c->source - 1);
    atomic_store(&c->phase, SRV_WAITING);
    atomic_store(&c->since_ms, srv_now_ms());
    c->idx = (size_t)-1;
    if (!t)
        return c;
    pthread_mutex_lock(&t->lock);
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        srv_conn **v = realloc(t->v, cap * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&t->lock);
            return c; /* unguarded, but served */
        }
        t->v = v;
        t->cap = cap;
    }
    c->idx = t->n;
    t->v[t->n++] = c;
    if (t->n > t->o.high_water && !t->wake) { /* near the limit: evict now, not at the next round */
        t->wake = true;
        pthread_cond_signal(&t->cond);
    }
    pthread_mutex_unlock(&t->lock);
    return c;
}

void srv_conn_remove(srv_conns *t, srv_conn *c)
{
    if (!c)
        return;
    if (t) {
        pthread_mutex_lock(&t->lock);
        if (c->idx < t->n && t->v[c->idx] == c) {
            t->v[c->idx] = t->v[--t->n];
            t->v[c->idx]->idx = c->idx;
        }
        pthread_mutex_unlock(&t->lock);
    }
    free(c);
}

void srv_conn_request_started(srv_conn *c)
{
    if (!c)
        return;
    c->headers_done = false;
    atomic_store_explicit(&c->since_ms, srv_now_ms(), memory_order_relaxed);
    atomic_store_explicit(&c->phase, SRV_IN_REQUEST, memory_order_relaxed);
}

void srv_conn_request_done(srv_conn *c)
{
    if (!c)
        return;
    atomic_store_explicit(&c->since_ms, srv_now_ms(), memory_order_relaxed);
    atomic_store_explicit(&c->phase, SRV_WAITING, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->requests, 1, memory_order_relaxed);
}

void srv_conns_stats(srv_conns *t, uint64_t *expired, uint64_t *evicted, size_t *open)
{
    pthread_mutex_lock(&t->lock);
    *expired = t->expired;
    *evicted = t->evicted;
    *open = t->n;
    pthread_mutex_unlock(&t->lock);
}
