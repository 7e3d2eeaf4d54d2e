#!/usr/bin/env bash
# vol_paging.sh — describe-volumes / describe-snapshots paging as EC2: --max-results 5..1000 (not with
# ids), NextToken while more remain, --next-token resumes after the previous page and every item is seen
# exactly once; a bad value or an unknown token is refused with EC2's code.
set -euo pipefail
B=${ENVELOPEFS_BIN:?ENVELOPEFS_BIN must point at the envelopefs binary}
T=$(mktemp -d /tmp/vol-paging.XXXXXX)
trap 'rm -rf "$T"' EXIT
export ENVELOPEFS_STORE=$T/store
fail() { echo "FAIL: $*" >&2; exit 1; }
q() { "$B" ec2 "$@" --output text; }
expect_err() {
  local code=$1 out rc=0; shift
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" = 254 ] || fail "expected exit 254 from $*, got $rc: $out"
  case $out in *"An error occurred ($code)"*) ;; *) fail "expected $code from $*, got: $out";; esac
}
"$B" kms init-store --generate-root-key >/dev/null
all=()
for i in 1 2 3 4 5 6 7; do all+=("$(q create-volume --size 1 --query VolumeId)"); done
expect_err InvalidParameterValue "$B" ec2 describe-volumes --max-results 4
expect_err InvalidParameterValue "$B" ec2 describe-volumes --max-results 1001
expect_err InvalidParameterValue "$B" ec2 describe-volumes --max-results x
expect_err InvalidParameterCombination "$B" ec2 describe-volumes --volume-ids "${all[0]}" --max-results 5
expect_err InvalidNextToken "$B" ec2 describe-volumes --max-results 5 --next-token vol-0123456789abcdef0
p1=$("$B" ec2 describe-volumes --max-results 5)
[ "$(echo "$p1" | jq '.Volumes | length')" = 5 ] || fail "first page is not 5: $p1"
tok=$(echo "$p1" | jq -r .NextToken)
[ "$tok" != null ] || fail "no NextToken with 2 more volumes"
p2=$("$B" ec2 describe-volumes --max-results 5 --next-token "$tok")
[ "$(echo "$p2" | jq '.Volumes | length')" = 2 ] || fail "second page is not 2: $p2"
[ "$(echo "$p2" | jq -r '.NextToken // "none"')" = none ] || fail "NextToken on the last page"
seen=$( (echo "$p1"; echo "$p2") | jq -r '.Volumes[].VolumeId' | sort)
[ "$seen" = "$(printf '%s\n' "${all[@]}" | sort)" ] || fail "pages do not cover every volume once"
[ "$("$B" ec2 describe-volumes | jq '.Volumes | length')" = 7 ] || fail "without --max-results: all"
# snapshots page the same way
for i in 1 2 3 4 5 6; do q create-snapshot --volume-id "${all[$i]}" --query SnapshotId >/dev/null; done
s1=$("$B" ec2 describe-snapshots --max-results 5)
[ "$(echo "$s1" | jq '.Snapshots | length')" = 5 ] || fail "snapshot page: $s1"
s2=$("$B" ec2 describe-snapshots --max-results 5 --next-token "$(echo "$s1" | jq -r .NextToken)")
[ "$(echo "$s2" | jq '.Snapshots | length')" = 1 ] || fail "last snapshot page: $s2"
expect_err InvalidNextToken "$B" ec2 describe-snapshots --max-results 5 --next-token garbage
echo ok
