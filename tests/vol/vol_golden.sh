#!/usr/bin/env bash
# vol_golden.sh — golden volume stores (tests/vol/golden/vN, written by make-golden.sh with an earlier
# binary, never regenerated; v1 by commit af8bd3c, catalog format 1 without the later tables; v2 catalog
# format 2 with owner_lineages, owners, create_volume_permissions, copies, snapshot_signatures and
# snapshot_block_digests; v1 and v2 hold version-1 chunk files only; v3 version-2 chunk files, some with
# both slot areas in use, and a copy left pending by a killed copier). On a copy of each, this build:
# every chunk file has the recorded version (v3: the recorded counter in each slot of both areas);
# describe-volumes / describe-snapshots show the recorded ids, sizes, states, keys, tags and owners, and
# the recorded default key; `volume fsck` is clean for every volume and snapshot; every completed snapshot
# downloads with the recorded SHA-256; v2 and later: the signed snapshots verify (fsck --verify-signature)
# with the recorded manifest digests, the share and the lazy rekey state are as recorded. v3's pending
# copy: pending with the recorded Progress and copy_progress row, not downloadable, its source not
# deletable; `volume sweep` removes the killed batch's orphan chunk file; a rerun of the copy resumes it
# (same SnapshotId, "resuming … 3 of 5"), writes only the blocks left, completes it with the recorded
# copied/shared counts, and it downloads as its source and fscks clean. Then writes on the copy: a
# snapshot of every volume (downloads as the volume's recorded image), an attached volume read whole and
# written (where /dev/fuse is usable), a restored volume and a copy deleted, `volume sweep`, the lazy
# rekey finished (`volume rekey`); everything still fscks and downloads as recorded. Then one old chunk of
# the attached volume is made its own (every other volume and snapshot mapping it deleted) and written
# twice, each write flushed: a version-1 chunk is copied up into a new version-2 chunk, a version-2 chunk
# (v3) is written in place by the slot rule (the catalog's counters and the slots' show it); it reads back
# after a reattach and fscks clean. Last, a copy of v2 whose catalog format was raised to 3 is refused by
# every command with an error naming both formats, and left byte-identical.
. "$(dirname "$0")/lib.sh" vol-golden
command -v sqlite3 >/dev/null || fail "sqlite3 missing (scripts/deps)"
GD=$(cd "$(dirname "$0")" && pwd)/golden
CAT=$VS/catalog.db
sha() { openssl dgst -sha256 -r "$1" | cut -d' ' -f1; }
ex() { jq -r "$1" "$E"; }   # a field of the version's expected.json
copy_store() { # copy_store VERSION: a fresh copy of the golden store in $T/store (git keeps no modes)
  vol_cleanup_store
  cp -a "$GD/$1/store" "$T/store"
  chmod -R go-rwx "$T/store"; chmod 700 "$T/store" "$VS"; chmod 600 "$T/store/root.key" "$CAT"
}
vol_cleanup_store() {
  for v in $(ls "$VS"/run 2>/dev/null | sed -n 's/\.json$//p'); do "$B" volume detach "$v" >/dev/null 2>&1 || true; done
  rm -rf "$T/store"
}
download_is() { # download_is SNAP SHA256 WHAT
  rm -f "$T/dl"
  "$B" snapshot download "$1" "$T/dl" >/dev/null || fail "$3: download of $1"
  [ "$(sha "$T/dl")" = "$2" ] || fail "$3: $1 does not download as recorded"
  rm -f "$T/dl"
}
fsck_ids() { # fsck_ids WHAT ID...: each volume or snapshot is clean
  local what=$1 x; shift
  for x in "$@"; do "$B" volume fsck "$x" >"$T/fsck.out" 2>&1 || fail "$what: volume fsck $x: $(cat "$T/fsck.out")"; done
}
fsck_all() { # fsck_all WHAT: every volume and snapshot the store describes is clean
  fsck_ids "$1" $("$B" ec2 describe-volumes | jq -r '.Volumes[].VolumeId') $("$B" ec2 describe-snapshots | jq -r '.Snapshots[].SnapshotId')
}
fuse_ok() { [ -e /dev/fuse ] && [ -w /dev/fuse ]; }
chunk_path() { printf '%s/chunks/%02x/%016x' "$VS" $(($1 & 255)) "$1"; }
nfiles() { find "$VS/chunks" -type f | wc -l; }
# slots GEN SECTOR...: "area-0 counter,area-1 counter" of each sector's slots in that chunk file (0: a hole)
slots() {
  python3 - "$(chunk_path "$1")" "${@:2}" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
ctr = lambda o: struct.unpack("<I", d[o:o + 4])[0] if len(d) >= o + 4 else 0
print(" ".join("%d,%d" % (ctr(64 + 4128 * s), ctr(64 + 4128 * (s + 128))) for s in map(int, sys.argv[2:])))
PY
}
# ctrs GEN SECTOR...: the catalog's counters of those sectors at the last flush
ctrs() {
  python3 - "$CAT" "$@" <<'PY'
import sqlite3, struct, sys
r = sqlite3.connect(sys.argv[1]).execute("SELECT ctrs FROM chunks WHERE gen = ?", (int(sys.argv[2]),)).fetchone()
c = struct.unpack("<128I", r[0])
print(" ".join(str(c[int(s)]) for s in sys.argv[3:]))
PY
}

