#!/usr/bin/env bash
# server_access.sh — key policies and grants over the server with boto3 and two accounts' access keys:
# runs server_access.py (the allow/deny table tests/kms/access_cases.json, the same the embedded core runs
# in kms_access, and a cross-account flow) against a fresh `envelopefs kms serve`.
. "$(dirname "$0")/lib.sh"
"$B" kms init-store --generate-root-key --account 111122223333 >/dev/null
CREDS=$T/creds.json
echo '{}' >"$CREDS"
for who in 111122223333:root 111122223333:alice 444455556666:root 444455556666:bob 444455556666:carol; do
  "$B" kms create-access-key --account "${who%%:*}" --user "${who#*:}" >"$T/ak.json"
  python3 - "$CREDS" "$who" "$T/ak.json" <<'P'
import json, sys
creds, who, ak = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))["AccessKey"]
d = json.load(open(creds)); d[who] = [ak["AccessKeyId"], ak["SecretAccessKey"]]; json.dump(d, open(creds, "w"))
P
done
AK=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["111122223333:root"][0])' "$CREDS") SK=x
start_server
python3 "$(dirname "$0")/server_access.py" "$URL" "$CREDS" "$(dirname "$0")/../kms/access_cases.json"

# A policy changed by another process (the CLI on the store) is in force for the server's next call: its
# compiled copy goes with the reload (freshness bound KMS_FRESHNESS_MS, 2 ms).
as_bob() {  # as_bob KEY-ARN -> allow | error code
  python3 - "$URL" "$CREDS" "$1" <<'P'
import json, sys, boto3, botocore
url, creds, key = sys.argv[1:4]
ak, sk = json.load(open(creds))["444455556666:bob"]
kms = boto3.client("kms", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ak, aws_secret_access_key=sk)
try:
    kms.describe_key(KeyId=key); print("allow")
except botocore.exceptions.ClientError as e:
    print(e.response["Error"]["Code"])
P
}
BKEY=$("$B" kms --as-user arn:aws:iam::444455556666:root create-key --query KeyMetadata.Arn --output text)
[ "$(as_bob "$BKEY")" = allow ] || fail "bob uses his account's key"
"$B" kms --as-user arn:aws:iam::444455556666:root put-key-policy --key-id "$BKEY" --policy \
  '{"Statement":[{"Effect":"Allow","Principal":{"AWS":"444455556666"},"Action":"kms:*","Resource":"*"},
    {"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::444455556666:user/bob"},"Action":"kms:DescribeKey","Resource":"*"}]}'
sleep 0.01
[ "$(as_bob "$BKEY")" = AccessDeniedException ] || fail "the server still used the old policy"

