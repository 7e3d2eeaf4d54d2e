#!/usr/bin/env bash
# fs_basic.sh — the mount in everyday use, in each key mode: files, directories, links, persistence
# across remounts, a distinct wrapped DEK per file, no plaintext in CIPHERDIR, KMS call counts.
. "$(dirname "$0")/lib.sh"
MODE=${1:-header}
case $MODE in
  header) fs_setup ;;
  xattr) fs_setup --dek-in-xattr ;;
  bucket) fs_setup --bucket-key ;;
esac
cd "$MNT"

# distinctive content: must never appear in CIPHERDIR
MARK="envelopefs-plaintext-marker-$RANDOM$RANDOM"
for i in $(seq 1 20); do printf '%s %d\n' "$MARK" "$i" >"f$i"; done
head -c 300000 /dev/urandom >rand.bin
python3 -c "import sys; sys.stdout.write(('$MARK'+'x'*100+'\n')*2000)" >big.txt
mkdir -p dir/sub
echo inner >dir/sub/inner.txt
ln f1 hard1
ln -s f2 sym2
[ "$(cat sym2)" = "$MARK 2" ] || fail "symlink"
[ "$(readlink sym2)" = f2 ] || fail "readlink"
[ "$(stat -c %h f1)" = 2 ] || fail "link count"
echo appended >>hard1
grep -q appended f1 || fail "hard link shares contents"
[ "$(stat -c %s rand.bin)" = 300000 ] || fail "plaintext size"
mv dir/sub/inner.txt dir/moved.txt
[ "$(cat dir/moved.txt)" = inner ] || fail "rename"
# Listings report plaintext sizes, link counts and types, also on a second pass over known entries (the
# daemon answers those from the inodes it holds rather than by opening each name again).
listing() { find "$MNT" -mindepth 1 -printf '%P %s %n %y\n' | sort; }
expect_l1=$(listing)
grep -qx "rand.bin 300000 1 f" <<<"$expect_l1" || fail "listing: size of rand.bin"
grep -qx "hard1 $(stat -c %s f1) 2 f" <<<"$expect_l1" || fail "listing: hard link"
grep -qx "sym2 2 1 l" <<<"$expect_l1" || fail "listing: symlink"
sleep 1.1 # past the attribute timeout, so the kernel asks again
[ "$(listing)" = "$expect_l1" ] || fail "listing changed on a second pass"
head -c 4097 /dev/urandom >>rand.bin
sleep 1.1
grep -qx "rand.bin 304097 1 f" <<<"$(listing)" || fail "listing: size after append"
truncate -s 300000 rand.bin
sum_before=$(cd "$MNT" && find . -type f | sort | xargs md5sum)

# Nothing readable at rest.
if grep -rqa "$MARK" "$CIPHER"; then fail "plaintext found in CIPHERDIR"; fi
if grep -rqa "$MARK 2" "$CIPHER"; then fail "symlink target in clear"; fi

# Distinct wrapped DEKs: the header (or its xattr) of every file differs in its wrapped key.
python3 - "$CIPHER" "$MODE" <<'PY'
import os, sys
root, mode = sys.argv[1], sys.argv[2]
seen = {}
for dp, dn, fn in os.walk(root):
    for f in fn:
        p = os.path.join(dp, f)
        if "." in f or os.path.islink(p): continue  # config, bucket keys, directory ids, long-name sidecars
        hdr = os.getxattr(p, "user.envelopefs.header") if mode == "xattr" else open(p, "rb").read(2048)
        assert hdr[:4] == b"EnvF", (p, hdr[:4])
        wl = hdr[32] | hdr[33] << 8
        wrapped = hdr[34:34 + wl]
        st = os.stat(p)
        key = (st.st_ino)
        if key in seen: continue  # hard links share one inode and one DEK
        for other, w in seen.items():
            assert w != wrapped, "two files share a wrapped DEK"
        seen[key] = wrapped
assert len(seen) >= 22, len(seen)
print("distinct wrapped DEKs:", len(seen))
PY