check_read() { # the store as it was written: chunk files, what describe shows, fsck, downloads, signatures
  local v=$1 s x
  python3 - "$E" "$VS" "$v" <<'PY' || fail "$v: the chunk files are not as recorded"
import json, os, sqlite3, struct, sys
exp, vs, v = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
want = exp.get("chunk_version", 1)   # v1 and v2 predate chunk version 2
path = lambda g: f"{vs}/chunks/{g & 0xff:02x}/{g:016x}"
n = 0
for r, _, fs in os.walk(f"{vs}/chunks"):
    for f in fs:
        h = open(os.path.join(r, f), "rb").read(6)
        assert h[:4] == b"EVC1" and struct.unpack("<H", h[4:])[0] == want, f"{v}: chunk {f}: {h!r}, not version {want}"
        n += 1
assert n, f"{v}: no chunk files"
for c in exp.get("chunk_areas", []):   # both areas of a version-2 chunk, each slot's counter as written
    d = open(path(c["gen"]), "rb").read()
    ctr = lambda o: struct.unpack("<I", d[o:o + 4])[0] if len(d) >= o + 4 else 0
    got = {str(s): [ctr(64 + 4128 * s), ctr(64 + 4128 * (s + 128))] for s in range(128)}
    got = {s: a for s, a in got.items() if a != [0, 0]}
    assert got == c["slots"], f"{v}: the slots of chunk {c['gen']}: {got} != {c['slots']}"
    assert any(a[1] > a[0] for a in got.values()), f"{v}: chunk {c['gen']}: no sector's newest slot in area 1"
    r = sqlite3.connect(f"file:{vs}/catalog.db?mode=ro", uri=True).execute("SELECT ctrs FROM chunks WHERE gen = ?", (c["gen"],)).fetchone()
    cat = {str(s): x for s, x in enumerate(struct.unpack("<128I", r[0])) if x}
    assert cat == c["catalog_ctrs"], f"{v}: the catalog's counters of chunk {c['gen']}: {cat} != {c['catalog_ctrs']}"
PY
  "$B" ec2 describe-volumes >"$T/volumes.json" || fail "$v: describe-volumes"
  "$B" ec2 describe-snapshots >"$T/snapshots.json" || fail "$v: describe-snapshots"
  "$B" ec2 get-ebs-default-kms-key-id >"$T/default.json" || fail "$v: get-ebs-default-kms-key-id"
  python3 - "$E" "$T" "$v" <<'PY' || fail "$v: describe output differs from the recorded"
import json, sys
exp, t, v = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
norm = lambda f, x: (x or []) if f == "Tags" else x   # an untagged item: no Tags or an empty list
def same(kind, key, got, want):
    got = {x[key]: x for x in got}
    assert set(got) == set(want), f"{v}: {kind}: {sorted(got)} != {sorted(want)}"
    for i, w in want.items():
        for f, val in w.items():
            if f != "sha256":
                assert norm(f, got[i].get(f)) == norm(f, val), f"{v}: {i}.{f}: {got[i].get(f)!r} != {val!r}"
same("volumes", "VolumeId", json.load(open(f"{t}/volumes.json"))["Volumes"], exp["volumes"])
same("snapshots", "SnapshotId", json.load(open(f"{t}/snapshots.json"))["Snapshots"], exp["snapshots"])
d = json.load(open(f"{t}/default.json"))["KmsKeyId"]
assert d == exp["default_kms_key_id"], f"{v}: default key {d} != {exp['default_kms_key_id']}"
PY
  fsck_ids "$v" $(ex '.volumes, .snapshots | keys[]')
  for s in $(ex '.snapshots | to_entries[] | select(.value.State == "completed") | .key'); do
    download_is "$s" "$(ex ".snapshots[\"$s\"].sha256")" "$v"
  done
  for s in $(ex '.signed[]'); do
    "$B" volume fsck "$s" --verify-signature >"$T/verify.json" 2>&1 || fail "$v: fsck --verify-signature $s: $(cat "$T/verify.json")"
    python3 - "$E" "$T/verify.json" "$s" <<'PY' || fail "$v: the signature of $s: $(cat "$T/verify.json")"
import json, sys
want, r, s = json.load(open(sys.argv[1]))["signatures"][sys.argv[3]], json.load(open(sys.argv[2])), sys.argv[3]
assert r["Result"] == "Valid" and r["SignatureValid"] is True and r["ManifestMatches"] and r["SectorsAuthenticated"], r
for f, val in want.items():
    if f == "Source":
        for g, sv in val.items():
            assert r["Source"].get(g) == sv, (f, g, r["Source"].get(g), sv)
        assert r["Source"]["SignatureValid"] is True, r["Source"]   # (SameBlocks: false for a re-encrypted copy)
    else:
        assert r[f] == val, (f, r[f], val)
PY
  done
  if [ "$(ex '.shared // empty')" ]; then
    for s in $(ex '.shared | keys[]'); do
      [ "$(q describe-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission \
            --query 'CreateVolumePermissions[*].UserId')" = "$(ex ".shared[\"$s\"] | join(\"\t\")")" ] ||
        fail "$v: the accounts $s is shared with"
    done
  fi
  if [ "$(ex '.lazy_rekey // empty')" ]; then
    x=$(ex .lazy_rekey.volume)
    [ "$("$B" volume status "$x" --query RekeyState --output text)" = "$(ex .lazy_rekey.RekeyState)" ] ||
      fail "$v: rekey state of $x"
    [ "$("$B" volume status "$x" --query BlocksOnOtherKeys --output text)" = "$(ex .lazy_rekey.BlocksOnOtherKeys)" ] ||
      fail "$v: blocks of $x on other keys"
    [ "$("$B" volume status "$x" --query SourceKmsKeyIds --output json | jq -c .)" = "$(ex .lazy_rekey.SourceKmsKeyIds | jq -c .)" ] ||
      fail "$v: the source keys of $x"
  fi
}

snap_state() { # "State Progress" of snapshot $1
  echo "$(q describe-snapshots --snapshot-ids "$1" --query 'Snapshots[0].State') $(q describe-snapshots --snapshot-ids "$1" --query 'Snapshots[0].Progress')"
}
check_pending() { # v3: the copy its killed copier left pending is as recorded, then resumed to completion
  local v=$1 p src n0 out x
  p=$(ex .pending_copy.snapshot); src=$(ex .pending_copy.source_snapshot)
  [ "$(snap_state "$p")" = "pending $(ex .pending_copy.Progress)" ] || fail "$v: the pending copy $p shows $(snap_state "$p")"
  [ "$(sqlite3 -separator ' ' "$CAT" "SELECT source_snapshot, base, key_arn, blocks_total, blocks_done, blocks_copied,
        blocks_shared, next_block, runs FROM copy_progress WHERE snapshot = '$p'")" = \
    "$(ex '.pending_copy | [.source_snapshot, .base, .key_arn, .blocks_total, .blocks_done, .blocks_copied, .blocks_shared, .next_block, .runs] | join(" ")')" ] ||
    fail "$v: the copy_progress row of $p"
  expect_err IncorrectState "$B" snapshot download "$p" "$T/dl"   # not completed: nothing to read yet
  [ ! -e "$T/dl" ] || fail "$v: a download of the pending $p wrote an image"
  expect_err InvalidSnapshot.InUse "$B" ec2 delete-snapshot --snapshot-id "$src"
  for x in $(ex '.pending_copy.orphans[]'); do [ -e "$(chunk_path "$x")" ] || fail "$v: the orphan chunk $x is missing"; done
  n0=$(nfiles)
  "$B" volume sweep >/dev/null || fail "$v: volume sweep with a copy pending"
  for x in $(ex '.pending_copy.orphans[]'); do [ ! -e "$(chunk_path "$x")" ] || fail "$v: the sweep left the orphan chunk $x"; done
  [ "$(nfiles)" = $((n0 - $(ex '.pending_copy.orphans | length'))) ] || fail "$v: the sweep removed more than the orphans"
  n0=$(nfiles)
  out=$(q copy-snapshot --source-snapshot-id "$src" --kms-key-id "$(ex .pending_copy.key_alias)" --query SnapshotId 2>"$T/resume.err") ||
    fail "$v: resuming $p: $(cat "$T/resume.err")"
  [ "$out" = "$p" ] || fail "$v: the rerun made $out, not $p"
  grep -q "resuming the interrupted copy $p of $src: $(ex .pending_copy.blocks_done) of $(ex .pending_copy.blocks_total) blocks already recorded" \
    "$T/resume.err" || fail "$v: the rerun does not say it resumes $p: $(cat "$T/resume.err")"
  [ "$(nfiles)" = $((n0 + $(ex '.pending_copy.completed.blocks_copied - .pending_copy.blocks_copied'))) ] ||
    fail "$v: the resumed copy wrote $(($(nfiles) - n0)) chunk files"
  [ "$(snap_state "$p")" = "completed 100%" ] || fail "$v: the resumed copy $p is $(snap_state "$p")"
  [ "$(sqlite3 -separator ' ' "$CAT" "SELECT source_snapshot, base, blocks_copied, blocks_shared FROM copies WHERE snapshot = '$p'")" = \
    "$src $(ex .pending_copy.base) $(ex .pending_copy.completed.blocks_copied) $(ex .pending_copy.completed.blocks_shared)" ] ||
    fail "$v: the copies row of the resumed $p"
  [ "$(sqlite3 "$CAT" "SELECT count(*) FROM copy_progress")" = 0 ] || fail "$v: a progress row stays after the resume"
  download_is "$p" "$(ex ".snapshots[\"$p\"].sha256")" "$v: the resumed copy"
  download_is "$src" "$(ex ".snapshots[\"$src\"].sha256")" "$v: the resumed copy's source"
  fsck_ids "$v: the resumed copy" "$p" "$src"
  [ "$("$B" volume sweep | tr -dc 0-9)" = 0 ] || fail "$v: orphans after the resumed copy"
  echo "vol_golden: $v: the pending copy $p resumed from $(ex .pending_copy.blocks_done) of $(ex .pending_copy.blocks_total) blocks to completion"
}

check_write() { # writes on the copy of an old store, which then still reads as recorded
  local v=$1 x s w img restored copy
  # a snapshot of every volume: its image is the volume's
  for x in $(ex '.volumes | keys[]'); do
    s=$(q create-snapshot --volume-id "$x" --description "golden check" --query SnapshotId) || fail "$v: create-snapshot of $x"
    download_is "$s" "$(ex ".volumes[\"$x\"].sha256")" "$v: snapshot of $x"
  done
  # an attached volume: read whole through the data path, then written (copy on write of a shared block)
  w=$(ex '[.volumes | to_entries[] | select(.value.Tags != null and (.value.Tags | length) > 0)][0].key')
  if fuse_ok; then
    "$B" volume attach "$w" >/dev/null || fail "$v: attach $w"
    img=$(q describe-volumes --volume-ids "$w" --query 'Volumes[0].Attachments[0].Device')
    [ "$(sha "$img")" = "$(ex ".volumes[\"$w\"].sha256")" ] || fail "$v: the attached $w does not read as recorded"
    cp --sparse=always "$img" "$T/model"
    for f in "$img" "$T/model"; do   # block 9 (shared with a snapshot) and block 20 (never written)
      printf 'golden %s write' "$v" | dd of="$f" bs=4096 seek=$((9 * 128 + 1)) conv=notrunc,fsync status=none
      printf 'golden %s new' "$v" | dd of="$f" bs=4096 seek=$((20 * 128)) conv=notrunc,fsync status=none
    done
    "$B" volume detach "$w" >/dev/null || fail "$v: detach $w"
    s=$(q create-snapshot --volume-id "$w" --description "golden written" --query SnapshotId)
    download_is "$s" "$(sha "$T/model")" "$v: the written $w"   # $T/model: $w's image (check_own_write)
  else
    echo "note: /dev/fuse not usable: the attached write is skipped"
  fi
  # delete a restored volume and a copy; sweep; the snapshots they shared chunks with are whole
  restored=$(ex '(.lazy_rekey.volume // "") as $lr | [.volumes | to_entries[] | select((.value.SnapshotId // "") != "" and .key != $lr)][0].key')
  copy=$(ex '[.snapshots | to_entries[] | select(.value.Description == "golden-copy")][0].key')
  q delete-volume --volume-id "$restored" >/dev/null || fail "$v: delete-volume $restored"
  q delete-snapshot --snapshot-id "$copy" >/dev/null || fail "$v: delete-snapshot $copy"
  "$B" volume sweep >/dev/null || fail "$v: volume sweep"
  for s in "$(ex ".volumes[\"$restored\"].SnapshotId")" "$(ex '[.snapshots | to_entries[] | select(.value.Description == "golden-second")][0].key')"; do
    download_is "$s" "$(ex ".snapshots[\"$s\"].sha256")" "$v: after the deletes"   # what they shared chunks with
  done
  if [ "$(ex '.lazy_rekey // empty')" ]; then   # finish the lazy rekey: the volume is then on its own key only
    x=$(ex .lazy_rekey.volume)
    "$B" volume rekey "$x" >/dev/null || fail "$v: volume rekey $x"
    [ "$("$B" volume status "$x" --query BlocksOnOtherKeys --output text)" = 0 ] || fail "$v: blocks left after rekey"
    s=$(q create-snapshot --volume-id "$x" --description "golden rekeyed" --query SnapshotId)
    download_is "$s" "$(ex ".volumes[\"$x\"].sha256")" "$v: $x after rekey"
    for s in $(ex '.signed[]'); do
      "$B" volume fsck "$s" --verify-signature >/dev/null || fail "$v: $s after rekey"
    done
  fi
  fsck_all "$v: after the writes"
}

# write_at IMAGE MODEL OFFSET SEED LEN: the same bytes (random.Random(SEED)) into both, flushed (fsync)
write_at() {
  python3 - "$@" <<'PY'
import os, random, sys
img, model, off, seed, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
data = random.Random(seed).randbytes(n)
for p in (img, model):
    with open(p, "r+b") as f:
        f.seek(off); f.write(data); f.flush(); os.fsync(f.fileno())
PY
}

check_own_write() { # a chunk of the attached volume from the golden store, no longer shared, written
  local v=$1 w b g g2 ver o img s
  fuse_ok || { echo "note: /dev/fuse not usable: the write to an own old chunk is skipped"; return 0; }
  w=$(ex '[.volumes | to_entries[] | select(.value.Tags != null and (.value.Tags | length) > 0)][0].key')
  b=$(ex '.chunk_areas[0].block // 0'); ver=$(ex '.chunk_version // 1')
  g=$(sqlite3 "$CAT" "SELECT gen FROM maps WHERE owner = '$w' AND block = $b")
  [ -n "$g" ] || fail "$v: $w has no block $b"
  # every other volume and snapshot that maps it goes: the chunk is then $w's own (refs 1)
  for o in $(sqlite3 "$CAT" "SELECT owner FROM maps WHERE gen = $g AND owner != '$w'"); do
    case $o in
      vol-*) q delete-volume --volume-id "$o" >/dev/null || fail "$v: delete-volume $o" ;;
      *) q delete-snapshot --snapshot-id "$o" >/dev/null || fail "$v: delete-snapshot $o" ;;
    esac
  done
  "$B" volume sweep >/dev/null || fail "$v: volume sweep"
  [ "$(sqlite3 "$CAT" "SELECT refs FROM chunks WHERE gen = $g")" = 1 ] || fail "$v: chunk $g is still shared"
  [ "$(head -c 6 "$(chunk_path "$g")" | od -An -tu2 -j4 | tr -d ' ')" = "$ver" ] || fail "$v: chunk $g is not version $ver"
  "$B" volume attach "$w" >/dev/null || fail "$v: attach $w"
  img=$(q describe-volumes --volume-ids "$w" --query 'Volumes[0].Attachments[0].Device')
  [ "$(sha "$img")" = "$(sha "$T/model")" ] || fail "$v: the attached $w does not read as written"
  write_at "$img" "$T/model" $((b * 524288 + 4096)) "golden own 1" 8192   # sectors 1 and 2
  write_at "$img" "$T/model" $((b * 524288 + 2 * 4096)) "golden own 2" 4096   # sector 2 again, after a flush
  "$B" volume detach "$w" >/dev/null || fail "$v: detach $w"
  g2=$(sqlite3 "$CAT" "SELECT gen FROM maps WHERE owner = '$w' AND block = $b")
  if [ "$ver" = 1 ]; then   # copied up at the first write: a new version-2 chunk, the old one freed
    [ "$g2" != "$g" ] || fail "$v: the version-1 chunk $g was written in place"
    [ "$(head -c 6 "$(chunk_path "$g2")" | od -An -tu2 -j4 | tr -d ' ')" = 2 ] || fail "$v: the copied-up chunk $g2 is not version 2"
    "$B" volume sweep >/dev/null || fail "$v: volume sweep"
    [ ! -e "$(chunk_path "$g")" ] && [ -z "$(sqlite3 "$CAT" "SELECT gen FROM chunks WHERE gen = $g")" ] ||
      fail "$v: the version-1 chunk $g stays after its copy-up"
  else   # written in place by the slot rule: sector 1 (flushed 2, area 1) takes 3 (area 0); sector 2
         # (flushed 3, area 0) takes 4 (area 1), and after that flush 5 (area 0)
    [ "$g2" = "$g" ] || fail "$v: the version-2 chunk $g, $w's own, was copied to $g2"
    [ "$(ctrs "$g" 0 1 2 3)" = "1 3 5 1" ] || fail "$v: the catalog's counters of chunk $g: $(ctrs "$g" 0 1 2 3)"
    [ "$(slots "$g" 0 1 2 3)" = "1,0 3,2 5,4 1,0" ] || fail "$v: the slots of chunk $g: $(slots "$g" 0 1 2 3)"
  fi
  "$B" volume attach "$w" >/dev/null || fail "$v: reattach $w"
  img=$(q describe-volumes --volume-ids "$w" --query 'Volumes[0].Attachments[0].Device')
  [ "$(sha "$img")" = "$(sha "$T/model")" ] || fail "$v: $w does not read back as written after the reattach"
  "$B" volume detach "$w" >/dev/null || fail "$v: detach $w"
  s=$(q create-snapshot --volume-id "$w" --description "golden own write" --query SnapshotId)
  download_is "$s" "$(sha "$T/model")" "$v: the snapshot of $w after the write"
  fsck_all "$v: after the write to an own chunk"
  rm -f "$T/model"
  echo "vol_golden: $v: a version-$ver chunk of $w, its own, written (copied up: $([ "$g2" != "$g" ] && echo yes || echo no)) and read back"
}

