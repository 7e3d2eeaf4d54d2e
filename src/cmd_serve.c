/*
 * cmd_serve.c — `envelopefs kms serve`: run the key service as a daemon speaking the AWS KMS JSON
 * protocol (kms/server/). The store options (--store, --root-key-file, --passphrase-file) come parsed
 * by cmd_kms (cli_take_kms_options), before or after `serve`. Daemonises unless --foreground; writes a
 * pid file; SIGTERM/SIGINT stop it cleanly after in-flight requests; no core dumps; one log line at
 * start and stop. --unix-principal USER=ARN (repeatable) maps a Unix-socket peer's uid to a principal
 * for unsigned requests; --unix-mode sets who may connect at all.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_common.h"
#include "commands.h"
#include "common/daemon.h"
#include "common/log.h"
#include "server.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: envelopefs kms serve [--listen ADDR:PORT | --unix PATH] [--tls-cert F --tls-key F]\n"
               "                            [--unix-mode MODE] [--unix-principal UID=ARN ...]\n"
               "                            [--foreground] [--pid-file F] [--rate-limit N] [--threads N]\n"
               "                            [--max-connections N] [--per-ip-limit N] [--idle-timeout S]\n"
               "                            [--request-timeout S] [--trust-via-service AKID[,AKID...]]\n"
               "                            [--replication-keys AKID[,AKID...]]\n"
               "                            [--store DIR] [--root-key-file F] [--passphrase-file F]\n"
               "Serves the key store over HTTP(S) with the AWS KMS JSON protocol; every request must be\n"
               "SigV4-signed with an access key from `envelopefs kms create-access-key`, except on a Unix\n"
               "socket from a uid --unix-principal maps.\n"
               "  --listen ADDR:PORT   default 127.0.0.1:4599\n"
               "  --unix PATH          listen on a Unix socket instead (HTTP over it; `--kms unix:PATH`)\n"
               "  --unix-mode MODE     the socket's file mode, octal (default 0600: its owner only)\n"
               "  --unix-principal UID=ARN  an unsigned request on the socket from UID (a number or a user\n"
               "                       name) acts as ARN: arn:aws:iam::ACCOUNT:root or ...:user/NAME\n"
               "                       (repeatable; signed requests are judged by their signature)\n"
               "  --rate-limit N       requests per second per account (default 10000, AWS's default quota)\n"
               "  --max-connections N  open connections at most (default: what RLIMIT_NOFILE allows, <= 60000;\n"
               "                       the soft limit is raised to the hard one, and as root the hard one too)\n"
               "  --per-ip-limit N     connections per source address (default 256)\n"
               "  --idle-timeout S     a connection's wait for its next request line (default 30)\n"
               "  --request-timeout S  a whole request from its request line to its reply (default 20)\n"
               "  --trust-via-service AKID,...  these access keys may sign X-Envelopefs-Via-Service (the EC2 side of\n"
               "                       `envelopefs volume --kms URL`): kms:ViaService, kms:GrantIsForAWSResource\n"
               "  --replication-keys AKID,...  only these access keys may replicate multi-Region keys into this\n"
               "                       server (other regions' servers; default: any access key of the key's account)\n");
}

/* A flag's positive number (at most 1,000,000), or UINT_MAX for a usage error. */
static unsigned positive(const char *v)
{
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    return *v && !*end && n >= 1 && n <= 1000000 ? (unsigned)n : UINT_MAX;
}