# Persistence across remount, and KMS call counts.
fs_remount
cd "$MNT"
[ "$(cd "$MNT" && find . -type f | sort | xargs md5sum)" = "$sum_before" ] || fail "contents changed across remount"
calls0=$(kms_calls)
cat f3 f4 >/dev/null
calls1=$(kms_calls)
cat f3 f4 >/dev/null   # DEKs cached: no new calls
[ "$(kms_calls)" = "$calls1" ] || fail "reopening cached files called the KMS"
for i in $(seq 1 200); do echo "$i" >"new$i"; done
calls2=$(kms_calls)
if [ "$MODE" = bucket ]; then
  # one bucket key per mount, however many files
  [ $((calls2 - calls1)) -le 2 ] || fail "bucket-key mode made $((calls2 - calls1)) KMS calls for 200 files"
else
  [ $((calls2 - calls1)) -ge 200 ] || fail "per-file keys: expected ≥200 GenerateDataKey calls, saw $((calls2 - calls1))"
fi
echo "KMS calls: open 2 files: $((calls1 - calls0)), create 200 files: $((calls2 - calls1)) ($MODE mode)"

# Missing names: answered with a negative entry the kernel keeps (so probing one again costs no request),
# which a create, mkdir, symlink, link or rename of that name through the mount replaces at once.
negs() { getfattr --only-values -n user.envelopefs.stats "$MNT" | jget negative_lookups; }
n0=$(negs)
for _ in $(seq 50); do [ ! -e "$MNT/ghost" ] || fail "a missing name exists"; done
n1=$(negs)
[ $((n1 - n0)) -ge 1 ] && [ $((n1 - n0)) -le 3 ] || fail "50 probes of a missing name cost $((n1 - n0)) lookups"
for k in file dir sym link ren; do [ ! -e "$MNT/ghost-$k" ] || fail "ghost-$k exists"; done
echo boo >"$MNT/ghost-file" && [ "$(cat "$MNT/ghost-file")" = boo ] || fail "create after a negative lookup"
mkdir "$MNT/ghost-dir" && [ -d "$MNT/ghost-dir" ] || fail "mkdir after a negative lookup"
ln -s ghost-file "$MNT/ghost-sym" && [ "$(cat "$MNT/ghost-sym")" = boo ] || fail "symlink after a negative lookup"
ln "$MNT/ghost-file" "$MNT/ghost-link" && [ "$(cat "$MNT/ghost-link")" = boo ] || fail "link after a negative lookup"
mv "$MNT/ghost-link" "$MNT/ghost-ren" && [ "$(cat "$MNT/ghost-ren")" = boo ] || fail "rename onto a negative entry"
[ ! -e "$MNT/ghost-link" ] || fail "a renamed name still exists"
rm -r "$MNT/ghost-file" "$MNT/ghost-dir" "$MNT/ghost-sym" "$MNT/ghost-ren"
for k in file dir sym ren; do [ ! -e "$MNT/ghost-$k" ] || fail "ghost-$k survived its removal"; done

# truncate / sparse / append
truncate -s 10000 f5
[ "$(stat -c %s f5)" = 10000 ] || fail "truncate up"
[ "$(tail -c 100 f5 | tr -d '\0' | wc -c)" = 0 ] || fail "extension reads zeros"
truncate -s 5 f5
[ "$(cat f5)" = "envel" ] || fail "truncate down"
printf 'abc' >>f5
[ "$(cat f5)" = "envelabc" ] || fail "append"
fs_remount
[ "$(cat "$MNT/f5")" = "envelabc" ] || fail "truncate persisted"
# a file open after its last name went: times set through it stay visible (the kernel's own flush of an
# unlinked file's times is not written to the backing file; an explicit one must still show), data reads back
python3 - "$MNT/orphan" <<'PY' || fail "times and data of an unlinked open file"
import os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b"x" * 5000)
os.unlink(sys.argv[1])
os.utime(f"/proc/self/fd/{fd}", ns=(10**18, 1234567890 * 10**9))
os.fsync(fd)
st = os.fstat(fd)
assert st.st_nlink == 0 and st.st_size == 5000 and st.st_mtime == 1234567890, st
os.utime(fd, times=(5, 7))
st = os.fstat(fd)
assert (st.st_atime, st.st_mtime) == (5, 7), st
assert os.pread(fd, 10, 4990) == b"x" * 10
os.close(fd)
PY
[ ! -e "$MNT/orphan" ] || fail "unlinked file still has a name"
# A file removed while nothing has it open is closed at its unlink (the backing filesystem frees it there,
# not at the kernel's FORGET; stats: unlink_closes). A descriptor kept by the caller (O_PATH: no open) still
# stats it (nlink 0, plaintext size) while new files are made and removed beside it.
# A file open at its unlink keeps its descriptor until released, and reads back.
python3 - "$MNT" <<'PY' || fail "files closed at their unlink"
import json, os, sys
m = sys.argv[1]
def closes():
    return json.loads(os.getxattr(m, "user.envelopefs.stats"))["unlink_closes"]
