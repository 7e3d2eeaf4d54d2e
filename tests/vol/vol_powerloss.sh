#!/usr/bin/env bash
# vol_powerloss.sh — power loss at the block level under a volume store. The store lives on an ext4 whose
# disk is DISK.img served by `nbdkit --filter=cache file DISK.img cache=writeback`: the cache filter keeps
# every write in an unlinked temporary file until the client sends FLUSH (or FUA), so kill -9 of nbdkit
# loses exactly the writes that were never flushed, as a disk with a volatile write cache does when the
# power goes. The kernel reaches the export through nbdfuse (the export as a file over FUSE) and a loop
# device with direct I/O over that file, so the outer ext4's flushes (fsync, journal commits) become NBD
# flushes. Inside the store: a volume attached with --loop, ext4 on it, files written in rounds, each round
# made durable with syncfs (so its checksums must survive), snapshots of the frozen filesystem between
# rounds. Then, during an unsynced write burst, the power is cut: nbdkit is killed first (its cache is
# gone), then everything above it is torn down (the attach daemon kill -9'd, lazy unmounts, loops
# detached). Recovery is a reboot: a fresh nbdkit on DISK.img, the outer ext4 mounted (its journal
# replayed), the volume attached again (the stale-daemon path), the inner ext4 mounted once (the kernel
# replays its journal, as a reboot would: e2fsck -n cannot replay a journal and -y would repair and so hide
# damage), every file read without an I/O error, every synced round's checksums as written, then
# unmounted and e2fsck -fn clean; `volume fsck` of the volume and of every snapshot clean, every snapshot
# restorable (e2fsck -fn clean, its checksums as at the snapshot), and after `volume sweep` every chunk
# file is named by a catalog row and every row's file exists. Four cuts at different moments (burst
# lengths), the rounds and snapshots accumulating across them; during the last, snapshots are also made
# and deleted under the burst: each whose create-snapshot returned exists (unless its delete had started)
# and restores to an ext4 clean after journal replay, each whose delete-snapshot returned stays deleted.
# First of all the premise: a write the device acknowledged but no flush covered is gone after a cut, a
# flushed one is not. Everything above DISK.img is torn down on failure as at a cut.
. "$(dirname "$0")/lib.sh" vol-powerloss fuse loop
for c in nbdkit nbdfuse fusermount3 losetup fsfreeze setsid python3; do
  command -v "$c" >/dev/null || { echo "FAIL: $c missing (scripts/deps)"; exit 1; }
done
nbdkit --filter=cache null --dump-plugin >/dev/null 2>&1 || { echo "FAIL: nbdkit's cache filter is missing (scripts/deps)"; exit 1; }
DISK=$T/disk.img
O=$T/outer                      # the outer ext4 (the store's filesystem): the store lives there, not in lib.sh's $T/store
export ENVELOPEFS_STORE=$O/store
VS=$O/store/volumes
M=$T/m                          # the inner ext4 (on the volume)
NBDKIT=; NBDFUSE=; OLOOP=; ILOOP=; BURST=; CHURN=

