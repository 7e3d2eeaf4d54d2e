#!/usr/bin/env bash
# fs_model.sh — runs fs_model.py against a fresh mount (seeded; the seed is printed on failure).
. "$(dirname "$0")/lib.sh"
fs_setup "$@"
export B CIPHER MNT
python3 "$(dirname "$0")/fs_model.py" "$MNT" "$REF" '"$B" unmount "$MNT" && "$B" mount "$CIPHER" "$MNT"' \
  "${MODEL_SEED:-$RANDOM}" "${MODEL_OPS:-3000}"
