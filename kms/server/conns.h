/*
 * conns.h — the server's guard against clients that hold connections without finishing requests.
 *
 * libmicrohttpd's own timeout counts only inactivity: a client sending one byte every few seconds, or
 * many idle sockets, would hold connections for ever and lock every signed client out. This table
 * tracks every connection (added at libmicrohttpd's NOTIFY_STARTED, removed at NOTIFY_CLOSED, which
 * libmicrohttpd calls before it closes the socket) with its phase and when the phase began:
 *
 *   WAITING     accepted, or the previous response sent: the request line must arrive within idle_ms
 *   IN_REQUEST  request line received: headers, body and reply must be done within request_ms
 *
 * A reaper thread ends every connection past its deadline, whatever its byte rate, and when the
 * table holds more than high_water connections it ends idle keep-alive connections first (oldest
 * first), then connections still waiting for their first request line, down to low_water. A
 * connection is ended with shutdown(2) on its socket (under the table's lock, so the descriptor is
 * still libmicrohttpd's): its event loop then sees the socket close and cleans up as usual.
 */
#ifndef ENVELOPEFS_KMS_SERVER_CONNS_H
#define ENVELOPEFS_KMS_SERVER_CONNS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum srv_phase { SRV_WAITING, SRV_IN_REQUEST };

typedef struct srv_conn {
    int fd;
    bool tls;
    char source[64];          /* "http:ADDRESS" as the audit trail names the caller */
    bool peer;                /* a Unix-socket connection whose peer SO_PEERCRED named (below) */
    uint32_t peer_uid, peer_gid;
    int32_t peer_pid;         /* the peer's credentials when it connected */
    _Atomic int phase;        /* enum srv_phase */
    _Atomic int64_t since_ms; /* CLOCK_MONOTONIC ms when the phase began */
    _Atomic uint32_t requests;/* requests completed on this connection */
    bool headers_done;        /* the current request's headers reached the handler (its own thread only) */
    size_t idx;               /* position in the table (table lock) */
    bool ended;               /* shutdown issued (table lock) */
} srv_conn;

typedef struct srv_conns_opts {
    unsigned idle_ms;         /* WAITING deadline */
    unsigned request_ms;      /* IN_REQUEST deadline */
    unsigned high_water;      /* evict idle connections above this many */
    unsigned low_water;       /* ... down to this many */
} srv_conns_opts;

typedef struct srv_conns srv_conns;

/* Start the table and its reaper thread. NULL on failure. */
srv_conns *srv_conns_new(const srv_conns_opts *o) __attribute__((warn_unused_result));
/* Stop the reaper and free the table (connections still in it are libmicrohttpd's). NULL: no-op. */
void srv_conns_free(srv_conns *t);

/* A new connection on fd; NULL on OOM (the connection then simply is not guarded). */
srv_conn *srv_conn_add(srv_conns *t, int fd, bool tls, const char *source);
/* The connection is closing: forget it (after this, its descriptor is never touched). NULL: no-op. */
void srv_conn_remove(srv_conns *t, srv_conn *c);
/* Phase changes, from the connection's own event-loop thread (two atomic stores each). */
void srv_conn_request_started(srv_conn *c);
void srv_conn_request_done(srv_conn *c);

/* Counters for the log: connections ended for their deadline, and by eviction; open now. */
void srv_conns_stats(srv_conns *t, uint64_t *expired, uint64_t *evicted, size_t *open);

int64_t srv_now_ms(void);

#endif
