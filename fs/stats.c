/*
 * stats.c — the directory mount's statistics, read as the root's user.envelopefs.stats xattr (tests and
 * operators): key-service calls and cache hits, the inode table and its descriptors, spares, the write
 * path's gap counters, io_uring requests. One JSON object; the names are stable.
 */
#define FUSE_USE_VERSION 312

#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "mountfs.h"

int efs_stats_json(struct efs *fs, char *buf, size_t cap)
{
    long nfds, budget, pinned = 0, evictable = 0, inodes = 0;
    efs_closer_counts cl;
    int len;
    efs_closer_counts_get(fs->closer, &cl);
    pthread_mutex_lock(&fs->table_lock);
    nfds = fs->nfds;
    budget = fs->fd_budget;
    for (size_t b = 0; b < HASH_BUCKETS; b++)
        for (struct inode *i = fs->table[b]; i; i = i->next) {
            inodes++;
            pinned += i->pins > 0 || i->nopen > 0;
            evictable += !i->no_handle && !i->gone;
        }
    pthread_mutex_unlock(&fs->table_lock);
    len = snprintf(buf, cap,
                   "{\"kms_calls\":%" PRIu64 ",\"dek_cache_hits\":%" PRIu64 ",\"inodes\":%ld,"
                   "\"inode_fds\":%ld,\"fd_budget\":%ld,\"busy_inodes\":%ld,\"evictable_inodes\":%ld,"
                   "\"getxattr_requests\":%" PRIu64 ",\"spare_creates\":%" PRIu64 ",\"spare_mkdirs\":%" PRIu64 ",\"header_probes\":%" PRIu64 ","
                   "\"gap_bytes\":%" PRIu64 ",\"gap_waits\":%" PRIu64 ",\"negative_lookups\":%" PRIu64 ",\"unlink_closes\":%" PRIu64
                   ",\"unlink_requests\":%" PRIu64 ",\"unlink_wall_ns\":%" PRIu64 ",\"unlink_cpu_ns\":%" PRIu64
                   ",\"unlink_close_wall_ns\":%" PRIu64 ",\"unlink_close_cpu_ns\":%" PRIu64
                   ",\"rmdir_requests\":%" PRIu64 ",\"rmdir_wall_ns\":%" PRIu64 ",\"rmdir_cpu_ns\":%" PRIu64
                   ",\"closer_queued\":%" PRIu64 ",\"closer_inline\":%" PRIu64 ",\"closer_errors\":%" PRIu64
                   ",\"closer_thread_wall_ns\":%" PRIu64 ",\"closer_thread_cpu_ns\":%" PRIu64
                   ",\"closer_thread_vcsw\":%" PRIu64 ",\"closer_thread_ivcsw\":%" PRIu64
                   ",\"closer_inline_wall_ns\":%" PRIu64 ",\"closer_inline_cpu_ns\":%" PRIu64
                   ",\"closer_inline_vcsw\":%" PRIu64 ",\"closer_inline_ivcsw\":%" PRIu64
                   ",\"closer_drains\":%" PRIu64 ",\"closer_drain_wall_ns\":%" PRIu64
                   ",\"uring_requests\":%" PRIu64 ",\"loop_requests\":%" PRIu64 ",\"loop_spin_hits\":%" PRIu64
                   ",\"loop_spin_misses\":%" PRIu64 ",\"loop_unspun\":%" PRIu64 ",\"loop_probe_hits\":%" PRIu64 ",\"loop_passed\":%" PRIu64
                   ",\"loop_released\":%" PRIu64 ",\"loop_threads\":%" PRIu64 ",\"loop_nowait_reads\":%" PRIu64
                   ",\"loop_nowait_blocked\":%" PRIu64 ",\"pid\":%ld}",
                   efs_keys_kms_calls(fs->keys), efs_keys_cache_hits(fs->keys), inodes, nfds, budget,
                   pinned, evictable, (uint64_t)fs->getxattr_requests, efs_spares_taken(fs->spares),
                   efs_spares_taken_dirs(fs->spares), (uint64_t)fs->header_probes,
                   efs_content_group_gap_bytes(fs->writes), efs_content_group_gap_waits(fs->writes), (uint64_t)fs->negative_lookups, (uint64_t)fs->unlink_closes,
                   (uint64_t)fs->unlink_req.n, (uint64_t)fs->unlink_req.wall_ns, (uint64_t)fs->unlink_req.cpu_ns,
                   (uint64_t)fs->unlink_close.wall_ns, (uint64_t)fs->unlink_close.cpu_ns,
                   (uint64_t)fs->rmdir_req.n, (uint64_t)fs->rmdir_req.wall_ns, (uint64_t)fs->rmdir_req.cpu_ns,
                   cl.queued, cl.inline_closes, cl.errors, cl.thread.wall_ns, cl.thread.cpu_ns, cl.thread.vcsw,
                   cl.thread.ivcsw, cl.inl.wall_ns, cl.inl.cpu_ns, cl.inl.vcsw, cl.inl.ivcsw, cl.drains, cl.drain_wall_ns,
                   efs_uring_requests(fs->uring), (uint64_t)fs->loop.requests, (uint64_t)fs->loop.spin_hits,
                   (uint64_t)fs->loop.spin_misses, (uint64_t)fs->loop.unspun, (uint64_t)fs->loop.probe_hits, (uint64_t)fs->loop.passed,
                   (uint64_t)fs->loop.released, (uint64_t)fs->loop.threads, (uint64_t)fs->loop.nowait_reads,
                   (uint64_t)fs->loop.nowait_blocked, (long)getpid());
    return len < 0 ? 0 : len >= (int)cap ? (int)cap - 1 : len;
}
