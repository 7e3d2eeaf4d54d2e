#!/usr/bin/env bash
# fs_faults.sh — faults: the key disabled or scheduled for deletion while mounted (files whose DEK is
# cached keep working, others fail to open with EACCES, creating fails and writes nothing), disk full
# (ENOSPC, earlier data intact), daemon killed with SIGKILL mid-write (every file opens after
# remount; fsync'ed data intact), and permission checks for another user with allow_other.
. "$(dirname "$0")/lib.sh"
fs_setup
cd "$MNT"
echo cached >cached.txt
echo uncached >uncached.txt
fs_remount
cat "$MNT/cached.txt" >/dev/null       # its DEK is now cached in the mount
"$B" kms disable-key --key-id "$KEY_ID"
[ "$(cat "$MNT/cached.txt")" = cached ] || fail "cached file unreadable after disable"
out=$(cat "$MNT/uncached.txt" 2>&1) && fail "uncached file opened with the key disabled"
case $out in *"Permission denied"*) ;; *) fail "uncached open: expected EACCES, got: $out";; esac
before=$(find "$CIPHER" | sort)
touch "$MNT/new.txt" 2>/dev/null && fail "created a file with the key disabled"
[ "$(find "$CIPHER" | sort)" = "$before" ] || fail "a failed create left something in CIPHERDIR"
"$B" kms enable-key --key-id "$KEY_ID"
[ "$(cat "$MNT/uncached.txt")" = uncached ] || fail "after re-enable"
"$B" kms schedule-key-deletion --key-id "$KEY_ID" --pending-window-in-days 7 >/dev/null
fs_remount 2>/dev/null && fail "mounted with the key pending deletion"
"$B" kms cancel-key-deletion --key-id "$KEY_ID" >/dev/null
"$B" kms enable-key --key-id "$KEY_ID"
fs_mount

# SIGKILL mid-write: remount, everything opens; fsync'ed data intact.
fs_unmount
"$B" mount -f "$CIPHER" "$MNT" & pid=$!
for _ in $(seq 50); do mountpoint -q "$MNT" && break; sleep 0.1; done
head -c 3000000 /dev/urandom >"$T/durable"
cp "$T/durable" "$MNT/durable" && sync "$MNT/durable"
python3 - "$MNT" <<'PY' &
import os, sys, time
m = sys.argv[1]
for i in range(10000):
    try:
        with open(os.path.join(m, "w%d" % (i % 40)), "ab") as f:
            f.write(os.urandom(70000))
    except OSError:
        break
PY
writer=$!
sleep 1
kill -9 $pid
wait $writer 2>/dev/null || true
wait $pid 2>/dev/null || true
fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT"
fs_mount
cmp "$T/durable" "$MNT/durable" || fail "fsync'ed data lost after SIGKILL"
for f in "$MNT"/w*; do
  [ -e "$f" ] || continue
  exec 3<"$f" || fail "cannot open $f after SIGKILL"
  exec 3<&-
done

# Disk full: a small tmpfs as the backing store.
fs_unmount
mkdir -p "$T/small" "$T/mnt2"
mount -t tmpfs -o size=3m tmpfs "$T/small"
"$B" init "$T/small" --kms-key-id alias/test >/dev/null
"$B" mount "$T/small" "$T/mnt2"
head -c 500000 /dev/urandom >"$T/keep"
cp "$T/keep" "$T/mnt2/keep"
out=$(dd if=/dev/zero of="$T/mnt2/fill" bs=64k count=200 conv=fsync 2>&1) && fail "filled a 3 MiB disk with 12 MiB"
case $out in *"No space left"*) ;; *) fail "expected ENOSPC, got: $out";; esac
cmp "$T/keep" "$T/mnt2/keep" || fail "earlier data damaged by ENOSPC"
rm -f "$T/mnt2/fill"
"$B" unmount "$T/mnt2"
"$B" fsck "$T/small" >/dev/null || fail "fsck after ENOSPC"
umount "$T/small"

# allow_other: another user meets the same permission checks as on a local filesystem.
fs_mount -o allow_other
id nobody >/dev/null 2>&1 || fail "no user nobody"
chmod 755 "$T" "$MNT"
echo secret >"$MNT/private"; chmod 600 "$MNT/private"
echo public >"$MNT/public"; chmod 644 "$MNT/public"
mkdir "$MNT/closed"; chmod 700 "$MNT/closed"; echo x >"$MNT/closed/inside"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
as_nobody cat "$MNT/private" 2>/dev/null && fail "other user read a 0600 file"
[ "$(as_nobody cat "$MNT/public")" = public ] || fail "other user cannot read a 0644 file"
as_nobody cat "$MNT/closed/inside" 2>/dev/null && fail "other user traversed a 0700 dir"
as_nobody sh -c "echo x >'$MNT/public'" 2>/dev/null && fail "other user wrote a 0644 file"
mkdir "$MNT/shared"; chmod 1777 "$MNT/shared"
as_nobody sh -c "echo mine >'$MNT/shared/nobodys'" || fail "other user cannot create in a 1777 dir"
[ "$(stat -c %U "$MNT/shared/nobodys")" = nobody ] || fail "new file not owned by its creator"
echo "fs_faults: all checks passed"
