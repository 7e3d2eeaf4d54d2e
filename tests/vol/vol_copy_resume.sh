#!/usr/bin/env bash
# vol_copy_resume.sh — copy-snapshot under another key is honest and resumable (issue 15). A snapshot of
# NB written blocks (one random sector each: small chunk files, still one re-seal and one sync per block) is
# copied in batches (ENVELOPEFS_COPY_BATCH=8); while the copier runs, the copy is visible to
# describe-snapshots from other processes as `pending` with 0 < Progress < 100, the same copy-snapshot is
# refused (in progress, naming the copier's pid), the pending copy cannot be deleted, nor its source
# (InvalidSnapshot.InUse). Killed with -9, it stays pending (never completed); the rerun resumes it: the
# same SnapshotId, "resuming … D of NB blocks", and it writes only the NB - D blocks left (chunk files
# counted after sweeping the killed batch's orphans); the copy downloads the source's bytes (sha256),
# passes volume fsck, and the sweep leaves no orphan file and no row without its file. A pending copy
# whose copier is dead is deleted and frees its chunks. The same from another region (--source-region,
# the source store read only). A catalog from before copy_progress opens and gains it.
. "$(dirname "$0")/lib.sh" vol-copy-resume
export ENVELOPEFS_COPY_BATCH=8
export ENVELOPEFS_TEST_COPY_BLOCK_DELAY_MS=10  # test-only (src/cmd_ec2.c): a copy of NB blocks takes >= NB x 10 ms, so it can be watched and killed
NB=384
A=$ENVELOPEFS_STORE E=$T/euw1 R=$T/regions.json
nfiles() { find "$1/volumes/chunks" -type f | wc -l; }
state() { # state STORE SNAP: "State Progress" as describe-snapshots shows them
  local d=("$B" ec2 --store "$1" describe-snapshots --snapshot-ids "$2" --output text --query)
  echo "$("${d[@]}" 'Snapshots[0].State') $("${d[@]}" 'Snapshots[0].Progress')"
}
# watch STORE PID MIN kill|wait: once the copy in progress in STORE has MIN blocks recorded, print its id
# (and kill -9 PID first with kill); fails if PID ends before
watch() {
  python3 - "$1/volumes/catalog.db" "$2" "$3" "$4" <<'PY'
import os, signal, sqlite3, sys, time
db, pid, need, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def alive():
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False
end = time.time() + 300
while time.time() < end and alive():
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        r = c.execute("SELECT snapshot FROM copy_progress WHERE blocks_done >= ?", (need,)).fetchone()
        c.close()
    except sqlite3.Error:
        r = None
    if r:
        if mode == "kill":
            os.kill(pid, signal.SIGKILL)
        print(r[0])
        sys.exit(0)
    time.sleep(0.005)
sys.exit("the copy ended (or never got to %d blocks) before it could be watched" % need)
PY
}
catq() { python3 -c 'import sqlite3,sys; r=sqlite3.connect(sys.argv[1]).execute(sys.argv[2], sys.argv[3:]).fetchone(); print(" ".join(map(str, r)) if r else "none")' "$1/volumes/catalog.db" "$2" "${@:3}"; }
# every chunk file has its row and every row its file
consistent() {
  python3 - "$1/volumes" <<'PY'
import os, sqlite3, sys
d = sys.argv[1]
rows = {r[0] for r in sqlite3.connect(d + "/catalog.db").execute("SELECT gen FROM chunks")}
files = {int(f, 16) for _, _, fs in os.walk(d + "/chunks") for f in fs}
if rows != files:
    sys.exit("chunk rows without files: %s; files without rows: %s" % (sorted(rows - files)[:5], sorted(files - rows)[:5]))
PY
}

"$B" kms init-store --generate-root-key --region us-east-1 >/dev/null
K2=$("$B" kms create-key --description copies --query KeyMetadata.Arn --output text)

# --- the source: NB blocks of one random 4 KiB sector each, holes around
python3 - "$T/img" $NB <<'PY'
import os, sys
n = int(sys.argv[2])
with open(sys.argv[1], "wb") as f:
    for i in range(n):
        f.seek(i * 524288 + (i % 128) * 4096)
        f.write(os.urandom(4096))
    f.truncate(n * 524288)
PY
S=$("$B" snapshot upload "$T/img" --query SnapshotId --output text)
SIZE=$((NB * 524288))
want=$(sha256sum "$T/img" | cut -d' ' -f1)
n0=$(nfiles "$A")
[ "$n0" = "$NB" ] || fail "the source has $n0 chunk files, expected $NB"

