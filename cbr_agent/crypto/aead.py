"""AES-256-GCM sealing: ``nonce (12) || ciphertext || tag (16)``, with associated data binding each object
to its role (a blob to its id, an index file to "index", ...), so objects cannot be swapped unnoticed.

Random 96-bit nonces: safe for far more objects than a backup repository holds under one key (2**32).
"""

from __future__ import annotations

import os
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE
_NONCE_BATCH = 512  # nonces drawn per getrandom() call: one syscall per blob was 20 % of a tiny blob's cost


class AuthenticationFailed(Exception):
    """The ciphertext, its nonce, its tag or its associated data was altered (or the key is wrong)."""


class _ThreadState:
    """Per-thread AES-GCM context and a batch of random nonces (one getrandom() call per 512 seals)."""

    __slots__ = ("aead", "pool", "pos")

    def __init__(self, aead: AESGCM) -> None:
        self.aead = aead
        self.pool = b""
        self.pos = 0


class Sealer:
    """Encrypts and authenticates with one 32-byte key; thread-safe (one AESGCM context per thread)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self._key = key
        self._local = threading.local()

    def _state(self) -> _ThreadState:
        state = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = _ThreadState(AESGCM(self._key))
        return state

    def _aead(self) -> AESGCM:
        return self._state().aead

    def seal(self, plaintext: bytes | memoryview, aad: bytes) -> bytes:
        nonce, sealed = self.seal_parts(plaintext, aad)
        return nonce + sealed

    def seal_parts(self, plaintext: bytes | memoryview, aad: bytes) -> tuple[bytes, bytes]:
        """``(nonce, ciphertext+tag)``: the sealed form in two pieces, so big blobs are not copied again."""
        state = self._state()
        pos = state.pos
        if pos >= len(state.pool):
            state.pool = os.urandom(NONCE_SIZE * _NONCE_BATCH)
            pos = 0
        state.pos = pos + NONCE_SIZE
        nonce = state.pool[pos : pos + NONCE_SIZE]
        return nonce, state.aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes | memoryview, aad: bytes) -> bytes:
        if len(sealed) < OVERHEAD:
            raise AuthenticationFailed("sealed object is shorter than nonce and tag")
        view = memoryview(sealed)
        try:
            return self._aead().decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], aad)
        except InvalidTag:
            raise AuthenticationFailed("authentication tag does not match") from None
