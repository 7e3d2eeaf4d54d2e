/*
 * attach.c — the attach daemon (attach.h): a FUSE low-level filesystem with one regular file, the
 * volume's image, served by fs/loop.c's request loop over vol_dev (dev.h), and the control socket
 * (ctl.h). Every open is direct I/O (no page cache between the loop device and the volume), fsync
 * flushes the device (chunk files, then the catalog), FALLOCATE_PUNCH_HOLE discards. The data key is
 * decrypted under a grant made for the attachment and retired when it ends (grant.h), as EBS does.
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "attach.h"
#include "ctl.h"
#include "dev.h"
#include "grant.h"
#include "common/daemon.h"
#include "common/log.h"
#include "loop.h"
#include "rekey.h"
#include "store.h"

#define IMAGE_INO 2
#define MAX_IO (1u << 20)
/* Threads serving requests (fs/loop.c starts them as requests queue up). The data path runs requests on
 * different blocks in parallel (dev.c), and a read that misses the page cache waits for the disk, so more
 * threads than CPUs keep the disk busy; each costs a request buffer (up to MAX_IO, touched only as far as
 * requests fill it) and a work area of the device (about 260 KiB). */
#define LOOP_THREADS 8

struct att {
    vol_dev *dev;
    char name[32];
    uint64_t size;
    time_t attached;
    int ctl_fd, stop_pipe[2];
    struct fuse_session *se;
};

static void fill_attr(struct att *a, fuse_ino_t ino, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_uid = getuid();
    st->st_gid = getgid();
    st->st_atime = st->st_mtime = st->st_ctime = a->attached;
    if (ino == FUSE_ROOT_ID) {
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
    } else {
        st->st_mode = S_IFREG | 0600;
        st->st_nlink = 1;
        st->st_size = (off_t)a->size;
        st->st_blksize = VOL_SECTOR_SIZE;
        st->st_blocks = (blkcnt_t)(a->size / 512);
    }
}

static void op_init(void *ud, struct fuse_conn_info *conn)
{
    conn->max_write = MAX_IO;
    /* The loop device's direct I/O reaches us as asynchronous direct I/O: background requests, of which
     * the kernel keeps only max_background (12 by default) in flight. Room for a queue depth of 32 (fio's
     * 16 and the filesystem's own), so every request waits here, where LOOP_THREADS serve them. */
    conn->max_background = 48;
    conn->congestion_threshold = 36;
    conn->want &= ~(unsigned)FUSE_CAP_SPLICE_READ;
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct att *a = fuse_req_userdata(req);
    struct fuse_entry_param e;
    if (parent != FUSE_ROOT_ID || strcmp(name, a->name)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    memset(&e, 0, sizeof e);
    e.ino = IMAGE_INO;
    e.attr_timeout = e.entry_timeout = 3600;
    fill_attr(a, IMAGE_INO, &e.attr);
    fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat st;
    fill_attr(fuse_req_userdata(req), ino, &st);
    fuse_reply_attr(req, &st, 3600);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
    struct att *a = fuse_req_userdata(req);
    struct stat st;
    if ((to_set & FUSE_SET_ATTR_SIZE) && (uint64_t)attr->st_size != a->size) {
        fuse_reply_err(req, EPERM); /* a volume's size changes only through the control plane */
        return;
    }
    fill_attr(a, ino, &st);
    fuse_reply_attr(req, &st, 3600);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if (ino != IMAGE_INO) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    fi->direct_io = 1;
    fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    struct att *a = fuse_req_userdata(req);
    char *buf;
    int rc;
    if ((uint64_t)off >= a->size) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    if (size > a->size - (uint64_t)off)
        size = (size_t)(a->size - (uint64_t)off);
    if (!(buf = malloc(size ? size : 1))) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    rc = vol_dev_read(a->dev, buf, size, (uint64_t)off);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_buf(req, buf, size);
    sodium_memzero(buf, size);
    free(buf);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    struct att *a = fuse_req_userdata(req);
    int rc;
    if ((uint64_t)off >= a->size || size > a->size - (uint64_t)off) {
        fuse_reply_err(req, ENOSPC);
        return;
    }
    rc = vol_dev_write(a->dev, buf, size, (uint64_t)off);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_write(req, size);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    struct att *a = fuse_req_userdata(req);
    fuse_reply_err(req, -vol_dev_flush(a->dev));
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { fuse_reply_err(req, 0); }

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct att *a = fuse_req_userdata(req);
    if (vol_dev_flush(a->dev)) /* the last close of the image makes everything durable */
        EFS_ERROR("volume %s: flush at close failed", a->name);
    fuse_reply_err(req, 0);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
    struct att *a = fuse_req_userdata(req);
    int rc = 0;
    if (off < 0 || len <= 0 || (uint64_t)off > a->size) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if ((uint64_t)len > a->size - (uint64_t)off)
        len = (off_t)(a->size - (uint64_t)off);
    if (mode & FALLOC_FL_PUNCH_HOLE)
        rc = vol_dev_discard(a->dev, (uint64_t)off, (uint64_t)len);
    else if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_ZERO_RANGE))
        rc = -EOPNOTSUPP;
    else if (mode & FALLOC_FL_ZERO_RANGE)
        rc = vol_dev_discard(a->dev, (uint64_t)off, (uint64_t)len);
    fuse_reply_err(req, -rc); /* mode 0: every block of a volume already exists */
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    struct att *a = fuse_req_userdata(req);
    char buf[512];
    size_t n = 0;
    struct stat st;
    const char *names[] = {".", "..", a->name};
    for (int i = (int)off; i < 3; i++) {
        size_t m;
        memset(&st, 0, sizeof st);
        st.st_ino = i == 2 ? IMAGE_INO : FUSE_ROOT_ID;
        st.st_mode = i == 2 ? S_IFREG : S_IFDIR;
        m = fuse_add_direntry(req, buf + n, sizeof buf - n, names[i], &st, i + 1);
        if (n + m > size || n + m > sizeof buf)
            break;
        n += m;
    }
    fuse_reply_buf(req, buf, n);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct att *a = fuse_req_userdata(req);
    struct statvfs sv;
    memset(&sv, 0, sizeof sv);
    sv.f_bsize = sv.f_frsize = VOL_SECTOR_SIZE;
    sv.f_blocks = a->size / VOL_SECTOR_SIZE;
    sv.f_files = 1;
    sv.f_namemax = 255;
    fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops OPS = {
    .init = op_init,
    .lookup = op_lookup,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .fallocate = op_fallocate,
    .readdir = op_readdir,
    .statfs = op_statfs,
};