# --- a copy under K2, watched while it runs, then killed with -9
"$B" ec2 copy-snapshot --source-snapshot-id "$S" --kms-key-id "$K2" --query SnapshotId --output text >"$T/c1" 2>&1 &
CP=$!
C=$(watch "$A" $CP 24 wait) || fail "watching the copy: $(cat "$T/c1")"
read -r st pr <<<"$(state "$A" "$C")"
[ "$st" = pending ] || fail "a running copy is $st"
p=${pr%\%}
[ "$p" -gt 0 ] && [ "$p" -lt 100 ] || fail "a running copy shows Progress '$pr'"
expect_err IncorrectState "$B" ec2 copy-snapshot --source-snapshot-id "$S" --kms-key-id "$K2"
out=$("$B" ec2 copy-snapshot --source-snapshot-id "$S" --kms-key-id "$K2" 2>&1) && fail "a second copier ran"
case $out in *"The copy $C of snapshot '$S' under this key is in progress (copy-snapshot pid $CP)"*) ;;
  *) fail "the refusal does not name the running copy and its pid: $out";; esac
expect_err IncorrectState "$B" ec2 delete-snapshot --snapshot-id "$C"
expect_err InvalidSnapshot.InUse "$B" ec2 delete-snapshot --snapshot-id "$S"
watch "$A" $CP 48 kill >/dev/null || fail "the copy ended before it could be killed: $(cat "$T/c1")"
wait $CP 2>/dev/null && fail "the killed copy exited 0"
read -r st pr <<<"$(state "$A" "$C")"
p=${pr%\%}
[ "$st" = pending ] || fail "a killed copy is $st"
[ "$p" -gt 0 ] && [ "$p" -lt 100 ] || fail "a killed copy shows Progress '$pr'"
q describe-snapshots --snapshot-ids "$C" --query 'Snapshots[0].KmsKeyId' | grep -qx "$K2" || fail "the pending copy's key"
expect_err IncorrectState "$B" snapshot download "$C" "$T/early"     # not completed: nothing to read yet
expect_err InvalidSnapshot.InUse "$B" ec2 delete-snapshot --snapshot-id "$S"   # its copier is dead, the copy still pending
D=$(catq "$A" "SELECT blocks_done FROM copy_progress WHERE snapshot = ?" "$C")
[ "$D" -ge 48 ] && [ "$D" -lt "$NB" ] && [ $((D % 8)) = 0 ] || fail "the killed copy recorded $D blocks"
"$B" volume sweep >/dev/null   # the killed batch's orphan files
[ "$(nfiles "$A")" = $((n0 + D)) ] || fail "after the sweep: $(nfiles "$A") chunk files, expected $n0 + $D"
consistent "$A" || fail "rows and files differ after the kill"

# --- the rerun (on a terminal: the progress line) resumes it: the same id, only the blocks left
script -qec "'$B' ec2 copy-snapshot --source-snapshot-id $S --kms-key-id $K2 --query SnapshotId --output text" \
  /dev/null >"$T/rerun" </dev/null || fail "the rerun failed: $(cat "$T/rerun")"
grep -q "resuming the interrupted copy $C of $S: $D of $NB blocks already recorded" "$T/rerun" \
  || fail "the rerun does not say it resumes $C from $D: $(cat "$T/rerun")"
grep -q "copying $S: $NB/$NB blocks (100%)" "$T/rerun" || fail "no progress line: $(cat "$T/rerun")"
[ "$(tr -d '\r' <"$T/rerun" | tail -1)" = "$C" ] || fail "the rerun printed another SnapshotId: $(cat "$T/rerun")"
[ "$(nfiles "$A")" = $((n0 + NB)) ] || fail "the rerun wrote $(( $(nfiles "$A") - n0 - D )) chunk files, expected $((NB - D))"
[ "$(state "$A" "$C")" = "completed 100%" ] || fail "the resumed copy is $(state "$A" "$C")"
[ "$(catq "$A" "SELECT blocks_copied, blocks_shared FROM copies WHERE snapshot = ?" "$C")" = "$NB 0" ] || fail "the copy's record"
[ "$(catq "$A" "SELECT count(*) FROM copy_progress")" = 0 ] || fail "a completed copy keeps its progress row"
[ -e "$VS/run/$C.lock" ] && fail "a completed copy keeps its lock file"
"$B" snapshot download "$C" "$T/out" >/dev/null
[ "$(head -c $SIZE "$T/out" | sha256sum | cut -d' ' -f1)" = "$want" ] || fail "the resumed copy downloads other bytes"
"$B" volume fsck "$C" >/dev/null || fail "fsck of the resumed copy"
[ "$("$B" volume sweep | tr -dc 0-9)" = 0 ] || fail "the sweep found orphans after the resumed copy"
consistent "$A" || fail "rows and files differ after the resumed copy"