/* "UID=ARN" or "USER=ARN" into m (arn borrowed from spec). -1 with a message on stderr. */
static int parse_unix_principal(char *spec, kms_unix_principal *m)
{
    char *eq = strchr(spec, '='), *end;
    unsigned long uid;
    if (!eq || eq == spec || !eq[1]) {
        fprintf(stderr, "envelopefs kms serve: --unix-principal takes UID=ARN or USER=ARN, not '%s'\n", spec);
        return -1;
    }
    *eq = 0;
    m->arn = eq + 1;
    errno = 0;
    uid = strtoul(spec, &end, 10);
    if (!*end && spec[0] != '-' && !errno && uid <= UINT32_MAX - 1) {
        m->uid = (uint32_t)uid;
        return 0;
    }
    {
        struct passwd *pw = getpwnam(spec);
        if (!pw) {
            fprintf(stderr, "envelopefs kms serve: --unix-principal: no user '%s'\n", spec);
            return -1;
        }
        m->uid = (uint32_t)pw->pw_uid;
    }
    return 0;
}

/* Room for `connections` descriptors and 256 more: the soft limit up to the hard one, and as root
 * the hard one up to fs.nr_open. Best effort: the server sizes its connection limit to what it got. */
static void raise_nofile(unsigned connections)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)connections + 256;
    if (getrlimit(RLIMIT_NOFILE, &rl) || (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= want))
        return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
        struct rlimit up = {want, want};
        if (!setrlimit(RLIMIT_NOFILE, &up))
            return;
    }
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
    if (setrlimit(RLIMIT_NOFILE, &rl))
        EFS_WARN("cannot raise RLIMIT_NOFILE to %llu: %s", (unsigned long long)rl.rlim_cur, strerror(errno));
}

/* Block the stop signals (so sigwait sees them), start the server, write the pid file. */
static int start_server(kmsc *client, const kms_server_opts *so, const char *pid_file, sigset_t *set,
                        kms_server **srv)
{
    char *msg = NULL;
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    if (kms_server_start(kmsc_embedded_core(client), so, srv, &msg)) {
        EFS_ERROR("cannot start: %s", msg ? msg : "unknown error");
        free(msg);
        return -1;
    }
    if (pid_file) {
        FILE *f = fopen(pid_file, "we");
        if (f) {
            fprintf(f, "%d\n", (int)getpid());
            fclose(f);
        }
    }
    return 0;
}

