"""Key files: the master key wrapped by scrypt(password); two passwords, wrong password, damaged file."""

from __future__ import annotations

import json

import pytest

from cbr_agent.crypto import (
    DEFAULT_KDF,
    TEST_KDF_ENV,
    KdfParams,
    KeyFileDamaged,
    MasterKey,
    default_kdf_params,
    make_key_file,
    open_key_file,
)

CHEAP = KdfParams(n=1024)


def test_two_passwords_open_the_same_master_key() -> None:
    master = MasterKey.generate()
    a = make_key_file(master, "first password", CHEAP)
    b = make_key_file(master, "second password", CHEAP)
    assert a != b
    for raw, pw in ((a, "first password"), (b, "second password")):
        opened = open_key_file(raw, pw)
        assert opened is not None and opened.secret == master.secret
    assert open_key_file(a, "second password") is None


def test_wrong_password_gives_none_not_an_error() -> None:
    raw = make_key_file(MasterKey.generate(), "right", CHEAP)
    assert open_key_file(raw, "wrong") is None
    assert open_key_file(raw, "") is None


def test_non_utf8_password_works() -> None:
    master = MasterKey.generate()
    pw = b"caf\xe9".decode("utf-8", "surrogateescape")
    opened = open_key_file(make_key_file(master, pw, CHEAP), pw)
    assert opened is not None and opened.secret == master.secret


def test_any_damage_is_reported_as_damage_not_as_wrong_password() -> None:
    raw = make_key_file(MasterKey.generate(), "pw", CHEAP)
    for pos in range(0, len(raw), max(1, len(raw) // 60)):
        damaged = bytearray(raw)
        damaged[pos] ^= 0x01
        try:
            result = open_key_file(bytes(damaged), "pw")
        except KeyFileDamaged:
            continue
        # a flip that still parses to the same document (e.g. in insignificant whitespace) must still work
        assert result is not None, f"flip at {pos} turned into a wrong-password answer"


def test_hostile_kdf_parameters_are_refused_before_running_scrypt() -> None:
    body = json.loads(make_key_file(MasterKey.generate(), "pw", CHEAP))
    body.pop("checksum")
    body["n"] = 2**30
    from cbr_agent.crypto.keys import _checksum

    body["checksum"] = _checksum(body)
    with pytest.raises(KeyFileDamaged):
        open_key_file(json.dumps(body).encode(), "pw")


def test_defaults_are_strong_and_the_test_knob_is_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_kdf_params() == DEFAULT_KDF
    # restic's parameters (N=2**15, r=8, p=1: 32 MiB) are the floor
    assert DEFAULT_KDF.n >= 2**15 and DEFAULT_KDF.r >= 8 and DEFAULT_KDF.memory >= 32 * 1024 * 1024
    monkeypatch.setenv(TEST_KDF_ENV, "1")
    assert default_kdf_params().n < DEFAULT_KDF.n
    monkeypatch.setenv(TEST_KDF_ENV, "yes")  # only the exact value "1" weakens it
    assert default_kdf_params() == DEFAULT_KDF


def test_derived_keys_differ_and_ids_are_keyed() -> None:
    a, b = MasterKey.generate(), MasterKey.generate()
    assert len({a.encryption_key, a.id_key}) == 2
    assert a.blob_id(b"x") != b.blob_id(b"x")
    assert a.blob_id(b"x") == a.blob_id(memoryview(b"x"))
    assert 0 <= a.chunker_seed < 2**63


def test_key_files_with_the_earlier_default_still_open() -> None:
    """Parameters are stored per key file: the earlier default (n=2**16) opens under today's code."""
    master = MasterKey.generate()
    old = make_key_file(master, "pw", KdfParams(n=2**16, r=8, p=1))
    body = json.loads(old)
    assert (body["n"], body["r"], body["p"]) == (2**16, 8, 1)
    opened = open_key_file(old, "pw")
    assert opened is not None and opened.secret == master.secret
    assert open_key_file(old, "wrong") is None
