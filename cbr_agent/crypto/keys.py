"""The repository master key and the key files that wrap it with a password.

The master secret is 64 random bytes; the AES key, the BLAKE3 id key and the chunker seed are derived
from it with BLAKE3's key-derivation mode. Each key file wraps the secret with a key derived from one
password by scrypt (memory-hard), so several passwords can open one repository.

Test knob: when the environment variable ``CBR_AGENT_INSECURE_TEST_KDF=1`` is set, *new* key files use
cheap scrypt parameters (n=2**10). Only tests set it; opening always uses the parameters in the key file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import blake3
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from cbr_agent.crypto.aead import AuthenticationFailed, Sealer
from cbr_agent.errors import IntegrityError

TEST_KDF_ENV = "CBR_AGENT_INSECURE_TEST_KDF"
_WRAP_AAD = b"cbr-agent key file v1"
_SECRET_SIZE = 64


@dataclass(frozen=True)
class KdfParams:
    # restic's parameters: 32 MiB with r=8, about 0.1 s here. Key files written with other
    # parameters (earlier ones used n=2**16) still open: each key file records its own.
    n: int = 2**15
    r: int = 8
    p: int = 1

    def validate(self) -> None:
        # refuse parameters a damaged or hostile key file could use to exhaust memory or time
        if self.n < 2 or self.n & (self.n - 1) or self.n > 2**22:
            raise ValueError(f"scrypt n={self.n} is not a power of two in [2, 2**22]")
        if not 1 <= self.r <= 32 or not 1 <= self.p <= 16:
            raise ValueError(f"scrypt r={self.r} p={self.p} out of range")

    @property
    def memory(self) -> int:
        return 128 * self.n * self.r * self.p


DEFAULT_KDF = KdfParams()
_TEST_KDF = KdfParams(n=2**10, r=8, p=1)


def default_kdf_params() -> KdfParams:
    """The parameters for new key files: strong, unless the documented test knob is set."""
    return _TEST_KDF if os.environ.get(TEST_KDF_ENV) == "1" else DEFAULT_KDF


def _derive(params: KdfParams, salt: bytes, password: str) -> bytes:
    params.validate()
    kdf = Scrypt(salt=salt, length=32, n=params.n, r=params.r, p=params.p)
    return kdf.derive(password.encode("utf-8", "surrogateescape"))


def keyed_blob_id(id_key: bytes, data: bytes | memoryview) -> bytes:
    """The blob id: keyed BLAKE3 of the plaintext, 32 bytes that reveal nothing without the key (the one
    implementation; :class:`~cbr_agent.repository.codec.BlobCodec` and :meth:`MasterKey.blob_id` use it)."""
    return blake3.blake3(data, key=id_key, max_threads=1).digest()


class MasterKey:
    """The repository secret and what is derived from it."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != _SECRET_SIZE:
            raise ValueError("master secret must be 64 bytes")
        self.secret = secret
        self.encryption_key = blake3.blake3(secret, derive_key_context="cbr-agent 2026 aes-256-gcm").digest()
        self.id_key = blake3.blake3(secret, derive_key_context="cbr-agent 2026 blob id").digest()
        seed = blake3.blake3(secret, derive_key_context="cbr-agent 2026 chunker seed").digest(8)
        self.chunker_seed = int.from_bytes(seed, "little") >> 1  # pyfastcdc needs seed < 2**63
        self.sealer = Sealer(self.encryption_key)

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(_SECRET_SIZE))

    def blob_id(self, data: bytes | memoryview) -> bytes:
        """Keyed BLAKE3 of the plaintext: 32 bytes that reveal nothing without the key."""
        return keyed_blob_id(self.id_key, data)


class KeyFileDamaged(IntegrityError):
    """The key file is not well-formed or its checksum does not match (not a password problem). Callers
    name the file; the message says what is wrong with it."""

    hint = ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _checksum(body: dict[str, Any]) -> str:
    canon = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canon).hexdigest()


def make_key_file(master: MasterKey, password: str, params: KdfParams | None = None) -> bytes:
    """A key file (JSON bytes) wrapping ``master`` with ``password``."""
    params = params or default_kdf_params()
    salt = os.urandom(32)
    wrapped = Sealer(_derive(params, salt, password)).seal(master.secret, _WRAP_AAD)
    body: dict[str, Any] = {
        "version": 1,
        "kdf": "scrypt",
        "n": params.n,
        "r": params.r,
        "p": params.p,
        "salt": _b64(salt),
        "data": _b64(wrapped),
        "created": datetime.now(timezone.utc).isoformat(),
        "host": socket.gethostname(),
    }
    body["checksum"] = _checksum(body)
    return json.dumps(body, indent=1, sort_keys=True).encode() + b"\n"


def _parse_key_file(raw: bytes) -> tuple[KdfParams, bytes, bytes]:
    try:
        body = json.loads(raw)
        checksum = body.pop("checksum")
        if not isinstance(checksum, str) or checksum != _checksum(body):
            raise KeyFileDamaged("checksum does not match")
        if body["version"] != 1 or body["kdf"] != "scrypt":
            raise KeyFileDamaged(f"unsupported key file version/kdf {body['version']}/{body['kdf']}")
        params = KdfParams(n=int(body["n"]), r=int(body["r"]), p=int(body["p"]))
        params.validate()
        return (
            params,
            base64.b64decode(body["salt"], validate=True),
            base64.b64decode(body["data"], validate=True),
        )
    except KeyFileDamaged:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
        raise KeyFileDamaged(f"not a valid key file ({type(exc).__name__})") from None


def verify_key_file(raw: bytes) -> None:
    """Raise :class:`KeyFileDamaged` unless ``raw`` is a well-formed key file with a matching checksum."""
    _parse_key_file(raw)


def open_key_file(raw: bytes, password: str) -> MasterKey | None:
    """The master key, or None when ``password`` does not open this key file.

    Raises :class:`KeyFileDamaged` when the file itself is damaged (checksum or format).
    """
    params, salt, wrapped = _parse_key_file(raw)
    try:
        secret = Sealer(_derive(params, salt, password)).open(wrapped, _WRAP_AAD)
    except AuthenticationFailed:
        return None
    if len(secret) != _SECRET_SIZE:
        raise KeyFileDamaged("wrapped secret has the wrong size")
    return MasterKey(secret)