/* ---- control socket ---- */

static json_t *snapshot_json(const vol_snapshot *s)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:s?, s:I, s:I}", "SnapshotId", s->id, "VolumeId", s->volume_id, "State",
                     s->state, "VolumeSize", (json_int_t)s->volume_size, "Description", s->description, "StartTime",
                     (json_int_t)s->started, "CompletionTime", (json_int_t)s->completed);
}

static void serve_ctl(struct att *a, int fd)
{
    char buf[65536];
    size_t n = 0;
    json_t *req, *resp = NULL;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (memchr(buf, '\n', n) || n == sizeof buf - 1)
            break;
    }
    buf[n] = 0;
    req = json_loads(buf, 0, NULL);
    if (req && !strcmp(json_string_value(json_object_get(req, "op")) ?: "", "snapshot")) {
        vol_snapshot s;
        vol_err e = {"", ""};
        int rc = vol_dev_snapshot(a->dev, json_string_value(json_object_get(req, "description")),
                                  json_string_value(json_object_get(req, "tags")), &s, &e);
        if (rc) {
            resp = json_pack("{s:s, s:s}", "code", e.code[0] ? e.code : "InternalError", "message", e.message);
        } else {
            resp = snapshot_json(&s);
            EFS_INFO("volume %s: snapshot %s taken while attached", a->name, s.id);
            vol_snapshot_clear(&s);
        }
    } else {
        resp = json_pack("{s:s, s:s}", "code", "InvalidParameterValue", "message", "unknown control request");
    }
    if (resp) {
        char *t = json_dumps(resp, JSON_COMPACT);
        if (t) {
            size_t len = strlen(t), put = 0;
            while (put < len) {
                ssize_t w = write(fd, t + put, len - put);
                if (w <= 0)
                    break;
                put += (size_t)w;
            }
            free(t);
        }
        json_decref(resp);
    }
    json_decref(req);
}

