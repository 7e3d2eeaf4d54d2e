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
