/*
 * log.c — implementation of log.h: leveled messages to stderr, syslog or a file, thread-safe (each message
 * is formatted into one buffer and written with one call).
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

void efs_log_init(const char *ident, bool use_syslog, enum efs_log_level level)
{
    const char *env = getenv("ENVELOPEFS_LOG");
    g_ident = ident ? ident : "envelopefs";
    g_syslog = use_syslog;
    g_level = level;
    if (env) {
        if (!strcasecmp(env, "error")) g_level = EFS_LOG_ERROR;
        else if (!strcasecmp(env, "warn")) g_level = EFS_LOG_WARN;
        else if (!strcasecmp(env, "info")) g_level = EFS_LOG_INFO;
        else if (!strcasecmp(env, "debug")) g_level = EFS_LOG_DEBUG;
    }
    if (g_syslog) {
        const char *path = getenv("ENVELOPEFS_LOG_FILE");
        if (path && *path && g_file < 0)
            g_file = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (g_file < 0)
            openlog(g_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
    }
}

void efs_log(enum efs_log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    char msg[1024];
    va_list ap;

    if (level > g_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_syslog && g_file >= 0) {
        char line[1300], when[32];
        time_t t = time(NULL);
        struct tm tm;
        int n;
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
        n = snprintf(line, sizeof line, "%s %s[%d]: %s: %s\n", when, g_ident, (int)getpid(), names[level], msg);
        if (n > 0)
            (void)!write(g_file, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    } else if (g_syslog) {
        syslog(prio[level], "%s", msg);
    } else {
        char line[1200];
        int n = snprintf(line, sizeof line, "%s: %s: %s\n", g_ident, names[level], msg);
        if (n > 0)
            (void)!write(STDERR_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    }
}