static void *ctl_thread(void *arg)
{
    struct att *a = arg;
    for (;;) {
        struct pollfd p[2] = {{a->ctl_fd, POLLIN, 0}, {a->stop_pipe[0], POLLIN, 0}};
        int fd;
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            break;
        fd = accept4(a->ctl_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        serve_ctl(a, fd);
        close(fd);
    }
    return NULL;
}

static int ctl_listen(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;
    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    unlink(path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    {
        mode_t old = umask(077);
        int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
        umask(old);
        if (rc || listen(fd, 8)) {
            rc = -errno;
            close(fd);
            return rc;
        }
    }
    return fd;
}

int vol_ctl_snapshot(const char *sock_path, const char *description, const char *tags, vol_snapshot *out, vol_err *e)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    json_t *req = json_pack("{s:s, s:s?, s:s?}", "op", "snapshot", "description", description, "tags", tags), *r;
    char *t = req ? json_dumps(req, JSON_COMPACT) : NULL, buf[65536];
    size_t n = 0;
    int fd = -1, rc = 0;
    json_decref(req);
    memset(out, 0, sizeof *out);
    if (!t)
        return vol_fail(e, -ENOMEM, "InternalError", "out of memory");
    if (strlen(sock_path) >= sizeof sa.sun_path) {
        free(t);
        return vol_fail(e, -ENAMETOOLONG, "InternalError", "socket path too long: %s", sock_path);
    }
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) ||
        write(fd, t, strlen(t)) != (ssize_t)strlen(t) || write(fd, "\n", 1) != 1) {
        rc = vol_fail(e, -errno, "InternalError", "cannot reach the attach daemon at %s: %s", sock_path, strerror(errno));
        goto out;
    }
    shutdown(fd, SHUT_WR);
    for (;;) {
        ssize_t got = read(fd, buf + n, sizeof buf - 1 - n);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    buf[n] = 0;
    r = json_loads(buf, 0, NULL);
    if (!r) {
        rc = vol_fail(e, -EIO, "InternalError", "the attach daemon gave no answer");
    } else if (json_object_get(r, "code")) {
        rc = vol_fail(e, -EIO, json_string_value(json_object_get(r, "code")) ?: "InternalError", "%s",
                      json_string_value(json_object_get(r, "message")) ?: "");
    } else {
        const char *d = json_string_value(json_object_get(r, "Description"));
        snprintf(out->id, sizeof out->id, "%s", json_string_value(json_object_get(r, "SnapshotId")) ?: "");
        snprintf(out->volume_id, sizeof out->volume_id, "%s", json_string_value(json_object_get(r, "VolumeId")) ?: "");
        snprintf(out->state, sizeof out->state, "%s", json_string_value(json_object_get(r, "State")) ?: "");
        out->volume_size = (uint64_t)json_integer_value(json_object_get(r, "VolumeSize"));
        out->started = json_integer_value(json_object_get(r, "StartTime"));
        out->completed = json_integer_value(json_object_get(r, "CompletionTime"));
        out->description = d ? strdup(d) : NULL;
        out->tags = tags ? strdup(tags) : NULL;
    }
    json_decref(r);
out:
    if (fd >= 0)
        close(fd);
    free(t);
    return rc;
}

/* ---- attach / detach ---- */

static int run_capture(char *const argv[], char *out, size_t cap)
{
    int p[2], status;
    pid_t pid;
    size_t n = 0;
    if (pipe2(p, O_CLOEXEC))
        return -errno;
    pid = fork();
    if (pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -errno;
    }
    for (;;) {
        ssize_t r = out && n + 1 < cap ? read(p[0], out + n, cap - 1 - n) : read(p[0], (char[64]){0}, 64);
        if (r <= 0)
            break;
        if (out)
            n += (size_t)r;
    }
    close(p[0]);
    if (out) {
        out[n] = 0;
        out[strcspn(out, "\n")] = 0;
    }
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
        return -EIO;
    return 0;
}

static int write_file(const char *path, const char *text)
{
    char *tmp = NULL;
    FILE *f;
    int rc = 0;
    if (asprintf(&tmp, "%s.tmp", path) < 0)
        return -ENOMEM;
    f = fopen(tmp, "we");
    if (!f || fputs(text, f) < 0 || fflush(f) || fsync(fileno(f)))
        rc = -errno;
    if (f && fclose(f) && !rc)
        rc = -errno;
    if (!rc && rename(tmp, path))
        rc = -errno;
    free(tmp);
    return rc;
}

/* Whether loop device dev ("/dev/loopN") is still backed by image (the kernel's backing_file, which may
 * carry " (deleted)" after it). A recorded device number is not proof: after the daemon's loop device
 * was detached (by hand, a reboot, a test's teardown) the number may have gone to someone else's file. */
static bool loop_backs(const char *dev, const char *image)
{
    char path[128], buf[4096];
    size_t n = strlen(image);
    FILE *f;
    bool ok = false;
    if (strncmp(dev, "/dev/loop", 9) || strchr(dev + 9, '/'))
        return false;
    snprintf(path, sizeof path, "/sys/block/%s/loop/backing_file", dev + 5);
    if (!(f = fopen(path, "re")))
        return false; /* not configured (or no such device) */
    if (fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\n")] = 0;
        ok = !strncmp(buf, image, n) && (!buf[n] || !strcmp(buf + n, " (deleted)"));
    }
    fclose(f);
    return ok;
}