mounts_under() { # every mount point under $T, deepest first
  awk -v t="$T/" 'index($2, t) == 1 { print $2 }' /proc/self/mounts | sort -r
}
ours() { # ours PID VOL: PID is still the attach daemon of VOL this test started (never a reused pid)
  { tr '\0' ' ' < "/proc/$1/cmdline"; } 2>/dev/null | grep -q -- "volume attach $2 "
}
alive() { [ -e "/proc/$1" ] && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null; }   # a zombie is gone
stop_pid() { # stop_pid PID: kill -9 a process this test started and wait until it is gone
  [ -n "$1" ] || return 0
  { kill -9 "$1"; } 2>/dev/null || true
  for _ in $(seq 100); do alive "$1" || break; sleep 0.05; done
  { wait "$1"; } 2>/dev/null || true   # our own children: reaped without bash's "Killed" notice
}
teardown() { # everything above DISK.img, without a single flush reaching it once nbdkit is dead
  stop_pid "$NBDKIT"; NBDKIT=
  local p v
  while read -r p v; do ours "$p" "$v" && stop_pid "$p"; done < <(cat "$T/daemons" 2>/dev/null)
  : > "$T/daemons"
  for m in $(mounts_under); do umount -l "$m" 2>/dev/null || true; done
  for l in $ILOOP $(losetup -n -l -O NAME,BACK-FILE | awk -v t="$T/" 'index($2, t) == 1 { print $1 }') $OLOOP; do
    losetup -d "$l" 2>/dev/null || true
  done
  ILOOP=; OLOOP=
  if [ -n "$NBDFUSE" ]; then
    fusermount3 -uz "$T/fz" 2>/dev/null || true
    for _ in $(seq 100); do alive "$NBDFUSE" || break; sleep 0.05; done
    stop_pid "$NBDFUSE"; NBDFUSE=
  fi
}
stop_group() { # stop_group PID: kill -9 the process group a setsid this test started leads (a burst, a churn)
  [ -n "$1" ] || return 0
  { kill -9 -- "-$1"; } 2>/dev/null || true
  stop_pid "$1"
}
cleanup() { # a failed test leaves no mount, loop device or process behind
  local rc=$?
  cd /
  stop_group "$BURST"; stop_group "$CHURN"
  teardown
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT

up() { # [bare] power on: nbdkit (fresh, empty cache) on DISK.img, nbdfuse, a direct-I/O loop, the outer ext4
  rm -f "$T/nbd.sock" "$T/nbdkit.pid" "$T/nbdfuse.pid"
  TMPDIR=$T nbdkit -f -U "$T/nbd.sock" -P "$T/nbdkit.pid" --filter=cache file "$DISK" cache=writeback \
    >>"$T/nbdkit.log" 2>&1 &
  NBDKIT=$!; disown "$NBDKIT"   # killed on purpose: no "Killed" notice from bash
  for _ in $(seq 200); do [ -s "$T/nbdkit.pid" ] && break; sleep 0.05; done
  [ -s "$T/nbdkit.pid" ] || { cat "$T/nbdkit.log"; fail "nbdkit did not start"; }
  mkdir -p "$T/fz"
  nbdfuse -P "$T/nbdfuse.pid" "$T/fz/disk" --unix "$T/nbd.sock" >>"$T/nbdfuse.log" 2>&1 &
  NBDFUSE=$!; disown "$NBDFUSE"   # it aborts once nbdkit has gone
  for _ in $(seq 200); do [ -s "$T/nbdfuse.pid" ] && break; sleep 0.05; done
  [ -s "$T/nbdfuse.pid" ] || { cat "$T/nbdfuse.log"; fail "nbdfuse did not start"; }
  OLOOP=$(losetup --direct-io=on -f --show "$T/fz/disk")
  [ "$(losetup -n -O DIO "$OLOOP" | tr -d ' ')" = 1 ] || fail "the outer loop device is not using direct I/O"
  [ "${1:-}" = bare ] && return 0
  mkdir -p "$O"
  mount "$OLOOP" "$O"
}

sums() { (cd "$1" && find . -type f ! -path './lost+found*' -print0 | sort -z | xargs -0 -r sha256sum); }   # lib.sh's, but an empty tree too
freeze_snap() { # freeze_snap MNT VOL DESC → snapshot id (ext4 clean at the snapshot)
  fsfreeze -f "$1"; local s; s=$(q create-snapshot --volume-id "$2" --description "$3" --query SnapshotId) || { fsfreeze -u "$1"; exit 1; }
  fsfreeze -u "$1"; echo "$s"
}
attach() { # attach VOL → its loop device (lib.sh); the daemon's pid noted for the power cut
  attach_loop "$1"
  echo "$(pid_of "$1") $1" >> "$T/daemons"
}
round() { # round N: new files in r$N, then syncfs; their checksums are what must survive
  local n=$1 d=$M/r$1 i
  mkdir "$d"
  for i in 1 2 3; do head -c $(( (n * 37 + i * 211) % 900 + 64 ))k /dev/urandom > "$d/f$i"; done
  sync -f "$M"
  sums "$d" > "$T/round.$n"
  echo "$n" >> "$T/synced"
}
catalog_vs_files() { # [orphans-ok]: every chunk row's file exists; every chunk file is named by a row (unless
  # orphans-ok: then it prints how many are not); every map names a row
  python3 - "$VS" "${1:-}" <<'PY'
import os, sqlite3, sys
vs, orphans_ok = sys.argv[1], sys.argv[2] == "orphans-ok"
db = sqlite3.connect("file:%s/catalog.db?mode=ro" % vs, uri=True)
rows = {g for (g,) in db.execute("SELECT gen FROM chunks")}
mapped = {g for (g,) in db.execute("SELECT DISTINCT gen FROM maps")}
files = set()
for sub in os.listdir(vs + "/chunks"):
    p = os.path.join(vs, "chunks", sub)
    if len(sub) == 2 and os.path.isdir(p):
        files |= {int(f, 16) for f in os.listdir(p) if len(f) == 16}
bad = []
if rows - files: bad.append("chunk rows without a file: %s" % sorted(rows - files)[:10])
if files - rows and not orphans_ok: bad.append("chunk files no row names: %s" % sorted(files - rows)[:10])
if mapped - rows: bad.append("maps naming no chunk row: %s" % sorted(mapped - rows)[:10])
if bad:
    print("; ".join(bad)); sys.exit(1)
print(len(files - rows) if orphans_ok else "%d chunks, all present, none orphaned" % len(rows))
PY
}

churn_check() { # the churn's snapshots after the cut: a returned create-snapshot exists unless its delete had
  # started, a returned delete-snapshot stays deleted, at most one more (a create in flight) exists; each
  # that exists is whole (volume fsck), restores to an ext4 clean after journal replay, with every round
  # synced before the churn as it was
  local have s w d n
  have=$(q describe-snapshots --filters Name=volume-id,Values="$V" Name=description,Values=churn --query 'Snapshots[*].SnapshotId')
  python3 - "$T/churn" $have <<'PY' || fail "cut 4: the snapshots made and deleted under the burst"
import sys
created, deleting, deleted = set(), set(), set()
for line in open(sys.argv[1]):
    what, s = line.split()
    {"created": created, "deleting": deleting, "deleted": deleted}[what].add(s)
have = set(sys.argv[2:])
bad = []
if (created - deleting) - have: bad.append("created, never deleted, gone: %s" % sorted((created - deleting) - have))
if deleted & have: bad.append("deleted, back: %s" % sorted(deleted & have))
if len(have - created) > 1: bad.append("more than the one in flight: %s" % sorted(have - created))
if len(created) < 2: bad.append("the churn made only %d snapshots before the cut" % len(created))
if bad:
    print("; ".join(bad)); sys.exit(1)
print("churn: %d snapshots created, %d deleted before the cut; %d left" % (len(created), len(deleted), len(have)))
PY
  for s in $have; do
    "$B" volume fsck "$s" >"$T/vfsck.out" || { cat "$T/vfsck.out"; fail "cut 4: volume fsck of $s (made under the burst)"; }
    w=$(q create-volume --snapshot-id "$s" --query VolumeId)
    d=$(attach "$w")
    n=0; e2fsck -fy "$d" >"$T/fsck.out" 2>&1 || n=$?
    [ "$n" -lt 4 ] || { cat "$T/fsck.out"; fail "cut 4: e2fsck could not replay the restore of $s (exit $n)"; }
    e2fsck -fn "$d" >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "cut 4: the restore of $s is not clean after journal replay"; }
    mkdir -p "$T/mr"; mount -o ro "$d" "$T/mr"
    for n in $(cat "$T/synced"); do
      sums "$T/mr/r$n" | diff - "$T/round.$n" >&2 || fail "cut 4: round $n in the restore of $s (made under the burst)"
    done
    umount "$T/mr"; "$B" volume detach "$w"; "$B" ec2 delete-volume --volume-id "$w"
    "$B" ec2 delete-snapshot --snapshot-id "$s"
  done
}

