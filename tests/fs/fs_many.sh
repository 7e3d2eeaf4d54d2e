#!/usr/bin/env bash
# fs_many.sh — a directory with far more entries than the daemon may keep descriptors for: with a
# budget of 64 inode descriptors (ENVELOPEFS_FD_BUDGET), 8,000 entries are created, listed, stat'ed
# and read back; idle inodes are closed and reopened from their file handles as needed.
. "$(dirname "$0")/lib.sh"
export ENVELOPEFS_FD_BUDGET=64
fs_setup
python3 - "$MNT" <<'PY'
import os, sys
m = sys.argv[1]
os.mkdir(f"{m}/many")
for i in range(8000):
    os.mkfifo(f"{m}/many/fifo-{i:05d}")
for i in range(200):
    with open(f"{m}/many/file-{i:03d}", "w") as f:
        f.write(f"file {i}\n")
names = os.listdir(f"{m}/many")
assert len(names) == 8200, len(names)
for n in names[::7]:
    os.lstat(f"{m}/many/{n}")
for i in range(200):
    assert open(f"{m}/many/file-{i:03d}").read() == f"file {i}\n"
os.rename(f"{m}/many/fifo-00000", f"{m}/many/renamed")
os.unlink(f"{m}/many/fifo-00001")
assert len(os.listdir(f"{m}/many")) == 8199
print("8,200 entries with a 64-descriptor budget: ok")
PY
# After the 1 s entry timeout every lstat is a fresh lookup of an inode the daemon already knows
# (and has mostly evicted): each must reopen within the budget.
sleep 1.5
python3 -c 'import os,sys; d=sys.argv[1]; [os.lstat(f"{d}/{n}") for n in os.listdir(d)]' "$MNT/many"
stats=$(getfattr --only-values -n user.envelopefs.stats "$MNT")
python3 -c 'import json,sys; s=json.loads(sys.argv[1]); assert s["inode_fds"] <= s["fd_budget"] == 64, s' "$stats" \
  || fail "inode descriptors over budget: $stats"
pid=$(pgrep -f "envelopefs mount $CIPHER" | head -1)
fds=$(ls /proc/"$pid"/fd | wc -l)
if [ "$fds" -ge 400 ]; then
  ls -l /proc/"$pid"/fd | awk '{print $NF}' | sed 's|/[^/]*$|/*|' | sort | uniq -c | sort -rn | head >&2
  echo "$stats" >&2
  fail "the daemon holds $fds descriptors with a budget of 64"
fi
echo "fs_many: all checks passed"
