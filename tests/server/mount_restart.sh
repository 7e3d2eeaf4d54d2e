#!/usr/bin/env bash
# mount_restart.sh — a mount using `envelopefs kms serve`: files whose data key is cached keep working
# while the server is down and restarted; new opens fail cleanly (EIO/EACCES, no hang) while it is
# down and work again after it is back. Also: per-account throttling answers ThrottlingException.
. "$(dirname "$0")/lib.sh"
[ -e /dev/fuse ] || { echo "SKIP: /dev/fuse absent"; exit 77; }
start_server
export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_REGION=us-east-1
KID=$("$B" kms --endpoint-url "$URL" create-key | jget KeyMetadata.KeyId)
mkdir -p "$T/cipher" "$T/mnt1"
"$B" init "$T/cipher" --kms "$URL" --kms-key-id "$KID" >/dev/null
"$B" mount "$T/cipher" "$T/mnt1"
echo cached >"$T/mnt1/cached"; echo other >"$T/mnt1/other"
"$B" unmount "$T/mnt1"; "$B" mount "$T/cipher" "$T/mnt1"
[ "$(cat "$T/mnt1/cached")" = cached ] || fail "first read"
stop_server
[ "$(cat "$T/mnt1/cached")" = cached ] || fail "cached file while the server is down"
start=$(date +%s)
if cat "$T/mnt1/other" >/dev/null 2>"$T/err"; then fail "uncached open succeeded with the server down"; fi
grep -Eq "Input/output error|Permission denied" "$T/err" || fail "unclean failure: $(cat "$T/err")"
[ $(( $(date +%s) - start )) -lt 60 ] || fail "open hung"   # bounded retries, not a timing assertion on speed
start_server
[ "$(cat "$T/mnt1/other")" = other ] || fail "after the server came back"
[ "$(cat "$T/mnt1/cached")" = cached ] || fail "cached after restart"
"$B" unmount "$T/mnt1"

# throttling: a tiny per-account quota
stop_server
start_server --rate-limit 1
python3 - "$URL" "$AK" "$SK" <<'PY'
import sys, boto3, botocore
from botocore.config import Config
kms = boto3.client("kms", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id=sys.argv[2],
                   aws_secret_access_key=sys.argv[3], config=Config(retries={"max_attempts": 1}))
codes = []
for _ in range(30):
    try:
        kms.list_keys(); codes.append("ok")
    except botocore.exceptions.ClientError as e:
        codes.append(e.response["Error"]["Code"])
assert "ThrottlingException" in codes and "ok" in codes, codes
print("throttled", codes.count("ThrottlingException"), "of", len(codes))
PY
echo "mount_restart: all checks passed"