int cmd_kms_serve(int argc, char **argv, const cli_kms_opts *g)
{
    enum { O_LISTEN = 1000, O_UNIX, O_CERT, O_KEY, O_FG, O_PID, O_RATE, O_THREADS, O_MAXC, O_PERIP, O_IDLE, O_REQT,
           O_UMODE, O_UPRIN, O_VIA, O_REPL };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, O_LISTEN}, {"unix", required_argument, NULL, O_UNIX},
        {"tls-cert", required_argument, NULL, O_CERT}, {"tls-key", required_argument, NULL, O_KEY},
        {"foreground", no_argument, NULL, O_FG}, {"pid-file", required_argument, NULL, O_PID},
        {"rate-limit", required_argument, NULL, O_RATE}, {"threads", required_argument, NULL, O_THREADS},
        {"max-connections", required_argument, NULL, O_MAXC}, {"per-ip-limit", required_argument, NULL, O_PERIP},
        {"idle-timeout", required_argument, NULL, O_IDLE}, {"request-timeout", required_argument, NULL, O_REQT},
        {"unix-mode", required_argument, NULL, O_UMODE}, {"unix-principal", required_argument, NULL, O_UPRIN},
        {"trust-via-service", required_argument, NULL, O_VIA},
        {"replication-keys", required_argument, NULL, O_REPL},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    kms_unix_principal *maps = NULL;
    kms_server_opts so;
    const char *pid_file = NULL;
    bool fg = false;
    int c, sig, rc = 0;
    sigset_t set;
    kmsc *client;
    kms_server *srv;
    struct rlimit rl = {0, 0};

    memset(&so, 0, sizeof so);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_LISTEN: so.listen = optarg; break;
        case O_UNIX: so.unix_path = optarg; break;
        case O_CERT: so.tls_cert = optarg; break;
        case O_KEY: so.tls_key = optarg; break;
        case O_FG: fg = true; break;
        case O_PID: pid_file = optarg; break;
        case O_RATE: so.rate_limit = strtod(optarg, NULL); break;
        case O_THREADS: so.threads = (unsigned)strtoul(optarg, NULL, 10); break;
        case O_MAXC: so.max_connections = positive(optarg); break;
        case O_PERIP: so.per_ip_limit = positive(optarg); break;
        case O_IDLE: so.timeout_s = positive(optarg); break;
        case O_REQT: so.request_timeout_s = positive(optarg); break;
        case O_VIA: so.trust_via_service = optarg; break;
        case O_REPL: so.replication_keys = optarg; break;
        case O_UMODE: {
            char *end;
            unsigned long m = strtoul(optarg, &end, 8);
            if (!*optarg || *end || m == 0 || m > 0777) {
                fprintf(stderr, "envelopefs kms serve: --unix-mode takes an octal mode such as 0660, not '%s'\n",
                        optarg);
                free(maps);
                return 2;
            }
            so.unix_mode = (unsigned)m;
            break;
        }
        case O_UPRIN: {
            kms_unix_principal *nm = realloc(maps, (so.n_unix_principals + 1) * sizeof *nm);
            if (!nm || parse_unix_principal(optarg, &nm[so.n_unix_principals])) {
                free(nm ? nm : maps);
                return 2;
            }
            maps = nm;
            so.unix_principals = maps;
            so.n_unix_principals++;
            break;
        }
        case 'h': free(maps); usage(stdout); return 0;
        default: free(maps); usage(stderr); return 2;
        }
    }
    if (optind != argc || so.max_connections == UINT_MAX || so.per_ip_limit == UINT_MAX || so.timeout_s == UINT_MAX ||
        so.request_timeout_s == UINT_MAX) {
        usage(stderr);
        rc = 2;
        goto out;
    }
    if (g->url) {
        fprintf(stderr, "envelopefs kms serve: serves a local store; it takes --store, not --endpoint-url\n");
        rc = 2;
        goto out;
    }
    setrlimit(RLIMIT_CORE, &rl);
    raise_nofile(so.max_connections ? so.max_connections : KMS_SERVER_MAX_CONNECTIONS);
    efs_log_init("envelopefs-kms", false, EFS_LOG_INFO); /* syslog once in the background */
    /* Unlock the store in the foreground so errors are seen, then again in the daemon. */
    client = cli_open_kms(g, NULL);
    if (!client) {
        rc = 1;
        goto out;
    }
    if (!fg) {
        int ready;
        kmsc_free(client);
        ready = efs_daemon_start();
        if (ready < 0) {
            fprintf(stderr, "envelopefs kms serve: cannot go to the background: %s\n", strerror(-ready));
            rc = 1;
            goto out;
        }
        /* the daemon: open, start, then let `kms serve` return */
        client = cli_open_kms(g, NULL);
        if (!client || start_server(client, &so, pid_file, &set, &srv))
            _exit(1);
        efs_log_init("envelopefs-kms", true, EFS_LOG_INFO);
        efs_daemon_ready(ready);
    } else if (start_server(client, &so, pid_file, &set, &srv)) {
        kmsc_free(client);
        rc = 1;
        goto out;
    }
    EFS_INFO("key service listening on %s (pid %d)",
             so.unix_path ? so.unix_path : (so.listen ? so.listen : "127.0.0.1:4599"), (int)getpid());
    if (fg) {
        printf("listening on %s\n", so.unix_path ? so.unix_path : (so.listen ? so.listen : "127.0.0.1:4599"));
        fflush(stdout);
    }
    do {
        if (sigwait(&set, &sig))
            break;
    } while (sig == SIGHUP);
    EFS_INFO("stopping on signal %d: finishing in-flight requests", sig);
    kms_server_stop(srv);
    kmsc_free(client);
    if (pid_file)
        unlink(pid_file);
    EFS_INFO("key service stopped");
out:
    free(maps);
    return rc;
}