# --- a pending copy whose copier died is deleted: its chunks go, the source is deletable again
"$B" ec2 copy-snapshot --source-snapshot-id "$S" --kms-key-id "$K2" >"$T/c2" 2>&1 &
CP=$!
C2=$(watch "$A" $CP 16 kill) || fail "the second copy ended before it could be killed: $(cat "$T/c2")"
wait $CP 2>/dev/null || true
[ "$C2" != "$C" ] || fail "a new copy reused the completed one's id"
[ "$(state "$A" "$C2" | cut -d' ' -f1)" = pending ] || fail "the second killed copy is not pending"
q delete-snapshot --snapshot-id "$C2" >/dev/null || fail "delete-snapshot of a dead copier's copy"
expect_err InvalidSnapshot.NotFound "$B" ec2 describe-snapshots --snapshot-ids "$C2"
[ "$(nfiles "$A")" = $((n0 + NB)) ] || fail "the deleted pending copy left $(( $(nfiles "$A") - n0 - NB )) chunk files"
[ -e "$VS/run/$C2.lock" ] && fail "the deleted copy's lock file stays"
consistent "$A" || fail "rows and files differ after deleting a pending copy"

# --- from another region: the same, the source store read only
"$B" kms init-store --store "$E" --generate-root-key --region eu-west-1 >/dev/null
printf '{"regions": {"us-east-1": {"store": "%s"}, "eu-west-1": {"store": "%s"}}}\n' "$A" "$E" >"$R"
ee() { "$B" ec2 --store "$E" --regions "$R" "$@"; }
"$B" ec2 --store "$E" --regions "$R" copy-snapshot --source-snapshot-id "$S" --source-region us-east-1 >"$T/x1" 2>&1 &
CP=$!   # the copier itself (not a subshell), for kill -9
X=$(watch "$E" $CP 16 kill) || fail "the copy between regions ended before it could be killed: $(cat "$T/x1")"
wait $CP 2>/dev/null || true
read -r st pr <<<"$(state "$E" "$X")"
p=${pr%\%}
[ "$st" = pending ] && [ "$p" -gt 0 ] && [ "$p" -lt 100 ] || fail "the killed copy between regions shows $st $pr"
[ "$(ee describe-snapshots --snapshot-ids "$X" --query 'Snapshots[0].Description' --output text)" = "[Copied $S from us-east-1]" ] \
  || fail "the pending copy's description"
DX=$(catq "$E" "SELECT blocks_done FROM copy_progress WHERE snapshot = ?" "$X")
"$B" volume --store "$E" sweep >/dev/null
[ "$(nfiles "$E")" = "$DX" ] || fail "after the sweep: $(nfiles "$E") chunk files in eu-west-1, expected $DX"
ee copy-snapshot --source-snapshot-id "$S" --source-region us-east-1 --query SnapshotId --output text >"$T/x2" 2>"$T/x2.err" \
  || fail "the rerun between regions: $(cat "$T/x2.err")"
[ "$(cat "$T/x2")" = "$X" ] || fail "the rerun between regions made $(cat "$T/x2"), not $X"
grep -q "resuming the interrupted copy $X of $S: $DX of $NB" "$T/x2.err" || fail "no resume line: $(cat "$T/x2.err")"
[ "$(nfiles "$E")" = "$NB" ] || fail "the copy between regions stored $(nfiles "$E") chunk files"
[ "$(state "$E" "$X")" = "completed 100%" ] || fail "the resumed copy between regions is $(state "$E" "$X")"
"$B" snapshot --store "$E" download "$X" "$T/outx" >/dev/null
[ "$(head -c $SIZE "$T/outx" | sha256sum | cut -d' ' -f1)" = "$want" ] || fail "the copy between regions differs"
"$B" volume --store "$E" fsck "$X" >/dev/null || fail "fsck of the copy between regions"
[ "$("$B" volume --store "$E" sweep | tr -dc 0-9)" = 0 ] || fail "orphans in eu-west-1"
consistent "$E" || fail "rows and files differ in eu-west-1"

# --- the source is deletable once no copy of it is pending; a catalog from before copy_progress opens
q delete-snapshot --snapshot-id "$S" >/dev/null || fail "delete of the source after its copies completed"
python3 -c 'import sqlite3,sys; d=sqlite3.connect(sys.argv[1]); d.execute("DROP TABLE copy_progress"); d.commit()' "$VS/catalog.db"
[ "$(state "$A" "$C")" = "completed 100%" ] || fail "a catalog without copy_progress does not open"
[ "$(catq "$A" "SELECT count(*) FROM sqlite_master WHERE name = 'copy_progress'")" = 1 ] || fail "copy_progress not recreated"

echo "vol_copy_resume: all checks passed"
