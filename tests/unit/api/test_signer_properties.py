"""Properties of SDK-HMAC-SHA256 over large input spaces: what is signed, and what is not."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.api import signer

AK = "HPUAEXAMPLEAK0000001"
SK = "ExampleSecretKey00000000000000000000SK01"
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD")

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
header_value = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)
segment = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/%"), min_size=1,
                  max_size=10)
paths = st.lists(segment, min_size=1, max_size=5).map(lambda segs: "/" + "/".join(segs))
pairs_strategy = st.lists(st.tuples(text, text), max_size=6)
extra_headers = st.dictionaries(
    st.from_regex(r"X-H-[A-Za-z0-9-]{1,8}", fullmatch=True).map(str.lower), header_value, max_size=4)
content_types = st.sampled_from(["application/json", "application/json;charset=utf-8", "application/bson"])


@st.composite
def requests_(draw: st.DrawFn) -> dict:
    headers = {"Content-Type": draw(content_types), "Host": "cbr.example.com:8443",
               "X-Sdk-Date": "20240416T095341Z", **draw(extra_headers)}
    return {"method": draw(st.sampled_from(METHODS)), "path": draw(paths), "pairs": draw(pairs_strategy),
            "headers": headers, "body": draw(st.binary(max_size=64))}


def signed(req: dict) -> tuple[dict[str, str], signer.Authorization]:
    headers = dict(req["headers"])
    signer.sign(req["method"], req["path"], req["pairs"], headers, req["body"], AK, SK)
    return headers, signer.parse_authorization(headers["Authorization"])


def verifies(req: dict, headers: dict[str, str], auth: signer.Authorization) -> bool:
    return signer.verify(req["method"], req["path"], req["pairs"], headers, req["body"], auth, SK)


@given(requests_())
def test_sign_then_verify_round_trip(req: dict) -> None:
    headers, auth = signed(req)
    assert auth.access_key == AK
    assert set(auth.signed_headers) == {k.lower() for k in req["headers"]}
    assert verifies(req, headers, auth)


@given(requests_(), st.data())
def test_changing_any_signed_part_breaks_verification(req: dict, data: st.DataObject) -> None:
    headers, auth = signed(req)
    part = data.draw(st.sampled_from(["method", "path", "query", "header", "body", "date", "key"]))
    changed = dict(req)
    headers = dict(headers)
    secret = SK
    if part == "method":
        changed["method"] = data.draw(st.sampled_from([m for m in METHODS if m != req["method"]]))
    elif part == "path":
        changed["path"] = req["path"] + "/" + data.draw(segment)
    elif part == "query":
        extra = data.draw(st.tuples(text, text))
        changed["pairs"] = [*req["pairs"], extra]
    elif part == "header":
        name = data.draw(st.sampled_from(sorted(auth.signed_headers)))
        key = next(k for k in headers if k.lower() == name)
        headers[key] = headers[key] + "x"
    elif part == "body":
        changed["body"] = req["body"] + b"!"
    elif part == "date":
        headers["X-Sdk-Date"] = "20240416T095342Z"
    else:
        secret = SK[:-1] + ("2" if SK[-1] != "2" else "3")
    assert not signer.verify(changed["method"], changed["path"], changed["pairs"], headers,
                             changed["body"], auth, secret)


@given(requests_(), st.from_regex(r"X_[A-Za-z0-9_]{1,8}", fullmatch=True), header_value, header_value)
def test_headers_with_underscore_are_sent_but_not_signed(req: dict, name: str, value: str,
                                                         other: str) -> None:
    req = {**req, "headers": {**req["headers"], name: value}}
    headers, auth = signed(req)
    assert name in headers
    assert name.lower() not in auth.signed_headers
    headers[name] = other
    assert verifies(req, headers, auth)


@given(pairs_strategy, st.randoms(use_true_random=False))
def test_query_canonicalization_does_not_depend_on_order(pairs: list, rnd: random.Random) -> None:
    shuffled = list(pairs)
    rnd.shuffle(shuffled)
    assert signer.canonical_query(shuffled) == signer.canonical_query(pairs)
    h1 = {"Host": "h", "X-Sdk-Date": "20240416T095341Z"}
    h2 = dict(h1)
    signer.sign("GET", "/v3/p/agents", pairs, h1, b"", AK, SK)
    signer.sign("GET", "/v3/p/agents", shuffled, h2, b"", AK, SK)
    assert h1["Authorization"] == h2["Authorization"]


@given(pairs_strategy)
def test_canonical_query_uses_only_unreserved_characters_and_percent_escapes(pairs: list) -> None:
    query = signer.canonical_query(pairs)
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%=&")
    assert set(query) <= allowed
    assert "+" not in query  # a space is %20, never +


@settings(max_examples=50)
@given(requests_(), st.binary(min_size=1, max_size=64))
def test_non_json_content_is_an_unsigned_payload(req: dict, other_body: bytes) -> None:
    req = {**req, "headers": {**req["headers"], "Content-Type": "application/octet-stream"},
           "body": req["body"] or b"x"}
    headers, auth = signed(req)
    assert headers["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    assert "x-sdk-content-sha256" in auth.signed_headers
    assert signer.verify(req["method"], req["path"], req["pairs"], headers, other_body, auth, SK)


@given(st.binary(min_size=1, max_size=64))
def test_json_payload_hash_is_the_sha256_of_the_exact_bytes(body: bytes) -> None:
    assert signer.payload_hash({"Content-Type": "application/json"}, body) == hashlib.sha256(body).hexdigest()
    assert signer.payload_hash({"Content-Type": "application/json"}, b"") == signer.EMPTY_SHA256