/* A daemon that died leaves a dead mount and maybe a loop device over its image: clear them (the lock is
 * free). The loop device is detached only if it still serves this volume's image. */
static void clear_stale(vol_store *st, const char *vol, const char *mnt, const char *image, bool own_mnt)
{
    char *lp = vol_run_path(st, vol, ".loop"), dev[64] = "";
    FILE *f = lp ? fopen(lp, "re") : NULL;
    struct stat sb;
    if (f) {
        if (fgets(dev, sizeof dev, f)) {
            char *argv[] = {"losetup", "-d", dev, NULL};
            dev[strcspn(dev, "\n")] = 0;
            if (loop_backs(dev, image))
                (void)run_capture(argv, NULL, 0);
        }
        fclose(f);
    }
    if (lp)
        unlink(lp);
    free(lp);
    if (own_mnt) {
        /* the run directory's mountpoint is only ever ours, and no daemon holds the lock: whatever is
         * mounted there is a dead daemon's (several, stacked, after repeated kill -9) */
        for (int i = 0; i < 16 && umount2(mnt, MNT_DETACH) == 0; i++)
            ;
    } else if (stat(mnt, &sb) && errno == ENOTCONN) {
        (void)umount2(mnt, MNT_DETACH);
    }
}

/* nbdkit's file plugin on the image, in the foreground as our child, on a Unix socket: its pid once the
 * socket exists, or -1. */
static pid_t start_nbdkit(const char *sock, const char *image)
{
    pid_t pid;
    struct stat sb;
    unlink(sock);
    pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
        }
        execlp("nbdkit", "nbdkit", "--foreground", "--exit-with-parent", "--unix", sock, "file", image, (char *)NULL);
        _exit(127);
    }
    if (pid < 0)
        return -1;
    for (int i = 0; i < 500; i++) {
        int status;
        if (stat(sock, &sb) == 0 && S_ISSOCK(sb.st_mode))
            return pid;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return -1;
        usleep(10000);
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    return -1;
}

/* Retire the attachment's grant, from a path that may have closed the store and its key client (then
 * opened again for this). A failure leaves the grant recorded: the next attach retires it. */
static void retire_grant(const vol_attach_opts *o, vol_store *st, vol_grant *g)
{
    kmsc *kms = NULL;
    vol_store *own = NULL;
    vol_err e = {"", ""};
    if (!g->id[0])
        return;
    if (!st) {
        if (!(kms = o->open_kms(o->open_kms_arg)) || vol_store_open(o->store_dir, kms, &own, &e)) {
            EFS_WARN("volume %s: cannot reach the store to retire grant %s; the next attach retires it", o->volume_id,
                     g->id);
            kmsc_free(kms);
            vol_grant_clear(g);
            return;
        }
        st = own;
    }
    if (vol_grant_retire(st, o->volume_id, g, &e)) {
        EFS_WARN("volume %s: cannot retire grant %s (%s: %s); the next attach retires it", o->volume_id, g->id, e.code,
                 e.message);
        vol_grant_clear(g);
    }
    vol_store_free(own);
    kmsc_free(kms);
}

struct loop_arg {
    struct fuse_session *se;
    int rc;
};
static void *loop_thread(void *arg)
{
    struct loop_arg *l = arg;
    l->rc = efs_loop_run(l->se, LOOP_THREADS, 0, NULL); /* (the loop's counters are not reported here) */
    return NULL;
}

/* The last flush, then "clean:VOL" = 1 (the next attach knows the volume was detached cleanly). 0, or -1
 * when the flush failed (logged). */
static int mark_clean(vol_store *st, vol_dev *dev, const char *volume_id)
{
    char key[64];
    if (vol_dev_flush(dev)) {
        EFS_ERROR("volume %s: the last flush failed", volume_id);
        return -1;
    }
    snprintf(key, sizeof key, "clean:%s", volume_id);
    if (vol_store_catalog(st)->ops->setting_set(vol_store_catalog(st), key, "1"))
        EFS_WARN("volume %s: cannot record the clean detach", volume_id);
    return 0;
}

/* The daemon's failure report ("CODE\tmessage", efs_daemon_fail) into e, for the starting command to record and print
 * as any failed AttachVolume; an empty one: the daemon died before it could say. */
static void parent_verdict(const char *report, vol_err *e)
{
    const char *tab = strchr(report, '\t');
    if (!tab || tab == report) {
        (void)vol_fail(e, -EIO, "InternalError", "the attachment daemon ended before it was ready");
        return;
    }
    snprintf(e->code, sizeof e->code, "%.*s", (int)(tab - report), report);
    snprintf(e->message, sizeof e->message, "%s", tab + 1);
}