def settle():
    # close() returns before the daemon has served the file's RELEASE (the kernel sends it in the
    # background), and an UNLINK served first finds the file still open; wait until no inode is open
    import time
    for _ in range(200):
        if json.loads(os.getxattr(m, "user.envelopefs.stats"))["busy_inodes"] == 0:
            return
        time.sleep(0.05)
p = f"{m}/gone"
with open(p, "wb") as f:
    f.write(b"g" * 6000)
keep = os.open(p, os.O_PATH)
settle()
c0 = closes()
os.unlink(p)
assert closes() == c0 + 1, (c0, closes())
st = os.fstat(keep)
assert st.st_nlink == 0 and st.st_size == 6000, st
for i in range(20):
    with open(f"{m}/new{i}", "wb") as f:
        f.write(b"%02d" % i * 3000)
for i in range(20):
    with open(f"{m}/new{i}", "rb") as f:
        assert f.read() == b"%02d" % i * 3000, i
    assert os.stat(f"{m}/new{i}").st_nlink == 1
    os.unlink(f"{m}/new{i}")
st = os.fstat(keep)
assert st.st_nlink == 0 and st.st_size == 6000, st
os.close(keep)
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b"o" * 100)
c1 = closes()
os.unlink(p)
assert closes() == c1, "a file open at its unlink was closed"
assert os.pread(fd, 100, 0) == b"o" * 100
assert os.fstat(fd).st_nlink == 0
os.close(fd)
PY
# the request loop counts what it reads (stats xattr): every request is read once, by spinning or not
stats0=$(getfattr --absolute-names --only-values -n user.envelopefs.stats "$MNT")
for i in $(seq 20); do getfattr --absolute-names --only-values -n user.envelopefs.stats "$MNT" >/dev/null; done
stats1=$(getfattr --absolute-names --only-values -n user.envelopefs.stats "$MNT")
python3 - "$stats0" "$stats1" <<'PY' || fail "request loop counters"
import json, sys
a, b = (json.loads(x) for x in sys.argv[1:3])
d = {k: b[k] - a[k] for k in b if k.startswith("loop_")}
if b["uring_requests"] > a["uring_requests"]:  # served over io_uring (ENVELOPEFS_IO_URING=1): not the loop's
    sys.exit(0)
assert d["loop_requests"] >= 21, d  # 20 GETXATTRs and the last one's own
reads = d["loop_spin_hits"] + d["loop_spin_misses"] + d["loop_unspun"]
assert reads >= 21 and b["loop_threads"] >= 1 and "loop_released" in b and all(v >= 0 for v in d.values()), d
PY
"$B" fsck "$CIPHER" >/dev/null || fail "fsck on a healthy tree"
# `envelopefs unmount` returns once the daemon has finished (gone, or a zombie waiting for its reaper)
dpid=$(getfattr --absolute-names --only-values -n user.envelopefs.stats "$MNT" | jget pid)
[ -d "/proc/$dpid" ] && grep -q envelopefs "/proc/$dpid/comm" || fail "stats name the daemon's pid ($dpid)"
for i in $(seq 50); do echo "$i" >"$MNT/late$i"; done
fs_unmount
state=$(awk '{print $3}' "/proc/$dpid/stat" 2>/dev/null || echo gone)
case $state in Z|X|gone) ;; *) fail "daemon $dpid still running ($state) after unmount returned";; esac
echo "fs_basic ($MODE): all checks passed"
