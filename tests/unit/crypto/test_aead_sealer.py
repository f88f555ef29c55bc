"""AES-256-GCM sealing: round trip, every flipped bit and wrong associated data detected."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.crypto import OVERHEAD, AuthenticationFailed, Sealer

KEY = bytes(range(32))


@settings(max_examples=100, deadline=None)
@given(plain=st.binary(max_size=3000), aad=st.binary(max_size=40))
def test_round_trip_and_size(plain: bytes, aad: bytes) -> None:
    sealer = Sealer(KEY)
    sealed = sealer.seal(plain, aad)
    assert len(sealed) == len(plain) + OVERHEAD
    assert sealer.open(sealed, aad) == plain


@settings(max_examples=100, deadline=None)
@given(plain=st.binary(min_size=1, max_size=500), data=st.data())
def test_any_flipped_bit_is_detected(plain: bytes, data: st.DataObject) -> None:
    sealer = Sealer(KEY)
    sealed = bytearray(sealer.seal(plain, b"ctx"))
    pos = data.draw(st.integers(0, len(sealed) - 1))
    sealed[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(AuthenticationFailed):
        sealer.open(bytes(sealed), b"ctx")


def test_wrong_aad_wrong_key_and_short_input_fail() -> None:
    sealed = Sealer(KEY).seal(b"secret", b"index")
    with pytest.raises(AuthenticationFailed):
        Sealer(KEY).open(sealed, b"snapshot")
    with pytest.raises(AuthenticationFailed):
        Sealer(os.urandom(32)).open(sealed, b"index")
    with pytest.raises(AuthenticationFailed):
        Sealer(KEY).open(sealed[:10], b"index")


def test_nonces_are_fresh() -> None:
    sealer = Sealer(KEY)
    assert sealer.seal(b"same", b"") != sealer.seal(b"same", b"")


def test_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        Sealer(b"short")


def test_batched_nonces_never_repeat_across_threads() -> None:
    import threading

    sealer = Sealer(KEY)
    nonces: list[bytes] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [sealer.seal_parts(b"x", b"")[0] for _ in range(3000)]
        with lock:
            nonces.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(nonces) == 12000 and len(set(nonces)) == 12000
    nonce, body = sealer.seal_parts(b"payload", b"aad")
    assert sealer.open(nonce + body, b"aad") == b"payload"