int vol_attach_run(const vol_attach_opts *o, vol_err *e)
{
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    struct fuse_session *se = NULL;
    struct att a;
    vol_store *st = NULL;
    vol_volume v;
    vol_lineage lin;
    vol_grant grant;
    kmsc *kms = NULL;
    kmsc_secret *dk = NULL;
    vol_keyring ring = {NULL, 0};
    char *mnt = NULL, *image = NULL, *sock = NULL, *info = NULL, *loopf = NULL, opt[512], device[64] = "";
    char report[sizeof e->code + sizeof e->message + 2];
    int rc, ready = -1, lock = -1, slock = -1, refused = 0;
    pthread_t ctl, lt;
    pid_t nbd_pid = 0;
    bool ctl_started = false;
    struct loop_arg la = {NULL, 0};

    memset(&a, 0, sizeof a);
    memset(&v, 0, sizeof v);
    memset(&lin, 0, sizeof lin);
    memset(&grant, 0, sizeof grant);
    a.ctl_fd = a.stop_pipe[0] = a.stop_pipe[1] = -1;
    /* 1. Checks, with errors where the user is: the volume, its attachment, its key. */
    if (!vol_id_valid("vol-", o->volume_id))
        return vol_fail(e, -EINVAL, "InvalidVolumeID.Malformed", "Invalid id: \"%s\" (expecting \"vol-...\")", o->volume_id);
    if (!(kms = o->open_kms(o->open_kms_arg)))
        return vol_fail(e, -EACCES, "KMS.Unavailable", "cannot open the key service");
    if ((rc = vol_store_open(o->store_dir, kms, &st, e)))
        goto early;
    if ((rc = vol_store_catalog(st)->ops->volume_get(vol_store_catalog(st), o->volume_id, &v))) {
        rc = vol_fail(e, rc, "InvalidVolume.NotFound", "The volume '%s' does not exist.", o->volume_id);
        goto early;
    }
    if ((lock = vol_lock_volume(st, o->volume_id)) < 0) {
        rc = vol_fail(e, -EBUSY, "VolumeInUse", "vol %s is already attached (see describe-volumes); detach it first",
                      o->volume_id);
        goto early;
    }
    close(lock);
    lock = -1;
    /* EC2's calls: retire what a killed daemon left, CreateGrant, Decrypt under it (the daemon, our fork,
     * decrypts again under the same grant and retires it when the attachment ends) */
    if ((rc = vol_lineage_of(st, v.lineage, &lin, e)))
        goto early;
    {
        vol_err ge = {"", ""};
        if (vol_grant_retire_stale(st, o->volume_id, &ge)) /* (kept: a later attach tries again) */
            fprintf(stderr, "envelopefs volume attach: warning: a grant of the last attachment of %s stays: %s: %s\n",
                    o->volume_id, ge.code, ge.message);
    }
    /* and every other key its block map needs (a volume part-way through a rekey needs its sources' too) */
    if ((rc = vol_grant_create(st, o->volume_id, &lin, &grant, e)) || (rc = vol_grant_key(st, &lin, &grant, &dk, e)) ||
        (rc = vol_owner_keys_from(st, v.id, v.lineage, dk->data, &ring, e)))
        goto early;
    vol_keyring_clear(&ring);
    kmsc_secret_free(dk);
    dk = NULL;
    if (o->mountpoint) {
        mnt = strdup(o->mountpoint);
    } else {
        mnt = vol_run_path(st, o->volume_id, ".mnt");
        if (mnt && mkdir(mnt, 0700) && errno != EEXIST && errno != ENOTCONN) {
            rc = vol_fail(e, -errno, "InternalError", "cannot create %s: %s", mnt, strerror(errno));
            goto early;
        }
    }
    if (!mnt || asprintf(&image, "%s/%s", mnt, o->volume_id) < 0 || !(sock = vol_run_path(st, o->volume_id, ".sock")) ||
        !(info = vol_run_path(st, o->volume_id, ".json")) || !(loopf = vol_run_path(st, o->volume_id, ".loop"))) {
        rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        goto early;
    }
    clear_stale(st, o->volume_id, mnt, image, !o->mountpoint);
    vol_store_free(st);
    st = NULL;
    kmsc_free(kms); /* (its threads must not exist across the fork) */
    kms = NULL;

    /* 2. The FUSE session, mounted before we go to the background. */
    snprintf(opt, sizeof opt, "-ofsname=envelopefs-volume:%s,subtype=envelopefs-volume,default_permissions,allow_other",
             o->volume_id);
    if (fuse_opt_add_arg(&args, "envelopefs") || fuse_opt_add_arg(&args, opt)) {
        rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        goto early;
    }
    a.size = v.size_gib << 30;
    a.attached = time(NULL);
    snprintf(a.name, sizeof a.name, "%s", o->volume_id);
    se = fuse_session_new(&args, &OPS, sizeof OPS, &a);
    if (!se || fuse_session_mount(se, mnt)) {
        rc = vol_fail(e, -EIO, "InternalError", "cannot mount the volume's image on %s", mnt);
        goto early;
    }
    a.se = se;
    if (!o->foreground && (ready = efs_daemon_start_report(report, sizeof report)) < 0) {
        if (ready == -ECANCELED) { /* the parent: the daemon failed before it was ready, and has undone it all */
            parent_verdict(report, e);
            vol_grant_clear(&grant); /* (the daemon retired it) */
            /* The daemon unmounted and exited: libfuse sees our copy of the /dev/fuse descriptor report the
             * ended connection (POLLERR) and only closes it and frees the mount point; a daemon that died
             * with its mount up (our descriptor kept the connection) has it unmounted here. */
            fuse_session_unmount(se);
            rc = -EIO;
            goto early; /* (st and kms are closed) */
        }
        rc = vol_fail(e, ready, "InternalError", "cannot go to the background: %s", strerror(-ready));
        fuse_session_unmount(se);
        goto early;
    }
    /* 3. In the daemon: from here errors go to stderr until ready, then to the log. */
    {
        struct rlimit rl = {0, 0};
        (void)setrlimit(RLIMIT_CORE, &rl); /* the daemon holds the data key */
    }
    rc = 1;
    /* (each failure fills e: the caller prints it, in the foreground or in the parent, efs_daemon_fail) */
    if (!(kms = o->open_kms(o->open_kms_arg))) {
        (void)vol_fail(e, -EACCES, "KMS.Unavailable", "cannot open the key service");
        goto fail;
    }
    if (vol_store_open(o->store_dir, kms, &st, e))
        goto fail;
    if ((lock = vol_lock_volume(st, o->volume_id)) < 0) {
        (void)vol_fail(e, -EBUSY, "VolumeInUse", "vol %s was attached meanwhile", o->volume_id);
        goto fail;
    }
    if ((slock = vol_store_lock_shared(st)) < 0) {
        (void)vol_fail(e, slock, "InternalError", "cannot lock the volume store");
        goto fail;
    }
    if (vol_grant_key(st, &lin, &grant, &dk, e) || vol_owner_keys_from(st, v.id, v.lineage, dk->data, &ring, e))
        goto fail;
    if (vol_dev_open_keys(vol_store_catalog(st), vol_store_chunks(st), &v, &ring, &a.dev)) {
        (void)vol_fail(e, -EIO, "InternalError", "cannot open the volume");
        goto fail;
    }
    vol_keyring_clear(&ring);
    kmsc_secret_free(dk);
    dk = NULL;
    {
        /* "clean:VOL" is 0 while attached and 1 after the last flush: 0 at attach means the last daemon died */
        vol_catalog *cat = vol_store_catalog(st);
        char key[64], *was = NULL;
        snprintf(key, sizeof key, "clean:%s", o->volume_id);
        if (cat->ops->setting_get(cat, key, &was) == 0 && !strcmp(was, "0")) {
            EFS_WARN("volume %s: the last attach ended without its final flush", o->volume_id);
            vol_dev_set_unclean(a.dev);
        }
        free(was);
        if (cat->ops->setting_set(cat, key, "0")) {
            (void)vol_fail(e, -EIO, "InternalError", "cannot write the catalog");
            goto fail;
        }
    }
    if ((a.ctl_fd = ctl_listen(sock)) < 0 || pipe2(a.stop_pipe, O_CLOEXEC)) {
        (void)vol_fail(e, -EIO, "InternalError", "cannot listen on %s", sock);
        goto fail;
    }
    if (pthread_create(&ctl, NULL, ctl_thread, &a))
        goto fail;
    ctl_started = true;
    if (fuse_set_signal_handlers(se))
        goto fail;
    la.se = se;
    if (pthread_create(&lt, NULL, loop_thread, &la))
        goto fail_signals;
    if (o->loop) {
        char *argv[] = {"losetup", "--direct-io=on", "--sector-size", "4096", "-f", "--show", image, NULL};
        if (run_capture(argv, device, sizeof device) || !device[0]) {
            (void)vol_fail(e, -EIO, "InternalError", "losetup of %s failed", image);
            fuse_session_exit(se);
            pthread_join(lt, NULL); /* the loop sees the exit within a second; only then is /dev/fuse closed */
            fuse_session_unmount(se);
            (void)mark_clean(st, a.dev, o->volume_id); /* (its last flush: no unclean attach left behind) */
            goto fail_signals;
        }
        (void)write_file(loopf, device);
    }
    if (o->nbd && (nbd_pid = start_nbdkit(o->nbd, image)) < 0) {
        (void)vol_fail(e, -EIO, "InternalError", "nbdkit could not serve %s on %s", image, o->nbd);
        nbd_pid = 0;
        fuse_session_exit(se);
        pthread_join(lt, NULL); /* (as above: join before the unmount closes the descriptor it reads) */
        fuse_session_unmount(se);
        (void)mark_clean(st, a.dev, o->volume_id);
        goto fail_signals;
    }
    {
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "VolumeId", o->volume_id, "State", "attached",
                              "Device", device[0] ? device : image, "Image", image, "MountPoint", mnt, "AttachTime",
                              (json_int_t)a.attached, "Pid", (json_int_t)getpid());
        char *t;
        bool made;
        if (j && nbd_pid > 0) {
            json_object_set_new(j, "NbdSocket", json_string(o->nbd));
            json_object_set_new(j, "NbdPid", json_integer(nbd_pid));
        }
        t = j ? json_dumps(j, JSON_INDENT(4)) : NULL;
        /* the caller's print records the attachment first (EC2's AttachVolume record): an attachment that
         * cannot be recorded is undone, not announced (docs/DESIGN.md "EC2 records") */
        made = t != NULL;
        if (t) {
            (void)write_file(info, t);
            refused = o->print ? o->print(o->print_arg, t) : 0;
            if (!o->print)
                printf("%s\n", t);
        }
        fflush(stdout);
        free(t);
        json_decref(j);
        if (!made || refused) {
            if (made)
                (void)vol_fail(e, refused, "InternalError", "the attachment of %s could not be recorded in the audit "
                               "trail, so it was undone", o->volume_id);
            else
                (void)vol_fail(e, -ENOMEM, "InternalError", "out of memory");
            if (device[0]) {
                char *argv[] = {"losetup", "-d", device, NULL};
                (void)run_capture(argv, NULL, 0);
            }
            fuse_session_exit(se);
            pthread_join(lt, NULL); /* the loop sees the exit within a second; only then is /dev/fuse closed */
            fuse_session_unmount(se);
            (void)mark_clean(st, a.dev, o->volume_id); /* (nothing was written: no unclean attach) */
            goto fail_signals;
        }
    }
    if (ready >= 0) {
        efs_log_init("envelopefs-volume", true, EFS_LOG_INFO);
        efs_daemon_ready(ready);
    }
    EFS_INFO("volume %s attached on %s%s%s", o->volume_id, image, device[0] ? " as " : "", device);
    pthread_join(lt, NULL);
    rc = la.rc ? 1 : 0;
    if (mark_clean(st, a.dev, o->volume_id))
        rc = 1;
    EFS_INFO("volume %s detached", o->volume_id);
    fuse_session_unmount(se);
    if (!o->mountpoint)
        (void)rmdir(mnt); /* the default mount point (run/VOL.mnt) goes with the attachment */
