"""The three worked examples of shared/spec/auth-and-errors.md, section 2.2, byte for byte."""

from __future__ import annotations

import hashlib

from cbr_agent.api import signer

AK = "HPUAEXAMPLEAK0000001"
SK = "ExampleSecretKey00000000000000000000SK01"
HOST = "cbr.ap-southeast-1.myhuaweicloud.com"
DATE = "20240416T095341Z"
PROJECT = "f841e01fd2b14e7fa41b6ae7aa6b0594"
AGENT = "79bd9daa-884f-4f84-b8fe-235d58cd927d"
ADD_PATH = f"/v3/{PROJECT}/agents/{AGENT}/add-path"


def test_vector_a_post_add_path_with_json_body() -> None:
    body = b'{"add_path":["/home/hcp","/opt/workspace/"]}'
    assert len(body) == 44
    body_hash = "6bfc2075ea2611264aeaf14292c301645d1e545cd6c1a6af68a8e58c00de25cb"
    assert hashlib.sha256(body).hexdigest() == body_hash
    headers = {"Content-Type": "application/json;charset=utf-8", "Host": HOST, "X-Sdk-Date": DATE,
               "X-Project-Id": PROJECT}
    names = ("content-type", "host", "x-project-id", "x-sdk-date")

    to_sign = signer.string_to_sign("POST", ADD_PATH, [], headers, names, body)

    assert to_sign == (
        "SDK-HMAC-SHA256\n20240416T095341Z\n6e8361970d39c9beadf75d75ac13aa6b87d4a5dce742ebdc58545c46d37c66a5")
    signer.sign("POST", ADD_PATH, [], headers, body, AK, SK)
    assert headers["Authorization"] == (
        "SDK-HMAC-SHA256 Access=HPUAEXAMPLEAK0000001, "
        "SignedHeaders=content-type;host;x-project-id;x-sdk-date, "
        "Signature=2832137456cafa8f29936110dc51505bc14e8b75133b15aa887fe97490531b4b")
    assert headers["X-Sdk-Date"] == DATE  # a given date is kept, not replaced by the clock


def test_vector_b_get_with_unsorted_repeated_query() -> None:
    path = f"/v3/{PROJECT}/agents"
    pairs = [("status", "normal"), ("limit", "10"), ("offset", "0"), ("agent_id", "b2"), ("agent_id", "a1")]
    headers = {"Content-Type": "application/json", "Host": HOST, "X-Sdk-Date": DATE}

    assert signer.canonical_uri(path) == f"/v3/{PROJECT}/agents/"
    assert signer.canonical_query(pairs) == "agent_id=a1&agent_id=b2&limit=10&offset=0&status=normal"
    to_sign = signer.string_to_sign("GET", path, pairs, headers, ("content-type", "host", "x-sdk-date"), b"")
    assert to_sign.endswith("\na24b358dc87c2d9ab960b502f5bbc939c2624f4c3f4e9700d5b61d43b721fcae")

    signer.sign("GET", path, pairs, headers, b"", AK, SK)
    assert headers["Authorization"] == (
        "SDK-HMAC-SHA256 Access=HPUAEXAMPLEAK0000001, SignedHeaders=content-type;host;x-sdk-date, "
        "Signature=448f4bba4dc93948c36f634681a80289382de79f8b204e402d7f9dac380347c4")


def test_vector_c_encoding_underscore_and_unsigned_payload() -> None:
    pairs = [("name", "a b/c~d")]
    headers = {"Content-Type": "application/octet-stream", "Host": HOST, "X-Sdk-Date": DATE,
               "X_Custom_Header": "zzz"}

    assert signer.canonical_query(pairs) == "name=a%20b%2Fc~d"
    signer.sign("POST", ADD_PATH, pairs, headers, b"raw-bytes", AK, SK)

    assert headers["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    assert headers["X_Custom_Header"] == "zzz"  # still sent ...
    assert headers["Authorization"] == (  # ... but not signed
        "SDK-HMAC-SHA256 Access=HPUAEXAMPLEAK0000001, "
        "SignedHeaders=content-type;host;x-sdk-content-sha256;x-sdk-date, "
        "Signature=35b10c1b854ab4c7ebe2590100963cc3dba7ee0306274d6f5d6d388acb0edf64")


def test_vectors_verify_with_the_server_side_function() -> None:
    body = b'{"add_path":["/home/hcp","/opt/workspace/"]}'
    headers = {"Content-Type": "application/json;charset=utf-8", "Host": HOST, "X-Sdk-Date": DATE,
               "X-Project-Id": PROJECT}
    signer.sign("POST", ADD_PATH, [], headers, body, AK, SK)
    auth = signer.parse_authorization(headers["Authorization"])

    assert auth.access_key == AK
    assert signer.verify("POST", ADD_PATH, [], headers, body, auth, SK)
    assert not signer.verify("POST", ADD_PATH, [], headers, body, auth, SK + "x")
