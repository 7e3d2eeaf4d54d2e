#!/usr/bin/env python3
"""server_access.py — key policies and grants over `envelopefs kms serve` with boto3, one client per
principal (access keys of two accounts).  Runs the allow/deny table that test_kms_access runs through
the embedded core (same file, same semantics: see its _comment), then a cross-account flow: account A
shares its key with B by a policy statement and by a grant, B's calls are allowed and denied as they
should be, and A takes the access back.  Usage: server_access.py URL CREDS.json CASES.json"""
import base64, copy, json, sys
import boto3, botocore
from botocore.config import Config

url, creds_file, cases_file = sys.argv[1:4]
creds = json.load(open(creds_file))
doc = json.load(open(cases_file))
A, B = doc["accounts"]["A"], doc["accounts"]["B"]
clients = {}

def client(who):
    """who: 'A:root', 'B:bob', ... or 'ACCOUNT:user'."""
    acct, user = who.split(":")
    acct = {"A": A, "B": B}.get(acct, acct)
    key = f"{acct}:{user}"
    if key not in clients:
        ak, sk = creds[key]
        clients[key] = boto3.client("kms", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ak,
                                    aws_secret_access_key=sk, config=Config(retries={"max_attempts": 1}))
    return clients[key]

def subst(v, subs):
    if isinstance(v, str):
        for k, s in subs:
            if s is not None:
                v = v.replace(k, s)
        return v
    if isinstance(v, list):
        return [subst(x, subs) for x in v]
    if isinstance(v, dict):
        return {subst(k, subs): subst(x, subs) for k, x in v.items()}
    return v

BLOBS = ("Plaintext", "CiphertextBlob", "Message", "Signature")

def call(kms, op, params):
    params = {k: base64.b64decode(v) if k in BLOBS else v for k, v in params.items()}
    return getattr(kms, botocore.xform_name(op))(**params)

def outcome(fn):
    try:
        fn()
        return "allow", ""
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"], e.response["Error"].get("Message", "")

owner = client("A:root")
failed = 0
for i, cs in enumerate(doc["cases"]):
    k = owner.create_key(Description=f"case {i}", **cs.get("create", {}))["KeyMetadata"]
    subs = [("$BLOB", None), ("$KEY", k["Arn"]), ("$A", A), ("$B", B)]
    if "alias" in cs:
        owner.create_alias(AliasName=cs["alias"], TargetKeyId=k["KeyId"])
    for g in cs.get("grants", []):
        owner.create_grant(KeyId=k["Arn"], **subst(g, subs[1:]))
    if "create" not in cs:  # a symmetric key: $BLOB, a ciphertext under it
        blob = owner.encrypt(KeyId=k["Arn"], Plaintext=b"hello", EncryptionContext=cs.get("blob_context", {}))["CiphertextBlob"]
        subs[0] = ("$BLOB", base64.b64encode(blob).decode())
    if "policy" in cs:
        owner.put_key_policy(KeyId=k["KeyId"], PolicyName="default", Policy=json.dumps(subst(cs["policy"], subs[1:])),
                             BypassPolicyLockoutSafetyCheck=True)
    got, msg = outcome(lambda: call(client(cs["caller"]), cs["op"], subst(cs["request"], subs)))
    if got != cs["expect"]:
        print(f"case {i} {cs['name']!r}: {cs['op']} as {cs['caller']}: expected {cs['expect']}, got {got} ({msg})")
        failed += 1
    elif got == "AccessDeniedException" and cs["op"] != "ReEncrypt":
        acct, user = cs["caller"].split(":")
        arn = f"arn:aws:iam::{ {'A': A, 'B': B}[acct] }:" + ("root" if user == "root" else f"user/{user}")
        want = f"User: {arn} is not authorized to perform: kms:{cs['op']} on resource: {k['Arn']}"
        if not msg.startswith(want):
            print(f"case {i}: message {msg!r} does not start {want!r}")
            failed += 1
