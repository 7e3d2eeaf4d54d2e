#!/usr/bin/env bash
# fs_tamper.sh — modified ciphertext never yields wrong plaintext: a flipped block byte, a flipped
# header byte (also in the padding), swapped blocks, a block copied from another file and a truncated tail all give EIO,
# and fsck names each damaged file and block.
. "$(dirname "$0")/lib.sh"
fs_setup --plaintext-names   # names stay readable so the test can find each file's backing copy
head -c 40000 /dev/urandom >"$MNT/a"
head -c 40000 /dev/urandom >"$MNT/b"
for f in c d e g h; do head -c 20000 /dev/urandom >"$MNT/$f"; done
fs_unmount
"$B" fsck "$CIPHER" >/dev/null || fail "fsck before tampering"
hdr() { python3 -c 'import sys; b=open(sys.argv[1],"rb").read(8); print(b[6]|b[7]<<8)' "$1"; }
H=$(hdr "$CIPHER/a")
[ "$H" = "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["header_size"])' "$CIPHER/envelopefs.conf")" ] ||
  fail "header length $H differs from the config's header_size"
W=$(python3 -c 'import sys; b=open(sys.argv[1],"rb").read(34); print(b[32]|b[33]<<8)' "$CIPHER/h")
[ $((34 + W + 16)) -lt "$H" ] || fail "no padding in a $H-byte header with a $W-byte wrapped key"
S=$((4096 + 28))
flip() { python3 - "$1" "$2" <<'PY'
import sys
p, off = sys.argv[1], int(sys.argv[2])
with open(p, "r+b") as f:
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x40]))
PY
}
flip "$CIPHER/a" $((H + S * 2 + 100))        # data byte in block 2
flip "$CIPHER/c" 40                          # a byte of the wrapped key in the header
flip "$CIPHER/h" $((34 + W + 1))             # a byte of the header's zero padding
python3 - "$CIPHER/d" "$H" "$S" <<'PY'       # swap blocks 0 and 1 of d
import sys
p, h, s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = bytearray(open(p, "rb").read())
b0, b1 = d[h:h+s], d[h+s:h+2*s]
d[h:h+s], d[h+s:h+2*s] = b1, b0
open(p, "wb").write(d)
PY
python3 - "$CIPHER/b" "$CIPHER/e" "$H" "$S" <<'PY' # copy block 1 of b over block 1 of e
import sys
src, dst, h, s = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
blk = open(src, "rb").read()[h+s:h+2*s]
d = bytearray(open(dst, "rb").read()); d[h+s:h+2*s] = blk; open(dst, "wb").write(d)
PY
truncate -s $(( $(stat -c %s "$CIPHER/g") - 10 )) "$CIPHER/g"   # cut the tail mid-block
fs_mount
expect_eio cat "$MNT/a"
# blocks before the damaged one still read
head -c 8192 "$MNT/a" >/dev/null || fail "undamaged blocks of a"
expect_eio cat "$MNT/c"
expect_eio cat "$MNT/d"
expect_eio cat "$MNT/e"
expect_eio cat "$MNT/g"
expect_eio cat "$MNT/h"
cat "$MNT/b" >/dev/null || fail "untouched file b"
fs_unmount
set +e; "$B" fsck "$CIPHER" >"$T/fsck.out"; rc=$?; set -e
[ $rc -eq 1 ] || fail "fsck exit $rc on damaged tree"
grep -q "a: block 2 fails" "$T/fsck.out" || fail "fsck did not name a block 2: $(cat "$T/fsck.out")"
grep -q "c: header" "$T/fsck.out" || fail "fsck did not name c's header"
grep -q "h: header" "$T/fsck.out" || fail "fsck did not name h's header (padding)"
grep -q "d: block 0" "$T/fsck.out" || fail "fsck did not name d block 0"
grep -q "e: block 1" "$T/fsck.out" || fail "fsck did not name e block 1"
grep -q "g: block" "$T/fsck.out" || fail "fsck did not name g's tail"
! grep -q "/b:" "$T/fsck.out" || fail "fsck blamed b"
# a modified config is refused
python3 - "$CIPHER/envelopefs.conf" <<'PY'
import json, sys, os
p = sys.argv[1]; os.chmod(p, 0o600)
c = json.load(open(p)); c["block_size"] = 8192; open(p, "w").write(json.dumps(c))
PY
if "$B" mount "$CIPHER" "$MNT" 2>"$T/err"; then fail "mounted a modified config"; fi
grep -q "fails authentication" "$T/err" || fail "modified config message: $(cat "$T/err")"
echo "fs_tamper: all checks passed"
