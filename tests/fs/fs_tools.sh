#!/usr/bin/env bash
# fs_tools.sh — everyday tools inside the mount: rsync, tar, git, cp --sparse, sqlite3, shared
# writable mmap, fallocate, flock and POSIX locks, FIFOs, user xattrs, chmod/chown/utimens, statfs,
# renameat2 flags, a large directory, rename over an open file.
. "$(dirname "$0")/lib.sh"
fs_setup
cd "$MNT"
SRC=$T/src; mkdir -p "$SRC/a/b"
for i in $(seq 1 50); do head -c $((RANDOM % 9000)) /dev/urandom >"$SRC/a/f$i"; done
echo hi >"$SRC/a/b/hello"; ln -s hello "$SRC/a/b/link"; chmod 640 "$SRC/a/f1"

# rsync in and out
rsync -a "$SRC/" "$MNT/rs/"
rsync -a "$MNT/rs/" "$T/back/"
diff -r "$SRC" "$T/back" || fail "rsync round trip"
[ "$(stat -c %a "$MNT/rs/a/f1")" = 640 ] || fail "rsync mode"

# tar create and extract inside the mount
tar -C "$SRC" -cf "$MNT/t.tar" .
mkdir "$MNT/untar" && tar -C "$MNT/untar" -xf "$MNT/t.tar"
diff -r "$SRC" "$MNT/untar" || fail "tar"

# git
if command -v git >/dev/null; then
  mkdir "$MNT/repo" && cd "$MNT/repo"
  git init -q . && git config user.email t@t && git config user.name t
  cp -r "$SRC/a" . && git add -A && git commit -qm one
  echo change >>a/b/hello && git commit -qam two
  [ "$(git log --oneline | wc -l)" = 2 ] || fail "git log"
  git status --porcelain | grep -q . && fail "git status not clean"
  git fsck --no-progress >/dev/null 2>&1 || fail "git fsck"
  cd "$MNT"
fi

# sparse file copy: holes read as zeros, contents intact
python3 -c "
f=open('$T/sparse','wb'); f.seek(5*1024*1024); f.write(b'end'); f.seek(4096); f.write(b'start'); f.close()"
cp --sparse=always "$T/sparse" "$MNT/sparse"
cmp "$T/sparse" "$MNT/sparse" || fail "cp --sparse"
[ "$(stat -c %s "$MNT/sparse")" = $((5*1024*1024+3)) ] || fail "sparse size"

# sqlite3
if command -v sqlite3 >/dev/null; then
  sqlite3 "$MNT/db.sqlite" "create table t(a integer primary key, b text); begin; $(for i in $(seq 1 500); do printf "insert into t(b) values('row%d');" $i; done) commit;"
  [ "$(sqlite3 "$MNT/db.sqlite" 'select count(*) from t')" = 500 ] || fail "sqlite count"
  [ "$(sqlite3 "$MNT/db.sqlite" 'pragma integrity_check')" = ok ] || fail "sqlite integrity"
fi

# shared writable mmap, fallocate, locks, fifo, renameat2 flags, rename over an open file
python3 - "$MNT" <<'PY'
import ctypes, fcntl, mmap, os, sys, errno
m = sys.argv[1]
p = os.path.join(m, "mm")
with open(p, "wb") as f:
    f.write(b"\0" * 20000)
fd = os.open(p, os.O_RDWR)
mm = mmap.mmap(fd, 20000, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
mm[5000:5011] = b"hello mmap!"
mm.flush(); mm.close(); os.close(fd)
assert open(p, "rb").read()[5000:5011] == b"hello mmap!", "mmap write not visible"
fd = os.open(os.path.join(m, "fa"), os.O_RDWR | os.O_CREAT)
os.posix_fallocate(fd, 0, 100000)
assert os.fstat(fd).st_size == 100000, "fallocate size"
assert os.pread(fd, 10, 50000) == b"\0" * 10
fcntl.flock(fd, fcntl.LOCK_EX); fcntl.flock(fd, fcntl.LOCK_UN)
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0); fcntl.lockf(fd, fcntl.LOCK_UN, 10, 0)
os.close(fd)
os.mkfifo(os.path.join(m, "fifo"))
assert os.path.exists(os.path.join(m, "fifo")) and not os.path.isfile(os.path.join(m, "fifo"))
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
open(os.path.join(m, "x1"), "w").write("one")
open(os.path.join(m, "x2"), "w").write("two")
r = libc.renameat2(AT_FDCWD, os.path.join(m, "x1").encode(), AT_FDCWD, os.path.join(m, "x2").encode(), RENAME_NOREPLACE)
assert r == -1 and ctypes.get_errno() == errno.EEXIST, "RENAME_NOREPLACE"
r = libc.renameat2(AT_FDCWD, os.path.join(m, "x1").encode(), AT_FDCWD, os.path.join(m, "x2").encode(), RENAME_EXCHANGE)
assert r == 0, "RENAME_EXCHANGE"
assert open(os.path.join(m, "x1")).read() == "two" and open(os.path.join(m, "x2")).read() == "one"
# rename over an open file: the open handle keeps reading the old contents
f = open(os.path.join(m, "x2"), "rb")
os.rename(os.path.join(m, "x1"), os.path.join(m, "x2"))
assert f.read() == b"one"; f.close()
assert open(os.path.join(m, "x2")).read() == "two"
# the same file open twice, written through both
a = os.open(os.path.join(m, "twice"), os.O_RDWR | os.O_CREAT); b = os.open(os.path.join(m, "twice"), os.O_RDWR)
os.pwrite(a, b"A" * 5000, 0); os.pwrite(b, b"B" * 10, 4090); os.fsync(a); os.fdatasync(b)
d = os.pread(a, 6000, 0); os.close(a); os.close(b)
assert d == b"A" * 4090 + b"B" * 10 + b"A" * 900, "two handles"
print("mmap, fallocate, locks, fifo, renameat2, open-twice: ok")
PY

# xattrs: values round-trip and are not stored in the clear
setfattr -n user.color -v "ultraviolet-marker" "$MNT/rs/a/f2"
[ "$(getfattr --only-values -n user.color "$MNT/rs/a/f2")" = ultraviolet-marker ] || fail "xattr get"
getfattr -d "$MNT/rs/a/f2" | grep -q user.color || fail "xattr list"
getfattr -d "$MNT/rs/a/f2" | grep -q envelopefs && fail "internal xattr visible"
getfattr -d -R "$CIPHER" 2>/dev/null | grep -q ultraviolet && fail "xattr value in clear"
setfattr -x user.color "$MNT/rs/a/f2"
getfattr -n user.color "$MNT/rs/a/f2" 2>/dev/null && fail "xattr removed"

# metadata
chmod 700 "$MNT/rs/a/f3" && [ "$(stat -c %a "$MNT/rs/a/f3")" = 700 ] || fail chmod
chown 1234:5678 "$MNT/rs/a/f3" && [ "$(stat -c %u:%g "$MNT/rs/a/f3")" = 1234:5678 ] || fail chown
touch -d "2001-02-03 04:05:06" "$MNT/rs/a/f3" && [ "$(stat -c %Y "$MNT/rs/a/f3")" = "$(date -d '2001-02-03 04:05:06' +%s)" ] || fail utimens
df "$MNT" >/dev/null || fail statfs

# a large directory
mkdir "$MNT/many"
python3 -c "
import os
for i in range(5000): open('$MNT/many/entry%05d' % i, 'w').close()"
[ "$(ls "$MNT/many" | wc -l)" = 5000 ] || fail "5000 entries"
rm -rf "$MNT/many"
echo "fs_tools: all checks passed"
