/*
 * log.h — one logging facility for every layer: stderr (foreground, CLI) or syslog (daemons).
 * Never pass key material to it; log key ids, file ids or fingerprints instead.
 */
#ifndef ENVELOPEFS_LOG_H
#define ENVELOPEFS_LOG_H

#include <stdbool.h>

enum efs_log_level { EFS_LOG_ERROR = 0, EFS_LOG_WARN = 1, EFS_LOG_INFO = 2, EFS_LOG_DEBUG = 3 };

/* ident: program tag; use_syslog: send to syslog instead of stderr (daemons) — or, if the environment
 * names a file in ENVELOPEFS_LOG_FILE, append timestamped lines to that file instead (machines without
 * a syslog daemon); level: most verbose shown. The level can also come from
 * ENVELOPEFS_LOG=error|warn|info|debug. Safe to call again. */
void efs_log_init(const char *ident, bool use_syslog, enum efs_log_level level);
void efs_log(enum efs_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define EFS_ERROR(...) efs_log(EFS_LOG_ERROR, __VA_ARGS__)
#define EFS_WARN(...)  efs_log(EFS_LOG_WARN, __VA_ARGS__)
#define EFS_INFO(...)  efs_log(EFS_LOG_INFO, __VA_ARGS__)
#define EFS_DEBUG(...) efs_log(EFS_LOG_DEBUG, __VA_ARGS__)

#endif
