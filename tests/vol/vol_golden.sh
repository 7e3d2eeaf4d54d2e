#!/usr/bin/env bash
# vol_golden.sh — golden volume stores (tests/vol/golden/vN, written by make-golden.sh with an earlier
# binary, never regenerated; v1 by commit af8bd3c, catalog format 1 without the later tables; v2 catalog
# format 2 with owner_lineages, owners, create_volume_permissions, copies, snapshot_signatures and
# snapshot_block_digests). On a copy of each, this build: describe-volumes / describe-snapshots show the
# recorded ids, sizes, states, keys, tags and owners, and the recorded default key; `volume fsck` is clean
# for every volume and snapshot; every snapshot downloads with the recorded SHA-256; v2: the signed
# snapshots verify (fsck --verify-signature) with the recorded manifest digests, the share and the lazy
# rekey state are as recorded. Then writes on the copy: a snapshot of every volume (downloads as the
# volume's recorded image), an attached volume read whole and written (where /dev/fuse is usable), a
# restored volume and a copy deleted, `volume sweep`, v2's `volume rekey` finished; everything still
# fscks and downloads as recorded. Last, a copy of v2 whose catalog format was raised to 3 is refused
# by every command with an error naming both formats, and left byte-identical.
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

check_read() { # the store as it was written: what describe shows, fsck, downloads, signatures
  local v=$1 s x
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
  for s in $(ex '.snapshots | keys[]'); do download_is "$s" "$(ex ".snapshots[\"$s\"].sha256")" "$v"; done
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
    download_is "$s" "$(sha "$T/model")" "$v: the written $w"
    rm -f "$T/model"
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

for d in "$GD"/v*/; do
  v=$(basename "$d"); E=$GD/$v/expected.json
  copy_store "$v"
  f0=$(sqlite3 "$CAT" "SELECT v FROM meta WHERE k = 'format'")
  [ "$f0" = "${v#v}" ] || fail "$v: the golden catalog is format $f0"   # vN holds catalog format N
  check_read "$v"
  check_write "$v"
  # reads and writes without a lazy rekey leave the format as it was (an older build can still open it)
  [ "$(sqlite3 "$CAT" "SELECT v FROM meta WHERE k = 'format'")" = "$f0" ] || fail "$v: the catalog's format changed from $f0"
  echo "vol_golden: $v (made by $(ex .made_by_commit | cut -c1-7)) reads as recorded and takes writes"
done
[ -d "$GD/v1" ] && [ -d "$GD/v2" ] || fail "golden stores v1 and v2 missing"

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
