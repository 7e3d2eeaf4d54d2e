#!/usr/bin/env python3
"""server_audit.py — the audit trail over the server. Usage: server_audit.py PHASE URL AK SK [ARGS]
  loop OUT          CreateKey in a loop until the server dies (kill -9 from the shell); every KeyId the
                    client saw created is appended to OUT as soon as the answer arrives
  secrets OUT       GenerateDataKey, Encrypt and Decrypt with known plaintext; writes every secret the
                    calls handled (data keys, plaintexts) to OUT, one hex string a line
  authfail N        one request with an unknown access key id, N with a wrong secret, and one more"""
import binascii, sys, time
import boto3, botocore
from botocore.config import Config

phase, url, ak, sk = sys.argv[1:5]
cfg = Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10)
def client(a=ak, s=sk):
    return boto3.client("kms", endpoint_url=url, region_name="us-east-1", aws_access_key_id=a,
                        aws_secret_access_key=s, config=cfg)

if phase == "loop":
    kms, n = client(), 0
    with open(sys.argv[5], "a") as out:
        while True:
            try:
                kid = kms.create_key(Description="crash loop")["KeyMetadata"]["KeyId"]
            except Exception:
                break  # the server is gone
            out.write(kid + "\n")
            out.flush()
            n += 1
    print(f"loop: {n} keys created before the server died")
elif phase == "secrets":
    kms = client()
    kid = kms.create_key(Description="secrets")["KeyMetadata"]["KeyId"]
    secrets = []
    for _ in range(5):
        dk = kms.generate_data_key(KeyId=kid, KeySpec="AES_256", EncryptionContext={"p": "q"})
        secrets.append(dk["Plaintext"])
        assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"p": "q"})["Plaintext"] == dk["Plaintext"]
    pt = b"a known plaintext 0123456789abcdef"
    blob = kms.encrypt(KeyId=kid, Plaintext=pt)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == pt
    secrets.append(pt)
    secrets.append(kms.generate_random(NumberOfBytes=32)["Plaintext"])
    with open(sys.argv[5], "w") as out:
        for s in secrets:
            out.write(binascii.hexlify(s).decode() + "\n")
elif phase == "authfail":
    n = int(sys.argv[5])
    bad = client(ak, "x" * 40)
    codes = set()
    try:  # first, while the rate limit has room
        client("AKIAUNKNOWNKEY000000", sk).list_keys()
    except botocore.exceptions.ClientError as e:
        codes.add(e.response["Error"]["Code"])
    for _ in range(n):
        try:
            bad.list_keys()
        except botocore.exceptions.ClientError as e:
            codes.add(e.response["Error"]["Code"])
    time.sleep(0.3)  # room for one more record: it says how many were suppressed
    try:
        bad.list_keys()
    except botocore.exceptions.ClientError as e:
        codes.add(e.response["Error"]["Code"])
    assert codes == {"InvalidSignatureException", "UnrecognizedClientException"}, codes