# the premise: through the whole stack (loop, nbdfuse, nbdkit's cache), a write followed by a flush (fsync
# of the device) survives the cut; a write the device acknowledged, and reads back, but that no flush
# followed, is gone after it
truncate -s 2G "$DISK"
head -c 1M /dev/urandom > "$T/a"; head -c 1M /dev/urandom > "$T/b"
up bare
dd if="$T/a" of="$OLOOP" bs=1M seek=1 oflag=direct conv=fsync status=none
dd if="$T/b" of="$OLOOP" bs=1M seek=3 oflag=direct status=none
cmp -s <(dd if="$OLOOP" bs=1M skip=3 count=1 iflag=direct status=none) "$T/b" || fail "harness: the device does not read back its write"
cmp -s <(dd if="$DISK" bs=1M skip=3 count=1 status=none) "$T/b" && fail "harness: an unflushed write reached DISK.img"
teardown
cmp <(dd if="$DISK" bs=1M skip=1 count=1 status=none) "$T/a" || fail "harness: a flushed write did not survive the cut"
cmp -s <(dd if="$DISK" bs=1M skip=3 count=1 status=none) "$T/b" && fail "harness: an unflushed write survived the cut"
echo "harness: a flushed write survived the cut, an acknowledged unflushed one was dropped"
mkfs.ext4 -q -F -E nodiscard "$DISK"
up
"$B" kms init-store --generate-root-key >/dev/null
V=$(q create-volume --size 2 --query VolumeId)
ILOOP=$(attach "$V")
mkfs.ext4 -q -F -E nodiscard "$ILOOP"
mkdir -p "$M"
mount "$ILOOP" "$M"
sync -f "$M"
: > "$T/synced"; : > "$T/snaps"
N=0
for cut in 1 2 3 4; do
  # rounds, a snapshot after the second
  for k in 1 2 3; do
    N=$((N + 1)); round "$N"
    if [ "$k" = 2 ]; then
      s=$(freeze_snap "$M" "$V" "cut$cut")
      sums "$M" > "$T/snap.$s"; echo "$s" >> "$T/snaps"
    fi
  done
  # the unsynced burst: new files, and in-place rewrites of a scratch file whose older contents the rounds
  # synced (sectors of recorded chunks overwritten in place), never synced by us; ext4's own journal
  # commits and writeback still flush now and then, so the cut lands among the daemon's flushes
  case $cut in 1) LEN=0.5 MB=2;; 2) LEN=3 MB=8;; 3) LEN=7 MB=16;; 4) LEN=4 MB=8;; esac
  M=$M MB=$MB cut=$cut setsid bash -c 'i=0; while :; do
      head -c "${MB}M" /dev/urandom > "$M/burst.$cut.$((i % 6))"
      dd if=/dev/urandom of="$M/scratch" bs=4k count=64 seek=$(( (i * 97) % 512 )) conv=notrunc status=none
      i=$((i + 1))
    done' 2>/dev/null &
  BURST=$!; disown "$BURST"
  if [ "$cut" = 4 ]; then
    # and snapshots made and deleted under the burst (not frozen: crash-consistent), each step logged
    # once its command has returned, so the power goes during one of their catalog transactions or near it
    : > "$T/churn"
    B=$B V=$V L=$T/churn setsid bash -c 'p=; while :; do
        s=$("$B" ec2 create-snapshot --volume-id "$V" --description churn --query SnapshotId --output text) || exit
        echo "created $s" >> "$L"
        if [ -n "$p" ]; then
          echo "deleting $p" >> "$L"; "$B" ec2 delete-snapshot --snapshot-id "$p" || exit; echo "deleted $p" >> "$L"
        fi
        p=$s
      done' >/dev/null 2>&1 &
    CHURN=$!; disown "$CHURN"
  fi
  sleep "$LEN"
  # --- the power goes: nbdkit first, so nothing after this instant reaches DISK.img
  stop_pid "$NBDKIT"; NBDKIT=
  stop_group "$BURST"; BURST=; stop_group "$CHURN"; CHURN=
  teardown
  # --- power on
  up
  orphans=$(catalog_vs_files orphans-ok) || fail "cut $cut: after the cut, before any repair: $orphans"
  [ -e "$VS/run/$V.json" ] || fail "cut $cut: the dead daemon's run record did not survive (was it ever synced?)"
  [ "$(q describe-volumes --volume-ids "$V" --query 'Volumes[0].State')" = available ] || fail "cut $cut: the dead daemon keeps the volume in-use"
  ILOOP=$(attach "$V") || fail "cut $cut: the volume does not attach again"
  mount "$ILOOP" "$M" || fail "cut $cut: the inner ext4 does not mount (journal replay)"
  find "$M" -type f ! -path "$M/lost+found*" -print0 | xargs -0 -r cat > /dev/null 2>"$T/read.err" ||
    { cat "$T/read.err"; fail "cut $cut: a file reads with an error after the power cut (unsynced data may be old or new, never unreadable)"; }
  for n in $(cat "$T/synced"); do
    sums "$M/r$n" | diff - "$T/round.$n" >&2 || fail "cut $cut: round $n, synced before the cut, lost or changed"
  done
  umount "$M"
  e2fsck -fn "$ILOOP" >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "cut $cut: the inner ext4 is damaged after journal replay"; }
  "$B" volume detach "$V"
  # the orphans the cut left (files written or unlinked without their catalog change reaching the disk):
  # the sweep frees exactly those; then no row lacks its file and no file lacks its row
  freed=$("$B" volume sweep | python3 -c 'import json,sys; print(json.load(sys.stdin)["ChunksFreed"])')
  [ "$freed" = "$orphans" ] || fail "cut $cut: $orphans orphan chunk files after the cut, the sweep freed $freed"
  out=$(catalog_vs_files) || fail "cut $cut: after the sweep: $out"
  "$B" volume fsck "$V" >"$T/vfsck.out" || { cat "$T/vfsck.out"; fail "cut $cut: volume fsck of $V"; }
  for s in $(cat "$T/snaps"); do
    "$B" volume fsck "$s" >"$T/vfsck.out" || { cat "$T/vfsck.out"; fail "cut $cut: volume fsck of $s"; }
    W=$(q create-volume --snapshot-id "$s" --query VolumeId)
    DW=$(attach "$W")
    e2fsck -fn "$DW" >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "cut $cut: the restore of $s is not clean"; }
    mkdir -p "$T/mr"; mount -o ro "$DW" "$T/mr"
    sums "$T/mr" | diff - "$T/snap.$s" >&2 || fail "cut $cut: checksums of the restore of $s"
    umount "$T/mr"; "$B" volume detach "$W"; "$B" ec2 delete-volume --volume-id "$W"
  done
  [ "$cut" = 4 ] && churn_check
  out=$(catalog_vs_files) || fail "cut $cut: after the restores: $out"
  echo "cut $cut (burst ${LEN}s): $(wc -l < "$T/synced") synced rounds intact, $(wc -l < "$T/snaps") snapshots restorable, the sweep freed the cut's $orphans orphans; $out"
  # carry on from the recovered state; the burst files go (their blocks are reused by the next rounds)
  ILOOP=$(attach "$V")
  mount "$ILOOP" "$M"
  rm -f "$M"/burst.*
  sync -f "$M"
done
umount "$M"
"$B" volume detach "$V"
ILOOP=
umount "$O"
echo "vol_powerloss: ok"
