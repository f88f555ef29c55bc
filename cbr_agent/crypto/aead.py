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


class Sealer:
    """Encrypts and authenticates with one 32-byte key; thread-safe (one AESGCM context per thread)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self._key = key
        self._local = threading.local()

    def _aead(self) -> AESGCM:
        aead = getattr(self._local, "aead", None)
        if aead is None:
            aead = self._local.aead = AESGCM(self._key)
        return aead

    def _nonce(self) -> bytes:
        local = self._local
        pool = getattr(local, "nonces", b"")
        pos = getattr(local, "pos", 0)
        if pos >= len(pool):
            pool = local.nonces = os.urandom(NONCE_SIZE * _NONCE_BATCH)
            pos = 0
        local.pos = pos + NONCE_SIZE
        return pool[pos : pos + NONCE_SIZE]

    def seal(self, plaintext: bytes | memoryview, aad: bytes) -> bytes:
        nonce = self._nonce()
        return nonce + self._aead().encrypt(nonce, plaintext, aad)

    def seal_parts(self, plaintext: bytes | memoryview, aad: bytes) -> tuple[bytes, bytes]:
        """``(nonce, ciphertext+tag)``: the sealed form in two pieces, so big blobs are not copied again."""
        nonce = self._nonce()
        return nonce, self._aead().encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes | memoryview, aad: bytes) -> bytes:
        if len(sealed) < OVERHEAD:
            raise AuthenticationFailed("sealed object is shorter than nonce and tag")
        view = memoryview(sealed)
        try:
            return self._aead().decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], aad)
        except InvalidTag:
            raise AuthenticationFailed("authentication tag does not match") from None
