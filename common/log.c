/*
 * log.c — implementation of log.h: leveled messages to stderr, syslog or a file, thread-safe (each message
 * is formatted into one buffer and written with one call). The settings may change while other threads
 * log (a daemon switches from stderr to syslog once it has detached, after its worker threads started),
 * so they are read and written atomically.
 */
#include "common/log.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static const char *g_ident = "envelopefs";
static bool g_syslog;
static int g_file = -1; /* ENVELOPEFS_LOG_FILE, used instead of syslog */
static enum efs_log_level g_level = EFS_LOG_WARN;

#define LOAD(v) __atomic_load_n(&(v), __ATOMIC_ACQUIRE)
#define STORE(v, x) __atomic_store_n(&(v), (x), __ATOMIC_RELEASE)

void efs_log_init(const char *ident, bool use_syslog, enum efs_log_level level)
{
    const char *env = getenv("ENVELOPEFS_LOG");
    if (env) {
        if (!strcasecmp(env, "error")) level = EFS_LOG_ERROR;
        else if (!strcasecmp(env, "warn")) level = EFS_LOG_WARN;
        else if (!strcasecmp(env, "info")) level = EFS_LOG_INFO;
        else if (!strcasecmp(env, "debug")) level = EFS_LOG_DEBUG;
    }
    STORE(g_ident, ident ? ident : "envelopefs");
    if (use_syslog) {
        const char *path = getenv("ENVELOPEFS_LOG_FILE");
        if (path && *path && LOAD(g_file) < 0)
            STORE(g_file, open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
        if (LOAD(g_file) < 0)
            openlog(LOAD(g_ident), LOG_PID | LOG_NDELAY, LOG_DAEMON);
    }
    STORE(g_level, level);
    STORE(g_syslog, use_syslog); /* last: a thread that sees syslog on sees the file set up */
}

void efs_log(enum efs_log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    char msg[1024];
    va_list ap;

    const char *ident = LOAD(g_ident);
    bool use_syslog = LOAD(g_syslog);
    int file = LOAD(g_file);

    if (level > LOAD(g_level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (use_syslog && file >= 0) {
        char line[1300], when[32];
        time_t t = time(NULL);
        struct tm tm;
        int n;
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
        n = snprintf(line, sizeof line, "%s %s[%d]: %s: %s\n", when, ident, (int)getpid(), names[level], msg);
        if (n > 0)
            (void)!write(file, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    } else if (use_syslog) {
        syslog(prio[level], "%s", msg);
    } else {
        char line[1200];
        int n = snprintf(line, sizeof line, "%s: %s: %s\n", ident, names[level], msg);
        if (n > 0)
            (void)!write(STDERR_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    }
}
