#!/usr/bin/env bash
# fs_names.sh — encrypted names: a tree of random names (255-byte, non-ASCII, every byte but '/' and NUL)
# round-trips through create/readdir/stat/rename/link and a remount; no plaintext name appears anywhere
# under CIPHERDIR; the same name in two directories has different backing names; a backing entry moved
# to another directory is not shown (and fsck names it); long names keep working across renames.
. "$(dirname "$0")/lib.sh"
fs_setup
export MNT CIPHER
python3 - <<'PY'
import os, random, sys
m, c = os.environ["MNT"], os.environ["CIPHER"]
rng = random.Random(int(os.environ.get("NAMES_SEED", "1")))
alphabet = bytes(b for b in range(1, 256) if b != ord("/"))
def rand_name(n):
    while True:
        b = bytes(rng.choice(alphabet) for _ in range(n))
        if b not in (b".", b".."):
            return b
names = [rand_name(rng.choice([1, 2, 7, 30, 100, 200, 254, 255])) for _ in range(60)]
names += ["Grüße-ñandú-日本語-😀".encode(), b"x" * 255, b"a.b.c", b"envelopefs.dirid", b"envelopefs.conf", b"L.abc", b".hidden"]
mb = os.fsencode(m)
os.mkdir(mb + b"/d1"); os.mkdir(mb + b"/d2")
for i, n in enumerate(names):
    with open(mb + b"/d1/" + n, "wb") as f:
        f.write(b"content %d" % i)
# a directory with a long name holding a file with a long name
os.mkdir(mb + b"/" + b"D" * 255)
open(mb + b"/" + b"D" * 255 + b"/" + b"f" * 250, "w").write("deep")
got = set(os.listdir(mb + b"/d1"))
assert got == set(names), (len(got), len(names), set(names) ^ got)
for i, n in enumerate(names):
    assert open(mb + b"/d1/" + n, "rb").read() == b"content %d" % i
# rename across directories re-encrypts the name; links in another directory work
for n in names[:20]:
    os.rename(mb + b"/d1/" + n, mb + b"/d2/" + n)
for n in names[20:30]:
    os.link(mb + b"/d1/" + n, mb + b"/d2/" + n)
assert set(os.listdir(mb + b"/d2")) == set(names[:30])
assert set(os.listdir(mb + b"/d1")) == set(names[20:])
os.rename(mb + b"/d2/" + names[0], mb + b"/d2/" + b"z" * 255)   # short -> long
os.rename(mb + b"/d2/" + b"z" * 255, mb + b"/d2/" + b"short")     # long -> short
assert open(mb + b"/d2/short", "rb").read() == b"content 0"
# no plaintext name anywhere under CIPHERDIR (backing names or file contents)
backing = []
for dp, dn, fn in os.walk(os.fsencode(c)):
    backing += dn + fn
blob = b"\0".join(backing)
contents = b"".join(open(os.path.join(dp, f), "rb").read() for dp, dn, fn in os.walk(os.fsencode(c)) for f in fn)
for n in names + [b"d1", b"d2", b"D" * 255, b"f" * 250]:
    if len(n) >= 4 and n not in (b"L.abc", b"envelopefs.dirid", b"envelopefs.conf"):  # fixed internal names exist by design
        assert n not in blob, ("plaintext name in a backing name", n)
        assert n not in contents, ("plaintext name inside a backing file", n)
print("names round-trip:", len(names), "names")
PY
# same name in two directories: different backing names
mkdir "$MNT/p1" "$MNT/p2"; echo 1 >"$MNT/p1/same"; echo 2 >"$MNT/p2/same"
fs_unmount
# find the two backing dirs holding one file each and compare their entry names
python3 - "$CIPHER" <<'PY'
import os, sys
c = sys.argv[1]
singles = []
for d in os.listdir(c):
    p = os.path.join(c, d)
    if os.path.isdir(p):
        ents = [e for e in os.listdir(p) if "." not in e]
        if len(ents) == 1 and os.path.isfile(os.path.join(p, ents[0])):
            singles.append(ents[0])
assert len(singles) == 2 and singles[0] != singles[1], singles
print("same name, two directories, two backing names")
PY
# remount: everything still there
fs_mount
[ "$(cat "$MNT/p1/same")" = 1 ] && [ "$(cat "$MNT/p2/same")" = 2 ] || fail "after remount"
[ "$(cat "$MNT/$(printf 'D%.0s' $(seq 255))/$(printf 'f%.0s' $(seq 250))")" = deep ] || fail "long names after remount"
fs_unmount
# move a backing entry into another backing directory: it must not appear there, fsck names it
python3 - "$CIPHER" <<'PY'
import os, sys
c = sys.argv[1]
dirs = [os.path.join(c, d) for d in os.listdir(c) if os.path.isdir(os.path.join(c, d))]
singles = [d for d in dirs if len([e for e in os.listdir(d) if "." not in e]) == 1]
src, dst = singles[0], singles[1]
e = [e for e in os.listdir(src) if "." not in e][0]
os.rename(os.path.join(src, e), os.path.join(dst, e))
PY
set +e; "$B" fsck "$CIPHER" >"$T/fsck.out"; rc=$?; set -e
[ $rc -eq 1 ] && grep -q "name fails authentication" "$T/fsck.out" || fail "fsck did not report the moved name: $(cat "$T/fsck.out")"
fs_mount
[ "$(ls "$MNT/p1" | wc -l)$(ls "$MNT/p2" | wc -l)" = 01 ] || [ "$(ls "$MNT/p1" | wc -l)$(ls "$MNT/p2" | wc -l)" = 10 ] || fail "moved entry shown: $(ls "$MNT/p1" "$MNT/p2")"
[ "$(ls "$MNT/p1" "$MNT/p2" 2>/dev/null | grep -c '^same$')" = 1 ] || fail "garbage name shown: $(ls -b "$MNT/p1" "$MNT/p2")"
fs_unmount
# Directory ids live in an xattr of each backing directory (config format 3); one removed is named by fsck
# and its entries are not shown as garbage.
grep -q '"dirids": "xattr"' "$CIPHER/envelopefs.conf" || fail "init did not keep directory ids in xattrs"
victim=$(python3 - "$CIPHER" <<'PY'
import os, sys
c = sys.argv[1]
d = [d for d in sorted(os.listdir(c)) if "." not in d and os.path.isdir(os.path.join(c, d)) and os.listdir(os.path.join(c, d))]
print(os.path.join(c, d[0]))
PY
)
[ ! -e "$victim/envelopefs.dirid" ] || fail "an id file beside the xattr"
getfattr --only-values -n user.envelopefs.dirid "$victim" | head -c 4 | grep -q EFD1 || fail "no directory id xattr on $victim"
setfattr -x user.envelopefs.dirid "$victim"
set +e; "$B" fsck "$CIPHER" >"$T/fsck.out"; rc=$?; set -e
[ $rc -eq 1 ] && grep -q "directory id missing or damaged" "$T/fsck.out" || fail "fsck did not report the missing id: $(cat "$T/fsck.out")"
echo "fs_names: all checks passed"