fail_signals:
    fuse_remove_signal_handlers(se);
    if (nbd_pid > 0) { /* (detach stops it before unmounting; a daemon ended otherwise stops it here) */
        kill(nbd_pid, SIGTERM);
        waitpid(nbd_pid, NULL, 0);
    }
fail:
    if (ctl_started) {
        if (write(a.stop_pipe[1], "x", 1) != 1)
            EFS_WARN("cannot stop the control thread");
        pthread_join(ctl, NULL);
    }
    if (a.ctl_fd >= 0) {
        close(a.ctl_fd);
        unlink(sock);
    }
    if (a.stop_pipe[0] >= 0) {
        close(a.stop_pipe[0]);
        close(a.stop_pipe[1]);
    }
    if (info)
        unlink(info);
    if (loopf)
        unlink(loopf);
    vol_dev_free(a.dev);
    kmsc_secret_free(dk);
    vol_keyring_clear(&ring);
    retire_grant(o, st, &grant); /* before the lock goes: detach returns with the grant retired */
    if (lock >= 0)
        close(lock);
    if (slock >= 0)
        close(slock);
    if (se) {
        if (rc)
            fuse_session_unmount(se);
        fuse_session_destroy(se);
    }
    fuse_opt_free_args(&args);
    vol_store_free(st);
    kmsc_free(kms);
    vol_volume_clear(&v);
    vol_lineage_clear(&lin);
    free(mnt);
    free(image);
    free(sock);
    free(info);
    free(loopf);
    if (ready >= 0) { /* failed before ready: the waiting parent records and prints e (efs_daemon_start_report) */
        char why[sizeof report];
        snprintf(why, sizeof why, "%s\t%s", e->code[0] ? e->code : "InternalError",
                 e->message[0] ? e->message : "the attachment daemon failed before it was ready");
        efs_daemon_fail(ready, why);
        _exit(rc ? rc : 1);
    }
    return rc ? -EIO : 0;
