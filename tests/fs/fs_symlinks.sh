#!/usr/bin/env bash
# fs_symlinks.sh — symlinks as a user sees them: targets up to PATH_MAX − 1 (4,095) bytes round-trip, also
# after a remount, with lstat showing their length (long ones live in CIPHERDIR/.envelopefs-symlinks/); a
# long target's store file goes with its last link (unlink, rename over it; a hard link keeps it); a tampered
# store file is EIO and named by fsck; `touch -h` sets a symlink's own times (and leaves its target's alone).
# Arguments go to init (CMake runs it with encrypted and with plaintext names).
. "$(dirname "$0")/lib.sh"
fs_setup "$@"
cd "$MNT"
store() { find "$CIPHER/.envelopefs-symlinks" -type f 2>/dev/null | wc -l; }
long() { python3 -c "import sys; n=int(sys.argv[1]); s='/'.join(['d'*200]*30); print(('x/'+s)[:n])" "$1"; }

for n in 1 3040 3041 4000 4095; do
  t=$(long $n); [ ${#t} -eq $n ] || fail "test target length"
  ln -s "$t" "l$n"
  [ "$(readlink "l$n")" = "$t" ] || fail "readlink of a $n-byte target"
  [ "$(stat -c %s "l$n")" = $n ] || fail "lstat size of a $n-byte target: $(stat -c %s "l$n")"
done
[ "$(store)" = 3 ] || fail "expected three long targets in the store, found $(store)"
if ln -s "$(long 4096)" l4096 2>/dev/null; then fail "a 4,096-byte target was accepted"; fi
[ "$(ls -A "$MNT" | grep -c envelopefs)" = 0 ] || fail "the store shows in the mount"

# remount: every target reads back
fs_remount
cd "$MNT"
for n in 1 3040 3041 4000 4095; do
  [ "$(readlink "l$n")" = "$(long $n)" ] || fail "readlink of a $n-byte target after remount"
done
"$B" fsck "$CIPHER" >"$T/fsck.out" || fail "fsck of a clean tree: $(cat "$T/fsck.out")"

# the store follows the links: unlink, rename over, hard links, rename (the target moves with it)
rm l3041
[ "$(store)" = 2 ] || fail "unlink kept the store file"
ln -s "$(long 3500)" victim
[ "$(store)" = 3 ] || fail "new long symlink"
mv -f l4000 victim
[ "$(store)" = 2 ] || fail "rename over a long symlink kept its store file"
[ "$(readlink victim)" = "$(long 4000)" ] || fail "renamed long symlink"
mkdir sub && mv victim sub/v && [ "$(readlink sub/v)" = "$(long 4000)" ] || fail "long symlink moved to a subdirectory"
ln sub/v hard
rm sub/v
[ "$(store)" = 2 ] && [ "$(readlink hard)" = "$(long 4000)" ] || fail "a hard link lost the long target"
rm hard
[ "$(store)" = 1 ] || fail "last hard link kept the store file"

# a tampered store file: EIO, and fsck names it
f=$(find "$CIPHER/.envelopefs-symlinks" -type f | head -1)
chmod u+w "$f"
python3 - "$f" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[20] ^= 1; open(p, 'wb').write(b)
PY
fs_remount
cd "$MNT"
expect_eio readlink -v l4095
rc=0; "$B" fsck "$CIPHER" >"$T/fsck.out" || rc=$?
[ $rc -eq 1 ] && grep -q "l4095: symlink target fails authentication" "$T/fsck.out" || fail "fsck: $(cat "$T/fsck.out")"

# touch -h: the symlink's own times change; its target's do not
echo x >target && ln -s target short
touch -d '2001-02-03 04:05:06' target
touch -h -d '2011-12-13 14:15:16' short
[ "$(stat -c %Y short)" = "$(date -d '2011-12-13 14:15:16' +%s)" ] || fail "touch -h did not set the symlink's mtime"
[ "$(stat -c %Y target)" = "$(date -d '2001-02-03 04:05:06' +%s)" ] || fail "touch -h changed the target's mtime"
touch -h -d '2012-01-01 00:00:00' l3040
[ "$(stat -c %Y l3040)" = "$(date -d '2012-01-01 00:00:00' +%s)" ] || fail "touch -h on a long symlink"
fs_remount
[ "$(stat -c %Y "$MNT/short")" = "$(date -d '2011-12-13 14:15:16' +%s)" ] || fail "symlink mtime after remount"
echo "fs_symlinks: ok"
