#!/usr/bin/env bash
# fs_readers.sh — concurrent random readers while a writer rewrites and truncates the same file
# (fs_readers.py): the request loop's leader serving small READs without blocking (fs/nowait.h).
. "$(dirname "$0")/lib.sh"
fs_setup "$@"
export B CIPHER MNT
python3 "$(dirname "$0")/fs_readers.py" "$MNT" "$CIPHER" '"$B" unmount "$MNT" && "$B" mount "$CIPHER" "$MNT"' \
  "${READERS_SEED:-$RANDOM}"
echo "fs_readers: ok"