allowed = sum(cs["expect"] == "allow" for cs in doc["cases"])
print(f"access table over the server: {len(doc['cases'])} cases ({allowed} allowed), {failed} failed")
assert failed == 0 and len(doc["cases"]) >= 40

def code(fn, **kw):
    try:
        fn(**kw)
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return "allow"

# Cross-account: A's key, shared with B by a policy statement (Encrypt/Decrypt/DescribeKey under a context
# condition) and with B's carol by a grant (GenerateDataKey for one volume).
a, bob, carol, broot = client("A:root"), client("B:bob"), client("B:carol"), client("B:root")
k = a.create_key(Description="shared")["KeyMetadata"]
assert k["Arn"].startswith(f"arn:aws:kms:us-east-1:{A}:key/") and k["AWSAccountId"] == A
assert code(bob.describe_key, KeyId=k["Arn"]) == "AccessDeniedException"
assert code(bob.describe_key, KeyId=k["KeyId"]) == "NotFoundException"  # a bare id is B's own namespace
policy = {"Version": "2012-10-17", "Statement": [
    {"Sid": "owner", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{A}:root"}, "Action": "kms:*", "Resource": "*"},
    {"Sid": "b-use", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{B}:user/bob"},
     "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": "*",
     "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "b"}, "IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}}]}
