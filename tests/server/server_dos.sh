#!/usr/bin/env bash
# server_dos.sh — runs server_dos.py's attacks against real `envelopefs kms serve` instances: idle and
# trickling connections (short deadlines so the test is quick), eviction near a small connection
# limit, and absurd Content-Length values; a signed boto3 client must be answered throughout.
. "$(dirname "$0")/lib.sh"
D=$(dirname "$0")/server_dos.py
start_server --threads 2 --max-connections 1000 --per-ip-limit 200 --idle-timeout 3 --request-timeout 3
python3 "$D" idle "$URL" "$AK" "$SK"
python3 "$D" slow "$URL" "$AK" "$SK"
python3 "$D" length "$URL" "$AK" "$SK"
stop_server
unset PORT
start_server --threads 2 --max-connections 400 --per-ip-limit 200 --idle-timeout 120 --request-timeout 120
python3 "$D" evict "$URL" "$AK" "$SK" 400
echo "server_dos: ok"
