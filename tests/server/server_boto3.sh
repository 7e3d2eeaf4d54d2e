#!/usr/bin/env bash
# server_boto3.sh — runs server_boto3.py against a fresh `envelopefs kms serve`.
. "$(dirname "$0")/lib.sh"
start_server
python3 "$(dirname "$0")/server_boto3.py" "$URL" "$AK" "$SK"