early:
    retire_grant(o, st, &grant);
    if (se)
        fuse_session_destroy(se);
    fuse_opt_free_args(&args);
    vol_store_free(st);
    kmsc_free(kms);
    kmsc_secret_free(dk);
    vol_keyring_clear(&ring);
    vol_volume_clear(&v);
    vol_lineage_clear(&lin);
    free(mnt);
    free(image);
    free(sock);
    free(info);
    free(loopf);
    return rc;
}

/* Is the block device mounted somewhere (a source in /proc/self/mounts)? */
static bool dev_mounted(const char *dev)
{
    FILE *f = fopen("/proc/self/mounts", "re");
    char line[4096];
    bool found = false;
    size_t n = strlen(dev);
    if (!f)
        return false;
    while (!found && fgets(line, sizeof line, f))
        found = !strncmp(line, dev, n) && line[n] == ' ';
    fclose(f);
    return found;
}

int vol_detach(const char *store_dir, const char *volume_id, vol_err *e)
{
    vol_store *st = NULL;
    json_t *j;
    char *text, dev[64] = "", mnt[PATH_MAX] = "";
    pid_t pid = 0;
    int rc;
    if (!vol_id_valid("vol-", volume_id))
        return vol_fail(e, -EINVAL, "InvalidVolumeID.Malformed", "Invalid id: \"%s\" (expecting \"vol-...\")", volume_id);
    if ((rc = vol_store_open(store_dir, NULL, &st, e)))
        return rc;
    {
        vol_volume v;
        if ((rc = vol_store_catalog(st)->ops->volume_get(vol_store_catalog(st), volume_id, &v))) {
            vol_store_free(st);
            return vol_fail(e, rc, "InvalidVolume.NotFound", "The volume '%s' does not exist.", volume_id);
        }
        vol_volume_clear(&v);
    }
    text = vol_attachment_info(st, volume_id);
    if (!text) {
        vol_store_free(st);
        return vol_fail(e, -EINVAL, "IncorrectState", "Volume '%s' is in the 'available' state.", volume_id);
    }
    j = json_loads(text, 0, NULL);
    free(text);
    snprintf(mnt, sizeof mnt, "%s", json_string_value(json_object_get(j, "MountPoint")) ?: "");
    pid = (pid_t)json_integer_value(json_object_get(j, "Pid"));
    {
        pid_t nbd = (pid_t)json_integer_value(json_object_get(j, "NbdPid"));
        if (nbd > 0 && kill(nbd, SIGTERM) == 0)
            for (int i = 0; i < 500 && kill(nbd, 0) == 0; i++) /* (the daemon reaps it) */
                usleep(10000);
    }
    if (strncmp(json_string_value(json_object_get(j, "Device")) ?: "", "/dev/loop", 9) == 0)
        snprintf(dev, sizeof dev, "%s", json_string_value(json_object_get(j, "Device")));
    json_decref(j);
    if (dev[0] && dev_mounted(dev)) {
        vol_store_free(st);
        return vol_fail(e, -EBUSY, "VolumeInUse", "%s (volume %s) is mounted: unmount it first", dev, volume_id);
    }
    if (dev[0]) {
        char *argv[] = {"losetup", "-d", dev, NULL};
        if (run_capture(argv, NULL, 0)) {
            vol_store_free(st);
            return vol_fail(e, -EBUSY, "VolumeInUse", "cannot detach %s from %s (mounted?)", dev, volume_id);
        }
    }
    /* the loop driver lets go of the image asynchronously: retry the unmount for a while */
    rc = -EBUSY;
    for (int i = 0; i < 250; i++) {
        char *argv[] = {"fusermount3", "-u", mnt, NULL};
        if (run_capture(argv, NULL, 0) == 0 || umount2(mnt, 0) == 0) {
            rc = 0;
            break;
        }
        usleep(20000);
    }
    if (rc) {
        vol_store_free(st);
        return vol_fail(e, rc, "VolumeInUse", "cannot unmount %s: it is busy", mnt);
    }
    /* the daemon flushes and releases the lock as it exits */
    for (int i = 0; i < 3000 && vol_is_attached(st, volume_id); i++)
        usleep(10000);
    rc = vol_is_attached(st, volume_id) ? vol_fail(e, -ETIMEDOUT, "InternalError",
                                                   "the daemon (pid %ld) of %s has not finished", (long)pid, volume_id)
                                        : 0;
    vol_store_free(st);
    return rc;
}
