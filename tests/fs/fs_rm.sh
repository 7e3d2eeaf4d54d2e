#!/usr/bin/env bash
# fs_rm.sh — removing files through the mount (fs/closer.c): an UNLINK hands the removed file's last backing
# descriptor to the closer threads, which close it (where the backing filesystem frees the file) off the
# request path. Checks that an rm -rf of a tree of many files frees the backing space once the closers have
# drained (STATFS of the mount waits for them; no removed file stays open in the daemon), that a file
# unlinked while open stays readable and writable through its descriptor, and that an unmount right after
# an rm leaves no backing file behind. With root, the backing directory is a tmpfs of its own, whose free
# space nothing else changes; otherwise the space part is checked through the daemon's descriptors only.
. "$(dirname "$0")/lib.sh"

OWN_TMPFS=0
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=256m efs-test-rm "$CIPHER" 2>/dev/null; then
  OWN_TMPFS=1
  trap 'fs_cleanup_rm' EXIT
  fs_cleanup_rm() { cd /; mountpoint -q "$MNT" && { fusermount3 -u "$MNT" || umount -l "$MNT"; }; umount -l "$CIPHER" 2>/dev/null; fs_cleanup; }
fi
# no spare files (fs/spares.c): their pool would hold backing space of its own while files are made
export ENVELOPEFS_SPARES=0
fs_setup
stat_() { getfattr --absolute-names --only-values -n user.envelopefs.stats "$MNT" | jget "$1"; }
PID=$(stat_ pid)
# the daemon's descriptors of removed backing files ("... (deleted)" links under CIPHER)
held_removed() { find /proc/"$PID"/fd -maxdepth 1 -type l -lname "$CIPHER/* (deleted)" 2>/dev/null | wc -l; }
# free bytes of the mount (STATFS: the backing filesystem's, after the closers drain)
free_bytes() { python3 -c 'import os,sys; s=os.statvfs(sys.argv[1]); print(s.f_bfree * s.f_frsize)' "$MNT"; }

# 1. rm -rf of a tree of many files (more than the closers' queue holds: some are closed inline)
free0=$(free_bytes)
python3 - "$MNT/tree" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(24):
    os.makedirs(f"{root}/d{d}/sub")
    for f in range(20):
        for where in (f"{root}/d{d}", f"{root}/d{d}/sub"):
            with open(f"{where}/f{f}", "wb") as fh:
                fh.write(os.urandom(16384))
PY
sync -f "$MNT"
free1=$(free_bytes)
used=$((free0 - free1))
[ "$used" -ge $((960 * 16384)) ] || fail "960 files of 16 KiB took only $used bytes"
ls -lR "$MNT/tree" >/dev/null # every file known to the daemon (an open descriptor each), as after an untar
closes0=$(stat_ unlink_closes)
rm -rf "$MNT/tree"
[ ! -e "$MNT/tree" ] || fail "tree still there after rm -rf"
free2=$(free_bytes) # waits for the closers
closes=$(($(stat_ unlink_closes) - closes0))
[ "$closes" = 960 ] || fail "rm -rf closed $closes of 960 files at their unlink"
[ "$(held_removed)" = 0 ] || fail "the daemon still holds $(held_removed) removed backing files after a STATFS"
[ "$(stat_ closer_errors)" = 0 ] || fail "closer errors: $(stat_ closer_errors)"
queued=$(stat_ closer_queued); inl=$(stat_ closer_inline)
[ $((queued + inl)) -ge 960 ] || fail "closer: $queued queued + $inl inline < 960 closes"
if [ "$OWN_TMPFS" = 1 ]; then
  # everything the files took is free again (a few blocks of slack for directories the tmpfs keeps)
  [ $((free0 - free2)) -le $((64 * 4096)) ] || fail "after rm -rf, $((free0 - free2)) bytes still used (files took $used)"
else
  echo "(not root: backing space checked through the daemon's descriptors only)"
fi

# 2. a file unlinked while open: readable and writable through its descriptor, not handed to the closer
python3 - "$MNT" <<'PY' || fail "file unlinked while open"
import json, os, sys
m = sys.argv[1]
def stat(k):
    return json.loads(os.getxattr(m, "user.envelopefs.stats"))[k]
p = f"{m}/open-file"
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o600)
os.write(fd, b"a" * 10000)
q0, c0 = stat("closer_queued") + stat("closer_inline"), stat("unlink_closes")
os.unlink(p)
assert not os.path.exists(p)
assert stat("unlink_closes") == c0 and stat("closer_queued") + stat("closer_inline") == q0, "closed while open"
os.statvfs(m)  # a drain of the closers changes nothing for it
assert os.pwrite(fd, b"b" * 5000, 8000) == 5000
os.fsync(fd)
assert os.pread(fd, 13000, 0) == b"a" * 8000 + b"b" * 5000
st = os.fstat(fd)
assert st.st_nlink == 0 and st.st_size == 13000, st
os.close(fd)
PY

# 3. unmount right after an rm: no backing file left, the closers drained before the daemon ended
mkdir "$MNT/again"
for i in $(seq 1 300); do head -c 8192 /dev/urandom >"$MNT/again/f$i"; done
ls -l "$MNT/again" >/dev/null
rm -rf "$MNT/again"
fs_unmount
mountpoint -q "$MNT" && fail "still mounted"
st=$(sed 's/.*) //' /proc/"$PID"/stat 2>/dev/null | cut -d' ' -f1 || true) # gone, or a zombie: its work is over
[ -z "$st" ] || [ "$st" = Z ] || [ "$st" = X ] || fail "daemon $PID still running ($st) after unmount returned"
left=$(cd "$CIPHER" && find . -mindepth 1 -type f ! -name 'envelopefs.*' ! -path './.envelopefs-*' | head -5)
[ -z "$left" ] || fail "backing files left after rm and unmount: $left"
[ -z "$(find "$CIPHER" -mindepth 1 -type d ! -path "$CIPHER/.envelopefs-*" | head -1)" ] || fail "backing directories left"
if [ "$OWN_TMPFS" = 1 ]; then
  free3=$(python3 -c 'import os,sys; s=os.statvfs(sys.argv[1]); print(s.f_bfree * s.f_frsize)' "$CIPHER")
  [ $((free0 - free3)) -le $((64 * 4096)) ] || fail "after rm and unmount, $((free0 - free3)) bytes still used"
fi
"$B" fsck "$CIPHER" >/dev/null || fail "fsck after rm"
echo "fs_rm: ok"