for d in "$GD"/v*/; do
  v=$(basename "$d"); E=$GD/$v/expected.json
  copy_store "$v"
  f0=$(sqlite3 "$CAT" "SELECT v FROM meta WHERE k = 'format'")
  [ "$f0" = "$(ex ".catalog_format // ${v#v}")" ] || fail "$v: the golden catalog is format $f0"   # v1, v2: format N; later: recorded
  check_read "$v"
  [ -z "$(ex '.pending_copy // empty')" ] || check_pending "$v"
  check_write "$v"
  check_own_write "$v"
  # reads and writes without a lazy rekey leave the format as it was (an older build can still open it)
  [ "$(sqlite3 "$CAT" "SELECT v FROM meta WHERE k = 'format'")" = "$f0" ] || fail "$v: the catalog's format changed from $f0"
  echo "vol_golden: $v (made by $(ex .made_by_commit | cut -c1-7)) reads as recorded and takes writes"
done
[ -d "$GD/v1" ] && [ -d "$GD/v2" ] && [ -d "$GD/v3" ] || fail "golden stores v1, v2 and v3 missing"

# a catalog from a newer format: refused by every command, naming both formats, and left unchanged
E=$GD/v2/expected.json
copy_store v2
sqlite3 "$CAT" "UPDATE meta SET v = '3' WHERE k = 'format'"
[ ! -e "$CAT-wal" ] || fail "sqlite3 left a WAL"
before=$(sha "$CAT")
listing() { (cd "$VS" && find . -path ./run -prune -o -print | sort); }
listing >"$T/listing.before"
x=$(ex '.volumes | keys[0]'); s=$(ex '.snapshots | keys[0]')
for cmd in "ec2 describe-volumes" "ec2 describe-snapshots" "ec2 create-volume --size 1" \
           "ec2 create-snapshot --volume-id $x" "ec2 delete-snapshot --snapshot-id $s" "volume fsck $x" \
           "volume attach $x" "snapshot download $s $T/dl" "volume sweep"; do
  rc=0; out=$("$B" $cmd 2>&1) || rc=$?
  [ "$rc" != 0 ] || fail "a format-3 catalog was accepted by $cmd"
  case $out in *"format 3"*"format 2"*) ;; *) fail "$cmd: the refusal does not name both formats: $out";; esac
  [ "$(sha "$CAT")" = "$before" ] || fail "$cmd changed a catalog from a newer format"
  [ ! -s "$CAT-wal" ] || fail "$cmd left a WAL beside a catalog from a newer format"
done
[ ! -e "$T/dl" ] || fail "a download from a refused catalog wrote an image"
listing | diff "$T/listing.before" - || fail "a refused catalog's store changed"
echo "vol_golden: a format-3 catalog is refused, naming both formats, and left byte-identical"
echo "vol_golden: all checks passed"