assert code(a.put_key_policy, KeyId=k["KeyId"], PolicyName="default", Policy="{bad") == "MalformedPolicyDocumentException"
assert code(a.put_key_policy, KeyId=k["KeyId"], PolicyName="default", Policy=json.dumps({
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": B}, "Action": "kms:*", "Resource": "*"}]})) == \
    "MalformedPolicyDocumentException", "lockout"
assert code(a.put_key_policy, KeyId=k["KeyId"], PolicyName="default", Policy=" " * 40000) == "LimitExceededException"
a.put_key_policy(KeyId=k["KeyId"], PolicyName="default", Policy=json.dumps(policy))
assert json.loads(a.get_key_policy(KeyId=k["KeyId"], PolicyName="default")["Policy"]) == policy
assert a.list_key_policies(KeyId=k["KeyId"])["PolicyNames"] == ["default"]
assert code(bob.get_key_policy, KeyId=k["Arn"], PolicyName="default") == "AccessDeniedException"
ct = bob.encrypt(KeyId=k["Arn"], Plaintext=b"for b", EncryptionContext={"tenant": "b"})["CiphertextBlob"]
assert bob.decrypt(CiphertextBlob=ct, EncryptionContext={"tenant": "b"})["Plaintext"] == b"for b"
assert code(bob.decrypt, CiphertextBlob=ct, EncryptionContext={"tenant": "c"}) == "AccessDeniedException"
assert code(bob.encrypt, KeyId=k["Arn"], Plaintext=b"x") == "AccessDeniedException"
assert code(carol.decrypt, CiphertextBlob=ct, EncryptionContext={"tenant": "b"}) == "AccessDeniedException"
assert code(bob.disable_key, KeyId=k["Arn"]) == "AccessDeniedException"
# a grant to carol: GenerateDataKey for vol-1, retirable by B's root
g = a.create_grant(KeyId=k["Arn"], GranteePrincipal=f"arn:aws:iam::{B}:user/carol", Name="vol-1",
                   RetiringPrincipal=f"arn:aws:iam::{B}:root", Operations=["GenerateDataKey", "Decrypt"],
                   Constraints={"EncryptionContextSubset": {"aws:ebs:id": "vol-1"}})
g2 = a.create_grant(KeyId=k["Arn"], GranteePrincipal=f"arn:aws:iam::{B}:user/carol", Name="vol-1",
                    RetiringPrincipal=f"arn:aws:iam::{B}:root", Operations=["GenerateDataKey", "Decrypt"],
                    Constraints={"EncryptionContextSubset": {"aws:ebs:id": "vol-1"}})
assert g2["GrantId"] == g["GrantId"], "CreateGrant is idempotent by name"
dk = carol.generate_data_key(KeyId=k["Arn"], KeySpec="AES_256", EncryptionContext={"aws:ebs:id": "vol-1"},
                             GrantTokens=[g["GrantToken"]])
assert carol.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"aws:ebs:id": "vol-1"})["Plaintext"] == dk["Plaintext"]
assert code(carol.generate_data_key, KeyId=k["Arn"], KeySpec="AES_256", EncryptionContext={"aws:ebs:id": "vol-2"}) == "AccessDeniedException"
assert code(carol.encrypt, KeyId=k["Arn"], Plaintext=b"x", EncryptionContext={"aws:ebs:id": "vol-1"}) == "AccessDeniedException"
assert code(carol.describe_key, KeyId=k["Arn"], GrantTokens=["t"] * 11) == "ValidationException"
assert code(carol.describe_key, KeyId=k["Arn"], GrantTokens=["not-a-token"]) == "InvalidGrantTokenException"
grants = a.list_grants(KeyId=k["Arn"])["Grants"]
assert [x["GrantId"] for x in grants] == [g["GrantId"]] and grants[0]["IssuingAccount"] == f"arn:aws:iam::{A}:root"
assert grants[0]["Constraints"] == {"EncryptionContextSubset": {"aws:ebs:id": "vol-1"}}
assert [x["GrantId"] for x in broot.list_retirable_grants(RetiringPrincipal=f"arn:aws:iam::{B}:root")["Grants"]] == [g["GrantId"]]
assert code(a.list_retirable_grants, RetiringPrincipal=f"arn:aws:iam::{B}:root") == "AccessDeniedException"
# the retiring principal is B's root: with no IAM here an account root is every principal of the account,
# so bob may retire it (docs/DESIGN.md); it is gone at once
bob.retire_grant(GrantToken=g["GrantToken"])
assert code(carol.generate_data_key, KeyId=k["Arn"], KeySpec="AES_256", EncryptionContext={"aws:ebs:id": "vol-1"}) == "AccessDeniedException"
assert code(bob.retire_grant, GrantToken=g["GrantToken"]) == "InvalidGrantTokenException"
# revoke: only whom the key policy allows (A)
g3 = a.create_grant(KeyId=k["Arn"], GranteePrincipal=B, Operations=["DescribeKey"])
assert broot.describe_key(KeyId=k["Arn"])["KeyMetadata"]["KeyId"] == k["KeyId"]
assert code(bob.revoke_grant, KeyId=k["Arn"], GrantId=g3["GrantId"]) == "AccessDeniedException"
a.revoke_grant(KeyId=k["Arn"], GrantId=g3["GrantId"])
assert code(broot.describe_key, KeyId=k["Arn"]) == "AccessDeniedException"
# A takes the policy statement back: B's ciphertext is closed to B, A still reads it
a.put_key_policy(KeyId=k["KeyId"], PolicyName="default", Policy=json.dumps({"Version": "2012-10-17", "Statement": [policy["Statement"][0]]}))
assert code(bob.decrypt, CiphertextBlob=ct, EncryptionContext={"tenant": "b"}) == "AccessDeniedException"
assert a.decrypt(CiphertextBlob=ct, EncryptionContext={"tenant": "b"})["Plaintext"] == b"for b"
# B's own keys are B's: its ARN, its list, invisible to A by id
bk = bob.create_key()["KeyMetadata"]
assert bk["Arn"].startswith(f"arn:aws:kms:us-east-1:{B}:key/") and bk["AWSAccountId"] == B
assert [x["KeyId"] for x in carol.list_keys()["Keys"]] == [bk["KeyId"]]
assert code(a.describe_key, KeyId=bk["KeyId"]) == "NotFoundException"
assert code(a.describe_key, KeyId=bk["Arn"]) == "AccessDeniedException"
print("server_access: ok")
