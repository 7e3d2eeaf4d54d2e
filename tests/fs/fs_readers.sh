#!/usr/bin/env bash
# fs_readers.sh — concurrent random readers while a writer rewrites and truncates the same file
# (fs_readers.py): the request loop's leader serving small READs without blocking (fs/nowait.h).
. "$(dirname "$0")/lib.sh"
fs_setup "$@"
export B CIPHER MNT
python3 "$(dirname "$0")/fs_readers.py" "$MNT" "$CIPHER" '"$B" unmount "$MNT" && "$B" mount "$CIPHER" "$MNT"' \
  "${READERS_SEED:-$RANDOM}"
# ENVELOPEFS_NOWAIT_READS=0: every READ as before (handed off when others are queued), none in nowait mode.
fs_unmount
ENVELOPEFS_NOWAIT_READS=0 fs_mount
python3 - "$MNT" <<'PY'
import os, sys, threading
p = os.path.join(sys.argv[1], "f")
def rd(k):
    fd = os.open(p, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    for i in range(200):
        os.pread(fd, 4096, ((i * 7919 + k * 104729) % 2048) * 4096)
    os.close(fd)
ts = [threading.Thread(target=rd, args=(k,)) for k in range(4)]
for t in ts: t.start()
for t in ts: t.join()
PY
st=$(getfattr --only-values -n user.envelopefs.stats "$MNT")
[ "$(echo "$st" | jget loop_nowait_reads)" = 0 ] || fail "ENVELOPEFS_NOWAIT_READS=0: READs served in nowait mode: $st"
[ $(( $(echo "$st" | jget loop_requests) + $(echo "$st" | jget uring_requests) )) -gt 100 ] || fail "ENVELOPEFS_NOWAIT_READS=0: the reads did not reach the daemon: $st"
echo "fs_readers: ok"
