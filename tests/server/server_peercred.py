#!/usr/bin/env python3
"""server_peercred.py — requests on `envelopefs kms serve --unix` from this process (run as root, whose
uid the server maps to a principal): raw HTTP over the socket, unsigned and signed by botocore's SigV4.
Unsigned acts as the mapped principal; a signed request acts as its access key's principal whatever the
uid (a bad signature is refused, not passed on to the uid's principal).
Usage: server_peercred.py SOCKET AK SK OPEN_KEY OPS_ONLY_KEY MAPPED_ARN SIGNED_ARN"""
import base64, http.client, json, socket, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

sock, ak, sk, open_key, ops_key, mapped_arn, signed_arn = sys.argv[1:8]


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def call(op, params, creds=None):
    """(status, parsed body) of one request; creds = (ak, sk) signs it."""
    body = json.dumps(params).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService." + op}
    if creds:
        req = AWSRequest(method="POST", url="http://localhost/", data=body, headers=headers)
        SigV4Auth(Credentials(*creds), "kms", "us-east-1").add_auth(req)
        headers = dict(req.headers.items())
        assert "Authorization" in headers
    c = UnixConnection(sock)
    c.request("POST", "/", body=body, headers=headers)
    r = c.getresponse()
    out = (r.status, json.loads(r.read() or b"{}"))
    c.close()
    return out


def expect_ok(what, got):
    status, body = got
    assert status == 200, f"{what}: HTTP {status} {body}"
    return body


def expect_err(what, got, code, in_message=None):
    status, body = got
    assert status == 400 and body.get("__type") == code, f"{what}: expected {code}, got HTTP {status} {body}"
    if in_message:
        assert in_message in body.get("message", ""), f"{what}: {in_message!r} not in {body.get('message')!r}"


gdk = {"KeySpec": "AES_256"}
# unsigned, as the mapped principal: a data key that decrypts
b = expect_ok("unsigned GenerateDataKey", call("GenerateDataKey", dict(gdk, KeyId=open_key)))
assert len(base64.b64decode(b["Plaintext"])) == 32
d = expect_ok("unsigned Decrypt", call("Decrypt", {"CiphertextBlob": b["CiphertextBlob"]}))
assert d["Plaintext"] == b["Plaintext"], "Decrypt gave another key"
# the key whose policy allows only the mapped principal
expect_ok("unsigned GenerateDataKey on the ops-only key", call("GenerateDataKey", dict(gdk, KeyId=ops_key)))
# signed: the access key's principal, not the uid's, also on this uid's socket
expect_ok("signed GenerateDataKey", call("GenerateDataKey", dict(gdk, KeyId=open_key), (ak, sk)))
expect_err("signed GenerateDataKey on the ops-only key", call("GenerateDataKey", dict(gdk, KeyId=ops_key), (ak, sk)),
           "AccessDeniedException", f"User: {signed_arn} is not authorized")
# a bad signature is refused: the uid is no fallback
expect_err("wrong secret", call("ListKeys", {}, (ak, "x" * 40)), "InvalidSignatureException")
expect_err("unknown access key", call("ListKeys", {}, ("AKIAIOSFODNN7EXAMPLE", sk)), "UnrecognizedClientException")
print(f"peercred over {sock}: unsigned as {mapped_arn}, signed as {signed_arn}, bad signatures refused")
