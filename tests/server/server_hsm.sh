#!/usr/bin/env bash
# server_hsm.sh — a custom key store over a SoftHSM2 token through `envelopefs kms serve` with boto3
# (server_hsm.py), then a change made by another process: the CLI disconnects the store while the server runs,
# and the server's next call finds its key Unavailable. Skipped (77) without SoftHSM2.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../kms/hsm_token.sh"
start_server
python3 "$(dirname "$0")/server_hsm.py" "$URL" "$AK" "$SK" "$HSM_CLUSTER" "$HSM_PIN" "$HSM_CLUSTER2" >"$T/py.out"
cat "$T/py.out"
CKS=$(sed -n 's/^store //p' "$T/py.out") K=$(sed -n 's/^key //p' "$T/py.out")
[ -n "$CKS" ] && [ -n "$K" ] || fail "server_hsm.py did not name its store and key"
"$B" kms disconnect-custom-key-store --custom-key-store-id "$CKS" >/dev/null
sleep 0.05 # > KMS_FRESHNESS_MS: the server sees the other process's commit
python3 - "$URL" "$AK" "$SK" "$K" <<'PY' || fail "the server did not see the store disconnected by another process"
import sys, boto3, botocore
from botocore.config import Config
url, ak, sk, kid = sys.argv[1:5]
kms = boto3.client("kms", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ak, aws_secret_access_key=sk,
                   config=Config(retries={"max_attempts": 1}))
assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Unavailable"
try:
    kms.encrypt(KeyId=kid, Plaintext=b"x")
    raise SystemExit("encrypt succeeded with the store disconnected")
except botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "KMSInvalidStateException", e.response
PY
# the trail has the custom key store calls and never the PIN
"$B" kms lookup-audit --max-results 1000 >"$T/ev.json"
grep -q CreateCustomKeyStore "$T/ev.json" || fail "no CreateCustomKeyStore record"
grep -q ConnectCustomKeyStore "$T/ev.json" || fail "no ConnectCustomKeyStore record"
! grep -q "$HSM_PIN" "$T/ev.json" || fail "the PIN is in the audit trail"
echo "server_hsm: all checks passed"
